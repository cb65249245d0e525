"""Accuracy-vs-episodes curves drawn from the runs' train_history.jsonl (or TensorBoard scalars)."""

import json
import logging
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING

from fewshot_cli.reporting.collect import RunRecord

if TYPE_CHECKING:
    from matplotlib.figure import Figure

log = logging.getLogger(__name__)

CURVE_TAG = "val/acc"


def read_scalars(tb_dir: Path, tag: str = CURVE_TAG) -> list[tuple[int, float]]:
    """(step, value) pairs of `tag` from every event file in tb_dir, sorted by step."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    points: dict[int, float] = {}
    for event_file in sorted(tb_dir.glob("events.out.tfevents.*")):
        accumulator = EventAccumulator(str(event_file), size_guidance={"scalars": 0})
        accumulator.Reload()
        if tag in accumulator.Tags().get("scalars", []):
            points.update({event.step: event.value for event in accumulator.Scalars(tag)})
    return sorted(points.items())


def read_history(history_path: Path, tag: str = CURVE_TAG) -> list[tuple[int, float]]:
    """(episode, value) pairs of `tag` from a train_history.jsonl, sorted by episode; unreadable
    lines are skipped (a run killed mid-write leaves a partial last line)."""
    points: dict[int, float] = {}
    for line in history_path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and tag in record and "episode" in record:
            points[int(record["episode"])] = float(record[tag])
    return sorted(points.items())


def run_curve(run_dir: Path, tag: str = CURVE_TAG) -> list[tuple[int, float]]:
    """A train run's `tag` curve: from train_history.jsonl when it has the tag (stored results keep
    it, not TensorBoard files), else from tb/; [] when neither has it."""
    history = run_dir / "train_history.jsonl"
    points = read_history(history, tag) if history.is_file() else []
    if not points and (run_dir / "tb").is_dir():
        points = read_scalars(run_dir / "tb", tag)
    return points


def plot_curves(records: list[RunRecord], path: Path) -> Path | None:
    """Write `curves_figure(records)` as a PNG at `path`; None (nothing written) if no curves."""
    figure = curves_figure(records)
    if figure is None:
        return None
    figure.savefig(path, dpi=120)
    return path


def curves_figure(records: list[RunRecord]) -> "Figure | None":
    """Validation accuracy (%) against training episodes: one panel per tested dataset (each with
    its own legend), one line per training run, labelled "method seed=S (run dir)".

    Source: CURVE_TAG in each train run's train_history.jsonl (the record kept with stored results),
    else in its tb/ event files; eval runs and runs without the tag are skipped. Datasets get
    separate panels because their accuracies are not on one scale (Omniglot near 99%, CIFAR-FS
    near 60%). None if no run has a curve.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    curves = _curves_by_dataset(records)
    if not curves:
        return None
    columns = min(3, len(curves))
    rows = -(-len(curves) // columns)
    figure = Figure(figsize=(6 * columns, 4.5 * rows))
    FigureCanvasAgg(figure)
    for panel, (dataset, lines) in enumerate(sorted(curves.items()), start=1):
        axis = figure.add_subplot(rows, columns, panel)
        for label, steps, values in lines:
            axis.plot(steps, values, marker=".", label=label)
        axis.set_title(dataset)
        axis.set_xlabel("training episodes")
        axis.set_ylabel("validation accuracy (%)")
        axis.grid(alpha=0.3)
        axis.legend(fontsize="small")
    figure.suptitle("Validation accuracy during training")
    figure.tight_layout()
    return figure


def _curves_by_dataset(records: list[RunRecord]) -> dict[str, list[tuple[str, tuple, tuple]]]:
    """dataset -> [(label, steps, values)] for every train run with a CURVE_TAG curve."""
    curves: dict[str, list[tuple[str, tuple, tuple]]] = defaultdict(list)
    for record in records:
        if record.task != "train":
            continue
        points = run_curve(record.path)
        if points:
            steps, values = zip(*points, strict=True)
            label = f"{record.method} seed={record.seed} ({record.path.name})"
            curves[record.dataset].append((label, steps, values))
    return dict(curves)
