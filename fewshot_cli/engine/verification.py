"""Verification metrics on pairs: ROC AUC, equal error rate and a decision threshold (pure torch).

Scores are *distances*: lower means "same". Labels are `different` (1.0 for a pair of two classes).
"""

from typing import NamedTuple

import torch


def roc_auc(distances: torch.Tensor, different: torch.Tensor) -> float:
    """Area under the ROC curve of "different" scored by distance (ties count one half).

    Equals P(d(different pair) > d(same pair)) + 0.5 P(equal): the Mann-Whitney U statistic divided
    by n_same * n_different, computed from average ranks.

    Args:
        distances: [P]; different: [P] in {0, 1} with both classes present.
    """
    d = distances.detach().double().cpu()
    y = different.detach().cpu().bool()
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError("ROC AUC needs both same and different pairs")
    ranks = _average_ranks(d)
    u = ranks[y].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def _average_ranks(values: torch.Tensor) -> torch.Tensor:
    """1-based ranks of `values`, tied values sharing the mean of their ranks."""
    order = torch.argsort(values, stable=True)
    sorted_values = values[order]
    ranks = torch.empty_like(values)
    start = 0
    n = len(values)
    boundaries = torch.nonzero(sorted_values[1:] != sorted_values[:-1]).flatten().tolist()
    for end in [*(b + 1 for b in boundaries), n]:
        ranks[order[start:end]] = (start + 1 + end) / 2.0
        start = end
    return ranks


class ErrorRates(NamedTuple):
    """Equal error rate and the threshold where false accepts and false rejects meet."""

    eer: float
    threshold: float


def equal_error_rate(distances: torch.Tensor, different: torch.Tensor) -> ErrorRates:
    """EER of the rule "same if distance <= t", over every threshold t between observed distances.

    False accept rate: different pairs called same; false reject rate: same pairs called different.
    Returns the threshold minimising |FAR - FRR| and the mean of FAR and FRR there.
    """
    d = distances.detach().double().cpu()
    y = different.detach().cpu().bool()
    if y.all() or (~y).all():
        raise ValueError("EER needs both same and different pairs")
    candidates = _candidate_thresholds(d)
    accept = d[None, :] <= candidates[:, None]  # [T, P]
    far = (accept & y).sum(1).double() / y.sum()
    frr = (~accept & ~y).sum(1).double() / (~y).sum()
    best = int(torch.argmin((far - frr).abs()))
    return ErrorRates(float((far[best] + frr[best]) / 2), float(candidates[best]))


def best_accuracy_threshold(distances: torch.Tensor, different: torch.Tensor) -> tuple[float, float]:
    """Threshold t maximising the accuracy of "same if distance <= t"; returns (t, accuracy)."""
    d = distances.detach().double().cpu()
    y = different.detach().cpu().bool()
    candidates = _candidate_thresholds(d)
    accept = d[None, :] <= candidates[:, None]
    correct = (accept == ~y).double().mean(1)
    best = int(torch.argmax(correct))
    return float(candidates[best]), float(correct[best])


def _candidate_thresholds(d: torch.Tensor) -> torch.Tensor:
    """Midpoints between consecutive distinct distances, plus one below and one above all of them."""
    unique = torch.unique(d)
    middle = (unique[1:] + unique[:-1]) / 2
    return torch.cat([unique[:1] - 1.0, middle, unique[-1:] + 1.0])
