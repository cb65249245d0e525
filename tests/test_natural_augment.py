"""Natural-image augmentation of training episodes (fewshot_cli/data/natural_augment.py): per-image
parameters, v2's maths, determinism from the episode seed, training episodes only, config defaults."""

from pathlib import Path

import pytest
import torch
from conftest import compose_config
from hydra.utils import instantiate
from torchvision.transforms.v2 import functional as TF

from fewshot_cli.data.image_split import ImageSplit
from fewshot_cli.data.natural_augment import NaturalAugment, natural_augment_from_config
from fewshot_cli.data.sampler import EpisodeSampler
from fewshot_cli.errors import ConfigError

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(),
                                                                reason="no CUDA device"))]
OFF = {"crop_scale": None, "flip_p": 0.0, "brightness": 0.0, "contrast": 0.0, "saturation": 0.0}


def random_images(batch: int = 16, channels: int = 3, height: int = 12, width: int = 10,
                  seed: int = 0) -> torch.Tensor:
    return torch.rand(batch, channels, height, width, generator=torch.Generator().manual_seed(seed))


def generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --- config ----------------------------------------------------------------------------------------

def test_none_and_absent_nodes_build_nothing() -> None:
    assert natural_augment_from_config(None) is None  # checkpoints from before augmentation
    assert natural_augment_from_config({"kind": "none", "flip_p": 0.5}) is None
    assert natural_augment_from_config("natural") == NaturalAugment()
    assert natural_augment_from_config({"kind": "natural", "crop_scale": [0.3, 0.9]}).crop_scale == (0.3, 0.9)


