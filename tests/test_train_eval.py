"""train(cfg) / evaluate(cfg) end to end on the synthetic tree: outputs, round trip, exact resume."""

import json
import math
import os
import shutil
import signal
from pathlib import Path

import pytest
import torch
from conftest import compose_config
from omegaconf import DictConfig
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from fewshot_cli.config.resume import merge_resume_config
from fewshot_cli.engine.checkpoint import load_checkpoint, save_checkpoint
from fewshot_cli.engine.trainer import TrainingInterrupted
from fewshot_cli.errors import CheckpointError, ConfigError, NonFiniteLossError
from fewshot_cli.methods.protonet import PrototypicalNetworks
from fewshot_cli.tasks.evaluate import evaluate, merge_with_checkpoint
from fewshot_cli.tasks.train import train

TEST_KEYS = {"test/acc", "test/acc_ci95", "test/n_episodes", "test/n_way", "test/n_shot"}


@pytest.fixture(scope="session")
def eval_overrides(data_overrides: list[str]) -> list[str]:
    """Data paths for `fewshot eval`: the dataset node comes from the checkpoint, so dataset.* keys
    cannot be overridden on its command line."""
    return [o for o in data_overrides if not o.startswith("dataset.")]


def history(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "train_history.jsonl").read_text().splitlines()]


def losses(run_dir: Path) -> dict[int, float]:
    return {r["episode"]: r["train/loss"] for r in history(run_dir) if "train/loss" in r}


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory, tiny_train_overrides: list[str]) -> dict:
    """One 4-episode run with TensorBoard on: its output dir and returned metrics."""
    out = tmp_path_factory.mktemp("trained") / "run"
    cfg = compose_config("train", [*tiny_train_overrides, "logger=tensorboard"], out)
    return {"dir": out, "metrics": train(cfg)}


def test_train_writes_checkpoints_metrics_and_history(trained_run: dict) -> None:
    out, metrics = trained_run["dir"], trained_run["metrics"]
    assert (out / "checkpoints" / "last.pt").is_file()
    assert (out / "checkpoints" / "best.pt").is_file()
    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk == pytest.approx(metrics)
    assert TEST_KEYS | {"train/episodes_per_sec"} <= set(on_disk)
    assert 0 <= on_disk["test/acc"] <= 100
    assert on_disk["test/acc_ci95"] >= 0
    assert (on_disk["test/n_episodes"], on_disk["test/n_way"], on_disk["test/n_shot"]) == (10, 5, 1)
    assert on_disk["train/episodes"] == 4
    assert on_disk["train/episodes_per_sec"] > 0
    assert on_disk["val/best_episode"] in (2, 4)
    last = load_checkpoint(out / "checkpoints" / "last.pt")
    best = load_checkpoint(out / "checkpoints" / "best.pt")
    assert last["episode"] == 4
    assert best["episode"] == on_disk["val/best_episode"]
    assert best["config"]["train_episodes"]["n_way"] == 5
    assert sorted(losses(out)) == [1, 2, 3, 4]  # log_every=1
    assert [r["episode"] for r in history(out) if "val/acc" in r] == [2, 4]


def test_tensorboard_events_hold_the_scalars(trained_run: dict) -> None:
    tb = trained_run["dir"] / "tb"
    events = list(tb.glob("events.out.tfevents.*"))
    assert events
    assert not [p for p in tb.iterdir() if p.is_dir()]  # add_hparams(run_name=".") adds no sub-run
    accumulator = EventAccumulator(str(tb))
    accumulator.Reload()
    tags = set(accumulator.Tags()["scalars"])
    assert {"train/loss", "train/acc", "train/lr", "val/acc"} <= tags
    assert [e.step for e in accumulator.Scalars("train/loss")] == [1, 2, 3, 4]


