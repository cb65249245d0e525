"""What every dataset option in conf/dataset/ provides to the tasks."""

from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np
import torch

from fewshot_cli.data.image_io import load_image
from fewshot_cli.data.image_split import ImageSplit
from fewshot_cli.data.natural_augment import AugmentNode, natural_augment_from_config
from fewshot_cli.errors import ConfigError

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
        augment: the `augment` node of the dataset's config ({kind: none | natural, ...}; None: none),
            built into `self.augment`, which `fewshot train` hands to its training sampler only
            (fewshot_cli/data/natural_augment.py).
    """

    def __init__(
        self,
        name: str,
        channels: int,
        test_episodes: int,
        mean: list[float] | None = None,
        std: list[float] | None = None,
        augment: AugmentNode = None,
    ) -> None:
        self.name = name
        self.channels = channels
        self.test_episodes = test_episodes
        self.mean = tuple(mean) if mean is not None else None
        self.std = tuple(std) if std is not None else None
        if std is not None and not all(v > 0 for v in std):
            # Pixels are divided by it: a zero gives inf, then a NaN loss blamed on the learning rate.
            raise ConfigError(f"dataset.std={list(std)} must be positive in every channel")
        self.augment = natural_augment_from_config(augment)

    @property
    def splits_share_classes(self) -> bool:
        """True for official partitions whose splits hold the same classes (CIFAR-100, MNIST with
        all ten digits): zero-shot and cross-domain targets, not few-shot splits. Every other
        dataset keeps train, val and test classes disjoint, so best.pt is never chosen on test
        classes."""
        return False

    @abstractmethod
    def load_split(self, split: str) -> ImageSplit:
        """Return the images of `split` (one of SPLITS)."""

    def decode_files(self, paths: list[Path]) -> torch.Tensor:
        """Decode image files as this dataset decodes its own (`fewshot predict`): uint8 [B, C, S, S].

        Default: grayscale (1 channel) or RGB, resized to `image_size` x `image_size` when the
        dataset has one. Datasets that transform pixels further (Omniglot inverts) override this.
        """
        size = getattr(self, "image_size", None)
        mode = "L" if self.channels == 1 else "RGB"
        arrays = [load_image(path, (size, size) if size else None, mode) for path in paths]
        stacked = np.stack([a[None] if a.ndim == 2 else a.transpose(2, 0, 1) for a in arrays])
        return torch.from_numpy(stacked)
