"""Command-line overrides: writing one back (quoted) and refusing keys the config does not have.

Unknown keys. Hydra rejects `trainer.max_episodez=5` but its hint says to use `+trainer.max_episodez=5`,
which then composes (struct mode is lifted for `+`) and is silently ignored. So `fewshot` checks each
override key before Hydra runs, without composing the config (that would double the start-up cost):

- keys under the typed schema nodes (fewshot_cli/config/schema.py: trainer, eval, device, paths,
  logger, train_episodes, eval_episodes) and top-level keys are checked against the schema fields,
  with `+` and `++` too: an added field is never read by any code;
- keys one level under a group node (dataset, method, backbone, optimizer, scheduler) are checked,
  without `+`, against the keys of every option of that group (conf/<group>/*.yaml): a key that no
  option has cannot be right, whichever option is chosen. A key some other option has is left to
  Hydra's own error. `+dataset.download=false` and the like stay allowed: `fewshot eval` documents
  it (a key over the checkpoint's dataset node) and group targets may take keys their YAML omits;
- `fewshot predict` (no schema) gets its top-level keys from conf/predict.yaml and the device/paths
  schemas; `hydra.*`, group paths (`hydra/launcher=...`), `@package` overrides, deletions and deeper
  keys are Hydra's.
"""

import difflib
import importlib.resources
import importlib.util
import io
import re
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import fields, is_dataclass
from functools import cache
from typing import Any

import yaml
from hydra._internal.utils import get_args_parser
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException

from fewshot_cli.config.locate import PACKAGED_CONFIG_PACKAGE, source_config_dir
from fewshot_cli.config.schema import DeviceSchema, EvalConfigSchema, PathsSchema, TrainConfigSchema
from fewshot_cli.errors import ConfigError

# A path Hydra reads back unquoted as the same string (the '/' keeps `null`, `1e3` from being read
# as other types) and a POSIX shell passes unchanged.
_PLAIN_VALUE = re.compile(r"[\w.\-]*/[\w./\-]*")
GROUP = "group"  # a node whose keys depend on the chosen config option
LEAF = "leaf"


def quote_override(key: str, value: str) -> str:
    """`key=value` as Hydra parses back to exactly `value` (paths with spaces, '=', ',', quotes).

    The result is one shell word only after shlex.quote; a plain value stays unquoted.
    """
    if _PLAIN_VALUE.fullmatch(value):
        return f"{key}={value}"
    # Hydra's quoted strings: backslashes are literal except before a quote (or the closing quote),
    # where 2N of them stand for N; `${` would start an OmegaConf interpolation.
    escaped = re.sub(r'(\\*)"', lambda m: m.group(1) * 2 + '\\"', value)
    escaped = re.sub(r"(\\+)$", lambda m: m.group(1) * 2, escaped).replace("${", "\\${")
    return f'{key}="{escaped}"'


def check_override_keys(command: str, args: list[str]) -> None:
    """Raise ConfigError naming the first override of `fewshot <command> args` whose key the
    command's config cannot have (see the module docstring for which keys are checked)."""
    tree = _command_tree(command)
    if tree is None:
        return
    try:
        # Hydra's own argument parser, silenced: on bad flags (and --version) Hydra answers itself.
        with redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):
            texts = get_args_parser().parse_args(args).overrides
    except SystemExit:
        return
    parser = OverridesParser.create()
    groups = _group_names()
    for text in texts:
        try:
            override = parser.parse_override(text)
        except HydraException:
            continue  # a syntax error: Hydra reports it with its own message
        key = override.key_or_group
        if (override.is_delete() or override.package is not None or "/" in key
                or key.split(".")[0] == "hydra"):
            continue
        if key in groups:
            _check_group_applies(command, key, override)
            _check_option(key, override)
        _check_key(key.split("."), tree, groups, adds=override.is_add() or override.is_force_add())


def add_to_checkpoint_nodes(command: str, args: list[str]) -> list[str]:
    """`args` with a `+` put before `dataset.root=DIR`-like overrides that `fewshot <command>` can only
    add: eval's dataset, method and backbone groups default to null (the checkpoint brings them), so
    Hydra refuses `dataset.root=DIR` ("Key 'root' is not in struct") and wants `+dataset.root=DIR`.
    Unchanged where the group is chosen on the command line (`dataset=mnist dataset.root=...`)."""
    null_groups = _null_groups(command)
    if not null_groups:
        return args
    parser = OverridesParser.create()
    parsed = []
    for text in args:
        try:
            parsed.append(None if text.startswith("-") else parser.parse_override(text))
        except HydraException:
            parsed.append(None)
    chosen = {o.key_or_group for o in parsed if o is not None and "." not in o.key_or_group}
    result = []
    for text, override in zip(args, parsed, strict=True):
        head = override.key_or_group.split(".")[0] if override is not None else ""
        if (override is not None and head in null_groups - chosen and "." in override.key_or_group
                and not (override.is_add() or override.is_force_add() or override.is_delete())
                and override.package is None):
            text = "+" + text
        result.append(text)
    return result


