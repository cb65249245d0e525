"""Open-set maths (`engine/open_set.py`) and the open-set validation episodes
(`tasks/open_set_report.py`) on hand-made cases."""

import pytest
import torch

from fewshot_cli.data.image_split import ImageSplit
from fewshot_cli.data.sampler import EpisodeSampler
from fewshot_cli.engine.open_set import balanced_accuracy, best_balanced_threshold, max_logit
from fewshot_cli.tasks.open_set_report import OpenSetShape, known_part, open_set_shape


def test_max_logit() -> None:
    assert max_logit(torch.tensor([[1.0, 3.0], [-2.0, -5.0]])).tolist() == [3.0, -2.0]


def test_balanced_accuracy_weighs_both_kinds_equally() -> None:
    known = torch.tensor([True, True, True, False])
    accepted = torch.tensor([True, True, True, True])  # plain accuracy 0.75, balanced 0.5
    assert balanced_accuracy(accepted, known) == pytest.approx(0.5)
    assert balanced_accuracy(torch.tensor([True, False, True, False]), known) == pytest.approx(
        (2 / 3 + 1) / 2)
    with pytest.raises(ValueError, match="known and unknown"):
        balanced_accuracy(accepted, torch.ones(4, dtype=torch.bool))


def test_best_balanced_threshold_separates_the_scores() -> None:
    scores = torch.tensor([5.0, 4.0, 3.0, 1.0, 0.0])
    known = torch.tensor([True, True, True, False, False])
    threshold, accuracy = best_balanced_threshold(scores, known)
    assert threshold == pytest.approx(2.0) and accuracy == pytest.approx(1.0)  # midpoint of 3 and 1


def test_best_balanced_threshold_is_not_fooled_by_imbalance() -> None:
    """Nine known, one unknown scoring in the middle of them: plain accuracy would accept all
    (90%); balanced accuracy rejects the unknown one and the known ones below it."""
    scores = torch.tensor([9.0, 8.0, 7.0, 6.0, 5.0, 4.5, 3.0, 2.0, 1.0, 0.0])
    known = torch.tensor([True] * 5 + [False] + [True] * 4)
    threshold, accuracy = best_balanced_threshold(scores, known)
    assert threshold == pytest.approx(4.75)
    assert accuracy == pytest.approx((5 / 9 + 1) / 2)
    assert balanced_accuracy(scores >= threshold, known) == pytest.approx(accuracy)


@pytest.mark.parametrize("seed", range(5))
def test_best_balanced_threshold_equals_trying_every_candidate(seed: int) -> None:
    """The O(Q log Q) search (a [candidates, queries] matrix took 20 GB at 300 validation episodes
    of 150 queries) gives what trying each candidate with balanced_accuracy gives, ties included
    (scores rounded to few values so many queries share one)."""
    generator = torch.Generator().manual_seed(seed)
    scores = torch.round(torch.randn(400, generator=generator) * 3) / 2
    known = torch.rand(400, generator=generator) < 0.3 + 0.1 * seed
    threshold, accuracy = best_balanced_threshold(scores, known)
    unique = torch.unique(scores.double())
    candidates = torch.cat([unique[:1] - 1.0, (unique[1:] + unique[:-1]) / 2, unique[-1:] + 1.0])
    tried = [balanced_accuracy(scores.double() >= c, known) for c in candidates]
    best = max(range(len(tried)), key=lambda k: (tried[k], -k))  # first maximum: lowest threshold
    assert threshold == pytest.approx(float(candidates[best]))
    assert accuracy == pytest.approx(tried[best])


def _split(counts: list[int]) -> ImageSplit:
    labels = torch.cat([torch.full((n,), c) for c, n in enumerate(counts)])
    images = torch.arange(len(labels), dtype=torch.uint8).view(-1, 1, 1, 1).expand(-1, 1, 4, 4).clone()
    return ImageSplit(images, labels, [f"c{c}" for c in range(len(counts))], "toy/val")


def test_open_set_shape_lowers_to_what_the_split_holds() -> None:
    assert open_set_shape(_split([10] * 20), 5, 1, 15) == OpenSetShape(5, 5, 1, 9)  # queries lowered
    assert open_set_shape(_split([20] * 20), 5, 1, 15) == OpenSetShape(5, 5, 1, 15)
    assert open_set_shape(_split([10] * 5), 5, 1, 9) == OpenSetShape(4, 1, 1, 9)  # AT&T's 5 people
    assert open_set_shape(_split([10] * 7), 5, 1, 9) == OpenSetShape(5, 2, 1, 9)
    assert open_set_shape(_split([3, 3, 2]), 2, 1, 2) == OpenSetShape(2, 1, 1, 1)  # queries lowered
    assert open_set_shape(_split([10, 10]), 2, 1, 2) is None


def test_known_part_keeps_the_support_of_the_known_classes_only() -> None:
    sampler = EpisodeSampler(_split([4] * 5), n_way=5, n_shot=2, n_query=2, seed=0, stream="val")
    episode = sampler.episode(0)
    seen, known = known_part(episode, 3)
    assert seen.n_way == 3 and seen.support_labels.tolist() == [0, 0, 1, 1, 2, 2]
    assert torch.equal(seen.support_images, episode.support_images[:6])
    assert torch.equal(seen.query_images, episode.query_images)  # every query, unknown ones too
    assert known.tolist() == [True] * 6 + [False] * 4
    assert seen.query_labels.tolist() == [0, 0, 1, 1, 2, 2, 0, 0, 0, 0]
    assert seen.class_names == episode.class_names[:3]
