"""Every dataset option and split scheme keeps train, val and test classes apart.

Validation chooses best.pt and the Siamese verification threshold, so a validation class that is
also a test class leaks the test split into model selection (the Lake split did that: val and test
were both the 20 evaluation alphabets). One data dir holds every dataset in its real format, and
each conf/dataset option is composed and built as `fewshot train` builds it.
"""

from pathlib import Path

import pytest
from conftest import CONF_DIR, compose_config, write_synthetic_omniglot
from image_trees import write_cub, write_mini_imagenet, write_split_folders
from test_att_faces import write_faces
from test_cifar import write_fake_cifar100
from test_mnist import write_idx_mnist

from fewshot_cli.tasks.build import build_dataset

SPLITS = ("train", "val", "test")


@pytest.fixture(scope="module")
def all_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data_dir = tmp_path_factory.mktemp("all_data")
    write_synthetic_omniglot(data_dir)
    write_idx_mnist(data_dir)
    write_fake_cifar100(data_dir / "cifar100")
    write_faces(data_dir, people=12, images=3)
    write_mini_imagenet(data_dir, images=2)
    write_split_folders(data_dir / "split_folders", images=2)
    write_cub(data_dir)
    return data_dir


def class_identity(dataset_name: str, class_name: str) -> str:
    """What must not cross splits: an Omniglot character, whatever its rotation."""
    return class_name.rsplit("/rot", 1)[0] if dataset_name == "omniglot" else class_name


SCHEMES = [
    ("omniglot", ["dataset.split_scheme=vinyals"]),
    ("omniglot", ["dataset.split_scheme=lake"]),
    ("omniglot", ["dataset.split_scheme=lake", "dataset.rotations=false"]),
    ("mnist", ["dataset.classes_split=disjoint"]),
    ("cifar_fs", []),
    *[("att_faces", ["dataset.heldout=3", "dataset.val_people=2", f"dataset.fold={k}"]) for k in range(4)],
    ("mini_imagenet", []),
    ("cub", []),
    # image_folder's three layouts: one folder per class split by ratio (two seeds, two ratios),
    # train/val/test subfolders, and split CSVs.
    ("image_folder", ["dataset.root=${paths.data_dir}/att_faces", "dataset.channels=1"]),
    ("image_folder", ["dataset.root=${paths.data_dir}/att_faces", "dataset.split=[0.5,0.25,0.25]",
                      "dataset.split_seed=3"]),
    ("image_folder", ["dataset.root=${paths.data_dir}/split_folders"]),
    ("image_folder", ["dataset.root=${paths.data_dir}/mini_imagenet/images",
                      "dataset.split_csv_dir=${paths.data_dir}/mini_imagenet"]),
]
# Official partitions with every class in every split, by design: the zero-shot benchmarks and the
# cross-domain targets (all ten digits), never few-shot splits of their own.
ALL_CLASS_SCHEMES = [("mnist", ["dataset.classes_split=all"]), ("cifar100", [])]


def test_every_dataset_option_is_covered() -> None:
    options = {path.stem for path in (CONF_DIR / "dataset").glob("*.yaml")}
    assert options == {name for name, _ in SCHEMES + ALL_CLASS_SCHEMES}


@pytest.mark.parametrize(("name", "overrides"), SCHEMES)
def test_train_val_and_test_classes_are_disjoint(name: str, overrides: list[str], all_data: Path,
                                                 tmp_path: Path) -> None:
    cfg = compose_config("train", [f"dataset={name}", *overrides, f"paths.data_dir={all_data}",
                                   f"paths.cache_dir={tmp_path / 'cache'}"],
                         None)
    dataset = build_dataset(cfg.dataset)
    classes = {split: {class_identity(name, c) for c in dataset.load_split(split).class_names}
               for split in SPLITS}
    assert all(classes.values())
    assert not classes["train"] & classes["val"]
    assert not classes["train"] & classes["test"]
    assert not classes["val"] & classes["test"]
    assert not dataset.splits_share_classes


@pytest.mark.parametrize(("name", "overrides"), ALL_CLASS_SCHEMES)
def test_official_partitions_say_that_their_splits_share_classes(name: str, overrides: list[str],
                                                                 all_data: Path, tmp_path: Path) -> None:
    cfg = compose_config("train", [f"dataset={name}", *overrides, f"paths.data_dir={all_data}",
                                   f"paths.cache_dir={tmp_path / 'cache'}"],
                         None)
    dataset = build_dataset(cfg.dataset)
    assert dataset.splits_share_classes
    train, test = dataset.load_split("train"), dataset.load_split("test")
    assert set(train.class_names) == set(test.class_names)

