"""A shared checkpoint must never run anything but fewshot-cli's own constructors.

Each route a crafted `best.pt` could take (`config.method`, a nested `method.backbone`,
`config.dataset`, the optimizer and scheduler of a resume) with each dangerous target (torch.load of
a pickle that runs code, torch.save writing a file, cpp_extension.load_inline, a function of our own
package, a class of the wrong kind) is refused, and the tests check that nothing ran: the marker
files the payloads would write do not exist. The CLI routes (eval, predict, resume) run as a user
runs them, in subprocesses.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fewshot_cli.config.targets import check_role
from fewshot_cli.engine.checkpoint import load_checkpoint, save_checkpoint
from fewshot_cli.errors import CheckpointError, ConfigError

GOOD_CONFIG = {
    "seed": 0,
    "dataset": {"_target_": "fewshot_cli.data.omniglot.Omniglot", "name": "omniglot",
                "root": "${paths.data_dir}", "cache_dir": "${paths.cache_dir}", "channels": 1,
                "test_episodes": 1000, "image_size": 28},
    "backbone": {"_target_": "fewshot_cli.backbones.conv4.Conv4"},
    "method": {"_target_": "fewshot_cli.methods.protonet.PrototypicalNetworks", "backbone": "${backbone}"},
    "optimizer": {"_target_": "torch.optim.Adam", "_partial_": True, "lr": 1e-3},
    "scheduler": {"_target_": "torch.optim.lr_scheduler.StepLR", "_partial_": True, "step_size": 2000},
    "eval_episodes": {"n_way": 5, "n_shot": 1, "n_query": 5},
}


class WritesMarker:
    """Unpickling this object creates a file: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def crafted_payloads(tmp_path: Path) -> dict[str, tuple[dict, Path]]:
    """Dangerous target nodes, each with the file it would create if it ran."""
    pickle_marker = tmp_path / "pickle_ran"
    pickle_file = tmp_path / "payload.pt"
    torch.save(WritesMarker(pickle_marker), pickle_file)
    save_target = tmp_path / "written_by_torch_save"
    inline_marker = tmp_path / "inline_build"
    return {
        "torch.load": ({"_target_": "torch.load", "f": str(pickle_file), "weights_only": False},
                       pickle_marker),
        "torch.save": ({"_target_": "torch.save", "obj": 1, "f": str(save_target)}, save_target),
        "load_inline": ({"_target_": "torch.utils.cpp_extension.load_inline", "name": "x",
                         "cpp_sources": "", "build_directory": str(inline_marker)}, inline_marker),
        # A function of this package is no constructor either: it would write the file.
        "own_function": ({"_target_": "fewshot_cli.engine.checkpoint.save_checkpoint",
                          "path": str(tmp_path / "own_function_ran"), "payload": {}},
                         tmp_path / "own_function_ran"),
        # A class, but not a few-shot one: torch.nn.Module would build, then be used.
        "wrong_class": ({"_target_": "torch.nn.Linear", "in_features": 1, "out_features": 1},
                        tmp_path / "never_written"),
    }


def crafted_checkpoint(path: Path, route: str, node: dict) -> Path:
    config = {key: dict(value) if isinstance(value, dict) else value for key, value in GOOD_CONFIG.items()}
    if route == "method.backbone":
        config["method"] = {**config["method"], "backbone": node}
    else:
        config[route] = node
    save_checkpoint(path, {"model": {}, "episode": 10, "state": {"step": 10}, "config": config,
                           "rng": {"torch": torch.get_rng_state()}})
    return path


ROUTES = ["method", "method.backbone", "dataset", "backbone", "optimizer", "scheduler"]
TARGETS = ["torch.load", "torch.save", "load_inline", "own_function", "wrong_class"]


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("target", TARGETS)
def test_every_route_and_target_is_refused_before_anything_runs(route: str, target: str,
                                                                 tmp_path: Path) -> None:
    node, marker = crafted_payloads(tmp_path)[target]
    path = crafted_checkpoint(tmp_path / "best.pt", route, node)
    with pytest.raises(CheckpointError, match=r"refused before anything ran"):
        load_checkpoint(path)
    assert not marker.exists()


def test_a_target_outside_the_allowed_modules_is_never_imported(tmp_path: Path) -> None:
    """Importing a module can run code, so the module itself must not be imported."""
    path = crafted_checkpoint(tmp_path / "best.pt", "method", {"_target_": "antigravity.geohash"})
    with pytest.raises(CheckpointError, match=r"not a few-shot method"):
        load_checkpoint(path)
    assert "antigravity" not in sys.modules


def test_a_target_where_nothing_is_built_is_refused(tmp_path: Path) -> None:
    path = crafted_checkpoint(tmp_path / "best.pt", "callbacks", [{"_target_": "builtins.eval"}])
    with pytest.raises(CheckpointError, match=r"no object is built"):
        load_checkpoint(path)


def test_the_project_s_own_checkpoint_config_passes(tmp_path: Path) -> None:
    path = crafted_checkpoint(tmp_path / "best.pt", "seed", 0)
    assert load_checkpoint(path)["config"]["method"]["_target_"].endswith("PrototypicalNetworks")