@pytest.mark.parametrize(("node", "key"), [
    ({"kind": "random"}, "dataset.augment.kind"),
    ({"kind": "natural", "crop_scale": [0.0, 1.0]}, "dataset.augment.crop_scale"),
    ({"kind": "natural", "crop_scale": [0.8, 0.5]}, "dataset.augment.crop_scale"),
    ({"kind": "natural", "crop_ratio": [0.0, 1.0]}, "dataset.augment.crop_ratio"),
    ({"kind": "natural", "flip_p": 1.5}, "dataset.augment.flip_p"),
    ({"kind": "natural", "contrast": -0.1}, "dataset.augment.contrast"),
    ({"kind": "natural", "hue": 0.1}, "dataset.augment.hue"),
])
def test_bad_options_name_their_key(node: dict, key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        natural_augment_from_config(node)


@pytest.mark.parametrize(("dataset", "on"), [
    ("omniglot", False), ("mnist", False), ("att_faces", False), ("cifar100", False),
    ("image_folder", False), ("cifar_fs", True), ("mini_imagenet", True), ("cub", True)])
def test_dataset_defaults(dataset: str, on: bool) -> None:
    cfg = compose_config("train", [f"dataset={dataset}"], None)
    assert cfg.dataset.augment.kind == ("natural" if on else "none")
    assert (natural_augment_from_config(cfg.dataset.augment) is not None) == on


def test_dataset_classes_build_their_augmentation(tmp_path: Path) -> None:
    paths = [f"paths.data_dir={tmp_path}", f"paths.cache_dir={tmp_path}"]  # constructors read no file
    cifar_fs = instantiate(compose_config("train", ["dataset=cifar_fs", *paths], None).dataset)
    assert cifar_fs.augment == NaturalAugment(crop_ratio=(0.75, 1.3333333333))
    omniglot = instantiate(compose_config("train", ["dataset=omniglot", *paths], None).dataset)
    assert omniglot.augment is None
    switched = compose_config("train", ["dataset=omniglot", "dataset.augment.kind=natural",
                                        "dataset.augment.flip_p=0", *paths], None)
    assert instantiate(switched.dataset).augment.flip_p == 0


# --- the transform ---------------------------------------------------------------------------------

def test_everything_off_is_the_identity() -> None:
    x = random_images()
    assert torch.equal(NaturalAugment(**OFF)(x, seed=5), x)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_shape_dtype_and_device_are_kept(device: str, channels: int, dtype: torch.dtype) -> None:
    x = random_images(channels=channels).to(device=device, dtype=dtype)
    out = NaturalAugment()(x, seed=3)
    assert out.shape == x.shape and out.dtype == dtype and out.device == x.device
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    assert not torch.allclose(out, x)


def test_every_image_gets_its_own_parameters() -> None:
    params = NaturalAugment().sample(32, 84, 84, generator())
    assert len({tuple(box) for box in params.boxes.tolist()}) > 28
    assert 0 < int(params.flip.sum()) < 32
    for factors in (params.brightness, params.contrast, params.saturation):
        assert len(set(factors.tolist())) == 32
    # 32 copies of one image come out as 32 different images.
    out = NaturalAugment()(random_images(1, height=16, width=16).expand(32, -1, -1, -1), seed=0)
    assert len({tuple(image.flatten().tolist()) for image in out}) == 32


def test_the_episode_seed_decides_the_augmentation() -> None:
    x = random_images()
    augment = NaturalAugment()
    assert torch.equal(augment(x, seed=11), NaturalAugment()(x.clone(), seed=11))
    assert not torch.allclose(augment(x, seed=11), augment(x, seed=12))


def test_turning_one_transform_off_keeps_the_others_draws() -> None:
    full = NaturalAugment().sample(8, 20, 20, generator(4))
    no_jitter = NaturalAugment(brightness=0, contrast=0, saturation=0).sample(8, 20, 20, generator(4))
    assert torch.equal(full.boxes, no_jitter.boxes) and torch.equal(full.flip, no_jitter.flip)


def test_flip_mirrors_exactly_the_drawn_images() -> None:
    x = random_images(32)
    augment = NaturalAugment(**{**OFF, "flip_p": 0.5})
    params = augment.sample(32, 12, 10, generator(1))
    flip = params.flip
    assert 0 < int(flip.sum()) < 32
    out = augment.apply(x, params)
    assert torch.equal(out[flip], x[flip].flip(-1))
    assert torch.equal(out[~flip], x[~flip])


def _coordinate_images(batch: int, height: int, width: int) -> torch.Tensor:
    """float [batch, 2, H, W]: channel 0 holds each pixel's column, channel 1 its row. Bilinear
    sampling reproduces a linear ramp exactly, so the output tells where each pixel was sampled."""
    cols = torch.arange(width, dtype=torch.float64).expand(height, width)
    rows = torch.arange(height, dtype=torch.float64)[:, None].expand(height, width)
    return torch.stack([cols, rows]).expand(batch, 2, height, width).contiguous()


@pytest.mark.parametrize("flip_p", [0.0, 0.5])
def test_crop_resizes_the_drawn_box_to_the_input_size(flip_p: float) -> None:
    b, h, w = 64, 30, 40
    augment = NaturalAugment(**{**OFF, "crop_scale": (0.3, 0.9), "crop_ratio": (0.5, 2.0),
                                "flip_p": flip_p})
    params = augment.sample(b, h, w, generator(2))
    out = augment.apply(_coordinate_images(b, h, w), params)
    assert out.shape == (b, 2, h, w)
    top, left, crop_h, crop_w = params.boxes.double().unbind(1)
    assert bool((top >= 0).all() and (left >= 0).all())
    assert bool((top + crop_h <= h).all() and (left + crop_w <= w).all())
    # Rounded boxes: area and ratio within the configured ranges up to one pixel of rounding.
    area = crop_h * crop_w / (h * w)
    assert bool((area > 0.3 - 0.05).all() and (area < 0.9 + 0.05).all())
    assert bool((crop_w / crop_h > 0.5 - 0.1).all() and (crop_w / crop_h < 2.0 + 0.1).all())
    # Output column i samples left + (i + 0.5) * crop_w / W - 0.5 (reversed when flipped): the
    # sampling point of v2.functional.resized_crop; clamped to the image at its border.
    i = torch.arange(w, dtype=torch.float64)
    source = torch.where(params.flip[:, None], w - 1 - i, i)
    expected_x = (left[:, None] + (source + 0.5) * crop_w[:, None] / w - 0.5).clamp(0, w - 1)
    j = torch.arange(h, dtype=torch.float64)
    expected_y = (top[:, None] + (j + 0.5) * crop_h[:, None] / h - 0.5).clamp(0, h - 1)
    torch.testing.assert_close(out[:, 0, 0, :], expected_x, atol=1e-6, rtol=0)
    torch.testing.assert_close(out[:, 1, :, 0], expected_y, atol=1e-6, rtol=0)
    if flip_p:
        assert 0 < int(params.flip.sum()) < b


def test_crop_matches_torchvision_resized_crop_inside_the_border() -> None:
    """The outermost output pixels differ by design: v2 clamps to the crop's edge, the batched
    version reads the neighbouring image pixel (half a pixel outside the box)."""
    x = random_images(16, height=32, width=32)
    augment = NaturalAugment(**{**OFF, "crop_scale": (0.5, 1.0)})
    params = augment.sample(16, 32, 32, generator(3))
    out = augment.apply(x, params)
    for image, result, (top, left, crop_h, crop_w) in zip(x, out, params.boxes.tolist(), strict=True):
        reference = TF.resized_crop(image, top, left, crop_h, crop_w, [32, 32], antialias=False)
        torch.testing.assert_close(result[:, 1:-1, 1:-1], reference[:, 1:-1, 1:-1], atol=1e-5, rtol=0)


@pytest.mark.parametrize("strength", [0.4, 1.5])
def test_colour_jitter_is_v2s_per_image_and_within_bounds(strength: float) -> None:
    x = random_images(24)
    augment = NaturalAugment(**{**OFF, "brightness": strength, "contrast": strength,
                                "saturation": strength})
    params = augment.sample(24, 12, 10, generator(6))
    low, high = max(0.0, 1 - strength), 1 + strength
    for factors in (params.brightness, params.contrast, params.saturation):
        assert float(factors.min()) >= low and float(factors.max()) <= high
    out = augment.apply(x, params)
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    for i in range(24):  # torchvision's own kernels, one image and one factor at a time
        expected = TF.adjust_brightness(x[i], float(params.brightness[i]))
        expected = TF.adjust_contrast(expected, float(params.contrast[i]))
        expected = TF.adjust_saturation(expected, float(params.saturation[i]))
        torch.testing.assert_close(out[i], expected, atol=1e-6, rtol=1e-6)
    assert not torch.allclose(out, x)


def test_brightness_scales_each_image_by_its_own_factor() -> None:
    x = random_images(8) * 0.5  # no pixel reaches the clamp at factors <= 1.4
    augment = NaturalAugment(**{**OFF, "brightness": 0.4})
    params = augment.sample(8, 12, 10, generator(7))
    ratio = augment.apply(x, params) / x
    torch.testing.assert_close(ratio, params.brightness[:, None, None, None].expand_as(x))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cpu_and_cuda_give_the_same_augmentation() -> None:
    x = random_images(32, height=84, width=84)
    cpu = NaturalAugment()(x, seed=9)
    cuda = NaturalAugment()(x.cuda(), seed=9)
    torch.testing.assert_close(cuda.cpu(), cpu, atol=1e-4, rtol=0)


# --- in the sampler --------------------------------------------------------------------------------

def toy_split() -> ImageSplit:
    """RGB 16x16 images of 6 classes x 6 images with random pixels."""
    labels = torch.arange(6).repeat_interleave(6)
    images = torch.randint(0, 256, (36, 3, 16, 16), dtype=torch.uint8, generator=generator(0))
    return ImageSplit(images, labels, [f"c{i}" for i in range(6)], "toy/train")


def toy_sampler(augment: NaturalAugment | None, **kwargs) -> EpisodeSampler:
    return EpisodeSampler(toy_split(), 5, 1, 3, seed=3, stream="train", augment=augment, **kwargs)


def test_sampler_augments_the_same_episode_with_the_episodes_seed() -> None:
    plain, augmented = toy_sampler(None).episode(4), toy_sampler(NaturalAugment()).episode(4)
    assert torch.equal(plain.class_ids, augmented.class_ids) and plain.seed == augmented.seed
    assert not torch.allclose(plain.query_images, augmented.query_images)
    # Support then query of each class, class-major: the sampler's [n_way, K+Q] layout flattened.
    stacked = torch.cat([plain.support_images.view(5, 1, 3, 16, 16),
                         plain.query_images.view(5, 3, 3, 16, 16)], dim=1).view(20, 3, 16, 16)
    expected = NaturalAugment()(stacked, plain.seed).view(5, 4, 3, 16, 16)
    torch.testing.assert_close(augmented.support_images, expected[:, :1].reshape(5, 3, 16, 16))
    torch.testing.assert_close(augmented.query_images, expected[:, 1:].reshape(15, 3, 16, 16))


def test_sampler_with_everything_off_gives_the_plain_images() -> None:
    plain, off = toy_sampler(None).episode(2), toy_sampler(NaturalAugment(**OFF)).episode(2)
    torch.testing.assert_close(off.support_images, plain.support_images)
    torch.testing.assert_close(off.query_images, plain.query_images)


def test_sampler_augments_before_normalising() -> None:
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    episode = toy_sampler(NaturalAugment(brightness=1.5), mean=mean, std=std).episode(0)
    pixels = episode.query_images * torch.tensor(std)[:, None, None] + torch.tensor(mean)[:, None, None]
    # Jitter clamps to [0, 1] pixels; factors up to 2.5 reach the clamp, and it shows after undoing
    # the normalisation (it would not if the jitter had clamped normalised values).
    assert float(pixels.min()) >= -1e-5 and float(pixels.max()) <= 1 + 1e-5
    assert bool((pixels > 1 - 1e-5).any())


def test_a_resumed_stream_draws_the_same_augmentations() -> None:
    uninterrupted = list(toy_sampler(NaturalAugment()).episodes(0, 8))
    resumed = list(toy_sampler(NaturalAugment()).episodes(5, 3))
    for before, after in zip(uninterrupted[5:], resumed, strict=True):
        assert torch.equal(before.support_images, after.support_images)
        assert torch.equal(before.query_images, after.query_images)


def test_training_augments_only_its_training_episodes(tmp_path: Path, tiny_train_overrides: list[str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """End to end: `fewshot train` with augmentation on hands it to the training sampler and to no
    sampler of val, test, or the reports after training."""
    from fewshot_cli.tasks.train import train

    created: list[tuple[str, object]] = []
    original = EpisodeSampler.__init__

    def spy(self: EpisodeSampler, *args, **kwargs) -> None:
        original(self, *args, **kwargs)
        created.append((self.stream, kwargs.get("augment")))

    monkeypatch.setattr(EpisodeSampler, "__init__", spy)
    train(compose_config("train", [*tiny_train_overrides, "dataset.augment.kind=natural"],
                         tmp_path / "run"))
    streams = {stream for stream, _ in created}
    assert {"train", "val", "test"} <= streams
    assert [augment for stream, augment in created if stream == "train"] == [NaturalAugment(
        crop_ratio=(0.75, 1.3333333333))]
    assert all(augment is None for stream, augment in created if stream != "train")
