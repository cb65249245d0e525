"""Siamese networks: contrastive (Hadsell, Chopra, LeCun, CVPR 2006) and Koch-style verification
(Koch, Zemel, Salakhutdinov, ICML Deep Learning Workshop 2015).

One embedding network (the backbone) is applied to both images of a pair. Training pairs are drawn
from each episode's images, balanced 50/50 same/different, from the method's own generator seeded by
the episode's own seed (two episodes with the same classes get different pairs; a resumed run redraws
the same ones), so the generic trainer needs no special case. Few-shot classification compares
each query with every support image and scores a class by its most similar support image (Koch et
al.'s one-shot rule), so `fewshot eval` scores a Siamese model on the same episodes as every method.
"""

import torch
from torch import nn

from fewshot_cli.backbones.probe import output_shape
from fewshot_cli.data.augment import random_affine
from fewshot_cli.data.episode import Episode
from fewshot_cli.data.pairs import balanced_pairs
from fewshot_cli.data.sampler import episode_seed
from fewshot_cli.errors import ConfigError
from fewshot_cli.methods.base import FewShotMethod, MethodOutput
from fewshot_cli.methods.functional import at_least_float32, class_max
from fewshot_cli.methods.pair_functional import (
    contrastive_loss,
    euclidean_distance,
    euclidean_distance_matrix,
    koch_bce_loss,
    weighted_l1_logit,
)

LOSSES = ("contrastive", "bce")


