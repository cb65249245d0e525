"""The "Common keys" part of `fewshot <command> --help`, written from the comments in conf/*.yaml.

The comment above a key (touching it, same indentation) or after it on its line is that key's help,
so the descriptions live in one place, beside the defaults they describe, and cannot drift from
them. Listed: the command's primary config (conf/<command>.yaml) and the config files chosen for
HELP_GROUPS (so `fewshot train dataset=image_folder --help` shows image_folder's keys), each key with
its composed value. Hydra renders the help template through the `fewshot_key_help` resolver
(conf/hydra/default.yaml, `help.template`).
"""

import importlib.resources
import importlib.util
import re
import textwrap
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf

from fewshot_cli.config.locate import PACKAGED_CONFIG_PACKAGE, source_config_dir

# Config groups whose chosen file's keys are listed, in this order (experiment presets, sweeps and
# searches are whole-config recipes, listed by --help's "Configuration groups" part instead).
HELP_GROUPS = ("dataset", "episodes", "method", "backbone", "optimizer", "scheduler", "device", "paths")
KEY_LINE = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z_]\w*):(?P<rest>.*)$")
SKIPPED_KEYS = {"defaults"}  # the defaults list is the groups' business, not a key to override
KEY_WIDTH = 36  # column where descriptions start
LINE_WIDTH = 100


@dataclass
class KeyComment:
    """One key of a YAML file: its dotted path, raw value text and comment (joined lines)."""

    key: str
    raw_value: str
    comment: str
    mapping: bool  # a node with keys below it (its comment describes them all)


def split_comment(rest: str) -> tuple[str, str]:
    """`" 20000   # text"` -> ("20000", "text"): a '#' after whitespace, outside quotes, starts it."""
    quote = None
    for index, char in enumerate(rest):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (index == 0 or rest[index - 1].isspace()):
            return rest[:index].strip(), rest[index + 1:].strip()
    return rest.strip(), ""


def commented_keys(text: str, prefix: str = "") -> list[KeyComment]:
    """Every key of a YAML file with its comment (the comment lines touching it from above at its
    indentation, then its own line's comment); keys without one have comment ""."""
    entries: list[KeyComment] = []
    path: list[tuple[int, str]] = []  # (indent, key) of the enclosing mappings
    above: list[str] = []
    above_indent = -1
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:
            above = []
            continue
        if stripped.startswith("#"):
            if stripped.startswith("# @package"):
                continue
            indent = len(line) - len(line.lstrip())
            if indent != above_indent:
                above = []
            above_indent = indent
            above.append(stripped.lstrip("#").strip())
            continue
        match = KEY_LINE.match(line)
        if match is None:  # a list item or a continuation line
            above = []
            continue
        indent = len(match["indent"])
        while path and path[-1][0] >= indent:
            path.pop()
        value, trailing = split_comment(match["rest"])
        comment = " ".join([*(above if above_indent == indent else []), trailing]).strip()
        above = []
        dotted = ".".join([*(k for _, k in path), match["key"]])
        path.append((indent, match["key"]))
        if path[0][1] in SKIPPED_KEYS or match["key"].startswith("_"):
            continue
        entries.append(KeyComment(f"{prefix}{dotted}", value, comment, mapping=value == ""))
    return entries


def read_config_file(relative: str) -> str | None:
    """A file of the conf/ Hydra reads (config_path(): the wheel's packaged copy, else the source
    checkout's), or None."""
    if importlib.util.find_spec(PACKAGED_CONFIG_PACKAGE) is not None:
        packaged = importlib.resources.files(PACKAGED_CONFIG_PACKAGE).joinpath(relative)
        return packaged.read_text() if packaged.is_file() else None
    source = source_config_dir() / relative
    return source.read_text() if source.is_file() else None


def help_files(root: DictConfig, command: str) -> list[tuple[str, str]]:
    """(text, key prefix) of the command's primary config and of each chosen HELP_GROUPS file."""
    files = []
    primary = read_config_file(f"{command}.yaml")
    if primary is not None:
        files.append((primary, ""))
    choices = OmegaConf.select(root, "hydra.runtime.choices", default=None) or {}
    for group in HELP_GROUPS:
        choice = choices.get(group)
        text = read_config_file(f"{group}/{choice}.yaml") if choice else None
        if text is not None:
            files.append((text, "" if "# @package _global_" in text else f"{group}."))
    return files


def shown_value(root: DictConfig, entry: KeyComment) -> str:
    """The composed value of a key (after the command line's overrides), else its text in the file."""
    try:
        value = OmegaConf.select(root, entry.key, throw_on_resolution_failure=False)
    except Exception:  # an interpolation that only resolves inside a run (hydra:runtime.output_dir)
        value = None
    if value is None or isinstance(value, DictConfig):
        return entry.raw_value or "null"
    if OmegaConf.is_config(value):
        return str(OmegaConf.to_container(value))
    return str(value).lower() if isinstance(value, bool) else str(value)


def format_entry(name: str, description: str) -> str:
    """`  name   description` wrapped at LINE_WIDTH, the description in its own column."""
    head = f"  {name}"
    body = textwrap.wrap(description, LINE_WIDTH - KEY_WIDTH) or [""]
    if len(head) >= KEY_WIDTH - 1:
        lines = [head] + [" " * KEY_WIDTH + part for part in body]
    else:
        lines = [head.ljust(KEY_WIDTH) + body[0]] + [" " * KEY_WIDTH + part for part in body[1:]]
    return "\n".join(line.rstrip() for line in lines)


def key_help(root: DictConfig, command: str) -> str:
    """The commented keys of `command`'s config, one `key=value  description` entry each; a commented
    mapping whose keys have no comments of their own is one entry listing them."""
    lines, listed = [], set()
    for text, prefix in help_files(root, command):
        entries = commented_keys(text, prefix)
        for entry in entries:
            if entry.key in listed or not entry.comment:
                continue
            if entry.mapping:
                children = [e for e in entries if e.key.startswith(entry.key + ".") and not e.mapping]
                if not children or any(child.comment for child in children):
                    continue  # the children are listed on their own
                name = " ".join(f"{c.key}={shown_value(root, c)}" for c in children)
                listed.update(c.key for c in children)
            else:
                name = f"{entry.key}={shown_value(root, entry)}"
            listed.add(entry.key)
            lines.append(format_entry(name, entry.comment))
    # Hydra fills the help template with string.Template: a literal $ must be doubled.
    return "\n".join(lines).replace("$", "$$")


def _resolve_key_help(command: str, *, _root_: Any) -> str:
    return key_help(_root_, command)


def group_help(command: str) -> str:
    """`group: option, option, ...` for each config group `fewshot <command>` takes (its primary
    config's defaults list), instead of Hydra's $APP_CONFIG_GROUPS, which lists every folder of conf/:
    eval and predict refuse most of those, and debug/train is part of debug= only."""
    from fewshot_cli.config.overrides import command_groups, group_options

    lines = []
    for group in sorted(command_groups(command)):
        if "/" in group or group == "hydra":
            continue
        options = sorted(group_options(group))
        if options:
            lines.append(f"{group}: {', '.join(options)}")
    return "\n".join(lines).replace("$", "$$")


def register_resolver() -> None:
    """`${fewshot_key_help:<command>}` and `${fewshot_groups:<command>}` for the help template
    (idempotent)."""
    if not OmegaConf.has_resolver("fewshot_key_help"):
        OmegaConf.register_new_resolver("fewshot_key_help", _resolve_key_help)
    if not OmegaConf.has_resolver("fewshot_groups"):
        OmegaConf.register_new_resolver("fewshot_groups", group_help)


register_resolver()
