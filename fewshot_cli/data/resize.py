"""Resizing a whole uint8 image tensor once, at decode time (before it is cached)."""

import torch
import torch.nn.functional as F

CHUNK = 4096  # images per interpolate call, to bound the float32 working memory


def resize_images(images: torch.Tensor, size: int) -> torch.Tensor:
    """Antialiased bicubic resize of square images (PIL-like: its a = -0.5 kernel, rounded to uint8).

    Args:
        images: uint8 [N, C, H, W].
        size: the new side.
    Returns:
        uint8 [N, C, size, size] (the input itself when it already has that size).
    """
    if tuple(images.shape[-2:]) == (size, size):
        return images
    out = torch.empty(images.shape[0], images.shape[1], size, size, dtype=torch.uint8)
    for start in range(0, images.shape[0], CHUNK):
        chunk = images[start : start + CHUNK].float()
        resized = F.interpolate(chunk, size=(size, size), mode="bicubic", align_corners=False,
                                antialias=True)
        out[start : start + CHUNK] = resized.round_().clamp_(0, 255).to(torch.uint8)
    return out
