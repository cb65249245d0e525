"""Balanced same/different pair sampling from labelled images, from a caller-owned torch.Generator."""

import torch

from fewshot_cli.errors import ConfigError


def balanced_pairs(labels: torch.Tensor, n_pairs: int,
                   generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Draw `n_pairs` pairs, half of one class and half of two classes (the first n_pairs // 2 same).

    Same pairs: an anchor drawn uniformly among images that share their class with another image, and
    a different image of its class. Different pairs: an anchor drawn uniformly, and an image of any
    other class. Only `generator` is used (on the CPU), so pairs are a pure function of its seed.

    Args:
        labels: int64 [N] class of each image.
        n_pairs: pairs to draw (at least 2).
        generator: a CPU torch.Generator.
    Returns:
        left, right: int64 [n_pairs] indices into `labels` (on labels' device)
        different: float32 [n_pairs], 1.0 for pairs of two classes (Hadsell et al.'s y)
    """
    if n_pairs < 2:
        raise ConfigError(f"method.pairs_per_episode={n_pairs} must be at least 2 (one same, one "
                          f"different pair)")
    cpu_labels = labels.cpu()
    n = cpu_labels.shape[0]
    same_class = cpu_labels[:, None] == cpu_labels[None, :]
    partner_ok = same_class & ~torch.eye(n, dtype=torch.bool)
    other_ok = ~same_class
    anchors_same = torch.nonzero(partner_ok.any(dim=1)).flatten()
    anchors_diff = torch.nonzero(other_ok.any(dim=1)).flatten()
    if len(anchors_same) == 0 or len(anchors_diff) == 0:
        raise ConfigError("an episode needs two images of one class and two classes to form "
                          "same and different pairs; use n_shot + n_query >= 2 and n_way >= 2")
    n_same = n_pairs // 2
    n_diff = n_pairs - n_same
    left_same = anchors_same[torch.randint(len(anchors_same), (n_same,), generator=generator)]
    left_diff = anchors_diff[torch.randint(len(anchors_diff), (n_diff,), generator=generator)]
    left = torch.cat([left_same, left_diff])
    allowed = torch.cat([partner_ok[left_same], other_ok[left_diff]])  # [n_pairs, N]
    # A uniform pick among allowed partners: random keys, disallowed ones pushed below every key.
    keys = torch.rand(allowed.shape, generator=generator).masked_fill_(~allowed, -1.0)
    right = keys.argmax(dim=1)
    different = torch.cat([torch.zeros(n_same), torch.ones(n_diff)])
    device = labels.device
    return left.to(device), right.to(device), different.to(device)
