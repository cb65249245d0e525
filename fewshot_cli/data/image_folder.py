"""Your own images as a few-shot dataset: one folder per class, or miniImageNet's split CSVs.

Three layouts of `root`, tried in this order:

1. `split_csv_dir` set: `train.csv`, `val.csv`, `test.csv` there, each with the header
   `filename,label`, one row per image; the image is `root/<filename>` or `root/<label>/<filename>`.
   This is how miniImageNet ships (Ravi & Larochelle 2017, github.com/twitter/meta-learning-lstm:
   `images/` flat plus the three CSVs).
2. `root/train/`, `root/val/` and `root/test/` all exist: each holds one folder per class.
3. Otherwise `root` holds one folder per class, and whole classes are split by `split` ratios
   (64/16/20 by default, miniImageNet's proportions) in an order fixed by `split_seed`.

Whatever the layout, the cache entry stores the classes of each split contiguously (train, val,
test; natural name order within each), so every split is a view of the memory-mapped entry, never a
copy; the ratio and seed of a ratio split are therefore part of the entry's key.

Folder names (or CSV labels) are the class names, and a class belongs to one split only; a class in
two split folders or two CSVs is an error. Every image Pillow reads (JPEG, PNG, PGM, BMP, TIFF, WebP,
...; 8 or 16 bits; EXIF orientation applied) is decoded once through `image_io.load_image`, as
grayscale or RGB (`channels` 1 or 3), to `image_size` x `image_size`, and cached as one uint8 tensor
`[N, C, S, S]` (see data/cache.py), loaded memory-mapped so that a large dataset costs address space,
not private memory. Normalisation uses the training split's own per-channel mean and std, unless
the config gives `mean` and `std`.
"""

import csv
import hashlib
import json
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from tqdm import tqdm

from fewshot_cli.data.att_faces import natural_key
from fewshot_cli.data.base import SPLITS, AugmentNode, FewShotDataset
from fewshot_cli.data.cache import cache_file, file_fingerprint, load_cache_file, load_or_build
from fewshot_cli.data.image_io import IMAGE_SUFFIXES, is_hidden, load_image
from fewshot_cli.data.image_split import ImageSplit
from fewshot_cli.errors import ConfigError, DatasetError

log = logging.getLogger(__name__)

DEFAULT_SPLIT = (0.64, 0.16, 0.20)  # miniImageNet's 64/16/20 classes (Ravi & Larochelle 2017)
RESIZE_MODES = ("crop", "stretch")
MIN_CLASSES_PER_SPLIT = 2  # an episode tells classes apart
CSV_HEADER = ["filename", "label"]
NAMES_SHOWN = 5  # file names quoted in the warning about skipped non-image files


@dataclass
class Listing:
    """What a layout holds, in decode order (class-major, the classes of each split contiguous),
    found without opening any image.

    Attributes:
        files: every image to decode.
        labels: class index of each file, non-decreasing.
        class_names: one name per class (folder name or CSV label).
        class_splits: "train", "val" or "test" per class ("" until a ratio split assigns them).
        skipped: files and folders that are not images Pillow decodes (reported once).
    """

    files: list[Path]
    labels: list[int]
    class_names: list[str]
    class_splits: list[str]
    skipped: list[str]
    by_ratio: bool = False  # the classes were split by `ratio_split`, not by the layout

    def digest(self, root: Path) -> str:
        """SHA-1 of (relative path, class, split) of every file: what the cache entry's labels
        depend on beyond the files' own stat (a row moved between two CSVs changes it)."""
        prefix = os.path.join(root, "")
        rows = [(os.fspath(f)[len(prefix):], self.class_names[c], self.class_splits[c])
                for f, c in zip(self.files, self.labels, strict=True)]
        return hashlib.sha1(json.dumps(rows).encode()).hexdigest()


