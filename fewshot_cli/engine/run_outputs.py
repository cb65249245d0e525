"""Files a run writes beside its checkpoints: metrics.json and the TensorBoard writer."""

import json
import logging
from pathlib import Path
from typing import Any

from fewshot_cli.engine.provenance import run_provenance

log = logging.getLogger(__name__)


def write_metrics(output_dir: Path, metrics: dict[str, Any]) -> Path:
    """Write metrics.json (accuracies in percent) and return its path.

    Adds `git_commit` and `command` to `metrics` (fewshot_cli/engine/provenance.py), so a stored
    result names the code and the command line that produced it.
    """
    metrics.update(run_provenance())
    path = output_dir / "metrics.json"
    path.write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    return path


def open_tensorboard(output_dir: Path, enabled: bool, purge_step: int | None = None) -> Any:
    """A SummaryWriter on output_dir/tb, or None when logger.tensorboard=false.

    purge_step: on resume, the first episode not covered by last.pt; TensorBoard hides the earlier
    events of this directory from that step on (the killed run logged them after its last.pt).
    """
    if not enabled:
        return None
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(log_dir=str(output_dir / "tb"), purge_step=purge_step)


def log_hparams(writer: Any, hparams: dict[str, Any], metrics: dict[str, float]) -> None:
    """One hparams entry in the run's own TensorBoard run: run_name='.', since without it every
    add_hparams call makes a new TensorBoard run beside the training curves."""
    if writer is None:
        return
    simple = {k: v for k, v in hparams.items() if isinstance(v, int | float | str | bool)}
    writer.add_hparams(simple, metrics, run_name=".")
