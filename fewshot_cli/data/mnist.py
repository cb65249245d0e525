"""MNIST (LeCun et al. 1998) as a few-shot dataset, a cross-domain target and a zero-shot benchmark.

Read through torchvision's `MNIST` class from its own layout,

    <data_dir>/mnist/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte

and downloaded by it into the same place when missing and `download=true`. Images are 28x28
grayscale (`image_size` resizes them), uint8 [N, 1, 28, 28], digits bright on a black background,
which is the polarity of our Omniglot tensors (inverted: strokes bright, background 0); both are fed
to the networks as [0, 1] without mean/std normalisation, so an Omniglot-trained checkpoint sees
MNIST as it saw Omniglot.

Two class splits (`classes_split`):

* ``disjoint`` (default, few-shot learning on digits): the 60,000 training and 10,000 test images
  are pooled (about 7,000 per digit) and the digits are split by class: by default train 0-4,
  val 5-6, test 7-9 (`train_classes`, `val_classes`, `test_classes` change it).
* ``all`` (cross-domain evaluation and CLIP zero-shot): every split holds all ten digits with the
  official partition: train = the first 50,000 training images, val = the last 10,000, test = the
  10,000 official test images. E.g. 10-way 1-shot on MNIST with an Omniglot checkpoint (Koch et al.
  2015 report 70.3% for their Omniglot-trained Siamese network):
  ``fewshot eval ckpt_path=<omniglot best.pt> dataset=mnist dataset.classes_split=all
  eval_episodes.n_way=10 eval_episodes.n_shot=1``.
"""

import logging
from pathlib import Path
from typing import Any

import torch

from fewshot_cli.data.base import SPLITS, AugmentNode, FewShotDataset
from fewshot_cli.data.cache import cache_file, file_fingerprint, load_cache_file, load_or_build
from fewshot_cli.data.download import removed_on_failure
from fewshot_cli.data.image_split import ImageSplit
from fewshot_cli.data.resize import resize_images
from fewshot_cli.errors import ConfigError, DatasetError

log = logging.getLogger(__name__)

RAW_FILES = (
    "train-images-idx3-ubyte", "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte",
)
EXPECTED_LAYOUT = "{root}/MNIST/raw/{{train,t10k}}-{{images-idx3,labels-idx1}}-ubyte"
DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
CLASSES_SPLITS = ("disjoint", "all")
CLASS_NAMES = ("digits", "words")
VAL_START = 50_000  # classes_split=all: training images from here on form the val split


