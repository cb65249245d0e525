"""Pure tensor maths shared by the metric-based methods (no modules, no state)."""

import torch
import torch.nn.functional as F


def class_prototypes(embeddings: torch.Tensor, labels: torch.Tensor, n_way: int) -> torch.Tensor:
    """Mean embedding of each class (Snell et al. 2017, eq. 1).

    Args:
        embeddings: [n_support, D]
        labels: [n_support] in 0..n_way-1
    Returns:
        [n_way, D]
    """
    sums = torch.zeros(n_way, embeddings.shape[1], dtype=embeddings.dtype, device=embeddings.device)
    sums.index_add_(0, labels, embeddings)
    counts = torch.bincount(labels, minlength=n_way).clamp_min(1).to(embeddings.dtype)
    return sums / counts[:, None]


def squared_euclidean_distance(queries: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """||q - c||^2 for every pair (Snell et al. 2017 use the squared distance).

    Args:
        queries: [Q, D]
        centres: [N, D]
    Returns:
        [Q, N], computed as a difference (not via the ||q||^2 - 2 q.c + ||c||^2 expansion, which loses
        precision when embeddings are large and close).
    """
    return (queries[:, None, :] - centres[None, :, :]).pow(2).sum(dim=-1)


def cosine_similarity_matrix(queries: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """cos(q, c) for every pair: [Q, D] x [N, D] -> [Q, N]."""
    return F.normalize(queries, dim=-1) @ F.normalize(centres, dim=-1).T


def class_max(scores: torch.Tensor, labels: torch.Tensor, n_way: int) -> torch.Tensor:
    """Nearest-support scoring: the best score over each class's support images, [Q, S] x [S] ->
    [Q, n_way] (scores: higher = more alike, e.g. minus a distance; labels in 0..n_way-1).

    The one-shot rule of Koch et al. 2015 (pick the support image most similar to the query)
    extended to K shots by taking the most similar of the class's K images. Classes without support
    get -inf.
    """
    out = torch.full((scores.shape[0], n_way), float("-inf"), dtype=scores.dtype, device=scores.device)
    return out.scatter_reduce(1, labels.expand_as(scores), scores, reduce="amax", include_self=True)


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Fraction of rows whose argmax equals the label, as a 0-d tensor (no host sync)."""
    return (logits.argmax(dim=-1) == labels).float().mean()


def at_least_float32(tensor: torch.Tensor) -> torch.Tensor:
    """Upcast half-precision (AMP) tensors to float32 for losses and softmaxes; keep float32/float64.

    `.float()` would also downcast float64, which the double-precision gradient checks rely on.
    """
    return tensor.float() if tensor.dtype in (torch.float16, torch.bfloat16) else tensor
