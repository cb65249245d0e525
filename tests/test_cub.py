"""`dataset=cub`: CUB-200-2011's 200 class folders split 100/50/50 by Chen et al.'s (2019) rule."""

from pathlib import Path

import pytest
from conftest import compose_config
from image_trees import write_cub

from fewshot_cli.errors import DatasetError
from fewshot_cli.tasks.build import build_dataset


@pytest.fixture(scope="module")
def cub_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data_dir = tmp_path_factory.mktemp("cub_data")
    write_cub(data_dir)
    return data_dir


def cub(data_dir: Path, cache: Path, *overrides: str):
    return build_dataset(compose_config("train", ["dataset=cub", f"paths.data_dir={data_dir}",
                                                  f"paths.cache_dir={cache}", *overrides], None).dataset)


def test_chen_2019_split(cub_data: Path, tmp_path: Path) -> None:
    data = cub(cub_data, tmp_path, "dataset.image_size=8")
    names = {s: data.load_split(s).class_names for s in ("train", "val", "test")}
    assert [len(names[s]) for s in ("train", "val", "test")] == [100, 50, 50]
    # Sorted folders counted from 0: i % 2 == 0 train, i % 4 == 1 val, i % 4 == 3 test.
    assert names["train"][:2] == ["001.Black_footed_Albatross", "003.Sooty_Albatross"]
    assert names["val"][:2] == ["002.Laysan_Albatross", "006.Laysan_Albatross"]
    assert names["test"][:2] == ["004.Groove_billed_Ani", "008.Groove_billed_Ani"]
    assert names["test"][-1] == "200.Groove_billed_Ani"


def test_not_the_200_folders_is_an_error(cub_data: Path, tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"CUB-200-2011 not found: .*cub/CUB_200_2011/images is not a "
                                           r"folder; expected .*001.Black_footed_Albatross"):
        cub(tmp_path / "empty", tmp_path).load_split("train")
    partial = tmp_path / "partial" / "cub" / "CUB_200_2011" / "images"
    for name in sorted(p.name for p in (cub_data / "cub" / "CUB_200_2011" / "images").iterdir())[:12]:
        (partial / name).mkdir(parents=True)
        (partial / name / "a.jpg").symlink_to(next((cub_data / "cub" / "CUB_200_2011" / "images" /
                                                    name).iterdir()))
    with pytest.raises(DatasetError, match=r"holds 12 class folders, not CUB-200-2011's 200"):
        cub(tmp_path / "partial", tmp_path).load_split("train")