class MNIST(FewShotDataset):
    """MNIST digits as classes (see the module docstring for the two class splits).

    Args:
        root: the data dir; MNIST lives in `root/mnist/MNIST/raw/`.
        cache_dir: where the decoded tensors are cached.
        classes_split: "disjoint" (digits split into train/val/test classes) or "all".
        train_classes, val_classes, test_classes: the digits of each split for "disjoint".
        class_names: "digits" ('7', as CLIP's MNIST prompt uses) or "words" ('seven').
        image_size: side of the square images; 28 is MNIST's own, other sizes are resized once
            (antialiased bicubic) and cached, e.g. 105 for a Koch et al. Omniglot checkpoint.
        download: fetch the dataset through torchvision when the files are missing.
        clip_templates: prompt-template set of the CLIP methods on this dataset ("mnist":
            'a photo of the number: "{}".', Radford et al. 2021).
        cache_file: a decoded cache entry (`<cache_dir>/mnist-<hash>.pt`) to use as it is, without
            reading or needing the idx files (machines that carry only the cache); None (default)
            reads the files, or reuses the cache entry of exactly these files.
    """

    def __init__(
        self,
        root: str,
        cache_dir: str,
        classes_split: str = "disjoint",
        train_classes: list[int] | tuple[int, ...] = (0, 1, 2, 3, 4),
        val_classes: list[int] | tuple[int, ...] = (5, 6),
        test_classes: list[int] | tuple[int, ...] = (7, 8, 9),
        class_names: str = "digits",
        image_size: int = 28,
        download: bool = True,
        clip_templates: str = "mnist",
        cache_file: str | None = None,
        name: str = "mnist",
        channels: int = 1,
        test_episodes: int = 600,
        mean: list[float] | None = None,
        std: list[float] | None = None,
        augment: AugmentNode = None,
    ) -> None:
        super().__init__(name, channels, test_episodes, mean, std, augment)
        if classes_split not in CLASSES_SPLITS:
            raise ConfigError(f"dataset.classes_split={classes_split!r}; use one of "
                              f"{', '.join(CLASSES_SPLITS)}")
        if class_names not in CLASS_NAMES:
            raise ConfigError(f"dataset.class_names={class_names!r}; use one of {', '.join(CLASS_NAMES)}")
        self.root = Path(root).expanduser() / "mnist"
        self.cache_dir = cache_dir
        self.classes_split = classes_split
        self.split_classes = {
            "train": [int(c) for c in train_classes],
            "val": [int(c) for c in val_classes],
            "test": [int(c) for c in test_classes],
        }
        self.class_names = class_names
        if image_size < 1:
            raise ConfigError(f"dataset.image_size={image_size} must be at least 1")
        self.image_size = image_size
        self.download = download
        self.clip_templates = clip_templates
        self.cache_file = cache_file
        if classes_split == "disjoint":
            self._check_disjoint()

    @property
    def zero_shot_benchmark(self) -> bool:
        """With all ten digits the test split is the official 10,000-image test set."""
        return self.classes_split == "all"

    @property
    def splits_share_classes(self) -> bool:
        """classes_split=all: every split holds all ten digits (disjoint images, shared classes)."""
        return self.classes_split == "all"

    def _check_disjoint(self) -> None:
        seen: set[int] = set()
        for split, digits in self.split_classes.items():
            if not digits or any(d < 0 or d > 9 for d in digits) or len(set(digits)) != len(digits):
                raise ConfigError(f"dataset.{split}_classes={digits}: give distinct digits 0-9")
            if seen & set(digits):
                raise ConfigError(f"dataset.{split}_classes={digits} overlaps another split's digits; "
                                  f"classes_split=disjoint needs disjoint class lists")
            seen |= set(digits)

    def _digit_name(self, digit: int) -> str:
        return str(digit) if self.class_names == "digits" else DIGIT_WORDS[digit]

    def load_split(self, split: str) -> ImageSplit:
        """uint8 [N, 1, 28, 28] images of `split` with labels 0..K-1 (K = digits in the split)."""
        if split not in SPLITS:
            raise ConfigError(f"split {split!r}; use one of {', '.join(SPLITS)}")
        data = self._decoded()
        if self.classes_split == "all":
            if split == "test":
                images, labels = data["test_images"], data["test_labels"]
            else:
                part = slice(0, VAL_START) if split == "train" else slice(VAL_START, None)
                images, labels = data["train_images"][part], data["train_labels"][part]
            names = [self._digit_name(d) for d in range(10)]
            return ImageSplit(images, labels, names, f"{self.name}/{split}")
        images = torch.cat([data["train_images"], data["test_images"]])
        labels = torch.cat([data["train_labels"], data["test_labels"]])
        digits = self.split_classes[split]
        remap = torch.full((10,), -1, dtype=torch.long)
        remap[torch.tensor(digits)] = torch.arange(len(digits))
        split_labels = remap[labels]
        keep = split_labels >= 0
        names = [self._digit_name(d) for d in digits]
        return ImageSplit(images[keep], split_labels[keep], names, f"{self.name}/{split}")

    def _decoded(self) -> dict[str, Any]:
        """train_images uint8 [60000, 1, S, S], train_labels, test_images [10000, ...], test_labels.

        Cached, keyed on the idx files' sizes and times (`file_fingerprint`), or read from
        `cache_file` alone."""
        settings = {"dataset": "mnist", "format": "idx-ubyte", "image_size": self.image_size}
        if self.cache_file is not None:
            return load_cache_file(self.cache_file, settings, self.root)
        raw = self._find_or_download()
        key = {**settings, **file_fingerprint(raw, [raw / name for name in RAW_FILES])}
        return load_or_build(cache_file(self.cache_dir, "mnist", key), self._read, settings)

    def _find_or_download(self) -> Path:
        """The raw folder holding the four idx files, downloaded there by torchvision if allowed.

        A failed download removes whatever it created (`removed_on_failure`)."""
        from torchvision.datasets import MNIST as TorchvisionMNIST

        raw = self.root / "MNIST" / "raw"
        if all((raw / name).is_file() for name in RAW_FILES):
            return raw
        if not self.download:
            raise self._not_found()
        log.info("downloading MNIST into %s", self.root)
        try:
            with removed_on_failure(self.root):
                TorchvisionMNIST(str(self.root), train=True, download=True)  # fetches all four files
        except Exception as error:  # urllib, HTTP and checksum errors all mean "no data"
            raise self._not_found(error) from error
        if not all((raw / name).is_file() for name in RAW_FILES):
            raise self._not_found()
        return raw

    def _read(self) -> dict[str, Any]:
        from torchvision.datasets import MNIST as TorchvisionMNIST

        decoded: dict[str, Any] = {}
        for part, train in (("train", True), ("test", False)):
            try:
                mnist = TorchvisionMNIST(str(self.root), train=train, download=False)
            except Exception as error:  # a damaged or truncated idx file: no usable data
                raise self._not_found(error) from error
            images = mnist.data.to(torch.uint8).unsqueeze(1).contiguous()
            decoded[f"{part}_images"] = resize_images(images, self.image_size)
            decoded[f"{part}_labels"] = mnist.targets.to(torch.long)
        return decoded

    def _not_found(self, error: Exception | None = None) -> DatasetError:
        reason = f" ({error})" if error is not None else ""
        return DatasetError(
            f"MNIST not found under {self.root}{reason}: expected "
            f"{EXPECTED_LAYOUT.format(root=self.root)}; set paths.data_dir (or FEWSHOT_DATA_DIR) to "
            f"the folder holding mnist/, or run with dataset.download=true and internet access"
        )
