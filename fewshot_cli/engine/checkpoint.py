"""Checkpoints: plain containers that `torch.load(weights_only=True)` reads, written atomically.

A checkpoint carries its own config (as nanoGPT's do), so `fewshot eval` rebuilds the model from
the file alone.
"""

import os
import pickle
import re
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

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
    """Read a checkpoint written by save_checkpoint, refusing foreign code and foreign files.

    Raises:
        CheckpointError: the file is missing, is not a PyTorch file, holds pickled Python objects
            (never unpickled: weights_only=True), is a PyTorch file of another program, comes from
            another checkpoint format, or its config names a `_target_` outside this project's own
            classes (see config/targets.py). Each says in words what the file is not.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        found = sorted(str(p) for p in path.glob("**/checkpoints/*.pt"))[:3]
        hint = f" (e.g. {', '.join(found)})" if found else ""
        raise CheckpointError(f"{path} is a folder; pass the best.pt or last.pt file under its "
                              f"checkpoints/ folder{hint}")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; pass the path of a best.pt or last.pt")
    payload = _read_torch_file(path)
    if not isinstance(payload, dict):
        raise CheckpointError(f"{path} is a PyTorch file holding a {type(payload).__name__}, not a "
                              f"fewshot-cli checkpoint; {NOT_OURS_HINT}")
    if "format" not in payload or "config" not in payload or "model" not in payload:
        keys = ", ".join(sorted(str(k) for k in payload)[:6]) or "none"
        raise CheckpointError(f"{path} is a PyTorch file but not a fewshot-cli checkpoint (it has no "
                              f"format/config/model entries; its keys: {keys}); {NOT_OURS_HINT}")
    if payload["format"] != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is a fewshot-cli checkpoint of format {payload['format']!r}, "
                              f"which this version (format {CHECKPOINT_FORMAT}) cannot read; use the "
                              f"fewshot-cli version that wrote it ({_writer_version(payload)})")
    check_targets(payload["config"], where=f"{path.name}:config")
    return payload


NOT_OURS_HINT = "pass the best.pt or last.pt under <run dir>/checkpoints/ that `fewshot train` wrote"


def _read_torch_file(path: Path) -> Any:
    """torch.load with weights_only=True (no code can run), with errors that say what the file is."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        found = re.search(r"(?:Unsupported global: GLOBAL|unsupported GLOBAL) ([\w.]+)", str(error))
        if found:  # a pickled class or function: loading it would run code
            raise CheckpointError(
                f"{path} is a PyTorch file holding pickled Python objects ({found.group(1)}), such as "
                f"a whole model or another program's checkpoint; fewshot-cli never unpickles code "
                f"from a checkpoint; {NOT_OURS_HINT}") from error
        raise _not_a_torch_file(path) from error
    except Exception as error:  # zip, EOF, magic-number and decoding errors: not a torch.save file
        raise _not_a_torch_file(path) from error


def _not_a_torch_file(path: Path) -> CheckpointError:
    return CheckpointError(f"{path} is not a PyTorch checkpoint: it is {_file_kind(path)}; "
                           f"{NOT_OURS_HINT}")


def _file_kind(path: Path) -> str:
    """What a file that torch.load cannot read is, in words."""
    with path.open("rb") as handle:
        head = handle.read(4096)
    if not head:
        return "an empty file"
    if zipfile.is_zipfile(path):
        return "a zip archive that torch.save did not write"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return "a binary file that torch.save did not write"
    return "a text file"


def _writer_version(payload: dict[str, Any]) -> str:
    versions = payload.get("versions")
    return str(versions.get("fewshot_cli", "unknown")) if isinstance(versions, dict) else "unknown"


def config_for_rebuilding(config: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint's config as the model is rebuilt from it: pretrained weights not fetched.

    A backbone trained from pretrained weights (`backbone.weights=IMAGENET1K_V1`) gets every weight
    from the checkpoint's state dict, so building it must not need (or download) the original
    weight file: `weights` becomes null in a copy; the checkpoint itself keeps the record.
    """
    def strip(node: Any) -> Any:
        if isinstance(node, dict):
            stripped = {key: strip(value) for key, value in node.items()}
            if str(stripped.get("_target_", "")).endswith(".TorchvisionBackbone") and stripped.get("weights"):
                stripped["weights"] = None
            return stripped
        if isinstance(node, list):
            return [strip(value) for value in node]
        return node

    return strip(config)


# Config values that size a network's weights: a checkpoint only runs where they are the same.
SHAPE_KEYS = ("dataset.image_size", "dataset.channels", "method.n_way", "method.image_size",
              "method.image_channels", "method.input_shape")


def load_model_weights(model: torch.nn.Module, checkpoint: dict[str, Any], run_config: Any,
                       where: str = "the checkpoint") -> None:
    """model.load_state_dict(checkpoint["model"]), with a mismatch explained in config terms.

    A checkpoint evaluated at another image size (`+dataset.image_size=56` on a 28x28 MAML
    checkpoint) builds a head of another size, and torch reports `size mismatch for head.weight`;
    this names the config values that differ from the checkpoint's instead.

    Args:
        model: the method built from `run_config`.
        checkpoint: a payload from load_checkpoint (its "config" is what trained the weights).
        run_config: this run's config (DictConfig or container).
        where: the checkpoint's name in the message.
    Raises:
        CheckpointError: the weights do not fit the model built from this config.
    """
    try:
        model.load_state_dict(checkpoint["model"])
    except RuntimeError as error:
        first = next((line.strip() for line in str(error).splitlines() if "size mismatch" in line
                      or "Missing key" in line or "Unexpected key" in line), str(error).splitlines()[0])
        saved = OmegaConf.create(checkpoint.get("config") or {})
        current = run_config if OmegaConf.is_config(run_config) else OmegaConf.create(run_config)
        differences = [f"{key}={_value(saved, key)} (this run: {_value(current, key)})"
                       for key in SHAPE_KEYS if _value(saved, key) != _value(current, key)]
        needs = (f"it was trained with {', '.join(differences)}; run with the checkpoint's values"
                 if differences else "was it trained with another method or backbone option?")
        raise CheckpointError(f"the weights of {where} do not fit the model this config builds "
                              f"({first.rstrip('.')}): {needs}") from error


def _value(config: Any, key: str) -> Any:
    value = OmegaConf.select(config, key, default=None, throw_on_resolution_failure=False)
    return OmegaConf.to_container(value) if OmegaConf.is_config(value) else value


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
