"""load_image: 16-bit and float grayscale scaled by their type's range, EXIF orientation applied,
8-bit files unchanged, and hidden paths recognised."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fewshot_cli.data.image_io import is_hidden, load_image
from fewshot_cli.errors import DatasetError


def ramp16(seed: int) -> np.ndarray:
    """A 6x8 uint16 image spanning (almost) the whole 16-bit range, different per seed."""
    rng = np.random.default_rng(seed)
    values = rng.integers(0, 65536, size=(6, 8), dtype=np.uint16)
    values[0, 0], values[0, 1] = 0, 65535
    return values


def expected_8_bit(values: np.ndarray) -> np.ndarray:
    return np.rint(values.astype(np.float64) * 255 / 65535).astype(np.uint8)


def test_16_bit_png_is_scaled_not_white(tmp_path: Path) -> None:
    values = ramp16(0)
    image = Image.fromarray(values)
    assert image.mode == "I;16"
    image.save(tmp_path / "a.png")
    decoded = load_image(tmp_path / "a.png", None)
    assert decoded.dtype == np.uint8
    assert np.array_equal(decoded, expected_8_bit(values))
    assert (decoded < 255).mean() > 0.9  # Pillow's own convert("L") makes almost all of it 255


def test_16_bit_pgm_with_maxval_65535(tmp_path: Path) -> None:
    values = ramp16(1)
    height, width = values.shape
    # PGM stores 16-bit samples big-endian (netpbm spec).
    (tmp_path / "a.pgm").write_bytes(f"P5\n{width} {height}\n65535\n".encode()
                                     + values.astype(">u2").tobytes())
    assert np.array_equal(load_image(tmp_path / "a.pgm", None), expected_8_bit(values))
    rgb = load_image(tmp_path / "a.pgm", None, mode="RGB")
    assert rgb.shape == (height, width, 3) and np.array_equal(rgb[..., 1], expected_8_bit(values))


def test_pgm_with_12_bit_maxval_uses_the_files_range(tmp_path: Path) -> None:
    values = (ramp16(2) >> 4).astype(np.uint16)  # 0..4095
    (tmp_path / "a.pgm").write_bytes(b"P5\n8 6\n4095\n" + values.astype(">u2").tobytes())
    decoded = load_image(tmp_path / "a.pgm", None).astype(int)
    # 4095 (the file's white) must become 255, not 4095 / 65535 of it.
    assert np.abs(decoded - np.rint(values.astype(float) * 255 / 4095)).max() <= 1
    assert decoded.max() == 255


def test_two_different_16_bit_faces_stay_different(tmp_path: Path) -> None:
    for name, seed in (("one.png", 3), ("two.png", 4)):
        Image.fromarray(ramp16(seed)).save(tmp_path / name)
    one, two = (load_image(tmp_path / n, (4, 4)) for n in ("one.png", "two.png"))
    assert not np.array_equal(one, two)


def test_8_bit_image_decodes_unchanged(tmp_path: Path) -> None:
    values = np.random.default_rng(5).integers(0, 256, size=(7, 9), dtype=np.uint8)
    Image.fromarray(values).save(tmp_path / "a.png")
    Image.fromarray(values).save(tmp_path / "a.pgm")
    assert np.array_equal(load_image(tmp_path / "a.png", None), values)
    assert np.array_equal(load_image(tmp_path / "a.pgm", None), values)


def test_float_image_is_read_as_0_to_1_and_out_of_range_is_refused(tmp_path: Path) -> None:
    values = np.linspace(0, 1, 48, dtype=np.float32).reshape(6, 8)
    Image.fromarray(values).save(tmp_path / "a.tif")
    assert np.array_equal(load_image(tmp_path / "a.tif", None), np.rint(values * 255).astype(np.uint8))
    Image.fromarray(values * 300).save(tmp_path / "b.tif")
    with pytest.raises(DatasetError, match=r"b\.tif .*float values outside \[0, 1\]"):
        load_image(tmp_path / "b.tif", None)


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    values = np.arange(4 * 6, dtype=np.uint8).reshape(4, 6) * 10  # not symmetric under rotation
    image = Image.fromarray(values)
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: the camera was turned; view rotated 90 degrees clockwise
    image.save(tmp_path / "phone.png", exif=exif)
    decoded = load_image(tmp_path / "phone.png", None)
    assert np.array_equal(decoded, np.rot90(values, k=-1))
    # Orientation is applied before resizing: the output has the requested (width, height).
    assert load_image(tmp_path / "phone.png", (4, 6)).shape == (6, 4)


def test_hidden_names() -> None:
    assert is_hidden(Path("faces/.ipynb_checkpoints"))
    assert is_hidden(Path("s1/.DS_Store")) and is_hidden(Path("s1/._1.pgm"))
    assert not is_hidden(Path(".data/s1/1.pgm")) and not is_hidden(Path("s1/1.pgm"))
