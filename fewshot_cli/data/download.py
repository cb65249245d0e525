"""Downloads that leave nothing behind when they fail."""

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def removed_on_failure(root: Path) -> Iterator[None]:
    """Run a download into `root`; if it raises, delete what it created there, then re-raise.

    A failed torchvision download leaves folders, half-written archives and half-unpacked trees,
    which later look like a dataset in the wrong layout. Only paths that did not exist before are
    removed (a folder created by the download goes with everything in it); files and folders that
    were there before, the user's data, are never touched. Missing parents of `root` that the
    download created (e.g. the data dir itself) are removed too.

    Args:
        root: the folder the download writes into (e.g. `<data_dir>/omniglot`).
    """
    root = Path(root)
    # The highest missing folder on the way to root: everything under it will be new.
    top = root
    while not top.parent.exists() and top.parent != top.parent.parent:
        top = top.parent
    existed = top.exists()
    before = set(root.rglob("*")) if root.is_dir() else set()
    try:
        yield
    except BaseException:
        if not existed:
            _remove(top)
        elif root.is_dir():
            # Shortest paths first, so a new folder is removed whole and its contents skipped.
            for path in sorted(set(root.rglob("*")) - before, key=lambda p: len(p.parts)):
                if path.exists() or path.is_symlink():
                    _remove(path)
        raise


def _remove(path: Path) -> None:
    """Delete a file, link or folder tree; links are removed, never followed."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink(missing_ok=True)
