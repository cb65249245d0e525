"""Loading CLIP weights (Radford et al. 2021) through the `clip` package, with offline-friendly errors.

`method.model` is a name from `clip.available_models()` (RN50, ViT-B/32, ...) or the path of a local
file that `clip.load` reads: OpenAI's TorchScript archive or a plain `state_dict` saved with
`torch.save`. Named models are looked up in `method.download_root` (default
`${paths.cache_dir}/clip`) and then in clip's own default `~/.cache/clip`; when absent, `clip.load`
downloads them (SHA-256 checked). Without internet the error names the file to place and where.
"""

import contextlib
import logging
import os
import urllib.error
import warnings
from pathlib import Path
from types import ModuleType

from torch import nn

from fewshot_cli.errors import CheckpointError, ConfigError

log = logging.getLogger(__name__)

CLIP_DEFAULT_ROOT = "~/.cache/clip"


def import_clip() -> ModuleType:
    """`import clip` (PyPI clip-anytorch) without its pkg_resources deprecation warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        import clip
    return clip


def weight_file_name(model: str) -> str:
    """File name clip.load downloads for a named model, e.g. 'ViT-B/32' -> 'ViT-B-32.pt'."""
    return os.path.basename(import_clip().clip._MODELS[model])


def load_clip(model: str, download_root: str) -> nn.Module:
    """A CLIP model (`clip.model.CLIP`, float32, on the CPU, in eval mode, gradients off).

    Args:
        model: a `clip.available_models()` name or the path of a local CLIP weight file.
        download_root: folder holding (or receiving) the named models' .pt files.

    Raises:
        ConfigError: `model` is neither a known name nor an existing file.
        CheckpointError: the weights cannot be downloaded (offline) or the file is not CLIP's.
    """
    clip = import_clip()
    names = clip.available_models()
    root = str(Path(download_root).expanduser())
    if model in names:
        file_name = weight_file_name(model)
        root = _root_holding(file_name, root)
        if not (Path(root) / file_name).is_file():
            log.info("downloading CLIP %s into %s", model, root)
        source = model
    else:
        path = Path(model).expanduser()
        if not path.is_file():
            raise ConfigError(
                f"method.model={model!r} is neither a CLIP model name ({', '.join(names)}) nor an "
                f"existing weight file"
            )
        source = str(path)
    try:
        with warnings.catch_warnings():
            # clip.load tries torch.jit.load first (OpenAI's files are TorchScript archives)
            warnings.filterwarnings("ignore", message=".*torch.jit.load.*", category=FutureWarning)
            loaded, _ = clip.load(source, device="cpu", jit=False, download_root=root)
    except (urllib.error.URLError, OSError, RuntimeError) as error:
        if model in names:
            file_name = weight_file_name(model)
            raise CheckpointError(
                f"could not get CLIP {model} weights ({error}); without internet, download "
                f"{clip.clip._MODELS[model]} elsewhere and put it at {Path(root) / file_name} "
                f"(method.download_root={root}), or pass method.model=/path/to/{file_name}"
            ) from error
        raise CheckpointError(f"method.model={model!r} is not a CLIP weight file clip.load can read "
                              f"({error})") from error
    except (KeyError, ValueError) as error:  # a state_dict without CLIP's keys
        raise CheckpointError(f"method.model={model!r} is not a CLIP state_dict ({error!r})") from error
    loaded = loaded.float().eval()
    loaded.requires_grad_(False)
    return loaded


def _root_holding(file_name: str, root: str) -> str:
    """`root`, unless only clip's default cache already holds `file_name` (no second download)."""
    if (Path(root) / file_name).is_file():
        return root
    default = Path(CLIP_DEFAULT_ROOT).expanduser()
    with contextlib.suppress(OSError):
        if (default / file_name).is_file():
            return str(default)
    return root
