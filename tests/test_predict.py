"""`fewshot predict`: classify generated face images against a support folder and compare pairs,
with Siamese and ProtoNet checkpoints; clear errors for bad paths and unreadable images."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import compose_config
from PIL import Image
from test_att_faces import write_faces

from fewshot_cli.data.omniglot import Omniglot
from fewshot_cli.errors import ConfigError, DatasetError
from fewshot_cli.tasks.predict import image_files, predict, support_files
from fewshot_cli.tasks.train import train

TINY = [
    "device=cpu", "logger=none", "trainer.progress_bar=false", "dataset.image_size=28",
    "dataset.heldout=2", "dataset.val_people=2", "train_episodes.n_way=3", "train_episodes.n_shot=1",
    "train_episodes.n_query=2", "eval_episodes.n_way=2", "eval_episodes.n_shot=1",
    "eval_episodes.n_query=3", "trainer.max_episodes=4", "trainer.val_every=2",
    "trainer.checkpoint_every=2", "trainer.log_every=1", "trainer.val_episodes=3", "eval.n_episodes=4",
]


@pytest.fixture(scope="module")
def faces(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_faces(tmp_path_factory.mktemp("faces"), people=8, images=6)


def _train(root: Path, faces: Path, method: list[str]) -> Path:
    cfg = compose_config("train", [*method, *TINY,
                                   f"paths.data_dir={faces}", f"paths.cache_dir={root / 'cache'}"],
                         root / "run")
    train(cfg)
    return root / "run" / "checkpoints" / "best.pt"


@pytest.fixture(scope="module")
def siamese_ckpt(tmp_path_factory: pytest.TempPathFactory, faces: Path) -> Path:
    return _train(tmp_path_factory.mktemp("siamese"), faces, ["experiment=siamese_att_faces"])


@pytest.fixture(scope="module")
def protonet_ckpt(tmp_path_factory: pytest.TempPathFactory, faces: Path) -> Path:
    return _train(tmp_path_factory.mktemp("protonet"), faces, ["dataset=att_faces", "method=protonet"])


@pytest.fixture(scope="module")
def support_dir(tmp_path_factory: pytest.TempPathFactory, faces: Path) -> Path:
    """Two images of each of the test people s7 and s8 (never seen in training)."""
    root = tmp_path_factory.mktemp("support")
    for person in ("s7", "s8"):
        (root / person).mkdir()
        for number in (1, 2):
            shutil.copy(faces / "att_faces" / person / f"{number}.pgm", root / person)
    return root


def _predict(tmp_path: Path, overrides: list[str]) -> dict:
    return predict(compose_config("predict", ["device=cpu", *overrides], tmp_path / "out"))


@pytest.mark.parametrize("which", ["siamese", "protonet"])
def test_predict_ranks_the_classes_of_a_folder_of_queries(which: str, request: pytest.FixtureRequest,
                                                          support_dir: Path, faces: Path,
                                                          tmp_path: Path, capsys) -> None:
    ckpt = request.getfixturevalue(f"{which}_ckpt")
    results = _predict(tmp_path, [f"ckpt_path={ckpt}", f"support_dir={support_dir}",
                                  f"query={faces / 'att_faces' / 's8'}", "top_k=5"])
    predictions = results["predictions"]
    assert [Path(p["query"]).name for p in predictions] == [f"{i}.pgm" for i in range(1, 7)]
    for prediction in predictions:
        assert {r["class"] for r in prediction["top"]} == {"s7", "s8"}  # top_k capped at 2 classes
        assert prediction["top"][0]["score"] >= prediction["top"][1]["score"]
    # The support images themselves are their own nearest neighbours.
    assert predictions[0]["top"][0]["class"] == "s8"
    printed = capsys.readouterr().out
    assert "1.pgm: s" in printed
    assert json.loads((tmp_path / "out" / "predictions.json").read_text()) == results


def test_predict_single_query_file(siamese_ckpt: Path, support_dir: Path, faces: Path,
                                   tmp_path: Path) -> None:
    results = _predict(tmp_path, [f"ckpt_path={siamese_ckpt}", f"support_dir={support_dir}",
                                  f"query={faces / 'att_faces' / 's7' / '1.pgm'}", "top_k=1"])
    assert len(results["predictions"]) == 1 and results["predictions"][0]["top"][0]["class"] == "s7"


def test_pair_uses_the_validation_threshold(siamese_ckpt: Path, faces: Path, tmp_path: Path,
                                            capsys) -> None:
    a, b = faces / "att_faces" / "s7" / "1.pgm", faces / "att_faces" / "s7" / "1.pgm"
    result = _predict(tmp_path, [f"ckpt_path={siamese_ckpt}", f"pair=[{a},{b}]"])["pair"]
    stored = torch.load(siamese_ckpt, weights_only=True)["verification"]["threshold"]
    assert result["threshold"] == stored
    assert result["distance"] == pytest.approx(0.0, abs=1e-3) and result["same"] is True
    assert "same (threshold" in capsys.readouterr().out
    forced = _predict(tmp_path, [f"ckpt_path={siamese_ckpt}", f"pair=[{a},{b}]", "threshold=-1"])
    assert forced["pair"]["same"] is False


def test_protonet_checkpoint_also_gets_a_threshold(protonet_ckpt: Path) -> None:
    assert "threshold" in torch.load(protonet_ckpt, weights_only=True)["verification"]


def test_bad_paths_and_images_are_clear_errors(siamese_ckpt: Path, support_dir: Path, faces: Path,
                                               tmp_path: Path) -> None:
    ckpt = f"ckpt_path={siamese_ckpt}"
    with pytest.raises(DatasetError, match=r"support_dir .* is not a folder"):
        _predict(tmp_path, [ckpt, f"support_dir={tmp_path / 'nope'}", f"query={faces}"])
    with pytest.raises(DatasetError, match=r"query .* does not exist"):
        _predict(tmp_path, [ckpt, f"support_dir={support_dir}", f"query={tmp_path / 'nope.png'}"])
    empty = tmp_path / "empty_support"
    (empty / "someone").mkdir(parents=True)
    with pytest.raises(DatasetError, match="holds no images"):
        _predict(tmp_path, [ckpt, f"support_dir={empty}", f"query={faces}"])
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"definitely not a png")
    with pytest.raises(DatasetError, match=r"broken\.png"):
        _predict(tmp_path, [ckpt, f"support_dir={support_dir}", f"query={broken}"])
    with pytest.raises(DatasetError, match="does not exist"):
        _predict(tmp_path, [ckpt, f"pair=[{broken},{tmp_path / 'missing.png'}]"])
    with pytest.raises(ConfigError, match="support_dir=DIR and query=PATH"):
        _predict(tmp_path, [ckpt])
    with pytest.raises(ConfigError, match="ckpt_path"):
        _predict(tmp_path, [f"support_dir={support_dir}", f"query={faces}"])


def test_hidden_folders_and_files_in_a_support_dir_are_skipped(support_dir: Path, tmp_path: Path) -> None:
    support = tmp_path / "support"
    shutil.copytree(support_dir, support)
    (support / ".ipynb_checkpoints").mkdir()
    shutil.copy(support / "s7" / "1.pgm", support / ".ipynb_checkpoints" / "1-checkpoint.pgm")
    (support / "s8" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (support / "s8" / "._2.pgm").write_bytes(b"macOS resource fork, not a PGM")
    names, files, labels = support_files(support)
    assert names == ["s7", "s8"]
    assert [f.name for f in files] == ["1.pgm", "2.pgm", "1.pgm", "2.pgm"]
    assert labels.tolist() == [0, 0, 1, 1]
    assert [f.name for f in image_files(support / "s8", "query")] == ["1.pgm", "2.pgm"]


def test_omniglot_predict_images_are_inverted_like_training(tmp_path: Path) -> None:
    white = tmp_path / "white.png"
    Image.fromarray(np.full((105, 105), 255, dtype=np.uint8)).save(white)
    decoded = Omniglot(str(tmp_path), str(tmp_path), image_size=28).decode_files([white])
    assert decoded.shape == (1, 1, 28, 28) and int(decoded.max()) == 0  # white paper -> 0
