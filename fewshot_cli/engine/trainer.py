"""The episodic training loop: one optimiser step per `tasks_per_step` episodes, for every method."""

import itertools
import json
import logging
import math
import shlex
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig
from tqdm import tqdm

from fewshot_cli.config.overrides import quote_override
from fewshot_cli.data.episode import Episode
from fewshot_cli.data.sampler import EpisodeSampler
from fewshot_cli.engine.checkpoint import load_model_weights, rng_state, save_checkpoint
from fewshot_cli.engine.device import DeviceContext
from fewshot_cli.engine.distributed import DistributedContext
from fewshot_cli.engine.evaluator import evaluate_episodes
from fewshot_cli.engine.schedules import restore_schedule
from fewshot_cli.errors import FewShotError, NonFiniteLossError
from fewshot_cli.methods.base import FewShotMethod
from fewshot_cli.methods.functional import accuracy

log = logging.getLogger(__name__)


@dataclass
class TrainState:
    """Progress that a checkpoint must carry for an exact resume."""

    step: int = 0                 # optimiser steps done
    best_val_acc: float = -math.inf
    best_val_ci95: float = 0.0
    best_episode: int = 0
    train_seconds: float = 0.0    # time in training steps, validation excluded
    validations_since_best: int = 0  # validations in a row without a new best (early stopping)
    stopped_by: str = ""          # what ended training: max_episodes, plateau or max_minutes


class TrainingInterrupted(Exception):
    """SIGINT/SIGTERM arrived; last.pt was saved at a step boundary."""

    def __init__(self, episode: int, checkpoint: Path) -> None:
        # Quoted twice, so that the command pastes into a shell as is even for a path with spaces,
        # '=' or quotes: once for Hydra's override parser, then for the shell.
        resume = shlex.quote(quote_override("resume_from", str(checkpoint)))
        super().__init__(f"interrupted after {episode} episodes; continue with "
                         f"`fewshot train {resume}`")


