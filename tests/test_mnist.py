"""MNIST: class splits, polarity, cross-domain evaluation; real files when present, else idx files
written in the real format."""

import shutil
import struct
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import compose_config, find_shared_data

from fewshot_cli.data.mnist import MNIST
from fewshot_cli.errors import ConfigError, DatasetError

REPO_ROOT = Path(__file__).resolve().parents[1]
# Images per digit in the official training and test sets.
MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def find_real_mnist() -> Path | None:
    """A data dir whose mnist/MNIST/raw holds the idx files (FEWSHOT_DATA_DIR or ../shared/data)."""
    return find_shared_data("mnist/MNIST/raw/t10k-images-idx3-ubyte")


@pytest.fixture(scope="module")
def real_mnist_dir() -> Path:
    found = find_real_mnist()
    if found is None:
        pytest.skip("real MNIST not found (FEWSHOT_DATA_DIR or ../shared/data/mnist/MNIST/raw)")
    return found


def write_idx_mnist(data_dir: Path, train_per_digit: int = 6, test_per_digit: int = 3) -> Path:
    """Write data_dir/mnist/MNIST/raw/*-ubyte in the real idx format (big-endian headers).

    Image i of digit d is black with a bright (255) square whose column is d, so digits differ.
    """
    raw = data_dir / "mnist" / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, per_digit in (("train", train_per_digit), ("t10k", test_per_digit)):
        labels = np.array([d for _ in range(per_digit) for d in range(10)], dtype=np.uint8)
        images = np.zeros((len(labels), 28, 28), dtype=np.uint8)
        for i, digit in enumerate(labels):
            images[i, 10:18, 2 + 2 * digit : 6 + 2 * digit] = 255
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(
            struct.pack(">IIII", 2051, len(labels), 28, 28) + images.tobytes())
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(
            struct.pack(">II", 2049, len(labels)) + labels.tobytes())
    return data_dir


@pytest.fixture(scope="module")
def idx_mnist_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_idx_mnist(tmp_path_factory.mktemp("idx_mnist"))


def test_idx_files_in_the_real_format_load(idx_mnist_dir: Path, tmp_path: Path) -> None:
    dataset = MNIST(str(idx_mnist_dir), str(tmp_path), download=False)
    train = dataset.load_split("train")
    assert train.images.shape == (5 * 9, 1, 28, 28) and train.images.dtype == torch.uint8
    assert train.class_names == ["0", "1", "2", "3", "4"]
    assert dataset.load_split("val").class_names == ["5", "6"]
    test = dataset.load_split("test")
    assert test.class_names == ["7", "8", "9"] and (test.class_counts() == 9).all()
    # Label k of the test split is digit 7 + k: its bright square starts at column 2 + 2 * (7 + k).
    columns = test.images[:, 0, 12].float().argmax(dim=1)
    assert torch.equal(columns, 2 + 2 * (7 + test.labels))


def test_all_digits_split_uses_the_official_partition(idx_mnist_dir: Path, tmp_path: Path) -> None:
    dataset = MNIST(str(idx_mnist_dir), str(tmp_path), classes_split="all", download=False,
                    class_names="words")
    assert dataset.zero_shot_benchmark
    test = dataset.load_split("test")
    assert test.images.shape[0] == 30 and test.class_names[7] == "seven"
    assert dataset.load_split("train").images.shape[0] == 60  # < 50,000: all of it is "train"


def test_custom_class_lists_and_errors(idx_mnist_dir: Path, tmp_path: Path) -> None:
    dataset = MNIST(str(idx_mnist_dir), str(tmp_path), train_classes=[0, 2, 4, 6, 8],
                    val_classes=[1], test_classes=[3, 5, 7, 9], download=False)
    assert dataset.load_split("test").class_names == ["3", "5", "7", "9"]
    with pytest.raises(ConfigError, match="overlaps"):
        MNIST(str(idx_mnist_dir), str(tmp_path), train_classes=[0, 1], val_classes=[1], test_classes=[2])
    with pytest.raises(ConfigError, match="classes_split"):
        MNIST(str(idx_mnist_dir), str(tmp_path), classes_split="everything")
    with pytest.raises(ConfigError, match="0-9"):
        MNIST(str(idx_mnist_dir), str(tmp_path), test_classes=[10])


