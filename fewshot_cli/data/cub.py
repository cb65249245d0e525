"""CUB-200-2011 birds (Wah et al. 2011) with the few-shot class split of Chen et al. (ICLR 2019).

Source of the split: "A Closer Look at Few-shot Classification" (Chen, Liu, Kira, Wang, Huang, ICLR
2019), `filelists/CUB/write_CUB_filelist.py` of github.com/wyharveychen/CloserLookFewShot: the 200
class folders of `CUB_200_2011/images` sorted by name, class i (counting from 0) is a base (training)
class when i % 2 == 0, a validation class when i % 4 == 1 and a novel (test) class when i % 4 == 3:
100/50/50 classes, the split most few-shot CUB results are reported on. Whole images are used (no
bounding-box crop), as in that code.
"""

from pathlib import Path

from fewshot_cli.data.base import AugmentNode
from fewshot_cli.data.image_folder import ImageFolder, Listing
from fewshot_cli.errors import DatasetError

N_CLASSES = 200
EXPECTED_LAYOUT = ("{root}/<NNN.Class_name>/<image>.jpg, the 200 folders of CUB_200_2011/images "
                   "(001.Black_footed_Albatross ... 200.Common_Yellowthroat)")


class CUB(ImageFolder):
    """CUB-200-2011, 100/50/50 classes as Chen et al. 2019 split them (see the module docstring).

    Args:
        root: `CUB_200_2011/images` (200 class folders, 11,788 JPEGs).
        other arguments: as `ImageFolder` (no `split`, `split_seed` or `split_csv_dir`: the split is
            the published one).

    Raises:
        DatasetError: from `load_split`: `root` does not hold exactly the 200 class folders (the
            rule is by position, so any other set of folders would give other classes).
    """

    def __init__(
        self,
        root: str,
        cache_dir: str,
        image_size: int = 84,
        channels: int = 3,
        resize: str = "crop",
        mmap: bool = True,
        cache_file: str | None = None,
        name: str = "cub",
        test_episodes: int = 600,
        mean: list[float] | None = None,
        std: list[float] | None = None,
        augment: AugmentNode = None,
    ) -> None:
        super().__init__(root, cache_dir, image_size=image_size, channels=channels, resize=resize,
                         mmap=mmap, cache_file=cache_file, name=name, test_episodes=test_episodes,
                         mean=mean, std=std, augment=augment)

    def _split_rule(self) -> dict:
        return {"split": "chen2019_cub"}

    def _split_classes(self, names: list[str]) -> dict[str, list[int]]:
        """Chen et al.'s rule on the folders sorted by name (as their script's `list.sort()`)."""
        if len(names) != N_CLASSES:
            raise DatasetError(f"{self.root} holds {len(names)} class folders, not CUB-200-2011's 200; "
                               f"expected {EXPECTED_LAYOUT.format(root=self.root)}")
        order = sorted(range(N_CLASSES), key=lambda c: names[c])
        split_of = {0: "train", 1: "val", 2: "train", 3: "test"}
        chosen: dict[str, list[int]] = {"train": [], "val": [], "test": []}
        for position, c in enumerate(order):
            chosen[split_of[position % 4]].append(c)
        return {split: sorted(classes) for split, classes in chosen.items()}

    def _list(self) -> Listing:
        if not Path(self.root).is_dir():
            raise DatasetError(f"CUB-200-2011 not found: {self.root} is not a folder; expected "
                               f"{EXPECTED_LAYOUT.format(root=self.root)} (set paths.data_dir, or "
                               f"dataset.root to the images folder)")
        return super()._list()
