"""What every dataset option in conf/dataset/ provides to the tasks."""

from abc import ABC, abstractmethod

from fewshot_cli.data.image_split import ImageSplit

SPLITS = ("train", "val", "test")


class FewShotDataset(ABC):
    """A dataset with fixed, disjoint class splits.

    Subclasses decode their files once into uint8 tensors (see `data/cache.py`) and hand out one
    ImageSplit per split name.

    Args:
        name: short name used in messages and cache file names.
        channels: image channels the backbone must accept.
        test_episodes: default number of test episodes (1000 for Omniglot, 600 for most others).
        mean, std: per-channel normalisation after scaling pixels to [0, 1]; None keeps [0, 1].
    """

    def __init__(
        self,
        name: str,
        channels: int,
        test_episodes: int,
        mean: list[float] | None = None,
        std: list[float] | None = None,
    ) -> None:
        self.name = name
        self.channels = channels
        self.test_episodes = test_episodes
        self.mean = tuple(mean) if mean is not None else None
        self.std = tuple(std) if std is not None else None

    @abstractmethod
    def load_split(self, split: str) -> ImageSplit:
        """Return the images of `split` (one of SPLITS)."""
