"""Prototypical Networks maths against tensors computed by hand (identity backbone, 2-d features)."""

import math

import pytest
import torch
from torch import nn

from fewshot_cli.data.episode import Episode
from fewshot_cli.errors import ConfigError
from fewshot_cli.methods.functional import (
    accuracy,
    class_prototypes,
    cosine_similarity_matrix,
    squared_euclidean_distance,
)
from fewshot_cli.methods.protonet import PrototypicalNetworks

# 2-way 2-shot: class 0 at (0,0),(2,0) -> prototype (1,0); class 1 at (0,2),(0,4) -> prototype (0,3).
SUPPORT = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0], [0.0, 4.0]])
SUPPORT_LABELS = torch.tensor([0, 0, 1, 1])
PROTOTYPES = torch.tensor([[1.0, 0.0], [0.0, 3.0]])
QUERY = torch.tensor([[1.0, 1.0], [0.0, 3.0], [3.0, 3.0]])
QUERY_LABELS = torch.tensor([0, 1, 1])
# ||q - p||^2 by hand: q0: (0+1, 1+4); q1: (1+9, 0); q2: (4+9, 9+0)
DISTANCES = torch.tensor([[1.0, 5.0], [10.0, 0.0], [13.0, 9.0]])


def episode(support: torch.Tensor = SUPPORT, query: torch.Tensor = QUERY) -> Episode:
    return Episode(support, SUPPORT_LABELS, query, QUERY_LABELS, class_ids=torch.tensor([7, 3]),
                   class_names=("a", "b"), n_way=2, n_shot=2, n_query=1)


def test_class_prototypes_are_class_means() -> None:
    assert torch.equal(class_prototypes(SUPPORT, SUPPORT_LABELS, 2), PROTOTYPES)


def test_class_prototypes_do_not_depend_on_support_order() -> None:
    order = torch.tensor([3, 0, 2, 1])
    assert torch.equal(class_prototypes(SUPPORT[order], SUPPORT_LABELS[order], 2), PROTOTYPES)


def test_class_prototypes_with_unequal_shots() -> None:
    embeddings = torch.tensor([[1.0, 1.0], [3.0, 5.0], [2.0, 0.0], [5.0, -1.0]])
    labels = torch.tensor([0, 0, 0, 1])
    assert torch.allclose(class_prototypes(embeddings, labels, 2),
                          torch.tensor([[2.0, 2.0], [5.0, -1.0]]))


def test_squared_euclidean_distance_by_hand() -> None:
    assert torch.equal(squared_euclidean_distance(QUERY, PROTOTYPES), DISTANCES)


def test_squared_euclidean_distance_is_exact_for_large_close_vectors() -> None:
    # The ||q||^2 - 2q.c + ||c||^2 expansion would lose this 1e-2 difference in float32.
    q = torch.full((1, 64), 1000.0)
    c = q.clone()
    c[0, 0] += 0.1
    assert torch.allclose(squared_euclidean_distance(q, c), torch.tensor([[0.01]]), rtol=1e-3)


def test_cosine_similarity_matrix_by_hand() -> None:
    expected = torch.tensor([[1 / math.sqrt(2), 1 / math.sqrt(2)], [0.0, 1.0],
                             [1 / math.sqrt(2), 1 / math.sqrt(2)]])
    assert torch.allclose(cosine_similarity_matrix(QUERY, PROTOTYPES), expected, atol=1e-6)


def test_accuracy_is_fraction_of_correct_argmax() -> None:
    logits = torch.tensor([[2.0, 1.0], [0.0, 1.0], [5.0, 1.0], [0.0, 3.0]])
    assert accuracy(logits, torch.tensor([0, 1, 1, 0])).item() == pytest.approx(0.5)


def test_protonet_logits_and_loss_match_hand_computation() -> None:
    model = PrototypicalNetworks(nn.Identity())
    loss, logits, metrics = model.loss_and_logits(episode())
    assert torch.equal(logits, -DISTANCES)
    # Cross entropy of softmax(-d) per query, written out.
    per_query = [math.log(1 + math.exp(-4.0)),   # q0: -log(e^-1 / (e^-1 + e^-5))
                 math.log(1 + math.exp(-10.0)),  # q1: -log(e^0 / (e^-10 + e^0))
                 math.log(1 + math.exp(-4.0))]   # q2: -log(e^-9 / (e^-13 + e^-9))
    assert loss.item() == pytest.approx(sum(per_query) / 3, rel=1e-5)  # float32
    assert metrics == {}


def test_protonet_cosine_logits_are_scaled_cosines() -> None:
    model = PrototypicalNetworks(nn.Identity(), distance="cosine", temperature=10.0)
    loss, logits, _ = model.loss_and_logits(episode())
    c = 10 / math.sqrt(2)
    assert torch.allclose(logits, torch.tensor([[c, c], [0.0, 10.0], [c, c]]), atol=1e-5)
    expected = (math.log(2) + math.log(1 + math.exp(-10.0)) + math.log(2)) / 3
    assert loss.item() == pytest.approx(expected, rel=1e-5)


class CountingLinear(nn.Module):
    """A linear embedding that records the batch sizes it was called with."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(2, 2, bias=False)
        with torch.no_grad():
            self.linear.weight.copy_(torch.eye(2))
        self.calls: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append(x.shape[0])
        return self.linear(x)


def test_protonet_embeds_support_and_query_in_one_pass_and_backpropagates() -> None:
    backbone = CountingLinear()
    model = PrototypicalNetworks(backbone)
    loss, logits, _ = model(episode())
    assert backbone.calls == [4 + 3]  # one batch: BatchNorm sees the whole episode
    assert torch.allclose(logits, -DISTANCES)  # identity weights
    loss.backward()
    assert backbone.linear.weight.grad is not None
    assert torch.all(torch.isfinite(backbone.linear.weight.grad))
    assert backbone.linear.weight.grad.abs().sum() > 0


def test_protonet_is_stateless_between_episodes() -> None:
    model = PrototypicalNetworks(nn.Identity())
    first = model.loss_and_logits(episode()).logits
    model.loss_and_logits(episode(support=SUPPORT * 3))
    assert torch.equal(model.loss_and_logits(episode()).logits, first)


def test_unknown_distance_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"method.distance='manhattan'.*squared_euclidean, cosine"):
        PrototypicalNetworks(nn.Identity(), distance="manhattan")
