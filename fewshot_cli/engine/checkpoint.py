"""Checkpoints: plain containers that `torch.load(weights_only=True)` reads, written atomically.

A checkpoint carries its own config (as nanoGPT's do), so `fewshot eval` rebuilds the model from
the file alone.
"""

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from fewshot_cli import __version__
from fewshot_cli.config.targets import check_targets
from fewshot_cli.errors import CheckpointError

CHECKPOINT_FORMAT = 1


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Write `payload` to `path` via a temp file and rename, so a kill never leaves a torn file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": CHECKPOINT_FORMAT,
               "versions": {"fewshot_cli": __version__, "torch": str(torch.__version__)}, **payload}
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=path.name, suffix=".tmp",
                                     delete=False) as handle:
        temp_path = Path(handle.name)
    try:
        torch.save(payload, temp_path)
        os.replace(temp_path, path)
    finally:
        temp_path.unlink(missing_ok=True)


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a checkpoint written by save_checkpoint, refusing foreign code and foreign files."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; pass the path of a best.pt or last.pt")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise CheckpointError(f"cannot read checkpoint {path} ({error})") from error
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a fewshot-cli checkpoint (format {CHECKPOINT_FORMAT})")
    check_targets(payload.get("config", {}), where=f"{path.name}:config")
    return payload


def rng_state() -> dict[str, Any]:
    """Global torch RNG states (CPU and CUDA): for dropout-like randomness inside methods."""
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
