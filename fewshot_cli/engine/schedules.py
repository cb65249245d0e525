"""Learning-rate schedules whose lengths are counted in episodes, as every count of this tool is.

The trainer steps the scheduler once per optimiser step, and an optimiser step consumes
`trainer.tasks_per_step` episodes (the meta-batch). conf/scheduler/*.yaml states lengths in episodes
(`step_size: 2000`: Snell et al.'s "halve every 2000 episodes"; `T_max: ${trainer.max_episodes}`), so
they are converted to optimiser steps here, in one place; handing them to torch unconverted made a
cosine with 4 tasks per step end at 85% of its start and MAML's 32-task steps hardly move it.

On resume the schedule is rebuilt from the current config and only its position (optimiser steps
done) comes from the checkpoint: `fewshot train resume_from=... trainer.max_episodes=60000` stretches
the cosine to the new length instead of climbing back up on the old one.
"""

import logging
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from fewshot_cli.config.targets import check_role
from fewshot_cli.errors import ConfigError

log = logging.getLogger(__name__)

# Constructor arguments of torch's schedulers that are lengths (in episodes in our configs).
EPISODE_LENGTH_KEYS = ("step_size", "T_max", "total_iters", "milestones", "T_0")
# Other settings of theirs that a resumed run takes from its current config.
SETTING_KEYS = ("gamma", "eta_min", "factor", "base_lrs")


def episodes_to_steps(key: str, value: Any, tasks_per_step: int) -> Any:
    """A length in episodes as optimiser steps (rounded to the nearest step, at least 1 where torch
    needs a positive length). `milestones` is a list of episode counts.

    Raises:
        ConfigError: a negative length.
    """
    if isinstance(value, list | tuple):
        return [episodes_to_steps(key, v, tasks_per_step) for v in value]
    if value < 0:
        raise ConfigError(f"scheduler.{key}={value} must be 0 or more episodes")
    steps = round(value / tasks_per_step)
    if steps * tasks_per_step != value:
        log.info("scheduler.%s=%s episodes is %s optimiser steps of %d episodes (rounded)",
                 key, value, steps, tasks_per_step)
    return steps if key in ("total_iters", "milestones") else max(1, steps)


def build_scheduler(node: DictConfig, optimizer: torch.optim.Optimizer,
                    tasks_per_step: int) -> torch.optim.lr_scheduler.LRScheduler:
    """Instantiate a conf/scheduler option (`_partial_: true`) with its lengths in optimiser steps.

    Args:
        node: the scheduler config; lengths (EPISODE_LENGTH_KEYS) are in episodes.
        optimizer: the optimiser it drives.
        tasks_per_step: episodes per optimiser step (trainer.tasks_per_step, at least 1).

    Raises:
        ConfigError: a length that is not a whole number of steps, or a value torch refuses.
    """
    check_role(node, "scheduler", "scheduler", ConfigError)
    # torch takes any gamma, but at or below 0 the learning rate becomes 0 or flips sign at the first
    # decay: the run would train backwards (gradient ascent) without a word.
    if "gamma" in node and not node.gamma > 0:
        raise ConfigError(f"scheduler.gamma={node.gamma}: the factor the learning rate is multiplied "
                          "by at each decay must be above 0 (e.g. 0.5)")
    lengths = {key: episodes_to_steps(key, node[key], tasks_per_step)
               for key in EPISODE_LENGTH_KEYS if key in node}
    from fewshot_cli.tasks.build import refused_settings_in_words  # build imports the engine

    return refused_settings_in_words(lambda: instantiate(node, **lengths)(optimizer=optimizer),
                                     "scheduler", node)


def restore_schedule(scheduler: torch.optim.lr_scheduler.LRScheduler, saved: dict[str, Any],
                     optimizer: torch.optim.Optimizer) -> None:
    """Move a scheduler built from the current config to the position saved in a checkpoint.

    The checkpoint's schedule settings (its lengths, gamma, eta_min, base learning rates) are not
    restored: the current config's are kept and every change is logged. The learning rate is set to
    the current schedule's closed-form value at the saved position. A scheduler without a closed
    form cannot be moved that way, so it is restored whole from the checkpoint (logged).

    Args:
        scheduler: built by build_scheduler from this run's config.
        saved: the checkpoint's `scheduler.state_dict()`.
        optimizer: the scheduler's optimiser, already restored from the checkpoint.
    """
    if not hasattr(scheduler, "_get_closed_form_lr"):
        log.warning("%s has no closed form: its settings are restored from the checkpoint as they "
                    "were (a changed trainer.max_episodes does not reach it)", type(scheduler).__name__)
        scheduler.load_state_dict(saved)
        return
    changed = [f"{key} {saved[key]} -> {value}" for key, value in _settings(scheduler).items()
               if key in saved and saved[key] != value]
    scheduler.last_epoch = int(saved["last_epoch"])
    scheduler._step_count = int(saved.get("_step_count", scheduler.last_epoch + 1))
    for group, base_lr, lr in zip(optimizer.param_groups, scheduler.base_lrs,
                                  scheduler._get_closed_form_lr(), strict=True):
        group["initial_lr"] = base_lr  # optimizer.load_state_dict brought back the old one
        group["lr"] = lr
    scheduler._last_lr = [group["lr"] for group in optimizer.param_groups]
    if changed:
        log.info("resumed schedule follows the current config (%s); learning rate now %.3g at "
                 "optimiser step %d", ", ".join(changed), scheduler._last_lr[0], scheduler.last_epoch)


def _settings(scheduler: torch.optim.lr_scheduler.LRScheduler) -> dict[str, Any]:
    """The settings a config can change (lengths in steps, factors, base rates), by state_dict name."""
    state = scheduler.state_dict()
    return {key: state[key] for key in (*EPISODE_LENGTH_KEYS, *SETTING_KEYS) if key in state}