def test_eval_rebuilds_the_model_from_the_checkpoint_alone(trained_run: dict, tmp_path: Path,
                                                           eval_overrides: list[str],
                                                           capsys: pytest.CaptureFixture) -> None:
    # Only the file travels: the training run's directory is not needed.
    ckpt = tmp_path / "elsewhere" / "model.pt"
    ckpt.parent.mkdir()
    shutil.copy(trained_run["dir"] / "checkpoints" / "best.pt", ckpt)
    cfg = compose_config("eval", [*eval_overrides, f"ckpt_path={ckpt}", "eval.n_episodes=10"],
                         tmp_path / "eval")
    assert cfg.method is None and cfg.dataset is None
    metrics = evaluate(cfg)
    on_disk = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert set(on_disk) >= TEST_KEYS
    assert on_disk["ckpt_path"] == str(ckpt)
    # The same weights on the same fixed test episodes (eval_seed) give the training run's score.
    assert metrics["test/acc"] == pytest.approx(trained_run["metrics"]["test/acc"], abs=1e-9)
    assert metrics["test/acc_ci95"] == pytest.approx(trained_run["metrics"]["test/acc_ci95"], abs=1e-9)
    assert (metrics["test/n_way"], metrics["test/n_shot"], metrics["test/n_episodes"]) == (5, 1, 10)
    printed = capsys.readouterr().out
    expected = (f"test/acc {metrics['test/acc']:.2f} ± {metrics['test/acc_ci95']:.2f} "
                f"(95% CI, 10 episodes, 5-way 1-shot)")
    assert expected in printed


def test_eval_with_another_shape(trained_run: dict, tmp_path: Path, eval_overrides: list[str],
                                 capsys: pytest.CaptureFixture) -> None:
    ckpt = trained_run["dir"] / "checkpoints" / "best.pt"
    cfg = compose_config("eval", [*eval_overrides, f"ckpt_path={ckpt}", "eval_episodes.n_way=3",
                                  "eval_episodes.n_shot=2", "eval.n_episodes=7"], tmp_path)
    metrics = evaluate(cfg)
    assert (metrics["test/n_way"], metrics["test/n_shot"], metrics["test/n_query"]) == (3, 2, 5)
    assert metrics["test/n_episodes"] == 7
    assert metrics["ckpt_episode"] == load_checkpoint(ckpt)["episode"]
    assert "(95% CI, 7 episodes, 3-way 2-shot)" in capsys.readouterr().out


def _merge_over_checkpoint(trained_run: dict, overrides: list[str], tmp_path: Path,
                           eval_overrides: list[str]) -> tuple[dict, DictConfig, DictConfig]:
    """(the checkpoint's saved config, the composed eval config, the two merged) for `overrides`."""
    saved = load_checkpoint(trained_run["dir"] / "checkpoints" / "best.pt")["config"]
    cfg = compose_config("eval", [*eval_overrides, "ckpt_path=x.pt", *overrides], tmp_path)
    return saved, cfg, merge_with_checkpoint(cfg, saved)


def test_eval_config_takes_the_rest_from_the_checkpoint(trained_run: dict, tmp_path: Path,
                                                        eval_overrides: list[str]) -> None:
    saved, cfg, merged = _merge_over_checkpoint(trained_run, ["eval_episodes.n_shot=3"], tmp_path,
                                                eval_overrides)
    assert merged.method._target_ == saved["method"]["_target_"]
    assert (merged.eval_episodes.n_way, merged.eval_episodes.n_shot, merged.eval_episodes.n_query) == (
        5, 3, 5)
    assert merged.eval.n_episodes == 1000  # null: the dataset's default (Omniglot: 1000)
    # The dataset is read from this command's data dir, not the training machine's.
    assert merged.dataset.root == cfg.paths.data_dir
    assert merged.paths.output_dir == str(tmp_path)


def test_untrained_eval_needs_a_backbone(tmp_path: Path, data_overrides: list[str]) -> None:
    cfg = compose_config("eval", [*data_overrides, "method=protonet", "dataset=omniglot"], tmp_path)
    with pytest.raises(ConfigError, match="needs a backbone: add backbone=<name>"):
        merge_with_checkpoint(cfg, None)
    cfg = compose_config("eval", [*data_overrides, "method=protonet", "dataset=omniglot",
                                  "backbone=conv4", "eval_episodes.n_query=5", "eval.n_episodes=3"],
                         tmp_path)
    assert evaluate(cfg)["test/n_episodes"] == 3  # an untrained Conv4, scored like any checkpoint


def test_eval_adds_keys_to_the_checkpoints_dataset(trained_run: dict, tmp_path: Path,
                                                   eval_overrides: list[str]) -> None:
    """`+dataset.download=false` changes one key of the checkpoint's dataset, keeping the rest."""
    saved, _, merged = _merge_over_checkpoint(trained_run, ["+dataset.image_size=32"], tmp_path,
                                              eval_overrides)
    assert merged.dataset._target_ == saved["dataset"]["_target_"]
    assert merged.dataset.image_size == 32
    assert merged.dataset.split_scheme == saved["dataset"]["split_scheme"]


