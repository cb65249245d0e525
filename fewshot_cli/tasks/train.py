"""`fewshot train`: episodic training with validation, checkpoints and a final test pass on best.pt."""

import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from fewshot_cli.config.counts import check_train_counts
from fewshot_cli.engine.checkpoint import load_checkpoint, restore_rng_state
from fewshot_cli.engine.device import DeviceContext, released_cuda_memory
from fewshot_cli.engine.distributed import DistributedContext
from fewshot_cli.engine.episode_record import write_episode_accuracies
from fewshot_cli.engine.evaluator import evaluate_episodes
from fewshot_cli.engine.run_outputs import log_hparams, open_tensorboard, write_metrics
from fewshot_cli.engine.schedules import build_scheduler
from fewshot_cli.engine.trainer import Trainer, TrainState
from fewshot_cli.errors import ConfigError
from fewshot_cli.methods.names import method_name
from fewshot_cli.tasks.build import (
    build_dataset,
    build_method,
    build_optimizer,
    build_sampler,
    record_normalisation,
)
from fewshot_cli.tasks.open_set_report import open_set_report
from fewshot_cli.tasks.pair_report import pair_report

log = logging.getLogger(__name__)


def train(cfg: DictConfig) -> dict[str, Any]:
    """Train `cfg.method` on `cfg.dataset`, then score best.pt on the test split.

    Returns the metrics written to `<output_dir>/metrics.json`.
    """
    check_train_counts(cfg)  # before any data is read, any model built or any file written
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    # The config this run trains with: after `resume_from` it is the checkpoint's, which
    # .hydra/config.yaml (the composed command line) does not show.
    OmegaConf.save(cfg, output_dir / "run_config.yaml")
    torch.manual_seed(cfg.seed)  # model initialisation; episodes have their own generators
    ctx = DeviceContext.from_config(cfg.device)
    distributed = DistributedContext.from_environment(ctx)  # single process unless torchrun
    dataset = build_dataset(cfg.dataset)
    if dataset.splits_share_classes:
        log.warning("%s's val and test splits hold its training classes (an official partition): "
                    "validation and test measure seen classes, not few-shot learning of new ones; "
                    "score this checkpoint on another dataset (fewshot eval ... dataset=<name>)",
                    dataset.name)
    train_sampler = build_sampler(dataset, "train", cfg.train_episodes, cfg.seed, ctx, "train_episodes",
                                  within_group=cfg.trainer.within_group,
                                  within_group_key="trainer.within_group",
                                  augment=dataset.augment)  # training episodes only, never val/test
    val_sampler = build_sampler(dataset, "val", cfg.eval_episodes, cfg.eval_seed, ctx, "eval_episodes",
                                within_group=cfg.eval.within_group)
    record_normalisation(cfg.dataset, dataset)  # before the Trainer copies cfg into checkpoints
    model = build_method(cfg.method, ctx)
    if not model.trainable:
        raise ConfigError(f"method {cfg.method._target_} is not trainable; use `fewshot eval` with it")
    optimizer = build_optimizer(cfg.optimizer, model.parameters())
    scheduler = build_scheduler(cfg.scheduler, optimizer, cfg.trainer.tasks_per_step)
    resumed = load_checkpoint(cfg.resume_from) if cfg.resume_from else None
    # A resume continues in the checkpoint's run directory (cli.py points Hydra there): events the
    # killed run logged after its last.pt are purged, so TensorBoard shows one unbroken run.
    writer = open_tensorboard(output_dir, cfg.logger.tensorboard and distributed.is_main,
                              purge_step=resumed["episode"] + 1 if resumed else None)
    started = time.perf_counter()
    with released_cuda_memory():
        try:
            trainer = Trainer(model, optimizer, scheduler, train_sampler, val_sampler, ctx,
                              cfg.trainer, output_dir, OmegaConf.to_container(cfg), writer,
                              distributed)
            state = _resume(trainer, resumed, cfg.resume_from) if resumed else TrainState()
            budget = (f"up to {cfg.trainer.max_episodes} episodes or {cfg.trainer.max_minutes} "
                      f"minutes, whichever comes first" if cfg.trainer.max_minutes is not None
                      else f"{cfg.trainer.max_episodes} episodes")
            log.info("training %s on %s (%d train classes) on %s for %s", method_name(cfg.method),
                     dataset.name, train_sampler.num_classes, ctx.device, budget)
            state = trainer.fit(state)
            if not distributed.is_main:  # rank 0 scores best.pt and writes metrics.json
                return {}
            metrics = _test_best(cfg, trainer, dataset, ctx, state)
            # Loss curve for every method; verification metrics and figures for embedding methods.
            metrics.update(pair_report(cfg, trainer.model, dataset, ctx, output_dir, writer,
                                       trainer.best_path))
            # The reject threshold of `fewshot predict reject=auto`, into best.pt (every method).
            metrics.update(open_set_report(cfg, trainer.model, dataset, ctx, trainer.best_path))
            metrics["train/wall_time_s"] = time.perf_counter() - started
            log.info("metrics written to %s", write_metrics(output_dir, metrics))
            log_hparams(writer, _flat_hparams(cfg), {"hparam/test_acc": metrics["test/acc"]})
        finally:
            if writer is not None:
                writer.close()
    return metrics


