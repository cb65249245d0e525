"""A short ProtoNet run on the real Omniglot (Vinyals split) beats 90% on 5-way 1-shot test episodes."""

from pathlib import Path

import pytest
from conftest import compose_config

from fewshot_cli.tasks.train import train

pytestmark = [pytest.mark.realdata, pytest.mark.slow]


def test_short_protonet_run_beats_90_percent(real_data_dir: Path, real_cache_dir: Path,
                                             tmp_path: Path) -> None:
    cfg = compose_config("train", [
        f"paths.data_dir={real_data_dir}", f"paths.cache_dir={real_cache_dir}",
        "dataset.download=false", "device=cpu", "logger=none", "trainer.progress_bar=false",
        "train_episodes.n_way=20", "train_episodes.n_shot=1", "train_episodes.n_query=5",
        "eval_episodes.n_way=5", "eval_episodes.n_shot=1", "eval_episodes.n_query=15",
        "trainer.max_episodes=300", "trainer.val_every=300", "trainer.checkpoint_every=300",
        "trainer.log_every=100", "trainer.val_episodes=50", "eval.n_episodes=200",
    ], tmp_path)  # Adam 1e-3, the default
    metrics = train(cfg)
    assert metrics["train/episodes"] == 300
    assert (metrics["test/n_way"], metrics["test/n_shot"], metrics["test/n_episodes"]) == (5, 1, 200)
    assert metrics["test/acc"] > 90.0, metrics
