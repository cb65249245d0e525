"""Relation Networks: scores in [0, 1], summed class features, MSE against one-hot labels, any input
resolution, clear errors for unusable embeddings, the top-level backbone's feature maps (by default
the same Conv-4 as the former conv4_maps node, so old configs and numbers hold), and learning on a
synthetic task."""

import pytest
import torch
import torch.nn.functional as F
from conftest import compose_config
from hydra.utils import instantiate
from synthetic_tasks import accuracy_gain, mean, synthetic_samplers, train_beside_untrained
from torch import nn

from fewshot_cli.backbones.conv4 import Conv4
from fewshot_cli.backbones.resnet12 import ResNet12
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
    # A module of no backbone of ours (no use_feature_maps()) that returns vectors.
    flat = RelationNetworks(nn.Sequential(Conv4(flatten=True)), feature_channels=64)
    with pytest.raises(ConfigError, match="keeps feature maps"):
        flat.loss_and_logits(random_episode())
    too_small = RelationNetworks(Conv4(map_pooled_blocks=4), feature_channels=64)
    with pytest.raises(ConfigError, match=r"1x1, too small"):
        too_small.loss_and_logits(random_episode())
    # With input_shape (the config's) the maps are checked when the method is built.
    with pytest.raises(ConfigError, match=r"1x1 at image size 28x28, too small .*\(dataset\.image_size\)"):
        RelationNetworks(ResNet12(1, channels=[4, 4, 4, 4]), input_shape=[1, 28, 28])
    with pytest.raises(ConfigError, match=r"method\.input_shape=\[C, H, W\]"):
        RelationNetworks(Conv4())
    with pytest.raises(ConfigError, match=r"8-channel maps but method\.feature_channels=4"):
        RelationNetworks(Conv4(hidden_channels=8, out_channels=8), feature_channels=4,
                         input_shape=[1, 28, 28])
    wrong_channels = RelationNetworks(Conv4(pooled_blocks=2, flatten=False), feature_channels=32)
    with pytest.raises(ConfigError, match=r"method\.feature_channels=32"):
        wrong_channels.loss_and_logits(random_episode())


def test_method_relationnet_alone_gets_a_feature_map_embedding() -> None:
    cfg = compose_config("train", ["method=relationnet"])
    assert cfg.method.backbone == cfg.backbone  # the top-level choice: conv4 by default
    model = instantiate(cfg.method)
    assert isinstance(model, RelationNetworks) and model.feature_channels == 64
    assert model.backbone(torch.zeros(2, 1, 28, 28)).shape == (2, 64, 7, 7)  # Sung et al.'s maps
    output = model.loss_and_logits(random_episode(n_way=5, n_shot=1, n_query=1))
    assert output.logits.shape == (5, 5)
    # No group's choice is changed from the method option: the config still says a flattening Conv-4;
    # the method switched the built network to maps.
    assert cfg.backbone.flatten is True


CONV4_MAPS_METHOD = {  # the method node of configs (and checkpoints) from before, resolved
    "_target_": "fewshot_cli.methods.relationnet.RelationNetworks",
    "backbone": {"_target_": "fewshot_cli.backbones.conv4.Conv4", "in_channels": 1,
                 "hidden_channels": 64, "out_channels": 64, "pooled_blocks": 2, "flatten": False},
    "feature_channels": 64, "relation_channels": 64, "hidden_units": 8, "pool_size": 1,
}


def test_the_default_embedding_is_the_former_conv4_maps_network() -> None:
    torch.manual_seed(0)
    new = instantiate(compose_config("train", ["method=relationnet"]).method)
    torch.manual_seed(0)
    old = instantiate(CONV4_MAPS_METHOD)  # an old checkpoint's config still builds
    assert list(new.state_dict()) == list(old.state_dict())
    for key, value in old.state_dict().items():
        torch.testing.assert_close(new.state_dict()[key], value)
    episode = random_episode(n_way=5, n_shot=1, n_query=2)
    torch.testing.assert_close(new.loss_and_logits(episode).logits, old.loss_and_logits(episode).logits)


def test_top_level_resnet12_gives_resnet12_maps() -> None:
    cfg = compose_config("train", ["method=relationnet", "backbone=resnet12", "backbone.channels=[4,4,4,8]",
                         "dataset.image_size=64"])
    model = instantiate(cfg.method)
    assert isinstance(model.backbone, ResNet12) and model.feature_channels == 8
    output = model.loss_and_logits(random_episode(n_way=2, n_shot=1, n_query=1, side=64))
    assert output.logits.shape == (2, 2)


def test_relation_networks_learn_a_synthetic_task() -> None:
    samplers = synthetic_samplers()
    model = relation_net(width=16)
    losses, untrained_losses, untrained = train_beside_untrained(model, samplers.train, n_episodes=24,
                                                                 lr=3e-3)
    assert mean(losses[-6:]) < 0.95 * mean(untrained_losses[-6:])  # 5%: more than float noise
    gain = accuracy_gain(model, untrained, samplers.test, 20)
    assert gain.mean - gain.ci95 > 0, gain  # the paired 95% CI of the gain (points) excludes 0
