"""CIFAR-100 and CIFAR-FS from small files written in the real pickle format (no network)."""

import pickle
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import compose_config
from hydra.utils import instantiate

from fewshot_cli.data.cifar import CIFAR100, CIFARFS, read_cifar100
from fewshot_cli.data.cifar_fs_splits import CIFAR_FS_SPLITS
from fewshot_cli.data.sampler import EpisodeSampler
from fewshot_cli.errors import DatasetError

# The 100 fine label names of CIFAR-100's meta file, alphabetical (an independent copy, so the
# CIFAR-FS lists are checked against it rather than against themselves).
CIFAR100_FINE_NAMES = (
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle", "bottle",
    "bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle", "caterpillar", "cattle",
    "chair", "chimpanzee", "clock", "cloud", "cockroach", "couch", "crab", "crocodile", "cup",
    "dinosaur", "dolphin", "elephant", "flatfish", "forest", "fox", "girl", "hamster", "house",
    "kangaroo", "keyboard", "lamp", "lawn_mower", "leopard", "lion", "lizard", "lobster", "man",
    "maple_tree", "motorcycle", "mountain", "mouse", "mushroom", "oak_tree", "orange", "orchid",
    "otter", "palm_tree", "pear", "pickup_truck", "pine_tree", "plain", "plate", "poppy", "porcupine",
    "possum", "rabbit", "raccoon", "ray", "road", "rocket", "rose", "sea", "seal", "shark", "shrew",
    "skunk", "skyscraper", "snail", "snake", "spider", "squirrel", "streetcar", "sunflower",
    "sweet_pepper", "table", "tank", "telephone", "television", "tiger", "tractor", "train", "trout",
    "tulip", "turtle", "wardrobe", "whale", "willow_tree", "wolf", "woman", "worm",
)


def write_fake_cifar100(folder: Path, train_per_class: int = 3, test_per_class: int = 2) -> Path:
    """Write cifar-100-python/{train,test,meta} into `folder` as the real files are laid out.

    Dicts with byte keys (what Python 2's pickles give under encoding="bytes"): b"data" uint8
    [N, 3072] (red plane, green plane, blue plane), b"fine_labels", b"coarse_labels",
    b"fine_label_names". Every pixel of an image is its fine label, except that the green plane
    is 200 and the first pixel of the red plane is 255, so the layout can be checked.
    """
    target = folder / "cifar-100-python"
    target.mkdir(parents=True, exist_ok=True)
    for part, per_class in (("train", train_per_class), ("test", test_per_class)):
        labels = [c for c in range(100) for _ in range(per_class)]
        data = np.repeat(np.asarray(labels, dtype=np.uint8)[:, None], 3072, axis=1)
        data[:, 1024:2048] = 200
        data[:, 0] = 255
        entry = {b"batch_label": f"{part} batch".encode(), b"filenames": [b"x.png"] * len(labels),
                 b"data": data, b"fine_labels": labels, b"coarse_labels": [0] * len(labels)}
        with (target / part).open("wb") as handle:
            pickle.dump(entry, handle)
    meta = {b"fine_label_names": [n.encode() for n in CIFAR100_FINE_NAMES],
            b"coarse_label_names": [b"aquatic_mammals"] * 20}
    with (target / "meta").open("wb") as handle:
        pickle.dump(meta, handle)
    return target


