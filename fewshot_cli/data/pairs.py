"""Balanced same/different pair sampling from labelled images, from a caller-owned torch.Generator."""

import torch

from fewshot_cli.errors import ConfigError


def balanced_pairs(labels: torch.Tensor, n_pairs: int,
                   generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Draw `n_pairs` pairs, half of one class and half of two classes (the first n_pairs // 2 same).

    Same pairs: an anchor drawn uniformly among images that share their class with another image, and
    a partner drawn uniformly among the other images of its class. Different pairs: an anchor drawn
    uniformly among images that have an image of another class, and a partner drawn uniformly among
    the images of other classes. Only `generator` is used (on the CPU), so pairs are a pure function
    of its seed.

    Works per class (counts and offsets into a label-sorted index), so memory is O(N + n_pairs) and
    time O(N log N + n_pairs): whole splits (pair verification after training, 60,000-image datasets)
    never build an N x N matrix.

    Args:
        labels: integer [N] class of each image (any integer values).
        n_pairs: pairs to draw (at least 2).
        generator: a CPU torch.Generator.
    Returns:
        left, right: int64 [n_pairs] indices into `labels` (on labels' device)
        different: float32 [n_pairs], 1.0 for pairs of two classes (Hadsell et al.'s y)
    Raises:
        ConfigError: n_pairs < 2, or no class has two images, or there are fewer than two classes.
    """
    if n_pairs < 2:
        raise ConfigError(f"method.pairs_per_episode={n_pairs} must be at least 2 (one same, one "
                          f"different pair)")
    index = _ClassIndex(labels.cpu())
    anchors_same = torch.nonzero(index.image_count >= 2).flatten()
    anchors_diff = torch.nonzero(index.image_count < index.n).flatten()
    if len(anchors_same) == 0 or len(anchors_diff) == 0:
        raise ConfigError("an episode needs two images of one class and two classes to form "
                          "same and different pairs; use n_shot + n_query >= 2 and n_way >= 2")
    n_same = n_pairs // 2
    n_diff = n_pairs - n_same
    left_same = anchors_same[torch.randint(len(anchors_same), (n_same,), generator=generator)]
    left_diff = anchors_diff[torch.randint(len(anchors_diff), (n_diff,), generator=generator)]
    left = torch.cat([left_same, left_diff])
    right = torch.cat([index.same_partners(left_same, generator),
                       index.different_partners(left_diff, generator)])
    different = torch.cat([torch.zeros(n_same), torch.ones(n_diff)])
    device = labels.device
    return left.to(device), right.to(device), different.to(device)


class _ClassIndex:
    """Images sorted by class, with each image's class offset, class size and rank in its class.

    All tensors are int64 [N] (or [n_classes]) on the CPU: O(N) memory whatever the number of classes.
    """

    def __init__(self, labels: torch.Tensor) -> None:
        _, class_of, counts = torch.unique(labels, return_inverse=True, return_counts=True)
        self.n = labels.shape[0]
        self.order = torch.argsort(class_of, stable=True)  # image indices, class by class
        starts = torch.cumsum(counts, 0) - counts
        self.start = starts[class_of]  # [N] where each image's class begins in `order`
        self.image_count = counts[class_of]  # [N] images of each image's class
        position = torch.empty_like(self.order)
        position[self.order] = torch.arange(self.n)
        self.rank = position - self.start  # [N] each image's place within its class block

    def same_partners(self, anchors: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """A uniform other image of each anchor's class: a rank in 0..k-2, shifted past the anchor."""
        k = self.image_count[anchors]
        pick = _uniform_below(k - 1, generator)
        pick += (pick >= self.rank[anchors]).long()
        return self.order[self.start[anchors] + pick]

    def different_partners(self, anchors: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """A uniform image of another class: a position among the N - k others in `order`, shifted
        past the anchor's class block."""
        k = self.image_count[anchors]
        start = self.start[anchors]
        pick = _uniform_below(self.n - k, generator)
        pick += k * (pick >= start).long()
        return self.order[pick]


def _uniform_below(bound: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """int64 [P]: entry i uniform in 0..bound[i]-1 (every bound >= 1).

    torch.randint takes one scalar bound; floor(u * bound) in float64 is uniform to within 2**-53 per
    value, far below any sampling noise, and the clamp guards the rounding edge u * bound == bound."""
    u = torch.rand(bound.shape, dtype=torch.float64, generator=generator)
    return torch.minimum((u * bound).long(), bound - 1)
