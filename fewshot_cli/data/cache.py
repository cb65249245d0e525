"""On-disk cache of decoded datasets, so images are decoded once per machine, not once per run.

An entry is keyed on the decode settings and on a stat pass over the files it was decoded from
(`file_fingerprint`), so an edited, added, removed or moved file, or a missing data folder, is never
hidden by a warm cache. A machine that carries only an entry (a GPU box without the data) names it
with `dataset.cache_file=<entry>.pt`, read as-is by `load_cache_file`.
"""

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from fewshot_cli.errors import DatasetError

log = logging.getLogger(__name__)

# 2: keys hold a file fingerprint; entries record their decode settings; 16-bit images are scaled.
CACHE_FORMAT_VERSION = 2
SETTINGS_ENTRY = "decode_settings"  # entry field holding {"v": version, **settings}


def file_fingerprint(root: str | os.PathLike[str], files: list[Path]) -> dict[str, Any]:
    """What a cache entry is decoded from, by a stat pass alone (no file is opened or decoded).

    Args:
        root: the folder the files were listed under.
        files: the files that will be decoded, all under `root`.

    Returns:
        {"root": `root` resolved (the same tree reached through a symlink or `~` shares an entry),
        "files": how many files, "stat": SHA-1 hex digest of every file's path relative to `root`
        (posix), size in bytes and modification time in ns, in sorted path order}. Adding, removing,
        renaming, moving (e.g. to another class folder), rewriting or touching a file changes it.

    Raises:
        DatasetError: a listed file vanished or cannot be stat-ed.
    """
    root = Path(root)
    prefix = os.path.join(root, "")
    rows = []
    for file in files:
        name = os.fspath(file)
        try:
            info = os.stat(name)
        except OSError as error:
            raise DatasetError(f"cannot read {file} ({error}); check the data folder {root}") from error
        # String slicing, not Path.relative_to: the fingerprint of Omniglot's 32,460 files is
        # taken on every run and should cost a fraction of a second.
        relative = name[len(prefix):] if name.startswith(prefix) else Path(file).relative_to(root).as_posix()
        rows.append((relative.replace(os.sep, "/"), info.st_size, info.st_mtime_ns))
    rows.sort()
    digest = hashlib.sha1(json.dumps(rows).encode()).hexdigest()
    return {"root": str(root.resolve()), "files": len(rows), "stat": digest}


def cache_file(cache_dir: str | os.PathLike[str], dataset: str, key: dict[str, Any]) -> Path:
    """Path of the cache entry for `dataset` decoded with the settings in `key`."""
    digest = hashlib.sha1(
        json.dumps({"v": CACHE_FORMAT_VERSION, **key}, sort_keys=True).encode()
    ).hexdigest()[:12]
    return Path(cache_dir).expanduser() / f"{dataset}-{digest}.pt"


def load_or_build(path: Path, build: Callable[[], dict[str, Any]],
                  settings: dict[str, Any] | None = None, mmap: bool = False) -> dict[str, Any]:
    """Return the cached dict at `path`, or call `build()` and cache its result.

    The entry holds only tensors, strings, numbers and lists (loaded with weights_only=True). It is
    written atomically; an unwritable cache dir or a damaged entry costs a rebuild, never a failed
    run. `settings` (the decode settings of the key, without the file fingerprint) are recorded in
    the entry under SETTINGS_ENTRY, so `load_cache_file` can check a copied entry fits the run.

    With `mmap`, tensors are memory-mapped from the file (`torch.load(mmap=True)`; private
    copy-on-write pages) instead of read into process memory: pixels are paged in when indexed and
    can be evicted, so a dataset larger than RAM loads, and processes on one machine share the page
    cache. A freshly built entry is then read back mapped, so the decode buffer is freed and a first
    run holds the same tensors as later runs (unless the cache could not be written).
    """
    if path.is_file():
        try:
            return torch.load(path, weights_only=True, mmap=mmap)
        except Exception as error:  # a damaged cache entry is rebuilt, not fatal
            log.warning("ignoring unreadable cache entry %s (%s); rebuilding it", path, error)
    data = build()
    if settings is not None:
        data[SETTINGS_ENTRY] = {"v": CACHE_FORMAT_VERSION, **settings}
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
    return torch.load(path, weights_only=True, mmap=True) if mmap else data


def load_cache_file(path: str | os.PathLike[str], settings: dict[str, Any],
                    data_folder: Path, mmap: bool = False) -> dict[str, Any]:
    """The decoded entry at `path` as-is (`dataset.cache_file`): `data_folder` is not read at all.

    For machines that carry only the cache: copy `<cache_dir>/<dataset>-<hash>.pt` from a machine
    that decoded the data (its path is logged when written) and name it in `dataset.cache_file`.

    Args:
        path: a cache entry written by `load_or_build`.
        settings: the decode settings this run needs (dataset name, image size, ...).
        data_folder: the folder a run without the option would read, named in the log.
        mmap: memory-map the tensors (see `load_or_build`).

    Returns:
        The entry's dict, the same tensors a run reading the data folder got when it wrote the entry.

    Raises:
        DatasetError: the file is missing or unreadable, or was decoded with other settings or by
            another cache format version.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise DatasetError(f"dataset.cache_file={path} does not exist; give a decoded cache entry "
                           f"(<cache_dir>/<dataset>-<hash>.pt) or dataset.cache_file=null to read "
                           f"{data_folder}")
    try:
        data = torch.load(path, weights_only=True, mmap=mmap)
    except Exception as error:  # any unpickling failure means the same thing to the user
        raise DatasetError(f"cannot read dataset.cache_file={path} ({error}); copy it again or set "
                           f"dataset.cache_file=null to decode {data_folder}") from error
    expected = {"v": CACHE_FORMAT_VERSION, **settings}
    found = data.get(SETTINGS_ENTRY) if isinstance(data, dict) else None
    if found != expected:
        raise DatasetError(f"dataset.cache_file={path} was decoded with {found}, but this run needs "
                           f"{expected}; use an entry decoded with these settings or "
                           f"dataset.cache_file=null to decode {data_folder}")
    log.info("using the decoded images in dataset.cache_file=%s as they are; %s is not read",
             path, data_folder)
    return data
