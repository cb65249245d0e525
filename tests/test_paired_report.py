"""`fewshot report --paired BASELINE`: per-episode accuracies, their fingerprints, and the paired
difference of each method from a baseline on the same test episodes."""

import csv
import io
import json
import math
import random
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import compose_config

from fewshot_cli.engine.confidence import mean_and_ci95
from fewshot_cli.engine.episode_record import read_episode_accuracies
from fewshot_cli.errors import FewShotError
from fewshot_cli.reporting.paired import paired_difference
from fewshot_cli.tasks.evaluate import evaluate
from fewshot_cli.tasks.report import report
from fewshot_cli.tasks.train import train


def test_paired_difference_is_the_t_interval_of_the_episode_differences() -> None:
    baseline = [1.0, 0.0, 1.0, 1.0, 0.5]
    other = [1.0, 1.0, 1.0, 1.0, 0.5]
    # By hand: differences 0, 1, 0, 0, 0; mean 0.2; sample sd sqrt((4 * 0.04 + 0.64) / 4) = sqrt(0.2);
    # t_{0.975, 4} = 2.776 (tables); half-width 2.776 * sqrt(0.2) / sqrt(5) = 2.776 * 0.2.
    result = paired_difference(baseline, other)
    assert result.n_episodes == 5
    assert result.mean == pytest.approx(20.0)
    assert result.ci95 == pytest.approx(100 * 2.776 * 0.2)


def test_paired_ci_is_much_tighter_than_independent_cis_on_correlated_episodes() -> None:
    """Episode difficulty shared by both methods (as on the same test episodes) cancels in the
    paired differences; two independent CIs both carry it."""
    rng = random.Random(0)
    difficulty = [rng.uniform(0.5, 1.0) for _ in range(1000)]
    baseline = [min(1.0, d + rng.gauss(0, 0.02)) for d in difficulty]
    other = [min(1.0, d + 0.01 + rng.gauss(0, 0.02)) for d in difficulty]
    paired = paired_difference(baseline, other)
    independent = math.hypot(mean_and_ci95(torch.tensor(baseline)).ci95,
                             mean_and_ci95(torch.tensor(other)).ci95)
    assert paired.ci95 < independent / 4
    assert abs(paired.mean - 100 * (statistics.fmean(other) - statistics.fmean(baseline))) < 1e-9
    # The true shift (1 point, less what the clipping at 100% removes) lies inside the paired CI.
    assert paired.mean - paired.ci95 < 1.0 and paired.mean + paired.ci95 > 0.5


def test_paired_difference_refuses_unequal_lengths() -> None:
    with pytest.raises(ValueError, match="3 baseline episodes but 2"):
        paired_difference([1.0, 0.0, 1.0], [1.0, 0.0])


@pytest.fixture(scope="module")
def two_methods(tiny_train_overrides: list[str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two tiny real runs, protonet and matchingnet, tested on the same 10 episodes (same shape)."""
    root = tmp_path_factory.mktemp("paired")
    for method in ("protonet", "matchingnet"):
        train(compose_config("train", [*tiny_train_overrides, f"method={method}",
                                       "trainer.max_episodes=2"], root / method))
    return root


def metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def test_every_method_is_tested_on_the_same_episodes(two_methods: Path) -> None:
    proto, matching = metrics(two_methods / "protonet"), metrics(two_methods / "matchingnet")
    assert proto["test/episodes_file"] == "episode_accuracies.csv"
    assert proto["test/episodes_fingerprint"] == matching["test/episodes_fingerprint"]
    assert proto["test/eval_seed"] == 1234
    prints, accuracies = read_episode_accuracies(two_methods / "protonet" / "episode_accuracies.csv")
    assert len(prints) == len(accuracies) == proto["test/n_episodes"] == 10
    assert len(set(prints)) == 10  # ten different episodes
    # The file holds what the run's mean was made of.
    assert 100 * statistics.fmean(accuracies) == pytest.approx(proto["test/acc"], abs=1e-4)


def test_paired_report_of_two_real_runs(two_methods: Path, tmp_path: Path) -> None:
    markdown = report(two_methods, tmp_path, paired="protonet")
    rows = list(csv.DictReader(io.StringIO((tmp_path / "report_paired.csv").read_text())))
    assert [(r["method"], r["baseline"], r["shared_episodes"]) for r in rows] == [
        ("matchingnet", "protonet", "10")]
    # The paired mean is the difference of the two runs' means (over the same episodes).
    expected = (metrics(two_methods / "matchingnet")["test/acc"]
                - metrics(two_methods / "protonet")["test/acc"])
    assert float(rows[0]["difference"]) == pytest.approx(expected, abs=1e-3)
    _, base = read_episode_accuracies(two_methods / "protonet" / "episode_accuracies.csv")
    _, other = read_episode_accuracies(two_methods / "matchingnet" / "episode_accuracies.csv")
    assert float(rows[0]["episode_ci95"]) == pytest.approx(paired_difference(base, other).ci95, abs=1e-3)
    assert "Paired differences from protonet" in markdown
    assert (tmp_path / "report.md").read_text().count("| protonet |") == 1  # the main table too


def test_paired_report_refuses_an_absent_baseline(two_methods: Path, tmp_path: Path) -> None:
    with pytest.raises(FewShotError, match=r"no run of the baseline 'maml'.*matchingnet, protonet"):
        report(two_methods, tmp_path, paired="maml")
    assert not (tmp_path / "report.md").exists()


def test_paired_report_refuses_runs_on_other_episodes(two_methods: Path, tiny_train_overrides: list[str],
                                                      tmp_path: Path) -> None:
    """A re-evaluation of the protonet model with another eval_seed (kept as the newer result of
    that model) was tested on other episodes than matchingnet: not pairable."""
    root = tmp_path / "runs"
    for method in ("protonet", "matchingnet"):
        shutil.copytree(two_methods / method, root / method)
    data = [o for o in tiny_train_overrides if o.split("=")[0] in ("paths.data_dir", "paths.cache_dir",
                                                                    "device")]
    evaluate(compose_config("eval", [*data, f"ckpt_path={root / 'protonet/checkpoints/best.pt'}",
                                     "eval_seed=7", "eval.n_episodes=10"], root / "eval_seed7"))
    assert metrics(root / "eval_seed7")["test/episodes_fingerprint"] != \
        metrics(two_methods / "protonet")["test/episodes_fingerprint"]
    with pytest.raises(FewShotError, match="were tested on different episodes"):
        report(root, tmp_path / "out", paired="protonet")


@pytest.mark.slow
def test_paired_cli_exit_codes(two_methods: Path, tmp_path: Path) -> None:
    ok = subprocess.run([sys.executable, "-m", "fewshot_cli", "report", str(two_methods), "--out",
                         str(tmp_path), "--paired"], capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0, ok.stderr
    assert "| matchingnet | protonet (1) |" in ok.stdout
    assert "report_paired.md" in ok.stdout
    refused = subprocess.run([sys.executable, "-m", "fewshot_cli", "report", str(two_methods), "--out",
                              str(tmp_path / "x"), "--paired", "relationnet"],
                             capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2
    assert refused.stderr.count("\n") == 1 and "no run of the baseline 'relationnet'" in refused.stderr
