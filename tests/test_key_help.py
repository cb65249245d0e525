"""`fewshot <command> --help` takes each key's description from the comment beside it in conf/:
the parser, and that what it lists exists in the composed configs (the help cannot name a key the
config does not have)."""

import pytest
from conftest import compose_config
from omegaconf import OmegaConf

from fewshot_cli.config.key_help import commented_keys, key_help, split_comment

YAML = """# @package _global_
# A file-level header, kept apart from the first key by a blank line.

seed: 0                  # model initialisation
# Above the key, at its indentation:
# two lines joined.
trainer:
  max_episodes: 20000    # training length
  grad_clip: null
  # not touching the key below

  val_every: 1000
name: 'a # b'            # a '#' inside quotes is no comment
defaults:
  - _self_               # the defaults list is skipped
shape:                   # a node described as a whole
  n_way: 5
"""


def test_comments_above_and_beside_keys() -> None:
    entries = {e.key: e for e in commented_keys(YAML)}
    assert entries["seed"].comment == "model initialisation"
    assert entries["trainer"].comment == "Above the key, at its indentation: two lines joined."
    assert entries["trainer"].mapping
    assert entries["trainer.max_episodes"].comment == "training length"
    assert entries["trainer.grad_clip"].comment == ""
    assert entries["trainer.val_every"].comment == ""  # a blank line separates it from the comment
    assert entries["name"].raw_value == "'a # b'" and entries["name"].comment.startswith("a '#' inside")
    assert "defaults" not in entries
    assert entries["shape.n_way"].raw_value == "5"
    assert [e.key for e in commented_keys("a: 1  # x\\n", prefix="dataset.")] == ["dataset.a"]


def test_split_comment() -> None:
    assert split_comment(" 20000   # text") == ("20000", "text")
    assert split_comment(' "#not" # yes') == ('"#not"', "yes")
    assert split_comment(" ${oc.env:X,data}") == ("${oc.env:X,data}", "")
    assert split_comment(" a#b") == ("a#b", "")


@pytest.mark.parametrize("command, overrides", [
    ("train", []), ("train", ["method=maml", "dataset=image_folder", "dataset.root=x"]),
    ("train", ["method=relationnet", "backbone=resnet12", "scheduler=cosine"]),
    ("eval", []), ("predict", []),
])
def test_every_listed_key_is_a_key_of_the_composed_config(command: str, overrides: list[str]) -> None:
    cfg = compose_config(command, overrides, return_hydra_config=True)  # with the group choices
    text = key_help(cfg, command)
    assert "\n  device.type=auto " in text, text  # the chosen groups' files were read
    assert ("\n  dataset.root=" in text) == (command == "train"), text  # eval/predict: no dataset group
    names = [line.split()[0] for line in text.splitlines() if line.startswith("  ") and line[2] != " "]
    assert len(names) >= 8, text
    for name in names:
        for assignment in name.split(" "):
            key = assignment.split("=", 1)[0]
            parent, _, leaf = key.rpartition(".")
            node = OmegaConf.select(cfg, parent) if parent else cfg
            assert node is not None and leaf in node, f"{command} --help lists {key}, not in the config"
