"""Guard for `_target_` values read from files we did not write in this process (checkpoints).

`hydra.utils.instantiate` imports and calls whatever `_target_` names, so a checkpoint could make
`fewshot eval` run arbitrary code. Only this package, torch and torchvision are allowed.
"""

from collections.abc import Mapping, Sequence
from typing import Any

from fewshot_cli.errors import CheckpointError

ALLOWED_TARGET_PREFIXES = ("fewshot_cli.", "torch.", "torchvision.")


def check_targets(node: Any, where: str = "config") -> None:
    """Raise CheckpointError if any `_target_` below `node` names code outside the allowed packages."""
    if isinstance(node, Mapping):
        for key, value in node.items():
            if key == "_target_" and not (
                isinstance(value, str) and value.startswith(ALLOWED_TARGET_PREFIXES)
            ):
                raise CheckpointError(
                    f"{where} names _target_={value!r}; only targets in "
                    f"{', '.join(p.rstrip('.') for p in ALLOWED_TARGET_PREFIXES)} are instantiated"
                )
            check_targets(value, f"{where}.{key}")
    elif isinstance(node, Sequence) and not isinstance(node, str):
        for index, value in enumerate(node):
            check_targets(value, f"{where}[{index}]")
