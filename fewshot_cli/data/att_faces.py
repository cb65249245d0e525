"""AT&T / ORL faces (Samaria & Harter 1994): 40 people x 10 grayscale photographs, 92x112 PGM.

Layout: one subfolder per person holding that person's images, as distributed by AT&T Cambridge
(`${paths.data_dir}/att_faces/s1..s40/1..10.pgm`). Any folder of that shape works (PGM, PNG, JPEG):
people are classes, and whole people are held out for validation and test, so every test face
belongs to someone never seen in training (the one-shot setting of the Siamese tutorials).
"""

import logging
import re
from pathlib import Path

import numpy as np
import torch

from fewshot_cli.data.base import SPLITS, AugmentNode, FewShotDataset
from fewshot_cli.data.cache import cache_file, file_fingerprint, load_cache_file, load_or_build
from fewshot_cli.data.image_io import IMAGE_SUFFIXES, is_hidden, load_image
from fewshot_cli.data.image_split import ImageSplit
from fewshot_cli.errors import ConfigError, DatasetError

log = logging.getLogger(__name__)


EXPECTED_LAYOUT = "{root}/<person>/<image>.pgm (e.g. {root}/s1/1.pgm ... {root}/s40/10.pgm)"


def natural_key(name: str) -> list[int | str]:
    """Sort key that orders 's2' before 's10' (numbers compared as numbers)."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


class ATTFaces(FewShotDataset):
    """AT&T faces with whole people held out.

    People are sorted naturally (s1, s2, ..., s40); the last `heldout` people are the test split, the
    `val_people` before them the validation split, and everyone else the training split. `fold` k
    rotates that order by k * heldout people, so folds 0 .. floor(40 / heldout) - 1 test on disjoint
    groups of people (k-fold cross-validation over people: with only a handful of test people the
    accuracy depends more on who they are than on the episodes, so report the mean over folds); a
    fold that would wrap around onto people an earlier fold tested is refused. Validation people are
    always others than the test people (at least one), so best.pt and the verification threshold are
    never chosen on test people; the classic tutorial's 37/3 split with no validation becomes
    `heldout=3 val_people=3` (34 training people). Images are read as
    grayscale, resized with Lanczos filtering to `image_size` x `image_size` (the tutorial's 100x100),
    and stored as uint8 [N, 1, S, S].

    Args:
        root: the data dir; the faces live in `root/<folder>/`.
        cache_dir: where the decoded tensor is cached.
        folder: subfolder of `root` holding one folder per person.
        heldout: number of test people (3: the tutorial split; 5 or 10 allow 5-way test episodes).
        val_people: number of validation people (at least 1; never the test people).
        image_size: side of the square images.
        fold: which block of `heldout` people is the test split (0: the last ones).
        cache_file: a decoded cache entry (`<cache_dir>/att_faces-<hash>.pt`) to use as it is,
            without reading or needing the image folder (machines that carry only the cache); None
            (default) decodes the folder, or reuses the cache entry of exactly these files.
    """

    def __init__(
        self,
        root: str,
        cache_dir: str,
        folder: str = "att_faces",
        heldout: int = 5,
        val_people: int = 5,
        image_size: int = 100,
        fold: int = 0,
        cache_file: str | None = None,
        name: str = "att_faces",
        channels: int = 1,
        test_episodes: int = 600,
        mean: list[float] | None = None,
        std: list[float] | None = None,
        augment: AugmentNode = None,
    ) -> None:
        super().__init__(name, channels, test_episodes, mean, std, augment)
        if heldout < 1:
            raise ConfigError(f"dataset.heldout={heldout} must be at least 1 (test people)")
        if val_people < 1:
            raise ConfigError(f"dataset.val_people={val_people} must be at least 1: validating on the "
                              f"test people would choose best.pt on the test split")
        if image_size < 1:
            raise ConfigError(f"dataset.image_size={image_size} must be at least 1")
        if fold < 0:
            raise ConfigError(f"dataset.fold={fold} must be 0 or more")
        self.root = Path(root).expanduser() / folder
        self.cache_dir = cache_dir
        self.heldout = heldout
        self.val_people = val_people
        self.image_size = image_size
        self.fold = fold
        self.cache_file = cache_file

    def load_split(self, split: str) -> ImageSplit:
        """Images of the people of `split` ("train", "val" or "test")."""
        if split not in SPLITS:
            raise ConfigError(f"split {split!r}; use one of {', '.join(SPLITS)}")
        faces = self._faces()
        names: list[str] = faces["names"]
        people = self.people_of(split, len(names))
        position = {person: i for i, person in enumerate(people)}
        labels = faces["labels"]
        keep = torch.isin(labels, torch.tensor(people, dtype=torch.long))
        new_labels = torch.tensor([position[int(p)] for p in labels[keep].tolist()], dtype=torch.long)
        return ImageSplit(faces["images"][keep], new_labels, [names[p] for p in people],
                          f"{self.name}/{split}")

    def people_of(self, split: str, n_people: int) -> list[int]:
        """Indices (into the natural order) of the people of `split` among `n_people`."""
        n_train = n_people - self.heldout - self.val_people
        if n_train < 1:
            raise ConfigError(
                f"dataset.heldout={self.heldout} + dataset.val_people={self.val_people} leaves no "
                f"training people out of the {n_people} under {self.root}"
            )
        n_folds = n_people // self.heldout  # whole blocks only: a partial one would wrap onto fold 0
        if self.fold >= n_folds:
            raise ConfigError(f"dataset.fold={self.fold}: {n_people} people in blocks of "
                              f"dataset.heldout={self.heldout} give {n_folds} disjoint folds "
                              f"(0..{n_folds - 1}); a further fold would test people again")
        # Rotate right by fold * heldout: fold 0 keeps the natural order (test = the last people).
        shift = self.fold * self.heldout
        order = [(i - shift) % n_people for i in range(n_people)]
        test = order[n_train + self.val_people:]
        if split == "train":
            return order[:n_train]
        if split == "val":
            return order[n_train:n_train + self.val_people]
        return test

    def _faces(self) -> dict:
        """Decoded images of every person: images uint8 [N,1,S,S], labels [N], names.

        Cached, keyed on every image's path, size and time (`file_fingerprint`), so a replaced,
        added or moved image is decoded again; or read from `cache_file` alone."""
        settings = {"dataset": "att_faces", "image_size": self.image_size}
        if self.cache_file is not None:
            return load_cache_file(self.cache_file, settings, self.root)
        folder = self._find()
        files = _person_files(folder)
        fingerprint = file_fingerprint(folder, [path for images in files.values() for path in images])
        path = cache_file(self.cache_dir, "att_faces", {**settings, **fingerprint})
        return load_or_build(path, lambda: _decode(files, self.image_size), settings)

    def _find(self) -> Path:
        if not self.root.is_dir():
            raise DatasetError(
                f"AT&T faces not found: {self.root} is not a folder; expected "
                f"{EXPECTED_LAYOUT.format(root=self.root)}; set paths.data_dir (or FEWSHOT_DATA_DIR) "
                f"to the folder holding {self.root.name}/"
            )
        return self.root


def _person_files(folder: Path) -> dict[str, list[Path]]:
    """{person folder name: sorted image files}, people in natural order; errors name the layout.

    Hidden entries (.ipynb_checkpoints, .DS_Store, names starting with '.') are neither people nor
    images."""
    people = sorted((p for p in folder.iterdir() if p.is_dir() and not is_hidden(p)),
                    key=lambda p: natural_key(p.name))
    files = {}
    for person in people:
        images = sorted((f for f in person.iterdir()
                         if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file() and not is_hidden(f)),
                        key=lambda f: natural_key(f.name))
        if not images:
            raise DatasetError(f"person folder {person} holds no images (no file Pillow reads: .pgm, "
                               f".png, .jpg, ...); "
                               f"expected {EXPECTED_LAYOUT.format(root=folder)}")
        files[person.name] = images
    if len(files) < 2:
        raise DatasetError(f"{folder} holds {len(files)} person folders; expected "
                           f"{EXPECTED_LAYOUT.format(root=folder)}")
    return files


def _decode(files: dict[str, list[Path]], image_size: int) -> dict:
    """Decode every image once into uint8 [N, 1, S, S] with per-person labels."""
    paths = [path for images in files.values() for path in images]
    labels = [i for i, images in enumerate(files.values()) for _ in images]
    images = np.empty((len(paths), 1, image_size, image_size), dtype=np.uint8)
    for i, path in enumerate(paths):
        images[i, 0] = load_image(path, (image_size, image_size))
    log.info("decoded %d AT&T face images of %d people", len(paths), len(files))
    return {"images": torch.from_numpy(images), "labels": torch.tensor(labels, dtype=torch.long),
            "names": list(files)}
