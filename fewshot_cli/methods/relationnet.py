"""Relation Networks (Sung, Yang, Zhang, Xiang, Torr, Hospedales, CVPR 2018)."""

import torch
import torch.nn.functional as F
from torch import nn

from fewshot_cli.backbones.conv4 import conv_block
from fewshot_cli.backbones.probe import output_shape
from fewshot_cli.data.episode import Episode
from fewshot_cli.errors import ConfigError
from fewshot_cli.methods.base import FewShotMethod, MethodOutput
from fewshot_cli.methods.functional import at_least_float32

MIN_MAP_SIDE = 4  # two 2x2 max-pools in the relation module need at least 4x4 feature maps


class RelationModule(nn.Module):
    """g_φ: a relation score in [0, 1] for each concatenated (class, query) feature-map pair.

    Two conv blocks (3x3 conv with 64 filters, BatchNorm, ReLU, 2x2 max-pool), then a linear layer to
    `hidden_units` (8 in the paper) with ReLU and a linear layer to one unit with a sigmoid (Sung et al.
    2018, fig. 2).

    The linear input size must not depend on the image resolution, so the conv output is max-pooled
    adaptively to `pool_size` x `pool_size` before flattening. Where the map already has that size the
    pooling is the identity and the layer is exactly the paper's: Conv-4 maps of 64x7x7 (28x28
    Omniglot, two pooled blocks) become 3x3 and then 1x1 here, the paper's 64-unit input with
    `pool_size=1`. For miniImageNet, Sung et al. flatten 64x3x3 (unpadded convolutions); our padded
    Conv-4 gives 21x21 -> 5x5, which `pool_size=3` max-pools to the paper's 576 inputs. Adaptive
    pooling was chosen over nn.LazyLinear because the optimiser is built before the first episode.

    Shapes: [P, in_channels, H, W] pairs (H, W >= 4) -> [P] scores.
    """

    def __init__(self, in_channels: int, channels: int = 64, hidden_units: int = 8,
                 pool_size: int = 1) -> None:
        super().__init__()
        if pool_size < 1:
            raise ConfigError(f"method.pool_size={pool_size} must be at least 1")
        self.convs = nn.Sequential(
            conv_block(in_channels, channels, pool=True),
            conv_block(channels, channels, pool=True),
            nn.AdaptiveMaxPool2d(pool_size),
        )
        self.fc = nn.Sequential(
            nn.Flatten(),
            nn.Linear(channels * pool_size * pool_size, hidden_units),
            nn.ReLU(inplace=True),
            nn.Linear(hidden_units, 1),
        )

    def forward(self, pairs: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.fc(self.convs(pairs))).squeeze(1)


