"""Open-set recognition by thresholding the best logit (pure torch).

A query is "known" (one of the support classes) when its best logit, max_c logits[q, c], is at
least a threshold t, and "none of these" otherwise: the maximum-logit baseline of open-set
recognition (Hendrycks & Gimpel, ICLR 2017, used the maximum softmax probability; Vaze, Han,
Vedaldi & Zisserman, ICLR 2022, showed the maximum logit is the stronger score). The logit, not the
probability, is used because probabilities sum to 1 over the support classes: a query unlike every
class can still get 0.99 for one of them.

The threshold maximises the balanced accuracy of known-vs-unknown, (TPR + TNR) / 2, so it does
not depend on the share of unknown queries in the validation episodes.
"""

import torch

SCORE = "max_logit"  # the name stored in best.pt next to the threshold


def max_logit(logits: torch.Tensor) -> torch.Tensor:
    """The open-set score of each query: [Q, n_way] -> [Q] float32 (higher = more likely known)."""
    return logits.detach().float().max(dim=-1).values


def balanced_accuracy(accepted: torch.Tensor, known: torch.Tensor) -> float:
    """(fraction of known queries accepted + fraction of unknown queries rejected) / 2.

    Args:
        accepted: bool [Q], the rule's call (True = known).
        known: bool [Q], the truth; both kinds must be present.
    """
    accepted, known = accepted.cpu().bool(), known.cpu().bool()
    if known.all() or not known.any():
        raise ValueError("balanced accuracy needs known and unknown queries")
    return float(((accepted & known).sum() / known.sum() + (~accepted & ~known).sum() / (~known).sum()) / 2)


def best_balanced_threshold(scores: torch.Tensor, known: torch.Tensor) -> tuple[float, float]:
    """Threshold t of "known if score >= t" that maximises balanced accuracy; returns (t, accuracy).

    Candidates are the midpoints between consecutive distinct scores plus one below and one above
    all of them; ties go to the lowest threshold (reject as little as possible).

    Args:
        scores: [Q] open-set scores (higher = more likely known); known: bool [Q], both kinds present.
    """
    s = scores.detach().double().cpu()
    y = known.cpu().bool()
    if y.all() or not y.any():
        raise ValueError("choosing a threshold needs known and unknown queries")
    unique = torch.unique(s)  # sorted
    candidates = torch.cat([unique[:1] - 1.0, (unique[1:] + unique[:-1]) / 2, unique[-1:] + 1.0])
    # Candidate k < U accepts exactly the scores >= unique[k]; the last (above all) accepts none.
    # Counting those by binary search in the sorted known/unknown scores is O(Q log Q); a [T, Q]
    # comparison matrix took 20 GB for 300 validation episodes of 150 queries.
    known_sorted, _ = torch.sort(s[y])
    unknown_sorted, _ = torch.sort(s[~y])
    known_below = torch.searchsorted(known_sorted, unique, right=False)      # known with s < unique[k]
    unknown_below = torch.searchsorted(unknown_sorted, unique, right=False)  # unknown with s < unique[k]
    n_known, n_unknown = known_sorted.numel(), unknown_sorted.numel()
    tpr = torch.cat([(n_known - known_below).double(), torch.zeros(1, dtype=torch.float64)]) / n_known
    tnr = torch.cat([unknown_below.double(), torch.full((1,), float(n_unknown), dtype=torch.float64)])
    tnr = tnr / n_unknown
    balanced = (tpr + tnr) / 2
    best = int(torch.argmax(balanced))  # first maximum: the lowest such threshold
    return float(candidates[best]), float(balanced[best])
