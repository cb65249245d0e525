"""The `fewshot` command as a user runs it: subprocesses of `python -m fewshot_cli` and the console
script, on the synthetic tree (data dir and cache passed through the environment)."""

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from fewshot_cli.cli import main, multirun_flag_first
from fewshot_cli.engine.trainer import TrainingInterrupted

pytestmark = pytest.mark.slow

FEWSHOT_SCRIPT = Path(sys.executable).with_name("fewshot")
# debug=fast: 4 episodes, validation every 2 on 5 episodes, 10 test episodes, no TensorBoard.
TINY = [
    "device=cpu", "dataset.download=false", "debug=fast",
    "train_episodes.n_way=5", "train_episodes.n_query=5", "eval_episodes.n_query=5",
]
ACC_LINE = re.compile(
    r"^test/acc (\d+\.\d\d) ± (\d+\.\d\d) \(95% CI, (\d+) episodes, (\d+)-way (\d+)-shot\)$", re.MULTILINE)


@pytest.fixture(scope="module")
def env(synthetic_data_dir: Path, synthetic_cache_dir: Path) -> dict[str, str]:
    environment = dict(os.environ)
    environment.update(FEWSHOT_DATA_DIR=str(synthetic_data_dir),
                       FEWSHOT_CACHE_DIR=str(synthetic_cache_dir),
                       OMP_NUM_THREADS="1")  # tiny models: threads only add contention
    for variable in ("HYDRA_FULL_ERROR", "PYTHONPATH"):
        environment.pop(variable, None)
    return environment


def run(args: list[str], env: dict[str, str], cwd: Path, script: bool = False,
        timeout: float = 300) -> subprocess.CompletedProcess:
    """`python -m fewshot_cli ARGS` (or the `fewshot` script) from `cwd`; stdout and stderr merged."""
    command = [str(FEWSHOT_SCRIPT)] if script else [sys.executable, "-m", "fewshot_cli"]
    return subprocess.run([*command, *args], cwd=cwd, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=timeout)


def history(run_dir: Path) -> dict[int, float]:
    lines = (run_dir / "train_history.jsonl").read_text().splitlines()
    return {r["episode"]: r["train/loss"] for r in map(json.loads, lines) if "train/loss" in r}


def assert_one_clean_error(result: subprocess.CompletedProcess, text: str) -> None:
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stdout, result.stdout
    matching = [line for line in result.stdout.splitlines() if text in line]
    assert len(matching) == 1, result.stdout


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, env: dict[str, str]) -> Path:
    """`python -m fewshot_cli train ...`: 4 episodes, checkpoints every 2 (module-wide run dir)."""
    work = tmp_path_factory.mktemp("cli")
    run_dir = work / "train_run"
    result = run(["train", *TINY, "logger=tensorboard", f"hydra.run.dir={run_dir}"], env, work)
    assert result.returncode == 0, result.stdout
    assert "Traceback" not in result.stdout
    return run_dir


def test_train_writes_the_run_directory(trained: Path) -> None:
    for name in (".hydra/config.yaml", ".hydra/overrides.yaml", "train.log", "checkpoints/last.pt",
                 "checkpoints/best.pt", "metrics.json", "train_history.jsonl"):
        assert (trained / name).is_file(), name
    assert list((trained / "tb").glob("events.out.tfevents.*"))
    metrics = json.loads((trained / "metrics.json").read_text())
    assert {"test/acc", "test/acc_ci95", "test/n_episodes", "test/n_way", "test/n_shot",
            "train/episodes_per_sec"} <= set(metrics)
    log = (trained / "train.log").read_text()
    assert "training protonet on omniglot" in log
    assert re.search(r"best\.pt \(episode \d\): test/acc \d+\.\d\d ± ", log)
    assert f"metrics written to {trained / 'metrics.json'}" in log
    # trainer.progress_bar=false and seconds-long passes: no progress lines (only one per 30 s).
    assert " episodes, accuracy so far " not in log
    assert not (trained.parent / "outputs").exists()  # hydra.run.dir was honoured


def test_metrics_name_the_commit_and_the_command_as_typed(trained: Path) -> None:
    metrics = json.loads((trained / "metrics.json").read_text())
    assert metrics["command"].startswith("fewshot train device=cpu dataset.download=false ")
    assert metrics["command"].endswith(f" hydra.run.dir={trained}")  # not the overrides cli.py adds
    commit = metrics["git_commit"]
    assert re.fullmatch(r"[0-9a-f]{7,40}(-dirty)?", commit), commit
    # A commit of this checkout (HEAD may have moved on since: other work is committed meanwhile).
    package = Path(__file__).resolve().parent.parent / "fewshot_cli"
    known = subprocess.run(["git", "-C", str(package), "cat-file", "-e",
                            commit.removesuffix("-dirty") + "^{commit}"], check=False)
    assert known.returncode == 0, commit
    assert metrics["debug"] == "fast"  # so that `fewshot report` keeps it out of the results


