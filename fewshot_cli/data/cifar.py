"""CIFAR-100 (Krizhevsky 2009) as uint8 tensors: the zero-shot benchmark and the CIFAR-FS split.

Both datasets read the pickled "python version" of CIFAR-100 in the layout torchvision's
`CIFAR100(download=True)` leaves behind:

    <data_dir>/cifar100/cifar-100-python/{train,test,meta}

(`<data_dir>/cifar-100-python/`, torchvision's default when its root is the data dir itself, is
accepted too). The files are read directly rather than through torchvision, whose class md5-checks
every file before reading it; when they are missing and `download=true`, torchvision downloads and
unpacks them into `<data_dir>/cifar100/`. The decoded arrays are cached (see `data/cache.py`), keyed
on the three files' sizes and times; `cache_file` names an entry to use without the files.

Pickle format (one dict per file, written by Python 2; read with ``encoding="bytes"`` as the CIFAR
page's own snippet does): ``train``/``test`` hold ``b"data"`` uint8 [N, 3072] (1024 red, 1024 green,
1024 blue values of a row-major 32x32 image) and ``b"fine_labels"`` (N ints in 0..99); ``meta``
holds ``b"fine_label_names"`` (100 names, alphabetical, with underscores such as ``aquarium_fish``).
"""

import logging
import pickle
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from fewshot_cli.data.base import SPLITS, AugmentNode, FewShotDataset
from fewshot_cli.data.cache import cache_file, file_fingerprint, load_cache_file, load_or_build
from fewshot_cli.data.cifar_fs_splits import CIFAR_FS_SPLITS
from fewshot_cli.data.download import removed_on_failure
from fewshot_cli.data.image_split import ImageSplit
from fewshot_cli.data.resize import resize_images
from fewshot_cli.errors import ConfigError, DatasetError

log = logging.getLogger(__name__)

FOLDER = "cifar-100-python"
FILES = ("train", "test", "meta")
EXPECTED_LAYOUT = "{root}/cifar-100-python/{{train,test,meta}} (CIFAR-100, python version)"
IMAGE_SIDE = 32


def readable_name(meta_name: str) -> str:
    """CIFAR's label name as a phrase: 'aquarium_fish' -> 'aquarium fish' (as in CLIP's prompts)."""
    return meta_name.replace("_", " ")


class _CIFAR100Files(FewShotDataset):
    """What both CIFAR-100 datasets share: finding, downloading, decoding and caching the pickles.

    Args:
        root: the data dir; CIFAR-100 lives in `root/cifar100/cifar-100-python/`.
        cache_dir: where the decoded tensors are cached.
        download: fetch the dataset through torchvision when the files are missing.
        image_size: side of the square images; 32 is CIFAR's own, other sizes are resized once
            (antialiased bicubic) and cached.
        clip_templates: prompt-template set the CLIP methods use on this dataset
            (read by conf/method/clip*.yaml through `${dataset.clip_templates}`).
        cache_file: a decoded cache entry (`<cache_dir>/cifar100-<hash>.pt`) to use as it is,
            without reading or needing the pickles (machines that carry only the cache); None
            (default) reads the files, or reuses the cache entry of exactly these files.
    """

    def __init__(
        self,
        root: str,
        cache_dir: str,
        download: bool = True,
        image_size: int = IMAGE_SIDE,
        clip_templates: str = "cifar100",
        cache_file: str | None = None,
        name: str = "cifar100",
        channels: int = 3,
        test_episodes: int = 600,
        mean: list[float] | None = None,
        std: list[float] | None = None,
        augment: AugmentNode = None,
    ) -> None:
        super().__init__(name, channels, test_episodes, mean, std, augment)
        self.data_dir = Path(root).expanduser()
        self.root = self.data_dir / "cifar100"
        self.cache_dir = cache_dir
        self.download = download
        if image_size < 1:
            raise ConfigError(f"dataset.image_size={image_size} must be at least 1")
        self.image_size = image_size
        self.clip_templates = clip_templates
        self.cache_file = cache_file

    def _decoded(self) -> dict[str, Any]:
        """train_images/test_images uint8 [N, 3, S, S], train_labels/test_labels int64 [N]
        (fine labels 0..99), label_names (100 meta names). Cached, keyed on the files' sizes and
        times (`file_fingerprint`), or read from `cache_file` alone."""
        settings = {"dataset": "cifar100", "format": "cifar-100-python", "image_size": self.image_size}
        if self.cache_file is not None:
            return load_cache_file(self.cache_file, settings, self.root)
        folder = self._find_or_download()
        key = {**settings, **file_fingerprint(folder, [folder / name for name in FILES])}
        return load_or_build(cache_file(self.cache_dir, "cifar100", key), lambda: self._read(folder),
                             settings)

    def _read(self, folder: Path) -> dict[str, Any]:
        decoded = read_cifar100(folder)
        for part in ("train", "test"):
            decoded[f"{part}_images"] = resize_images(decoded[f"{part}_images"], self.image_size)
        return decoded

    def _find_or_download(self) -> Path:
        for folder in (self.root / FOLDER, self.data_dir / FOLDER):
            if all((folder / name).is_file() for name in FILES):
                return folder
        if self.download:
            _download(self.root)
            if all((self.root / FOLDER / name).is_file() for name in FILES):
                return self.root / FOLDER
        raise DatasetError(
            f"CIFAR-100 not found: expected {EXPECTED_LAYOUT.format(root=self.root)}; set "
            f"paths.data_dir (or FEWSHOT_DATA_DIR) to the folder holding cifar100/, or run with "
            f"dataset.download=true and internet access"
        )


