"""Relation Networks: scores in [0, 1], summed class features, MSE against one-hot labels, any input
resolution, clear errors for unusable embeddings, the method's own feature-map backbone in the
config, and learning on a synthetic task."""

import pytest
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from synthetic_tasks import accuracy_gain, mean, synthetic_samplers, train_beside_untrained

from fewshot_cli.backbones.conv4 import Conv4
from fewshot_cli.config import schema  # noqa: F401  (registers the structured schemas)
from fewshot_cli.config.locate import source_config_dir
from fewshot_cli.data.episode import Episode
from fewshot_cli.errors import ConfigError
from fewshot_cli.methods.relationnet import RelationNetworks


def random_episode(n_way: int = 3, n_shot: int = 2, n_query: int = 2, side: int = 28,
                   channels: int = 1, seed: int = 0) -> Episode:
    generator = torch.Generator().manual_seed(seed)
    support = torch.rand(n_way * n_shot, channels, side, side, generator=generator)
    query = torch.rand(n_way * n_query, channels, side, side, generator=generator)
    return Episode(support, torch.arange(n_way).repeat_interleave(n_shot), query,
                   torch.arange(n_way).repeat_interleave(n_query), torch.arange(n_way),
                   tuple(f"c{i}" for i in range(n_way)), n_way, n_shot, n_query)


def relation_net(channels: int = 1, width: int = 8, **options) -> RelationNetworks:
    torch.manual_seed(0)
    backbone = Conv4(in_channels=channels, hidden_channels=width, out_channels=width, pooled_blocks=2,
                     flatten=False)
    return RelationNetworks(backbone, feature_channels=width, relation_channels=width, **options)


@pytest.mark.parametrize("training", [True, False])
def test_relation_scores_lie_in_unit_interval(training: bool) -> None:
    model = relation_net()
    model.train(training)
    episode = random_episode()
    with torch.set_grad_enabled(training):
        output = model.loss_and_logits(episode)
    assert output.logits.shape == (3 * 2, 3)
    assert output.logits.min() >= 0.0 and output.logits.max() <= 1.0
    # The loss is the MSE between those scores and one-hot labels (the paper's eq. 3).
    expected = F.mse_loss(output.logits, F.one_hot(episode.query_labels, 3).float())
    torch.testing.assert_close(output.loss, expected)


def test_class_features_are_summed_over_shots() -> None:
    support = torch.randn(6, 4, 5, 5)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    summed = RelationNetworks.class_features(support, labels, 3)
    torch.testing.assert_close(summed[1], support[2] + support[3])


def test_pairs_concatenate_class_then_query_maps() -> None:
    model = relation_net()
    seen = []
    model.relation.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0]))
    class_maps, query = torch.randn(3, 8, 7, 7), torch.randn(4, 8, 7, 7)
    scores = model.relation_scores(class_maps, query)
    assert scores.shape == (4, 3)
    pairs = seen[0].view(4, 3, 16, 7, 7)
    torch.testing.assert_close(pairs[2, 1, :8], class_maps[1])
    torch.testing.assert_close(pairs[2, 1, 8:], query[2])


@pytest.mark.parametrize(("side", "channels", "pool_size"), [(28, 1, 1), (32, 3, 2), (84, 3, 3)])
def test_relation_module_works_at_any_resolution(side: int, channels: int, pool_size: int) -> None:
    model = relation_net(channels=channels, pool_size=pool_size)
    linear = model.relation.fc[1]
    assert linear.in_features == 8 * pool_size * pool_size  # fixed by pool_size, not by the image
    output = model.loss_and_logits(random_episode(side=side, channels=channels, n_shot=1, n_query=1))
    assert output.logits.shape == (3, 3)


def test_unusable_embeddings_are_config_errors() -> None:
    flat = RelationNetworks(Conv4(flatten=True), feature_channels=64)
    with pytest.raises(ConfigError, match="keeps feature maps"):
        flat.loss_and_logits(random_episode())
    too_small = RelationNetworks(Conv4(pooled_blocks=4, flatten=False), feature_channels=64)
    with pytest.raises(ConfigError, match=r"1x1, too small"):
        too_small.loss_and_logits(random_episode())
    wrong_channels = RelationNetworks(Conv4(pooled_blocks=2, flatten=False), feature_channels=32)
    with pytest.raises(ConfigError, match=r"method\.feature_channels=32"):
        wrong_channels.loss_and_logits(random_episode())


def compose_train(overrides: list[str]):
    with initialize_config_dir(version_base="1.3", config_dir=str(source_config_dir())):
        return compose("train", overrides=[*overrides, "paths.output_dir=unused"])


def test_method_relationnet_alone_gets_a_feature_map_embedding() -> None:
    cfg = compose_train(["method=relationnet"])
    assert cfg.method.backbone.flatten is False and cfg.method.backbone.pooled_blocks == 2
    assert cfg.method.feature_channels == 64
    model = instantiate(cfg.method)
    assert isinstance(model, RelationNetworks)
    output = model.loss_and_logits(random_episode(n_way=5, n_shot=1, n_query=1))
    assert output.logits.shape == (5, 5)
    # The top-level backbone group is left alone (no cross-group override from a method option).
    assert cfg.backbone.flatten is True


def test_swapping_the_embedding_to_a_flattening_backbone_is_refused() -> None:
    cfg = compose_train(["method=relationnet", "backbone@method.backbone=conv4"])
    model = instantiate(cfg.method)
    with pytest.raises(ConfigError, match="conv4_maps"):
        model.loss_and_logits(random_episode())


def test_relation_networks_learn_a_synthetic_task() -> None:
    samplers = synthetic_samplers()
    model = relation_net(width=16)
    losses, untrained_losses, untrained = train_beside_untrained(model, samplers.train, n_episodes=24,
                                                                 lr=3e-3)
    assert mean(losses[-6:]) < 0.95 * mean(untrained_losses[-6:])  # 5%: more than float noise
    gain = accuracy_gain(model, untrained, samplers.test, 20)
    assert gain.mean - gain.ci95 > 0, gain  # the paired 95% CI of the gain (points) excludes 0
