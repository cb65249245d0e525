"""Sweeps through Hydra's launchers and sweepers, as a user runs them: joblib (local parallel),
submitit_local (the SLURM launcher's local twin) and an Optuna search returning a float."""

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow


def run_fewshot(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "fewshot_cli", *args], cwd=cwd, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600)


def job_metrics(sweep_dir: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(sweep_dir.glob("*/metrics.json"))]


@pytest.mark.parametrize("launcher", ["local_parallel", "submitit_local"])
def test_launcher_runs_every_job_in_its_own_dir(launcher: str, tiny_train_overrides: list[str],
                                                tmp_path: Path) -> None:
    sweep_dir = tmp_path / "sweep"
    extra = ["hydra.launcher.timeout_min=10"] if launcher == "submitit_local" else []
    result = run_fewshot(["train", "-m", f"hydra/launcher={launcher}", *extra, "seed=0,1",
                          *tiny_train_overrides, f"hydra.sweep.dir={sweep_dir}"], tmp_path)
    assert result.returncode == 0, result.stdout[-3000:]
    metrics = job_metrics(sweep_dir)
    assert len(metrics) == 2
    assert sorted(m["seed"] for m in metrics) == [0, 1]
    assert all(0.0 <= m["test/acc"] <= 100.0 for m in metrics)
    assert f"sweep summary ({sweep_dir}): 2 of 2 jobs succeeded" in result.stdout
    # Job records written in each launcher's workers reach the launching process's summary.
    written = json.loads((sweep_dir / "sweep_summary.json").read_text())
    assert [(r["job"], r["status"], r["metric"]) for r in written["records"]] == [
        (0, "ok", "val/best_acc"), (1, "ok", "val/best_acc")]


@pytest.mark.parametrize("launcher", ["basic", "local_parallel"])
def test_failing_job_does_not_lose_the_others(launcher: str, tiny_train_overrides: list[str],
                                              tmp_path: Path) -> None:
    """Job 1 asks for more classes than the split has; jobs 0 and 2 still finish and keep results,
    the summary names each job's result, and the sweep exits 2 (a user error, not a bug)."""
    sweep_dir = tmp_path / "sweep"
    overrides = [o for o in tiny_train_overrides if not o.startswith("train_episodes.n_way")]
    result = run_fewshot(["train", "-m", f"hydra/launcher={launcher}", "train_episodes.n_way=3,5000,4",
                          *overrides, f"hydra.sweep.dir={sweep_dir}"], tmp_path)
    assert result.returncode == 2, result.stdout[-3000:]
    assert (sweep_dir / "0" / "metrics.json").is_file()
    assert not (sweep_dir / "1" / "metrics.json").exists()
    assert (sweep_dir / "2" / "metrics.json").is_file()
    summary = result.stdout[result.stdout.index(f"sweep summary ({sweep_dir}): 2 of 3 jobs succeeded"):]
    assert re.search(r"job +0 +train_episodes\.n_way=3 +val/best_acc \d+\.\d\d$", summary, re.MULTILINE)
    assert re.search(r"job +1 +train_episodes\.n_way=5000 +FAILED: train_episodes\.n_way=5000 is "
                     r"larger than the \d+ classes", summary, re.MULTILINE)
    assert re.search(r"job +2 +train_episodes\.n_way=4 +val/best_acc \d+\.\d\d$", summary, re.MULTILINE)
    assert "1 of 3 sweep jobs failed; the others kept their results" in summary
    written = json.loads((sweep_dir / "sweep_summary.json").read_text())
    assert (written["jobs"], written["failed"]) == (3, 1)
    assert [r["status"] for r in written["records"]] == ["ok", "failed", "ok"]
    assert written["records"][1]["user_error"] is True
    assert "train_episodes.n_way=5000" in written["records"][1]["overrides"]
    best = [json.loads((sweep_dir / n / "metrics.json").read_text())["val/best_acc"] for n in "02"]
    assert [written["records"][i]["value"] for i in (0, 2)] == pytest.approx(best)


def test_optuna_search_returns_validation_accuracy(tiny_train_overrides: list[str],
                                                   tmp_path: Path) -> None:
    sweep_dir = tmp_path / "optuna"
    # train_episodes.n_way is fixed by the tiny overrides, so Optuna searches the learning rate only.
    result = run_fewshot(["train", "hparams_search=protonet_optuna", "hydra.sweeper.n_trials=3",
                          *tiny_train_overrides, f"hydra.sweep.dir={sweep_dir}"], tmp_path)
    assert result.returncode == 0, result.stdout[-3000:]
    trials = job_metrics(sweep_dir)
    assert len(trials) == 3
    best = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())
    # The sweeper received floats: the best value is the best trial's validation accuracy.
    assert isinstance(best["best_value"], float) and math.isfinite(best["best_value"])
    assert best["best_value"] == pytest.approx(max(t["val/best_acc"] for t in trials))
    assert set(best["best_params"]) == {"optimizer.lr"}


def test_reproduce_omniglot_sweep_covers_every_episodic_omniglot_preset() -> None:
    """The sweep config's glob picks the 16 episodic-method presets (not Siamese) x 3 seeds."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

    conf = Path(__file__).resolve().parent.parent / "conf"
    params = OmegaConf.load(conf / "sweep" / "reproduce_omniglot.yaml").hydra.sweeper.params
    glob = OverridesParser.create().parse_override(f"experiment={params.experiment}").value()
    presets = glob.filter(sorted(p.stem for p in (conf / "experiment").glob("*.yaml")))
    methods = ("protonet", "matchingnet", "relationnet", "maml")
    assert sorted(presets) == sorted(f"{m}_omniglot_{s}" for m in methods
                                     for s in ("5w1s", "5w5s", "20w1s", "20w5s"))
    assert str(params.seed) == "0,1,2"


def test_reproduce_omniglot_sweep_runs_and_reports(tiny_train_overrides: list[str], tmp_path: Path) -> None:
    """The one-command reproduction, narrowed on the command line to two tiny ProtoNet jobs."""
    sweep_dir = tmp_path / "repro"
    result = run_fewshot(["train", "sweep=reproduce_omniglot", "experiment=glob(protonet_omniglot_5w*)",
                          "seed=0", *tiny_train_overrides, f"hydra.sweep.dir={sweep_dir}"], tmp_path)
    assert result.returncode == 0, result.stdout[-3000:]
    experiments = sorted(o for p in sweep_dir.iterdir() if p.is_dir()
                         for o in yaml.safe_load((p / ".hydra" / "overrides.yaml").read_text())
                         if o.startswith("experiment="))
    assert experiments == ["experiment=protonet_omniglot_5w1s", "experiment=protonet_omniglot_5w5s"]
    report = run_fewshot(["report", str(sweep_dir)], tmp_path)
    assert report.returncode == 0, report.stdout[-3000:]
    table = (sweep_dir / "report.md").read_text()
    # The tiny overrides test both models 5-way 1-shot: one row, two runs of seed 0.
    assert "| protonet | omniglot | 5-way 1-shot | 2 (0) |" in table
