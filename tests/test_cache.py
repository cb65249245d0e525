"""The decode cache's key (a stat pass over the files read), cache-only reading, and downloads that
leave nothing behind when they fail."""

import os
from pathlib import Path

import pytest
import torch

from fewshot_cli.data.cache import (
    CACHE_FORMAT_VERSION,
    SETTINGS_ENTRY,
    cache_file,
    file_fingerprint,
    load_cache_file,
    load_or_build,
)
from fewshot_cli.data.download import removed_on_failure
from fewshot_cli.errors import DatasetError


def tree(root: Path) -> list[Path]:
    for cls, names in (("a", ("1.png", "2.png")), ("b", ("1.png",))):
        (root / cls).mkdir(parents=True, exist_ok=True)
        for name in names:
            (root / cls / name).write_bytes(f"{cls}/{name}".encode())
    return sorted(root.rglob("*.png"))


def test_fingerprint_follows_paths_sizes_and_times_only(tmp_path: Path) -> None:
    root = tmp_path / "data"
    files = tree(root)
    first = file_fingerprint(root, files)
    assert first == file_fingerprint(root, list(reversed(files)))  # order of listing is irrelevant
    assert first["root"] == str(root.resolve()) and first["files"] == 3
    (root / "a" / "2.png").rename(root / "b" / "2.png")  # moved to another class
    moved = file_fingerprint(root, sorted(root.rglob("*.png")))
    assert moved != first
    info = (root / "b" / "1.png").stat()
    os.utime(root / "b" / "1.png", ns=(info.st_atime_ns, info.st_mtime_ns + 1_000_000_000))
    assert file_fingerprint(root, sorted(root.rglob("*.png"))) != moved
    (tmp_path / "link").symlink_to(root)  # the same tree through a symlink: the same key
    linked = file_fingerprint(tmp_path / "link", sorted((tmp_path / "link").rglob("*.png")))
    assert linked == file_fingerprint(root, sorted(root.rglob("*.png")))


def test_fingerprint_of_a_vanished_file_is_a_dataset_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"cannot read .*gone\.png"):
        file_fingerprint(tmp_path, [tmp_path / "gone.png"])


def test_build_runs_once_per_key_and_records_its_settings(tmp_path: Path) -> None:
    calls = []

    def build() -> dict:
        calls.append(1)
        return {"images": torch.arange(6, dtype=torch.uint8)}

    settings = {"dataset": "toy", "image_size": 3}
    path = cache_file(tmp_path, "toy", {**settings, "stat": "abc"})
    first = load_or_build(path, build, settings)
    second = load_or_build(path, build, settings)
    assert calls == [1] and torch.equal(first["images"], second["images"])
    assert second[SETTINGS_ENTRY] == {"v": CACHE_FORMAT_VERSION, **settings}
    assert cache_file(tmp_path, "toy", {**settings, "stat": "abd"}) != path
    carried = load_cache_file(path, settings, tmp_path / "unread")
    assert torch.equal(carried["images"], first["images"])


def test_cache_file_without_settings_or_unreadable_is_refused(tmp_path: Path) -> None:
    old = tmp_path / "old.pt"
    torch.save({"images": torch.zeros(2)}, old)  # written by cache format 1: no settings
    with pytest.raises(DatasetError, match=r"was decoded with None"):
        load_cache_file(old, {"dataset": "toy"}, tmp_path)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a tensor file")
    with pytest.raises(DatasetError, match=r"cannot read dataset.cache_file=.*bad\.pt"):
        load_cache_file(bad, {"dataset": "toy"}, tmp_path)


def test_failed_download_removes_only_what_it_created(tmp_path: Path) -> None:
    root = tmp_path / "data" / "omniglot"
    (root / "omniglot-py" / "images_background").mkdir(parents=True)
    (root / "omniglot-py" / "images_background" / "mine.png").write_bytes(b"user")
    (root / "notes.txt").write_text("user")
    before = sorted(root.rglob("*"))
    with pytest.raises(OSError, match="cut off"), removed_on_failure(root):
        (root / "omniglot-py" / "images_evaluation" / "Latin").mkdir(parents=True)
        (root / "omniglot-py" / "images_evaluation.zip").write_bytes(b"PK")
        (root / "omniglot-py" / "images_background" / "new.png").write_bytes(b"half")
        raise OSError("cut off")
    assert sorted(root.rglob("*")) == before


def test_failed_download_into_a_missing_data_dir_removes_the_folders_it_made(tmp_path: Path) -> None:
    root = tmp_path / "new_data" / "mnist"
    with pytest.raises(ConnectionError), removed_on_failure(root):
        (root / "MNIST" / "raw").mkdir(parents=True)
        raise ConnectionError("no network")
    assert list(tmp_path.iterdir()) == []


def test_successful_download_keeps_everything(tmp_path: Path) -> None:
    root = tmp_path / "cifar100"
    with removed_on_failure(root):
        (root / "cifar-100-python").mkdir(parents=True)
    assert (root / "cifar-100-python").is_dir()
