"""Matching Networks, Relation Networks and MAML through the `fewshot` CLI on real Omniglot, a `-m`
sweep over all four episodic methods, and the paper protocols their experiment presets encode."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import compose_config
from hydra.utils import instantiate
from omegaconf import OmegaConf

from fewshot_cli.tasks.build import build_dataset

REAL_DATA = Path(os.environ.get("FEWSHOT_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data"))
HAS_OMNIGLOT = (REAL_DATA / "omniglot" / "omniglot-py" / "images_background").is_dir()
needs_omniglot = pytest.mark.skipif(not HAS_OMNIGLOT, reason=f"no Omniglot under {REAL_DATA}")

# A few episodes of 5-way 1-shot with 2 queries: seconds per run, every code path exercised
# (training steps, validation, best.pt, the test pass, then `fewshot eval` from the checkpoint).
TINY = [
    "device=cpu", "dataset.download=false", "debug=fast",
    "train_episodes.n_way=5", "train_episodes.n_query=2", "eval_episodes.n_query=2",
    "trainer.max_episodes=2", "trainer.log_every=2", "trainer.val_episodes=2", "eval.n_episodes=2",
]
METHOD_EXTRAS = {
    "matchingnet": ["method.fce=true"],
    # The meta-batch (2 episodes per optimiser step) and few test-time steps, to stay quick.
    "maml": ["trainer.tasks_per_step=2", "method.inner_steps_eval=2"],
    "relationnet": [],
}


def cli_env(tmp_path: Path) -> dict[str, str]:
    environment = dict(os.environ)
    environment.update(FEWSHOT_DATA_DIR=str(REAL_DATA),
                       FEWSHOT_CACHE_DIR=os.environ.get("FEWSHOT_CACHE_DIR", str(tmp_path / "cache")),
                       OMP_NUM_THREADS="1")  # tiny models: threads only add contention
    for variable in ("HYDRA_FULL_ERROR", "PYTHONPATH"):
        environment.pop(variable, None)
    return environment


def fewshot(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    """`python -m fewshot_cli ARGS`, stdout and stderr merged."""
    return subprocess.run([sys.executable, "-m", "fewshot_cli", *args], cwd=tmp_path, env=cli_env(tmp_path),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600)


@pytest.mark.slow
@pytest.mark.realdata
@needs_omniglot
@pytest.mark.parametrize("method", ["matchingnet", "relationnet", "maml"])
def test_method_trains_and_evaluates_through_the_cli(method: str, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    result = fewshot(["train", f"method={method}", *TINY, *METHOD_EXTRAS[method],
                      f"hydra.run.dir={run_dir}"], tmp_path)
    assert result.returncode == 0, result.stdout
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["train/episodes"] == 2 and 0.0 <= metrics["test/acc"] <= 100.0
    saved = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    assert saved.method._target_.split(".")[-2] == method

    eval_dir = tmp_path / "eval"
    result = fewshot(["eval", f"ckpt_path={run_dir / 'checkpoints' / 'best.pt'}", "device=cpu",
                      "logger=none", "eval.n_episodes=2", f"hydra.run.dir={eval_dir}"], tmp_path)
    assert result.returncode == 0, result.stdout
    assert "test/acc" in result.stdout
    evaluated = json.loads((eval_dir / "metrics.json").read_text())
    assert (evaluated["test/n_way"], evaluated["test/n_shot"], evaluated["test/n_query"]) == (5, 1, 2)


@pytest.mark.slow
@pytest.mark.realdata
@needs_omniglot
def test_sweep_over_the_four_episodic_methods(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    result = fewshot(["train", "-m", "method=protonet,matchingnet,relationnet,maml", *TINY,
                      f"hydra.sweep.dir={sweep}"], tmp_path)
    assert result.returncode == 0, result.stdout
    jobs = sorted(p.parent for p in sweep.rglob("metrics.json"))
    assert len(jobs) == 4, result.stdout
    methods = set()
    for job in jobs:
        config = OmegaConf.load(job / ".hydra" / "config.yaml")
        methods.add(config.method._target_.rsplit(".", 1)[-1])
        metrics = json.loads((job / "metrics.json").read_text())
        assert metrics["train/episodes"] == 2 and 0.0 <= metrics["test/acc"] <= 100.0
    assert methods == {"PrototypicalNetworks", "MatchingNetworks", "RelationNetworks", "MAML"}


# --- the presets encode the papers' protocols (compose only, no data) ------------------------------

SHAPES = {"5w1s": (5, 1), "5w5s": (5, 5), "20w1s": (20, 1), "20w5s": (20, 5)}


@pytest.mark.parametrize("shape", SHAPES)
def test_maml_omniglot_presets(shape: str) -> None:
    cfg = compose_config("train", [f"experiment=maml_omniglot_{shape}"])
    way, shot = SHAPES[shape]
    tasks, inner_lr, steps = (32, 0.4, 1) if way == 5 else (16, 0.1, 5)
    assert cfg.trainer.tasks_per_step == tasks
    assert cfg.trainer.max_episodes == 60000 * tasks  # 60k meta-iterations
    for key in ("log_every", "val_every", "checkpoint_every"):
        assert cfg.trainer[key] % tasks == 0
    assert (cfg.method.inner_lr, cfg.method.inner_steps, cfg.method.inner_steps_eval) == (inner_lr, steps, 10)
    assert (cfg.method.head, cfg.method.n_way, cfg.method.first_order) == ("learned", way, False)
    assert shape_of(cfg.train_episodes) == (way, shot, shot)  # K queries per class
    assert shape_of(cfg.eval_episodes) == (way, shot, shot)
    assert cfg.eval.n_episodes == 600
    assert cfg.optimizer.lr == 1e-3 and cfg.scheduler._target_.endswith("ConstantLR")


@pytest.mark.parametrize(("shape", "queries"), [("5w1s", 19), ("5w5s", 15), ("20w1s", 10), ("20w5s", 5)])
def test_relationnet_omniglot_presets(shape: str, queries: int) -> None:
    cfg = compose_config("train", [f"experiment=relationnet_omniglot_{shape}"])
    way, shot = SHAPES[shape]
    assert shape_of(cfg.train_episodes) == (way, shot, queries)
    assert (cfg.eval_episodes.n_way, cfg.eval_episodes.n_shot) == (way, shot)
    assert cfg.optimizer.lr == 1e-3 and (cfg.scheduler.step_size, cfg.scheduler.gamma) == (100000, 0.5)
    # The top-level Conv-4, switched to maps pooled by its first two blocks (RelationNetworks' doc).
    assert cfg.method.backbone._target_.endswith(".Conv4") and cfg.method.backbone.map_pooled_blocks == 2
    assert cfg.method.pool_size == 1
    assert cfg.eval.n_episodes == 1000


@pytest.mark.parametrize("shape", SHAPES)
def test_matchingnet_omniglot_presets_train_with_the_test_shape(shape: str) -> None:
    cfg = compose_config("train", [f"experiment=matchingnet_omniglot_{shape}"])
    way, shot = SHAPES[shape]
    assert (cfg.train_episodes.n_way, cfg.train_episodes.n_shot) == (way, shot)
    assert (cfg.eval_episodes.n_way, cfg.eval_episodes.n_shot) == (way, shot)
    assert cfg.method.distance == "cosine" and cfg.method.fce is False
    assert cfg.eval.n_episodes == 1000


@pytest.mark.parametrize("method", ["matchingnet", "relationnet", "maml"])
@pytest.mark.parametrize(("dataset", "side"), [("cifar_fs", 32), ("mini_imagenet", 84)])
@pytest.mark.parametrize("shot", [1, 5])
def test_cifar_fs_and_mini_imagenet_presets_compose_and_size_the_method(
        method: str, dataset: str, side: int, shot: int) -> None:
    cfg = compose_config("train", [f"experiment={method}_{dataset}_5w{shot}s"])
    if dataset == "cifar_fs":  # conf/dataset/cifar_fs: the real CIFAR-FS loader
        assert cfg.dataset._target_ == "fewshot_cli.data.cifar.CIFARFS"
    else:  # conf/dataset/mini_imagenet: image_folder over Ravi & Larochelle's split CSVs
        assert cfg.dataset._target_ == "fewshot_cli.data.image_folder.ImageFolder"
        assert cfg.dataset.split_csv_dir.endswith("/mini_imagenet")
        assert build_dataset(cfg.dataset).image_size == side  # builds without reading any file
    assert (cfg.dataset.name, cfg.dataset.image_size, cfg.dataset.channels) == (dataset, side, 3)
    assert (cfg.eval_episodes.n_way, cfg.eval_episodes.n_shot) == (5, shot)
    assert cfg.eval.n_episodes == 600
    model = instantiate(cfg.method)  # sized from the declared image shape (MAML head, FCE LSTMs)
    if method == "maml":
        assert cfg.trainer.tasks_per_step == (4 if shot == 1 else 2)
        assert cfg.method.inner_lr == 0.01 and cfg.method.inner_steps == 5
        assert model.feature_dim == 32 * (side // 16) ** 2  # 32 filters, 4 max-pools
    if method == "matchingnet":
        assert cfg.method.fce is True


def shape_of(episodes) -> tuple[int, int, int]:
    return episodes.n_way, episodes.n_shot, episodes.n_query
