"""Bad input gets one sentence and nothing half-written: counts, a checkpoint at another size,
non-finite weights. Each input the issue listed is here, with a neighbour."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import compose_config

from fewshot_cli.engine.checkpoint import load_checkpoint
from fewshot_cli.errors import CheckpointError, ConfigError, NonFiniteLossError
from fewshot_cli.methods.protonet import PrototypicalNetworks
from fewshot_cli.tasks.evaluate import evaluate
from fewshot_cli.tasks.train import train


@pytest.fixture(scope="module")
def protonet_ckpt(tmp_path_factory: pytest.TempPathFactory, tiny_train_overrides: list[str]) -> Path:
    out = tmp_path_factory.mktemp("protonet") / "run"
    train(compose_config("train", tiny_train_overrides, out))
    return out / "checkpoints" / "best.pt"


def eval_overrides(data_overrides: list[str]) -> list[str]:
    return [o for o in data_overrides if not o.startswith("dataset.")]


# ------------------------------------------------------------------ counts, before anything runs

@pytest.mark.parametrize(("override", "message"), [
    ("train_episodes.n_query=0", r"train_episodes.n_query=0: an episode needs at least 1 query"),
    ("train_episodes.n_way=1", r"train_episodes.n_way=1: an episode needs at least 2 classes"),
    ("eval_episodes.n_shot=0", r"eval_episodes.n_shot=0: an episode needs at least 1 support"),
    ("eval.n_episodes=0", r"eval.n_episodes=0: scoring needs at least 2 episodes"),
    ("eval.n_episodes=1", r"eval.n_episodes=1: scoring needs at least 2 episodes"),
    ("trainer.val_episodes=1", r"trainer.val_episodes=1: scoring needs at least 2 episodes"),
    ("trainer.max_minutes=0", r"trainer.max_minutes=0.0 must be positive"),
])
def test_train_counts_are_refused_before_anything_is_written(override: str, message: str,
                                                             tiny_train_overrides: list[str],
                                                             tmp_path: Path) -> None:
    out = tmp_path / "run"
    with pytest.raises(ConfigError, match=message):
        train(compose_config("train", [*tiny_train_overrides, override], out))
    assert not out.exists()  # no run directory, so no "last.pt keeps the last finite state" lie


@pytest.mark.parametrize(("override", "message"), [
    ("eval_episodes.n_query=0", r"eval_episodes.n_query=0: an episode needs at least 1 query"),
    ("eval.n_episodes=0", r"eval.n_episodes=0: scoring needs"),  # was ZeroDivisionError
    ("eval.n_episodes=1", r"eval.n_episodes=1: scoring needs"),  # was "± 0.00"
])
def test_eval_counts_are_refused(override: str, message: str, protonet_ckpt: Path,
                                 data_overrides: list[str], tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=message):
        evaluate(compose_config("eval", [*eval_overrides(data_overrides), f"ckpt_path={protonet_ckpt}",
                                         override], tmp_path / "eval"))
    assert not (tmp_path / "eval" / "metrics.json").exists()


@pytest.mark.slow
def test_cli_answers_a_bad_count_with_exit_code_2(protonet_ckpt: Path, data_overrides: list[str],
                                                  tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("HYDRA_FULL_ERROR", "PYTHONPATH")}
    result = subprocess.run(
        [sys.executable, "-m", "fewshot_cli", "eval", f"ckpt_path={protonet_ckpt}", "eval.n_episodes=0",
         *eval_overrides(data_overrides), f"hydra.run.dir={tmp_path / 'eval'}"],
        env=env, cwd=tmp_path, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300)
    assert result.returncode == 2, result.stdout
    assert "Traceback" not in result.stdout and "ZeroDivisionError" not in result.stdout
    assert "eval.n_episodes=0: scoring needs at least 2 episodes" in result.stdout


# ------------------------------------------------------------------ optimiser and schedule values

@pytest.mark.parametrize(("overrides", "message"), [
    (["optimizer.lr=-1"], r"optimizer=Adam refuses its settings \(optimizer.lr=-1, .*\): Invalid learning"),
    (["optimizer=sgd", "optimizer.momentum=-1"], r"optimizer=SGD refuses its settings .*Invalid momentum"),
    (["scheduler=step", "scheduler.gamma=-2"], r"scheduler.gamma=-2: .* must be above 0"),
    (["scheduler=cosine", "scheduler.eta_min=-1"], None),  # torch takes it: not ours to refuse
])
def test_values_torch_refuses_are_one_sentence(overrides: list[str], message: str | None,
                                               tiny_train_overrides: list[str], tmp_path: Path) -> None:
    cfg = compose_config("train", [*tiny_train_overrides, *overrides], tmp_path / "run")
    if message is None:
        train(cfg)
        return
    with pytest.raises(ConfigError, match=message):
        train(cfg)


@pytest.mark.slow
def test_cli_refuses_a_negative_learning_rate_with_exit_2_and_no_run_dir(data_overrides: list[str],
                                                                         tmp_path: Path) -> None:
    # Was: a traceback ending "ValueError: Invalid learning rate: -1", exit 1, and a run folder.
    env = {k: v for k, v in os.environ.items() if k not in ("HYDRA_FULL_ERROR", "PYTHONPATH")}
    out = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-m", "fewshot_cli", "train", "debug=fast", "optimizer.lr=-1", *data_overrides,
         f"hydra.run.dir={out}"],
        env=env, cwd=tmp_path, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300)
    assert result.returncode == 2, result.stdout
    assert "Traceback" not in result.stdout
    assert "Invalid learning rate: -1" in result.stdout
    assert not out.exists()


# ------------------------------------------------------------------ a checkpoint at another size

@pytest.fixture(scope="module")
def maml_learned_head_ckpt(tmp_path_factory: pytest.TempPathFactory,
                           tiny_train_overrides: list[str]) -> Path:
    out = tmp_path_factory.mktemp("maml") / "run"
    train(compose_config("train", [*tiny_train_overrides, "method=maml", "method.head=learned",
                                   "method.inner_steps_eval=1", "trainer.max_episodes=2"], out))
    return out / "checkpoints" / "best.pt"


def test_checkpoint_at_another_image_size_names_the_size_it_needs(maml_learned_head_ckpt: Path,
                                                                  data_overrides: list[str],
                                                                  tmp_path: Path) -> None:
    """The issue's input: `+dataset.image_size=56` on a 28x28 MAML checkpoint printed a raw
    `size mismatch for head.weight` traceback."""
    with pytest.raises(CheckpointError) as error:
        evaluate(compose_config("eval", [*eval_overrides(data_overrides), "+dataset.image_size=56",
                                         f"ckpt_path={maml_learned_head_ckpt}"], tmp_path / "eval"))
    message = str(error.value)
    assert "size mismatch for head.weight" in message
    assert "dataset.image_size=28 (this run: 56)" in message


def test_learned_head_of_another_way_names_it(maml_learned_head_ckpt: Path, data_overrides: list[str],
                                              tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"method.n_way=5 \(this run: 20\)"):
        evaluate(compose_config("eval", [*eval_overrides(data_overrides), "+method.n_way=20",
                                         f"ckpt_path={maml_learned_head_ckpt}"], tmp_path / "eval"))


# ------------------------------------------------------------------ non-finite weights

def _infinite_gradient_on_training_call(monkeypatch: pytest.MonkeyPatch, on_call: int) -> None:
    """The `on_call`-th training episode's loss is finite, but its gradient is infinite."""
    original = PrototypicalNetworks.loss_and_logits
    calls = {"n": 0}

    def patched(self, episode):
        output = original(self, episode)
        if self.training:
            calls["n"] += 1
            if calls["n"] == on_call:
                output.loss.register_hook(lambda grad: grad * float("inf"))
        return output

    monkeypatch.setattr(PrototypicalNetworks, "loss_and_logits", patched)


