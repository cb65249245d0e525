"""Guard for `_target_` values read from files this process did not write (checkpoints).

`hydra.utils.instantiate` imports and calls whatever `_target_` names, and people share checkpoints,
so a `best.pt` whose config says `_target_: torch.load` (or `torch.save`, or any function of any
installed package) would run it during `fewshot eval`, `predict` or a resume. Loading a checkpoint
must run nothing but this project's own constructors, so every `_target_` in its config, nested ones
included, is checked before anything is instantiated:

* the node's place in the config fixes its role (`method`, `dataset`, `backbone`, `optimizer`,
  `scheduler`; a `_target_` nested inside a role node is a network part, e.g. `method.backbone`);
* the target must be a literal dotted path inside the modules allowed for that role, so no other
  module is ever imported (importing a module can run code);
* it must name a class (never a function) that subclasses the role's base class.
"""

import importlib
import inspect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from omegaconf import OmegaConf

from fewshot_cli.errors import CheckpointError, FewShotError


@dataclass(frozen=True)
class TargetRole:
    """Where a `_target_` may point for one config role."""

    modules: tuple[str, ...]   # module names, or prefixes ending in "." (a package's modules)
    base: str                  # "module:Class" of the base class the target must subclass
    what: str                  # for messages, e.g. "a few-shot method"


NETWORK_PART = TargetRole(("fewshot_cli.backbones.",), "torch.nn:Module", "a network module")
ROLES: dict[str, TargetRole] = {
    "method": TargetRole(("fewshot_cli.methods.",), "fewshot_cli.methods.base:FewShotMethod",
                         "a few-shot method"),
    "dataset": TargetRole(("fewshot_cli.data.",), "fewshot_cli.data.base:FewShotDataset",
                          "a few-shot dataset"),
    "backbone": NETWORK_PART,
    "optimizer": TargetRole(("torch.optim",), "torch.optim:Optimizer", "an optimizer"),
    "scheduler": TargetRole(("torch.optim.lr_scheduler",), "torch.optim.lr_scheduler:LRScheduler",
                            "a learning-rate scheduler"),
}


def check_targets(config: Any, where: str = "config") -> None:
    """Refuse a checkpoint config whose `_target_`s could build anything but our own objects.

    Args:
        config: the checkpoint's config (a plain container, unresolved).
        where: names the file in messages, e.g. "best.pt:config".
    Raises:
        CheckpointError: some `_target_` is outside its role's modules, is not a class, does not
            subclass the role's base class, or sits where no `_target_` belongs. Nothing is imported
            for a target outside the allowed modules, and nothing is instantiated in any case.
    """
    if not isinstance(config, Mapping):
        raise CheckpointError(f"{where} is not a config mapping; the file is not a fewshot-cli checkpoint")
    for key, node in config.items():
        role = ROLES.get(str(key))
        _check_node(node, role, f"{where}.{key}")


def check_role(node: Any, role_name: str, where: str,
               error: type[FewShotError] = CheckpointError) -> None:
    """Check one config node (e.g. the method node about to be instantiated) against its role.

    Raises:
        `error` (CheckpointError by default) as `check_targets` does.
    """
    if OmegaConf.is_config(node):  # plain values: no interpolation is resolved, no ??? raises
        node = OmegaConf.to_container(node, resolve=False)
    _check_node(node, ROLES[role_name], where, error)


def _check_node(node: Any, role: TargetRole | None, where: str,
                error: type[FewShotError] = CheckpointError) -> None:
    """Walk `node`; its own `_target_` must fit `role`, nested ones must be network parts."""
    if isinstance(node, Mapping):
        if "_target_" in node:
            if role is None:
                raise error(f"{where} names _target_={node['_target_']!r}, but no object is built "
                            f"from that part of a config, so it was refused before anything ran")
            _check_target(node["_target_"], role, f"{where}._target_", error)
        for key, value in node.items():
            if key != "_target_":
                _check_node(value, NETWORK_PART if role is not None else None, f"{where}.{key}", error)
    elif isinstance(node, Sequence) and not isinstance(node, str | bytes):
        for index, value in enumerate(node):
            _check_node(value, NETWORK_PART if role is not None else None, f"{where}[{index}]", error)


def _check_target(target: Any, role: TargetRole, where: str, error: type[FewShotError]) -> None:
    refusal = (f"{where}={target!r} is not {role.what} of fewshot-cli (only classes from "
               f"{', '.join(m.rstrip('.') for m in role.modules)} may be built), so it was refused "
               f"before anything ran")
    if not isinstance(target, str) or "." not in target:
        raise error(refusal)
    module_name, _, attribute = target.rpartition(".")
    if not any(module_name == m or (m.endswith(".") and module_name.startswith(m))
               for m in role.modules):
        raise error(refusal)  # never import a module outside the allowlist
    try:
        found = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as missing:
        raise error(f"{where}={target!r} does not exist in this version of fewshot-cli "
                    f"({missing}); was it written by another version?") from missing
    base_module, _, base_name = role.base.partition(":")
    base = getattr(importlib.import_module(base_module), base_name)
    if not (inspect.isclass(found) and issubclass(found, base)):
        raise error(refusal)
