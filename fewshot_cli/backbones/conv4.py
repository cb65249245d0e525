"""Conv-4 embedding network (Vinyals et al. 2016; Snell et al. 2017; Finn et al. 2017)."""

import torch
from torch import nn


def conv_block(in_channels: int, out_channels: int, pool: bool) -> nn.Sequential:
    """3x3 conv (padding 1) -> BatchNorm -> ReLU [-> 2x2 max-pool]."""
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    ]
    if pool:
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


class Conv4(nn.Module):
    """Four conv blocks of 64 filters; the first `pooled_blocks` end in 2x2 max-pooling.

    On 28x28 Omniglot with 4 pooled blocks the output is 64x1x1, a 64-d embedding; on 84x84
    miniImageNet it is 64x5x5 = 1600-d. Relation Networks keep feature maps (`flatten=False`,
    `pooled_blocks=2`).

    Shapes:
        input: [B, in_channels, H, W]
        output: [B, out_channels * H' * W'] if flatten else [B, out_channels, H', W']
    """

    def __init__(
        self,
        in_channels: int = 1,
        hidden_channels: int = 64,
        out_channels: int = 64,
        pooled_blocks: int = 4,
        flatten: bool = True,
    ) -> None:
        super().__init__()
        widths = [in_channels, hidden_channels, hidden_channels, hidden_channels, out_channels]
        self.blocks = nn.Sequential(
            *(conv_block(widths[i], widths[i + 1], pool=i < pooled_blocks) for i in range(4))
        )
        self.flatten = flatten
        self.out_channels = out_channels

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = self.blocks(images)
        return features.flatten(1) if self.flatten else features
