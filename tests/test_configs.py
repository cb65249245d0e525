"""Every option of every config group composes; wrong keys and types fail at compose time."""

from pathlib import Path

import pytest
import torch
from conftest import CONF_DIR, compose_config
from hydra.errors import ConfigCompositionException, MissingConfigException
from hydra.utils import instantiate
from omegaconf import OmegaConf

from fewshot_cli.data.episode import Episode
from fewshot_cli.methods.base import FewShotMethod
from fewshot_cli.methods.protonet import PrototypicalNetworks

# The groups the foundation issue asks for; any group added later is picked up from conf/ as well.
REQUIRED_GROUPS = ("dataset", "backbone", "method", "episodes", "optimizer", "scheduler", "device",
                   "logger", "paths", "hydra", "experiment")
TRAIN_GROUPS = tuple(sorted(p.name for p in CONF_DIR.iterdir() if p.is_dir() and any(p.glob("*.yaml"))))
# Groups whose options need an optional Hydra plugin (module to import first).
PLUGIN_GROUPS = {"hparams_search": "hydra_plugins.hydra_optuna_sweeper"}
EVAL_GROUPS = ("dataset", "backbone", "method", "device", "logger", "paths", "hydra", "debug")


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def group_options(groups: tuple[str, ...]) -> list[tuple[str, str]]:
    return [(group, option) for group in groups for option in options(group)]


def test_required_groups_exist() -> None:
    assert set(REQUIRED_GROUPS) <= set(TRAIN_GROUPS)
    assert options("experiment"), "no experiment presets found"
    assert len(group_options(TRAIN_GROUPS)) >= 20


def resolved(cfg) -> dict:
    """The whole config resolved (catches broken interpolations), minus Hydra's own node."""
    container = OmegaConf.to_container(cfg, resolve=True)
    container.pop("hydra", None)
    return container


@pytest.mark.parametrize(("group", "option"), group_options(TRAIN_GROUPS))
def test_train_option_composes_and_resolves(group: str, option: str) -> None:
    if group in PLUGIN_GROUPS:
        pytest.importorskip(PLUGIN_GROUPS[group])
    cfg = compose_config("train", [f"{group}={option}"], None)
    container = resolved(cfg)
    assert container["task"] == "train"
    if group in REQUIRED_GROUPS and group not in ("hydra", "experiment", "episodes"):
        assert container[group] is not None
    for key in ("n_way", "n_shot", "n_query"):
        assert isinstance(container["train_episodes"][key], int)
        assert isinstance(container["eval_episodes"][key], int)


@pytest.mark.parametrize(("group", "option"), group_options(EVAL_GROUPS))
def test_eval_option_composes_and_resolves(group: str, option: str) -> None:
    extra = [] if group == "dataset" else ["dataset=omniglot"]
    cfg = compose_config("eval", [f"{group}={option}", *extra], None)
    assert resolved(cfg)["task"] == "eval"


def test_eval_composes_without_dataset_or_method() -> None:
    cfg = compose_config("eval", ["ckpt_path=some/best.pt"], None)
    assert cfg.dataset is None and cfg.method is None and cfg.backbone is None
    assert cfg.ckpt_path == "some/best.pt"
    assert dict(cfg.eval_episodes) == {"n_way": None, "n_shot": None, "n_query": None,
                                        "fit_to_split": None}
    assert cfg.eval.n_episodes is None


def test_eval_with_dataset_and_shape() -> None:
    cfg = compose_config("eval", ["dataset=omniglot", "eval_episodes.n_way=20",
                                  "eval_episodes.n_shot=5", "eval.n_episodes=50"], None)
    assert cfg.dataset.name == "omniglot"
    assert (cfg.eval_episodes.n_way, cfg.eval_episodes.n_shot) == (20, 5)
    assert cfg.eval.n_episodes == 50


def test_train_defaults_follow_the_paper() -> None:
    cfg = compose_config("train", [], None)
    assert cfg.method._target_ == "fewshot_cli.methods.protonet.PrototypicalNetworks"
    assert cfg.dataset.split_scheme == "vinyals"
    assert dict(cfg.train_episodes) == {"n_way": 60, "n_shot": 1, "n_query": 5, "fit_to_split": True}
    assert cfg.optimizer.lr == 1e-3
    assert (cfg.scheduler.step_size, cfg.scheduler.gamma) == (2000, 0.5)
    assert cfg.eval.n_episodes == 1000  # ${dataset.test_episodes}
    assert cfg.backbone.in_channels == 1  # ${dataset.channels}