def test_a_method_node_from_the_command_line_is_checked_before_it_is_called(tmp_path: Path) -> None:
    marker = tmp_path / "written"
    with pytest.raises(ConfigError, match=r"not a few-shot method"):
        check_role({"_target_": "torch.save", "obj": 1, "f": str(marker)}, "method", "method", ConfigError)
    assert not marker.exists()


def _cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("HYDRA_FULL_ERROR", "PYTHONPATH")}
    return subprocess.run([sys.executable, "-m", "fewshot_cli", *args], cwd=cwd, env=env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300)


@pytest.mark.slow
@pytest.mark.parametrize(("command", "route"), [("eval", "method"), ("predict", "method.backbone"),
                                                ("train", "dataset"), ("train", "optimizer")])
def test_cli_commands_refuse_a_crafted_checkpoint(command: str, route: str, tmp_path: Path) -> None:
    node, marker = crafted_payloads(tmp_path)["torch.save"]
    ckpt = crafted_checkpoint(tmp_path / "best.pt", route, node)
    support = tmp_path / "support" / "a"
    support.mkdir(parents=True)
    argument = {"eval": [f"ckpt_path={ckpt}"],
                "predict": [f"ckpt_path={ckpt}", f"support_dir={support.parent}", f"query={support}"],
                "train": [f"resume_from={ckpt}"]}[command]
    result = _cli([command, *argument, "device=cpu", f"hydra.run.dir={tmp_path / 'run'}"], tmp_path)
    assert result.returncode == 2, result.stdout
    assert "refused before anything ran" in result.stdout
    assert "Traceback" not in result.stdout
    assert not marker.exists()


# ------------------------------------------------------------------ nodes hidden in strings and keys
# Found by trying to break the first fix: a string that an OmegaConf resolver turns into a node was not
# checked (`${oc.create:{_target_: torch.load, ...}}` ran the pickle during eval, predict and resume).

@pytest.mark.parametrize(("route", "value", "message"), [
    ("method.backbone", "${oc.create:{_target_: torch.save, obj: 1, f: MARKER}}", "resolver 'oc.create'"),
    ("method.backbone", "${oc.decode:'{_target_: torch.save, obj: 1, f: MARKER}'}", "resolver 'oc.decode'"),
    ("dataset", {"_target_": "fewshot_cli.data.omniglot.Omniglot", "name": "omniglot", "root": "x",
                 "cache_dir": "y", "extra": "${oc.create:{_target_: torch.save, obj: 1, f: MARKER}}"},
     "resolver 'oc.create'"),
    ("method.backbone", "${stash}", "refers to 'stash', which the checkpoint's config does not have"),
    ("method", {"_target_": "fewshot_cli.methods.protonet.PrototypicalNetworks", "_partial_": True},
     "sets _partial_"),
    ("method", {"_target_": "fewshot_cli.methods.protonet.PrototypicalNetworks", "_recursive_": False,
                "backbone": "${backbone}"}, "sets _recursive_"),
    ("method", "just a string", "is a str, not a config node"),
    ("method", {"_target_": "fewshot_cli.methods.clip_zero_shot.CLIPZeroShot", "model": "MARKER"},
     "a method without trained weights"),
])
def test_nodes_hidden_in_strings_and_special_keys_are_refused(route: str, value, message: str,
                                                              tmp_path: Path) -> None:
    marker = tmp_path / "written"

    def with_marker(v):
        if isinstance(v, str):
            return v.replace("MARKER", str(marker))
        return {k: with_marker(x) for k, x in v.items()} if isinstance(v, dict) else v

    path = crafted_checkpoint(tmp_path / "best.pt", route, with_marker(value))
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path)
    assert not marker.exists()


def test_a_reference_to_another_role_is_caught_when_resolved_for_building() -> None:
    """`method.backbone: ${optimizer}` names a key the config has, so it passes the load check; the
    node instantiate would see (an optimizer where a network belongs) is refused at build time."""
    from omegaconf import OmegaConf

    method = {**GOOD_CONFIG["method"], "backbone": "${optimizer}"}
    config = OmegaConf.create({**GOOD_CONFIG, "method": method})
    with pytest.raises(ConfigError, match=r"method.backbone._target_='torch.optim.Adam' is not a network"):
        check_role(config.method, "method", "method", ConfigError)


@pytest.mark.slow
def test_cli_eval_refuses_a_node_hidden_in_a_string(tmp_path: Path) -> None:
    pickle_marker = tmp_path / "pickle_ran"
    torch.save(WritesMarker(pickle_marker), tmp_path / "payload.pt")
    ckpt = crafted_checkpoint(tmp_path / "best.pt", "method.backbone",
                              f"${{oc.create:{{_target_: torch.load, f: {tmp_path / 'payload.pt'}, "
                              f"weights_only: false}}}}")
    result = _cli(["eval", f"ckpt_path={ckpt}", "device=cpu", f"hydra.run.dir={tmp_path / 'run'}"], tmp_path)
    assert result.returncode == 2, result.stdout
    assert "refused before anything ran" in result.stdout and "Traceback" not in result.stdout
    assert not pickle_marker.exists()
