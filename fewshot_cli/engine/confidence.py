"""Mean accuracy with a 95% confidence interval over test episodes (as reported since Vinyals 2016)."""

import math
from dataclasses import dataclass, field

import torch


@dataclass(frozen=True)
class AccuracyEstimate:
    """Mean accuracy and the half-width of its 95% normal-approximation CI, both in percent."""

    mean: float
    ci95: float
    n_episodes: int
    # Each episode's accuracy as a fraction in [0, 1], float64 [n_episodes] on the CPU (None when
    # built from a mean alone): kept so that two runs on the same episodes can be paired.
    per_episode: torch.Tensor | None = field(default=None, compare=False, repr=False)

    def describe(self, n_way: int, n_shot: int, prefix: str = "test/acc") -> str:
        """E.g. 'test/acc 98.21 ± 0.12 (95% CI, 1000 episodes, 20-way 1-shot)'."""
        return (f"{prefix} {self.mean:.2f} ± {self.ci95:.2f} (95% CI, {self.n_episodes} episodes, "
                f"{n_way}-way {n_shot}-shot)")


def mean_and_ci95(per_episode_accuracy: torch.Tensor) -> AccuracyEstimate:
    """1.96 * std / sqrt(n) over episode accuracies given as fractions in [0, 1], shape [n]."""
    values = per_episode_accuracy.double().cpu()
    n = values.numel()
    std = float(values.std(unbiased=True)) if n > 1 else 0.0
    return AccuracyEstimate(100.0 * float(values.mean()), 100.0 * 1.96 * std / math.sqrt(n), n, values)


# Two-sided 95% quantiles of Student's t with df degrees of freedom (standard tables): with the few
# seeds of a sweep (2-5 models) the normal 1.96 would make a CI over models 2-6 times too narrow.
T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262,
         10: 2.228, 11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120, 17: 2.110,
         18: 2.101, 19: 2.093, 20: 2.086, 25: 2.060, 30: 2.042, 40: 2.021, 60: 2.000, 120: 1.980}


def t_quantile_975(df: int) -> float:
    """t_{0.975, df}: the table value at the largest tabulated df <= df (conservative), 1.96 beyond.

    Raises:
        ValueError: df < 1.
    """
    if df < 1:
        raise ValueError(f"degrees of freedom must be at least 1, got {df}")
    if df > max(T_975):
        return 1.96
    return T_975[max(k for k in T_975 if k <= df)]


def mean_ci95_over_replicates(values: list[float]) -> float | None:
    """Half-width of the 95% CI of the mean of a few replicates (models, seeds): t_{0.975, n-1} *
    std / sqrt(n); None for a single replicate."""
    n = len(values)
    if n < 2:
        return None
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return t_quantile_975(n - 1) * std / math.sqrt(n)
