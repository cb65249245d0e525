"""Counts a run needs, checked before any data is read or any model is built.

A wrong count that is only noticed later costs the user the run, or worse gives a result that looks
like one: `n_query=0` trains on empty losses (NaN) and scores `nan ± nan` with exit code 0,
`eval.n_episodes=0` divides by zero, and one test episode prints "± 0.00" although a confidence
interval from a single episode is undefined. Every count is therefore checked here, once, with one
sentence naming the key and the allowed range.
"""

from omegaconf import DictConfig

from fewshot_cli.errors import ConfigError

TRAINER_COUNTS = ("max_episodes", "val_every", "log_every", "checkpoint_every")
MIN_CI_EPISODES = 2  # a standard deviation (and so a 95% CI) needs two episodes


def check_episode_shape(shape: DictConfig, key: str) -> None:
    """n_way >= 2 (one class has nothing to tell apart), n_shot >= 1, n_query >= 1 (the loss and
    the accuracy are taken over the queries).

    Raises:
        ConfigError: naming `key`.<field> and its allowed range.
    """
    for name, least in (("n_way", 2), ("n_shot", 1), ("n_query", 1)):
        value = shape[name]
        if value is None or value < least:
            what = {"n_way": "classes per episode", "n_shot": "support image per class",
                    "n_query": "query image per class (the loss and accuracy are taken over them)"}
            raise ConfigError(f"{key}.{name}={value}: an episode needs at least {least} {what[name]}")


def check_episode_count(value: int | None, key: str) -> None:
    """Episodes to score: at least MIN_CI_EPISODES, so mean ± 95% CI is defined.

    Raises:
        ConfigError: naming `key`.
    """
    if value is not None and value < MIN_CI_EPISODES:
        raise ConfigError(f"{key}={value}: scoring needs at least {MIN_CI_EPISODES} episodes (a 95% "
                          f"confidence interval from fewer is undefined); use e.g. {key}=600")


def check_train_counts(cfg: DictConfig) -> int:
    """Every count of `fewshot train`; returns trainer.tasks_per_step.

    Trainer counts are in episodes and must be positive multiples of tasks_per_step, so validation,
    logging and checkpoints fall on optimiser-step boundaries.

    Raises:
        ConfigError: the first count out of range, by its key.
    """
    trainer = cfg.trainer
    tps = trainer.tasks_per_step
    if tps < 1:
        raise ConfigError(f"trainer.tasks_per_step={tps} must be at least 1")
    for key in TRAINER_COUNTS:
        value = trainer[key]
        if value < 1:
            raise ConfigError(f"trainer.{key}={value} must be at least 1")
        if value % tps:
            raise ConfigError(f"trainer.{key}={value} must be a multiple of trainer.tasks_per_step={tps}")
    if trainer.get("max_minutes") is not None and trainer.max_minutes <= 0:
        raise ConfigError(f"trainer.max_minutes={trainer.max_minutes} must be positive (or null)")
    patience = trainer.get("early_stop_patience")
    if patience is not None and patience < 1:
        raise ConfigError(f"trainer.early_stop_patience={patience} must be at least 1 validation (or null)")
    check_episode_count(trainer.val_episodes, "trainer.val_episodes")
    check_episode_count(cfg.eval.n_episodes, "eval.n_episodes")
    check_episode_shape(cfg.train_episodes, "train_episodes")
    check_episode_shape(cfg.eval_episodes, "eval_episodes")
    return tps


def check_eval_counts(cfg: DictConfig) -> None:
    """Every count of `fewshot eval` (after the checkpoint's values filled the nulls).

    Raises:
        ConfigError: the first count out of range, by its key.
    """
    check_episode_count(cfg.eval.n_episodes, "eval.n_episodes")
    check_episode_shape(cfg.eval_episodes, "eval_episodes")
