"""Building objects from config nodes: datasets, methods and episode samplers."""

import difflib
import inspect
import logging
import re
from typing import Any

import torch
from hydra.errors import InstantiationException
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from fewshot_cli.config.targets import check_role
from fewshot_cli.data.base import FewShotDataset
from fewshot_cli.data.image_split import ImageSplit
from fewshot_cli.data.natural_augment import NaturalAugment
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
        # A preset whose dataset has no loader (`_target_: ???`) composes but cannot run.
        raise ConfigError(f"dataset {node.get('name', '?')!r} has no loader in this version of "
                          f"fewshot-cli; choose one of the conf/dataset options (dataset=<name>)")
    check_role(node, "dataset", "dataset", ConfigError)  # the class, before anything is called
    return _instantiate(node, "dataset")


def record_normalisation(node: DictConfig, dataset: FewShotDataset) -> None:
    """Write the mean/std a dataset computed from its own images (image_folder: its training split)
    into its config node, when the node gives none.

    Checkpoints carry the config, so `fewshot eval` and `fewshot predict` then normalise as training
    did, without reading (or even having) the training images, and a resume keeps the same values
    after images are added. Datasets without computed statistics (mean None) leave the node alone.
    """
    if node.get("mean") is not None or dataset.mean is None:
        return
    with open_dict(node):
        node.mean = [float(v) for v in dataset.mean]
        node.std = [float(v) for v in dataset.std]


def build_method(node: DictConfig, ctx: DeviceContext) -> FewShotMethod:
    """Instantiate a conf/method option (its backbone comes along through `backbone: ${backbone}`)."""
    if node is None:
        raise ConfigError("no method selected; add method=<name> (e.g. method=protonet)")
    check_role(node, "method", "method", ConfigError)  # the class, before anything is called
    model = _instantiate(node, "method")
    model = model.to(ctx.device)
    if ctx.channels_last:
        model = model.to(memory_format=torch.channels_last)
    backbone = getattr(model, "backbone", None)
    if ctx.compile and isinstance(backbone, torch.nn.Module):
        # In place (Module.compile), so state_dict keys stay those of the plain backbone.
        backbone.compile()
    return model


def build_optimizer(node: DictConfig, parameters: Any) -> torch.optim.Optimizer:
    """The conf/optimizer option (`_partial_: true`) over `parameters`.

    Raises:
        ConfigError: the optimiser refuses a value (`optimizer.lr=-1`: torch's "Invalid learning
            rate: -1"), in one sentence naming the option, instead of a traceback.
    """
    check_role(node, "optimizer", "optimizer", ConfigError)
    return refused_settings_in_words(lambda: _instantiate(node, "optimizer")(params=parameters),
                                     "optimizer", node)


def refused_settings_in_words(build: Any, group: str, node: DictConfig) -> Any:
    """build(), with a ValueError of torch's value checks (a negative learning rate, momentum, gamma,
    T_max) turned into one ConfigError naming the config group and its settings."""
    try:
        return build()
    except (ValueError, InstantiationException) as error:
        cause = error.__cause__ if isinstance(error, InstantiationException) else error
        if not isinstance(cause, ValueError):
            raise
        settings = ", ".join(f"{group}.{key}={value}" for key, value in node.items()
                             if not str(key).startswith("_"))
        raise ConfigError(f"{group}={_option_label(node)} refuses its settings ({settings}): "
                          f"{cause}") from None


def _option_label(node: DictConfig) -> str:
    """The class name a config node builds (Adam, CosineAnnealingLR) for messages."""
    return str(node.get("_target_", "?")).rsplit(".", 1)[-1]


