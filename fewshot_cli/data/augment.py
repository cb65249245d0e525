"""Random affine distortions as one batched tensor op on the images' device (Koch et al. 2015, §4.2).

Koch et al. train on pairs distorted by T = (θ, ρx, ρy, sx, sy, tx, ty) with θ ∈ [-10°, 10°],
ρ ∈ [-0.3, 0.3], s ∈ [0.8, 1.2], t ∈ [-2, 2] pixels, each component included with probability 1/2.
The parameters come from a caller-owned CPU generator (never the global RNG); the warp is
`affine_grid` + `grid_sample`, so a whole batch is distorted in one call on the GPU.
"""

import math

import torch
import torch.nn.functional as F


def random_affine(
    images: torch.Tensor,
    generator: torch.Generator,
    max_rotation_deg: float = 10.0,
    max_shear: float = 0.3,
    scale_range: tuple[float, float] = (0.8, 1.2),
    max_translate_px: float = 2.0,
    p_component: float = 0.5,
) -> torch.Tensor:
    """Distort each image by its own random affine map; pixels from outside become 0.

    0 is the background of our (inverted) Omniglot tensors; images normalised with a mean/std get
    the normalised value 0 there instead.

    Args:
        images: float [B, C, H, W].
        generator: CPU torch.Generator supplying every random number.
    Returns:
        float [B, C, H, W] (the sampled matrix is used as the output-to-input map of affine_grid;
        the distribution is symmetric, so this is the same distribution of distortions).
    """
    b, _, h, w = images.shape

    def component(low: float, high: float, neutral: float) -> torch.Tensor:
        value = low + (high - low) * torch.rand(b, generator=generator, dtype=torch.float64)
        keep = torch.rand(b, generator=generator, dtype=torch.float64) < p_component
        return torch.where(keep, value, torch.full_like(value, neutral))

    theta = component(-max_rotation_deg, max_rotation_deg, 0.0) * math.pi / 180.0
    shear_x = component(-max_shear, max_shear, 0.0)
    shear_y = component(-max_shear, max_shear, 0.0)
    scale_x = component(*scale_range, 1.0)
    scale_y = component(*scale_range, 1.0)
    # Pixels -> normalised coordinates ([-1, 1] spans the width/height).
    t_x = component(-max_translate_px, max_translate_px, 0.0) * 2.0 / w
    t_y = component(-max_translate_px, max_translate_px, 0.0) * 2.0 / h
    cos, sin = torch.cos(theta), torch.sin(theta)
    rotation = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)
    shear = torch.stack([torch.stack([torch.ones_like(shear_x), shear_x], -1),
                         torch.stack([shear_y, torch.ones_like(shear_y)], -1)], -2)
    scale = torch.diag_embed(torch.stack([scale_x, scale_y], -1))
    linear = rotation @ shear @ scale  # [B, 2, 2]
    matrix = torch.cat([linear, torch.stack([t_x, t_y], -1)[:, :, None]], dim=2)  # [B, 2, 3]
    matrix = matrix.to(device=images.device, dtype=images.dtype)
    grid = F.affine_grid(matrix, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