def test_missing_files_name_the_expected_layout(tmp_path: Path) -> None:
    dataset = MNIST(str(tmp_path / "nothing"), str(tmp_path / "cache"), download=False)
    with pytest.raises(DatasetError, match=r"MNIST/raw/\{train,t10k\}-\{images-idx3,labels-idx1\}-ubyte"):
        dataset.load_split("test")


def test_image_size_resizes_and_caches(idx_mnist_dir: Path, tmp_path: Path) -> None:
    split = MNIST(str(idx_mnist_dir), str(tmp_path), image_size=105, download=False).load_split("val")
    assert split.images.shape[-2:] == (105, 105)
    assert len(list(tmp_path.glob("mnist-*.pt"))) == 1


def test_warm_cache_does_not_hide_missing_or_changed_files(tmp_path: Path) -> None:
    data_dir, cache = write_idx_mnist(tmp_path / "data"), str(tmp_path / "cache")
    first = MNIST(str(data_dir), cache, classes_split="all", download=False).load_split("test")
    # Rewritten with more images per digit: same names, other sizes -> decoded again.
    write_idx_mnist(data_dir, test_per_digit=4)
    second = MNIST(str(data_dir), cache, classes_split="all", download=False).load_split("test")
    assert (first.images.shape[0], second.images.shape[0]) == (30, 40)
    assert len(list((tmp_path / "cache").glob("mnist-*.pt"))) == 2
    shutil.rmtree(data_dir / "mnist")
    with pytest.raises(DatasetError, match=r"MNIST not found under .*MNIST/raw/\{train,t10k\}"):
        MNIST(str(data_dir), cache, classes_split="all", download=False).load_split("test")


def test_cache_file_runs_without_the_idx_files(tmp_path: Path) -> None:
    data_dir, cache = write_idx_mnist(tmp_path / "data"), tmp_path / "cache"
    first = MNIST(str(data_dir), str(cache), download=False).load_split("test")
    entry = next(cache.glob("mnist-*.pt"))
    shutil.rmtree(data_dir)
    second = MNIST(str(data_dir), str(cache), download=False, cache_file=str(entry)).load_split("test")
    assert torch.equal(first.images, second.images) and torch.equal(first.labels, second.labels)
    with pytest.raises(DatasetError, match=r"was decoded with .*'image_size': 28"):
        MNIST(str(data_dir), str(cache), image_size=32, cache_file=str(entry)).load_split("test")


def test_failed_download_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "keep.txt").write_text("user data")

    class HalfDownload:
        def __init__(self, root: str, train: bool = True, download: bool = False) -> None:
            raw = Path(root) / "MNIST" / "raw"
            raw.mkdir(parents=True)
            (raw / "train-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b partial")
            raise urllib.error.URLError("no network")

    monkeypatch.setattr("torchvision.datasets.MNIST", HalfDownload)
    with pytest.raises(DatasetError, match=r"MNIST not found under .*no network.*MNIST/raw/\{train,t10k\}"):
        MNIST(str(data_dir), str(tmp_path / "cache"), download=True).load_split("test")
    assert sorted(p.name for p in data_dir.rglob("*")) == ["keep.txt"]


def test_eval_of_an_untrained_protonet_on_ten_way_mnist(idx_mnist_dir: Path, tmp_path: Path) -> None:
    from fewshot_cli.tasks.evaluate import evaluate

    cfg = compose_config("eval", [
        "method=protonet", "backbone=conv4", "dataset=mnist", "dataset.classes_split=all",
        f"paths.data_dir={idx_mnist_dir}", f"paths.cache_dir={tmp_path / 'c'}",
        f"paths.output_dir={tmp_path / 'run'}", "device=cpu", "logger=none",
        "eval_episodes.n_way=10", "eval_episodes.n_shot=1", "eval_episodes.n_query=2",
        "eval.n_episodes=4",
    ])
    metrics = evaluate(cfg)
    assert metrics["test/n_way"] == 10 and metrics["test/n_episodes"] == 4
    assert "figures" not in metrics  # figures are for CLIP methods only


