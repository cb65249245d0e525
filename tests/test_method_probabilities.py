"""`FewShotMethod.probabilities`: how each method's logits become class probabilities for `fewshot
predict`, against hand-computed values."""

import math

import pytest
import torch
from torch import nn

from fewshot_cli.backbones.conv4 import Conv4
from fewshot_cli.data.episode import Episode
from fewshot_cli.methods.base import FewShotMethod, MethodOutput
from fewshot_cli.methods.matchingnet import MatchingNetworks
from fewshot_cli.methods.relationnet import RelationNetworks
from fewshot_cli.methods.siamese import SiameseNetwork


class _Plain(FewShotMethod):
    def loss_and_logits(self, episode: Episode) -> MethodOutput:  # pragma: no cover - unused
        raise NotImplementedError


def test_default_is_the_softmax() -> None:
    logits = torch.tensor([[0.0, math.log(3.0)], [2.0, 2.0]])
    assert torch.allclose(_Plain().probabilities(logits), torch.tensor([[0.25, 0.75], [0.5, 0.5]]))


def test_matching_networks_exponentiate_their_log_probabilities() -> None:
    """Attention over 3 support items, two of class 0: P(class 0) is the sum of their attention."""
    method = MatchingNetworks(nn.Identity(), distance="l2")
    query = torch.tensor([[0.0, 0.0]])
    support = torch.tensor([[1.0, 0.0], [0.0, 2.0], [0.0, 1.0]])  # squared distances 1, 4, 1
    log_probs = method.class_log_probabilities(query, support, torch.tensor([0, 0, 1]), 2)
    attention = torch.softmax(torch.tensor([-1.0, -4.0, -1.0]), dim=0)
    expected = torch.stack([attention[0] + attention[1], attention[2]])
    probabilities = method.probabilities(log_probs)
    assert torch.allclose(probabilities[0], expected, atol=1e-6)
    # A softmax of the log-probabilities would be the same here; of raw attention logits it would not.
    assert not torch.allclose(_Plain().probabilities(torch.tensor([[-1.0, -1.0]])), expected)


def test_relation_scores_are_normalised_to_sum_one() -> None:
    method = RelationNetworks(Conv4(in_channels=1), input_shape=(1, 28, 28))
    scores = torch.tensor([[0.2, 0.6], [0.0, 0.0], [0.9, 0.9]])
    probabilities = method.probabilities(scores)
    assert torch.allclose(probabilities, torch.tensor([[0.25, 0.75], [0.5, 0.5], [0.5, 0.5]]))
    # Not the softmax: that would squash scores in [0, 1] towards uniform.
    assert not torch.allclose(probabilities[0], torch.softmax(scores[0], dim=0))


def test_siamese_bce_normalises_per_class_sigmoids() -> None:
    method = SiameseNetwork(Conv4(in_channels=1), loss="bce", image_size=28)
    logits = torch.tensor([[0.0, math.log(3.0)], [-200.0, -201.0]])  # sigmoids 0.5, 0.75
    probabilities = method.probabilities(logits)
    assert torch.allclose(probabilities[0], torch.tensor([0.4, 0.6]))
    # Both sigmoids underflow float32 here; the ratio e^-200 / e^-201 survives.
    assert torch.allclose(probabilities[1], torch.tensor([math.e, 1.0]) / (1 + math.e))
    contrastive = SiameseNetwork(Conv4(in_channels=1), loss="contrastive")
    assert torch.allclose(contrastive.probabilities(logits[:1]), torch.tensor([[0.25, 0.75]]))


@pytest.mark.parametrize("method", ["matchingnet", "relationnet", "siamese"])
def test_rows_are_distributions_on_random_logits(method: str) -> None:
    generator = torch.Generator().manual_seed(0)
    if method == "matchingnet":
        logits = torch.log_softmax(torch.randn(6, 5, generator=generator), dim=1)
        model: FewShotMethod = MatchingNetworks(nn.Identity())
    elif method == "relationnet":
        logits = torch.rand(6, 5, generator=generator)
        model = RelationNetworks(Conv4(in_channels=1), input_shape=(1, 28, 28))
    else:
        logits = 10 * torch.randn(6, 5, generator=generator)
        model = SiameseNetwork(Conv4(in_channels=1), loss="bce", image_size=28)
    probabilities = model.probabilities(logits)
    assert probabilities.shape == (6, 5) and bool((probabilities >= 0).all() and (probabilities <= 1).all())
    assert torch.allclose(probabilities.sum(dim=1), torch.ones(6), atol=1e-6)
    assert torch.equal(probabilities.argmax(dim=1), logits.argmax(dim=1))  # ranking kept
