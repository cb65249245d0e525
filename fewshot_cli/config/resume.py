"""`fewshot train resume_from=.../last.pt`: continue the saved run under its own config.

A user resuming a killed run should not have to repeat its overrides, so the checkpoint's config is
the base; command-line overrides of plain keys (e.g. `trainer.max_episodes=60000`) still apply, and
paths and device always come from the current command. The same command line plus `resume_from=`
is accepted: a group choice (method=, dataset=, experiment=, ...) that names what the checkpoint was
trained with changes nothing; switching to another option would make the checkpoint meaningless, so
only that is refused.
"""

from typing import Any

from omegaconf import DictConfig, OmegaConf

from fewshot_cli.config.overrides import option_name, preset_keys
from fewshot_cli.errors import ConfigError
from fewshot_cli.methods.names import method_name

ALWAYS_FROM_COMMAND = ("paths", "device", "logger", "resume_from")
GROUPS_FIXED_BY_CHECKPOINT = ("dataset", "method", "backbone", "episodes", "optimizer", "scheduler",
                              "experiment")
# Budget presets (`debug=fast`): typed again on resume, the keys they set are this command's, like
# typed keys; they change no model, data or episode shape.
PRESET_GROUPS = ("debug",)


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
            changed = _changed_by_choice(current, saved, root)
            if changed:
                raise ConfigError(
                    f"cannot change {root}= when resuming: the checkpoint was trained with "
                    f"{changed}; drop {override!r} or start a new run"
                )
            continue  # the checkpoint's own choice: its values stay
        if "." not in key and root in PRESET_GROUPS:
            for preset_key in preset_keys(root, override.split("=", 1)[1]):
                OmegaConf.update(merged, preset_key, OmegaConf.select(current, preset_key), force_add=True)
            continue
        OmegaConf.update(merged, key, OmegaConf.select(current, key), force_add=True)
    return merged


# What each group choice decides, compared between this command and the checkpoint: the class a
# node builds (and the dataset's name), or the episode shapes. An experiment decides all of them.
IDENTITY_KEYS = {
    "method": ("method._target_",),
    "backbone": ("backbone._target_",),
    "dataset": ("dataset._target_", "dataset.name"),
    "optimizer": ("optimizer._target_",),
    "scheduler": ("scheduler._target_",),
    "episodes": tuple(f"{node}.{field}" for node in ("train_episodes", "eval_episodes")
                      for field in ("n_way", "n_shot", "n_query")),
}
IDENTITY_KEYS["experiment"] = (*IDENTITY_KEYS["method"], *IDENTITY_KEYS["dataset"])


def _changed_by_choice(current: DictConfig, saved: dict[str, Any], group: str) -> str:
    """'' when choosing `group` this way names the checkpoint's own option, else what it trained with."""
    saved_config = OmegaConf.create(saved)
    differs = []
    for key in IDENTITY_KEYS[group]:
        was = OmegaConf.select(saved_config, key, default=None, throw_on_resolution_failure=False)
        now = OmegaConf.select(current, key, default=None, throw_on_resolution_failure=False)
        if was is not None and was != now:
            differs.append(_readable(key, was, saved))
    return ", ".join(dict.fromkeys(differs))


def _readable(key: str, value: Any, saved: dict[str, Any]) -> str:
    """The saved choice as a user types it: method=protonet, dataset=omniglot, ..."""
    if key == "method._target_":
        return f"method={method_name(saved.get('method'))}"
    if key.startswith("dataset."):
        return f"dataset={(saved.get('dataset') or {}).get('name', value)}"
    if key.endswith("._target_"):
        group = key.split(".")[0]
        return f"{group}={option_name(group, str(value)) or str(value).rsplit('.', 1)[-1]}"
    return f"{key}={value}"