def test_eval_needs_a_checkpoint_or_a_method(tmp_path: Path, data_overrides: list[str]) -> None:
    with pytest.raises(ConfigError, match=r"ckpt_path="):
        evaluate(compose_config("eval", [*data_overrides, "dataset=omniglot"], tmp_path))


def test_eval_refuses_a_checkpoint_naming_foreign_code(trained_run: dict, tmp_path: Path,
                                                        eval_overrides: list[str]) -> None:
    payload = torch.load(trained_run["dir"] / "checkpoints" / "best.pt", weights_only=True)
    payload["config"]["method"]["_target_"] = "os.system"
    evil = tmp_path / "evil.pt"
    save_checkpoint(evil, {k: v for k, v in payload.items() if k not in ("format", "versions")})
    with pytest.raises(CheckpointError, match=r"os\.system"):
        evaluate(compose_config("eval", [*eval_overrides, f"ckpt_path={evil}"], tmp_path / "eval"))


RESUME = ["trainer.val_every=4", "trainer.checkpoint_every=4", "trainer.log_every=1"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory, tiny_train_overrides: list[str]) -> Path:
    """Run A: 8 episodes in one go, every episode's loss in train_history.jsonl."""
    out = tmp_path_factory.mktemp("resume") / "A"
    train(compose_config("train", [*tiny_train_overrides, *RESUME, "trainer.max_episodes=8"], out))
    return out


def test_resumed_run_reproduces_the_uninterrupted_losses(uninterrupted: Path, tmp_path: Path,
                                                         tiny_train_overrides: list[str]) -> None:
    first = tmp_path / "B"
    train(compose_config("train", [*tiny_train_overrides, *RESUME, "trainer.max_episodes=4"], first))
    last = first / "checkpoints" / "last.pt"
    assert load_checkpoint(last)["episode"] == 4
    resumed = tmp_path / "B_resumed"
    metrics = train(compose_config("train", [*tiny_train_overrides, *RESUME, "trainer.max_episodes=8",
                                             f"resume_from={last}"], resumed))
    expected, got = losses(uninterrupted), losses(resumed)
    assert sorted(expected) == list(range(1, 9))
    assert {e: got[e] for e in range(5, 9)} == {e: expected[e] for e in range(5, 9)}  # exact on CPU
    assert len({expected[e] for e in range(5, 9)}) == 4  # the losses do change episode to episode
    # The resumed run carries the earlier history and best.pt over, and counts all 8 episodes.
    assert sorted(got) == list(range(1, 9))
    assert (resumed / "checkpoints" / "best.pt").is_file()
    assert metrics["train/episodes"] == 8
    assert load_checkpoint(resumed / "checkpoints" / "last.pt")["episode"] == 8
    a_weights = load_checkpoint(uninterrupted / "checkpoints" / "last.pt")["model"]
    b_weights = load_checkpoint(resumed / "checkpoints" / "last.pt")["model"]
    assert all(torch.equal(a_weights[k], b_weights[k]) for k in a_weights)


def _patch_loss(monkeypatch: pytest.MonkeyPatch, on_call: int, action) -> None:
    """Run `action(output)` on the `on_call`-th call of ProtoNet's loss_and_logits (1-based)."""
    original = PrototypicalNetworks.loss_and_logits
    calls = {"n": 0}

    def patched(self, episode):
        calls["n"] += 1
        output = original(self, episode)
        return action(output) if calls["n"] >= on_call else output

    monkeypatch.setattr(PrototypicalNetworks, "loss_and_logits", patched)


