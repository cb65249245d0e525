"""Omniglot (Lake, Salakhutdinov, Tenenbaum 2015) as uint8 tensors.

Reads torchvision's folder layout directly (torchvision's `Omniglot` class md5-checks the zip before
reading folders, so it refuses a tree that was unpacked by hand); when the folders are missing and
`download=true`, torchvision downloads them into the same place.
"""

import logging
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from fewshot_cli.data.base import AugmentNode, FewShotDataset
from fewshot_cli.data.cache import cache_file, file_fingerprint, load_cache_file, load_or_build
from fewshot_cli.data.download import removed_on_failure
from fewshot_cli.data.image_io import is_hidden, load_image
from fewshot_cli.data.image_split import ImageSplit
from fewshot_cli.data.omniglot_splits import ROTATIONS, lake_split_of, vinyals_split_of
from fewshot_cli.errors import ConfigError, DatasetError

log = logging.getLogger(__name__)

BACKGROUND, EVALUATION = "images_background", "images_evaluation"
EXPECTED_LAYOUT = (
    "{root}/omniglot-py/images_background/<Alphabet>/characterNN/*.png and "
    "{root}/omniglot-py/images_evaluation/<Alphabet>/characterNN/*.png"
)


class Omniglot(FewShotDataset):
    """Omniglot with the Vinyals or Lake class split.

    Images are inverted (strokes bright, background 0) as in Snell et al.'s code, resized with
    Lanczos filtering from 105x105 to `image_size`, and stored as uint8 [N, 1, S, S].

    Args:
        root: the data dir; Omniglot lives in `root/omniglot/omniglot-py/`.
        cache_dir: where the decoded tensor is cached.
        split_scheme: "vinyals" (4112/688/1692 rotated classes) or "lake" (30 background alphabets
            train, 10 evaluation alphabets validate, the 10 of Lake's one-shot runs test).
        image_size: side of the square images (28 for the episodic papers, 105 for Koch et al.).
        rotations: add 90/180/270-degree rotations of every character as new classes.
        download: fetch the dataset through torchvision when the folders are missing.
        cache_file: a decoded cache entry (`<cache_dir>/omniglot-<hash>.pt`) to use as it is,
            without reading or even needing the data folder (machines that carry only the cache);
            None (default) decodes the folder, or reuses the cache entry of exactly these files.
    """

    def __init__(
        self,
        root: str,
        cache_dir: str,
        split_scheme: str = "vinyals",
        image_size: int = 28,
        rotations: bool = True,
        download: bool = True,
        cache_file: str | None = None,
        name: str = "omniglot",
        channels: int = 1,
        test_episodes: int = 1000,
        mean: list[float] | None = None,
        std: list[float] | None = None,
        augment: AugmentNode = None,
    ) -> None:
        super().__init__(name, channels, test_episodes, mean, std, augment)
        if split_scheme not in ("vinyals", "lake"):
            raise ConfigError(f"dataset.split_scheme={split_scheme!r}; use 'vinyals' or 'lake'")
        self.root = Path(root).expanduser() / "omniglot"
        self.cache_dir = cache_dir
        self.split_scheme = split_scheme
        self.image_size = image_size
        self.rotations = rotations
        self.download = download
        self.cache_file = cache_file

    def load_split(self, split: str) -> ImageSplit:
        """Images of the classes of `split`, rotated copies included as classes of their own."""
        characters = self._characters()
        images, char_index = characters["images"], characters["char_index"]
        names = characters["names"]
        chosen = [i for i, name in enumerate(names) if self._in_split(name, split)]
        in_split = torch.isin(char_index, torch.tensor(chosen))
        split_images, split_chars = images[in_split], char_index[in_split]
        rotations = ROTATIONS if self.rotations else (0,)
        parts, labels, class_names = [], [], []
        for quarter_turns, degrees in enumerate(rotations):
            # One rot90 over all images of the split per rotation: fast and exact.
            position = {c: len(class_names) + j for j, c in enumerate(chosen)}
            class_names.extend(f"{names[c]}/rot{degrees:03d}" for c in chosen)
            parts.append(torch.rot90(split_images, k=quarter_turns, dims=(-2, -1)))
            labels.append(torch.tensor([position[c] for c in split_chars.tolist()], dtype=torch.long))
        alphabets = sorted({names[c].split("/")[1] for c in chosen})
        group = {a: i for i, a in enumerate(alphabets)}  # class group = alphabet (within-alphabet tasks)
        groups = torch.tensor([group[name.split("/")[1]] for name in class_names], dtype=torch.long)
        return ImageSplit(torch.cat(parts), torch.cat(labels), class_names, f"{self.name}/{split}",
                          class_groups=groups)

    def decode_files(self, paths: list[Path]) -> torch.Tensor:
        """uint8 [B, 1, S, S] like the training tensors: resized and inverted (strokes bright)."""
        return 255 - super().decode_files(paths)

    def _in_split(self, name: str, split: str) -> bool:
        """Whether character '<images_background|evaluation>/<Alphabet>/characterNN' is in `split`."""
        part, alphabet, character = name.split("/")
        if self.split_scheme == "vinyals":
            return vinyals_split_of(alphabet, character) == split
        return lake_split_of(part, alphabet) == split

    def _characters(self) -> dict:
        """Decoded images of all characters (cached on disk): images, char_index, names.

        The folders are listed and stat-ed on every run and the cache entry is keyed on that
        listing (see `file_fingerprint`), so missing, changed or moved PNGs are never hidden by a
        warm cache. A machine that holds only the cache file (a GPU box, a cluster node) trains
        without the 32,460 PNGs through `dataset.cache_file`.
        """
        settings = {"dataset": "omniglot", "image_size": self.image_size}
        if self.cache_file is not None:
            return load_cache_file(self.cache_file, settings, self.root)
        folder = self._find_or_download()
        files, char_index, names = _list_characters(folder)
        key = {**settings, **file_fingerprint(folder, files)}
        return load_or_build(cache_file(self.cache_dir, "omniglot", key),
                             lambda: _decode_all(files, char_index, names, self.image_size), settings)

    def _find_or_download(self) -> Path:
        folder = self.root / "omniglot-py"
        if _has_both_parts(folder):
            return folder
        if self.download:
            _download(self.root)
            if _has_both_parts(folder):
                return folder
        raise DatasetError(
            f"Omniglot not found under {self.root}: expected "
            f"{EXPECTED_LAYOUT.format(root=self.root)}; set paths.data_dir (or FEWSHOT_DATA_DIR) "
            f"to the folder holding omniglot/, or run with dataset.download=true and internet access"
        )


