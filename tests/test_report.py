"""`fewshot report` on a fixture outputs folder: aggregation across seeds, paper numbers, CSV, curves."""

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from fewshot_cli.reporting.collect import find_runs
from fewshot_cli.reporting.table import aggregate
from fewshot_cli.tasks.report import report


def write_run(run_dir: Path, task: str, acc: float, seed: int, n_way: int = 5, n_shot: int = 1,
              ckpt_path: str | None = None, val_curve: list[float] | None = None,
              extra: dict | None = None) -> None:
    """A run directory as `fewshot train`/`fewshot eval` leave it (the parts report reads)."""
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "config.yaml").write_text(
        f"task: {task}\nseed: {seed}\n"
        "method:\n  _target_: fewshot_cli.methods.protonet.PrototypicalNetworks\n"
        "dataset:\n  name: omniglot\n")
    metrics = {"test/acc": acc, "test/acc_ci95": 0.2, "test/n_episodes": 1000, "test/n_way": n_way,
               "test/n_shot": n_shot, "method": "PrototypicalNetworks", "dataset": "omniglot",
               "seed": seed, "device": "cpu"}
    if task == "train":
        metrics.update({"train/episodes": 3000, "train/wall_time_s": 120.0})
    else:
        metrics.update({"ckpt_path": ckpt_path, "ckpt_episode": 3000})
    metrics.update(extra or {})
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    if val_curve:
        from torch.utils.tensorboard import SummaryWriter

        with SummaryWriter(log_dir=str(run_dir / "tb")) as writer:
            for step, value in enumerate(val_curve, start=1):
                writer.add_scalar("val/acc", value, step * 1000)


@pytest.fixture
def outputs(tmp_path: Path) -> Path:
    """Two seeds trained on 5w1s, one of them re-evaluated on 20w1s and once on 5w1s."""
    root = tmp_path / "multirun"
    write_run(root / "0_seed=0", "train", 98.0, seed=0, val_curve=[97.0, 98.5, 99.0])
    write_run(root / "1_seed=1", "train", 99.0, seed=1, val_curve=[96.0, 98.0, 98.8])
    best = root / "0_seed=0" / "checkpoints" / "best.pt"
    write_run(root / "eval_20w", "eval", 95.0, seed=0, n_way=20, ckpt_path=str(best))
    write_run(root / "eval_5w", "eval", 98.4, seed=0, n_way=5, ckpt_path=str(best))
    (root / "broken").mkdir()
    (root / "broken" / "metrics.json").write_text("{not json")
    return root


def test_rows_aggregate_seeds_and_compare_with_paper(outputs: Path) -> None:
    rows = {(r.n_way, r.n_shot): r for r in aggregate(find_runs(outputs))}
    five = rows[(5, 1)]
    # The 5w1s eval of seed 0's checkpoint replaces seed 0's own test pass: samples 98.4 and 99.0.
    assert five.acc == pytest.approx((98.4 + 99.0) / 2)
    assert five.seeds == ("0", "1")
    assert five.seed_ci95 == pytest.approx(1.96 * 0.4242640687 / 2 ** 0.5, rel=1e-6)
    assert five.paper == 98.8
    assert five.difference == pytest.approx(five.acc - 98.8)
    twenty = rows[(20, 1)]
    assert twenty.acc == 95.0 and twenty.paper == 96.0 and twenty.seed_ci95 is None


def test_cross_domain_and_within_alphabet_tests_get_their_own_rows(tmp_path: Path) -> None:
    koch = {"method": "SiameseNetwork", "test/within_group": True}
    write_run(tmp_path / "koch", "train", 80.0, seed=0, n_way=20, extra=koch)
    best = str(tmp_path / "koch" / "checkpoints" / "best.pt")
    write_run(tmp_path / "on_mnist", "eval", 60.0, seed=0, n_way=10, ckpt_path=best,
              extra={"method": "SiameseNetwork", "dataset": "mnist", "train_dataset": "omniglot",
                     "test/within_group": False})
    write_run(tmp_path / "plain", "train", 90.0, seed=0, n_way=20, extra={"method": "SiameseNetwork"})
    rows = {(r.dataset, r.n_way): r for r in aggregate(find_runs(tmp_path))}
    assert set(rows) == {("omniglot (within alphabet)", 20), ("omniglot→mnist", 10), ("omniglot", 20)}
    assert rows[("omniglot (within alphabet)", 20)].paper == 92.0
    assert rows[("omniglot→mnist", 10)].paper == 70.3
    assert rows[("omniglot", 20)].paper is None  # Koch's number is for within-alphabet tasks only


def test_report_writes_markdown_csv_and_curves(outputs: Path, tmp_path: Path) -> None:
    markdown = report(outputs, tmp_path / "out")
    assert "| PrototypicalNetworks | omniglot | 5-way 1-shot | 2 (0, 1) | 98.70 ± 0.20 |" in markdown
    assert "| 98.8 | -0.10 |" in markdown
    rows = list(csv.DictReader(io.StringIO((tmp_path / "out" / "report.csv").read_text())))
    assert {(r["n_way"], r["n_runs"]) for r in rows} == {("5", "2"), ("20", "1")}
    png = tmp_path / "out" / "report_curves.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_report_cli(outputs: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "fewshot_cli", "report", str(outputs)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "20-way 1-shot" in done.stdout
    assert (outputs / "report.md").is_file()
    missing = subprocess.run([sys.executable, "-m", "fewshot_cli", "report", str(outputs / "nope")],
                             capture_output=True, text=True, timeout=300)
    assert missing.returncode == 2
    assert "is not a directory" in missing.stderr
    assert "Traceback" not in missing.stderr
