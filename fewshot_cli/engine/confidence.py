"""Mean accuracy with a 95% confidence interval over test episodes (as reported since Vinyals 2016)."""

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class AccuracyEstimate:
    """Mean accuracy and the half-width of its 95% normal-approximation CI, both in percent."""

    mean: float
    ci95: float
    n_episodes: int

    def describe(self, n_way: int, n_shot: int, prefix: str = "test/acc") -> str:
        """E.g. 'test/acc 98.21 ± 0.12 (95% CI, 1000 episodes, 20-way 1-shot)'."""
        return (f"{prefix} {self.mean:.2f} ± {self.ci95:.2f} (95% CI, {self.n_episodes} episodes, "
                f"{n_way}-way {n_shot}-shot)")


def mean_and_ci95(per_episode_accuracy: torch.Tensor) -> AccuracyEstimate:
    """1.96 * std / sqrt(n) over episode accuracies given as fractions in [0, 1], shape [n]."""
    values = per_episode_accuracy.double().cpu()
    n = values.numel()
    std = float(values.std(unbiased=True)) if n > 1 else 0.0
    return AccuracyEstimate(100.0 * float(values.mean()), 100.0 * 1.96 * std / math.sqrt(n), n)
