"""The convolutional Siamese twin of Koch, Zemel, Salakhutdinov (ICML DL Workshop 2015), Fig. 4.

64@10x10 conv, ReLU, 2x2 max-pool; 128@7x7, ReLU, max-pool; 128@4x4, ReLU, max-pool; 256@4x4, ReLU;
flatten; fully connected 4096 with a sigmoid. On 105x105 inputs the last feature map is 256@6x6.
"""

import torch
from torch import nn

from fewshot_cli.errors import ConfigError

# Smallest square input whose feature maps never shrink below 1x1 (64 -> 55, 27, 21, 10, 7, 3, 0).
MIN_IMAGE_SIZE = 65


def feature_side(image_size: int) -> int:
    """Side of the last 256-channel feature map for square inputs of side `image_size`."""
    side = image_size
    for kernel, pool in ((10, True), (7, True), (4, True), (4, False)):
        side = side - kernel + 1
        if pool:
            side //= 2
        if side < 1:
            raise ConfigError(f"backbone=koch needs images of at least {MIN_IMAGE_SIZE}x{MIN_IMAGE_SIZE} "
                              f"(dataset.image_size={image_size}); Koch et al. use 105")
    return side


INITS = ("pytorch", "paper")


class KochNet(nn.Module):
    """Koch et al.'s embedding network: [B, C, S, S] -> [B, embedding_dim] in (0, 1).

    `init="paper"` is the paper's initialisation: conv weights N(0, 1e-2), biases N(0.5, 1e-2), fully
    connected weights N(0, 2e-1), meant for SGD with per-layer learning rates; on Omniglot strokes it
    saturates most of the 4096 sigmoid units at the start. `init="pytorch"` (default) keeps PyTorch's
    layer defaults (Kaiming-uniform), the choice of the Adam re-implementations, where no unit
    saturates. How the two behaved in our runs: docs/koch_siamese_notes.md.

    Args:
        in_channels: image channels (1 for Omniglot).
        image_size: input side (105 in the paper), needed to size the fully connected layer.
        embedding_dim: width of the sigmoid layer (4096 in the paper).
        init: "pytorch" or "paper".
    """

    def __init__(self, in_channels: int = 1, image_size: int = 105, embedding_dim: int = 4096,
                 init: str = "pytorch") -> None:
        super().__init__()
        if init not in INITS:
            raise ConfigError(f"backbone.init={init!r}; use one of {', '.join(INITS)}")
        side = feature_side(image_size)
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 64, 10), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(64, 128, 7), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(128, 128, 4), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(128, 256, 4), nn.ReLU(inplace=True),
        )
        self.embedding = nn.Sequential(nn.Flatten(), nn.Linear(256 * side * side, embedding_dim),
                                       nn.Sigmoid())
        self.out_features = embedding_dim
        if init == "paper":
            self._paper_init()

    def _paper_init(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, 0.0, 1e-2)
                nn.init.normal_(module.bias, 0.5, 1e-2)
            elif isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0.0, 2e-1)
                nn.init.normal_(module.bias, 0.5, 1e-2)

    def use_feature_maps(self) -> None:
        """Return the last conv maps [B, 256, S', S'] from now on, without the sigmoid layer (the
        interface Relation Networks call; S' >= 4 needs images of at least 89x89)."""
        self.embedding = nn.Identity()  # dropped, so no parameter goes unused

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.embedding(self.features(images))
