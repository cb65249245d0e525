"""`fewshot eval`: score a checkpoint (or an untrained method such as CLIP) on fixed test episodes."""

import logging
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from fewshot_cli.config.counts import check_eval_counts
from fewshot_cli.engine.checkpoint import config_for_rebuilding, load_checkpoint, load_model_weights
from fewshot_cli.engine.device import DeviceContext, released_cuda_memory
from fewshot_cli.engine.episode_record import write_episode_accuracies
from fewshot_cli.engine.evaluator import evaluate_episodes
from fewshot_cli.engine.run_outputs import write_metrics
from fewshot_cli.errors import ConfigError
from fewshot_cli.methods.names import method_name
from fewshot_cli.tasks.build import build_dataset, build_method, build_sampler
from fewshot_cli.tasks.zero_shot import episode_figures, evaluate_full, resolve_protocol

log = logging.getLogger(__name__)


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Rebuild the model from `cfg.ckpt_path` alone (or from `cfg.method`) and score test episodes.

    Returns the metrics written to `<output_dir>/metrics.json`.
    """
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    checkpoint = load_checkpoint(cfg.ckpt_path) if cfg.ckpt_path else None
    run_cfg = merge_with_checkpoint(cfg, config_for_rebuilding(checkpoint["config"]) if checkpoint else None)
    check_eval_counts(run_cfg)  # before any data is read or any model built
    if checkpoint is not None:
        _warn_about_input_changes(checkpoint["config"].get("dataset") or {}, run_cfg.dataset)
    torch.manual_seed(run_cfg.seed)
    ctx = DeviceContext.from_config(run_cfg.device)
    dataset = build_dataset(run_cfg.dataset)
    model = build_method(run_cfg.method, ctx)
    if checkpoint is not None:
        load_model_weights(model, checkpoint, run_cfg, Path(cfg.ckpt_path).name)
    elif model.trainable:
        log.warning("no ckpt_path given: evaluating an untrained %s", run_cfg.method._target_)
    if resolve_protocol(run_cfg.eval.protocol, dataset, model) == "full":
        return evaluate_full(run_cfg, dataset, model, ctx, output_dir)  # zero-shot: whole test set
    shape = run_cfg.eval_episodes
    with released_cuda_memory():
        sampler = build_sampler(dataset, run_cfg.eval.split, shape, run_cfg.eval_seed, ctx,
                                "eval_episodes", within_group=run_cfg.eval.within_group)
        estimate = evaluate_episodes(model, sampler, run_cfg.eval.n_episodes, ctx,
                                     description=run_cfg.eval.split, progress_lines=10)
    result = estimate.describe(sampler.n_way, sampler.n_shot, prefix=f"{run_cfg.eval.split}/acc")
    # Printed bare for scripts reading stdout, and logged so that eval.log holds the result too.
    print(result, flush=True)
    log.info("%s", result)
    metrics = {
        "test/acc": estimate.mean,
        "test/acc_ci95": estimate.ci95,
        "test/n_episodes": estimate.n_episodes,
        "test/n_way": sampler.n_way,
        "test/n_shot": sampler.n_shot,
        "test/n_query": sampler.n_query,
        "test/split": run_cfg.eval.split,
        "test/within_group": bool(run_cfg.eval.within_group),
        **write_episode_accuracies(output_dir, sampler, estimate),
        "dataset": dataset.name,
        # Differs from "dataset" for a cross-domain test (e.g. an Omniglot model scored on MNIST).
        "train_dataset": checkpoint["config"]["dataset"]["name"] if checkpoint else None,
        "method": method_name(run_cfg.method),
        # The seed that trained the checkpoint: what a report groups seeds by.
        "seed": checkpoint["config"].get("seed") if checkpoint else run_cfg.seed,
        "ckpt_path": str(cfg.ckpt_path) if cfg.ckpt_path else None,
        "ckpt_episode": checkpoint["episode"] if checkpoint else 0,
        "device": str(ctx.device),
    }
    metrics.update(episode_figures(run_cfg, dataset, model, output_dir))  # CLIP methods only
    log.info("metrics written to %s", write_metrics(output_dir, metrics))
    return metrics


def merge_with_checkpoint(cfg: DictConfig, saved: dict[str, Any] | None) -> DictConfig:
    """The eval config: the checkpoint's method, backbone, dataset and episode shape, with every
    value the user set (non-null in eval.yaml or on the command line) taking precedence.

    Paths, device and the eval settings always come from the current command, so a checkpoint made
    on another machine evaluates here against this machine's data dir.
    """
    merged = OmegaConf.create(OmegaConf.to_container(cfg))
    if saved is None:
        if cfg.method is None:
            raise ConfigError("give ckpt_path=<.../best.pt>, or method=<name> for an untrained method")
        _fill_nulls(merged.eval_episodes, {"n_way": 5, "n_shot": 1, "n_query": 15, "fit_to_split": True})
        method_node = OmegaConf.to_container(merged.method, resolve=False)
        if merged.backbone is None and method_node.get("backbone") == "${backbone}":
            raise ConfigError("without ckpt_path this method needs a backbone: add backbone=<name> "
                              "(e.g. backbone=conv4) to score an untrained network")
    else:
        for key in ("method", "backbone", "dataset"):
            if merged[key] is None:
                merged[key] = saved.get(key)
            elif "_target_" not in merged[key] and saved.get(key):
                # `+dataset.download=false` and the like: a few keys over the checkpoint's node.
                merged[key] = OmegaConf.merge(saved[key], merged[key])
        _fill_nulls(merged.eval_episodes, saved.get("eval_episodes", {}))
    if merged.dataset is None:
        raise ConfigError("no dataset: add dataset=<name> (e.g. dataset=omniglot)")
    if merged.eval.n_episodes is None:
        merged.eval.n_episodes = merged.dataset.get("test_episodes", 600)
    return merged


def _fill_nulls(node: DictConfig, defaults: dict[str, Any]) -> None:
    for key, value in defaults.items():
        if node.get(key) is None:
            node[key] = value


def _warn_about_input_changes(trained: dict[str, Any], now: DictConfig) -> None:
    """Say when the images reach the network otherwise than in training (another dataset given on
    the command line keeps its own defaults): the accuracy then measures that change too."""
    for key in ("image_size", "channels", "mean", "std"):
        was, is_now = trained.get(key), OmegaConf.select(now, key, default=None)
        is_now = OmegaConf.to_container(is_now) if OmegaConf.is_config(is_now) else is_now
        if was is not None and is_now is not None and was != is_now:
            log.warning("the checkpoint was trained with dataset.%s=%s, this evaluation uses %s "
                        "(add dataset.%s=%s to evaluate as trained)", key, was, is_now, key, was)
