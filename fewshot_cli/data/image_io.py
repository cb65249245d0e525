"""Decoding image files into uint8 arrays, with an error that names the bad file."""

import inspect
import os
import stat
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from fewshot_cli.errors import DatasetError

# Pillow modes of 16-bit grayscale files (PNG, PGM, TIFF): 0..65535 whatever the byte order. Pillow
# gives "I" (32-bit int) for some of them, e.g. a PGM whose maxval is above 255; it already stretches
# a PGM maxval such as 4095 to 0..65535, so 65535 is the full range of every one of these.
SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")
SIXTEEN_BIT_MAX = 65535


def is_hidden(path: Path) -> bool:
    """Whether `path` is hidden: a name starting with '.' (.ipynb_checkpoints, .DS_Store, macOS
    ._* files) or, on Windows, the hidden attribute. Hidden entries are never classes or images."""
    if path.name.startswith("."):
        return True
    # Only Windows has the attribute; skipping the stat elsewhere keeps listings of 30,000 files fast.
    return os.name == "nt" and bool(getattr(path.stat(), "st_file_attributes", 0)
                                    & stat.FILE_ATTRIBUTE_HIDDEN)


def load_image(path: Path, size: tuple[int, int] | None, mode: str = "L") -> np.ndarray:
    """Decode `path` into a uint8 array [H, W] (mode "L") or [H, W, 3] (mode "RGB").

    The EXIF orientation tag (phone photos) is applied first (`ImageOps.exif_transpose`), so images
    are upright. 16-bit grayscale (Pillow modes I;16, I;16B, I;16L, and I as Pillow reads 16-bit
    PGMs) is scaled by the range of the type, round(v * 255 / 65535), rather than clipped to 255 as
    Pillow's convert does (which made every 16-bit image plain white); 32-bit float (mode F) is taken
    to hold [0, 1]. Neither is stretched by its own min/max, so relative brightness survives.

    Args:
        path: image file (PNG, PGM, JPEG, ...).
        size: (width, height) to resize to with Lanczos filtering (antialiased), or None to keep.
        mode: PIL mode to convert to.

    Raises:
        DatasetError: the file is missing, truncated or not an image, or holds 32-bit integer values
            outside 0..65535 or float values outside [0, 1].
    """
    try:
        with Image.open(path) as image:
            image = _to_8_bit(ImageOps.exif_transpose(image), path)
            image = image.convert(mode)
            if size is not None and image.size != size:
                image = image.resize(size, Image.Resampling.LANCZOS)
            return np.asarray(image, dtype=np.uint8).copy()
    except (OSError, UnidentifiedImageError, ValueError) as error:
        raise DatasetError(
            f"cannot decode image {path} ({error}); replace or delete the file and run again"
        ) from error


def _to_8_bit(image: Image.Image, path: Path) -> Image.Image:
    """16-bit or float grayscale as mode "L" scaled by its type's range; other modes unchanged."""
    if image.mode in SIXTEEN_BIT_MODES:
        low, high, kind = 0, SIXTEEN_BIT_MAX, "integer values outside 0..65535 (16 bits)"
    elif image.mode == "F":
        low, high, kind = 0.0, 1.0, "float values outside [0, 1]"
    else:
        return image
    values = np.asarray(image, dtype=np.float64)
    if values.size and not (np.isfinite(values).all() and low <= values.min() and values.max() <= high):
        raise DatasetError(f"image {path} (Pillow mode {image.mode}) holds {kind}; save it as an 8- "
                           f"or 16-bit image and run again")
    return Image.fromarray(np.rint(values * (255 / high)).astype(np.uint8))


# Formats Pillow registers for reading that are not images it decodes by itself: the stub plugins
# (BUFR, GRIB, HDF5, WMF: need a handler installed by other code), EPS (runs Ghostscript), MPEG
# (only its header is read) and IPTC (metadata). A file with one of these suffixes is reported as
# "not an image" rather than failing the run.
NOT_DECODED_FORMATS = ("EPS", "MPEG", "IPTC")


def _readable_suffixes() -> frozenset[str]:
    """Lower-case file suffixes of the image formats this Pillow decodes (.jpg, .png, .pgm, .webp, ...)."""
    Image.init()
    readable = {fmt for fmt, (factory, _) in Image.OPEN.items()
                if fmt not in NOT_DECODED_FORMATS
                and not (inspect.isclass(factory) and issubclass(factory, ImageFile.StubImageFile))}
    return frozenset(ext for ext, fmt in Image.registered_extensions().items() if fmt in readable)


# What every image listing reads (image_folder, AT&T faces, `fewshot predict`): one list, so a file
# that training accepts is never silently skipped by predict (.webp was).
IMAGE_SUFFIXES = _readable_suffixes()
