"""AT&T faces loader: generated PGM trees (layout, splits, natural order, cache, errors) and the real
dataset at ../shared/data/att_faces when present."""

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import find_shared_data
from PIL import Image

from fewshot_cli.data.att_faces import ATTFaces, natural_key
from fewshot_cli.errors import ConfigError, DatasetError

FACE_W, FACE_H = 23, 28  # the real faces are 92x112 (W x H); a quarter of that


def write_faces(data_dir: Path, people: int = 11, images: int = 6, seed: int = 0) -> Path:
    """Write data_dir/att_faces/s1..sN/1..M.pgm: each person a fixed random face plus noise."""
    rng = np.random.default_rng(seed)
    for person in range(1, people + 1):
        face = rng.integers(0, 256, size=(FACE_H, FACE_W))
        folder = data_dir / "att_faces" / f"s{person}"
        folder.mkdir(parents=True, exist_ok=True)
        for number in range(1, images + 1):
            pixels = np.clip(face + rng.normal(0, 12, face.shape), 0, 255).astype(np.uint8)
            Image.fromarray(pixels, mode="L").save(folder / f"{number}.pgm")
    return data_dir


@pytest.fixture
def faces_dir(tmp_path: Path) -> Path:
    return write_faces(tmp_path / "data")


def test_natural_order() -> None:
    assert sorted(["s10", "s2", "s1"], key=natural_key) == ["s1", "s2", "s10"]


def test_generated_pgm_tree_splits_whole_people(faces_dir: Path, tmp_path: Path) -> None:
    data = ATTFaces(str(faces_dir), str(tmp_path / "cache"), heldout=3, val_people=2, image_size=20)
    train, val, test = (data.load_split(s) for s in ("train", "val", "test"))
    assert train.class_names == [f"s{i}" for i in range(1, 7)]
    assert val.class_names == ["s7", "s8"]
    assert test.class_names == ["s9", "s10", "s11"]  # natural order: s10 and s11 come last
    assert train.images.shape == (36, 1, 20, 20) and train.images.dtype == torch.uint8
    assert torch.equal(train.class_counts(), torch.full((6,), 6))
    assert set(train.class_names).isdisjoint(test.class_names)


def test_validation_on_the_test_people_is_refused(faces_dir: Path, tmp_path: Path) -> None:
    """val_people=1 used to validate on the test people: best.pt was chosen on the test split."""
    with pytest.raises(ConfigError, match=r"val_people=0 must be at least 1: validating on the test"):
        ATTFaces(str(faces_dir), str(tmp_path / "cache"), heldout=3, val_people=0, image_size=20)
    data = ATTFaces(str(faces_dir), str(tmp_path / "cache"), heldout=3, val_people=1, image_size=20)
    assert data.load_split("val").class_names == ["s8"]
    assert data.load_split("test").class_names == ["s9", "s10", "s11"]


def test_images_keep_their_pixels_and_the_cache_is_per_folder(faces_dir: Path, tmp_path: Path) -> None:
    cache = str(tmp_path / "cache")
    data = ATTFaces(str(faces_dir), cache, heldout=2, val_people=1, image_size=FACE_H)
    original = np.asarray(Image.open(faces_dir / "att_faces" / "s1" / "1.pgm").resize(
        (FACE_H, FACE_H), Image.Resampling.LANCZOS))
    assert np.array_equal(data.load_split("train").images[0, 0].numpy(), original)
    other = write_faces(tmp_path / "other", people=4, images=3, seed=5)
    # Same cache dir and size, another folder: must not reuse the first tree's tensor.
    assert ATTFaces(str(other), cache, heldout=1, val_people=1, image_size=FACE_H).load_split(
        "train").images.shape[0] == 6


def test_decode_files_matches_the_training_tensors(faces_dir: Path, tmp_path: Path) -> None:
    data = ATTFaces(str(faces_dir), str(tmp_path / "cache"), heldout=2, val_people=1, image_size=16)
    decoded = data.decode_files([faces_dir / "att_faces" / "s1" / "1.pgm"])
    assert decoded.shape == (1, 1, 16, 16)
    assert torch.equal(decoded[0], data.load_split("train").images[0])


def test_missing_folder_names_the_layout(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"s1/1\.pgm"):
        ATTFaces(str(tmp_path), str(tmp_path / "cache")).load_split("train")


def test_person_without_images(faces_dir: Path, tmp_path: Path) -> None:
    (faces_dir / "att_faces" / "s99").mkdir()
    with pytest.raises(DatasetError, match="s99 holds no images"):
        ATTFaces(str(faces_dir), str(tmp_path / "cache"), heldout=1, val_people=1).load_split("train")


def test_unreadable_image_is_named(faces_dir: Path, tmp_path: Path) -> None:
    (faces_dir / "att_faces" / "s2" / "3.pgm").write_bytes(b"not an image")
    with pytest.raises(DatasetError, match=r"3\.pgm"):
        ATTFaces(str(faces_dir), str(tmp_path / "cache"), heldout=1, val_people=1).load_split("train")


