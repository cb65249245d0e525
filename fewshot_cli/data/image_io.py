"""Decoding image files into uint8 arrays, with an error that names the bad file."""

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from fewshot_cli.errors import DatasetError


def load_image(path: Path, size: tuple[int, int] | None, mode: str = "L") -> np.ndarray:
    """Decode `path` into a uint8 array [H, W] (mode "L") or [H, W, 3] (mode "RGB").

    Args:
        path: image file (PNG, PGM, JPEG, ...).
        size: (width, height) to resize to with Lanczos filtering (antialiased), or None to keep.
        mode: PIL mode to convert to.

    Raises:
        DatasetError: the file is missing, truncated or not an image.
    """
    try:
        with Image.open(path) as image:
            image = image.convert(mode)
            if size is not None and image.size != size:
                image = image.resize(size, Image.Resampling.LANCZOS)
            return np.asarray(image, dtype=np.uint8).copy()
    except (OSError, UnidentifiedImageError, ValueError) as error:
        raise DatasetError(
            f"cannot decode image {path} ({error}); replace or delete the file and run again"
        ) from error
