"""Building objects from config nodes: datasets, methods and episode samplers."""

import logging
from typing import Any

import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from fewshot_cli.config.targets import check_role
from fewshot_cli.data.base import FewShotDataset
from fewshot_cli.data.sampler import EpisodeSampler
from fewshot_cli.engine.device import DeviceContext
from fewshot_cli.errors import ConfigError, FewShotError
from fewshot_cli.methods.base import FewShotMethod

log = logging.getLogger(__name__)


def build_dataset(node: DictConfig) -> FewShotDataset:
    """Instantiate a conf/dataset option."""
    if node is None:
        raise ConfigError("no dataset selected; add dataset=<name> (e.g. dataset=omniglot)")
    if OmegaConf.is_missing(node, "_target_"):
        # Presets for datasets without a loader yet (miniImageNet) compose but cannot run.
        raise ConfigError(f"dataset {node.get('name', '?')!r} has no loader in this version of "
                          f"fewshot-cli; choose one of the conf/dataset options (dataset=<name>)")
    check_role(node, "dataset", "dataset", ConfigError)  # the class, before anything is called
    return _instantiate(node)


def build_method(node: DictConfig, ctx: DeviceContext) -> FewShotMethod:
    """Instantiate a conf/method option (its backbone comes along through `backbone: ${backbone}`)."""
    if node is None:
        raise ConfigError("no method selected; add method=<name> (e.g. method=protonet)")
    check_role(node, "method", "method", ConfigError)  # the class, before anything is called
    model = _instantiate(node)
    model = model.to(ctx.device)
    if ctx.channels_last:
        model = model.to(memory_format=torch.channels_last)
    backbone = getattr(model, "backbone", None)
    if ctx.compile and isinstance(backbone, torch.nn.Module):
        # In place (Module.compile), so state_dict keys stay those of the plain backbone.
        backbone.compile()
    return model


def _instantiate(node: DictConfig) -> Any:
    """hydra's instantiate, but a FewShotError raised by a constructor (a bad option value, missing
    weights) stays that error, so the CLI reports its one sentence instead of Hydra's wrapper."""
    try:
        return instantiate(node)
    except InstantiationException as error:
        if isinstance(error.__cause__, FewShotError):
            raise error.__cause__ from None
        raise


def build_sampler(
    dataset: FewShotDataset,
    split: str,
    shape: DictConfig,
    seed: int,
    ctx: DeviceContext,
    config_key: str,
    within_group: bool = False,
    within_group_key: str = "eval.within_group",
) -> EpisodeSampler:
    """Episode sampler over `split` with the N-way K-shot Q-query `shape` from the config
    (`within_group`: every episode's classes from one class group, e.g. one Omniglot alphabet)."""
    return EpisodeSampler(
        dataset.load_split(split), shape.n_way, shape.n_shot, shape.n_query, seed=seed,
        stream=split, device=ctx.device, config_key=config_key, mean=dataset.mean, std=dataset.std,
        channels_last=ctx.channels_last, within_group=within_group, within_group_key=within_group_key,
    )