class Trainer:
    """Runs training, validation, logging and checkpointing for any FewShotMethod.

    Args:
        model: the method, already on its device.
        optimizer, scheduler: built from conf/optimizer and conf/scheduler; the scheduler steps once
            per optimiser step (its lengths were converted from episodes by build_scheduler).
        train_sampler, val_sampler: episode streams (val episodes are fixed by eval_seed).
        ctx: device, AMP and memory-format settings.
        settings: the `trainer` config node (counts in episodes).
        output_dir: run directory; checkpoints go to output_dir/checkpoints.
        config: the run's config as a plain container, stored in every checkpoint.
        writer: a TensorBoard SummaryWriter, or None.
        distributed: this process's rank under torchrun (default: a single process).
    """

    def __init__(
        self,
        model: FewShotMethod,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler,
        train_sampler: EpisodeSampler,
        val_sampler: EpisodeSampler,
        ctx: DeviceContext,
        settings: DictConfig,
        output_dir: Path,
        config: dict[str, Any],
        writer: Any = None,
        distributed: DistributedContext | None = None,
    ) -> None:
        self.model, self.optimizer, self.scheduler = model, optimizer, scheduler
        self.train_sampler, self.val_sampler = train_sampler, val_sampler
        self.ctx, self.settings, self.config, self.writer = ctx, settings, config, writer
        self.scaler = ctx.grad_scaler()
        self.checkpoint_dir = output_dir / "checkpoints"
        self.history_path = output_dir / "train_history.jsonl"
        self.tasks_per_step = settings.tasks_per_step  # counts checked by config/counts.py
        self.distributed = distributed or DistributedContext()
        self.my_tasks = self.distributed.my_tasks(self.tasks_per_step)
        # One vmap'd computation per meta-batch where the method has one (MAML); metric methods
        # keep one backbone call per episode (their BatchNorm would mix episodes' statistics).
        self.vectorize = (bool(settings.get("vectorize_tasks", True)) and model.vectorizes_tasks
                          and len(self.my_tasks) > 1)
        if self.vectorize:
            log.info("trainer.vectorize_tasks: the %d tasks of each meta-batch run as one vmap'd "
                     "computation", len(self.my_tasks))
        self._interval_loss = torch.zeros((), device=ctx.device)
        self._interval_acc = torch.zeros((), device=ctx.device)
        self._interval_episodes = 0
        self.last_saved_episode: int | None = None  # episode of the last.pt on disk, if any

    @property
    def last_path(self) -> Path:
        return self.checkpoint_dir / "last.pt"

    @property
    def best_path(self) -> Path:
        return self.checkpoint_dir / "best.pt"

    def fit(self, state: TrainState) -> TrainState:
        """Train from `state.step` to trainer.max_episodes; return the final state."""
        tps = self.tasks_per_step
        total_steps = self.settings.max_episodes // tps
        episodes = self._episode_stream(state.step, total_steps)
        progress = tqdm(total=self.settings.max_episodes, initial=state.step * tps, unit="ep",
                        desc="train", disable=None if self.settings.progress_bar else True,
                        mininterval=1,
                        dynamic_ncols=True)
        self.model.train()
        deadline = _deadline(self.settings.get("max_minutes"))
        pace = _Pace(state.step * tps, self.settings.max_episodes, deadline)
        patience = self.settings.get("early_stop_patience")
        if _plateaued(state, patience):  # resumed from a run that had stopped on its plateau
            return self._stop_on_plateau(state, patience)
        with progress, _deferred_interrupts() as interrupted:
            clock = time.perf_counter()
            for _ in range(state.step, total_steps):
                self._train_step(episodes)
                state.step += 1
                episode = state.step * tps
                progress.total = pace.expected_last_episode(episode)  # true with max_minutes too
                progress.update(tps)
                out_of_time = self._agree(time.perf_counter() > deadline)
                due = self._due(episode, episode if out_of_time else total_steps * tps)
                if due or interrupted():
                    self.ctx.synchronize()
                    state.train_seconds += time.perf_counter() - clock
                    self._flush(episode, state, progress)
                    pace.announce_once(episode, self.settings.get("max_minutes"))
                    if "validate" in due:
                        self._validate(episode, state)
                    if "checkpoint" in due or interrupted():
                        self._save(self.last_path, state)
                    if interrupted():
                        raise TrainingInterrupted(episode, self.last_path)
                    clock = time.perf_counter()
                if out_of_time:
                    log.info("trainer.max_minutes=%s reached after %d episodes; stopping here",
                             self.settings.max_minutes, episode)
                    state.stopped_by = "max_minutes"
                    break
                if "validate" in due and _plateaued(state, patience):
                    self._stop_on_plateau(state, patience)
                    break
            else:
                state.stopped_by = "max_episodes"
        return state

    def _stop_on_plateau(self, state: TrainState, patience: int) -> TrainState:
        log.info("validation accuracy has not improved for %d validations (trainer.early_stop_patience"
                 "=%d; best %.2f at episode %d): stopping after %d episodes",
                 state.validations_since_best, patience, state.best_val_acc, state.best_episode,
                 state.step * self.tasks_per_step)
        state.stopped_by = "plateau"
        return state

    def _agree(self, flag: bool) -> bool:
        """True on every process if it is true on any (ranks must stop on the same step)."""
        if self.distributed.world_size == 1 or math.isinf(self.settings.get("max_minutes") or math.inf):
            return flag
        return bool(self.distributed.sum(torch.tensor(float(flag), device=self.ctx.device)) > 0)

    def _episode_stream(self, first_step: int, total_steps: int) -> Iterator[Episode]:
        """This process's training episodes from `first_step` on, in order.

        Episode `step * tasks_per_step + t` is task t of that step's meta-batch, whatever the number of
        processes, so a torchrun job trains on exactly the episodes a single process would.
        """
        tps = self.tasks_per_step
        if self.distributed.world_size == 1:  # one stream: indices travel to the device in chunks
            return self.train_sampler.episodes(first_step * tps, (total_steps - first_step) * tps)
        start, count = self.my_tasks.start, len(self.my_tasks)
        return itertools.chain.from_iterable(
            self.train_sampler.episodes(step * tps + start, count)
            for step in range(first_step, total_steps))

    def _train_step(self, episodes: Iterator[Episode]) -> None:
        """One optimiser step on the mean loss of `tasks_per_step` episodes."""
        self.accumulate_gradients(episodes)
        if self.settings.grad_clip is not None:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.settings.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.distributed.broadcast_buffers(self.model)

    def accumulate_gradients(self, episodes: Iterator[Episode]) -> None:
        """Leave in .grad the gradient of the mean loss over one meta-batch (summed over processes)."""
        self.optimizer.zero_grad(set_to_none=True)
        if self.vectorize:  # the same episodes as the loop below, in the same order
            self._backward([next(episodes) for _ in self.my_tasks])
        else:
            for _ in self.my_tasks:
                self._backward([next(episodes)])
        self.distributed.sum_gradients(self.model.parameters())

    def _backward(self, tasks: list[Episode]) -> None:
        """Add to .grad the gradient of these tasks' share of the meta-batch's mean loss."""
        try:
            with self.ctx.autocast():
                if len(tasks) == 1:
                    output = self.model.loss_and_logits(tasks[0])
                    losses, logits = output.loss[None], output.logits[None]
                else:
                    losses, logits, _ = self.model.loss_and_logits_tasks(tasks)
            self.scaler.scale(losses.sum() / self.tasks_per_step).backward()
        except torch.cuda.OutOfMemoryError as error:
            # The meta-gradient's memory peak is here, in backward: say which knobs lower it.
            raise FewShotError(f"CUDA ran out of memory in a training step (trainer.tasks_per_step="
                               f"{self.tasks_per_step}); {self.model.memory_hint}") from error
        self._interval_loss += losses.detach().float().sum()
        for task, task_logits in zip(tasks, logits.detach(), strict=True):
            self._interval_acc += accuracy(task_logits, task.query_labels)
        self._interval_episodes += len(tasks)

    def _due(self, episode: int, last_episode: int) -> set[str]:
        """Bookkeeping due after `episode`: any of 'log', 'validate', 'checkpoint'."""
        s = self.settings
        due = set()
        if episode % s.val_every == 0 or episode == last_episode:
            due |= {"validate", "checkpoint", "log"}
        if episode % s.checkpoint_every == 0:
            due |= {"checkpoint", "log"}
        if episode % s.log_every == 0:
            due.add("log")
        return due

    def _flush(self, episode: int, state: TrainState, progress: tqdm) -> None:
        """Log the interval's mean loss/accuracy; stop on a non-finite loss before any checkpoint."""
        if self._interval_episodes == 0:
            return
        totals = self.distributed.sum(torch.stack([
            self._interval_loss, self._interval_acc,
            torch.tensor(float(self._interval_episodes), device=self.ctx.device)]))
        loss = float(totals[0]) / float(totals[2])
        acc = 100.0 * float(totals[1]) / float(totals[2])
        self._interval_loss.zero_()
        self._interval_acc.zero_()
        self._interval_episodes = 0
        if not math.isfinite(loss):
            raise self._non_finite(f"training loss became {loss} within the episodes up to episode "
                                   f"{episode}")
        lr = self.optimizer.param_groups[0]["lr"]
        progress.set_postfix(loss=f"{loss:.4f}", acc=f"{acc:.2f}", lr=f"{lr:.2e}", refresh=False)
        self._record(episode, {"train/loss": loss, "train/acc": acc, "train/lr": lr,
                               "train/episodes_per_sec": state.step * self.tasks_per_step
                               / max(state.train_seconds, 1e-9)})

    def _validate(self, episode: int, state: TrainState) -> None:
        """Score the fixed val episodes; keep best.pt on improvement."""
        estimate = evaluate_episodes(self.model, self.val_sampler, self.settings.val_episodes,
                                     self.ctx, description="val",
                                     progress_bar=self.settings.progress_bar)
        self._record(episode, {"val/acc": estimate.mean, "val/acc_ci95": estimate.ci95})
        log.info("episode %d: %s", episode, estimate.describe(
            self.val_sampler.n_way, self.val_sampler.n_shot, prefix="val/acc"))
        if estimate.mean > state.best_val_acc:
            state.best_val_acc, state.best_val_ci95 = estimate.mean, estimate.ci95
            state.best_episode = episode
            state.validations_since_best = 0
            self._save(self.best_path, state)
        else:
            state.validations_since_best += 1

    def _record(self, episode: int, scalars: dict[str, float]) -> None:
        """Append to train_history.jsonl and TensorBoard (rank 0 only)."""
        if not self.distributed.is_main:
            return
        with self.history_path.open("a") as handle:
            handle.write(json.dumps({"episode": episode, **scalars}) + "\n")
        if self.writer is not None:
            for name, value in scalars.items():
                self.writer.add_scalar(name, value, episode)

    def _non_finite(self, what: str) -> NonFiniteLossError:
        """The error for a NaN/inf loss or weights, saying truthfully what is on disk."""
        if self.last_saved_episode is None:
            kept = "no checkpoint had been written yet"
        else:
            kept = f"{self.last_path} (episode {self.last_saved_episode}) keeps the last finite state"
        fixes = "lower optimizer.lr or set trainer.grad_clip"
        if self.ctx.amp_dtype is not None:
            fixes += ", or use device.amp=none"
        return NonFiniteLossError(f"{what}; {kept}; {fixes}")

    def _check_finite_weights(self, episode: int) -> None:
        """Refuse to checkpoint NaN/inf weights or optimiser state: a finite loss does not prove
        them finite (an infinite gradient of the last step is only seen in the next loss). One
        device sync, at checkpoint time only."""
        tensors = [p.detach() for p in self.model.parameters()]
        tensors += [v for state in self.optimizer.state.values() for v in state.values()
                    if torch.is_tensor(v) and v.is_floating_point()]
        if tensors and not bool(torch.stack([torch.isfinite(t).all() for t in tensors]).all()):
            raise self._non_finite(f"the weights or optimiser state became NaN or infinite by "
                                   f"episode {episode} (an infinite gradient)")

    def _save(self, path: Path, state: TrainState) -> None:
        self._check_finite_weights(state.step * self.tasks_per_step)  # every rank stops together
        if not self.distributed.is_main:
            return
        save_checkpoint(path, {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "state": asdict(state),
            "episode": state.step * self.tasks_per_step,
            "config": self.config,
            "rng": rng_state(),
        })
        if path == self.last_path:
            self.last_saved_episode = state.step * self.tasks_per_step

    def restore(self, checkpoint: dict[str, Any]) -> TrainState:
        """Load weights, optimiser, scheduler and progress from a last.pt payload."""
        load_model_weights(self.model, checkpoint, self.config, "the resumed checkpoint")
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        restore_schedule(self.scheduler, checkpoint["scheduler"], self.optimizer)
        self.scaler.load_state_dict(checkpoint["scaler"])
        self.last_saved_episode = checkpoint["episode"]
        return TrainState(**checkpoint["state"])


