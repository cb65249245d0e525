"""The built wheel, installed in a fresh venv, finds its configs as pkg://fewshot_cli.conf (a
relative config_path="../conf" works in an editable install and breaks once installed) and trains
from a directory outside the source tree."""

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from conftest import REPO_ROOT
from omegaconf import OmegaConf

pytestmark = pytest.mark.slow


def check(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            **kwargs)
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout}"
    return result


def build_wheel(out: Path) -> Path:
    """`python -m build --wheel`; without the build backend at hand, an isolated build fetches it."""
    try:
        import hatchling  # noqa: F401
        isolation = ["--no-isolation"]
    except ImportError:
        isolation = []
    result = subprocess.run([sys.executable, "-m", "build", "--wheel", *isolation, "--outdir", str(out),
                             str(REPO_ROOT)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if result.returncode != 0 and not isolation and "hatchling" in result.stdout and (
            "No matching distribution" in result.stdout or "Could not find a version" in result.stdout):
        pytest.skip("the build backend (hatchling) is neither installed nor downloadable here")
    assert result.returncode == 0, result.stdout
    wheels = list(out.glob("fewshot_cli-*.whl"))
    assert len(wheels) == 1
    return wheels[0]


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv holding only the wheel, with the project venv's dependencies visible beside it."""
    work = tmp_path_factory.mktemp("wheel")
    wheel = build_wheel(work / "dist")
    venv = work / "venv"
    check([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    python = venv / "bin" / "python"
    # Install first, while the project venv is still invisible: pip must not see (and try to replace)
    # the editable install there.
    check([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index",
           "--quiet", str(wheel)])
    site_packages = check([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]
                          ).stdout.strip()
    # torch, hydra, ... come from the project venv. A plain path line: the .pth files there (the
    # editable install's, which would expose the source tree) are not processed.
    (Path(site_packages) / "project_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return venv


@pytest.fixture(scope="module")
def outside(tmp_path_factory: pytest.TempPathFactory, synthetic_data_dir: Path,
            synthetic_cache_dir: Path) -> dict:
    """A working directory outside the repository and an environment without PYTHONPATH."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "HYDRA_FULL_ERROR")}
    env.update(FEWSHOT_DATA_DIR=str(synthetic_data_dir), FEWSHOT_CACHE_DIR=str(synthetic_cache_dir),
               OMP_NUM_THREADS="1")
    cwd = tmp_path_factory.mktemp("elsewhere")
    assert REPO_ROOT not in cwd.parents
    return {"cwd": cwd, "env": env}


def test_package_and_configs_come_from_the_wheel(wheel_venv: Path, outside: dict) -> None:
    probe = ("import fewshot_cli, fewshot_cli.conf\n"
             "from fewshot_cli.config.locate import config_path\n"
             "print(fewshot_cli.__file__); print(fewshot_cli.conf.__file__); print(config_path())")
    lines = check([str(wheel_venv / "bin" / "python"), "-c", probe], **outside).stdout.split()
    assert all(Path(line).is_relative_to(wheel_venv) for line in lines[:2]), lines
    assert lines[2] == "pkg://fewshot_cli.conf"


def test_cfg_job_from_the_installed_script(wheel_venv: Path, outside: dict) -> None:
    script = wheel_venv / "bin" / "fewshot"
    assert script.is_file()
    result = check([str(script), "train", "--cfg", "job", "experiment=protonet_omniglot_20w5s"], **outside)
    config = OmegaConf.create(result.stdout)
    assert config.task == "train"
    assert config.eval_episodes.n_way == 20 and config.eval_episodes.n_shot == 5
    info = check([str(script), "eval", "--info", "searchpath"], **outside).stdout
    assert "pkg://fewshot_cli.conf" in info
    assert "file://" not in info.split("Config search path")[1].split("Defaults Tree")[0]
    helped = check([str(script), "train", "--help"], **outside).stdout  # key help from the wheel's conf/
    assert "\n  trainer.max_episodes=20000        training length in episodes" in helped, helped


def test_tiny_training_with_the_installed_package(wheel_venv: Path, outside: dict) -> None:
    run_dir = outside["cwd"] / "run"
    # debug=fast also checks that the wheel carries the nested debug/train group.
    check([str(wheel_venv / "bin" / "fewshot"), "train", "device=cpu", "dataset.download=false",
           "debug=fast", "train_episodes.n_way=5", "train_episodes.n_query=5", "eval_episodes.n_query=5",
           "trainer.max_episodes=2", "trainer.val_episodes=3", "eval.n_episodes=5",
           f"hydra.run.dir={run_dir}"], **outside)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["train/episodes"] == 2
    assert metrics["git_commit"] is None  # an installed wheel is no git checkout
    assert metrics["command"].startswith("fewshot train device=cpu ")
    hydra = OmegaConf.load(run_dir / ".hydra" / "hydra.yaml").hydra
    main_sources = [(s.schema, s.path) for s in hydra.runtime.config_sources if s.provider == "main"]
    assert main_sources == [("pkg", "fewshot_cli.conf")]
    assert hydra.runtime.choices["debug/train"] == "fast"  # the nested group, from the wheel
    assert OmegaConf.load(run_dir / ".hydra" / "config.yaml").trainer.val_every == 2
    assert not (outside["cwd"] / "outputs").exists()
