"""`fewshot train resume_from=.../last.pt`: continue the saved run under its own config.

A user resuming a killed run should not have to repeat its overrides, so the checkpoint's config is
the base; command-line overrides of plain keys (e.g. `trainer.max_episodes=60000`) still apply, and
paths and device always come from the current command. Switching a config group (method=, dataset=)
would make the checkpoint meaningless, so it is refused.
"""

from typing import Any

from omegaconf import DictConfig, OmegaConf

from fewshot_cli.errors import ConfigError

ALWAYS_FROM_COMMAND = ("paths", "device", "logger", "resume_from")
GROUPS_FIXED_BY_CHECKPOINT = ("dataset", "method", "backbone", "episodes", "optimizer", "scheduler",
                              "experiment")


def merge_resume_config(current: DictConfig, saved: dict[str, Any], overrides: list[str]) -> DictConfig:
    """The config of a resumed run.

    Args:
        current: the config composed for this command.
        saved: the checkpoint's config (unresolved container).
        overrides: this command's task overrides as Hydra received them (`key=value` strings).
    """
    # The checkpoint's values win; keys it predates (added to the schema since it was written) come
    # from this command's config, so an older last.pt still resumes. Group nodes are the
    # checkpoint's own, key for key: filling them from the current (possibly other) option would
    # mix two options' keys.
    defaults = OmegaConf.to_container(current)
    for group in GROUPS_FIXED_BY_CHECKPOINT:
        if group in saved:
            defaults.pop(group, None)
    merged = OmegaConf.merge(OmegaConf.create(defaults), OmegaConf.create(saved))
    for key in ALWAYS_FROM_COMMAND:
        merged[key] = current[key]
    for override in overrides:
        key = override.split("=", 1)[0].lstrip("+~")
        root = key.split(".", 1)[0]
        if root in ALWAYS_FROM_COMMAND or key.startswith("hydra"):
            continue
        if "." not in key and root in GROUPS_FIXED_BY_CHECKPOINT:
            raise ConfigError(
                f"cannot change {root}= when resuming: the checkpoint was trained with "
                f"{root}={_choice(saved, root)}; drop {override!r} or start a new run"
            )
        OmegaConf.update(merged, key, OmegaConf.select(current, key), force_add=True)
    return merged


def _choice(saved: dict[str, Any], group: str) -> str:
    node = saved.get(group)
    if isinstance(node, dict):
        return str(node.get("name") or node.get("_target_", "?")).rsplit(".", 1)[-1]
    return "its saved value"