class CIFAR100(_CIFAR100Files):
    """CIFAR-100 with its official partition, all 100 fine classes in every split.

    The zero-shot benchmark of CLIP (Radford et al. 2021, Table 11: CIFAR-100 top-1 on the 10,000
    test images): `fewshot eval method=clip dataset=cifar100` classifies the whole test split. Its
    episodes (100 classes x 100 test images) can be scored by any method as well.

    Splits: test = the 10,000 official test images; train and val = the 50,000 official training
    images, the last VAL_FRACTION of them (10,000) held out as val (as MNIST with all ten digits), so
    `fewshot train dataset=cifar100` runs; every split holds all 100 classes, so it measures seen
    classes (the run warns). For episodic training on disjoint classes use `dataset=cifar_fs`.
    """

    zero_shot_benchmark: ClassVar[bool] = True
    splits_share_classes: ClassVar[bool] = True  # the official partition: 100 classes in each split
    VAL_FRACTION: ClassVar[float] = 0.2

    def load_split(self, split: str) -> ImageSplit:
        """uint8 [N, 3, 32, 32] images of `split` with fine labels 0..99."""
        if split not in SPLITS:
            raise ConfigError(f"split {split!r}; use one of {', '.join(SPLITS)}")
        data = self._decoded()
        names = [readable_name(n) for n in data["label_names"]]
        if split == "test":
            images, labels = data["test_images"], data["test_labels"]
        else:
            val_start = len(data["train_labels"]) - int(len(data["train_labels"]) * self.VAL_FRACTION)
            part = slice(0, val_start) if split == "train" else slice(val_start, None)
            images, labels = data["train_images"][part], data["train_labels"][part]
        return ImageSplit(images, labels, names, f"{self.name}/{split}")


class CIFARFS(_CIFAR100Files):
    """CIFAR-FS (Bertinetto et al., ICLR 2019): CIFAR-100's classes split 64 / 16 / 20.

    Every class keeps all 600 of its images (official train and test images pooled), 32x32 RGB,
    stored as uint8 [N, 3, 32, 32]; labels are 0..K-1 in the order of the published split list
    (`data/cifar_fs_splits.py`), class names are readable ('sweet pepper').
    """

    zero_shot_benchmark: ClassVar[bool] = False

    def load_split(self, split: str) -> ImageSplit:
        """The images of the classes of CIFAR-FS `split` ('train', 'val' or 'test')."""
        if split not in SPLITS:
            raise ConfigError(f"split {split!r}; use one of {', '.join(SPLITS)}")
        data = self._decoded()
        meta_names: list[str] = list(data["label_names"])
        missing = [n for n in CIFAR_FS_SPLITS[split] if n not in meta_names]
        if missing:
            raise DatasetError(
                f"CIFAR-100 meta file lacks the CIFAR-FS {split} classes {missing[:5]}; is "
                f"{self.root / FOLDER} really CIFAR-100?"
            )
        fine = [meta_names.index(n) for n in CIFAR_FS_SPLITS[split]]
        images = torch.cat([data["train_images"], data["test_images"]])
        labels = torch.cat([data["train_labels"], data["test_labels"]])
        # remap[fine label] = split label, -1 for classes of other splits
        remap = torch.full((len(meta_names),), -1, dtype=torch.long)
        remap[torch.tensor(fine)] = torch.arange(len(fine))
        split_labels = remap[labels]
        keep = split_labels >= 0
        names = [readable_name(n) for n in CIFAR_FS_SPLITS[split]]
        return ImageSplit(images[keep], split_labels[keep], names, f"{self.name}/{split}")


