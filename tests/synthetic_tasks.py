"""A small synthetic few-shot problem on which a method must learn within a few dozen episodes.

Used by test_matchingnet.py, test_relationnet.py and test_maml.py (a plain module, not a conftest, so
those tests do not depend on fixtures other files define).

Each class is a random 4x4 binary pattern drawn at 4x scale on a 16x16 canvas (small, so CPU tests stay
fast; Conv-4 still reduces it to 1x1); each image of the class is that pattern shifted by up to one
pixel with 5% of its blocks flipped. Training and test classes are
disjoint, so accuracy on the test split measures few-shot generalisation, not memorisation.

A learning test compares the trained model with the same model untrained (`train_beside_untrained`)
on the same test episodes (`accuracy_gain`), never with a fixed bar: an untrained Conv-4 already
scores well above chance here (MAML adapts its head at test time; MatchingNet compares features).
"""

import copy
from dataclasses import dataclass

import torch

from fewshot_cli.data.image_split import ImageSplit
from fewshot_cli.data.sampler import EpisodeSampler
from fewshot_cli.engine.confidence import AccuracyEstimate, mean_and_ci95
from fewshot_cli.methods.base import FewShotMethod
from fewshot_cli.methods.functional import accuracy

IMAGE_SIDE = 16
GRID = 4

def synthetic_split(n_classes: int, images_per_class: int, seed: int, name: str) -> ImageSplit:
    """uint8 [n_classes * images_per_class, 1, 16, 16] images of `n_classes` noisy patterns."""
    generator = torch.Generator().manual_seed(seed)
    patterns = torch.rand(n_classes, 1, GRID, GRID, generator=generator) < 0.5
    images = []
    for pattern in patterns:
        flips = torch.rand(images_per_class, 1, GRID, GRID, generator=generator) < 0.05
        blocks = (pattern[None] ^ flips).float()
        canvas = torch.nn.functional.interpolate(blocks, scale_factor=IMAGE_SIDE // GRID, mode="nearest")
        shifts = torch.randint(-1, 2, (images_per_class, 2), generator=generator)
        canvas = torch.stack([torch.roll(img, tuple(s.tolist()), dims=(1, 2))
                              for img, s in zip(canvas, shifts, strict=True)])
        images.append((canvas * 255).to(torch.uint8))
    labels = torch.arange(n_classes).repeat_interleave(images_per_class)
    return ImageSplit(torch.cat(images), labels, [f"pattern{i}" for i in range(n_classes)], name)

@dataclass
class Samplers:
    """Training episodes on some classes, test episodes on other classes."""

    train: EpisodeSampler
    test: EpisodeSampler

def synthetic_samplers(n_way: int = 5, n_shot: int = 1, n_query: int = 3) -> Samplers:
    train = synthetic_split(30, 12, seed=0, name="synthetic/train")
    test = synthetic_split(10, 12, seed=1, name="synthetic/test")
    return Samplers(
        EpisodeSampler(train, n_way, n_shot, n_query, seed=0, stream="train"),
        EpisodeSampler(test, n_way, n_shot, n_query, seed=0, stream="test"),
    )

def train_episodes(model: FewShotMethod, sampler: EpisodeSampler, n_episodes: int, lr: float,
                   tasks_per_step: int = 1) -> list[float]:
    """Adam on the mean loss of `tasks_per_step` episodes per step; returns every episode's loss."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    losses = []
    episodes = sampler.episodes(0, n_episodes)
    for _ in range(n_episodes // tasks_per_step):
        optimizer.zero_grad(set_to_none=True)
        for _ in range(tasks_per_step):
            loss = model.loss_and_logits(next(episodes)).loss
            (loss / tasks_per_step).backward()
            losses.append(float(loss.detach()))
        optimizer.step()
    return losses

def train_beside_untrained(model: FewShotMethod, sampler: EpisodeSampler, n_episodes: int, lr: float,
                           tasks_per_step: int = 1) -> tuple[list[float], list[float], FewShotMethod]:
    """Train `model` as `train_episodes` does, beside a copy of it that runs the same episodes forward
    in train mode with no optimiser step: the same model untrained, its BatchNorm running statistics
    moved alike (they alone raise an untrained FCE MatchingNet from 21% to 32% here).

    Returns the trained model's episode losses, the untrained copy's losses on the same episodes, and
    the untrained copy. With lr=0 the two models are equal.
    """
    untrained = copy.deepcopy(model)
    losses = train_episodes(model, sampler, n_episodes, lr, tasks_per_step)
    untrained.train()
    grad_mode = torch.enable_grad if untrained.needs_grad_at_eval else torch.no_grad
    untrained_losses = []
    for episode in sampler.episodes(0, len(losses)):
        with grad_mode():
            untrained_losses.append(float(untrained.loss_and_logits(episode).loss.detach()))
    return losses, untrained_losses, untrained

def episode_accuracies(model: FewShotMethod, sampler: EpisodeSampler, n_episodes: int) -> torch.Tensor:
    """Query accuracy of each of episodes 0..n_episodes-1, in eval mode (autograd on where the method
    needs it)."""
    model.eval()
    grad_mode = torch.enable_grad if model.needs_grad_at_eval else torch.no_grad
    scores = []
    for episode in sampler.episodes(0, n_episodes):
        with grad_mode():
            scores.append(accuracy(model.loss_and_logits(episode).logits.detach(), episode.query_labels))
    model.train()
    return torch.stack(scores)

def accuracy_gain(trained: FewShotMethod, untrained: FewShotMethod, sampler: EpisodeSampler,
                  n_episodes: int) -> AccuracyEstimate:
    """Paired: mean over the same episodes of trained minus untrained accuracy, in percentage points,
    with the half-width of its 95% CI (0 ± 0 when training changed nothing)."""
    return mean_and_ci95(episode_accuracies(trained, sampler, n_episodes)
                         - episode_accuracies(untrained, sampler, n_episodes))

def mean(values: list[float]) -> float:
    return sum(values) / len(values)
