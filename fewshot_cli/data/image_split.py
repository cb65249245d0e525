"""A dataset split held as one uint8 tensor, decoded once and indexed per episode."""

from dataclasses import dataclass

import torch

from fewshot_cli.errors import DatasetError


@dataclass
class ImageSplit:
    """All images of one split (train, val or test) with their class labels.

    Attributes:
        images: uint8 [N, C, H, W]; pixel intensities as stored on disk (0..255)
        labels: int64 [N], split-level class index in 0..num_classes-1
        class_names: one readable name per class, indexed by label
        name: e.g. "omniglot/train", used in error messages
        class_groups: optional int64 [num_classes] group of each class (Omniglot: its alphabet), for
            episodes whose classes all come from one group (`eval.within_group`)
    """

    images: torch.Tensor
    labels: torch.Tensor
    class_names: list[str]
    name: str
    class_groups: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise DatasetError(f"{self.name}: images must be uint8 [N, C, H, W], got "
                               f"{self.images.dtype} {tuple(self.images.shape)}")
        if self.labels.shape != (self.images.shape[0],):
            raise DatasetError(f"{self.name}: {self.labels.shape[0]} labels for "
                               f"{self.images.shape[0]} images")
        if self.images.shape[0] == 0:
            raise DatasetError(f"{self.name} holds no images")
        if self.class_groups is not None and self.class_groups.shape != (len(self.class_names),):
            raise DatasetError(f"{self.name}: {self.class_groups.shape[0]} class groups for "
                               f"{len(self.class_names)} classes")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def class_counts(self) -> torch.Tensor:
        """int64 [num_classes]: images per class."""
        return torch.bincount(self.labels, minlength=self.num_classes)
