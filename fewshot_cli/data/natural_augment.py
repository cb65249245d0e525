"""Natural-image augmentation of training episodes: random resized crop, horizontal flip and colour
jitter, every image with its own parameters, in a few batched tensor ops on the episode's device.

torchvision.transforms.v2 (RandomResizedCrop, RandomHorizontalFlip, ColorJitter) draws one set of
parameters per call, so a batched call would give every image of an episode the same crop, flip and
jitter; a loop over images would be slow on the GPU. Here the parameters follow v2's distributions,
one draw per image, and the pixels are transformed for the whole batch at once:

* crop: v2.RandomResizedCrop's box (area fraction uniform in `crop_scale`, aspect ratio log-uniform
  in `crop_ratio`, 10 tries, then the centre crop of the nearest allowed ratio), resized back to
  H x W bilinearly. Box and flip become one sampling grid per image, so a single `grid_sample`
  crops, resizes and flips the batch; its sampling points are exactly those of
  v2.functional.resized_crop (align_corners=False). A crop is never larger than the image, so the
  resize only enlarges and needs no antialiasing.
* flip: horizontal, with probability `flip_p` (without a crop: `torch.where` on a per-image mask).
* colour jitter: brightness, contrast and saturation factors uniform in [max(0, 1 - x), 1 + x]
  (v2.ColorJitter's ranges), applied in this fixed order with v2's formulas: blend with black, with
  the mean grey level, with the grey image, each clamped to [0, 1]. v2's kernels take one float
  factor per call, so the blend is written here with a [B, 1, 1, 1] factor, using v2's own
  rgb_to_grayscale. Saturation leaves 1-channel images alone (as v2 does); hue is not jittered.

Pixels are floats in [0, 1]: the sampler augments before its mean/std normalisation (jitter clamps
to the [0, 1] range of real pixels).

Randomness: every number comes from a CPU torch.Generator seeded with the episode's own seed
(`Episode.seed`) and the fixed stream name AUGMENT_STREAM, never from the global RNG; parameters are
drawn on the CPU and then moved to the images' device. The same episode therefore gets the same
augmentation on the CPU and the GPU, and a resumed run draws the augmentations of the uninterrupted
one. All parameters are drawn whatever the settings, so turning one transform off leaves the draws
of the others unchanged.
"""

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F

from fewshot_cli.data.sampler import episode_seed
from fewshot_cli.errors import ConfigError

AUGMENT_STREAM = "natural-augment"  # mixed with the episode seed: other per-episode draws stay independent
CROP_TRIES = 10  # v2.RandomResizedCrop's attempts before falling back to a centre crop
CONFIG_KEY = "dataset.augment"
KINDS = ("none", "natural")
# A dataset node's `augment` entry as Hydra passes it: {kind: none | natural, <NaturalAugment fields>}.
AugmentNode = Mapping[str, Any] | str | None


@dataclass(frozen=True)
class AugmentParams:
    """One batch's random draws, on the CPU.

    Attributes:
        boxes: int64 [B, 4] crop boxes (top, left, height, width) in pixels, or None (no crop).
        flip: bool [B], True where the image is mirrored left-right.
        brightness, contrast, saturation: float32 [B] jitter factors (1: unchanged).
    """

    boxes: torch.Tensor | None
    flip: torch.Tensor
    brightness: torch.Tensor
    contrast: torch.Tensor
    saturation: torch.Tensor