class _Pace:
    """Where training will stop and when, from the episodes per second of this session (wall
    clock, validation included): the progress bar's total and ETA stay true under
    trainer.max_minutes, and the log says early on how long the run will take."""

    def __init__(self, first_episode: int, max_episodes: int, deadline: float) -> None:
        self.first_episode, self.max_episodes, self.deadline = first_episode, max_episodes, deadline
        self.started = time.perf_counter()
        self.announced = False

    def rate(self, episode: int) -> float:
        return (episode - self.first_episode) / max(time.perf_counter() - self.started, 1e-9)

    def expected_last_episode(self, episode: int) -> int:
        """max_episodes, or the episode the time budget will end at if that comes first."""
        if math.isinf(self.deadline):
            return self.max_episodes
        left = max(self.deadline - time.perf_counter(), 0.0)
        return min(self.max_episodes, max(episode, int(episode + self.rate(episode) * left)))

    def announce_once(self, episode: int, max_minutes: float | None) -> None:
        """Log the pace and the expected length of the run once (the first logging interval)."""
        if self.announced or episode <= self.first_episode:
            return
        self.announced = True
        rate = self.rate(episode)
        last = self.expected_last_episode(episode)
        if last <= episode:
            return  # the run ends here: nothing to announce
        hours = (last - episode) / max(rate, 1e-9) / 3600
        budget = (f"trainer.max_minutes={max_minutes} ends it at about episode {last}"
                  if last < self.max_episodes else "set trainer.max_minutes=N to stop it earlier"
                  if max_minutes is None else f"within trainer.max_minutes={max_minutes}")
        log.info("%.2f episodes/s: the remaining %d episodes take about %s (%s)", rate,
                 last - episode, f"{hours:.1f} h" if hours >= 1 else f"{60 * hours:.0f} min", budget)


def _plateaued(state: TrainState, patience: int | None) -> bool:
    """Early stopping: `patience` validations in a row without a new best (never with None). Only
    validation episodes decide it, never test episodes, so the test stays an unbiased estimate."""
    return patience is not None and state.validations_since_best >= patience


def _deadline(max_minutes: float | None) -> float:
    """perf_counter() value after which training stops early (inf when there is no time limit)."""
    return math.inf if max_minutes is None else time.perf_counter() + 60.0 * max_minutes


@contextmanager
def _deferred_interrupts() -> Iterator[Callable[[], bool]]:
    """Turn SIGINT/SIGTERM into a flag checked between optimiser steps.

    Stopping mid-step could save half-updated weights; deferring to the step boundary lets the
    trainer write a consistent last.pt first. A second Ctrl-C stops at once.
    """
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield lambda: False
        return

    def handler(signum: int, frame: Any) -> None:
        if received:
            raise KeyboardInterrupt
        received.append(signum)
        log.warning("signal %d received: saving last.pt at the end of this step", signum)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield lambda: bool(received)
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