@pytest.fixture(scope="module")
def cifar_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir holding data_dir/cifar100/cifar-100-python with 3 + 2 images per class."""
    data_dir = tmp_path_factory.mktemp("cifar_data")
    write_fake_cifar100(data_dir / "cifar100")
    return data_dir


def test_cifar_fs_split_lists_are_the_published_64_16_20() -> None:
    sizes = {split: len(names) for split, names in CIFAR_FS_SPLITS.items()}
    assert sizes == {"train": 64, "val": 16, "test": 20}
    union = [n for names in CIFAR_FS_SPLITS.values() for n in names]
    assert len(set(union)) == 100
    assert set(union) == set(CIFAR100_FINE_NAMES)
    # Spot checks against Bertinetto et al.'s split files.
    assert {"baby", "bed", "pickup_truck", "sweet_pepper", "worm"} <= set(CIFAR_FS_SPLITS["test"])
    assert {"otter", "maple_tree", "sea", "tractor"} <= set(CIFAR_FS_SPLITS["val"])


def test_read_cifar100_decodes_the_pickle_layout(cifar_data_dir: Path) -> None:
    decoded = read_cifar100(cifar_data_dir / "cifar100" / "cifar-100-python")
    assert decoded["label_names"] == list(CIFAR100_FINE_NAMES)
    images, labels = decoded["train_images"], decoded["train_labels"]
    assert images.dtype == torch.uint8 and images.shape == (300, 3, 32, 32)
    assert decoded["test_images"].shape == (200, 3, 32, 32)
    # 3072 values = red plane, green plane, blue plane, each a row-major 32x32 image.
    assert int(images[7, 0, 0, 0]) == 255 and int(images[7, 0, 0, 1]) == int(labels[7])
    assert (images[:, 1] == 200).all()
    assert torch.equal(images[:, 2, 5, 5].long(), labels)


def test_cifar100_splits_are_the_official_partition(cifar_data_dir: Path, tmp_path: Path) -> None:
    dataset = CIFAR100(str(cifar_data_dir), str(tmp_path), download=False)
    test = dataset.load_split("test")
    assert test.images.shape == (200, 3, 32, 32) and test.num_classes == 100
    assert test.class_names[1] == "aquarium fish"  # readable, as CLIP's prompts use them
    # The official training images: the last 20% held out as val (all classes, like MNIST `all`),
    # so `fewshot train dataset=cifar100` runs; train and val together are all 300.
    train, val = dataset.load_split("train"), dataset.load_split("val")
    assert (train.images.shape[0], val.images.shape[0]) == (240, 60)
    assert dataset.zero_shot_benchmark and dataset.splits_share_classes


def test_cifar_fs_split_sizes_and_class_mapping(cifar_data_dir: Path, tmp_path: Path) -> None:
    dataset = CIFARFS(str(cifar_data_dir), str(tmp_path), download=False, name="cifar_fs")
    assert not dataset.zero_shot_benchmark
    for split, n_classes in (("train", 64), ("val", 16), ("test", 20)):
        images = dataset.load_split(split)
        assert images.num_classes == n_classes
        assert images.images.shape == (n_classes * 5, 3, 32, 32)  # train + test images pooled
        assert (images.class_counts() == 5).all()
        # The blue plane holds the fine label: every image sits under its own class.
        fine = [CIFAR100_FINE_NAMES.index(n) for n in CIFAR_FS_SPLITS[split]]
        assert torch.equal(images.images[:, 2, 3, 3].long(), torch.tensor(fine)[images.labels])
    assert "sweet pepper" in dataset.load_split("test").class_names


def test_cifar_fs_episodes_are_normalised(cifar_data_dir: Path, tmp_path: Path) -> None:
    mean, std = [0.5071, 0.4865, 0.4409], [0.2673, 0.2564, 0.2762]
    dataset = CIFARFS(str(cifar_data_dir), str(tmp_path), download=False, mean=mean, std=std)
    sampler = EpisodeSampler(dataset.load_split("test"), n_way=5, n_shot=1, n_query=2, seed=0,
                             stream="test", mean=dataset.mean, std=dataset.std)
    episode = sampler.episode(0)
    assert episode.support_images.shape == (5, 3, 32, 32)
    green = (200 / 255 - mean[1]) / std[1]
    assert torch.allclose(episode.query_images[:, 1], torch.full_like(episode.query_images[:, 1], green))
    assert all(name.replace(" ", "_") in CIFAR_FS_SPLITS["test"] for name in episode.class_names)


def test_deleted_files_are_not_hidden_by_the_cache_but_cache_file_runs_without_them(
        tmp_path: Path) -> None:
    data_dir, cache_dir = tmp_path / "data", tmp_path / "cache"
    folder = write_fake_cifar100(data_dir / "cifar100")
    first = CIFARFS(str(data_dir), str(cache_dir), download=False).load_split("val")
    entry = next(cache_dir.glob("cifar100-*.pt"))
    for name in ("train", "test", "meta"):
        (folder / name).unlink()
    with pytest.raises(DatasetError, match=r"CIFAR-100 not found: expected .*cifar-100-python"):
        CIFARFS(str(data_dir), str(cache_dir), download=False).load_split("val")
    # CIFAR100 and CIFARFS share the decoded entry.
    carried = CIFARFS(str(data_dir), str(cache_dir), download=False, cache_file=str(entry))
    second = carried.load_split("val")
    assert torch.equal(first.images, second.images) and torch.equal(first.labels, second.labels)
    test = CIFAR100(str(data_dir), str(cache_dir), cache_file=str(entry)).load_split("test")
    assert test.images.shape[0] == 200


def test_rewritten_file_is_decoded_again(tmp_path: Path) -> None:
    data_dir, cache_dir = tmp_path / "data", tmp_path / "cache"
    write_fake_cifar100(data_dir / "cifar100")
    assert CIFAR100(str(data_dir), str(cache_dir), download=False).load_split("test").images.shape[0] == 200
    write_fake_cifar100(data_dir / "cifar100", test_per_class=3)
    assert CIFAR100(str(data_dir), str(cache_dir), download=False).load_split("test").images.shape[0] == 300


def test_torchvision_default_layout_is_accepted(tmp_path: Path) -> None:
    write_fake_cifar100(tmp_path / "data")  # data_dir/cifar-100-python, no cifar100/ level
    split = CIFAR100(str(tmp_path / "data"), str(tmp_path / "cache"), download=False).load_split("test")
    assert split.images.shape[0] == 200


def test_missing_files_name_the_expected_layout(tmp_path: Path) -> None:
    dataset = CIFAR100(str(tmp_path / "empty"), str(tmp_path / "cache"), download=False)
    with pytest.raises(DatasetError, match=r"cifar100/cifar-100-python/\{train,test,meta\}"):
        dataset.load_split("test")


def test_offline_download_failure_is_a_dataset_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                     ) -> None:
    calls = []

    class OfflineCIFAR100:
        def __init__(self, root: str, train: bool = True, download: bool = False) -> None:
            calls.append((root, download))
            # What a cut-off download leaves: the folder and half an archive.
            Path(root).mkdir(parents=True)
            (Path(root) / "cifar-100-python.tar.gz").write_bytes(b"\x1f\x8b partial")
            raise urllib.error.URLError("no network")

    monkeypatch.setattr("torchvision.datasets.CIFAR100", OfflineCIFAR100)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "mine.txt").write_text("user data")
    dataset = CIFAR100(str(tmp_path / "empty"), str(tmp_path / "cache"), download=True)
    with pytest.raises(DatasetError, match=r"could not download CIFAR-100.*cifar-100-python"):
        dataset.load_split("test")
    assert calls == [(str(tmp_path / "empty" / "cifar100"), True)]
    assert [p.name for p in (tmp_path / "empty").rglob("*")] == ["mine.txt"]


def test_damaged_pickle_is_reported(tmp_path: Path) -> None:
    folder = write_fake_cifar100(tmp_path / "data" / "cifar100")
    (folder / "test").write_bytes(b"not a pickle")
    with pytest.raises(DatasetError, match="cannot read CIFAR-100 file"):
        CIFAR100(str(tmp_path / "data"), str(tmp_path / "cache"), download=False).load_split("test")


def test_image_size_resizes_once(cifar_data_dir: Path, tmp_path: Path) -> None:
    split = CIFARFS(str(cifar_data_dir), str(tmp_path), download=False, image_size=16).load_split("test")
    assert split.images.shape == (100, 3, 16, 16) and split.images.dtype == torch.uint8


def test_dataset_options_compose_and_build(cifar_data_dir: Path, tmp_path: Path) -> None:
    paths = [f"paths.data_dir={cifar_data_dir}", f"paths.cache_dir={tmp_path}",
             f"paths.output_dir={tmp_path / 'out'}"]
    for option, cls in (("cifar_fs", CIFARFS), ("cifar100", CIFAR100)):
        cfg = compose_config("train", [f"dataset={option}", *paths])
        assert cfg.dataset.channels == 3 and cfg.dataset.test_episodes == 600
        assert cfg.backbone.in_channels == 3
        dataset = instantiate(cfg.dataset)
        assert isinstance(dataset, cls) and dataset.mean is not None


@pytest.mark.slow
def test_protonet_trains_on_cifar_fs(cifar_data_dir: Path, tmp_path: Path) -> None:
    from fewshot_cli.tasks.train import train

    cfg = compose_config("train", [
        "dataset=cifar_fs", f"paths.data_dir={cifar_data_dir}", f"paths.cache_dir={tmp_path / 'c'}",
        f"paths.output_dir={tmp_path / 'run'}", "device=cpu", "debug=fast", "dataset.download=false",
        "train_episodes.n_way=5", "train_episodes.n_shot=1",
        "train_episodes.n_query=2", "eval_episodes.n_way=5", "eval_episodes.n_shot=1",
        "eval_episodes.n_query=2", "trainer.max_episodes=2", "trainer.val_episodes=2", "eval.n_episodes=3",
    ])
    metrics = train(cfg)
    assert metrics["test/n_episodes"] == 3 and 0.0 <= metrics["test/acc"] <= 100.0


class _WritesMarker:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_a_cifar_file_that_asks_to_run_code_is_refused(tmp_path: Path) -> None:
    """A data dir may hold anything (and a shared checkpoint names its dataset.root), so the CIFAR
    pickles are read by an unpickler that builds data only: nothing in them can run."""
    target = write_fake_cifar100(tmp_path / "cifar100")
    marker = tmp_path / "code_ran"
    with (target / "meta").open("wb") as handle:
        pickle.dump({b"fine_label_names": _WritesMarker(marker)}, handle)
    with pytest.raises(DatasetError, match=r"asks to run (builtins|io)\.open.*refusing to load it"):
        CIFARFS(str(tmp_path), str(tmp_path / "cache"), download=False).load_split("train")
    assert not marker.exists()