@dataclass(frozen=True)
class NaturalAugment:
    """Per-image random resized crop, horizontal flip and colour jitter (module docstring).

    Args:
        crop_scale: (min, max) fraction of the image area a crop covers; None: no crop.
        crop_ratio: (min, max) width / height of a crop.
        flip_p: probability of a horizontal flip.
        brightness, contrast, saturation: jitter strength x, factors uniform in [max(0, 1 - x), 1 + x];
            0 leaves that property alone.
    """

    crop_scale: tuple[float, float] | None = (0.5, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_p: float = 0.5
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4

    def __post_init__(self) -> None:
        if self.crop_scale is not None:
            low, high = self.crop_scale
            if not 0 < low <= high <= 1:
                raise ConfigError(f"{CONFIG_KEY}.crop_scale={list(self.crop_scale)}; give [min, max] "
                                  f"area fractions with 0 < min <= max <= 1 (or null: no crop)")
        low, high = self.crop_ratio
        if not 0 < low <= high:
            raise ConfigError(f"{CONFIG_KEY}.crop_ratio={list(self.crop_ratio)}; give [min, max] "
                              f"width/height ratios with 0 < min <= max")
        if not 0 <= self.flip_p <= 1:
            raise ConfigError(f"{CONFIG_KEY}.flip_p={self.flip_p} must lie in [0, 1]")
        for name in ("brightness", "contrast", "saturation"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{CONFIG_KEY}.{name}={getattr(self, name)} must be 0 or more")

    def __call__(self, images: torch.Tensor, seed: int) -> torch.Tensor:
        """Augment the images of the episode whose seed is `seed`.

        Args:
            images: float [B, C, H, W] in [0, 1] (C = 1 or 3), on any device.
            seed: the episode's own seed (`Episode.seed`).
        Returns:
            float [B, C, H, W], same dtype and device, in [0, 1].
        """
        generator = torch.Generator().manual_seed(episode_seed(seed, AUGMENT_STREAM, 0))
        b, _, h, w = images.shape
        return self.apply(images, self.sample(b, h, w, generator))

    def sample(self, batch: int, height: int, width: int, generator: torch.Generator) -> AugmentParams:
        """Draw the parameters of `batch` images of height x width from the CPU `generator`."""
        boxes = _crop_boxes(batch, height, width, self.crop_scale or (1.0, 1.0), self.crop_ratio,
                            generator)
        flip = torch.rand(batch, generator=generator) < self.flip_p
        brightness, contrast, saturation = (
            _factors(strength, batch, generator)
            for strength in (self.brightness, self.contrast, self.saturation))
        return AugmentParams(boxes if self.crop_scale is not None else None, flip, brightness,
                             contrast, saturation)

    def apply(self, images: torch.Tensor, params: AugmentParams) -> torch.Tensor:
        """Transform float [B, C, H, W] images in [0, 1] with `params` (moved to their device)."""
        # Imported here, like torchvision elsewhere in the package: every dataset imports this module,
        # and `fewshot` should not pay for torchvision's import when nothing is augmented.
        from torchvision.transforms.v2.functional import rgb_to_grayscale

        device = images.device
        flip = params.flip.to(device)
        if params.boxes is not None:
            images = _resized_crop(images, params.boxes, params.flip)
        elif bool(params.flip.any()):
            images = torch.where(flip[:, None, None, None], images.flip(-1), images)
        factor = {name: getattr(params, name).to(device=device, dtype=images.dtype)[:, None, None, None]
                  for name in ("brightness", "contrast", "saturation")}
        if self.brightness > 0:
            images = (images * factor["brightness"]).clamp_(0.0, 1.0)
        if self.contrast > 0:
            grey = rgb_to_grayscale(images) if images.shape[1] == 3 else images
            images = _blend(images, grey.mean(dim=(-3, -2, -1), keepdim=True), factor["contrast"])
        if self.saturation > 0 and images.shape[1] == 3:
            images = _blend(images, rgb_to_grayscale(images), factor["saturation"])
        return images


def natural_augment_from_config(node: AugmentNode) -> NaturalAugment | None:
    """The augmentation a dataset node's `augment` entry asks for; None for `kind: none` or no entry
    (configs and checkpoints from before augmentation existed)."""
    if node is None:
        return None
    options = {"kind": node} if isinstance(node, str) else dict(node)
    kind = options.pop("kind", "none")
    if kind not in KINDS:
        raise ConfigError(f"{CONFIG_KEY}.kind={kind!r}; use one of {', '.join(KINDS)}")
    if kind == "none":
        return None
    known = {f.name for f in fields(NaturalAugment)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ConfigError(f"{CONFIG_KEY}.{unknown[0]} is not an option of the natural augmentation; "
                          f"its options: kind, {', '.join(sorted(known))}")
    for key in ("crop_scale", "crop_ratio"):
        if options.get(key) is not None:
            options[key] = tuple(float(v) for v in options[key])
    return NaturalAugment(**options)


def _factors(strength: float, batch: int, generator: torch.Generator) -> torch.Tensor:
    """float32 [batch] uniform in [max(0, 1 - strength), 1 + strength] (v2.ColorJitter's range)."""
    low, high = max(0.0, 1.0 - strength), 1.0 + strength
    return low + (high - low) * torch.rand(batch, generator=generator)


def _crop_boxes(batch: int, height: int, width: int, scale: tuple[float, float],
                ratio: tuple[float, float], generator: torch.Generator) -> torch.Tensor:
    """int64 [batch, 4] (top, left, height, width): v2.RandomResizedCrop.make_params per image,
    its CROP_TRIES tries drawn at once; the first try that fits wins, else the centre crop."""
    shape = (batch, CROP_TRIES)
    area = height * width * (scale[0] + (scale[1] - scale[0]) * torch.rand(
        shape, generator=generator, dtype=torch.float64))
    log_low, log_high = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(log_low + (log_high - log_low) * torch.rand(
        shape, generator=generator, dtype=torch.float64))
    crop_w = torch.round(torch.sqrt(area * aspect))
    crop_h = torch.round(torch.sqrt(area / aspect))
    fits = (crop_w > 0) & (crop_w <= width) & (crop_h > 0) & (crop_h <= height)
    first = fits.to(torch.uint8).argmax(dim=1, keepdim=True)  # argmax returns the first maximum
    crop_w = crop_w.gather(1, first).squeeze(1).long()
    crop_h = crop_h.gather(1, first).squeeze(1).long()
    # v2's fallback: the whole image, cut to the nearest allowed aspect ratio.
    in_ratio = width / height
    fallback_w, fallback_h = width, height
    if in_ratio < ratio[0]:
        fallback_h = round(width / ratio[0])
    elif in_ratio > ratio[1]:
        fallback_w = round(height * ratio[1])
    found = fits.any(dim=1)
    crop_w = torch.where(found, crop_w, fallback_w)
    crop_h = torch.where(found, crop_h, fallback_h)
    # Offsets as randint(0, size - crop + 1), from uniforms so every image draws the same amount.
    u_top, u_left = torch.rand((2, batch), generator=generator, dtype=torch.float64)
    top = torch.where(found, (u_top * (height - crop_h + 1)).long(), (height - crop_h) // 2)
    left = torch.where(found, (u_left * (width - crop_w + 1)).long(), (width - crop_w) // 2)
    return torch.stack([top, left, crop_h, crop_w], dim=1)


def _resized_crop(images: torch.Tensor, boxes: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """Crop each image of float [B, C, H, W] to its box, resize to H x W (bilinear), mirror where
    `flip`: one sampling grid per image, one grid_sample for the batch.

    A crop and a flip only scale and shift each axis, so the grid is separable: grid[b, y, x] =
    (gx[b, x], gy[b, y]), built from [B, W] and [B, H] coordinates in float64 on the CPU (cheaper
    than affine_grid's batched matrix product over every pixel). With align_corners=False, output
    column i samples input column left + (i + 0.5) * crop_w / W - 0.5, v2.functional.resized_crop's
    sampling point; flipped, the columns are taken in reverse order.
    """
    h, w = images.shape[-2:]
    top, left, crop_h, crop_w = boxes.to(torch.float64)[:, :, None].unbind(dim=1)  # [B, 1] each
    # Output pixel centres in [-1, 1] coordinates, mapped into each box (also in [-1, 1]).
    out_x = (torch.arange(w, dtype=torch.float64) * 2 + 1) / w - 1
    out_x = torch.where(flip[:, None], -out_x, out_x)  # [B, W]
    out_y = (torch.arange(h, dtype=torch.float64) * 2 + 1) / h - 1
    grid_x = (left + crop_w / 2) * 2 / w - 1 + out_x * crop_w / w
    grid_y = (top + crop_h / 2) * 2 / h - 1 + out_y * crop_h / h
    grid_x, grid_y = (g.to(device=images.device, dtype=images.dtype) for g in (grid_x, grid_y))
    grid = torch.stack(torch.broadcast_tensors(grid_x[:, None, :], grid_y[:, :, None]), dim=-1)
    # border: the outermost sampling points of a crop at the image edge lie half a pixel outside.
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _blend(images: torch.Tensor, other: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """v2's _blend with a per-image factor [B, 1, 1, 1]: factor * images + (1 - factor) * other
    (one lerp), clamped to [0, 1]."""
    return torch.lerp(other.expand_as(images), images, factor).clamp_(0.0, 1.0)