def test_interrupt_saves_last_pt_mid_interval_and_resume_matches(
        uninterrupted: Path, tmp_path: Path, tiny_train_overrides: list[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGINT during episode 3 (no checkpoint due) still leaves a last.pt at episode 3."""
    sent = []

    def interrupt_once(output):
        if not sent:
            sent.append(True)
            os.kill(os.getpid(), signal.SIGINT)
        return output

    _patch_loss(monkeypatch, 3, interrupt_once)
    killed = tmp_path / "killed"
    with pytest.raises(TrainingInterrupted, match=r"after 3 episodes.*resume_from="):
        train(compose_config("train", [*tiny_train_overrides, *RESUME, "trainer.max_episodes=8"],
                             killed))
    monkeypatch.undo()
    last = killed / "checkpoints" / "last.pt"
    assert load_checkpoint(last)["episode"] == 3
    resumed = tmp_path / "resumed"
    train(compose_config("train", [*tiny_train_overrides, *RESUME, "trainer.max_episodes=8",
                                   f"resume_from={last}"], resumed))
    expected, got = losses(uninterrupted), losses(resumed)
    assert {e: got[e] for e in range(4, 9)} == {e: expected[e] for e in range(4, 9)}


def test_non_finite_loss_stops_with_a_clear_error(tmp_path: Path, tiny_train_overrides: list[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    _patch_loss(monkeypatch, 3, lambda out: out._replace(loss=out.loss * float("nan")))
    out = tmp_path / "nan"
    with pytest.raises(NonFiniteLossError) as error:
        train(compose_config("train", [*tiny_train_overrides, "trainer.max_episodes=6"], out))
    message = str(error.value)
    assert "training loss became nan" in message
    assert "up to episode 3" in message
    assert "last.pt (episode 2) keeps the last finite state" in message
    assert "optimizer.lr" in message and "trainer.grad_clip" in message
    # The checkpoint of episode 2 is the last finite state; nothing NaN was saved after it.
    last = load_checkpoint(out / "checkpoints" / "last.pt")
    assert last["episode"] == 2
    assert all(torch.isfinite(t).all() for t in last["model"].values() if t.is_floating_point())


def test_huge_learning_rate_is_caught(tmp_path: Path, tiny_train_overrides: list[str]) -> None:
    with pytest.raises(NonFiniteLossError, match=r"training loss became (nan|inf)"):
        train(compose_config("train", [*tiny_train_overrides, "optimizer=sgd", "optimizer.lr=1e30",
                                       "trainer.max_episodes=6"], tmp_path))


def test_n_way_larger_than_the_training_split(tmp_path: Path, tiny_train_overrides: list[str]) -> None:
    with pytest.raises(ConfigError) as error:
        train(compose_config("train", [*tiny_train_overrides, "train_episodes.n_way=40"], tmp_path))
    message = str(error.value)
    assert "train_episodes.n_way=40" in message and "36 classes of omniglot/train" in message


def test_within_group_training_episodes(tmp_path: Path, tiny_train_overrides: list[str]) -> None:
    # The synthetic Vinyals train split: alphabets of 20, 8 and 8 classes (with rotations).
    metrics = train(compose_config("train", [*tiny_train_overrides, "trainer.within_group=true",
                                             "train_episodes.n_way=10"], tmp_path / "ok"))
    assert metrics["train/episodes"] == 4
    with pytest.raises(ConfigError) as error:
        train(compose_config("train", [*tiny_train_overrides, "trainer.within_group=true",
                                       "train_episodes.n_way=25"], tmp_path / "too_wide"))
    message = str(error.value)
    assert "train_episodes.n_way=25" in message and "trainer.within_group=false" in message


def test_query_count_larger_than_the_images_per_class(tmp_path: Path,
                                                      tiny_train_overrides: list[str]) -> None:
    with pytest.raises(ConfigError, match=r"eval_episodes.n_shot \+ eval_episodes.n_query = 1 \+ 10 = 11 "
                                          r"images per class, .*lower n_shot \+ n_query to at most \d+"):
        train(compose_config("train", [*tiny_train_overrides, "eval_episodes.n_query=10"], tmp_path))


def test_meta_batch_counts_must_be_multiples(tmp_path: Path, tiny_train_overrides: list[str]) -> None:
    with pytest.raises(ConfigError, match=r"trainer.max_episodes=5 must be a multiple of "
                                          r"trainer.tasks_per_step=2"):
        train(compose_config("train", [*tiny_train_overrides, "trainer.tasks_per_step=2",
                                       "trainer.max_episodes=5"], tmp_path))


def test_meta_batch_training(tmp_path: Path, tiny_train_overrides: list[str]) -> None:
    metrics = train(compose_config("train", [*tiny_train_overrides, "trainer.tasks_per_step=2",
                                             "trainer.log_every=2"], tmp_path))
    assert metrics["train/episodes"] == 4
    assert sorted(losses(tmp_path)) == [2, 4]
    assert all(math.isfinite(v) for v in losses(tmp_path).values())


def test_resume_config_keeps_the_checkpoint_and_applies_plain_overrides(trained_run: dict,
                                                                        tmp_path: Path,
                                                                        data_overrides: list[str]) -> None:
    last = trained_run["dir"] / "checkpoints" / "last.pt"
    saved = load_checkpoint(last)["config"]
    current = compose_config("train", [*data_overrides, f"resume_from={last}", "trainer.max_episodes=9"],
                             tmp_path)  # defaults: 60-way, progress bar on
    merged = merge_resume_config(current, saved, [f"resume_from={last}", "trainer.max_episodes=9"])
    assert merged.train_episodes.n_way == 5 and merged.trainer.progress_bar is False  # checkpoint's
    assert merged.trainer.max_episodes == 9  # the command's
    assert merged.paths.output_dir == str(tmp_path) and merged.resume_from == str(last)
    merge_resume_config(current, saved, ["method=protonet"])  # the checkpoint's own choice
    with pytest.raises(ConfigError, match=r"cannot change method= when resuming: the checkpoint was "
                                          r"trained with method=protonet"):
        merge_resume_config(compose_config("train", [*data_overrides, "method=maml"], tmp_path), saved,
                            ["method=maml"])


def test_resume_with_debug_fast_takes_its_budget_from_the_command(trained_run: dict, tmp_path: Path,
                                                                   data_overrides: list[str]) -> None:
    """`debug=fast` typed again on resume (the first command line plus resume_from=) sets the keys
    of its preset from this command, with typed keys still winning, and adds no `debug` key."""
    saved = load_checkpoint(trained_run["dir"] / "checkpoints" / "last.pt")["config"]
    saved["trainer"].update(val_episodes=300, log_every=100)  # a full-length run's budget
    saved["eval"]["n_episodes"] = 1000
    typed = ["debug=fast", "trainer.max_episodes=8"]
    merged = merge_resume_config(compose_config("train", [*data_overrides, *typed], tmp_path), saved, typed)
    assert (merged.trainer.max_episodes, merged.trainer.val_episodes, merged.trainer.log_every,
            merged.eval.n_episodes) == (8, 5, 1, 10)
    assert merged.train_episodes.n_way == 5 and "debug" not in merged  # the checkpoint's shape


def test_resume_from_a_checkpoint_older_than_the_code(trained_run: dict, tmp_path: Path,
                                                      data_overrides: list[str]) -> None:
    """A last.pt written before a config key existed still resumes: the key comes from this
    version's defaults (here trainer.grad_clip and the whole eval node are dropped from the file)."""
    last = trained_run["dir"] / "checkpoints" / "last.pt"
    saved = load_checkpoint(last)["config"]
    del saved["trainer"]["grad_clip"]
    del saved["eval"]
    saved["method"].pop("temperature")  # group nodes stay the checkpoint's own, key for key
    current = compose_config("train", [*data_overrides, f"resume_from={last}", "trainer.max_episodes=6"],
                             tmp_path)
    merged = merge_resume_config(current, saved, [f"resume_from={last}", "trainer.max_episodes=6"])
    assert merged.trainer.grad_clip is None
    assert merged.eval.n_episodes == 1000  # this version's default, ${dataset.test_episodes}
    assert "temperature" not in merged.method
    merged.eval.n_episodes = 5
    metrics = train(merged)
    assert metrics["train/episodes"] == 6


def test_a_refused_resume_names_the_checkpoint_s_option_as_typed(trained_run: dict, tmp_path: Path,
                                                                 data_overrides: list[str]) -> None:
    """A newcomer's input: `scheduler=cosine` on a step-schedule checkpoint said "scheduler=StepLR"."""
    last = trained_run["dir"] / "checkpoints" / "last.pt"
    saved = load_checkpoint(last)["config"]
    current = compose_config("train", [*data_overrides, "scheduler=cosine"], tmp_path)
    with pytest.raises(ConfigError, match=r"trained with scheduler=step; drop 'scheduler=cosine'"):
        merge_resume_config(current, saved, ["scheduler=cosine"])
    current = compose_config("train", [*data_overrides, "optimizer=sgd"], tmp_path)
    with pytest.raises(ConfigError, match=r"trained with optimizer=adam; drop 'optimizer=sgd'"):
        merge_resume_config(current, saved, ["optimizer=sgd"])