@cache
def _null_groups(command: str) -> frozenset[str]:
    """Groups that conf/<command>.yaml's defaults list leaves empty (`- dataset: null`)."""
    path = _config_root() / f"{command}.yaml"
    if not path.is_file():
        return frozenset()
    primary = yaml.safe_load(path.read_text()) or {}
    return frozenset(key for entry in primary.get("defaults", []) if isinstance(entry, dict)
                     for key, value in entry.items() if value is None)


def _check_option(group: str, override: Any) -> None:
    """`experiment=totally_bogus_name` must not train the defaults silently: Hydra skips an unknown
    option of an `optional` group (experiment, hparams_search, sweep) without a word."""
    from hydra.core.override_parser.types import ChoiceSweep

    value = override.value()
    if isinstance(value, ChoiceSweep):
        names = [str(v) for v in value.list]
    elif isinstance(value, str):
        names = [value]
    else:
        return  # null, glob(...), ranges: Hydra's own handling
    options = _group_options(group)
    for name in names:
        if options and name not in options:
            close = difflib.get_close_matches(name, sorted(options), n=1)
            hint = (f"did you mean {group}={close[0]}?" if close
                    else f"choose one of {', '.join(sorted(options))}")
            raise ConfigError(f"{group}={name} is not an option of {group} (conf/{group}/); {hint}")


def _check_group_applies(command: str, group: str, override: Any) -> None:
    """`fewshot predict debug=fast` (or `fewshot eval experiment=...`) names a group the command's
    primary config does not list: Hydra would say "No match in the defaults list" and suggest
    `+debug=fast`, which composes and is never read."""
    listed = _command_groups(command)
    if listed and group not in listed and not (override.is_add() or override.is_force_add()):
        raise ConfigError(f"{group}= does not apply to `fewshot {command}`; its config groups are "
                          f"{', '.join(sorted(listed))}")


def command_groups(command: str) -> set[str]:
    """Config groups `fewshot <command>` takes (its primary config's defaults list)."""
    return set(_command_groups(command))


def group_options(group: str) -> set[str]:
    """Option names of conf/<group>/ (empty when there is no such folder)."""
    return set(_group_options(group))


@cache
def _command_groups(command: str) -> set[str]:
    """Config groups in the defaults list of conf/<command>.yaml (`optional` ones included)."""
    primary = yaml.safe_load((_config_root() / f"{command}.yaml").read_text()) or {}
    return {key.split()[-1].split("@")[0] for entry in primary.get("defaults", [])
            if isinstance(entry, dict) for key in entry}


@cache
def _group_options(group: str) -> set[str]:
    """Option names of conf/<group>/ (file names without .yaml)."""
    folder = _config_root() / group
    if not folder.is_dir():
        return set()
    return {entry.name.removesuffix(".yaml") for entry in folder.iterdir() if entry.name.endswith(".yaml")}


def _check_key(parts: list[str], tree: dict[str, Any], groups: set[str], adds: bool) -> None:
    if len(parts) == 1 and parts[0] in groups:
        return  # a config group choice, e.g. `method=maml`
    node: Any = tree
    for depth, part in enumerate(parts):
        if node == GROUP:
            options = _group_keys(parts[depth - 1]) if depth == 1 else set()
            if depth == 1 and options and not adds and part not in options:
                raise _unknown(parts, depth, options)
            return
        if node == LEAF:
            return  # a key under a plain value: Hydra's error says so
        if part not in node:
            raise _unknown(parts, depth, set(node) | (groups if depth == 0 else set()))
        node = node[part]


def _unknown(parts: list[str], depth: int, known: set[str]) -> ConfigError:
    key, parent = ".".join(parts), ".".join(parts[:depth])
    close = difflib.get_close_matches(parts[depth], sorted(known), n=1)
    if close:
        return ConfigError(f"unknown key {key}; did you mean "
                           f"{'.'.join([*parts[:depth], close[0], *parts[depth + 1:]])}?")
    where = f"{parent} has" if parent else "the top-level keys are"
    return ConfigError(f"unknown key {key}; {where} {', '.join(sorted(known))}")


