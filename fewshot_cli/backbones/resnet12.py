"""ResNet-12, the residual embedding of few-shot learning since Oreshkin et al. 2018 (TADAM) and
Lee et al. 2019 (MetaOptNet)."""

from collections.abc import Sequence

import torch
from torch import nn

from fewshot_cli.errors import ConfigError

METAOPTNET_CHANNELS = (64, 160, 320, 640)  # Lee et al. 2019, sec. 4.2; TADAM: 64, 128, 256, 512
POOLS = ("avg", "none")
NEGATIVE_SLOPE = 0.1


def conv3x3(in_channels: int, out_channels: int) -> nn.Conv2d:
    # No bias: every convolution is followed by BatchNorm, whose shift replaces it.
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False)


class ResidualBlock(nn.Module):
    """One ResNet-12 block, as in MetaOptNet's code: three 3x3 conv-BN layers with LeakyReLU(0.1) after
    the first two; the third's output plus a 1x1 conv-BN shortcut of the input goes through
    LeakyReLU(0.1), then a 2x2 max-pool halves the side (rounding down: 84 -> 42 -> 21 -> 10 -> 5).

    Shapes: [B, in_channels, H, W] -> [B, out_channels, H // 2, W // 2].
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1, self.bn1 = conv3x3(in_channels, out_channels), nn.BatchNorm2d(out_channels)
        self.conv2, self.bn2 = conv3x3(out_channels, out_channels), nn.BatchNorm2d(out_channels)
        self.conv3, self.bn3 = conv3x3(out_channels, out_channels), nn.BatchNorm2d(out_channels)
        self.shortcut = nn.Sequential(nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False),
                                      nn.BatchNorm2d(out_channels))
        # Not in place: MAML differentiates through these activations twice (second order).
        self.activation = nn.LeakyReLU(NEGATIVE_SLOPE)
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.activation(self.bn1(self.conv1(x)))
        out = self.activation(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.pool(self.activation(out + self.shortcut(x)))


class ResNet12(nn.Module):
    """ResNet-12: four residual blocks (ResidualBlock) of widths `channels`, 12 conv layers in all.

    The default widths 64-160-320-640 are MetaOptNet's (Lee et al. 2019, sec. 4.2); 64-128-256-512
    are TADAM's (Oreshkin et al. 2018, sec. 3.4). DropBlock regularisation (used by MetaOptNet) is not
    included. On 84x84 miniImageNet the last maps are 640x5x5; on 32x32 CIFAR-FS 640x2x2; on 28x28
    Omniglot 640x1x1. Weights start Kaiming-normal (fan_out, leaky_relu) as in MetaOptNet's code.

    Shapes:
        input: [B, in_channels, H, W]
        output: pool="avg": [B, channels[-1]] (global average pooling, the usual few-shot embedding);
            pool="none": [B, channels[-1], H / 16, W / 16] feature maps (Relation Networks switch to
            this themselves through `use_feature_maps()`).

    Args:
        in_channels: image channels (the config passes ${dataset.channels}).
        channels: widths of the four blocks.
        pool: "avg" or "none".
    """

    def __init__(self, in_channels: int = 3, channels: Sequence[int] = METAOPTNET_CHANNELS,
                 pool: str = "avg") -> None:
        super().__init__()
        channels = [int(c) for c in channels]
        if len(channels) != 4 or min(channels) < 1:
            raise ConfigError(f"backbone.channels={channels} must be four positive widths, one per "
                              f"residual block (MetaOptNet: [64,160,320,640], TADAM: [64,128,256,512])")
        if pool not in POOLS:
            raise ConfigError(f"backbone.pool={pool!r}; use one of {', '.join(POOLS)}")
        widths = [in_channels, *channels]
        self.blocks = nn.Sequential(*(ResidualBlock(widths[i], widths[i + 1]) for i in range(4)))
        self.pool = pool
        self.out_channels = channels[-1]
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="leaky_relu")

    def use_feature_maps(self) -> None:
        """Return [B, C, H', W'] maps from now on (the interface Relation Networks call)."""
        self.pool = "none"

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        maps = self.blocks(images)
        return maps.mean(dim=(2, 3)) if self.pool == "avg" else maps
