"""CLIP's image preprocessing as tensor operations on the compute device.

`clip.load` returns a PIL transform (`clip.clip._transform(n_px)`):

    Resize(n_px, bicubic)   shorter side to n_px (PIL, uint8 result)
    CenterCrop(n_px)
    convert("RGB")          grey images get three equal channels
    ToTensor()              / 255
    Normalize(CLIP_MEAN, CLIP_STD)

Our images are already uint8 tensors (the data engine's format), so the same steps run here as
tensor ops, batched, on the GPU when there is one. PIL resamples a uint8 image in two separable
passes (horizontal, then vertical) with its bicubic kernel (a = -0.5, support widened when
downsampling, i.e. antialiased) and rounds to uint8 after each pass. `torch.nn.functional.interpolate`
with `mode="bicubic", antialias=True` uses that same kernel, so two one-axis passes with rounding in
between reproduce PIL to within one grey level on under 1% of the pixels (tests/test_clip.py checks
it against clip's own transform); a single 2-D float pass would differ by up to ~20 levels on
high-frequency content.
"""

import torch
import torch.nn.functional as F

# From clip.clip._transform: the statistics of CLIP's training images.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def resized_shape(height: int, width: int, size: int) -> tuple[int, int]:
    """(H', W') of torchvision's Resize(size): the shorter side becomes `size`, the longer scales
    with it (truncated, as torchvision does)."""
    if height <= width:
        return size, int(size * width / height)
    return int(size * height / width), size


def _resample(pixels: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """One antialiased bicubic pass to `shape`, rounded and clipped to 0..255 as PIL's uint8 output."""
    out = F.interpolate(pixels, size=shape, mode="bicubic", align_corners=False, antialias=True)
    return out.round_().clamp_(0.0, 255.0)


def clip_preprocess(images: torch.Tensor, size: int) -> torch.Tensor:
    """CLIP's PIL preprocessing, on float tensors.

    Args:
        images: [B, C, H, W] float pixel values in [0, 1] (C = 1 or 3; any device).
        size: the model's input resolution (`model.visual.input_resolution`, 224 for ViT-B/32).
    Returns:
        [B, 3, size, size] float32, resized (shorter side), centre-cropped, CLIP-normalised.
    """
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"expected [B, 1|3, H, W] images, got {tuple(images.shape)}")
    # Back to the integer grey levels PIL works on (also undoes float error of a de-normalisation).
    pixels = images.float().mul(255.0).round_().clamp_(0.0, 255.0)
    if pixels.shape[1] == 1:
        pixels = pixels.expand(-1, 3, -1, -1)
    height, width = pixels.shape[-2:]
    new_h, new_w = resized_shape(height, width, size)
    if new_w != width:  # PIL: horizontal pass first
        pixels = _resample(pixels, (height, new_w))
    if new_h != height:
        pixels = _resample(pixels, (new_h, new_w))
    top = round((new_h - size) / 2.0)  # torchvision center_crop
    left = round((new_w - size) / 2.0)
    pixels = pixels[..., top : top + size, left : left + size]
    mean = torch.tensor(CLIP_MEAN, device=pixels.device).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD, device=pixels.device).view(1, 3, 1, 1)
    return (pixels / 255.0 - mean) / std
