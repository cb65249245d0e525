"""Prototypical Networks (Snell, Swersky, Zemel, NeurIPS 2017)."""

import torch
import torch.nn.functional as F
from torch import nn

from fewshot_cli.data.episode import Episode
from fewshot_cli.errors import ConfigError
from fewshot_cli.methods.base import FewShotMethod, MethodOutput
from fewshot_cli.methods.functional import (
    at_least_float32,
    class_prototypes,
    cosine_similarity_matrix,
    squared_euclidean_distance,
)

DISTANCES = ("squared_euclidean", "cosine")


class PrototypicalNetworks(FewShotMethod):
    """Classify queries by distance to class prototypes (mean support embeddings).

    logits[q, c] = -||f(x_q) - p_c||^2 (or temperature * cos(f(x_q), p_c)); the loss is the cross
    entropy of softmax(logits) against the query labels (the paper's eq. 2).

    Shapes: support [n_way * n_shot, C, H, W], query [n_way * n_query, C, H, W] -> logits
    [n_way * n_query, n_way].

    Args:
        backbone: embedding network, images -> [B, D].
        distance: "squared_euclidean" (the paper's) or "cosine".
        temperature: logit scale for cosine similarities (cosines in [-1, 1] are too flat to train).
    """

    has_embedding = True

    def __init__(self, backbone: nn.Module, distance: str = "squared_euclidean",
                 temperature: float = 10.0) -> None:
        super().__init__()
        if distance not in DISTANCES:
            raise ConfigError(f"method.distance={distance!r}; use one of {', '.join(DISTANCES)}")
        self.backbone = backbone
        self.distance = distance
        self.temperature = temperature

    def loss_and_logits(self, episode: Episode) -> MethodOutput:
        # One forward pass over support and query together, so BatchNorm sees the whole episode.
        n_support = episode.support_images.shape[0]
        embeddings = self.backbone(torch.cat([episode.support_images, episode.query_images]))
        support, query = embeddings[:n_support], embeddings[n_support:]
        prototypes = class_prototypes(support, episode.support_labels, episode.n_way)
        logits = self.logits(query, prototypes)
        loss = F.cross_entropy(at_least_float32(logits), episode.query_labels)
        return MethodOutput(loss, logits, {})

    def logits(self, query: torch.Tensor, prototypes: torch.Tensor) -> torch.Tensor:
        """[Q, D] x [N, D] -> [Q, N] scores."""
        if self.distance == "cosine":
            return self.temperature * cosine_similarity_matrix(query, prototypes)
        return -squared_euclidean_distance(query, prototypes)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """[B, C, H, W] -> [B, D] backbone embeddings."""
        return self.backbone(images).flatten(1)

    def pair_distance(self, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        """[P, D] x [P, D] -> [P]: the squared Euclidean distance, or 1 - cosine."""
        if self.distance == "cosine":
            return 1.0 - F.cosine_similarity(left, right, dim=-1)
        return (left - right).pow(2).sum(dim=-1)

    def class_scores(self, query: torch.Tensor, support: torch.Tensor, support_labels: torch.Tensor,
                     n_way: int) -> torch.Tensor:
        """[Q, D] x [S, D] -> [Q, n_way]: the episode logits against prototypes of the support."""
        return self.logits(query, class_prototypes(support, support_labels, n_way))