def test_eval_console_script_prints_accuracy_line(trained: Path, env: dict[str, str],
                                                  tmp_path: Path) -> None:
    assert FEWSHOT_SCRIPT.is_file(), "the `fewshot` console script is not installed beside python"
    out = tmp_path / "eval_run"
    result = run(["eval", f"ckpt_path={trained / 'checkpoints' / 'best.pt'}", "eval.n_episodes=20",
                  "eval_episodes.n_way=4", "device=cpu", f"hydra.run.dir={out}"],
                 env, tmp_path, script=True)
    assert result.returncode == 0, result.stdout
    match = ACC_LINE.search(result.stdout)
    assert match, result.stdout
    assert match.groups()[2:] == ("20", "4", "1")
    metrics = json.loads((out / "metrics.json").read_text())
    assert f"{metrics['test/acc']:.2f}" == match.group(1)
    assert f"{metrics['test/acc_ci95']:.2f}" == match.group(2)
    # No terminal here (stdout and stderr are pipes): progress goes to the log instead of a bar.
    log = (out / "eval.log").read_text()
    progress = re.findall(r"\] test: (\d+)/20 episodes, accuracy so far \d+\.\d\d%", log)
    assert progress == [str(n) for n in range(2, 21, 2)], log
    assert f"[INFO] {match.group(0)}" in log
    assert f"metrics written to {out / 'metrics.json'}" in log
    assert metrics["command"] == shlex.join([
        "fewshot", "eval", f"ckpt_path={trained / 'checkpoints' / 'best.pt'}", "eval.n_episodes=20",
        "eval_episodes.n_way=4", "device=cpu", f"hydra.run.dir={out}"])
    assert metrics["git_commit"]
    assert metrics["debug"] is None  # a real evaluation, even of a debug=fast checkpoint