def test_infinite_gradient_never_reaches_last_pt(monkeypatch: pytest.MonkeyPatch,
                                                 tiny_train_overrides: list[str], tmp_path: Path) -> None:
    """Episode 4's loss is finite, its update is not, and episode 4 is a checkpoint: the old code
    wrote NaN weights into last.pt because only the logged loss was checked."""
    _infinite_gradient_on_training_call(monkeypatch, 4)
    out = tmp_path / "run"
    with pytest.raises(NonFiniteLossError) as error:
        train(compose_config("train", [*tiny_train_overrides, "trainer.max_episodes=6"], out))
    message = str(error.value)
    assert "became NaN or infinite by episode 4" in message
    assert "last.pt (episode 2) keeps the last finite state" in message
    last = load_checkpoint(out / "checkpoints" / "last.pt")
    assert last["episode"] == 2
    assert all(torch.isfinite(t).all() for t in last["model"].values() if t.is_floating_point())


def test_non_finite_before_any_checkpoint_says_none_was_written(monkeypatch: pytest.MonkeyPatch,
                                                                tiny_train_overrides: list[str],
                                                                tmp_path: Path) -> None:
    _infinite_gradient_on_training_call(monkeypatch, 1)
    out = tmp_path / "run"
    with pytest.raises(NonFiniteLossError, match=r"no checkpoint had been written yet"):
        train(compose_config("train", [*tiny_train_overrides, "trainer.max_episodes=6"], out))
    assert not (out / "checkpoints" / "last.pt").exists()


# ------------------------------------------------------------------ a key the class does not take

@pytest.mark.parametrize(("override", "message"), [
    ("+dataset.dowload=false", r"dataset.dowload is not an option of Omniglot; did you mean "
                               r"dataset.download\?"),
    ("+method.temprature=3", r"method.temprature is not an option of PrototypicalNetworks; did you mean "
                             r"method.temperature\?"),
])
def test_an_added_key_the_class_does_not_take_is_one_sentence(override: str, message: str,
                                                              tiny_train_overrides: list[str],
                                                              tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=message):
        train(compose_config("train", [*tiny_train_overrides, override], tmp_path / "run"))


def test_evaluating_at_another_image_size_says_so(protonet_ckpt: Path, data_overrides: list[str],
                                                  tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A newcomer's input: a 32 px checkpoint evaluated with a new dataset node ran at its default
    84 px without a word. ProtoNet's Conv-4 runs at any size, so only the warning tells."""
    with caplog.at_level("WARNING"):
        evaluate(compose_config("eval", [*eval_overrides(data_overrides), "+dataset.image_size=20",
                                         "eval.n_episodes=2", f"ckpt_path={protonet_ckpt}"], tmp_path / "e"))
    assert "trained with dataset.image_size=28, this evaluation uses 20" in caplog.text
