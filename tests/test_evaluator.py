"""evaluate_episodes' progress: a tqdm bar on a terminal, log lines (which reach <task>.log) without."""

import io
import logging
import re
import sys

import pytest
import torch
from synthetic_tasks import synthetic_samplers

from fewshot_cli.backbones.conv4 import Conv4
from fewshot_cli.engine import evaluator
from fewshot_cli.engine.device import DeviceContext
from fewshot_cli.engine.evaluator import evaluate_episodes
from fewshot_cli.methods.protonet import PrototypicalNetworks


class _Stderr(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def _progress(tty: bool, lines: int, monkeypatch: pytest.MonkeyPatch,
              caplog: pytest.LogCaptureFixture) -> list[str]:
    monkeypatch.setattr(sys, "stderr", _Stderr(tty))
    torch.manual_seed(0)
    model = PrototypicalNetworks(Conv4(hidden_channels=8, out_channels=8))
    ctx = DeviceContext(torch.device("cpu"), None, False, False)
    with caplog.at_level(logging.INFO, logger=evaluator.__name__):
        estimate = evaluate_episodes(model, synthetic_samplers(n_way=3).test, 6, ctx, progress_lines=lines)
    assert estimate.n_episodes == 6
    return [m for m in caplog.messages
            if re.fullmatch(r"test: \d/6 episodes, accuracy so far \d+\.\d\d%, \d+ s", m)]


def test_progress_lines_without_a_terminal(monkeypatch: pytest.MonkeyPatch,
                                           caplog: pytest.LogCaptureFixture) -> None:
    lines = _progress(False, 3, monkeypatch, caplog)
    assert [line.split()[1] for line in lines] == ["2/6", "4/6", "6/6"]


def test_no_progress_lines_under_the_bar(monkeypatch: pytest.MonkeyPatch,
                                        caplog: pytest.LogCaptureFixture) -> None:
    assert _progress(True, 3, monkeypatch, caplog) == []


def test_a_slow_run_logs_progress_by_time(monkeypatch: pytest.MonkeyPatch,
                                          caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(evaluator, "PROGRESS_LOG_INTERVAL_S", 0.0)  # every episode is "slow"
    lines = _progress(False, 0, monkeypatch, caplog)
    assert [line.split()[1] for line in lines] == [f"{n}/6" for n in range(1, 7)]