def _instantiate(node: DictConfig, group: str) -> Any:
    """hydra's instantiate, but a FewShotError raised by a constructor (a bad option value, missing
    weights) stays that error, so the CLI reports its one sentence instead of Hydra's wrapper; a key
    the class does not take (`+dataset.dowload=false`) becomes one sentence naming the keys it does.
    """
    try:
        return instantiate(node)
    except InstantiationException as error:
        cause = error.__cause__
        if isinstance(cause, FewShotError):
            raise cause from None
        unexpected = re.search(r"unexpected keyword argument '(\w+)'", str(cause))
        target = re.search(r"Error in call to target '([\w.]+)'", str(error))
        if isinstance(cause, TypeError) and unexpected and target:
            # A nested node (method.backbone) names itself in Hydra's message as full_key.
            where = re.search(r"full_key: ([\w.]+)", str(error))
            raise ConfigError(_unknown_option(target.group(1), where.group(1) if where else group,
                                              unexpected.group(1))) from None
        raise


def _unknown_option(target: str, group: str, key: str) -> str:
    """"dataset.dowload is not an option of Omniglot; did you mean dataset.download?" and the like."""
    cls = get_class(target)
    options = [name for name in inspect.signature(cls).parameters if name not in ("self", "args", "kwargs")]
    close = difflib.get_close_matches(key, options, n=1)
    hint = f"did you mean {group}.{close[0]}?" if close else f"its options: {', '.join(options)}"
    return f"{group}.{key} is not an option of {cls.__name__}; {hint}"


def build_sampler(
    dataset: FewShotDataset,
    split: str,
    shape: DictConfig,
    seed: int,
    ctx: DeviceContext,
    config_key: str,
    within_group: bool = False,
    within_group_key: str = "eval.within_group",
    augment: NaturalAugment | None = None,
) -> EpisodeSampler:
    """Episode sampler over `split` with the N-way K-shot Q-query `shape` from the config
    (`within_group`: every episode's classes from one class group, e.g. one Omniglot alphabet;
    `augment`: `dataset.augment`, given by `fewshot train` for its training stream and nothing else).

    With `shape.fit_to_split` (each method's default shape), a shape larger than the split supplies
    is lowered to what it supplies and logged (n_query first, then n_way), so `fewshot train method=M
    dataset=D` runs on every dataset; otherwise the sampler refuses it with a ConfigError.
    """
    images = dataset.load_split(split)
    n_way, n_query = shape.n_way, shape.n_query
    if shape.get("fit_to_split"):
        n_way, n_query = fitted_shape(images, shape, config_key, within_group)
    return EpisodeSampler(
        images, n_way, shape.n_shot, n_query, seed=seed,
        stream=split, device=ctx.device, config_key=config_key, mean=dataset.mean, std=dataset.std,
        channels_last=ctx.channels_last, within_group=within_group, within_group_key=within_group_key,
        augment=augment,
    )


def fitted_shape(split: ImageSplit, shape: DictConfig, key: str, within_group: bool) -> tuple[int, int]:
    """(n_way, n_query) of `shape`, lowered to what `split` supplies.

    n_query is lowered first (to the most queries that still give n_way classes, or every class when
    fewer exist), then n_way to the classes with n_shot + n_query images (in one class group when
    `within_group`). A split that cannot give 2 classes of n_shot + 1 images keeps the shape, and the
    sampler's own error explains it.
    """
    counts = split.class_counts()

    def classes_with(n_query: int) -> int:
        enough = counts >= shape.n_shot + n_query
        if within_group and split.class_groups is not None and bool(enough.any()):
            return int(torch.bincount(split.class_groups[enough]).max())
        return int(enough.sum())

    wanted = min(shape.n_way, classes_with(1))
    n_query = shape.n_query
    while n_query > 1 and classes_with(n_query) < wanted:
        n_query -= 1
    n_way = min(shape.n_way, classes_with(n_query))
    if n_way < 2:
        return shape.n_way, shape.n_query
    if (n_way, n_query) != (shape.n_way, shape.n_query):
        log.warning("%s lowered from %d-way %d-shot %d-query to %d-way %d-query: %s has %d classes "
                    "with at least %d images (the method's default shape fits itself to the dataset; "
                    "type %s.n_way/n_query=... for an exact shape)", key, shape.n_way, shape.n_shot,
                    shape.n_query, n_way, n_query, split.name, classes_with(n_query),
                    shape.n_shot + n_query, key)
    return n_way, n_query