def test_hidden_folders_and_files_are_neither_people_nor_images(faces_dir: Path, tmp_path: Path) -> None:
    tree = faces_dir / "att_faces"
    (tree / ".ipynb_checkpoints").mkdir()
    shutil.copy(tree / "s1" / "1.pgm", tree / ".ipynb_checkpoints" / "1-checkpoint.pgm")
    (tree / "s2" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (tree / "s2" / "._1.pgm").write_bytes(b"macOS resource fork, not a PGM")
    data = ATTFaces(str(faces_dir), str(tmp_path / "cache"), heldout=1, val_people=1, image_size=16)
    train = data.load_split("train")
    assert train.class_names == [f"s{i}" for i in range(1, 10)]
    assert torch.equal(train.class_counts(), torch.full((9,), 6))


def test_image_moved_to_another_person_changes_the_labels(faces_dir: Path, tmp_path: Path) -> None:
    """Same number of files, same sizes: only the key on paths notices the move."""
    cache = str(tmp_path / "cache")
    before = ATTFaces(str(faces_dir), cache, heldout=2, val_people=1, image_size=16).load_split("train")
    assert before.class_counts()[:2].tolist() == [6, 6]
    tree = faces_dir / "att_faces"
    (tree / "s1" / "6.pgm").rename(tree / "s2" / "7.pgm")
    after = ATTFaces(str(faces_dir), cache, heldout=2, val_people=1, image_size=16).load_split("train")
    assert after.class_counts()[:2].tolist() == [5, 7]
    moved = before.images[5]  # s1's sixth image
    assert torch.equal(after.images[after.labels == 1][-1], moved)


def test_replaced_image_after_caching_is_noticed(faces_dir: Path, tmp_path: Path) -> None:
    cache = str(tmp_path / "cache")
    ATTFaces(str(faces_dir), cache, heldout=1, val_people=1, image_size=16).load_split("train")
    bad = faces_dir / "att_faces" / "s3" / "2.pgm"
    bad.write_bytes(b"P5\n23 28\n255\n truncated")
    with pytest.raises(DatasetError, match=rf"cannot decode image {bad}"):
        ATTFaces(str(faces_dir), cache, heldout=1, val_people=1, image_size=16).load_split("train")


def test_cache_file_runs_without_the_faces(faces_dir: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = ATTFaces(str(faces_dir), str(cache), heldout=2, val_people=2, image_size=16)
    expected = {s: first.load_split(s) for s in ("train", "val", "test")}
    entry = next(cache.glob("att_faces-*.pt"))
    shutil.rmtree(faces_dir)
    with pytest.raises(DatasetError, match="is not a folder"):  # without the option: no silent cache
        ATTFaces(str(faces_dir), str(cache), heldout=2, val_people=2, image_size=16).load_split("train")
    carried = ATTFaces(str(faces_dir), str(tmp_path / "elsewhere"), heldout=2, val_people=2,
                       image_size=16, cache_file=str(entry))
    for split, data in expected.items():
        loaded = carried.load_split(split)
        assert torch.equal(loaded.images, data.images) and torch.equal(loaded.labels, data.labels)
        assert loaded.class_names == data.class_names


def test_too_many_held_out_people(faces_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="leaves no training people"):
        ATTFaces(str(faces_dir), str(tmp_path / "cache"), heldout=6, val_people=5).load_split("train")
    with pytest.raises(ConfigError, match="heldout"):
        ATTFaces(str(faces_dir), str(tmp_path / "cache"), heldout=0)


def test_folds_hold_out_disjoint_people_and_cover_everyone(faces_dir: Path, tmp_path: Path) -> None:
    cache = str(tmp_path / "cache")
    tests = []
    for fold in range(3):  # 11 people in blocks of 3: three whole blocks, s1 and s2 are never tested
        data = ATTFaces(str(faces_dir), cache, heldout=3, val_people=2, image_size=16, fold=fold)
        train, val, test = (set(data.load_split(s).class_names) for s in ("train", "val", "test"))
        assert len(train) + len(val) + len(test) == 11 and not (train & val or train & test or val & test)
        tests.append(test)
    assert tests[0] == {"s9", "s10", "s11"} and tests[1] == {"s6", "s7", "s8"}
    assert tests[2] == {"s3", "s4", "s5"}
    assert sum(len(t) for t in tests) == len(set().union(*tests))  # no person is tested twice
    # The input had the same shape: 40 people, heldout=3, fold 13 tested s39 and s40 again.
    # Here fold 3 would test s1, s2 and s11 (wrapping around): refused.
    with pytest.raises(ConfigError, match=r"give 3 disjoint folds \(0\.\.2\)"):
        ATTFaces(str(faces_dir), cache, heldout=3, val_people=2, fold=3).load_split("test")
    with pytest.raises(ConfigError, match="fold"):
        ATTFaces(str(faces_dir), cache, fold=-1)


def _real_faces() -> Path | None:
    return find_shared_data("att_faces/s40/10.pgm")


@pytest.mark.realdata
def test_real_att_faces(tmp_path: Path) -> None:
    root = _real_faces()
    if root is None:
        pytest.skip("AT&T faces not found under ../shared/data/att_faces")
    data = ATTFaces(str(root), str(tmp_path / "cache"), heldout=3, val_people=3, image_size=100)
    train, test = data.load_split("train"), data.load_split("test")
    assert train.images.shape == (340, 1, 100, 100)
    assert test.class_names == ["s38", "s39", "s40"]
    assert torch.equal(test.class_counts(), torch.full((3,), 10))
    split_30_5_5 = ATTFaces(str(root), str(tmp_path / "cache"), heldout=5, val_people=5)
    assert [split_30_5_5.load_split(s).num_classes for s in ("train", "val", "test")] == [30, 5, 5]


def test_forty_people_in_blocks_of_three_give_thirteen_disjoint_folds(tmp_path: Path) -> None:
    """The issue's exact input: `dataset.heldout=3`, fold 13 tested s39 and s40 again."""
    root = write_faces(tmp_path / "data", people=40, images=2)
    cache = str(tmp_path / "cache")
    last = ATTFaces(str(root), cache, heldout=3, val_people=3, image_size=8, fold=12)
    assert last.load_split("test").class_names == ["s2", "s3", "s4"]
    with pytest.raises(ConfigError, match=r"give 13 disjoint folds \(0\.\.12\)"):
        ATTFaces(str(root), cache, heldout=3, val_people=3, image_size=8, fold=13).load_split("test")
