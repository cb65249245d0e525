"""Accuracy-vs-episodes curves drawn from the runs' TensorBoard scalars."""

import logging
from pathlib import Path

from fewshot_cli.reporting.collect import RunRecord

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


def plot_curves(records: list[RunRecord], path: Path) -> Path | None:
    """One line per training run: validation accuracy against training episodes. None if no curves."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(8, 5))
    drawn = 0
    for record in records:
        tb_dir = record.path / "tb"
        if record.task != "train" or not tb_dir.is_dir():
            continue
        points = read_scalars(tb_dir)
        if not points:
            continue
        steps, values = zip(*points, strict=True)
        axis.plot(steps, values, marker=".", label=f"{record.method} {record.dataset} seed={record.seed}"
                  f" ({record.path.name})")
        drawn += 1
    if drawn == 0:
        plt.close(figure)
        return None
    axis.set_xlabel("training episodes")
    axis.set_ylabel("validation accuracy (%)")
    axis.set_title("Validation accuracy during training")
    axis.grid(alpha=0.3)
    axis.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
