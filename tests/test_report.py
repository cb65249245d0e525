"""`fewshot report` on a fixture outputs folder: aggregation across seeds, paper numbers, CSV, curves."""

import csv
import io
import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from matplotlib.lines import Line2D

from fewshot_cli.engine.pair_figures import loss_curve_figure
from fewshot_cli.reporting.collect import CLASS_SPLIT_KEYS, find_runs, read_run
from fewshot_cli.reporting.curves import curves_figure
from fewshot_cli.reporting.table import aggregate
from fewshot_cli.tasks.report import report

PROTONET = {"_target_": "fewshot_cli.methods.protonet.PrototypicalNetworks",
            "distance": "squared_euclidean"}
OMNIGLOT = {"_target_": "fewshot_cli.data.omniglot.Omniglot", "name": "omniglot",
            "split_scheme": "vinyals"}


_clock = itertools.count(1_700_000_000)  # each run's metrics.json is newer than the one before


def write_run(run_dir: Path, task: str, acc: float, seed: int, n_way: int = 5, n_shot: int = 1,
              ckpt_path: str | None = None, val_curve: list[float] | None = None,
              extra: dict | None = None, method: dict | None = PROTONET,
              dataset: dict | None = OMNIGLOT, n_episodes: int = 1000, ci95: float = 0.2,
              backbone: dict | None = None) -> None:
    """A run directory as `fewshot train`/`fewshot eval` leave it (the parts report reads).

    `method` and `dataset` are the .hydra/config.yaml nodes; None (`method: null`) as an eval of a
    checkpoint writes them, or only the keys it overrode (`{"split_scheme": "lake"}` for
    `+dataset.split_scheme=lake`). metrics.json says "PrototypicalNetworks", as runs before method
    names did, unless `extra` sets "method". Runs are written oldest first (metrics.json's mtime).
    """
    (run_dir / ".hydra").mkdir(parents=True)
    config = {"task": task, "seed": seed, "method": method, "dataset": dataset, "backbone": backbone}
    (run_dir / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    metrics = {"test/acc": acc, "test/acc_ci95": ci95, "test/n_episodes": n_episodes, "test/n_way": n_way,
               "test/n_shot": n_shot, "method": "PrototypicalNetworks", "dataset": "omniglot",
               "seed": seed, "device": "cpu"}
    if task == "train":
        metrics.update({"train/episodes": 3000, "train/wall_time_s": 120.0})
    else:
        metrics.update({"ckpt_path": ckpt_path, "ckpt_episode": 3000})
    metrics.update(extra or {})
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    written = next(_clock)
    os.utime(run_dir / "metrics.json", (written, written))
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
    write_run(root / "eval_20w", "eval", 95.0, seed=0, n_way=20, ckpt_path=str(best), method=None,
              dataset=None)
    write_run(root / "eval_5w", "eval", 98.4, seed=0, n_way=5, ckpt_path=str(best), method=None,
              dataset=None)
    (root / "broken").mkdir()
    (root / "broken" / "metrics.json").write_text("{not json")
    return root


def test_rows_aggregate_seeds_and_compare_with_paper(outputs: Path) -> None:
    rows = {(r.n_way, r.n_shot): r for r in aggregate(find_runs(outputs))}
    five = rows[(5, 1)]
    # The 5w1s eval of seed 0's checkpoint (as many episodes, newer) replaces seed 0's own test
    # pass: one sample per model, 98.4 and 99.0.
    assert five.acc == pytest.approx((98.4 + 99.0) / 2)
    assert five.seeds == ("0", "1") and five.n_models == 2 and len(five.set_aside) == 1
    assert five.seed_ci95 == pytest.approx(12.706 * 0.4242640687 / 2 ** 0.5, rel=1e-6)  # t, 1 df
    assert five.paper == 98.8
    assert five.difference == pytest.approx(five.acc - 98.8)
    twenty = rows[(20, 1)]
    assert twenty.acc == 95.0 and twenty.paper == 96.0 and twenty.seed_ci95 is None


def test_cross_domain_and_within_alphabet_tests_get_their_own_rows(tmp_path: Path) -> None:
    bce = {"_target_": "fewshot_cli.methods.siamese.SiameseNetwork", "loss": "bce"}
    koch = {"method": "SiameseNetwork", "test/within_group": True}
    lake = {**OMNIGLOT, "split_scheme": "lake"}
    write_run(tmp_path / "koch", "train", 80.0, seed=0, n_way=20, extra=koch, method=bce, dataset=lake)
    best = str(tmp_path / "koch" / "checkpoints" / "best.pt")
    mnist = {"_target_": "fewshot_cli.data.mnist.MNIST", "name": "mnist", "classes_split": "all"}
    write_run(tmp_path / "on_mnist", "eval", 60.0, seed=0, n_way=10, ckpt_path=best, method=None,
              dataset=mnist, extra={"method": "siamese (bce)", "dataset": "mnist",
                                    "train_dataset": "omniglot", "test/within_group": False})
    write_run(tmp_path / "plain", "train", 90.0, seed=0, n_way=20, extra={"method": "SiameseNetwork"},
              method=bce, dataset=lake)
    write_run(tmp_path / "vinyals", "train", 85.0, seed=0, n_way=20, extra=koch, method=bce)
    rows = {(r.dataset, r.n_way): r for r in aggregate(find_runs(tmp_path))}
    assert set(rows) == {("omniglot (split_scheme=lake, within alphabet)", 20),
                         ("omniglot→mnist (classes_split=all)", 10),
                         ("omniglot (split_scheme=lake)", 20), ("omniglot (within alphabet)", 20)}
    assert rows[("omniglot (split_scheme=lake, within alphabet)", 20)].paper == 92.0
    assert rows[("omniglot→mnist (classes_split=all)", 10)].paper == 70.3
    # Koch's number is for within-alphabet tasks on the Lake split's test alphabets only.
    assert rows[("omniglot (split_scheme=lake)", 20)].paper is None
    assert rows[("omniglot (within alphabet)", 20)].paper is None
    assert {r.method for r in rows.values()} == {"siamese (bce)"}


def test_contrastive_siamese_is_not_compared_with_kochs_bce_network(tmp_path: Path) -> None:
    contrastive = {"_target_": "fewshot_cli.methods.siamese.SiameseNetwork", "loss": "contrastive"}
    write_run(tmp_path / "hadsell", "train", 80.0, seed=0, n_way=20, method=contrastive,
              extra={"method": "SiameseNetwork", "test/within_group": True})
    (row,) = aggregate(find_runs(tmp_path))
    assert (row.method, row.dataset, row.paper) == ("siamese (contrastive)", "omniglot (within alphabet)",
                                                    None)


# --- one row per set of test classes, one result per trained model ----------------------------------

def newcomers_outputs(root: Path) -> Path:
    """The quick start's training run (seed 0, 1000 test episodes) and three `fewshot eval`s of its
    best.pt: eval.n_episodes=2, eval.n_episodes=5, and eval.n_episodes=5 +dataset.split_scheme=lake.
    The evals' metrics.json as evaluate.py writes it; their config has `method: null` and, for the
    third, `dataset: {split_scheme: lake}`."""
    train = root / "train" / "2025-01-01_10-00-00"
    write_run(train, "train", 94.06, seed=0, ci95=0.36, extra={"method": "protonet", "test/n_query": 15,
                                                               "test/split": "test"})
    best = str(train / "checkpoints" / "best.pt")
    eval_metrics = {"method": "protonet", "train_dataset": "omniglot", "test/n_query": 15,
                    "test/split": "test", "test/within_group": False}
    for name, acc, ci95, episodes, dataset in (("10-05-00", 100.0, 0.0, 2, None),
                                               ("10-06-00", 92.0, 6.0, 5, None),
                                               ("10-07-00", 91.2, 11.13, 5, {"split_scheme": "lake"})):
        write_run(root / "eval" / f"2025-01-01_{name}", "eval", acc, seed=0, ckpt_path=best, method=None,
                  dataset=dataset, n_episodes=episodes, ci95=ci95, extra=eval_metrics)
    return root


def test_newcomers_re_evaluations_are_one_model_and_the_lake_split_its_own_row(tmp_path: Path) -> None:
    """Before: one row "3 (0) | 94.40 ± 5.71 | 1.60 | 5 | ... | 98.8 | -4.40" (the 1000-episode
    test dropped, three evals of one checkpoint counted as three runs, the Lake test averaged in)."""
    root = newcomers_outputs(tmp_path / "outputs")
    rows = {r.dataset: r for r in aggregate(find_runs(root))}
    assert set(rows) == {"omniglot", "omniglot (split_scheme=lake)"}
    vinyals = rows["omniglot"]
    assert (vinyals.acc, vinyals.episode_ci95, vinyals.n_episodes) == (94.06, 0.36, (1000, 1000))
    assert (vinyals.n_models, vinyals.seeds, vinyals.seed_ci95) == (1, ("0",), None)
    assert vinyals.paper == 98.8 and vinyals.difference == pytest.approx(94.06 - 98.8)
    assert sorted(n for _, n in vinyals.set_aside) == [2, 5]
    lake = rows["omniglot (split_scheme=lake)"]
    assert (lake.acc, lake.n_episodes, lake.n_models, lake.seed_ci95, lake.paper) == (
        91.2, (5, 5), 1, None, None)
    assert lake.episodes_trained == 3000 and lake.wall_time_s == 120.0  # the model's training run
    markdown = report(root, tmp_path / "out")
    # Empty "best at", "ended by" and "git commit": metrics.json from before they were written.
    assert ("| protonet | omniglot | 5-way 1-shot | 1 (0) | 94.06 ± 0.36 |  | 1000 | 3000 |  |  | "
            "2.0 min | 98.8 | -4.74 | cpu |  | 2 |") in markdown
    assert ("| protonet | omniglot (split_scheme=lake) | 5-way 1-shot | 1 (0) | 91.20 ± 11.13 |  | 5 "
            "| 3000 |  |  | 2.0 min |  |  | cpu |  |  |") in markdown
    assert "eval/2025-01-01_10-05-00 (2 episodes), eval/2025-01-01_10-06-00 (5 episodes); kept " \
           "train/2025-01-01_10-00-00 (1000 episodes)" in markdown


def test_two_models_with_re_evaluations_get_a_ci_over_models(tmp_path: Path) -> None:
    """Seed 0 re-evaluated with more episodes (replaces its train-time test) and with fewer (set
    aside); seed 1 only its train-time test. Test episodes differ across the kept results: a range."""
    write_run(tmp_path / "seed0", "train", 97.0, seed=0, n_episodes=600)
    best0 = str(tmp_path / "seed0" / "checkpoints" / "best.pt")
    write_run(tmp_path / "seed0_long", "eval", 98.0, seed=0, ckpt_path=best0, method=None, dataset=None,
              n_episodes=2000, ci95=0.1)
    write_run(tmp_path / "seed0_short", "eval", 90.0, seed=0, ckpt_path=best0, method=None, dataset=None,
              n_episodes=100)
    write_run(tmp_path / "seed1", "train", 99.0, seed=1, n_episodes=600)
    (row,) = aggregate(find_runs(tmp_path))
    assert (row.n_models, row.seeds, row.n_episodes) == (2, ("0", "1"), (600, 2000))
    assert row.acc == pytest.approx(98.5) and row.episode_ci95 == pytest.approx(0.15)
    assert row.seed_ci95 == pytest.approx(12.706 * 0.5)  # t_{0.975,1} * stdev(98, 99) / √2
    assert {p.name for p, _ in row.kept} == {"seed0_long", "seed1"}
    assert {p.name for p, _ in row.set_aside} == {"seed0", "seed0_short"}
    assert row.episodes_trained == 3000 and row.wall_time_s == 120.0
    markdown = report(tmp_path, tmp_path / "out")
    assert "| 2 (0, 1) | 98.50 ± 0.15 | 6.35 | 600–2000 |" in markdown
    (csv_row,) = csv.DictReader(io.StringIO((tmp_path / "out" / "report.csv").read_text()))
    assert (csv_row["n_models"], csv_row["n_episodes"], csv_row["n_set_aside"]) == ("2", "600-2000", "2")


def test_equal_episodes_keep_the_newest_result(tmp_path: Path) -> None:
    write_run(tmp_path / "train", "train", 97.0, seed=0)
    best = str(tmp_path / "train" / "checkpoints" / "best.pt")
    write_run(tmp_path / "eval_b", "eval", 96.0, seed=0, ckpt_path=best, method=None, dataset=None)
    write_run(tmp_path / "eval_a", "eval", 95.0, seed=0, ckpt_path=best, method=None, dataset=None)
    (row,) = aggregate(find_runs(tmp_path))
    assert row.acc == 95.0 and row.n_models == 1 and len(row.set_aside) == 2


def test_eval_inherits_its_checkpoints_class_split_and_val_split_is_its_own_row(tmp_path: Path) -> None:
    write_run(tmp_path / "lake", "train", 97.0, seed=0, dataset={**OMNIGLOT, "split_scheme": "lake"})
    best = str(tmp_path / "lake" / "checkpoints" / "best.pt")
    write_run(tmp_path / "again", "eval", 96.0, seed=0, ckpt_path=best, method=None, dataset=None,
              n_episodes=5000)  # no dataset override: the checkpoint's Lake split
    write_run(tmp_path / "vinyals", "eval", 95.0, seed=0, ckpt_path=best, method=None,
              dataset={"split_scheme": "vinyals"})
    write_run(tmp_path / "val", "eval", 99.0, seed=0, ckpt_path=best, method=None, dataset=None,
              extra={"test/split": "val"})
    rows = {r.dataset: r for r in aggregate(find_runs(tmp_path))}
    assert set(rows) == {"omniglot (split_scheme=lake)", "omniglot",
                         "omniglot (split_scheme=lake, eval.split=val)"}
    assert rows["omniglot (split_scheme=lake)"].acc == 96.0  # 5000 episodes beat the train-time 1000
    assert rows["omniglot"].paper == 98.8 and rows["omniglot"].acc == 95.0
    assert rows["omniglot (split_scheme=lake, eval.split=val)"].paper is None


def test_mnist_class_split_is_labelled_and_att_faces_folds_are_replicates(tmp_path: Path) -> None:
    mnist = {"_target_": "fewshot_cli.data.mnist.MNIST", "name": "mnist"}
    for name, node in (("default", {**mnist, "classes_split": "disjoint", "test_classes": [7, 8, 9]}),
                       ("all", {**mnist, "classes_split": "all", "test_classes": [7, 8, 9]}),
                       ("five", {**mnist, "test_classes": [5, 6, 7, 8, 9]})):
        write_run(tmp_path / name, "train", 90.0, seed=0, n_way=3, dataset=node, extra={"dataset": "mnist"})
    faces = {"_target_": "fewshot_cli.data.att_faces.ATTFaces", "name": "att_faces", "heldout": 5}
    for fold, acc in enumerate((80.0, 90.0)):
        write_run(tmp_path / f"fold{fold}", "train", acc, seed=0, dataset={**faces, "fold": fold},
                  extra={"dataset": "att_faces"})
    write_run(tmp_path / "three", "train", 85.0, seed=0, n_way=3, dataset={**faces, "heldout": 3},
              extra={"dataset": "att_faces"})
    rows = {r.dataset: r for r in aggregate(find_runs(tmp_path))}
    assert set(rows) == {"mnist", "mnist (classes_split=all)", "mnist (test_classes=5,6,7,8,9)",
                         "att_faces", "att_faces (heldout=3)"}
    folds = rows["att_faces"]
    assert (folds.n_models, folds.seeds, folds.acc) == (2, ("0",), 85.0) and folds.seed_ci95 is not None


def test_class_split_defaults_match_the_dataset_configs() -> None:
    conf = Path(__file__).resolve().parent.parent / "conf" / "dataset"
    for name, defaults in CLASS_SPLIT_KEYS.items():
        node = yaml.safe_load((conf / f"{name}.yaml").read_text())
        assert {key: node[key] for key in defaults} == defaults, name


# --- methods are named as users type them (methods.names) -----------------------------------------

def test_old_metrics_class_name_is_reported_by_config_name(tmp_path: Path) -> None:
    """A run with no config left, whose metrics.json holds only the class name."""
    write_run(tmp_path / "old", "train", 98.0, seed=0)
    (tmp_path / "old" / ".hydra" / "config.yaml").unlink()
    markdown = report(tmp_path, tmp_path / "out")
    assert "| protonet | omniglot | 5-way 1-shot |" in markdown
    assert "PrototypicalNetworks" not in markdown
    assert "| 98.8 |" in markdown  # the paper lookup follows the new name


def test_first_order_maml_gets_its_own_row_without_the_papers_number(tmp_path: Path) -> None:
    maml = {"_target_": "fewshot_cli.methods.maml.MAML", "first_order": False, "inner_lr": 0.4}
    write_run(tmp_path / "maml", "train", 98.0, seed=0, method=maml, extra={"method": "MAML"})
    write_run(tmp_path / "fomaml", "train", 97.0, seed=0, method={**maml, "first_order": True},
              extra={"method": "MAML"})
    rows = {r.method: r for r in aggregate(find_runs(tmp_path))}
    assert set(rows) == {"maml", "maml (first-order)"}
    assert rows["maml"].paper == 98.7  # Finn et al.'s second-order MAML, Omniglot 5-way 1-shot
    assert rows["maml (first-order)"].paper is None
    assert "| maml (first-order) | omniglot | 5-way 1-shot |" in report(tmp_path, tmp_path / "out")


def test_eval_of_an_old_checkpoint_takes_the_variant_from_its_training_run(tmp_path: Path) -> None:
    fomaml = {"_target_": "fewshot_cli.methods.maml.MAML", "first_order": True}
    write_run(tmp_path / "train", "train", 97.0, seed=0, method=fomaml, extra={"method": "MAML"})
    best = str(tmp_path / "train" / "checkpoints" / "best.pt")
    write_run(tmp_path / "eval", "eval", 96.0, seed=0, ckpt_path=best, method=None,
              extra={"method": "MAML"})
    assert read_run(tmp_path / "eval").method == "maml (first-order)"
    # Once the training run is gone only the class name is left: the plain name, no variant.
    (tmp_path / "train" / ".hydra" / "config.yaml").unlink()
    assert read_run(tmp_path / "eval").method == "maml"


def test_run_config_of_a_resumed_run_wins_over_the_command_line_config(tmp_path: Path) -> None:
    write_run(tmp_path / "resumed", "train", 97.0, seed=0)
    (tmp_path / "resumed" / "run_config.yaml").write_text(yaml.safe_dump(
        {"method": {**PROTONET, "distance": "cosine"}}))
    assert read_run(tmp_path / "resumed").method == "protonet (cosine)"


# --- figures -----------------------------------------------------------------------------------------

def test_report_curves_get_one_panel_per_dataset(tmp_path: Path) -> None:
    write_run(tmp_path / "omni", "train", 98.0, seed=0, val_curve=[97.0, 98.0])
    write_run(tmp_path / "cifar", "train", 55.0, seed=1, val_curve=[40.0, 50.0],
              extra={"dataset": "cifar_fs"}, dataset={"name": "cifar_fs"})
    write_run(tmp_path / "cifar_eval", "eval", 56.0, seed=1, method=None, extra={"dataset": "cifar_fs"},
              dataset={"name": "cifar_fs"})
    figure = curves_figure(find_runs(tmp_path))
    assert figure is not None
    panels = {axis.get_title(): axis for axis in figure.axes}
    assert set(panels) == {"cifar_fs", "omniglot"}
    labels = {title: [t.get_text() for t in axis.get_legend().get_texts()] for title, axis in panels.items()}
    assert labels == {"cifar_fs": ["protonet seed=1 (cifar)"], "omniglot": ["protonet seed=0 (omni)"]}
    assert list(panels["cifar_fs"].lines[0].get_ydata()) == pytest.approx([40.0, 50.0])


def test_report_curves_of_one_dataset_share_one_panel_and_none_without_curves(tmp_path: Path) -> None:
    write_run(tmp_path / "a", "train", 98.0, seed=0, val_curve=[97.0, 98.0])
    write_run(tmp_path / "b", "train", 99.0, seed=1, val_curve=[96.0, 99.0])
    write_run(tmp_path / "c", "train", 99.0, seed=2)  # no tb/: no line
    figure = curves_figure(find_runs(tmp_path))
    assert figure is not None and len(figure.axes) == 1 and len(figure.axes[0].lines) == 2
    assert curves_figure(find_runs(tmp_path / "c")) is None


def train_loss_line(history: list[dict]) -> Line2D:
    figure = loss_curve_figure(history)
    (line,) = [line for line in figure.axes[0].lines if line.get_label() == "train loss"]
    return line


def test_loss_curve_of_a_one_record_history_draws_its_point() -> None:
    line = train_loss_line([{"episode": 100, "train/loss": 0.7, "val/acc": 60.0}])
    assert line.get_marker() not in (None, "None", "", " ")  # no segment: only a marker shows
    assert list(line.get_xdata()) == [100] and list(line.get_ydata()) == [0.7]


def test_loss_curve_of_a_long_history_keeps_markers_sparse() -> None:
    line = train_loss_line([{"episode": e, "train/loss": 1.0 / e} for e in range(1, 1001)])
    assert len(line.get_xdata()) == 1000
    marked = line.get_xdata()[slice(None, None, line.get_markevery())]
    assert 1 <= len(marked) <= 51


def test_report_writes_markdown_csv_and_curves(outputs: Path, tmp_path: Path) -> None:
    markdown = report(outputs, tmp_path / "out")
    assert "| protonet | omniglot | 5-way 1-shot | 2 (0, 1) | 98.70 ± 0.20 |" in markdown
    assert "PrototypicalNetworks" not in markdown
    assert "| 98.8 | -0.10 |" in markdown
    rows = list(csv.DictReader(io.StringIO((tmp_path / "out" / "report.csv").read_text())))
    assert {(r["n_way"], r["n_models"], r["n_set_aside"]) for r in rows} == {("5", "2", "1"),
                                                                            ("20", "1", "0")}
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



def test_other_folders_backbones_and_image_sizes_are_other_rows(tmp_path: Path) -> None:
    """A newcomer's input: runs on six different image folders, with conv4, resnet12 and resnet18 at
    32, 84 and 128 px, were averaged into one `protonet | image_folder` row."""
    folder = {"_target_": "fewshot_cli.data.image_folder.ImageFolder", "name": "image_folder",
              "image_size": 84}
    resnet12 = {"_target_": "fewshot_cli.backbones.resnet12.ResNet12"}
    resnet18 = {"_target_": "fewshot_cli.backbones.torchvision_model.TorchvisionBackbone",
                "name": "resnet18", "weights": None}
    image_folder = {"dataset": "image_folder"}
    write_run(tmp_path / "a", "train", 80.0, seed=0, dataset={**folder, "root": "/x/flowers"},
              extra=image_folder)
    write_run(tmp_path / "b", "train", 90.0, seed=1, dataset={**folder, "root": "/x/birds"},
              extra=image_folder)
    write_run(tmp_path / "c", "train", 70.0, seed=2, dataset={**folder, "root": "/x/birds"},
              extra=image_folder, backbone=resnet12)
    write_run(tmp_path / "d", "train", 60.0, seed=3, dataset={**folder, "root": "/x/birds", "image_size": 32},
              extra=image_folder, backbone=resnet18)
    rows = {(row.method, row.dataset) for row in aggregate(find_runs(tmp_path))}
    assert rows == {("protonet", "image_folder (root=flowers)"), ("protonet", "image_folder (root=birds)"),
                    ("protonet [resnet12]", "image_folder (root=birds)"),
                    ("protonet [torchvision resnet18]", "image_folder (root=birds, image_size=32)")}


def test_input_defaults_match_the_dataset_configs() -> None:
    from fewshot_cli.reporting.collect import INPUT_KEYS

    conf = Path(__file__).resolve().parent.parent / "conf" / "dataset"
    assert set(INPUT_KEYS) == {path.stem for path in conf.glob("*.yaml")}
    for name, defaults in INPUT_KEYS.items():
        node = yaml.safe_load((conf / f"{name}.yaml").read_text())
        assert {key: node[key] for key in defaults} == defaults, name


def test_rows_say_where_the_best_checkpoint_was_what_ended_training_and_the_code(tmp_path: Path) -> None:
    """The reproduction table's columns: best.pt's episode (the training run's val/best_episode, also
    for an eval of its checkpoint), what ended training, and the git commit of the result."""
    root = tmp_path / "runs"
    provenance = {"git_commit": "abc1234", "command": "fewshot train ..."}
    write_run(root / "train", "train", 97.0, seed=0, extra={
        "val/best_episode": 2500, "train/stopped_by": "plateau", **provenance})
    write_run(root / "eval_20w", "eval", 93.0, seed=0, n_way=20, method=None, dataset=None,
              ckpt_path=str(root / "train" / "checkpoints" / "best.pt"),
              extra={"ckpt_episode": 2500, "git_commit": "def5678-dirty"})
    markdown = report(root, tmp_path / "out")
    assert "| 1000 | 3000 | 2500 | plateau | 2.0 min | 98.8 | -1.80 | cpu | abc1234 |" in markdown
    assert "| 1000 | 3000 | 2500 | plateau | 2.0 min | 96.0 | -3.00 | cpu | def5678-dirty |" in markdown
    rows = {r["n_way"]: r for r in csv.DictReader(io.StringIO((tmp_path / "out" / "report.csv").read_text()))}
    assert (rows["5"]["best_episode"], rows["5"]["stopped_by"], rows["5"]["git_commit"]) == (
        "2500", "plateau", "abc1234")


def test_report_curves_come_from_train_history_without_tensorboard_files(tmp_path: Path) -> None:
    # Stored results keep train_history.jsonl, not TensorBoard event files: the curve must come from it.
    write_run(tmp_path / "kept", "train", 98.0, seed=0)
    (tmp_path / "kept" / "train_history.jsonl").write_text(
        '{"episode": 100, "train/loss": 1.0}\n{"episode": 100, "val/acc": 91.0}\n'
        '{"episode": 200, "val/acc": 95.5}\n{"episode": 3')  # a partial last line from a kill
    figure = curves_figure(find_runs(tmp_path))
    assert figure is not None
    (line,) = figure.axes[0].lines
    assert list(line.get_xdata()) == [100, 200] and list(line.get_ydata()) == pytest.approx([91.0, 95.5])


def test_kochs_numbers_meet_the_koch_preset_as_it_runs(tmp_path: Path) -> None:
    """experiment=siamese_koch_omniglot trains backbone=koch at 105x105: its rows are labelled
    "siamese (bce) [koch]" and "image_size=105", and still get Koch's 92.0 and 70.3 (they got none)."""
    bce = {"_target_": "fewshot_cli.methods.siamese.SiameseNetwork", "loss": "bce"}
    koch_net = {"_target_": "fewshot_cli.backbones.koch.KochNet"}
    lake = {**OMNIGLOT, "split_scheme": "lake", "image_size": 105}
    write_run(tmp_path / "koch", "train", 80.0, seed=0, n_way=20, method=bce, dataset=lake,
              backbone=koch_net, extra={"method": "siamese (bce)", "test/within_group": True})
    mnist = {"_target_": "fewshot_cli.data.mnist.MNIST", "name": "mnist", "classes_split": "all",
             "image_size": 105}
    write_run(tmp_path / "on_mnist", "eval", 60.0, seed=0, n_way=10, method=None, dataset=mnist,
              ckpt_path=str(tmp_path / "koch" / "checkpoints" / "best.pt"),
              extra={"method": "siamese (bce)", "dataset": "mnist", "train_dataset": "omniglot"})
    rows = {(r.method, r.dataset): r for r in aggregate(find_runs(tmp_path))}
    assert rows[("siamese (bce) [koch]",
                 "omniglot (split_scheme=lake, image_size=105, within alphabet)")].paper == 92.0
    assert rows[("siamese (bce) [koch]", "omniglot→mnist (classes_split=all, image_size=105)")].paper == 70.3


def test_report_leaves_debug_runs_out_of_real_results(tmp_path: Path) -> None:
    # A newcomer's outputs/: `debug=fast` first (4 episodes), then the quick start, both seed 0. The
    # smoke run was averaged in as a second model (70.89 ± 187.55 against the paper's 98.8).
    write_run(tmp_path / "smoke", "train", 43.2, seed=0, extra={"debug": "fast", "train/episodes": 4})
    write_run(tmp_path / "quick", "train", 98.6, seed=0)
    # Neighbours: an eval of the smoke checkpoint (the eval itself had no debug=), and a debug run
    # older than metrics.json's "debug" field (only Hydra's overrides.yaml says so).
    write_run(tmp_path / "smoke_eval", "eval", 41.0, seed=0, method=None,
              ckpt_path=str(tmp_path / "smoke" / "checkpoints" / "best.pt"))
    write_run(tmp_path / "old_smoke", "train", 39.0, seed=0)
    (tmp_path / "old_smoke" / ".hydra" / "overrides.yaml").write_text("- debug=fast\n- seed=0\n")
    markdown = report(tmp_path, tmp_path / "out")
    (row,) = aggregate([r for r in find_runs(tmp_path) if not r.debug])
    assert row.n_models == 1 and row.acc == pytest.approx(98.6)
    assert "| 98.60 ± 0.20 |" in markdown and "43.2" not in markdown
    assert "Left out: 3 run(s) made with debug=" in markdown
    for name in ("smoke", "smoke_eval", "old_smoke"):
        assert name in markdown.split("Left out:")[1]


def test_report_of_debug_runs_only_shows_them_and_says_so(tmp_path: Path) -> None:
    write_run(tmp_path / "a", "train", 43.2, seed=0, extra={"debug": "fast"})
    write_run(tmp_path / "b", "train", 45.0, seed=1, extra={"debug": "fast"})
    markdown = report(tmp_path, tmp_path / "out")
    assert "| 2 (0, 1) |" in markdown or "2 (0, 1)" in markdown
    assert "Every run above was made with debug=" in markdown