def test_multirun_sweep_writes_one_subdir_per_job(env: dict[str, str], tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    fixed = [o for o in TINY if not o.startswith("train_episodes.n_way=")]  # a later value would win
    # -m after some overrides, as users type it: Hydra alone would reject the overrides after it.
    result = run(["train", *fixed, "-m", "seed=0,1", "train_episodes.n_way=3,4", "trainer.max_episodes=2",
                  "eval.n_episodes=5", f"hydra.sweep.dir={sweep}"], env, tmp_path)
    assert result.returncode == 0, result.stdout
    jobs = sorted(p.parent for p in sweep.rglob("metrics.json"))
    assert len(jobs) == 4, result.stdout
    seen = set()
    for job in jobs:
        config = OmegaConf.load(job / ".hydra" / "config.yaml")
        seen.add((config.seed, config.train_episodes.n_way))
        assert (job / "checkpoints" / "best.pt").is_file()
        assert (job / "train.log").is_file()
        assert json.loads((job / "metrics.json").read_text())["train/episodes"] == 2
    assert seen == {(0, 3), (0, 4), (1, 3), (1, 4)}
    assert (sweep / "multirun.yaml").is_file()


def test_multirun_flag_moves_before_the_overrides() -> None:
    assert multirun_flag_first(["a=1", "-m", "b=2,3"]) == ["-m", "a=1", "b=2,3"]
    assert multirun_flag_first(["--multirun", "a=1"]) == ["--multirun", "a=1"]
    assert multirun_flag_first(["a=1", "--cfg", "job"]) == ["a=1", "--cfg", "job"]


@pytest.mark.parametrize("command", ["train", "eval"])
def test_cfg_job_prints_the_composed_config(command: str, env: dict[str, str], tmp_path: Path) -> None:
    result = run([command, "--cfg", "job", "seed=5"], env, tmp_path)
    assert result.returncode == 0, result.stdout
    config = OmegaConf.create(result.stdout)
    assert config.task == command and config.seed == 5
    assert "hydra" not in config
    assert not (tmp_path / "outputs").exists()  # nothing ran


def test_info_and_help(env: dict[str, str], tmp_path: Path) -> None:
    info = run(["train", "--info"], env, tmp_path)
    assert info.returncode == 0, info.stdout
    assert "Config search path" in info.stdout
    assert re.search(r"main\s*\|\s*(file://\S*conf|pkg://fewshot_cli\.conf)", info.stdout)
    helped = run(["train", "--help"], env, tmp_path)
    assert helped.returncode == 0, helped.stdout
    assert "== Configuration groups ==" in helped.stdout
    assert re.search(r"^method: .*protonet", helped.stdout, re.MULTILINE)
    assert re.search(r"^experiment: .*protonet_omniglot_5w1s", helped.stdout, re.MULTILINE)
    assert "debug/train" not in helped.stdout  # part of debug=, never chosen on its own
    # predict lists only the groups it takes (it refuses dataset=, experiment=, debug=, ...).
    predict = run(["predict", "--help"], env, tmp_path)
    assert predict.returncode == 0, predict.stdout
    groups = predict.stdout.split("== Configuration groups ==", 1)[1].split("== Config ==", 1)[0]
    assert set(re.findall(r"^(\w+): ", groups, re.MULTILINE)) == {"device", "method", "paths"}


def help_entries(text: str) -> dict[str, str]:
    """{"key=value": description} of --help's "Common keys" part (descriptions may wrap)."""
    part = text.split("== Common keys", 1)[1].split("== Configuration groups ==", 1)[0]
    entries: dict[str, str] = {}
    name = None
    for line in part.splitlines()[3:]:
        if line.startswith("  ") and not line.startswith("   "):
            name, _, description = line.strip().partition("  ")
            entries[name] = description.strip()
        elif name and line.strip():
            entries[name] = (entries[name] + " " + line.strip()).strip()
    return entries


def test_help_lists_the_common_keys_with_values_and_descriptions(env: dict[str, str], tmp_path: Path) -> None:
    train = run(["train", "--help"], env, tmp_path)
    assert train.returncode == 0, train.stdout
    entries = help_entries(train.stdout)
    assert entries["trainer.max_episodes=20000"].startswith("training length in episodes")
    assert entries["trainer.max_minutes=null"].startswith("wall-clock budget")
    assert entries["trainer.val_every=1000"].startswith("episodes between validation passes")
    assert entries[f"paths.data_dir={env['FEWSHOT_DATA_DIR']}"].startswith("datasets live below it")
    assert entries[f"dataset.root={env['FEWSHOT_DATA_DIR']}"]
    shape = "train_episodes.n_way=60 train_episodes.n_shot=1 train_episodes.n_query=5"
    assert any(name.startswith(shape) for name in entries), list(entries)
    # The values are the composed ones: the command line's overrides and group choices show.
    maml = run(["train", "method=maml", "trainer.max_episodes=7", "--help"], env, tmp_path)
    maml = help_entries(maml.stdout)
    assert "trainer.max_episodes=7" in maml
    assert any(name.startswith("train_episodes.n_way=5 ") for name in maml), list(maml)
    for command, key in (("eval", "ckpt_path=null"), ("predict", "support_dir=null")):
        result = run([command, "--help"], env, tmp_path)
        assert result.returncode == 0, result.stdout
        assert help_entries(result.stdout)[key], result.stdout
    assert not (tmp_path / "outputs").exists()  # nothing ran


def test_usage_without_command_and_with_unknown_command(env: dict[str, str], tmp_path: Path) -> None:
    bare = run([], env, tmp_path, script=True)
    assert bare.returncode == 2
    assert bare.stdout.startswith("usage: fewshot <command>")
    assert "train" in bare.stdout and "eval" in bare.stdout
    unknown = run(["frobnicate"], env, tmp_path)
    assert unknown.returncode == 2
    assert "unknown command 'frobnicate'; choose one of train, eval" in unknown.stdout
    assert "Traceback" not in unknown.stdout


def test_top_level_help_exits_zero(monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setattr(sys, "argv", ["fewshot", "--help"])
    with pytest.raises(SystemExit) as stopped:
        main()
    assert stopped.value.code == 0
    assert capsys.readouterr().out.startswith("usage: fewshot <command>")


@pytest.mark.parametrize(("override", "text"), [
    ("trainer.max_episodez=1", "unknown key trainer.max_episodez; did you mean trainer.max_episodes?"),
    ("trainer.max_episodes=abc", "Value 'abc' of type 'str' could not be converted to Integer"),
])
def test_config_error_exits_without_traceback(override: str, text: str, env: dict[str, str],
                                              tmp_path: Path) -> None:
    result = run(["train", override], env, tmp_path)
    assert_one_clean_error(result, text)
    assert result.returncode == 2  # Hydra's own refusals exit 1; every bad input is 2 here
    assert not (tmp_path / "outputs").exists()  # rejected before any run dir was made


@pytest.mark.parametrize("override", ["train_episodes.n_query=0", "+method.temprature=5"])
def test_a_refused_run_leaves_no_run_directory(override: str, env: dict[str, str], tmp_path: Path) -> None:
    """A newcomer's input: refused runs left outputs/train/<time>/ behind (.hydra and train.log)."""
    result = run(["train", *TINY, override], env, tmp_path)
    assert result.returncode == 2, result.stdout
    assert not [p for p in (tmp_path / "outputs").rglob("*") if p.is_file()]
    assert not list((tmp_path / "outputs").glob("train/*"))  # nor the run directory itself


def test_a_refused_resume_keeps_the_run_directory_but_not_its_own_record(trained: Path, env: dict[str, str],
                                                                         tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(trained, run_dir)
    before = sorted(p.relative_to(run_dir) for p in run_dir.rglob("*"))
    result = run(["train", f"resume_from={run_dir / 'checkpoints' / 'last.pt'}", "method=maml"], env,
                 tmp_path)
    assert result.returncode == 2, result.stdout
    after = sorted(p.relative_to(run_dir) for p in run_dir.rglob("*"))
    assert after == before  # the checkpoint's run is untouched; no .hydra/resume_<time>/ left


@pytest.mark.parametrize("override", ["trainer.max_episodez=5", "+trainer.max_episodez=5"])
def test_unknown_key_is_refused_with_the_key_meant(override: str, env: dict[str, str],
                                                    tmp_path: Path) -> None:
    """Hydra's own hint for the typo is `+trainer.max_episodez=5`, which would run and ignore it."""
    result = run(["train", *TINY, override], env, tmp_path)
    assert result.returncode == 2
    assert_one_clean_error(result, "fewshot train: unknown key trainer.max_episodez; "
                                   "did you mean trainer.max_episodes?")
    assert "+trainer" not in result.stdout
    assert not (tmp_path / "outputs").exists()


def test_unknown_group_key_is_refused_but_eval_may_add_dataset_keys(env: dict[str, str],
                                                                    tmp_path: Path) -> None:
    typo = run(["train", "dataset.dowload=false"], env, tmp_path)
    assert typo.returncode == 2
    assert_one_clean_error(typo, "unknown key dataset.dowload; did you mean dataset.download?")
    # The documented way to set a key over the checkpoint's dataset node still composes.
    added = run(["eval", "--cfg", "job", "+dataset.download=false"], env, tmp_path)
    assert added.returncode == 0, added.stdout
    assert OmegaConf.create(added.stdout).dataset == {"download": False}


def test_data_error_exits_with_one_sentence(env: dict[str, str], tmp_path: Path) -> None:
    result = run(["train", *TINY, f"paths.data_dir={tmp_path / 'nowhere'}",
                  f"paths.cache_dir={tmp_path / 'empty_cache'}", f"hydra.run.dir={tmp_path / 'run'}"],
                 env, tmp_path)
    assert result.returncode == 2
    assert_one_clean_error(result, "Omniglot not found under")
    assert "images_background/<Alphabet>/characterNN/*.png" in result.stdout
    assert "[ERROR]" in result.stdout


def test_missing_checkpoint_error(env: dict[str, str], tmp_path: Path) -> None:
    result = run(["eval", f"ckpt_path={tmp_path / 'nope.pt'}", f"hydra.run.dir={tmp_path / 'run'}"],
                 env, tmp_path)
    assert result.returncode == 2
    assert_one_clean_error(result, "does not exist")


def test_resume_continues_from_the_saved_episode(trained: Path, env: dict[str, str],
                                                 tmp_path: Path) -> None:
    """`fewshot train resume_from=.../last.pt trainer.max_episodes=6` without repeating the other
    overrides (the defaults, 60-way, would not even fit the synthetic split)."""
    resumed = tmp_path / "resumed"
    result = run(["train", f"resume_from={trained / 'checkpoints' / 'last.pt'}",
                  "trainer.max_episodes=6", "device=cpu", f"hydra.run.dir={resumed}"], env, tmp_path,
                 script=True)
    assert result.returncode == 0, result.stdout
    assert re.search(r"resumed from .*last\.pt at episode 4", result.stdout)
    last = torch.load(resumed / "checkpoints" / "last.pt", weights_only=True)
    assert last["episode"] == 6
    assert last["config"]["train_episodes"]["n_way"] == 5  # from the checkpoint, not the defaults
    assert last["config"]["trainer"]["max_episodes"] == 6
    assert sorted(history(resumed)) == [1, 2, 3, 4, 5, 6]
    assert json.loads((resumed / "metrics.json").read_text())["train/episodes"] == 6

    # The uninterrupted 6-episode run has the same losses after episode 4 (CPU, same RNG streams).
    straight = tmp_path / "straight"
    result = run(["train", *TINY, "trainer.max_episodes=6", f"hydra.run.dir={straight}"], env, tmp_path)
    assert result.returncode == 0, result.stdout
    expected, got = history(straight), history(resumed)
    assert {e: got[e] for e in (5, 6)} == {e: expected[e] for e in (5, 6)}


def test_resume_refuses_a_method_change(trained: Path, env: dict[str, str], tmp_path: Path) -> None:
    result = run(["train", f"resume_from={trained / 'checkpoints' / 'last.pt'}", "method=maml",
                  f"hydra.run.dir={tmp_path / 'run'}"], env, tmp_path)
    assert result.returncode == 2
    assert_one_clean_error(result, "cannot change method= when resuming: the checkpoint was trained "
                                   "with method=protonet")
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_the_same_command_plus_resume_from_continues_in_the_run_directory(env: dict[str, str],
                                                                           tmp_path: Path) -> None:
    """The issue's input: the first command line plus resume_from= was refused ("the checkpoint was
    trained with method=PrototypicalNetworks"), and a resume wrote a new run directory, splitting
    TensorBoard across two folders."""
    run_dir = tmp_path / "my run"
    first = ["train", "method=protonet", "dataset=omniglot", *TINY]
    result = run([*first, "trainer.max_episodes=4", f"hydra.run.dir={run_dir}"], env, tmp_path)
    assert result.returncode == 0, result.stdout
    (run_dir / "train_history.jsonl").open("a").write('{"episode": 5, "train/loss": 9.0}\n')  # killed
    last = run_dir / "checkpoints" / "last.pt"
    result = run([*first, "trainer.max_episodes=6", f"resume_from={last}"], env, tmp_path)
    assert result.returncode == 0, result.stdout
    assert not (tmp_path / "outputs").exists()  # no new run directory
    assert load_checkpoint_episode(last) == 6
    assert sorted(history(run_dir)) == [1, 2, 3, 4, 5, 6]
    assert history(run_dir)[5] != 9.0  # what the killed run logged after last.pt was replaced
    assert (run_dir / ".hydra" / "overrides.yaml").is_file()  # the first run's record is kept
    assert len(list((run_dir / ".hydra").glob("resume_*/overrides.yaml"))) == 1
    log = (run_dir / "train.log").read_text()
    assert log.count("training protonet on omniglot") == 2  # one log, both sessions
    assert "resumed from" in log


def test_resume_with_another_dataset_is_refused(trained: Path, env: dict[str, str],
                                               tmp_path: Path) -> None:
    result = run(["train", f"resume_from={trained / 'checkpoints' / 'last.pt'}", "dataset=mnist",
                  f"hydra.run.dir={tmp_path / 'run'}"], env, tmp_path)
    assert result.returncode == 2
    assert_one_clean_error(result, "the checkpoint was trained with dataset=omniglot")


def load_checkpoint_episode(path: Path) -> int:
    return torch.load(path, weights_only=True)["episode"]


def test_interrupt_hint_runs_as_printed_for_a_path_with_a_space_and_equals(
        trained: Path, env: dict[str, str], tmp_path: Path) -> None:
    """The command in the interrupt message, pasted into a shell, resumes the run."""
    awkward = tmp_path / "my runs" / "lr=0.1"
    shutil.copytree(trained / "checkpoints", awkward / "checkpoints")
    last = awkward / "checkpoints" / "last.pt"
    hint = re.search(r"`(.*)`", str(TrainingInterrupted(4, last))).group(1)
    argv = shlex.split(hint)  # what a POSIX shell passes
    assert argv[:2] == ["fewshot", "train"] and len(argv) == 3, hint
    resumed = tmp_path / "resumed"
    result = run([*argv[1:], "trainer.max_episodes=6", "device=cpu", f"hydra.run.dir={resumed}"],
                 env, tmp_path)
    assert result.returncode == 0, result.stdout
    assert f"resumed from {last} at episode 4" in result.stdout
    assert torch.load(resumed / "checkpoints" / "last.pt", weights_only=True)["episode"] == 6


def test_interrupt_hint_keeps_a_plain_path_unquoted() -> None:
    last = "outputs/train/2026-01-02_03-04-05_000006/checkpoints/last.pt"
    assert str(TrainingInterrupted(3, Path(last))).endswith(f"`fewshot train resume_from={last}`")