def _has_both_parts(folder: Path) -> bool:
    return all((folder / part).is_dir() and any((folder / part).iterdir())
               for part in (BACKGROUND, EVALUATION))


def _download(root: Path) -> None:
    """Fetch both halves through torchvision; a network failure becomes a DatasetError."""
    from torchvision.datasets import Omniglot as TorchvisionOmniglot

    log.info("downloading Omniglot into %s", root)
    try:
        with removed_on_failure(root):
            for background in (True, False):
                TorchvisionOmniglot(str(root), background=background, download=True)
    except Exception as error:  # urllib, HTTP and checksum errors all mean "no data"
        raise DatasetError(
            f"could not download Omniglot into {root} ({error}); without internet, place the "
            f"folders as {EXPECTED_LAYOUT.format(root=root)}"
        ) from error


def _list_characters(folder: Path) -> tuple[list[Path], list[int], list[str]]:
    """Every PNG under `folder` (no decoding), its character's index, and the character names
    '<part>/<Alphabet>/characterNN'. Hidden entries (.ipynb_checkpoints, .DS_Store) are skipped."""
    files: list[Path] = []
    char_index: list[int] = []
    names: list[str] = []
    for part in (BACKGROUND, EVALUATION):
        for alphabet in sorted(p for p in (folder / part).iterdir() if p.is_dir() and not is_hidden(p)):
            for character in sorted(p for p in alphabet.iterdir() if p.is_dir() and not is_hidden(p)):
                pngs = sorted(p for p in character.glob("*.png") if not is_hidden(p))
                if not pngs:
                    raise DatasetError(f"Omniglot character folder {character} holds no .png files")
                names.append(f"{part}/{alphabet.name}/{character.name}")
                files.extend(pngs)
                char_index.extend([len(names) - 1] * len(pngs))
    return files, char_index, names


def _decode_all(files: list[Path], char_index: list[int], names: list[str], image_size: int) -> dict:
    """Decode every PNG once: uint8 [N, 1, S, S] (inverted), char_index [N], character names."""
    images = np.empty((len(files), 1, image_size, image_size), dtype=np.uint8)
    for i, path in enumerate(tqdm(files, desc="decoding Omniglot", unit="img", mininterval=2)):
        images[i, 0] = 255 - load_image(path, (image_size, image_size))
    return {
        "images": torch.from_numpy(images),
        "char_index": torch.tensor(char_index, dtype=torch.long),
        "names": names,
    }
