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
* it must name a class (never a function) that subclasses the role's base class; a method from a
  checkpoint must be trainable (a CLIP method has no checkpoint of its own, and it loads files);
* no Hydra special key but `_target_` (and `_partial_` for the optimizer and scheduler, built
  later with their parameters) may change how it is built;
* no string may hide a node: an interpolation in a checkpoint may only refer to another key of the
  config or use the harmless resolvers in SAFE_RESOLVERS (`${oc.create:{_target_: ...}}` would
  otherwise build a node that no check has seen).
Building then checks each node again as instantiate will see it, resolved (`check_role`).
"""

import importlib
import inspect
import re
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


# Resolvers a stored config may use: none of them can make a node that builds anything.
SAFE_RESOLVERS = frozenset({"oc.select", "oc.env", "hydra"})
# Hydra's special keys that a stored config may set, per role: `_partial_` defers the optimizer and
# scheduler until their parameters exist; anything else (`_args_`, `_recursive_`, `_convert_`, or
# `_partial_` elsewhere) changes what instantiate builds.
ALLOWED_SPECIAL_KEYS = {"optimizer": {"_target_", "_partial_"}, "scheduler": {"_target_", "_partial_"}}
INTERPOLATION = re.compile(r"\$\{([^}:]*?)(:|})")


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
    _check_interpolations(config, config, where)
    for key, node in config.items():
        role = ROLES.get(str(key))
        if role is not None and node is not None and not isinstance(node, Mapping):
            raise CheckpointError(f"{where}.{key} is a {type(node).__name__}, not a config node; the "
                                  f"checkpoint was not written by fewshot-cli")
        _check_node(node, role, f"{where}.{key}", trainable_method=key == "method")


def _check_interpolations(node: Any, root: Mapping, where: str) -> None:
    """Every `${...}` in a stored config: a safe resolver, or a reference to a key the config has."""
    if isinstance(node, Mapping):
        for key, value in node.items():
            _check_interpolations(value, root, f"{where}.{key}")
    elif isinstance(node, Sequence) and not isinstance(node, str | bytes):
        for index, value in enumerate(node):
            _check_interpolations(value, root, f"{where}[{index}]")
    elif isinstance(node, str):
        for name, kind in INTERPOLATION.findall(node):
            name = name.strip()
            if kind == ":" and name not in SAFE_RESOLVERS:
                raise CheckpointError(f"{where}={node!r} uses the resolver {name!r}, which a stored "
                                      f"config never needs, so it was refused before anything ran")
            if kind == "}" and not name.startswith(".") and not _has_key(root, name):
                raise CheckpointError(f"{where}={node!r} refers to {name!r}, which the checkpoint's "
                                      f"config does not have; the checkpoint is damaged or crafted")


def _has_key(root: Mapping, dotted: str) -> bool:
    node: Any = root
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return dotted.split(".")[0] == "paths"  # paths always come from the current command
        node = node[part]
    return True


def check_role(node: Any, role_name: str, where: str,
               error: type[FewShotError] = CheckpointError) -> None:
    """Check one config node about to be instantiated against its role, resolved as instantiate
    will see it (so no interpolation can bring in an unchecked node).

    Raises:
        `error` (CheckpointError by default) as `check_targets` does, or for a node that cannot be
        resolved.
    """
    if OmegaConf.is_config(node):
        try:
            node = OmegaConf.to_container(node, resolve=True, throw_on_missing=False)
        except Exception as failure:  # OmegaConf's interpolation and resolver errors
            raise error(f"{where} cannot be resolved ({failure}); refusing to build it") from failure
    _check_node(node, ROLES[role_name], where, error, special_keys=ALLOWED_SPECIAL_KEYS.get(role_name))


def _check_node(node: Any, role: TargetRole | None, where: str,
                error: type[FewShotError] = CheckpointError, trainable_method: bool = False,
                special_keys: set[str] | None = None) -> None:
    """Walk `node`; its own `_target_` must fit `role`, nested ones must be network parts."""
    if isinstance(node, Mapping):
        if role is not None and special_keys is None:
            special_keys = ALLOWED_SPECIAL_KEYS.get(_role_name(role), {"_target_"})
        if "_target_" in node:
            if role is None:
                raise error(f"{where} names _target_={node['_target_']!r}, but no object is built "
                            f"from that part of a config, so it was refused before anything ran")
            found = _check_target(node["_target_"], role, f"{where}._target_", error)
            if trainable_method and not getattr(found, "trainable", True):
                raise error(f"{where}._target_={node['_target_']!r} is a method without trained "
                            f"weights, which no checkpoint holds, so it was refused before anything ran")
            odd = [k for k in node if str(k).startswith("_") and str(k).endswith("_")
                   and k not in (special_keys or {"_target_"})]
            if odd:
                raise error(f"{where} sets {', '.join(map(str, odd))}, which changes how it is built, "
                            f"so it was refused before anything ran")
        for key, value in node.items():
            if key != "_target_":
                _check_node(value, NETWORK_PART if role is not None else None, f"{where}.{key}", error)
    elif isinstance(node, Sequence) and not isinstance(node, str | bytes):
        for index, value in enumerate(node):
            _check_node(value, NETWORK_PART if role is not None else None, f"{where}[{index}]", error)


def _check_target(target: Any, role: TargetRole, where: str, error: type[FewShotError]) -> type:
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
    return found


def _role_name(role: TargetRole) -> str:
    return next((name for name, known in ROLES.items() if known is role and name != "backbone"),
                "backbone")
