"""Mean accuracy ± 1.96 std / sqrt(n), in percent, printed with n."""

import math

import pytest
import torch

from fewshot_cli.engine.confidence import AccuracyEstimate, mean_and_ci95


def test_mean_and_ci95_by_hand() -> None:
    # mean 0.75; unbiased std = sqrt((3 * 0.25^2 + 0.75^2) / 3) = 0.5; ci = 1.96 * 0.5 / 2 = 0.49
    estimate = mean_and_ci95(torch.tensor([1.0, 0.0, 1.0, 1.0]))
    assert estimate.mean == pytest.approx(75.0)
    assert estimate.ci95 == pytest.approx(49.0)
    assert estimate.n_episodes == 4


def test_ci95_matches_formula_on_random_accuracies() -> None:
    values = torch.rand(1000, generator=torch.Generator().manual_seed(0))
    estimate = mean_and_ci95(values)
    mean = sum(values.tolist()) / 1000
    std = math.sqrt(sum((v - mean) ** 2 for v in values.tolist()) / 999)
    assert estimate.mean == pytest.approx(100 * mean, rel=1e-9)
    assert estimate.ci95 == pytest.approx(100 * 1.96 * std / math.sqrt(1000), rel=1e-9)


def test_ci_shrinks_with_more_episodes() -> None:
    pattern = torch.tensor([1.0, 0.0])
    small = mean_and_ci95(pattern.repeat(10))
    large = mean_and_ci95(pattern.repeat(1000))
    assert small.mean == large.mean == pytest.approx(50.0)
    assert large.ci95 < small.ci95 / 5


def test_constant_and_single_episode_have_zero_width() -> None:
    assert mean_and_ci95(torch.ones(7)).ci95 == 0.0
    single = mean_and_ci95(torch.tensor([0.8]))
    assert (single.mean, single.ci95, single.n_episodes) == (pytest.approx(80.0), 0.0, 1)


def test_works_on_float32_input_without_precision_loss() -> None:
    values = torch.full((10_000,), 0.9, dtype=torch.float32)
    assert mean_and_ci95(values).mean == pytest.approx(90.0, abs=1e-4)


def test_describe_prints_mean_ci_n_and_shape() -> None:
    text = AccuracyEstimate(98.2149, 0.1234, 1000).describe(20, 1)
    assert text == "test/acc 98.21 ± 0.12 (95% CI, 1000 episodes, 20-way 1-shot)"
    assert AccuracyEstimate(50.0, 1.0, 300).describe(5, 5, prefix="val/acc").startswith("val/acc 50.00")


def test_ci_over_a_few_replicates_uses_student_t() -> None:
    """Three models: t_{0.975,2} = 4.303, not the normal 1.96 (2.2 times too narrow)."""
    from fewshot_cli.engine.confidence import mean_ci95_over_replicates, t_quantile_975

    values = [90.0, 92.0, 94.0]  # std 2
    assert mean_ci95_over_replicates(values) == pytest.approx(4.303 * 2 / math.sqrt(3))
    assert mean_ci95_over_replicates([91.0]) is None
    assert t_quantile_975(1) == pytest.approx(12.706)
    assert t_quantile_975(27) == pytest.approx(2.060)  # conservative: the df 25 row
    assert t_quantile_975(10_000) == pytest.approx(1.96)
