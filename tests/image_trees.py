"""Writers of small image trees in the layouts `dataset=image_folder` reads (used by several tests).

`write_mini_imagenet` writes the miniImageNet release of Ravi & Larochelle (2017) in miniature:
`mini_imagenet/images/<wnid><8-digit index>.jpg` (flat) and `mini_imagenet/{train,val,test}.csv`
with the header `filename,label`, labels being WordNet ids. Each class is a colour with a few
class-specific stripes, plus noise, at a non-square size, so crops, channels and learning are real.
"""

from pathlib import Path

import numpy as np
from PIL import Image

MINI_SPLITS = {"train": 6, "val": 3, "test": 3}  # 12 classes (the real release: 64/16/20)
MINI_IMAGES = 6
MINI_SIZE = (60, 48)  # W x H: not square, so the centre crop matters


def wnid(index: int) -> str:
    """A WordNet-style class id, e.g. n01532829 (the real miniImageNet's first training class)."""
    return f"n{1532829 + 1000 * index:08d}"


def class_image(index: int, number: int, size: tuple[int, int] = MINI_SIZE,
                rng: np.random.Generator | None = None) -> Image.Image:
    """Image `number` of class `index`: the class's colour and stripes plus per-image noise."""
    rng = rng or np.random.default_rng(1000 * index + number)
    class_rng = np.random.default_rng(index)
    width, height = size
    colour = class_rng.integers(40, 216, size=3)
    pixels = np.broadcast_to(colour, (height, width, 3)).astype(np.float64).copy()
    for column in class_rng.integers(0, width - 4, size=3):
        pixels[:, column:column + 4] = 255 - colour
    pixels += rng.normal(0, 20, pixels.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), mode="RGB")


def write_mini_imagenet(data_dir: Path, splits: dict[str, int] | None = None,
                        images: int = MINI_IMAGES, in_label_folders: bool = False) -> Path:
    """data_dir/mini_imagenet/{train,val,test}.csv and images/ (flat, or images/<label>/ when
    `in_label_folders`); returns data_dir/mini_imagenet."""
    root = data_dir / "mini_imagenet"
    folder = root / "images"
    folder.mkdir(parents=True, exist_ok=True)
    index = 0
    for split, n_classes in (splits or MINI_SPLITS).items():
        rows = ["filename,label"]
        for _ in range(n_classes):
            label = wnid(index)
            target = folder / label if in_label_folders else folder
            target.mkdir(exist_ok=True)
            for number in range(1, images + 1):
                filename = f"{label}{number:08d}.jpg"
                class_image(index, number).save(target / filename, quality=92)
                rows.append(f"{filename},{label}")
            index += 1
        (root / f"{split}.csv").write_text("\n".join(rows) + "\n")
    return root


def write_class_folders(root: Path, classes: int = 8, images: int = 4,
                        size: tuple[int, int] = MINI_SIZE, suffix: str = ".png") -> Path:
    """root/<class>/<n><suffix>: `classes` folders named c00, c01, ... holding `images` each."""
    for index in range(classes):
        folder = root / f"c{index:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        for number in range(images):
            class_image(index, number, size).save(folder / f"{number}{suffix}")
    return root


def write_split_folders(root: Path, per_split: dict[str, int] | None = None, images: int = 4) -> Path:
    """root/{train,val,test}/<class>/<n>.png with distinct class names across splits."""
    index = 0
    for split, n_classes in (per_split or {"train": 4, "val": 2, "test": 2}).items():
        for _ in range(n_classes):
            folder = root / split / f"{split}_c{index:02d}"
            folder.mkdir(parents=True)
            for number in range(images):
                class_image(index, number).save(folder / f"{number}.png")
            index += 1
    return root


CUB_SPECIES = ("Black_footed_Albatross", "Laysan_Albatross", "Sooty_Albatross", "Groove_billed_Ani")


def write_cub(data_dir: Path, images: int = 1, side: int = 8) -> Path:
    """data_dir/cub/CUB_200_2011/images/NNN.<species>/<species>_000N.jpg: the release's 200 folders
    (species names cycled from the first four real ones); returns the images folder."""
    root = data_dir / "cub" / "CUB_200_2011" / "images"
    for index in range(200):
        species = CUB_SPECIES[index % len(CUB_SPECIES)]
        folder = root / f"{index + 1:03d}.{species}"
        folder.mkdir(parents=True)
        for number in range(images):
            class_image(index, number, (side, side)).save(folder / f"{species}_{number + 1:04d}.jpg")
    return root
