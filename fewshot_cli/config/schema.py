"""Structured-config schemas for the two primary configs.

Registering them in Hydra's ConfigStore and naming them first in `train.yaml` / `eval.yaml` makes
Hydra reject wrong types (`trainer.max_episodes=abc`) and unknown keys at compose time with its own
message, before any task code runs. Groups whose keys differ per option (dataset, method, backbone,
optimizer, ...) stay `Any`; struct mode still rejects unknown keys in them.
"""

# OmegaConf 2.3 reads typing.Optional, not PEP 604 unions, in structured configs.
from dataclasses import dataclass, field
from typing import Any, Optional

from hydra.core.config_store import ConfigStore


@dataclass
class EpisodeShapeSchema:
    """An N-way K-shot episode with Q queries per class."""

    n_way: int = 5
    n_shot: int = 1
    n_query: int = 15
    # Lower n_query, then n_way, to what a split has (logged) instead of stopping: set by each
    # method's default shape (conf/episodes/<method>.yaml), off when a shape is typed on the command line.
    fit_to_split: bool = False


@dataclass
class OptionalEpisodeShapeSchema:
    """Episode shape for `fewshot eval`: null fields are taken from the checkpoint."""

    n_way: Optional[int] = None
    n_shot: Optional[int] = None
    n_query: Optional[int] = None
    fit_to_split: Optional[bool] = None


@dataclass
class TrainerSchema:
    """Training-loop settings; every count is in episodes."""

    max_episodes: int = 20000
    tasks_per_step: int = 1
    val_every: int = 1000
    val_episodes: int = 300
    log_every: int = 100
    checkpoint_every: int = 1000
    grad_clip: Optional[float] = None
    # Training episodes draw all classes from one class group (Omniglot: one alphabet), so every
    # negative pair and every episode is a within-alphabet one, like the within-alphabet test tasks.
    within_group: bool = False
    max_minutes: Optional[float] = None
    progress_bar: bool = True
    # Stop after this many validations in a row without a new best validation accuracy (null: off).
    early_stop_patience: Optional[int] = None
    # The tasks of a meta-batch as one vmap'd computation where the method has one (MAML).
    vectorize_tasks: bool = True


@dataclass
class EvalSchema:
    """Which split to score and on how many episodes (null: the dataset's default)."""

    split: str = "test"
    n_episodes: Optional[int] = None
    # Val/test episodes draw all classes from one class group (Omniglot: one alphabet).
    within_group: bool = False


@dataclass
class EvalCommandSchema(EvalSchema):
    """`fewshot eval` only: the protocol (episodes, or a whole split for zero-shot methods) and the
    CLIP figures (see fewshot_cli/tasks/zero_shot.py)."""

    protocol: str = "auto"
    figures: bool = True
    figure_images: int = 8


@dataclass
class DeviceSchema:
    """Where and how tensors run."""

    type: str = "auto"
    amp: str = "none"
    # null: the device's default, channels-last on CPU (faster there, benchmarks/train_throughput.py)
    # and the default layout on CUDA.
    channels_last: Optional[bool] = None
    compile: bool = False
    deterministic: bool = False


@dataclass
class PathsSchema:
    """Data, cache and output locations."""

    data_dir: str = "data"
    cache_dir: str = "~/.cache/fewshot_cli"
    output_dir: str = "outputs"


@dataclass
class LoggerSchema:
    """Which loggers write into the run directory."""

    tensorboard: bool = True


@dataclass
class TrainConfigSchema:
    """Schema of `conf/train.yaml`."""

    task: str = "train"
    seed: int = 0
    eval_seed: int = 1234
    resume_from: Optional[str] = None
    dataset: Any = None
    backbone: Any = None
    method: Any = None
    optimizer: Any = None
    scheduler: Any = None
    train_episodes: EpisodeShapeSchema = field(default_factory=EpisodeShapeSchema)
    eval_episodes: EpisodeShapeSchema = field(default_factory=EpisodeShapeSchema)
    trainer: TrainerSchema = field(default_factory=TrainerSchema)
    eval: EvalSchema = field(default_factory=EvalSchema)
    device: DeviceSchema = field(default_factory=DeviceSchema)
    logger: LoggerSchema = field(default_factory=LoggerSchema)
    paths: PathsSchema = field(default_factory=PathsSchema)


@dataclass
class EvalConfigSchema:
    """Schema of `conf/eval.yaml`."""

    task: str = "eval"
    seed: int = 0
    eval_seed: int = 1234
    ckpt_path: Optional[str] = None
    dataset: Any = None
    backbone: Any = None
    method: Any = None
    eval_episodes: OptionalEpisodeShapeSchema = field(default_factory=OptionalEpisodeShapeSchema)
    eval: EvalCommandSchema = field(default_factory=EvalCommandSchema)
    device: DeviceSchema = field(default_factory=DeviceSchema)
    logger: LoggerSchema = field(default_factory=LoggerSchema)
    paths: PathsSchema = field(default_factory=PathsSchema)


def register_schemas() -> None:
    """Store the schemas under the names the primary configs list first in their defaults."""
    store = ConfigStore.instance()
    store.store(name="train_schema", node=TrainConfigSchema)
    store.store(name="eval_schema", node=EvalConfigSchema)


register_schemas()