@pytest.mark.realdata
def test_real_mnist_splits(real_mnist_dir: Path, real_cache_dir: Path) -> None:
    disjoint = MNIST(str(real_mnist_dir), str(real_cache_dir), download=False)
    counts = {s: disjoint.load_split(s).class_counts().tolist() for s in ("train", "val", "test")}
    pooled = [a + b for a, b in zip(MNIST_TRAIN_COUNTS, MNIST_TEST_COUNTS, strict=True)]
    assert counts == {"train": pooled[:5], "val": pooled[5:7], "test": pooled[7:]}
    every = MNIST(str(real_mnist_dir), str(real_cache_dir), classes_split="all", download=False)
    test = every.load_split("test")
    assert test.images.shape == (10000, 1, 28, 28)
    assert test.class_counts().tolist() == MNIST_TEST_COUNTS
    assert every.load_split("train").images.shape[0] == 50000
    assert every.load_split("val").images.shape[0] == 10000


@pytest.mark.realdata
def test_real_mnist_has_omniglot_polarity(real_mnist_dir: Path, real_cache_dir: Path) -> None:
    """Bright strokes on a zero background, like our inverted Omniglot tensors."""
    images = MNIST(str(real_mnist_dir), str(real_cache_dir), classes_split="all",
                   download=False).load_split("test").images
    border = torch.cat([images[..., 0, :], images[..., -1, :], images[..., :, 0], images[..., :, -1]], -1)
    assert float(border.float().mean()) < 1.0  # background is black
    assert int(images.amax()) == 255
    assert float(images.float().mean()) < 60  # mostly background (~33 of 255)


@pytest.mark.slow
@pytest.mark.realdata
def test_omniglot_checkpoint_scored_on_mnist_ten_way(real_mnist_dir: Path, real_cache_dir: Path,
                                                     tmp_path: Path) -> None:
    """Cross-domain: a briefly Omniglot-trained ProtoNet evaluated on all ten MNIST digits beats the
    same Conv-4 untrained (same seed, so the same initial weights) on the same MNIST episodes."""
    if not (real_mnist_dir / "omniglot" / "omniglot-py" / "images_background").is_dir():
        pytest.skip("real Omniglot not found beside MNIST")
    from fewshot_cli.tasks.evaluate import evaluate
    from fewshot_cli.tasks.train import train

    common = [f"paths.data_dir={real_mnist_dir}", f"paths.cache_dir={real_cache_dir}", "device=cpu",
              "logger=none", "dataset.download=false", "seed=0"]
    # Untrained, Conv-4 prototypes already score 34-37% here (chance 10%); 5 training episodes reach
    # ~37.5%, 150 ~44%.
    train(compose_config("train", [
        *common, f"paths.output_dir={tmp_path / 'train'}", "trainer.progress_bar=false",
        "train_episodes.n_way=5", "train_episodes.n_shot=1", "train_episodes.n_query=5",
        "eval_episodes.n_way=5", "eval_episodes.n_shot=1", "eval_episodes.n_query=5",
        "trainer.max_episodes=150", "trainer.val_every=150", "trainer.checkpoint_every=150",
        "trainer.val_episodes=2", "eval.n_episodes=2",
    ]))
    mnist_episodes = ["dataset=mnist", "dataset.classes_split=all", "eval_episodes.n_way=10",
                      "eval_episodes.n_shot=1", "eval_episodes.n_query=5", "eval.n_episodes=60"]
    metrics = evaluate(compose_config("eval", [
        *common, *mnist_episodes, f"ckpt_path={tmp_path / 'train' / 'checkpoints' / 'best.pt'}",
        f"paths.output_dir={tmp_path / 'eval'}",
    ]))
    untrained = evaluate(compose_config("eval", [
        *common, *mnist_episodes, "method=protonet", "backbone=conv4",
        f"paths.output_dir={tmp_path / 'eval_untrained'}",
    ]))
    assert metrics["dataset"] == "mnist" and metrics["test/n_way"] == 10
    assert untrained["ckpt_path"] is None and untrained["test/n_episodes"] == metrics["test/n_episodes"]
    # Same eval_seed, so the same episodes; the two 95% CIs must not overlap.
    gain = metrics["test/acc"] - untrained["test/acc"]
    assert gain > metrics["test/acc_ci95"] + untrained["test/acc_ci95"], (metrics, untrained)