def read_cifar100(folder: Path) -> dict[str, Any]:
    """Decode `folder`/{train,test,meta} into tensors (see the module docstring for the format)."""
    meta = _unpickle(folder / "meta")
    if "fine_label_names" not in meta:
        raise DatasetError(f"{folder / 'meta'} has no 'fine_label_names'; is it CIFAR-100's meta file?")
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in meta["fine_label_names"]]
    decoded: dict[str, Any] = {"label_names": names}
    for part in ("train", "test"):
        entry = _unpickle(folder / part)
        if "data" not in entry or "fine_labels" not in entry:
            raise DatasetError(f"{folder / part} lacks 'data' or 'fine_labels'; is it CIFAR-100?")
        data = np.asarray(entry["data"], dtype=np.uint8)
        labels = torch.tensor(list(entry["fine_labels"]), dtype=torch.long)
        if data.ndim != 2 or data.shape[1] != 3 * IMAGE_SIDE * IMAGE_SIDE or len(data) != len(labels):
            raise DatasetError(
                f"{folder / part}: expected data uint8 [N, 3072] and N fine labels, got "
                f"{tuple(data.shape)} and {len(labels)}"
            )
        if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= len(names)):
            raise DatasetError(f"{folder / part}: fine labels outside 0..{len(names) - 1}")
        images = torch.from_numpy(data.reshape(-1, 3, IMAGE_SIDE, IMAGE_SIDE).copy())
        decoded[f"{part}_images"] = images
        decoded[f"{part}_labels"] = labels
    return decoded


# What the CIFAR pickles are made of besides builtin containers: numpy arrays (numpy's own pickling
# hooks, under their numpy 1 and numpy 2 module names) and, in protocol-2 files, bytes via _codecs.
SAFE_GLOBALS = frozenset({
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
})


class _DataOnlyUnpickler(pickle.Unpickler):
    """An unpickler that builds only containers, strings, numbers and numpy arrays.

    A pickle names the functions it calls, so pickle.load of an arbitrary file runs arbitrary code;
    the data dir (and a shared checkpoint's dataset.root) may hold anything, so nothing outside
    SAFE_GLOBALS is ever looked up.
    """

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in SAFE_GLOBALS:
            raise pickle.UnpicklingError(f"it asks to run {module}.{name}, which a CIFAR-100 file "
                                         f"never does; refusing to load it")
        return super().find_class(module, name)


def _unpickle(path: Path) -> dict[str, Any]:
    """One CIFAR pickle as a dict with str keys (the files are Python 2 pickles with byte keys),
    read by _DataOnlyUnpickler (no code runs).

    Raises:
        DatasetError: unreadable, not a dict, or asking for code.
    """
    try:
        with path.open("rb") as handle:
            raw = _DataOnlyUnpickler(handle, encoding="bytes").load()
    except (OSError, pickle.UnpicklingError, EOFError, ValueError) as error:
        raise DatasetError(f"cannot read CIFAR-100 file {path} ({error}); delete it and download again"
                           ) from error
    if not isinstance(raw, dict):
        raise DatasetError(f"{path} does not hold a dict; is it a CIFAR-100 pickle?")
    return {(k.decode() if isinstance(k, bytes) else str(k)): v for k, v in raw.items()}


def _download(root: Path) -> None:
    """Fetch and unpack CIFAR-100 through torchvision; a network failure becomes a DatasetError."""
    from torchvision.datasets import CIFAR100 as TorchvisionCIFAR100

    log.info("downloading CIFAR-100 into %s", root)
    try:
        with removed_on_failure(root):
            TorchvisionCIFAR100(str(root), train=True, download=True)
    except Exception as error:  # urllib, HTTP and checksum errors all mean "no data"
        raise DatasetError(
            f"could not download CIFAR-100 into {root} ({error}); without internet, place the files "
            f"as {EXPECTED_LAYOUT.format(root=root)}"
        ) from error
