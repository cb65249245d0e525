"""Matching Networks: attention maths, probabilities that sum to 1, full-context embeddings, options,
and learning on a synthetic task."""

import pytest
import torch
import torch.nn.functional as F
from synthetic_tasks import accuracy_gain, mean, synthetic_samplers, train_beside_untrained
from torch import nn

from fewshot_cli.backbones.conv4 import Conv4
from fewshot_cli.data.episode import Episode
from fewshot_cli.errors import ConfigError
from fewshot_cli.methods.matchingnet import MatchingNetworks


def random_episode(n_way: int = 4, n_shot: int = 3, n_query: int = 2, side: int = 16,
                   seed: int = 0) -> Episode:
    generator = torch.Generator().manual_seed(seed)
    support = torch.rand(n_way * n_shot, 1, side, side, generator=generator)
    query = torch.rand(n_way * n_query, 1, side, side, generator=generator)
    return Episode(support, torch.arange(n_way).repeat_interleave(n_shot), query,
                   torch.arange(n_way).repeat_interleave(n_query), torch.arange(n_way),
                   tuple(f"c{i}" for i in range(n_way)), n_way, n_shot, n_query)


def small_backbone() -> nn.Module:
    torch.manual_seed(0)
    return Conv4(hidden_channels=8, out_channels=8)


@pytest.mark.parametrize(("distance", "fce"), [("cosine", False), ("l2", False), ("cosine", True)])
@pytest.mark.parametrize("n_shot", [1, 3])
def test_probabilities_sum_to_one_per_query(distance: str, fce: bool, n_shot: int) -> None:
    model = MatchingNetworks(small_backbone(), distance=distance, fce=fce, input_shape=(1, 16, 16))
    episode = random_episode(n_shot=n_shot)
    output = model.loss_and_logits(episode)
    assert output.logits.shape == (4 * 2, 4)
    torch.testing.assert_close(output.logits.exp().sum(dim=1), torch.ones(8))
    # The loss is the NLL of those log-probabilities.
    torch.testing.assert_close(output.loss, -output.logits[torch.arange(8), episode.query_labels].mean())


def test_attention_summed_per_class_matches_the_paper_formula() -> None:
    """P(y=k|x̂) = Σ_{i: y_i=k} softmax_i(cos(f(x̂), g(x_i))), computed here the plain way."""
    model = MatchingNetworks(nn.Flatten(), temperature=1.0)
    query = torch.tensor([[1.0, 0.0], [0.0, 2.0], [-1.0, -1.0]])
    support = torch.tensor([[1.0, 0.1], [0.2, 1.0], [0.9, -0.3], [-0.5, 0.5]])
    labels = torch.tensor([0, 1, 0, 2])
    log_probs = model.class_log_probabilities(query, support, labels, n_way=3)
    attention = torch.softmax(F.cosine_similarity(query[:, None], support[None], dim=-1), dim=1)
    expected = torch.stack([attention[:, labels == k].sum(dim=1) for k in range(3)], dim=1)
    torch.testing.assert_close(log_probs.exp(), expected)


def test_l2_distance_and_temperature_scale_the_attention() -> None:
    query, support = torch.randn(3, 5), torch.randn(6, 5)
    l2 = MatchingNetworks(nn.Flatten(), distance="l2").attention_logits(query, support)
    torch.testing.assert_close(l2, -torch.cdist(query, support).pow(2))
    sharp = MatchingNetworks(nn.Flatten(), temperature=0.1).attention_logits(query, support)
    plain = MatchingNetworks(nn.Flatten()).attention_logits(query, support)
    torch.testing.assert_close(sharp, plain / 0.1)


def test_full_context_embeddings_depend_on_the_whole_support_set() -> None:
    model = MatchingNetworks(small_backbone(), fce=True, fce_steps=3, input_shape=(1, 16, 16))
    assert model.support_lstm is not None and model.support_lstm.hidden_size == 8
    support, query = torch.randn(6, 8), torch.randn(4, 8)
    g = model.full_context_support(support)
    f = model.full_context_query(query, g)
    assert g.shape == support.shape and f.shape == query.shape
    # Changing one support item changes the other items' embeddings (bidirectional context) and the
    # query embeddings (attention read-out).
    changed = support.clone()
    changed[5] += 1.0
    g_changed = model.full_context_support(changed)
    assert not torch.allclose(g_changed[0], g[0])
    assert not torch.allclose(model.full_context_query(query, g_changed), f)


def test_gradients_reach_every_parameter_with_fce() -> None:
    model = MatchingNetworks(small_backbone(), fce=True, input_shape=(1, 16, 16))
    model.loss_and_logits(random_episode()).loss.backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum()]
    assert missing == []


def test_bad_options_are_config_errors() -> None:
    with pytest.raises(ConfigError, match=r"method\.distance='manhattan'"):
        MatchingNetworks(nn.Flatten(), distance="manhattan")
    with pytest.raises(ConfigError, match=r"method\.input_shape"):
        MatchingNetworks(small_backbone(), fce=True)
    with pytest.raises(ConfigError, match="outputs vectors"):
        MatchingNetworks(Conv4(pooled_blocks=2, flatten=False), fce=True, input_shape=(1, 28, 28))
    with pytest.raises(ConfigError, match=r"backbone\.flatten=true"):
        MatchingNetworks(Conv4(pooled_blocks=2, flatten=False)).loss_and_logits(random_episode())


@pytest.mark.parametrize("fce", [False, True], ids=["plain", "fce"])
def test_matching_networks_learn_a_synthetic_task(fce: bool) -> None:
    samplers = synthetic_samplers()
    torch.manual_seed(0)
    model = MatchingNetworks(Conv4(hidden_channels=16, out_channels=16), fce=fce, input_shape=(1, 16, 16))
    losses, untrained_losses, untrained = train_beside_untrained(model, samplers.train, n_episodes=24,
                                                                 lr=3e-3)
    assert mean(losses[-6:]) < 0.95 * mean(untrained_losses[-6:])  # 5%: more than float noise
    # Untrained features already match (~46% without FCE, chance 20%): so the bar is that model.
    gain = accuracy_gain(model, untrained, samplers.test, 20)
    assert gain.mean - gain.ci95 > 0, gain  # the paired 95% CI of the gain (points) excludes 0
