"""The one pixel normalisation of every model input: uint8 pixels x -> (x / 255 - mean) / std.

Episodes (the sampler), pair verification and `fewshot predict` all feed a model through these two
functions, so a checkpoint sees at prediction time exactly the numbers it was trained on.
"""

import torch

from fewshot_cli.errors import ConfigError


def normalisation(
    channels: int,
    mean: tuple[float, ...] | None,
    std: tuple[float, ...] | None,
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale and shift, float32 [C, 1, 1] on `device`, such that
    x_uint8 * scale + shift == (x / 255 - mean) / std (one fused multiply-add per pixel).

    Args:
        channels: C, the image channels.
        mean, std: per-channel statistics of [0, 1] pixels (the dataset's `mean`/`std`); None
            keeps pixels in [0, 1].
    Raises:
        ConfigError: mean or std does not have one value per channel.
    """
    mean_t = torch.tensor(mean if mean is not None else [0.0] * channels, dtype=torch.float32)
    std_t = torch.tensor(std if std is not None else [1.0] * channels, dtype=torch.float32)
    if mean_t.numel() != channels or std_t.numel() != channels:
        raise ConfigError(f"dataset mean/std need {channels} values, one per image channel")
    scale = (1.0 / (255.0 * std_t)).view(channels, 1, 1).to(device)
    shift = (-mean_t / std_t).view(channels, 1, 1).to(device)
    return scale, shift


def normalise(images: torch.Tensor, mean: tuple[float, ...] | None,
              std: tuple[float, ...] | None) -> torch.Tensor:
    """uint8 [B, C, H, W] -> float32 [B, C, H, W] on the same device, (x / 255 - mean) / std.

    Raises:
        ConfigError: mean or std does not have one value per channel.
    """
    scale, shift = normalisation(images.shape[-3], mean, std, images.device)
    return images.float().mul_(scale).add_(shift)
