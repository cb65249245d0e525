"""`dataset=image_folder` and `dataset=mini_imagenet`: layouts (split CSVs, train/val/test subfolders,
ratio), formats and resizing, the training split's mean/std (sampler, checkpoint, predict), the
memory-mapped cache, and one-sentence errors. Every tree is written by the test in the real format.
"""

import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import compose_config
from image_trees import (
    MINI_IMAGES,
    class_image,
    wnid,
    write_class_folders,
    write_mini_imagenet,
    write_split_folders,
)
from PIL import Image

from fewshot_cli.data import image_folder as image_folder_module
from fewshot_cli.data.image_folder import ImageFolder, ratio_split
from fewshot_cli.errors import ConfigError, DatasetError
from fewshot_cli.tasks.build import build_dataset

SPLITS = ("train", "val", "test")


@pytest.fixture(scope="module")
def mini(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A miniImageNet-format tree (12 classes x 6 JPEGs, images/ flat); read-only by convention."""
    return write_mini_imagenet(tmp_path_factory.mktemp("mini_data"))


def csv_dataset(root: Path, cache: Path, **options) -> ImageFolder:
    return ImageFolder(str(root / "images"), str(cache), split_csv_dir=str(root), **options)


# ------------------------------------------------------------------ split CSVs (miniImageNet)

def test_split_csvs_give_their_classes_in_order_with_disjoint_splits(mini: Path, tmp_path: Path) -> None:
    data = csv_dataset(mini, tmp_path / "cache", image_size=32)
    splits = {s: data.load_split(s) for s in SPLITS}
    assert splits["train"].class_names == [wnid(i) for i in range(6)]
    assert splits["val"].class_names == [wnid(i) for i in range(6, 9)]
    assert splits["test"].class_names == [wnid(i) for i in range(9, 12)]
    for split in splits.values():
        assert split.images.dtype == torch.uint8 and split.images.shape[1:] == (3, 32, 32)
        assert torch.equal(split.class_counts(), torch.full((split.num_classes,), MINI_IMAGES))
    # Image n of a class is the file named n (natural order), decoded as predict decodes files.
    first = mini / "images" / f"{wnid(7)}00000002.jpg"
    assert torch.equal(splits["val"].images[MINI_IMAGES + 1], data.decode_files([first])[0])


def test_mini_imagenet_preset_reads_the_ravi_larochelle_layout(mini: Path, tmp_path: Path) -> None:
    cfg = compose_config("train", ["dataset=mini_imagenet", f"paths.data_dir={mini.parent}",
                                   f"paths.cache_dir={tmp_path}"], None)
    data = build_dataset(cfg.dataset)
    assert (data.name, data.image_size, data.channels, data.test_episodes) == ("mini_imagenet", 84, 3, 600)
    assert data.load_split("test").images.shape == (3 * MINI_IMAGES, 3, 84, 84)


def test_mini_imagenet_not_found_names_the_layout(tmp_path: Path) -> None:
    cfg = compose_config("train", ["dataset=mini_imagenet", f"paths.data_dir={tmp_path}",
                                   f"paths.cache_dir={tmp_path}"], None)
    with pytest.raises(DatasetError, match=r"mini_imagenet not found: .*mini_imagenet/images is not a "
                                           r"folder; expected .*\{train,val,test\}.csv with the header "
                                           r"filename,label.*Ravi & Larochelle"):
        build_dataset(cfg.dataset).load_split("train")


def test_images_in_label_folders_are_found_as_well(mini: Path, tmp_path: Path) -> None:
    nested = write_mini_imagenet(tmp_path / "nested", in_label_folders=True)
    flat = csv_dataset(mini, tmp_path / "cache", image_size=16).load_split("train")
    foldered = csv_dataset(nested, tmp_path / "cache", image_size=16).load_split("train")
    assert torch.equal(flat.images, foldered.images) and flat.class_names == foldered.class_names


def copy_tree(mini: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(mini, tmp_path / "copy" / "mini_imagenet"))


def test_a_class_in_two_csvs_is_refused(mini: Path, tmp_path: Path) -> None:
    root = copy_tree(mini, tmp_path)
    with open(root / "test.csv", "a") as handle:
        handle.write(f"{wnid(0)}00000001.jpg,{wnid(0)}\n")  # a training class
    with pytest.raises(DatasetError, match=rf"class '{wnid(0)}' is in both train.csv and test.csv"):
        csv_dataset(root, tmp_path / "cache").load_split("train")


def test_csv_errors_are_one_sentence(mini: Path, tmp_path: Path) -> None:
    root = copy_tree(mini, tmp_path)
    (root / "val.csv").write_text("image,class\na.jpg,n1\n")
    with pytest.raises(DatasetError, match=r"val.csv starts with image,class; expected the header "
                                           r"filename,label"):
        csv_dataset(root, tmp_path / "cache").load_split("train")
    shutil.copy(mini / "val.csv", root / "val.csv")
    (root / "images" / f"{wnid(10)}00000003.jpg").unlink()
    with pytest.raises(DatasetError, match=rf"test.csv line 10 names {wnid(10)}00000003.jpg, but "
                                           rf"neither .* nor .* exists"):
        csv_dataset(root, tmp_path / "cache").load_split("train")
    (root / "test.csv").unlink()
    with pytest.raises(DatasetError, match=r"test.csv not found; expected .*filename,label"):
        csv_dataset(root, tmp_path / "cache").load_split("train")


def test_moving_a_csv_row_is_not_hidden_by_the_cache(mini: Path, tmp_path: Path) -> None:
    root = copy_tree(mini, tmp_path)
    csv_dataset(root, tmp_path / "cache", image_size=16).load_split("train")
    # Class 11 moves from test.csv to val.csv: no image file changes, the split does.
    test_rows = (root / "test.csv").read_text().splitlines()
    moved = [row for row in test_rows if row.endswith(wnid(11))]
    (root / "test.csv").write_text("\n".join(r for r in test_rows if r not in moved) + "\n")
    (root / "val.csv").write_text((root / "val.csv").read_text() + "\n".join(moved) + "\n")
    data = csv_dataset(root, tmp_path / "cache", image_size=16)
    assert data.load_split("val").class_names[-1] == wnid(11)
    assert wnid(11) not in data.load_split("test").class_names


# ------------------------------------------------------------------ subfolders and ratio

def test_train_val_test_subfolders_are_the_split(tmp_path: Path) -> None:
    root = write_split_folders(tmp_path / "tree")
    data = ImageFolder(str(root), str(tmp_path / "cache"), image_size=16)
    assert data.load_split("val").class_names == ["val_c04", "val_c05"]
    assert data.load_split("train").num_classes == 4
    with pytest.raises(ConfigError, match=r"dataset.split applies to a split by ratio, but the train/, "
                                          r"val/ and test/ subfolders"):
        ImageFolder(str(root), str(tmp_path / "cache"), split=[0.5, 0.25, 0.25]).load_split("train")
    shutil.copytree(root / "train" / "train_c00", root / "test" / "train_c00")
    with pytest.raises(DatasetError, match=r"class 'train_c00' is in both .*train and .*test"):
        ImageFolder(str(root), str(tmp_path / "cache")).load_split("train")


def test_a_partial_split_folder_set_is_refused(tmp_path: Path) -> None:
    root = write_split_folders(tmp_path / "tree", {"train": 3, "test": 2})
    with pytest.raises(DatasetError, match=r"has train/, test/ but no val/: a split by subfolders needs"):
        ImageFolder(str(root), str(tmp_path / "cache")).load_split("train")


def test_ratio_split_is_seeded_disjoint_and_sized(tmp_path: Path) -> None:
    root = write_class_folders(tmp_path / "tree", classes=10, images=2, size=(20, 20))
    splits = {s: ImageFolder(str(root), str(tmp_path / "cache"), image_size=8).load_split(s).class_names
              for s in SPLITS}
    assert [len(splits[s]) for s in SPLITS] == [6, 2, 2]  # 0.64/0.16/0.20 of 10, rounded
    assert sorted(c for names in splits.values() for c in names) == [f"c{i:02d}" for i in range(10)]
    names = [f"c{i:02d}" for i in range(10)]
    assert ratio_split(names, [0.64, 0.16, 0.2], 0, root) == ratio_split(names, [0.64, 0.16, 0.2], 0, root)
    assert ratio_split(names, [0.64, 0.16, 0.2], 1, root) != ratio_split(names, [0.64, 0.16, 0.2], 0, root)
    # Another seed through the same cache dir: a split of its own, not the cached one.
    reseeded = ImageFolder(str(root), str(tmp_path / "cache"), image_size=8, split_seed=1)
    expected = ratio_split(names, [0.64, 0.16, 0.2], 1, root)["test"]
    assert reseeded.load_split("test").class_names == [names[c] for c in expected]
    # A class's rank depends only on its name: adding one moves at most a boundary class per split.
    grown = ratio_split([*names, "c10"], [0.64, 0.16, 0.2], 0, root)
    before = ratio_split(names, [0.64, 0.16, 0.2], 0, root)
    moved = sum(names[c] not in {([*names, "c10"])[g] for g in grown[s]} for s in SPLITS for c in before[s])
    assert moved <= 2


@pytest.mark.parametrize(("split", "message"), [
    ([0.5, 0.5], r"give three fractions"),
    ([0.8, 0.0, 0.2], r"each above 0"),
    ([0.6, 0.3, 0.3], r"summing to 1"),
])
def test_bad_ratios_are_refused_before_any_file_is_read(split: list[float], message: str,
                                                        tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=message):
        ImageFolder(str(tmp_path / "nowhere"), str(tmp_path), split=split)


def test_too_few_classes_for_a_ratio_split(tmp_path: Path) -> None:
    root = write_class_folders(tmp_path / "tree", classes=4, images=1, size=(8, 8))
    with pytest.raises(ConfigError, match=r"gives 4/0/0 of the 4 classes .* an episode needs 2 classes"):
        ImageFolder(str(root), str(tmp_path / "cache"), split=[0.9, 0.05, 0.05]).load_split("train")
    # A newcomer's input: 16 classes at [0.9, 0.05, 0.05] left one validation class and the error
    # spoke of "eval_episodes.n_way=5 is larger than the 1 classes", a way they never typed.
    many = write_class_folders(tmp_path / "sixteen", classes=16, images=1, size=(8, 8))
    with pytest.raises(ConfigError, match=r"gives 14/1/1 of the 16 classes .* an episode needs 2 classes"):
        ImageFolder(str(many), str(tmp_path / "cache"), split=[0.9, 0.05, 0.05]).load_split("train")


@pytest.mark.parametrize(("options", "message"), [
    ({"root": None}, r"dataset.root is not set; give dataset.root=DIR"),
    ({"channels": 4}, r"dataset.channels=4; use 1 \(grayscale\) or 3 \(RGB\)"),
    ({"resize": "pad"}, r"dataset.resize='pad'; use 'crop'"),
    ({"mean": [0.5, 0.5, 0.5]}, r"give both dataset.mean and dataset.std, or neither"),
])
def test_bad_options_are_one_sentence(options: dict, message: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=message):
        ImageFolder(**{"root": str(tmp_path), "cache_dir": str(tmp_path), **options})


def test_missing_root_and_empty_class_folder(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"image_folder not found: dataset.root=.*nowhere is not a "
                                           r"folder; expected .*/<class>/<image>"):
        ImageFolder(str(tmp_path / "nowhere"), str(tmp_path)).load_split("train")
    root = write_class_folders(tmp_path / "tree", classes=3, images=1, size=(8, 8))
    (root / "c03").mkdir()
    with pytest.raises(DatasetError, match=r"class folder .*c03 holds no images"):
        ImageFolder(str(root), str(tmp_path)).load_split("train")


# ------------------------------------------------------------------ files, formats, resizing

def test_hidden_entries_skipped_other_files_reported_once(tmp_path: Path,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    root = write_class_folders(tmp_path / "tree", classes=10, images=1, size=(8, 8))  # 2+ classes a split
    (root / ".ipynb_checkpoints").mkdir()
    (root / ".DS_Store").write_bytes(b"\0")
    (root / "c00" / "._0.png").write_bytes(b"not an image")  # macOS resource fork: hidden
    (root / "README.txt").write_text("my photos")
    (root / "c01" / "labels.json").write_text("{}")
    (root / "c02" / "more").mkdir()
    with caplog.at_level(logging.WARNING):
        data = ImageFolder(str(root), str(tmp_path / "cache"), image_size=8)
        total = sum(data.load_split(s).images.shape[0] for s in SPLITS)
    assert total == 10
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "skipped 3 entries" in warnings[0]
    assert "README.txt, c01/labels.json, c02/more/" in warnings[0]


def test_an_unreadable_image_names_the_file(tmp_path: Path) -> None:
    root = write_class_folders(tmp_path / "tree", classes=10, images=2, size=(8, 8))
    (root / "c01" / "1.png").write_bytes(b"\x89PNG truncated")
    with pytest.raises(DatasetError, match=r"cannot decode image .*c01/1.png"):
        ImageFolder(str(root), str(tmp_path / "cache")).load_split("train")


def write_formats(folder: Path) -> None:
    """One image per format and mode Pillow reads: RGB JPEG, RGBA PNG, 16-bit PNG, PGM, BMP, TIFF."""
    folder.mkdir(parents=True)
    rgb = class_image(0, 0, (30, 20))
    rgb.save(folder / "a.jpg")
    rgb.convert("RGBA").save(folder / "b.png")
    Image.fromarray(np.full((20, 30), 65535 // 2, dtype=np.uint16)).save(folder / "c.png")  # I;16
    rgb.convert("L").save(folder / "d.pgm")
    rgb.save(folder / "e.bmp")
    rgb.save(folder / "f.tiff")


@pytest.mark.parametrize("channels", [1, 3])
def test_every_format_and_mode_becomes_the_configured_channels(channels: int, tmp_path: Path) -> None:
    for name in ("u", "v", "w", "x", "y", "z"):  # 2 classes in each split
        write_formats(tmp_path / "tree" / name)
    data = ImageFolder(str(tmp_path / "tree"), str(tmp_path / "cache"), image_size=10, channels=channels,
                       split=[0.34, 0.33, 0.33])
    images = data.load_split("train").images
    assert images.shape == (12, channels, 10, 10)
    assert abs(float(images[2].float().mean()) - 128) < 1.5  # 16-bit mid-grey scaled, not clipped


def test_crop_keeps_the_aspect_ratio_and_stretch_does_not(tmp_path: Path) -> None:
    """A 3:1 image, white in its centre square and black at the sides."""
    pixels = np.zeros((20, 60), dtype=np.uint8)
    pixels[:, 20:40] = 255
    folder = tmp_path / "wide"
    folder.mkdir()
    Image.fromarray(pixels).save(folder / "w.png")
    crop = ImageFolder(str(tmp_path), str(tmp_path / "cache"), image_size=10, channels=1)
    stretch = ImageFolder(str(tmp_path), str(tmp_path / "cache"), image_size=10, channels=1,
                          resize="stretch")
    # Lanczos rings a little at the crop's edge (it samples just outside the box), hence 200.
    assert int(crop.decode_files([folder / "w.png"]).min()) >= 200
    squeezed = stretch.decode_files([folder / "w.png"])[0, 0]
    assert int(squeezed[:, 0].max()) <= 5 and int(squeezed[:, 5].min()) >= 250


def test_exif_orientation_is_applied_before_the_crop(tmp_path: Path) -> None:
    """A portrait photo stored landscape with EXIF orientation 6 (rotate 90 degrees clockwise)."""
    stored = np.zeros((20, 60, 3), dtype=np.uint8)
    stored[:, :30] = 255  # left half white: after the rotation it is the top half
    image = Image.fromarray(stored)
    exif = image.getexif()
    exif[0x0112] = 6
    image.save(tmp_path / "p.jpg", exif=exif, quality=95)
    decoded = ImageFolder(str(tmp_path), str(tmp_path), image_size=20, channels=1,
                          resize="stretch").decode_files([tmp_path / "p.jpg"])[0, 0].float()
    assert decoded[:8].mean() > 200 and decoded[12:].mean() < 50


# ------------------------------------------------------------------ mean/std, cache, mmap

def test_mean_and_std_are_the_training_splits(mini: Path, tmp_path: Path) -> None:
    data = csv_dataset(mini, tmp_path / "cache", image_size=24)
    train = data.load_split("train").images.double() / 255
    assert np.allclose(data.mean, train.mean((0, 2, 3)).numpy(), atol=1e-9)
    assert np.allclose(data.std, train.std((0, 2, 3), unbiased=False).numpy(), atol=1e-9)
    everything = torch.cat([data.load_split(s).images for s in SPLITS]).double() / 255
    assert not np.allclose(data.mean, everything.mean((0, 2, 3)).numpy(), atol=1e-3)
    given = csv_dataset(mini, tmp_path / "cache", image_size=24, mean=[0.5] * 3, std=[0.25] * 3)
    assert (given.mean, given.std) == ((0.5,) * 3, (0.25,) * 3)


def test_the_sampler_normalises_with_them(mini: Path, tmp_path: Path) -> None:
    from fewshot_cli.data.sampler import EpisodeSampler

    data = csv_dataset(mini, tmp_path / "cache", image_size=24)
    split = data.load_split("train")
    episode = EpisodeSampler(split, 6, 3, 3, seed=0, stream="train", mean=data.mean,
                             std=data.std).episode(0)
    pixels = torch.cat([episode.support_images, episode.query_images])  # every training image
    assert torch.allclose(pixels.mean((0, 2, 3)), torch.zeros(3), atol=1e-4)
    assert torch.allclose(pixels.std((0, 2, 3), unbiased=False), torch.ones(3), atol=1e-4)


def test_warm_cache_is_memory_mapped_and_decodes_nothing(mini: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    cold = csv_dataset(mini, tmp_path / "cache", image_size=16)
    expected = {s: cold.load_split(s).images.clone() for s in SPLITS}

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again although the cache entry fits")

    monkeypatch.setattr(image_folder_module, "decode_image", no_decoding)
    warm = csv_dataset(mini, tmp_path / "cache", image_size=16)
    for split in SPLITS:
        assert torch.equal(warm.load_split(split).images, expected[split])
    entry = next((tmp_path / "cache").glob("image_folder-*.pt"))
    maps = Path("/proc/self/maps")
    if maps.exists():
        assert str(entry) in maps.read_text()  # the pixels are mapped from the cache file
        # A CSV split is a view of the mapped entry, not a copy.
        train = warm.load_split("train").images
        assert train.untyped_storage().data_ptr() == warm._entry()["images"].untyped_storage().data_ptr()


def test_a_ratio_split_is_a_view_of_the_mapped_entry_too(tmp_path: Path) -> None:
    root = write_class_folders(tmp_path / "tree", classes=10, images=2, size=(8, 8))
    data = ImageFolder(str(root), str(tmp_path / "cache"), image_size=8, split=[0.5, 0.3, 0.2])
    entry = data._entry()["images"]
    for split in SPLITS:
        images = data.load_split(split).images
        assert images.untyped_storage().data_ptr() == entry.untyped_storage().data_ptr()
    assert sum(data.load_split(s).images.shape[0] for s in SPLITS) == entry.shape[0] == 20


def test_cache_file_of_a_ratio_split_refuses_another_ratio_split(tmp_path: Path) -> None:
    root = write_class_folders(tmp_path / "tree", classes=10, images=2, size=(8, 8))
    expected = ImageFolder(str(root), str(tmp_path / "cache"), image_size=8).load_split("val")
    entry = str(next((tmp_path / "cache").glob("image_folder-*.pt")))
    alone = ImageFolder(str(tmp_path / "gone"), str(tmp_path), image_size=8, cache_file=entry)
    assert alone.load_split("val").class_names == expected.class_names
    with pytest.raises(ConfigError, match=r"holds classes split by dataset.split=\[0.64, 0.16, 0.2\], "
                                          r"dataset.split_seed=0; set that"):
        ImageFolder(str(tmp_path / "gone"), str(tmp_path), image_size=8, cache_file=entry,
                    split_seed=2).load_split("val")


def test_cache_file_alone_reproduces_the_splits(mini: Path, tmp_path: Path) -> None:
    first = csv_dataset(mini, tmp_path / "cache", image_size=16)
    expected = first.load_split("val").images.clone()
    entry = next((tmp_path / "cache").glob("image_folder-*.pt"))
    alone = ImageFolder(str(tmp_path / "no_images_here"), str(tmp_path / "other"), image_size=16,
                        split_csv_dir=str(tmp_path / "no_csvs"), cache_file=str(entry))
    assert torch.equal(alone.load_split("val").images, expected)
    assert alone.mean == first.mean
    # A newcomer's input: without dataset.root it said "dataset.root is not set" although the
    # README says the folder is then not read.
    rootless = ImageFolder(None, str(tmp_path / "other"), image_size=16,
                           split_csv_dir=str(tmp_path / "no_csvs"), cache_file=str(entry))
    assert torch.equal(rootless.load_split("val").images, expected)


def test_a_zero_std_is_refused_before_training(tmp_path: Path) -> None:
    """A newcomer's input: dataset.std=[0.0,1.0,1.0] trained into a NaN loss blamed on the lr."""
    with pytest.raises(ConfigError, match=r"dataset.std=\[0.0, 1.0, 1.0\] must be positive in every channel"):
        ImageFolder(str(tmp_path), str(tmp_path / "cache"), mean=[0.5, 0.5, 0.5], std=[0.0, 1.0, 1.0])


# ------------------------------------------------------------------ train, checkpoint, predict

TINY = ["device=cpu", "debug=fast", "method=protonet",
        "train_episodes.n_way=3", "train_episodes.n_shot=1", "train_episodes.n_query=2",
        "eval_episodes.n_way=3", "eval_episodes.n_shot=1", "eval_episodes.n_query=2",
        "trainer.max_episodes=2", "trainer.val_episodes=2", "eval.n_episodes=2"]


def test_checkpoint_carries_the_training_stats_and_predict_needs_no_training_images(
        mini: Path, tmp_path: Path) -> None:
    from fewshot_cli.engine.checkpoint import load_checkpoint
    from fewshot_cli.tasks.predict import predict
    from fewshot_cli.tasks.train import train

    root = copy_tree(mini, tmp_path)
    train(compose_config("train", [*TINY, "dataset=image_folder", f"dataset.root={root / 'images'}",
                                   f"dataset.split_csv_dir={root}", "dataset.image_size=24",
                                   f"paths.cache_dir={tmp_path / 'cache'}"], tmp_path / "run"))
    best = tmp_path / "run" / "checkpoints" / "best.pt"
    saved = load_checkpoint(best)["config"]["dataset"]
    stats = csv_dataset(root, tmp_path / "cache", image_size=24)
    assert np.allclose(saved["mean"], stats.mean) and np.allclose(saved["std"], stats.std)
    support = tmp_path / "support"
    for index in (9, 10):
        (support / wnid(index)).mkdir(parents=True)
        shutil.copy(root / "images" / f"{wnid(index)}00000001.jpg", support / wnid(index))
    query = shutil.copy(root / "images" / f"{wnid(10)}00000001.jpg", tmp_path / "query.jpg")
    shutil.rmtree(root)  # predict must not need the training images, nor their statistics
    shutil.rmtree(tmp_path / "cache")
    results = predict(compose_config("predict", ["device=cpu", f"ckpt_path={best}",
                                                 f"support_dir={support}", f"query={query}"],
                                     tmp_path / "out"))
    assert results["predictions"][0]["top"][0]["class"] == wnid(10)  # its own support image


@pytest.mark.slow
def test_readme_command_trains_on_a_folder_of_class_folders(tmp_path: Path) -> None:
    """The README's `fewshot train ... dataset=image_folder dataset.root=my_images` on a small tree."""
    import subprocess
    import sys

    write_class_folders(tmp_path / "my_images", classes=10, images=6, suffix=".jpg")
    env = {**os.environ, "FEWSHOT_CACHE_DIR": str(tmp_path / "cache")}
    result = subprocess.run(
        [sys.executable, "-m", "fewshot_cli", "train", "method=protonet", "dataset=image_folder",
         "dataset.root=my_images", "dataset.image_size=84", "dataset.channels=3",
         "trainer.max_episodes=20", "trainer.val_every=10", "trainer.val_episodes=20",
         "eval.n_episodes=50", "device=cpu", "logger=none", "trainer.progress_bar=false",
         f"hydra.run.dir={tmp_path / 'run'}"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "test/acc" in (tmp_path / "run" / "metrics.json").read_text()
    assert "normalising with the training split's mean" in (tmp_path / "run" / "train.log").read_text()