class ImageFolder(FewShotDataset):
    """Images in class folders (or listed by split CSVs), split into disjoint train/val/test classes.

    Args:
        root: folder of the images (`dataset.root=DIR`); relative paths are taken from the current
            directory.
        cache_dir: where the decoded tensor is cached.
        image_size: side S of the square images, in pixels.
        channels: 1 (grayscale) or 3 (RGB); every image is converted (Pillow's ITU-R 601-2 luma for
            colour to grayscale).
        resize: "crop" (default): scale so the short side is S, then cut the centre S x S
            (`PIL.ImageOps.fit`, Lanczos), keeping the aspect ratio; "stretch": scale width and
            height to S independently (what `dataset=att_faces` does with its 92x112 faces).
        split: [train, val, test] fractions of the classes when the split is by ratio (each above
            0, summing to 1); None means [0.64, 0.16, 0.20]. Refused with the other layouts.
        split_seed: which classes go where in a ratio split.
        split_csv_dir: folder holding train.csv, val.csv and test.csv (header `filename,label`).
        mmap: load the cache entry memory-mapped (`torch.load(mmap=True)`): the pixels stay in the
            page cache (evictable, shared between processes) instead of private memory, and each
            split is a view of the entry.
        cache_file: a decoded cache entry to use as it is, without the image folder.
        name: the dataset's name in messages and cache file names.
        test_episodes: default number of test episodes.
        mean, std: per-channel normalisation (pixels in [0, 1]); both None (default) uses the
            training split's own mean and std, computed when the images are decoded.

    Raises:
        ConfigError: an option outside its range (at construction, before any file is read).
        DatasetError: from `load_split`: a missing folder or CSV, a class in two splits, an empty
            class folder, an unreadable image (named).
    """

    def __init__(
        self,
        root: str | None,
        cache_dir: str,
        image_size: int = 84,
        channels: int = 3,
        resize: str = "crop",
        split: list[float] | None = None,
        split_seed: int = 0,
        split_csv_dir: str | None = None,
        mmap: bool = True,
        cache_file: str | None = None,
        name: str = "image_folder",
        test_episodes: int = 600,
        mean: list[float] | None = None,
        std: list[float] | None = None,
        augment: AugmentNode = None,
    ) -> None:
        if (root is None or str(root).strip() == "") and cache_file is None:
            raise ConfigError("dataset.root is not set; give dataset.root=DIR, a folder with one "
                              "subfolder of images per class")
        if channels not in (1, 3):
            raise ConfigError(f"dataset.channels={channels}; use 1 (grayscale) or 3 (RGB)")
        if image_size < 1:
            raise ConfigError(f"dataset.image_size={image_size} must be at least 1")
        if resize not in RESIZE_MODES:
            raise ConfigError(f"dataset.resize={resize!r}; use 'crop' (keep the aspect ratio, cut "
                              f"the centre) or 'stretch'")
        if (mean is None) != (std is None):
            raise ConfigError("give both dataset.mean and dataset.std, or neither (then the training "
                              "split's own are used)")
        if split is not None:
            _check_ratios(list(split))
        self._stats: tuple[tuple[float, ...], tuple[float, ...]] | None = None
        super().__init__(name, channels, test_episodes, mean, std, augment)
        # With only a cache file (a machine without the images) the root is just a name in the log.
        self.root = Path(root).expanduser() if root else Path("<dataset.root not set>")
        self.cache_dir = cache_dir
        self.image_size = image_size
        self.resize = resize
        self.split = None if split is None else [float(r) for r in split]
        self.split_seed = split_seed
        self.split_csv_dir = None if split_csv_dir is None else Path(split_csv_dir).expanduser()
        self.mmap = mmap
        self.cache_file = cache_file
        self._data: dict | None = None

    # ------------------------------------------------------------------ normalisation

    @property
    def mean(self) -> tuple[float, ...] | None:
        """Per-channel mean of pixels in [0, 1]: the config's, else the training split's (computed
        from the decoded images, so reading it may decode the dataset)."""
        return self._given_mean if self._given_mean is not None else self._train_stats()[0]

    @mean.setter
    def mean(self, value: tuple[float, ...] | None) -> None:
        self._given_mean = value

    @property
    def std(self) -> tuple[float, ...] | None:
        """Per-channel standard deviation of pixels in [0, 1]: the config's, else the training
        split's."""
        return self._given_std if self._given_std is not None else self._train_stats()[1]

    @std.setter
    def std(self, value: tuple[float, ...] | None) -> None:
        self._given_std = value

    def _train_stats(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Mean and std over every pixel of the training classes, from the per-class sums the
        cache entry holds (exact: the sums are of integers, in float64)."""
        if self._stats is None:
            data = self._entry()
            train = torch.tensor(self._classes_of("train"), dtype=torch.long)
            pixels = float(self._class_counts()[train].sum()) * self.image_size ** 2
            total = data["pixel_sum"][train].sum(0).double() / (pixels * 255.0)
            squares = data["pixel_sq_sum"][train].sum(0).double() / (pixels * 255.0 ** 2)
            # A constant channel (std 0) would divide by zero; one grey level keeps it finite.
            std = torch.sqrt((squares - total ** 2).clamp_min(0)).clamp_min(1.0 / 255)
            self._stats = (tuple(total.tolist()), tuple(std.tolist()))
            log.info("%s: normalising with the training split's mean %s and std %s (per channel, "
                     "pixels in [0, 1]; set dataset.mean and dataset.std to choose others)",
                     self.name, _rounded(self._stats[0]), _rounded(self._stats[1]))
        return self._stats

    # ------------------------------------------------------------------ splits

    def load_split(self, split: str) -> ImageSplit:
        """Images of the classes of `split` ("train", "val" or "test"): uint8 [N, C, S, S] (a view of
        the cache entry, where the split's classes are contiguous), labels 0..K-1 in the classes'
        natural name order."""
        if split not in SPLITS:
            raise ConfigError(f"split {split!r}; use one of {', '.join(SPLITS)}")
        data = self._entry()
        classes = self._classes_of(split)
        counts = self._class_counts()
        begin, end = int(counts[:classes[0]].sum()), int(counts[:classes[-1] + 1].sum())
        return ImageSplit(data["images"][begin:end], data["labels"][begin:end] - classes[0],
                          [data["names"][c] for c in classes], f"{self.name}/{split}")

    def _classes_of(self, split: str) -> list[int]:
        """Class indices (into the entry's class list, ascending) of `split`."""
        return [c for c, s in enumerate(self._entry()["class_splits"]) if s == split]

    def _split_rule(self) -> dict:
        """How class folders are split (a ratio split: the ratios and seed), as the cache entry
        records it; subclasses with a published split (CUB) name theirs."""
        return {"split": self.split or list(DEFAULT_SPLIT), "split_seed": self.split_seed}

    def _split_classes(self, names: list[str]) -> dict[str, list[int]]:
        """Class indices of train, val and test among the class folders `names` (natural order)."""
        rule = self._split_rule()
        return ratio_split(names, rule["split"], rule["split_seed"], self.root)

    def _class_counts(self) -> torch.Tensor:
        data = self._entry()
        return torch.bincount(data["labels"], minlength=len(data["names"]))

    # ------------------------------------------------------------------ decoding and cache

    def decode_files(self, paths: list[Path]) -> torch.Tensor:
        """Decode image files as the training images were (`fewshot predict`): uint8 [B, C, S, S]."""
        out = np.empty((len(paths), self.channels, self.image_size, self.image_size), dtype=np.uint8)
        for i, path in enumerate(paths):
            out[i] = decode_image(path, self.image_size, self.channels, self.resize)
        return torch.from_numpy(out)

    def _settings(self) -> dict:
        return {"dataset": "image_folder", "image_size": self.image_size, "channels": self.channels,
                "resize": self.resize}

    def _entry(self) -> dict:
        """The decoded dataset: images uint8 [N, C, S, S] (class-major), labels int64 [N], names,
        class_splits, pixel_sum and pixel_sq_sum float64 [K, C] (per class and channel, 0..255
        units); from the cache when these files were decoded before with these settings."""
        if self._data is not None:
            return self._data
        settings = self._settings()
        if self.cache_file is not None:
            self._data = load_cache_file(self.cache_file, settings, self.root, mmap=self.mmap)
            rule = self._data["split_rule"]
            if rule is None and self.split is not None:
                raise ConfigError(_split_refused(f"dataset.cache_file={self.cache_file}"))
            if rule is not None and rule != self._split_rule():
                wanted = ", ".join(f"dataset.{k}={v}" for k, v in rule.items())
                raise ConfigError(f"dataset.cache_file={self.cache_file} holds classes split by "
                                  f"{wanted}; set that, or dataset.cache_file=null to split the image "
                                  f"folder anew")
            return self._data
        listing = self._list()
        if listing.skipped:
            shown = ", ".join(listing.skipped[:NAMES_SHOWN])
            more = ", ..." if len(listing.skipped) > NAMES_SHOWN else ""
            count = len(listing.skipped)
            log.warning("%s: skipped %d %s under %s that %s not images Pillow decodes: %s%s", self.name,
                        count, "entry" if count == 1 else "entries", self.root,
                        "is" if count == 1 else "are", shown, more)
        key = {**settings, **file_fingerprint(self.root, listing.files), "index": listing.digest(self.root)}
        path = cache_file(self.cache_dir, self.name, key)
        self._data = load_or_build(path, lambda: self._decode(listing), settings, mmap=self.mmap)
        return self._data

    def _decode(self, listing: Listing) -> dict:
        """Decode every file once into a preallocated array (no per-image tensors, no stacking:
        memory is the uint8 dataset itself) and sum each class's pixels for the normalisation."""
        n_classes = len(listing.class_names)
        size, channels = self.image_size, self.channels
        images = np.empty((len(listing.files), channels, size, size), dtype=np.uint8)
        pixel_sum = np.zeros((n_classes, channels), dtype=np.float64)
        pixel_sq_sum = np.zeros((n_classes, channels), dtype=np.float64)
        for i, (path, label) in enumerate(tqdm(list(zip(listing.files, listing.labels, strict=True)),
                                               desc=f"decoding {self.name}", unit="img", mininterval=2)):
            images[i] = decode_image(path, size, channels, self.resize)
            # Integer-valued sums in float64 are exact up to 2**53 (600 images of 84x84 per class
            # reach 3e11), so the mean and std do not depend on the order of the files.
            flat = images[i].reshape(channels, -1).astype(np.float64)
            pixel_sum[label] += flat.sum(1)
            pixel_sq_sum[label] += np.einsum("ij,ij->i", flat, flat)
        log.info("decoded %d images of %d classes from %s", len(listing.files), n_classes, self.root)
        return {"images": torch.from_numpy(images), "labels": torch.tensor(listing.labels),
                "names": listing.class_names, "class_splits": listing.class_splits,
                "split_rule": self._split_rule() if listing.by_ratio else None,
                "pixel_sum": torch.from_numpy(pixel_sum), "pixel_sq_sum": torch.from_numpy(pixel_sq_sum)}

    # ------------------------------------------------------------------ layouts

    def _list(self) -> Listing:
        """The files of `root` in the layout found (see the module docstring for the order)."""
        if self.split_csv_dir is not None:
            if not self.root.is_dir():
                raise DatasetError(f"{self.name} not found: {self.root} is not a folder; expected "
                                   f"{_csv_layout(self.root, self.split_csv_dir)}")
            listing = list_csv_layout(self.root, self.split_csv_dir)
        else:
            if not self.root.is_dir():
                raise DatasetError(f"{self.name} not found: dataset.root={self.root} is not a folder; "
                                   f"expected {self.root}/<class>/<image> (one folder per class), "
                                   f"{self.root}/{{train,val,test}}/<class>/<image>, or split CSVs "
                                   f"with dataset.split_csv_dir")
            present = [s for s in SPLITS if (self.root / s).is_dir()]
            if present and len(present) < len(SPLITS):
                missing = [f"{s}/" for s in SPLITS if s not in present]
                raise DatasetError(
                    f"{self.root} has {', '.join(s + '/' for s in present)} but no "
                    f"{', '.join(missing)}: a split by subfolders needs train/, val/ and test/ "
                    f"(validation classes choose best.pt, so they must not be test classes); add "
                    f"{', '.join(missing)} or rename the folders to use a split by ratio")
            listing = list_split_folders(self.root) if present else list_class_folders(self.root)
        if not listing.by_ratio:
            if self.split is not None:
                layout = ("dataset.split_csv_dir" if self.split_csv_dir is not None
                          else "the train/, val/ and test/ subfolders of dataset.root")
                raise ConfigError(_split_refused(layout))
            return listing
        classes = self._split_classes(listing.class_names)
        files = {c: [] for c in range(len(listing.class_names))}
        for path, label in zip(listing.files, listing.labels, strict=True):
            files[label].append(path)
        groups = [(split, [(listing.class_names[c], files[c]) for c in classes[split]]) for split in SPLITS]
        return _listing(groups, listing.skipped, by_ratio=True)


def decode_image(path: Path, size: int, channels: int, resize: str) -> np.ndarray:
    """One image file as uint8 [C, S, S] (see `ImageFolder`'s `resize`).

    Raises:
        DatasetError: the file is missing, truncated or not an image (names the file).
    """
    mode = "L" if channels == 1 else "RGB"
    if resize == "stretch":
        pixels = load_image(path, (size, size), mode)
    else:
        # load_image handles EXIF orientation and 16-bit scaling; ImageOps.fit then crops in source
        # coordinates before resampling, so the centre S x S is resampled once, with Lanczos.
        pixels = np.asarray(ImageOps.fit(Image.fromarray(load_image(path, None, mode)), (size, size),
                                         Image.Resampling.LANCZOS))
    return pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)


def ratio_split(names: list[str], ratios: list[float], seed: int, root: Path) -> dict[str, list[int]]:
    """Class indices of train, val and test for a split by ratio (each list ascending).

    Classes are ordered by a hash of (seed, class name), and the first round(train * K) go to train,
    the next round(val * K) to val, the rest to test. A class's place in that order depends only on
    its name and the seed, so adding or removing a class moves few others to another split (a
    permutation of positions would reshuffle them all), and the split is the same on every machine.

    Raises:
        ConfigError: the ratios are invalid, or leave a split fewer than MIN_CLASSES_PER_SPLIT
            classes (a one-class episode tells nothing apart).
    """
    _check_ratios(ratios)
    k = len(names)
    n_val, n_test = (math.floor(r * k + 0.5) for r in ratios[1:])
    n_train = k - n_val - n_test
    if min(n_train, n_val, n_test) < MIN_CLASSES_PER_SPLIT:
        raise ConfigError(f"dataset.split={ratios} gives {n_train}/{n_val}/{n_test} of the {k} classes "
                          f"under {root} to train/val/test; an episode needs {MIN_CLASSES_PER_SPLIT} "
                          f"classes in every split: change the ratios or add classes")

    def rank(c: int) -> bytes:
        return hashlib.blake2b(f"{seed}:{names[c]}".encode(), digest_size=8).digest()

    order = sorted(range(k), key=rank)
    chosen = {"train": order[:n_train], "val": order[n_train:n_train + n_val],
              "test": order[n_train + n_val:]}
    return {split: sorted(classes) for split, classes in chosen.items()}


def _check_ratios(ratios: list[float]) -> None:
    if len(ratios) != 3 or min(ratios) <= 0 or abs(sum(ratios) - 1) > 1e-6:
        raise ConfigError(f"dataset.split={ratios}: give three fractions of the classes, "
                          f"[train, val, test], each above 0, summing to 1 (e.g. [0.64, 0.16, 0.2])")


def _split_refused(layout: str) -> str:
    return (f"dataset.split applies to a split by ratio, but {layout} already fixes the split; "
            f"remove dataset.split")


def _rounded(values: tuple[float, ...]) -> list[float]:
    return [round(v, 4) for v in values]


def _scan(folder: Path) -> tuple[list[Path], list[Path], list[Path]]:
    """(folders, image files, other files) directly in `folder`, hidden entries left out, each in
    natural name order (os.scandir: no stat per entry except through symlinks)."""
    folders, images, others = [], [], []
    with os.scandir(folder) as entries:
        for entry in entries:
            path = Path(entry.path)
            if is_hidden(path):
                continue
            if entry.is_dir():
                folders.append(path)
            elif entry.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
                images.append(path)
            else:
                others.append(path)
    key = lambda p: natural_key(p.name)  # noqa: E731
    return sorted(folders, key=key), sorted(images, key=key), sorted(others, key=key)


def _relative(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix() + ("/" if path.is_dir() else "")


def _class_folders(folder: Path, root: Path, skipped: list[str]) -> list[tuple[str, list[Path]]]:
    """[(class name, its images)] of the class folders in `folder`; files beside them and folders
    inside a class folder go to `skipped`.

    Raises:
        DatasetError: a class folder holds no image.
    """
    class_dirs, loose_images, loose_others = _scan(folder)
    skipped.extend(_relative(p, root) for p in loose_images + loose_others)
    classes = []
    for class_dir in class_dirs:
        nested, images, others = _scan(class_dir)
        skipped.extend(_relative(p, root) for p in nested + others)
        if not images:
            raise DatasetError(f"class folder {class_dir} holds no images that Pillow decodes (e.g. "
                               f".jpg, .png, .pgm, .bmp, .tif); add images or delete the folder")
        classes.append((class_dir.name, images))
    return classes


def _listing(groups: list[tuple[str, list[tuple[str, list[Path]]]]], skipped: list[str],
             by_ratio: bool = False) -> Listing:
    files: list[Path] = []
    labels: list[int] = []
    names: list[str] = []
    class_splits: list[str] = []
    for split, classes in groups:
        for name, images in classes:
            files.extend(images)
            labels.extend([len(names)] * len(images))
            names.append(name)
            class_splits.append(split)
    return Listing(files, labels, names, class_splits, skipped, by_ratio)


def list_class_folders(root: Path) -> Listing:
    """`root/<class>/<image>`: every class folder, split later by ratio.

    Raises:
        DatasetError: fewer than 3 class folders, or an empty one.
    """
    skipped: list[str] = []
    classes = _class_folders(root, root, skipped)
    if len(classes) < len(SPLITS):
        raise DatasetError(f"{root} holds {len(classes)} class folders; expected {root}/<class>/<image> "
                           f"with at least 3 classes (train, val and test need different classes)")
    return _listing([("", classes)], skipped, by_ratio=True)


def list_split_folders(root: Path) -> Listing:
    """`root/{train,val,test}/<class>/<image>`; other entries of `root` are skipped.

    Raises:
        DatasetError: a split folder without classes, an empty class folder, or a class name in two
            split folders.
    """
    skipped: list[str] = []
    folders, loose_images, loose_others = _scan(root)
    skipped.extend(_relative(p, root) for p in loose_images + loose_others)
    skipped.extend(_relative(p, root) for p in folders if p.name not in SPLITS)
    groups = []
    seen: dict[str, str] = {}
    for split in SPLITS:
        classes = _class_folders(root / split, root, skipped)
        if not classes:
            raise DatasetError(f"{root / split} holds no class folders; expected "
                               f"{root}/{split}/<class>/<image>")
        for name, _ in classes:
            if name in seen:
                raise DatasetError(f"class {name!r} is in both {root / seen[name]} and {root / split}; "
                                   f"train, val and test must hold different classes")
            seen[name] = split
        groups.append((split, classes))
    return _listing(groups, skipped)


def _csv_layout(root: Path, csv_dir: Path) -> str:
    return (f"{csv_dir}/{{train,val,test}}.csv with the header filename,label, and each row's image "
            f"at {root}/<filename> or {root}/<label>/<filename> (miniImageNet as Ravi & Larochelle "
            f"ship it: images/ beside the three CSVs)")


def read_split_csv(path: Path) -> list[tuple[str, str, int]]:
    """Rows (filename, label, line number) of a split CSV with the header `filename,label`.

    Raises:
        DatasetError: the file is missing, has another header, or a row without both fields.
    """
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:  # -sig: Excel's byte-order mark
            reader = csv.reader(handle)
            header = [field.strip() for field in next(reader, [])]
            if header != CSV_HEADER:
                raise DatasetError(f"{path} starts with {','.join(header) or 'nothing'}; expected the "
                                   f"header filename,label and one row per image")
            rows = []
            for row in reader:
                if not any(field.strip() for field in row):
                    continue
                if len(row) != 2 or not row[0].strip() or not row[1].strip():
                    raise DatasetError(f"{path} line {reader.line_num}: {','.join(row)!r} is not "
                                       f"filename,label")
                rows.append((row[0].strip(), row[1].strip(), reader.line_num))
    except OSError as error:
        raise DatasetError(f"cannot read split file {path} ({error}); expected "
                           f"{path.parent}/{{train,val,test}}.csv with the header filename,label") from error
    if not rows:
        raise DatasetError(f"{path} lists no images; expected one filename,label row per image")
    return rows


def list_csv_layout(root: Path, csv_dir: Path) -> Listing:
    """The images named by `csv_dir/{train,val,test}.csv`, found at `root/<filename>` or
    `root/<label>/<filename>`; images under `root` that no CSV names are not read.

    Raises:
        DatasetError: a missing CSV or image, a class (label) in two CSVs, an image listed twice.
    """
    for split in SPLITS:
        if not (csv_dir / f"{split}.csv").is_file():
            raise DatasetError(f"{csv_dir / f'{split}.csv'} not found; expected {_csv_layout(root, csv_dir)}")
    flat = set(os.listdir(root))
    in_label_folder: dict[str, set[str]] = {}
    class_split: dict[str, str] = {}
    listed: dict[str, str] = {}
    groups = []
    for split in SPLITS:
        path = csv_dir / f"{split}.csv"
        per_class: dict[str, list[Path]] = {}
        for filename, label, line in read_split_csv(path):
            if class_split.setdefault(label, split) != split:
                raise DatasetError(f"class {label!r} is in both {class_split[label]}.csv and {split}.csv "
                                   f"({path} line {line}); train, val and test must hold different "
                                   f"classes")
            if filename in listed:
                raise DatasetError(f"{filename} is listed twice ({listed[filename]} and {path} line "
                                   f"{line}); each image belongs to one class of one split")
            listed[filename] = f"{path} line {line}"
            if filename in flat and (root / filename).is_file():
                per_class.setdefault(label, []).append(root / filename)
                continue
            if label not in in_label_folder:
                folder = root / label
                in_label_folder[label] = set(os.listdir(folder)) if folder.is_dir() else set()
            if filename not in in_label_folder[label]:
                raise DatasetError(f"{path} line {line} names {filename}, but neither {root / filename} "
                                   f"nor {root / label / filename} exists; expected "
                                   f"{_csv_layout(root, csv_dir)}")
            per_class.setdefault(label, []).append(root / label / filename)
        classes = [(label, sorted(per_class[label], key=lambda p: natural_key(p.name)))
                   for label in sorted(per_class, key=natural_key)]
        groups.append((split, classes))
    return _listing(groups, [])
