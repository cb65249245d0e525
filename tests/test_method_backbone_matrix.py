"""Every trainable method with every backbone, built from the config as `fewshot train method=M
backbone=B` builds it: one training step and one evaluation episode on a synthetic episode.

Small widths and image sizes keep it fast: ResNet-12 at channels [8,8,8,8], resnet18 (random init) and
Koch's twin at the smallest sizes their methods take (Relation Networks need maps of at least 4x4:
64x64 for ResNet-12, 128x128 for resnet18, 89x89 for Koch; Koch needs 65x65 anyway). RelationNet's
embedding must be the top-level backbone's, as feature maps (feature_channels below).
"""

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from conftest import compose_config
from hydra.utils import instantiate
from synthetic_tasks import synthetic_samplers

from fewshot_cli.backbones.conv4 import Conv4
from fewshot_cli.backbones.koch import KochNet
from fewshot_cli.backbones.resnet12 import ResNet12
from fewshot_cli.backbones.torchvision_model import TorchvisionBackbone
from fewshot_cli.data.episode import Episode
from fewshot_cli.methods.base import FewShotMethod

METHODS = ("protonet", "matchingnet", "relationnet", "maml", "siamese")
# backbone -> (class, overrides, image side for vector methods, image side for Relation Networks,
#              channels of its feature maps)
BACKBONES = {
    "conv4": (Conv4, [], 28, 28, 64),
    "resnet12": (ResNet12, ["backbone.channels=[8,8,8,8]"], 32, 64, 8),
    "torchvision": (TorchvisionBackbone, ["backbone.name=resnet18", "backbone.weights=null"], 32, 128, 512),
    "koch": (KochNet, ["backbone.embedding_dim=32"], 65, 89, 256),
}
FASTER = {"maml": ["method.inner_steps_eval=1"], "siamese": ["method.pairs_per_episode=8"]}


def synthetic_episode(side: int) -> Episode:
    """A 3-way 1-shot 1-query episode of the synthetic patterns (tests/synthetic_tasks.py), resized."""
    episode = next(synthetic_samplers(n_way=3, n_shot=1, n_query=1).train.episodes(0, 1))
    resize = lambda images: F.interpolate(images, size=(side, side), mode="nearest")  # noqa: E731
    return dataclasses.replace(episode, support_images=resize(episode.support_images),
                               query_images=resize(episode.query_images))


def build(method: str, backbone: str) -> tuple[FewShotMethod, int]:
    _, overrides, side, relation_side, _ = BACKBONES[backbone]
    side = relation_side if method == "relationnet" else side
    cfg = compose_config("train", [f"method={method}", f"backbone={backbone}", *overrides,
                                   "dataset=omniglot", f"dataset.image_size={side}",
                                   *FASTER.get(method, [])], None)
    torch.manual_seed(0)
    return instantiate(cfg.method), side


# The resnet18 and Koch rows take most of the time (first calls of their kernels): `-m "not slow"`.
CASES = [pytest.param(method, backbone, id=f"{method}-{backbone}",
                      marks=[pytest.mark.slow] if backbone in ("torchvision", "koch") else [])
         for method in METHODS for backbone in BACKBONES]


@pytest.mark.parametrize(("method", "backbone"), CASES)
def test_method_trains_and_evaluates_with_backbone(method: str, backbone: str) -> None:
    model, side = build(method, backbone)
    assert isinstance(model.backbone, BACKBONES[backbone][0])
    if method == "maml":  # batch statistics only: every BatchNorm lost its running statistics
        norms = [m for m in model.backbone.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
        assert all(m.running_mean is None and not m.track_running_stats for m in norms)
    if method == "relationnet":  # the top-level backbone's maps reached the relation module
        assert model.feature_channels == BACKBONES[backbone][4]
    episode = synthetic_episode(side)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    before = [p.detach().clone() for p in model.backbone.parameters()]

    model.train()
    output = model.loss_and_logits(episode)
    assert output.logits.shape == (3, 3) and torch.isfinite(output.loss)
    output.loss.backward()
    optimizer.step()
    moved = [not torch.equal(b, p) for b, p in zip(before, model.backbone.parameters(), strict=True)]
    assert sum(moved) >= len(moved) // 2, f"{sum(moved)} of {len(moved)} backbone tensors trained"

    model.eval()
    with torch.set_grad_enabled(model.needs_grad_at_eval):
        logits = model.loss_and_logits(episode).logits
    assert logits.shape == (3, 3) and torch.isfinite(logits).all()
