"""Conv-4 embedding network (Vinyals et al. 2016; Snell et al. 2017; Finn et al. 2017)."""

import torch
from torch import nn

from fewshot_cli.errors import ConfigError


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
    `pooled_blocks=2`): they call `use_feature_maps()`, which turns any Conv4 into that form, so
    `backbone=conv4 method=relationnet` is the paper's 64x7x7-map embedding on 28x28 Omniglot.

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
        map_pooled_blocks: int = 2,
    ) -> None:
        super().__init__()
        if not 0 <= map_pooled_blocks <= 4:
            raise ConfigError(f"backbone.map_pooled_blocks={map_pooled_blocks} must be 0 to 4")
        self.map_pooled_blocks = map_pooled_blocks
        widths = [in_channels, hidden_channels, hidden_channels, hidden_channels, out_channels]
        self.blocks = nn.Sequential(
            *(conv_block(widths[i], widths[i + 1], pool=i < pooled_blocks) for i in range(4))
        )
        self.flatten = flatten
        self.out_channels = out_channels

    def use_feature_maps(self) -> None:
        """Return [B, out_channels, H', W'] maps from now on, pooled by the first `map_pooled_blocks`
        blocks at most (Sung et al. 2018 pool two of four). The interface Relation Networks call.

        Max-pooling has no parameters, so the weights, their initialisation and the state_dict keys
        are those of the same Conv4 built with `pooled_blocks=2, flatten=False` (conv4_maps).
        """
        for block in self.blocks[self.map_pooled_blocks:]:
            if isinstance(block[-1], nn.MaxPool2d):
                del block[-1]
        self.flatten = False

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = self.blocks(images)
        return features.flatten(1) if self.flatten else features
