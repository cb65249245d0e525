"""Learning-rate schedules count in episodes whatever the meta-batch, and a resume follows the
current config's schedule from the saved position."""

import itertools
import json
import logging
import math
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from fewshot_cli.engine.schedules import build_scheduler, restore_schedule
from fewshot_cli.errors import ConfigError

LR = 1e-3


def scheduler_for(node: dict, tasks_per_step: int):
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.Adam([parameter], lr=LR)
    return optimizer, build_scheduler(OmegaConf.create(node), optimizer, tasks_per_step)


def cosine(max_episodes: int) -> dict:
    return {"_target_": "torch.optim.lr_scheduler.CosineAnnealingLR", "_partial_": True,
            "T_max": max_episodes, "eta_min": 0.0}


STEP = {"_target_": "torch.optim.lr_scheduler.StepLR", "_partial_": True, "step_size": 2000, "gamma": 0.5}


def run_steps(optimizer, scheduler, steps: int) -> list[float]:
    rates = []
    for _ in range(steps):
        optimizer.step()
        scheduler.step()
        rates.append(optimizer.param_groups[0]["lr"])
    return rates


@pytest.mark.parametrize("tasks_per_step", [1, 4, 32])  # 4: the input; 32: MAML's meta-batch
def test_cosine_reaches_eta_min_at_max_episodes(tasks_per_step: int) -> None:
    max_episodes = 320
    optimizer, scheduler = scheduler_for(cosine(max_episodes), tasks_per_step)
    rates = run_steps(optimizer, scheduler, max_episodes // tasks_per_step)
    assert rates[-1] == pytest.approx(0.0, abs=1e-12)  # was 85% of LR with 4 tasks per step
    halfway = rates[len(rates) // 2 - 1]
    assert halfway == pytest.approx(LR / 2, rel=1e-6)  # half the episodes: half the rate


@pytest.mark.parametrize("tasks_per_step", [1, 4, 16])
def test_step_halves_every_2000_episodes_not_every_2000_steps(tasks_per_step: int) -> None:
    optimizer, scheduler = scheduler_for(STEP, tasks_per_step)
    rates = run_steps(optimizer, scheduler, 4000 // tasks_per_step)
    before = rates[2000 // tasks_per_step - 2]
    after = rates[2000 // tasks_per_step - 1]  # after the step that completes episode 2000
    assert before == pytest.approx(LR) and after == pytest.approx(LR / 2)
    assert rates[-1] == pytest.approx(LR / 4)


def test_lengths_that_are_not_whole_steps_are_rounded(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        _, scheduler = scheduler_for(STEP, 32)  # 2000 / 32 = 62.5 steps
    assert scheduler.step_size == 62
    assert "step_size=2000 episodes is 62 optimiser steps of 32 episodes" in caplog.text


def test_negative_length_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"scheduler.step_size=-5 must be 0 or more episodes"):
        scheduler_for({**STEP, "step_size": -5}, 1)


def test_resume_with_a_longer_run_follows_the_new_cosine(caplog: pytest.LogCaptureFixture) -> None:
    """The issue's input: resuming with a larger max_episodes kept the old T_max (LR climbed back)."""
    optimizer, scheduler = scheduler_for(cosine(100), 4)
    run_steps(optimizer, scheduler, 20)  # 80 of 100 episodes done
    saved_optimizer, saved_scheduler = optimizer.state_dict(), scheduler.state_dict()

    optimizer, scheduler = scheduler_for(cosine(400), 4)  # `trainer.max_episodes=400` on resume
    optimizer.load_state_dict(saved_optimizer)
    with caplog.at_level(logging.INFO):
        restore_schedule(scheduler, saved_scheduler, optimizer)
    assert "T_max 25 -> 100" in caplog.text
    expected = LR * (1 + math.cos(math.pi * 20 / 100)) / 2  # a fresh 400-episode run at step 20
    assert optimizer.param_groups[0]["lr"] == pytest.approx(expected, rel=1e-9)
    rates = run_steps(optimizer, scheduler, 80)
    assert all(b <= a for a, b in itertools.pairwise(rates))  # never climbs back up
    assert rates[-1] == pytest.approx(0.0, abs=1e-12)


def test_resume_with_the_same_config_continues_exactly() -> None:
    optimizer, scheduler = scheduler_for(STEP, 1)
    run_steps(optimizer, scheduler, 2500)
    reference = run_steps(optimizer, scheduler, 2000)
    optimizer2, scheduler2 = scheduler_for(STEP, 1)
    run_steps(optimizer2, scheduler2, 2500)
    optimizer3, scheduler3 = scheduler_for(STEP, 1)
    optimizer3.load_state_dict(optimizer2.state_dict())
    restore_schedule(scheduler3, scheduler2.state_dict(), optimizer3)
    assert run_steps(optimizer3, scheduler3, 2000) == pytest.approx(reference)


@pytest.mark.slow
def test_resumed_training_run_logs_and_follows_the_new_length(compose_train, tiny_train_overrides,
                                                              tmp_path: Path,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    from fewshot_cli.tasks.train import train

    common = [*tiny_train_overrides, "scheduler=cosine", "trainer.tasks_per_step=2", "trainer.log_every=2"]
    first = compose_train([*common, "trainer.max_episodes=4"], tmp_path / "first")
    train(first)
    last = tmp_path / "first" / "checkpoints" / "last.pt"
    resumed = compose_train([*common, "trainer.max_episodes=8", f"resume_from={last}"], tmp_path / "second")
    from fewshot_cli.config.resume import merge_resume_config
    from fewshot_cli.engine.checkpoint import load_checkpoint

    config = merge_resume_config(resumed, load_checkpoint(last)["config"],
                                 ["trainer.max_episodes=8", f"resume_from={last}"])
    with caplog.at_level(logging.INFO):
        train(config)
    assert "T_max 2 -> 4" in caplog.text
    records = map(json.loads, (tmp_path / "second" / "train_history.jsonl").read_text().splitlines())
    rates = [r["train/lr"] for r in records if "train/lr" in r and r["episode"] > 4]  # the resumed part
    assert rates[0] == pytest.approx(1e-3 * (1 + math.cos(math.pi * 3 / 4)) / 2)  # episode 6 of 8
    assert rates[-1] == pytest.approx(0.0, abs=1e-12)
    assert all(b <= a for a, b in itertools.pairwise(rates))