class RelationNetworks(FewShotMethod):
    """Learn the metric: a relation module scores each query against each class (the paper's eq. 1-3).

    1. The embedding f_φ keeps spatial feature maps (no flatten): Conv-4 with two pooled blocks gives
       64x7x7 on 28x28 Omniglot.
    2. Class feature = element-wise SUM of the support maps of that class (Sung et al. sum, not
       average, for K-shot; one-shot it is the single support map).
    3. Each query map is concatenated along channels with each class feature ([class, query], as in
       the authors' code) and scored by the relation module: r_{q,c} in [0, 1].
    4. Loss: mean squared error between r and the one-hot query labels (a regression, not a
       cross-entropy: the paper's eq. 3).

    The returned logits are the relation scores themselves (higher = more related), so they lie in
    [0, 1] and argmax gives the prediction.

    Shapes: support [n_way * n_shot, C, H, W], query [n_way * n_query, C, H, W]; embedding maps
    [B, C', H', W']; pairs [n_query_total * n_way, 2C', H', W'] -> logits [n_way * n_query, n_way].

    The embedding is the run's `backbone=` choice (the config passes `backbone: ${backbone}`): every
    backbone of this project has a `use_feature_maps()` method, called here, that makes it return maps
    instead of vectors: Conv4 drops its flatten and keeps max-pooling in its first two blocks only (the
    paper's embedding, the same network as conf/backbone/conv4_maps), ResNet-12 skips its global
    average pooling, torchvision models are cut before theirs. A module without that method is used
    as it is and must return maps itself.

    Args:
        backbone: embedding network; returns feature maps [B, C', H', W'] once `use_feature_maps()`
            (if it has one) was called.
        feature_channels: C', the channels of the backbone's maps; None: measured by one dummy
            forward pass at `input_shape` (checkpoints written before input_shape existed give it).
        relation_channels: filters of the relation module's conv blocks (64 in the paper).
        hidden_units: width of the relation module's hidden linear layer (8 in the paper).
        pool_size: side the relation module's conv output is max-pooled to (see RelationModule).
        input_shape: [C, H, W] of the episode images, to size the relation module from the maps and
            to refuse maps too small for it before training starts.
    """

    # Class features are sums of support maps (Sung et al.): their scale grows with the count.
    equal_shots = True

    def __init__(self, backbone: nn.Module, feature_channels: int | None = None,
                 relation_channels: int = 64, hidden_units: int = 8, pool_size: int = 1,
                 input_shape: tuple[int, int, int] | list[int] | None = None) -> None:
        super().__init__()
        if hasattr(backbone, "use_feature_maps"):
            backbone.use_feature_maps()
        self.backbone = backbone
        if input_shape is not None:
            shape = output_shape(backbone, tuple(input_shape))
            self._check_maps(shape, f" at image size {input_shape[1]}x{input_shape[2]}")
            if feature_channels is not None and feature_channels != shape[0]:
                raise ConfigError(f"the backbone returns {shape[0]}-channel maps but "
                                  f"method.feature_channels={feature_channels}; make them equal or null")
            feature_channels = int(shape[0])
        if feature_channels is None:
            raise ConfigError("Relation Networks need method.input_shape=[C, H, W] (or "
                              "method.feature_channels) to size the relation module")
        self.relation = RelationModule(2 * feature_channels, relation_channels, hidden_units, pool_size)
        self.feature_channels = feature_channels

    def loss_and_logits(self, episode: Episode) -> MethodOutput:
        # One forward pass over support and query together, so BatchNorm sees the whole episode.
        n_support = episode.support_images.shape[0]
        maps = self.feature_maps(torch.cat([episode.support_images, episode.query_images]))
        support, query = maps[:n_support], maps[n_support:]
        class_maps = self.class_features(support, episode.support_labels, episode.n_way)
        scores = self.relation_scores(class_maps, query)
        # MSE in at least float32: under AMP the scores arrive in half precision.
        precise = at_least_float32(scores)
        targets = F.one_hot(episode.query_labels, episode.n_way).to(precise.dtype)
        loss = F.mse_loss(precise, targets)
        return MethodOutput(loss, scores, {})

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """Relation scores r in [0, 1] normalised to sum 1 per query: p_c = r_c / Σ_c' r_c'.

        The scores are regressed on one-hot targets (MSE), one sigmoid per class, so they are not a
        distribution (a query may score high for two classes, or low for all); the normalisation
        keeps their ranking and ratios. A query whose scores are all 0 gets the uniform
        distribution. [Q, n_way] -> [Q, n_way].
        """
        scores = logits.float().clamp_min(0.0)
        total = scores.sum(dim=-1, keepdim=True)
        uniform = torch.full_like(scores, 1.0 / scores.shape[-1])
        return torch.where(total > 0, scores / total.clamp_min(torch.finfo(scores.dtype).tiny), uniform)

    def feature_maps(self, images: torch.Tensor) -> torch.Tensor:
        """Backbone maps [B, C', H', W'], with a ConfigError naming the fix when they are unusable."""
        maps = self.backbone(images)
        self._check_maps(maps.shape[1:])
        if maps.shape[1] != self.feature_channels:
            raise ConfigError(f"the backbone returns {maps.shape[1]}-channel maps but "
                              f"method.feature_channels={self.feature_channels}; make them equal")
        return maps

    @staticmethod
    def _check_maps(shape: torch.Size, where: str = "") -> None:
        """ConfigError unless `shape` ([C', H', W']) are maps the relation module can take."""
        if len(shape) != 3:
            raise ConfigError(
                f"Relation Networks need a backbone that keeps feature maps, but it returned shape "
                f"{tuple(shape)}; use one of this project's backbones (backbone=conv4, resnet12, "
                f"torchvision or koch), which switch to feature maps themselves"
            )
        if min(shape[1:]) < MIN_MAP_SIDE:
            raise ConfigError(
                f"the backbone's feature maps are {shape[1]}x{shape[2]}{where}, too small for the "
                f"relation module's two 2x2 max-pools (at least {MIN_MAP_SIDE}x{MIN_MAP_SIDE}); use "
                f"larger images (dataset.image_size) or an embedding that pools less (the maps' side is "
                f"1/4 of the image's with backbone=conv4, 1/16 with resnet12, 1/32 with torchvision)"
            )

    @staticmethod
    def class_features(support: torch.Tensor, labels: torch.Tensor, n_way: int) -> torch.Tensor:
        """Sum of each class's support maps: [n_support, C, H, W] -> [n_way, C, H, W]."""
        sums = torch.zeros(n_way, *support.shape[1:], dtype=support.dtype, device=support.device)
        return sums.index_add(0, labels, support)

    def relation_scores(self, class_maps: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
        """r_{q,c} for every query and class: [N, C, H, W], [Q, C, H, W] -> [Q, N] in [0, 1]."""
        n_query, n_way = query.shape[0], class_maps.shape[0]
        pairs = torch.cat([
            class_maps[None].expand(n_query, -1, -1, -1, -1),
            query[:, None].expand(-1, n_way, -1, -1, -1),
        ], dim=2)  # [Q, N, 2C, H, W]
        pairs = pairs.flatten(0, 1)
        if query.is_contiguous(memory_format=torch.channels_last):
            pairs = pairs.contiguous(memory_format=torch.channels_last)
        return self.relation(pairs).view(n_query, n_way)