@pytest.mark.parametrize(("preset", "shape"), [
    ("protonet_omniglot_5w1s", (5, 1)), ("protonet_omniglot_5w5s", (5, 5)),
    ("protonet_omniglot_20w1s", (20, 1)), ("protonet_omniglot_20w5s", (20, 5)),
])
def test_protonet_presets_use_the_paper_protocol(preset: str, shape: tuple[int, int]) -> None:
    cfg = compose_config("train", [f"experiment={preset}"], None)
    assert (cfg.train_episodes.n_way, cfg.train_episodes.n_shot, cfg.train_episodes.n_query) == (
        60, shape[1], 5)
    assert (cfg.eval_episodes.n_way, cfg.eval_episodes.n_shot, cfg.eval_episodes.n_query) == (
        *shape, 15)
    assert cfg.eval.n_episodes == 1000


@pytest.mark.parametrize("preset", ["protonet_omniglot_20w5s", "maml_omniglot_5w1s"])
def test_debug_fast_wins_over_a_preset_and_loses_to_the_command_line(preset: str) -> None:
    full = compose_config("train", [f"experiment={preset}"], None)
    fast = compose_config("train", [f"experiment={preset}", "debug=fast"], None)
    assert full.trainer.max_episodes > 1000 and full.eval.n_episodes >= 600 and full.logger.tensorboard
    assert (fast.trainer.max_episodes, fast.trainer.tasks_per_step, fast.trainer.val_every,
            fast.trainer.val_episodes, fast.eval.n_episodes) == (4, 1, 2, 5, 10)
    assert not fast.logger.tensorboard and not fast.trainer.progress_bar
    # The model and the episode shapes are the preset's: only the budget shrinks.
    assert fast.method == full.method
    assert (fast.train_episodes, fast.eval_episodes) == (full.train_episodes, full.eval_episodes)
    typed = compose_config("train", ["debug=fast", f"experiment={preset}", "trainer.max_episodes=6",
                                     "logger=tensorboard"], None)
    assert typed.trainer.max_episodes == 6 and typed.logger.tensorboard


def test_debug_fast_shortens_eval() -> None:
    assert compose_config("eval", ["ckpt_path=x/best.pt"], None).eval.n_episodes is None
    fast = compose_config("eval", ["ckpt_path=x/best.pt", "debug=fast"], None)
    assert fast.eval.n_episodes == 10 and not fast.logger.tensorboard


def test_overrides_reach_the_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEWSHOT_DATA_DIR", str(tmp_path / "from_env"))
    cfg = compose_config("train", ["seed=3", "device=cpu", "trainer.max_episodes=7",
                                   "train_episodes.n_way=20", "dataset.download=false"], tmp_path)
    assert (cfg.seed, cfg.device.type, cfg.trainer.max_episodes) == (3, "cpu", 7)
    assert cfg.train_episodes.n_way == 20
    assert cfg.dataset.download is False
    assert cfg.paths.data_dir == str(tmp_path / "from_env")
    assert cfg.dataset.root == str(tmp_path / "from_env")
    assert cfg.paths.output_dir == str(tmp_path)
    assert cfg.scheduler._target_ == "torch.optim.lr_scheduler.StepLR"
    assert compose_config("train", ["scheduler=cosine", "trainer.max_episodes=7"],
                          None).scheduler.T_max == 7


def test_data_dir_defaults_to_data_without_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FEWSHOT_DATA_DIR", raising=False)
    assert compose_config("train", [], None).paths.data_dir == "data"


def _fake_episode(cfg) -> Episode:
    n_way, n_shot = cfg.eval_episodes.n_way, cfg.eval_episodes.n_shot
    n_query = 2
    side = cfg.dataset.get("image_size", 28)
    images = torch.rand(n_way * (n_shot + n_query), cfg.dataset.channels, side, side)
    return Episode(images[: n_way * n_shot], torch.arange(n_way).repeat_interleave(n_shot),
                   images[n_way * n_shot:], torch.arange(n_way).repeat_interleave(n_query),
                   torch.arange(n_way), tuple(f"c{i}" for i in range(n_way)), n_way, n_shot, n_query)


@pytest.mark.parametrize("overrides", [[]] + [[f"experiment={e}"] for e in options("experiment")],
                         ids=["defaults", *options("experiment")])
def test_train_config_instantiates(overrides: list[str]) -> None:
    """Defaults and every preset build a method, optimizer and scheduler that fit together; ProtoNet
    configs also run one episode of their eval shape (other methods' forward passes are slower and
    covered by their own test files)."""
    cfg = compose_config("train", [*overrides, "device=cpu"], None)
    torch.manual_seed(0)
    model = instantiate(cfg.method)
    assert isinstance(model, FewShotMethod)
    optimizer = instantiate(cfg.optimizer)(params=model.parameters())
    scheduler = instantiate(cfg.scheduler)(optimizer=optimizer)
    if isinstance(model, PrototypicalNetworks):
        output = model.loss_and_logits(_fake_episode(cfg))
        assert output.logits.shape == (cfg.eval_episodes.n_way * 2, cfg.eval_episodes.n_way)
        output.loss.backward()
        optimizer.step()
        scheduler.step()
    if OmegaConf.is_missing(cfg.dataset, "_target_"):
        return  # a preset for a dataset without a loader yet declares only its image shape
    dataset = instantiate(cfg.dataset)
    assert dataset.channels == cfg.dataset.channels


