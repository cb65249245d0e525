"""trainer.max_minutes: the progress bar's total and ETA, and the log, say what will really happen.

The issue's input: with max_minutes the bar counted to 20000 episodes and the log said "for 20000
episodes" while the run stopped at the time budget; and nothing said that the headline command
takes hours on a CPU.
"""

import logging
from pathlib import Path

import pytest
from conftest import compose_config

from fewshot_cli.engine import trainer as trainer_module
from fewshot_cli.engine.trainer import _Pace
from fewshot_cli.tasks.train import train


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(trainer_module.time, "perf_counter", fake)
    return fake


def test_the_expected_last_episode_follows_the_time_budget(clock: FakeClock) -> None:
    pace = _Pace(first_episode=0, max_episodes=20000, deadline=clock.now + 60.0)  # one minute
    clock.now += 10.0  # 10 s for 20 episodes: 2 episodes/s, 50 s left
    assert pace.expected_last_episode(20) == 20 + 100
    clock.now += 50.0
    assert pace.expected_last_episode(120) == 120  # the budget is spent: the bar is full


def test_without_a_budget_the_total_is_max_episodes(clock: FakeClock) -> None:
    pace = _Pace(first_episode=100, max_episodes=20000, deadline=float("inf"))
    clock.now += 5.0
    assert pace.expected_last_episode(110) == 20000


def test_a_budget_longer_than_the_run_keeps_max_episodes(clock: FakeClock) -> None:
    pace = _Pace(first_episode=0, max_episodes=100, deadline=clock.now + 3600.0)
    clock.now += 1.0
    assert pace.expected_last_episode(10) == 100


def test_the_log_says_how_long_the_run_takes(clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    pace = _Pace(first_episode=0, max_episodes=20000, deadline=float("inf"))
    clock.now += 62.5  # 100 episodes at 1.6 episodes/s
    with caplog.at_level(logging.INFO):
        pace.announce_once(100, None)
        pace.announce_once(200, None)  # once only
    assert caplog.text.count("episodes/s") == 1
    assert "1.60 episodes/s: the remaining 19900 episodes take about 3.5 h" in caplog.text
    assert "set trainer.max_minutes=N to stop it earlier" in caplog.text


def test_a_training_run_under_max_minutes_says_so(tiny_train_overrides: list[str], tmp_path: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        metrics = train(compose_config("train", [*tiny_train_overrides, "trainer.max_episodes=100000",
                                                 "trainer.max_minutes=0.05"], tmp_path))
    assert "for up to 100000 episodes or 0.05 minutes, whichever comes first" in caplog.text
    assert "trainer.max_minutes=0.05 reached after" in caplog.text
    assert 0 < metrics["train/episodes"] < 100000
    assert "trainer.max_minutes=0.05 ends it at about episode" in caplog.text