def _resume(trainer: Trainer, checkpoint: dict[str, Any], path: str) -> TrainState:
    """Restore last.pt; keep the old run's best.pt and its history up to last.pt in this run's
    directory (the checkpoint's own, unless hydra.run.dir chose another)."""
    state = trainer.restore(checkpoint)
    restore_rng_state(checkpoint["rng"])
    if trainer.distributed.is_main:
        _carry_over_run_files(Path(path).expanduser(), trainer, checkpoint["episode"])
    log.info("resumed from %s at episode %d", path, checkpoint["episode"])
    return state


def _carry_over_run_files(last_path: Path, trainer: Trainer, episode: int) -> None:
    """best.pt beside `last_path` copied here (when this is another directory), and the history
    kept up to `episode`: what the killed run logged after its last.pt is trained again."""
    old_best = last_path.parent / "best.pt"
    if old_best.is_file() and old_best.resolve() != trainer.best_path.resolve():
        trainer.best_path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(old_best, trainer.best_path)
    old_history = last_path.parent.parent / "train_history.jsonl"
    if old_history.is_file():
        kept = [line for line in old_history.read_text().splitlines()
                if line and json.loads(line)["episode"] <= episode]
        trainer.history_path.write_text("".join(line + "\n" for line in kept))


def _test_best(cfg: DictConfig, trainer: Trainer, dataset: Any, ctx: DeviceContext,
               state: TrainState) -> dict[str, Any]:
    """Load best.pt and score it on the test split with the eval episode shape."""
    best = load_checkpoint(trainer.best_path)
    trainer.model.load_state_dict(best["model"])
    sampler = build_sampler(dataset, cfg.eval.split, cfg.eval_episodes, cfg.eval_seed, ctx,
                            "eval_episodes", within_group=cfg.eval.within_group)
    estimate = evaluate_episodes(trainer.model, sampler, cfg.eval.n_episodes, ctx,
                                 progress_bar=cfg.trainer.progress_bar)
    log.info("best.pt (episode %d): %s", best["episode"],
             estimate.describe(sampler.n_way, sampler.n_shot))
    episodes_trained = state.step * trainer.tasks_per_step
    return {
        "test/acc": estimate.mean,
        "test/acc_ci95": estimate.ci95,
        "test/n_episodes": estimate.n_episodes,
        "test/n_way": sampler.n_way,
        "test/n_shot": sampler.n_shot,
        "test/n_query": sampler.n_query,
        "test/split": cfg.eval.split,
        "test/within_group": bool(cfg.eval.within_group),
        **write_episode_accuracies(Path(cfg.paths.output_dir), sampler, estimate),
        "val/best_acc": state.best_val_acc,
        "val/best_acc_ci95": state.best_val_ci95,
        "val/best_episode": state.best_episode,
        "train/stopped_by": state.stopped_by,  # max_episodes, plateau or max_minutes
        "train/episodes": episodes_trained,
        "train/episodes_per_sec": episodes_trained / max(state.train_seconds, 1e-9),
        "train/train_seconds": state.train_seconds,
        "device": str(ctx.device),
        "device_name": torch.cuda.get_device_name(ctx.device) if ctx.device.type == "cuda" else "cpu",
        "method": method_name(cfg.method),
        "dataset": dataset.name,
        "seed": cfg.seed,
    }


def _flat_hparams(cfg: DictConfig) -> dict[str, Any]:
    """The few choices worth comparing across runs in TensorBoard's HParams tab."""
    return {
        "method": method_name(cfg.method),
        "dataset": cfg.dataset.name,
        "seed": cfg.seed,
        "train_way": cfg.train_episodes.n_way,
        "train_shot": cfg.train_episodes.n_shot,
        "test_way": cfg.eval_episodes.n_way,
        "test_shot": cfg.eval_episodes.n_shot,
        "lr": cfg.optimizer.get("lr", float("nan")),
    }
