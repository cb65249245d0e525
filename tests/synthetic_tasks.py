"""A small synthetic few-shot problem on which a method must learn within a few dozen episodes.

Used by test_matchingnet.py, test_relationnet.py and test_maml.py (a plain module, not a conftest, so
those tests do not depend on fixtures other files define).

Each class is a random 4x4 binary pattern drawn at 4x scale on a 16x16 canvas (small, so CPU tests stay
fast; Conv-4 still reduces it to 1x1); each image of the class is that pattern shifted by up to one
pixel with 5% of its blocks flipped. Training and test classes are
disjoint, so accuracy on the test split measures few-shot generalisation, not memorisation.
"""

from dataclasses import dataclass

import torch

from fewshot_cli.data.image_split import ImageSplit
from fewshot_cli.data.sampler import EpisodeSampler
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

def held_out_accuracy(model: FewShotMethod, sampler: EpisodeSampler, n_episodes: int) -> float:
    """Mean query accuracy over fixed episodes, in eval mode (autograd on where the method needs it)."""
    model.eval()
    grad_mode = torch.enable_grad if model.needs_grad_at_eval else torch.no_grad
    scores = []
    for episode in sampler.episodes(0, n_episodes):
        with grad_mode():
            scores.append(float(accuracy(model.loss_and_logits(episode).logits, episode.query_labels)))
    model.train()
    return sum(scores) / len(scores)

def mean(values: list[float]) -> float:
    return sum(values) / len(values)
