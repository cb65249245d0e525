"""The Episode contract shared by every method: a support set and a query set over n_way classes."""

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Episode:
    """One N-way K-shot task.

    Images are float tensors already on the compute device, ordered class-major: support image
    `c * n_shot + s` belongs to episode class `c`.

    Attributes:
        support_images: [n_way * n_shot, C, H, W]
        support_labels: [n_way * n_shot] episode labels in 0..n_way-1
        query_images: [n_way * n_query, C, H, W]
        query_labels: [n_way * n_query] episode labels in 0..n_way-1
        class_ids: [n_way] dataset-level class index of each episode class
        class_names: names of the episode classes (CLIP builds prompts from them)
        seed: the episode's own 64-bit seed, `episode_seed(seed, stream, index)` of the sampler that
            drew it (fewshot_cli/data/sampler.py), so per-episode randomness (Siamese pairs) differs
            between episodes and repeats exactly on resume; None for episodes built by hand
    """

    support_images: torch.Tensor
    support_labels: torch.Tensor
    query_images: torch.Tensor
    query_labels: torch.Tensor
    class_ids: torch.Tensor
    class_names: tuple[str, ...]
    n_way: int
    n_shot: int
    n_query: int
    seed: int | None = None