class SiameseNetwork(FewShotMethod):
    """A shared embedding f and a pair loss.

    * `loss="contrastive"`: d = ||f(a) - f(b)||_2, L = (1 - y) d² + y max(0, m - d)² (y = 1 for a pair
      of two classes); similarity = -d.
    * `loss="bce"`: logit = Σ_j α_j |f(a)_j - f(b)_j| + β (a learned nn.Linear(D, 1) on the L1
      difference), p(same) = sigmoid(logit), binary cross-entropy; similarity = logit.

    Shapes: support [n_way * n_shot, C, H, W], query [n_way * n_query, C, H, W] -> logits
    [n_way * n_query, n_way] = the best similarity of each query to each class's support images.

    Args:
        backbone: embedding network, images -> [B, D].
        loss: "contrastive" or "bce".
        margin: m of the contrastive loss (2.0, as in the AT&T faces tutorial).
        pairs_per_episode: training pairs drawn from each episode's support + query images.
        image_channels, image_size: input shape, to size the BCE head by one dummy forward pass.
        augment: distort training images by random affine maps (Koch et al. §4.2).
        pair_seed: mixed into each episode's pair generator seed.
        normalize: L2-normalise embeddings (distances then lie in [0, 2], so a margin near 1 is
            meaningful; raw Conv-4 embeddings of 50x50 faces start 15-20 apart, far beyond margin 2.0,
            and the contrastive loss first spends its steps shrinking them).
    """

    has_embedding = True

    def __init__(
        self,
        backbone: nn.Module,
        loss: str = "contrastive",
        margin: float = 2.0,
        pairs_per_episode: int = 64,
        image_channels: int = 1,
        image_size: int = 28,
        augment: bool = False,
        pair_seed: int = 0,
        normalize: bool = False,
    ) -> None:
        super().__init__()
        if loss not in LOSSES:
            raise ConfigError(f"method.loss={loss!r}; use one of {', '.join(LOSSES)}")
        if margin <= 0:
            raise ConfigError(f"method.margin={margin} must be positive")
        if pairs_per_episode < 2:
            raise ConfigError(f"method.pairs_per_episode={pairs_per_episode} must be at least 2")
        self.backbone = backbone
        self.loss = loss
        self.margin = margin
        self.pairs_per_episode = pairs_per_episode
        self.augment = augment
        self.pair_seed = pair_seed
        self.normalize = normalize
        self.head: nn.Linear | None = None
        if loss == "bce":
            shape = output_shape(backbone, (image_channels, image_size, image_size))
            if len(shape) != 1:
                raise ConfigError(f"method=siamese needs a flattening backbone (got output {tuple(shape)})")
            self.head = nn.Linear(int(shape[0]), 1)
            # Start from "same = minus the mean L1 distance" (every α_j = -1/D, β = 0), so the
            # untrained model already ranks by a real distance; PyTorch's default init gives each α_j
            # a random sign and ranks classes at random, and -1/√D makes the untrained logits very
            # negative on ReLU embeddings. The starts compared: docs/koch_siamese_notes.md.
            nn.init.constant_(self.head.weight, -1.0 / self.head.in_features)
            nn.init.zeros_(self.head.bias)

    def pair_generator(self, episode: Episode) -> torch.Generator:
        """The episode's own CPU generator for pairs and distortions (no global RNG).

        Seeded from `episode.seed` (the sampler's per-episode seed) mixed with `pair_seed`, so every
        episode index gets its own pairs, even when two episodes share their classes, and the same
        index gets the same pairs again after a resume. Episodes built by hand (seed None) fall back to
        their dataset-level class ids.
        """
        key = (f"episode:{episode.seed}" if episode.seed is not None
               else ",".join(str(c) for c in episode.class_ids.tolist()))
        return torch.Generator().manual_seed(episode_seed(self.pair_seed, f"pairs:{key}", 0))

    def loss_and_logits(self, episode: Episode) -> MethodOutput:
        generator = self.pair_generator(episode)
        images = torch.cat([episode.support_images, episode.query_images])
        if self.augment and self.training:
            images = random_affine(images, generator)
        embeddings = self.embed(images)
        n_support = episode.support_images.shape[0]
        support, query = embeddings[:n_support], embeddings[n_support:]
        logits = class_max(self.similarity_matrix(query, support), episode.support_labels, episode.n_way)
        labels = torch.cat([episode.support_labels, episode.query_labels])
        left, right, different = balanced_pairs(labels, self.pairs_per_episode, generator)
        loss = self.pair_loss(embeddings[left], embeddings[right], different)
        return MethodOutput(loss, logits, {})

    def pair_loss(self, left: torch.Tensor, right: torch.Tensor, different: torch.Tensor) -> torch.Tensor:
        """The configured loss of embedding pairs [P, D] x [P, D] with labels [P] (1 = different)."""
        if self.head is not None:
            return koch_bce_loss(at_least_float32(self.same_logit(left, right)), different)
        distance = euclidean_distance(at_least_float32(left), at_least_float32(right))
        return contrastive_loss(distance, different, self.margin)

    def same_logit(self, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        """BCE head: logit of "same" for broadcastable embeddings [..., D] -> [...]."""
        assert self.head is not None
        return weighted_l1_logit(left, right, self.head.weight, self.head.bias)

    def similarity_matrix(self, query: torch.Tensor, support: torch.Tensor) -> torch.Tensor:
        """[Q, D] x [S, D] -> [Q, S] similarity (higher = more alike): logit or -distance."""
        if self.head is not None:
            return self.same_logit(query[:, None, :], support[None, :, :])
        return -euclidean_distance_matrix(query, support)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """[B, C, H, W] -> [B, D] (unit length when `normalize`)."""
        embeddings = self.backbone(images).flatten(1)
        return nn.functional.normalize(embeddings, dim=1) if self.normalize else embeddings

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """[Q, n_way] best similarities per class -> [Q, n_way] class probabilities.

        * BCE: p_c = sigmoid(logit_c), the head's p(same) for the class's best-matching support
          image, normalised over the classes (computed as softmax(log sigmoid(logit)), which is
          p_c / Σ p_c' without underflow when every class is unlikely).
        * contrastive: softmax of minus the smallest Euclidean distance per class (the loss
          trains distances, not probabilities: a ranking with a Boltzmann weighting, not calibrated).
        """
        if self.head is not None:
            return torch.softmax(nn.functional.logsigmoid(logits.float()), dim=-1)
        return super().probabilities(logits)

    def pair_distance(self, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        """[P, D] x [P, D] -> [P]: Euclidean distance, or 1 - p(same) = sigmoid(-logit) for BCE."""
        if self.head is not None:
            return torch.sigmoid(-self.same_logit(left, right))
        return euclidean_distance(left, right)

    def class_scores(self, query: torch.Tensor, support: torch.Tensor, support_labels: torch.Tensor,
                     n_way: int) -> torch.Tensor:
        """[Q, D] x [S, D] -> [Q, n_way]: best similarity over each class's support images."""
        return class_max(self.similarity_matrix(query, support), support_labels, n_way)