def _schema_tree(schema: type) -> dict[str, Any]:
    """Field name -> subtree (a dataclass), GROUP (`Any`: a config group's node) or LEAF."""
    return {f.name: _schema_tree(f.type) if is_dataclass(f.type) else GROUP if f.type is Any else LEAF
            for f in fields(schema)}


@cache
def _command_tree(command: str) -> dict[str, Any] | None:
    if command == "train":
        return _schema_tree(TrainConfigSchema)
    if command == "eval":
        return _schema_tree(EvalConfigSchema)
    if command == "predict":
        primary = yaml.safe_load((_config_root() / "predict.yaml").read_text())
        tree = {key: LEAF for key in primary if key != "defaults"}
        return {**tree, "device": _schema_tree(DeviceSchema), "paths": _schema_tree(PathsSchema)}
    return None


def _config_root() -> Any:
    """conf/ of the installed wheel (a package resource) or of the source checkout (see locate.py)."""
    if importlib.util.find_spec(PACKAGED_CONFIG_PACKAGE) is not None:
        return importlib.resources.files(PACKAGED_CONFIG_PACKAGE)
    return source_config_dir()


@cache
def _group_names() -> set[str]:
    return {entry.name for entry in _config_root().iterdir()
            if entry.is_dir() and not entry.name.startswith(("_", "."))}


@cache
def _group_keys(group: str) -> set[str]:
    """Every top-level key of every option of `group` (empty when the group has no options)."""
    folder = _config_root() / group
    if not folder.is_dir():
        return set()
    keys: set[str] = set()
    for option in folder.iterdir():
        if option.name.endswith(".yaml"):
            keys.update(k for k in (yaml.safe_load(option.read_text()) or {}) if k != "defaults")
    return keys


def preset_keys(group: str, option: str) -> list[str]:
    """Dotted keys that the `@package _global_` preset `group=option` sets (defaults lists and
    `override` lines excluded), its nested groups' options of that name included:
    `debug=fast` -> trainer.max_episodes, ..., eval.n_episodes (conf/debug/fast.yaml and
    conf/debug/train/fast.yaml)."""
    folder = _config_root() / group
    files = [folder / f"{option}.yaml"]
    if folder.is_dir():
        files += [entry / f"{option}.yaml" for entry in folder.iterdir() if entry.is_dir()]
    keys: list[str] = []
    for file in files:
        if file.is_file():
            keys += _leaf_keys({k: v for k, v in (yaml.safe_load(file.read_text()) or {}).items()
                                if k != "defaults"})
    return keys


def _leaf_keys(node: dict[str, Any], prefix: str = "") -> list[str]:
    keys: list[str] = []
    for key, value in node.items():
        path = f"{prefix}{key}"
        keys += _leaf_keys(value, f"{path}.") if isinstance(value, dict) else [path]
    return keys


EPISODE_NODES = ("train_episodes", "eval_episodes")


def typed_shapes_are_exact(cfg: Any, overrides: list[str]) -> None:
    """Turn `fit_to_split` off for an episode shape typed on the command line
    (`train_episodes.n_way=60`, `eval_episodes.n_query=5`).

    Each method's default shape fits itself to a small dataset (conf/episodes/<method>.yaml); a
    shape the user typed is what they asked for, so a split too small for it stays an error.

    Args:
        cfg: the composed config (changed in place).
        overrides: the command's task overrides as Hydra received them.
    """
    typed = {text.lstrip("+~").split("=", 1)[0] for text in overrides}
    for node in EPISODE_NODES:
        if typed & {f"{node}.{field}" for field in ("n_way", "n_shot", "n_query")} and cfg.get(node):
            cfg[node].fit_to_split = False


@cache
def option_name(group: str, target: str) -> str | None:
    """The option of conf/<group>/ whose `_target_` is `target` (`scheduler`, StepLR -> 'step'), so
    messages name a choice as users type it; None when no option builds that class."""
    folder = _config_root() / group
    if not folder.is_dir():
        return None
    for option in sorted(folder.iterdir(), key=lambda entry: entry.name):
        if option.name.endswith(".yaml"):
            node = yaml.safe_load(option.read_text()) or {}
            if isinstance(node, dict) and node.get("_target_") == target:
                return option.name.removesuffix(".yaml")
    return None
