"""Pure tensor maths of Siamese networks (no modules, no state).

Conventions: a pair label `different` is 1.0 for a pair of two classes and 0.0 for a pair of one class
(Hadsell et al.'s Y); Koch et al.'s BCE target is the opposite (1 = same), so `koch_bce_loss` takes
`different` and flips it itself.
"""

import torch
import torch.nn.functional as F

DISTANCE_EPS = 1e-9  # keeps the gradient of sqrt finite for identical embeddings


def euclidean_distance(left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """||a - b||_2 row by row: [P, D] x [P, D] -> [P] (epsilon inside the root for a finite gradient)."""
    return ((left - right).pow(2).sum(dim=-1) + DISTANCE_EPS).sqrt()


def euclidean_distance_matrix(queries: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """||q - k||_2 for every pair: [Q, D] x [S, D] -> [Q, S]."""
    return ((queries[:, None, :] - keys[None, :, :]).pow(2).sum(dim=-1) + DISTANCE_EPS).sqrt()


def contrastive_loss(distance: torch.Tensor, different: torch.Tensor, margin: float = 2.0) -> torch.Tensor:
    """Contrastive loss (Hadsell, Chopra, LeCun, CVPR 2006, eq. 4), mean over pairs.

    L = (1 - y) · d² + y · max(0, m - d)²

    Same pairs are pulled together, different pairs pushed apart until they are `margin` apart. The
    paper writes a factor 1/2 on both terms; like the PyTorch AT&T tutorial this omits it (it only
    rescales the gradient).

    Args:
        distance: [P] Euclidean distances d between the two embeddings of each pair.
        different: [P] y = 1.0 for pairs of two classes, 0.0 for pairs of one class.
        margin: m.
    Returns:
        scalar
    """
    different = different.to(distance.dtype)
    pull = (1.0 - different) * distance.pow(2)
    push = different * (margin - distance).clamp_min(0.0).pow(2)
    return (pull + push).mean()


def weighted_l1_logit(left: torch.Tensor, right: torch.Tensor, weight: torch.Tensor,
                      bias: torch.Tensor) -> torch.Tensor:
    """Koch et al. 2015, eq. 1 before the sigmoid: sum_j α_j |a_j - b_j| + β.

    Args:
        left, right: [P, D] embeddings; or [Q, 1, D] and [1, S, D] for every query/support pair.
        weight: [1, D] the learned α (an nn.Linear(D, 1) weight); bias: [1].
    Returns:
        [P] (or [Q, S]) logits of "same class".
    """
    return F.linear((left - right).abs(), weight, bias).squeeze(-1)


def koch_bce_loss(same_logit: torch.Tensor, different: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of sigmoid(logit) against "same" (Koch et al. 2015, eq. 2), mean over pairs.

    Args:
        same_logit: [P] logits of "the two images show one class".
        different: [P] 1.0 for pairs of two classes (target 0), 0.0 for pairs of one class (target 1).
    """
    target = 1.0 - different.to(same_logit.dtype)
    return F.binary_cross_entropy_with_logits(same_logit, target)
