"""trainer.early_stop_patience: training stops after that many validations in a row without a new
best validation accuracy, metrics.json says what ended the run, and a resume keeps the count."""

import json
import logging
from pathlib import Path

import pytest
import torch
from conftest import compose_config

from fewshot_cli.engine import trainer as trainer_module
from fewshot_cli.engine.confidence import AccuracyEstimate
from fewshot_cli.tasks.train import train

EVERY_EPISODE = ["trainer.val_every=1", "trainer.checkpoint_every=1"]


def script_validation(monkeypatch: pytest.MonkeyPatch, accuracies: list[float]) -> None:
    """Validation passes return these accuracies in turn (the test split is still really scored):
    a plateau whose place is known in advance, which real training on a few episodes cannot give."""
    calls = iter(accuracies)

    def scripted(*args: object, **kwargs: object) -> AccuracyEstimate:
        return AccuracyEstimate(next(calls), 1.0, 5)

    monkeypatch.setattr(trainer_module, "evaluate_episodes", scripted)


def history_episodes(run_dir: Path, key: str) -> list[int]:
    lines = (run_dir / "train_history.jsonl").read_text().splitlines()
    return [json.loads(line)["episode"] for line in lines if key in json.loads(line)]


def test_a_run_on_a_plateau_stops_early_and_says_so(tiny_train_overrides: list[str], tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    # Best at episode 2; then lower, a tie (not an improvement) and lower: 3 without a new best.
    script_validation(monkeypatch, [50.0, 60.0, 55.0, 60.0, 58.0] + [99.0] * 15)
    with caplog.at_level(logging.INFO):
        metrics = train(compose_config("train", [*tiny_train_overrides, *EVERY_EPISODE,
                                                 "trainer.max_episodes=20",
                                                 "trainer.early_stop_patience=3"], tmp_path))
    assert metrics["train/stopped_by"] == "plateau"
    assert metrics["train/episodes"] == 5
    assert metrics["val/best_episode"] == 2
    assert metrics["val/best_acc"] == 60.0
    assert history_episodes(tmp_path, "val/acc") == [1, 2, 3, 4, 5]
    assert "has not improved for 3 validations (trainer.early_stop_patience=3" in caplog.text
    assert json.loads((tmp_path / "metrics.json").read_text())["train/stopped_by"] == "plateau"


def test_without_patience_the_same_run_trains_to_max_episodes(tiny_train_overrides: list[str],
                                                              tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    script_validation(monkeypatch, [50.0, 60.0, 55.0, 60.0, 58.0, 57.0])
    metrics = train(compose_config("train", [*tiny_train_overrides, *EVERY_EPISODE,
                                             "trainer.max_episodes=6"], tmp_path))
    assert metrics["train/stopped_by"] == "max_episodes"
    assert metrics["train/episodes"] == 6


def test_the_count_restarts_at_every_new_best(tiny_train_overrides: list[str], tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Two validations without a new best, a new best, two more: patience 3 never fires."""
    script_validation(monkeypatch, [50.0, 40.0, 45.0, 51.0, 50.0, 49.0])
    metrics = train(compose_config("train", [*tiny_train_overrides, *EVERY_EPISODE,
                                             "trainer.max_episodes=6", "trainer.early_stop_patience=3"],
                                   tmp_path))
    assert metrics["train/stopped_by"] == "max_episodes"
    assert metrics["train/episodes"] == 6


def test_resume_keeps_the_count_of_validations_without_improvement(tiny_train_overrides: list[str],
                                                                   tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """3 episodes (best at 1, then 2 validations without a new best), then resumed with room for 20:
    the third validation without a new best comes at episode 4. A counter reset by the resume would
    train to episode 6."""
    first = tmp_path / "first"
    overrides = [*tiny_train_overrides, *EVERY_EPISODE, "trainer.early_stop_patience=3"]
    script_validation(monkeypatch, [60.0, 55.0, 58.0])
    metrics = train(compose_config("train", [*overrides, "trainer.max_episodes=3"], first))
    assert metrics["train/stopped_by"] == "max_episodes"
    last = first / "checkpoints" / "last.pt"
    assert torch.load(last, weights_only=False)["state"]["validations_since_best"] == 2
    script_validation(monkeypatch, [59.0, 57.0, 56.0, 55.0])
    resumed = train(compose_config("train", [*overrides, "trainer.max_episodes=20",
                                             f"resume_from={last}"], tmp_path / "resumed"))
    assert resumed["train/stopped_by"] == "plateau"
    assert resumed["train/episodes"] == 4
    assert resumed["val/best_episode"] == 1


def test_patience_below_one_is_refused(tiny_train_overrides: list[str], tmp_path: Path) -> None:
    from fewshot_cli.errors import ConfigError

    with pytest.raises(ConfigError, match=r"trainer.early_stop_patience=0 must be at least 1"):
        train(compose_config("train", [*tiny_train_overrides, "trainer.early_stop_patience=0"], tmp_path))