@pytest.mark.parametrize(("group", "option"), group_options(("optimizer", "scheduler")))
def test_optimizer_and_scheduler_options_instantiate(group: str, option: str) -> None:
    cfg = compose_config("train", [f"{group}={option}"], None)
    optimizer = instantiate(cfg.optimizer)(params=[torch.nn.Parameter(torch.zeros(2))])
    scheduler = instantiate(cfg.scheduler)(optimizer=optimizer)
    optimizer.step()
    scheduler.step()
    assert optimizer.param_groups[0]["lr"] > 0


# --- errors at compose time, with Hydra's own message ------------------------------------------

@pytest.mark.parametrize("config_name", ["train", "eval"])
def test_unknown_key_fails(config_name: str) -> None:
    with pytest.raises(ConfigCompositionException, match=r"Could not override 'trainer.max_episodez'"):
        compose_config(config_name, ["trainer.max_episodez=1"], None)


def test_unknown_key_in_a_group_option_fails() -> None:
    with pytest.raises(ConfigCompositionException, match=r"Could not override 'dataset.imagesize'"):
        compose_config("train", ["dataset.imagesize=3"], None)


@pytest.mark.parametrize("override", ["trainer.max_episodes=abc", "seed=x",
                                      "train_episodes.n_way=five", "trainer.progress_bar=maybe",
                                      "eval_episodes.n_shot=1.5"])
def test_wrong_type_fails(override: str) -> None:
    with pytest.raises(ConfigCompositionException, match=r"Error merging override") as error:
        compose_config("train", [override], None)
    cause = str(error.value.__cause__)
    assert override.split("=")[1] in cause
    assert "could not be converted" in cause or "Value" in cause


def test_wrong_type_fails_in_eval() -> None:
    with pytest.raises(ConfigCompositionException, match=r"Error merging override"):
        compose_config("eval", ["eval_episodes.n_way=abc"], None)


def test_unknown_group_option_lists_the_available_ones() -> None:
    with pytest.raises(MissingConfigException, match=r"Could not find 'method/nope'") as error:
        compose_config("train", ["method=nope"], None)
    assert "protonet" in str(error.value)


# Each method's paper episode shape (issue: relationnet, maml, matchingnet inherited ProtoNet's
# 60-way training episodes; siamese on att_faces stopped at "n_way=60 is larger than 30 classes").
METHOD_SHAPES = {
    "protonet": ((60, 1, 5), (5, 1, 15)),      # Snell et al. 2017
    "matchingnet": ((5, 1, 15), (5, 1, 15)),   # Vinyals et al. 2016: train shape = test shape
    "relationnet": ((5, 1, 19), (5, 1, 15)),   # Sung et al. 2018
    "maml": ((5, 1, 1), (5, 1, 1)),            # Finn et al. 2017: K queries per class
    "siamese": ((32, 1, 1), (20, 1, 1)),       # Koch et al. 2015: 32 x 2 images, 20-way one-shot
    "clip": ((5, 1, 15), (5, 1, 15)),
    "clip_protonet": ((5, 1, 15), (5, 1, 15)),
}


def test_every_method_option_has_its_default_shape() -> None:
    assert set(METHOD_SHAPES) == {p.stem for p in (CONF_DIR / "method").glob("*.yaml")}


@pytest.mark.parametrize("method", sorted(METHOD_SHAPES))
def test_each_method_gets_its_own_default_episodes(method: str) -> None:
    cfg = compose_config("train", [f"method={method}"], None)
    for node, shape in zip(("train_episodes", "eval_episodes"), METHOD_SHAPES[method], strict=True):
        episodes = cfg[node]
        assert (episodes.n_way, episodes.n_shot, episodes.n_query) == shape
        assert episodes.fit_to_split  # defaults fit themselves to small datasets


def test_an_episodes_choice_still_wins_over_the_method_default() -> None:
    cfg = compose_config("train", ["method=maml", "episodes=5w5s"], None)
    assert (cfg.train_episodes.n_way, cfg.train_episodes.n_shot, cfg.train_episodes.n_query) == (5, 5, 15)
    assert not cfg.train_episodes.fit_to_split  # a chosen shape is exact
