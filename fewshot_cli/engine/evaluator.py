"""Scoring a method on fixed episodes: mean accuracy ± 95% CI."""

import logging
import math
import sys
import time

import torch
from tqdm import tqdm

from fewshot_cli.data.sampler import EpisodeSampler
from fewshot_cli.engine.confidence import AccuracyEstimate, mean_and_ci95
from fewshot_cli.engine.device import DeviceContext
from fewshot_cli.methods.base import FewShotMethod
from fewshot_cli.methods.functional import accuracy

log = logging.getLogger(__name__)

# Without a terminal (nohup, SLURM, a pipe) there is no bar: a slow run still logs this often.
PROGRESS_LOG_INTERVAL_S = 30.0


class _ProgressLog:
    """Progress as log lines (Hydra writes them to <task>.log too), for when no bar is shown: one
    every `every` episodes (0: none) and at least one every PROGRESS_LOG_INTERVAL_S seconds."""

    def __init__(self, description: str, total: int, lines: int) -> None:
        self.description, self.total = description, total
        self.every = math.ceil(total / lines) if lines else 0
        self.started = self.last = time.monotonic()

    def update(self, done: int, accuracies: torch.Tensor) -> None:
        now = time.monotonic()
        due = self.every and (done % self.every == 0 or done == self.total)
        if due or now - self.last >= PROGRESS_LOG_INTERVAL_S:
            self.last = now
            # .item() waits for the device, but only at these few lines.
            log.info("%s: %d/%d episodes, accuracy so far %.2f%%, %.0f s", self.description, done,
                     self.total, 100 * accuracies[:done].mean().item(), now - self.started)


def evaluate_episodes(
    model: FewShotMethod,
    sampler: EpisodeSampler,
    n_episodes: int,
    ctx: DeviceContext,
    description: str = "test",
    progress_bar: bool = True,
    progress_lines: int = 0,
) -> AccuracyEstimate:
    """Accuracy over episodes 0..n_episodes-1 of `sampler`, in eval mode.

    Autograd stays on for methods that adapt by gradient at test time (MAML); per-episode accuracies
    stay on the device until the end, so the loop never waits on the GPU.

    The tqdm bar shows only on a terminal (stderr); otherwise progress is logged: `progress_lines`
    evenly spaced lines, and one every PROGRESS_LOG_INTERVAL_S seconds of a slow run.
    """
    accuracies = torch.empty(n_episodes, device=ctx.device)
    episodes = sampler.episodes(0, n_episodes)
    show_bar = progress_bar and sys.stderr.isatty()
    progress = None if show_bar else _ProgressLog(description, n_episodes, progress_lines)
    with model.evaluating():
        for i, episode in enumerate(tqdm(episodes, total=n_episodes, desc=description, unit="ep",
                                         disable=not show_bar, mininterval=1, leave=False)):
            with ctx.autocast():
                output = model.loss_and_logits(episode)
            accuracies[i] = accuracy(output.logits.detach(), episode.query_labels)
            if progress is not None:
                progress.update(i + 1, accuracies)
    return mean_and_ci95(accuracies)
