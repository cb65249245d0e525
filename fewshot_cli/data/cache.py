"""On-disk cache of decoded datasets, so images are decoded once per machine, not once per run."""

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)

CACHE_FORMAT_VERSION = 1


def cache_file(cache_dir: str | os.PathLike[str], dataset: str, key: dict[str, Any]) -> Path:
    """Path of the cache entry for `dataset` decoded with the settings in `key`."""
    digest = hashlib.sha1(
        json.dumps({"v": CACHE_FORMAT_VERSION, **key}, sort_keys=True).encode()
    ).hexdigest()[:12]
    return Path(cache_dir).expanduser() / f"{dataset}-{digest}.pt"


def load_or_build(path: Path, build: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Return the cached dict at `path`, or call `build()` and cache its result.

    The entry holds only tensors, strings and lists (loaded with weights_only=True). It is written
    atomically; an unwritable cache dir or a damaged entry costs a rebuild, never a failed run.
    """
    if path.is_file():
        try:
            return torch.load(path, weights_only=True)
        except Exception as error:  # a damaged cache entry is rebuilt, not fatal
            log.warning("ignoring unreadable cache entry %s (%s); rebuilding it", path, error)
    data = build()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as handle:
            temp_path = Path(handle.name)
        torch.save(data, temp_path)
        temp_path.chmod(0o644)  # NamedTemporaryFile creates 0600; the cache may be shared
        os.replace(temp_path, path)
        log.info("cached decoded images at %s", path)
    except OSError as error:
        log.warning("cannot write cache %s (%s); images will be decoded again next run", path, error)
    return data
