"""`fewshot train method=M dataset=D` runs, and learns, with nothing but its defaults.

The issue's inputs: relationnet, maml and matchingnet inherited ProtoNet's 60-way training episodes
(RelationNet stayed at chance on Omniglot), and `method=siamese dataset=att_faces` stopped with
"n_way=60 is larger than the 30 classes". Every trainable method now has its paper episode shape
(conf/episodes/<method>.yaml), lowered to what a small dataset supplies. Only the data location and
the run length are overridden here: the episode shapes, optimiser and schedule are the defaults.
One data dir holds every dataset in its real format, with as many images per class as the real
ones where that matters (20 per Omniglot character, 10 per AT&T person).
"""

from pathlib import Path

import pytest
from conftest import compose_config, write_synthetic_omniglot
from image_trees import write_mini_imagenet
from test_att_faces import write_faces
from test_cifar import write_fake_cifar100
from test_mnist import write_idx_mnist

from fewshot_cli.tasks.train import train

pytestmark = pytest.mark.slow

TRAINABLE = ("protonet", "matchingnet", "relationnet", "maml", "siamese")
DATASETS = ("omniglot", "mnist", "att_faces", "cifar_fs", "cifar100", "mini_imagenet")


@pytest.fixture(scope="module")
def every_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data_dir = tmp_path_factory.mktemp("every_dataset")
    write_synthetic_omniglot(data_dir)
    write_idx_mnist(data_dir)
    write_fake_cifar100(data_dir / "cifar100", train_per_class=15, test_per_class=5)
    write_faces(data_dir, people=40, images=10)
    write_mini_imagenet(data_dir)  # image_folder through split CSVs, 84x84 RGB
    return data_dir


def short_run(data_dir: Path, cache_dir: Path, out: Path, extra: list[str]) -> dict:
    return train(compose_config("train", [
        f"paths.data_dir={data_dir}", f"paths.cache_dir={cache_dir}", "device=cpu", "debug=fast", *extra],
        out))


BUDGET = ["trainer.max_episodes=2", "trainer.log_every=2", "trainer.val_episodes=2", "eval.n_episodes=2"]


@pytest.mark.parametrize("dataset", DATASETS)
@pytest.mark.parametrize("method", TRAINABLE)
def test_every_method_runs_on_every_dataset_with_its_defaults(method: str, dataset: str,
                                                              every_dataset: Path,
                                                              tmp_path_factory: pytest.TempPathFactory,
                                                              tmp_path: Path) -> None:
    cache = tmp_path_factory.getbasetemp() / "every_dataset_cache"
    # MAML's 10 test-time inner steps cost seconds per episode here and change no shape.
    faster = ["method.inner_steps_eval=1"] if method == "maml" else []
    metrics = short_run(every_dataset, cache, tmp_path / "run",
                        [f"method={method}", f"dataset={dataset}", *BUDGET, *faster])
    assert metrics["train/episodes"] == 2
    assert metrics["test/n_way"] >= 2


def test_siamese_on_att_faces_fits_the_default_shape(every_dataset: Path, tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    """The issue's input; 30 training people, 5 validation people, 10 images each."""
    metrics = short_run(every_dataset, tmp_path / "cache", tmp_path / "run",
                        ["method=siamese", "dataset=att_faces", *BUDGET])
    assert metrics["test/n_way"] == 5  # 20-way one-shot lowered to the 5 test people
    assert "train_episodes lowered from 32-way 1-shot 1-query to 30-way 1-query" in caplog.text


def test_the_lowered_shape_warning_counts_the_split_s_classes(every_dataset: Path, tmp_path: Path,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    """A newcomer's input: matchingnet on att_faces said "att_faces/train has 5 classes" (the way,
    not the 30 training people)."""
    short_run(every_dataset, tmp_path / "cache", tmp_path / "run",
              ["method=matchingnet", "dataset=att_faces", *BUDGET])
    assert ("train_episodes lowered from 5-way 1-shot 15-query to 5-way 9-query: att_faces/train has 30 "
            "classes with at least 10 images") in caplog.text


def test_a_typed_way_is_exact_and_refused_when_too_large(every_dataset: Path, tmp_path: Path) -> None:
    from fewshot_cli.config.overrides import typed_shapes_are_exact
    from fewshot_cli.errors import ConfigError

    overrides = [f"paths.data_dir={every_dataset}", f"paths.cache_dir={tmp_path / 'cache'}", "device=cpu",
                 "logger=none", "method=siamese", "dataset=att_faces", "train_episodes.n_way=32", *BUDGET]
    cfg = compose_config("train", overrides, tmp_path / "run")
    typed_shapes_are_exact(cfg, overrides)
    with pytest.raises(ConfigError, match=r"train_episodes.n_way=32 is larger than the 30 classes"):
        train(cfg)


# ------------------------------------------------------------------ and they learn

LEARN = ["trainer.val_every=40", "trainer.checkpoint_every=40", "trainer.log_every=20",
         "trainer.val_episodes=40", "eval.n_episodes=100"]


@pytest.mark.parametrize(("method", "dataset", "episodes"), [
    ("relationnet", "omniglot", 40),
    ("matchingnet", "omniglot", 40),
    ("maml", "omniglot", 80),
    ("siamese", "omniglot", 40),
])
def test_defaults_learn(method: str, dataset: str, episodes: int, every_dataset: Path,
                        tmp_path: Path) -> None:
    """Trained against the same model, seed and test episodes with learning switched off (lr 0)."""
    common = [f"method={method}", f"dataset={dataset}", f"trainer.max_episodes={episodes}", *LEARN]
    trained = short_run(every_dataset, tmp_path / "cache", tmp_path / "trained", common)
    untrained = short_run(every_dataset, tmp_path / "cache", tmp_path / "untrained",
                          [*common, "optimizer.lr=0.0"])
    margin = trained["test/acc_ci95"] + untrained["test/acc_ci95"]
    assert trained["test/acc"] > untrained["test/acc"] + margin / 2, (trained["test/acc"],
                                                                      untrained["test/acc"])
