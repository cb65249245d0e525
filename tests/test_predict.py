"""`fewshot predict`: classify generated face images against a support folder with a checkpoint of
every trainable method (ranked probabilities, predictions.json), MAML's adaptation, uneven support
counts, the open-set threshold stored in best.pt and applied (`reject=`), compare pairs; clear
errors for bad paths, images and settings."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import compose_config
from omegaconf import OmegaConf
from PIL import Image
from test_att_faces import write_faces

from fewshot_cli.data.omniglot import Omniglot
from fewshot_cli.engine.device import DeviceContext
from fewshot_cli.engine.open_set import best_balanced_threshold
from fewshot_cli.errors import ConfigError, DatasetError
from fewshot_cli.tasks.build import build_dataset, build_method
from fewshot_cli.tasks.open_set_report import OpenSetShape, open_set_scores
from fewshot_cli.tasks.predict import image_files, predict, support_files
from fewshot_cli.tasks.train import train

TINY = [
    "device=cpu", "debug=fast", "dataset.image_size=28",
    "dataset.heldout=2", "dataset.val_people=3", "train_episodes.n_way=3", "train_episodes.n_shot=1",
    "train_episodes.n_query=2", "eval_episodes.n_way=2", "eval_episodes.n_shot=1",
    "eval_episodes.n_query=3", "trainer.val_episodes=3", "eval.n_episodes=4",
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
def matchingnet_ckpt(tmp_path_factory: pytest.TempPathFactory, faces: Path) -> Path:
    return _train(tmp_path_factory.mktemp("matchingnet"), faces, ["dataset=att_faces", "method=matchingnet"])


@pytest.fixture(scope="module")
def relationnet_ckpt(tmp_path_factory: pytest.TempPathFactory, faces: Path) -> Path:
    return _train(tmp_path_factory.mktemp("relationnet"), faces, ["dataset=att_faces", "method=relationnet"])


@pytest.fixture(scope="module")
def maml_ckpt(tmp_path_factory: pytest.TempPathFactory, faces: Path) -> Path:
    # 1 inner step at test time instead of 10: each costs a forward and backward pass, and after
    # 4 training episodes inner_lr 0.4 overshoots (3 or 5 steps answer s8 for everything).
    return _train(tmp_path_factory.mktemp("maml"), faces, ["dataset=att_faces", "method=maml",
                                                           "method.inner_steps_eval=1"])


METHODS = ["protonet", "siamese", "matchingnet", "relationnet", "maml"]


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


@pytest.mark.parametrize("which", METHODS)
def test_predict_ranks_the_classes_of_a_folder_of_queries(which: str, request: pytest.FixtureRequest,
                                                          support_dir: Path, faces: Path,
                                                          tmp_path: Path, capsys) -> None:
    ckpt = request.getfixturevalue(f"{which}_ckpt")
    results = _predict(tmp_path, [f"ckpt_path={ckpt}", f"support_dir={support_dir}",
                                  f"query={faces / 'att_faces' / 's8'}", "top_k=5"])
    assert results["classes"] == ["s7", "s8"] and results["reject"]["threshold"] is None
    predictions = results["predictions"]
    assert [Path(p["query"]).name for p in predictions] == [f"{i}.pgm" for i in range(1, 7)]
    for prediction in predictions:
        top = prediction["top"]
        assert [r["class"] for r in top] in (["s7", "s8"], ["s8", "s7"])  # top_k capped at 2 classes
        probabilities = [r["probability"] for r in top]
        assert all(0.0 <= p <= 1.0 for p in probabilities)
        assert sum(probabilities) == pytest.approx(1.0, abs=1e-5)
        assert probabilities[0] >= probabilities[1] and top[0]["logit"] >= top[1]["logit"]
        assert prediction["prediction"] == top[0]["class"] and prediction["rejected"] is False
        assert prediction["max_logit"] == pytest.approx(top[0]["logit"])
    printed = capsys.readouterr().out
    assert "1.pgm: s" in printed and f"predictions written to {tmp_path / 'out'}" in printed
    assert json.loads((tmp_path / "out" / "predictions.json").read_text()) == results


@pytest.mark.parametrize("which", ["protonet", "siamese", "matchingnet", "maml"])
def test_a_support_image_is_answered_with_its_own_class(which: str, request: pytest.FixtureRequest,
                                                        support_dir: Path, tmp_path: Path) -> None:
    """A query identical to a support image: nearest prototype / best match / strongest attention /
    the head adapted on it. (Relation Networks learn their metric; 4 episodes guarantee nothing.)"""
    ckpt = request.getfixturevalue(f"{which}_ckpt")
    queries = tmp_path / "queries"
    queries.mkdir()
    for person in ("s7", "s8"):
        shutil.copy(support_dir / person / "1.pgm", queries / f"{person}.pgm")
    results = _predict(tmp_path, [f"ckpt_path={ckpt}", f"support_dir={support_dir}", f"query={queries}"])
    assert [p["prediction"] for p in results["predictions"]] == ["s7", "s8"]


def test_maml_adapts_to_the_support_images(maml_ckpt: Path, support_dir: Path, tmp_path: Path) -> None:
    """Without inner steps MAML's zeroed head answers 1/2 for every class; adapted on the support
    images it tells the two people apart."""
    queries = support_dir / "s8"
    adapted = _predict(tmp_path, [f"ckpt_path={maml_ckpt}", f"support_dir={support_dir}",
                                  f"query={queries}"])["predictions"]
    frozen = _predict(tmp_path, [f"ckpt_path={maml_ckpt}", f"support_dir={support_dir}",
                                 f"query={queries}", "+method.inner_steps_eval=0"])["predictions"]
    for still, moved in zip(frozen, adapted, strict=True):
        assert [r["probability"] for r in still["top"]] == pytest.approx([0.5, 0.5])
        assert moved["top"][0]["probability"] > 0.6 and moved["prediction"] == "s8"


def test_uneven_support_counts(relationnet_ckpt: Path, protonet_ckpt: Path, maml_ckpt: Path, faces: Path,
                               tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Relation Networks sum each class's support maps: with 3 images of s7 and 1 of s8 every class
    uses 1 image (the same answer as a 1-shot folder). ProtoNet averages, so it uses all of them."""
    uneven, one_shot = tmp_path / "uneven", tmp_path / "one_shot"
    for person, count in (("s7", 3), ("s8", 1)):
        for root, n in ((uneven, count), (one_shot, 1)):
            (root / person).mkdir(parents=True)
            for number in range(1, n + 1):
                shutil.copy(faces / "att_faces" / person / f"{number}.pgm", root / person)
    query = f"query={faces / 'att_faces' / 's7' / '6.pgm'}"

    def probabilities(ckpt: Path, support: Path) -> dict:
        result = _predict(tmp_path, [f"ckpt_path={ckpt}", f"support_dir={support}", query])
        return result["support"], {r["class"]: r["probability"] for r in result["predictions"][0]["top"]}

    with caplog.at_level("INFO", logger="fewshot_cli.tasks.predict"):
        info, relation_uneven = probabilities(relationnet_ckpt, uneven)
    assert info["images_per_class"] == {"s7": 3, "s8": 1} and info["shots_used"] == 1
    assert "every class uses its first 1" in caplog.text
    assert relation_uneven == probabilities(relationnet_ckpt, one_shot)[1]
    # A newcomer's input: MAML adapted on 3 images of one class and 1 of the other and favoured the
    # bigger class; it now uses equal shots as well.
    info, maml_uneven = probabilities(maml_ckpt, uneven)
    assert info["shots_used"] == 1
    assert maml_uneven == pytest.approx(probabilities(maml_ckpt, one_shot)[1])
    info, proto_uneven = probabilities(protonet_ckpt, uneven)
    assert "shots_used" not in info
    assert proto_uneven["s7"] != pytest.approx(probabilities(protonet_ckpt, one_shot)[1]["s7"], abs=1e-6)


@pytest.mark.parametrize("which", METHODS)
def test_training_stores_the_open_set_threshold_chosen_on_validation_episodes(
        which: str, request: pytest.FixtureRequest) -> None:
    ckpt = request.getfixturevalue(f"{which}_ckpt")
    checkpoint = torch.load(ckpt, weights_only=True)
    stored = checkpoint["open_set"]
    assert stored["score"] == "max_logit" and stored["split"] == "val"
    assert 0.5 <= stored["balanced_acc"] <= 1.0  # never below chance: the extreme thresholds give 0.5
    # 3 validation people: 2 in the support, 1 outside it.
    assert (stored["n_known"], stored["n_unknown"]) == (2, 1)
    # Recomputed from the same validation episodes with the stored weights: the same threshold.
    saved = OmegaConf.create(checkpoint["config"])
    ctx = DeviceContext.from_config(saved.device)
    dataset = build_dataset(saved.dataset)
    model = build_method(saved.method, ctx)
    model.load_state_dict(checkpoint["model"])
    shape = OpenSetShape(stored["n_known"], stored["n_unknown"], stored["n_shot"], stored["n_query"])
    scores, known = open_set_scores(model, dataset.load_split("val"), dataset, shape,
                                    stored["n_episodes"], saved.eval_seed, ctx, "val")
    assert best_balanced_threshold(scores, known) == pytest.approx((stored["threshold"],
                                                                    stored["balanced_acc"]))


def test_reject_applies_the_threshold(protonet_ckpt: Path, support_dir: Path, faces: Path,
                                      tmp_path: Path, capsys) -> None:
    common = [f"ckpt_path={protonet_ckpt}", f"support_dir={support_dir}",
              f"query={faces / 'att_faces'}/s1"]
    auto = _predict(tmp_path, [*common, "reject=auto"])
    stored = torch.load(protonet_ckpt, weights_only=True)["open_set"]["threshold"]
    assert auto["reject"]["threshold"] == stored and auto["reject"]["score"] == "max_logit"
    for prediction in auto["predictions"]:
        assert prediction["rejected"] == (prediction["max_logit"] < stored)
        assert prediction["prediction"] == (None if prediction["rejected"] else prediction["top"][0]["class"])
    scores = sorted(p["max_logit"] for p in auto["predictions"])
    middle = (scores[0] + scores[-1]) / 2
    capsys.readouterr()
    split = _predict(tmp_path, [*common, f"reject={middle}"])["predictions"]
    assert [p["rejected"] for p in split] == [p["max_logit"] < middle for p in split]
    assert any(p["rejected"] for p in split) and not all(p["rejected"] for p in split)
    assert "none of these (best logit" in capsys.readouterr().out
    never = _predict(tmp_path, common)["predictions"]  # reject=null: the default
    assert not any(p["rejected"] for p in never)


def test_bad_predict_settings_are_one_sentence(protonet_ckpt: Path, maml_ckpt: Path, support_dir: Path,
                                               faces: Path, tmp_path: Path) -> None:
    common = [f"ckpt_path={protonet_ckpt}", f"support_dir={support_dir}", f"query={faces}"]
    for value in ("maybe", "true", "[1,2]", "nan"):
        with pytest.raises(ConfigError, match=r"^reject=.*; use null .*, auto .* or a number"):
            _predict(tmp_path, [*common, f"reject={value}"])
    without = tmp_path / "without_open_set.pt"
    payload = torch.load(protonet_ckpt, weights_only=True)
    del payload["open_set"]
    torch.save(payload, without)
    with pytest.raises(ConfigError, match="holds no open-set threshold"):
        _predict(tmp_path, [f"ckpt_path={without}", f"support_dir={support_dir}", f"query={faces}",
                            "reject=auto"])
    lonely = tmp_path / "lonely"
    shutil.copytree(support_dir / "s7", lonely / "s7")
    with pytest.raises(ConfigError, match="ranks at least 2 classes"):
        _predict(tmp_path, [f"ckpt_path={protonet_ckpt}", f"support_dir={lonely}", f"query={faces}"])
    with pytest.raises(ConfigError, match="classes= names 3 classes but support_dir"):
        _predict(tmp_path, [*common, "classes=[a,b,c]"])
    with pytest.raises(ConfigError, match="top_k=0"):
        _predict(tmp_path, [*common, "top_k=0"])
    # A newcomer's inputs: these were TypeError tracebacks (predict.yaml has no typed schema).
    for value in ("abc", "2.5"):
        with pytest.raises(ConfigError, match=r"top_k=.* must be a whole number of at least 1"):
            _predict(tmp_path, [*common, f"top_k={value}"])
    with pytest.raises(ConfigError, match=r"threshold='abc' must be a number"):
        _predict(tmp_path, [f"ckpt_path={protonet_ckpt}", "threshold=abc",
                            f"pair=[{faces}/att_faces/s1/1.pgm,{faces}/att_faces/s1/2.pgm]"])
    with pytest.raises(ConfigError, match="pair= compares image embeddings"):
        _predict(tmp_path, [f"ckpt_path={maml_ckpt}", f"pair=[{faces}/att_faces/s1/1.pgm,"
                                                       f"{faces}/att_faces/s1/2.pgm]"])
    with pytest.raises(ConfigError, match="method=protonet predicts with trained weights"):
        _predict(tmp_path, ["method=protonet", f"support_dir={support_dir}", f"query={faces}"])
    with pytest.raises(ConfigError, match="is not this checkpoint's method"):
        _predict(tmp_path, [*common, "method=maml"])


@pytest.mark.slow
def test_cli_bad_reject_value_exits_2_with_one_sentence(support_dir: Path, tmp_path: Path) -> None:
    """The value is checked before the checkpoint is read (this one does not even exist)."""
    completed = subprocess.run(
        [sys.executable, "-m", "fewshot_cli", "predict", f"ckpt_path={tmp_path / 'best.pt'}",
         f"support_dir={support_dir}", f"query={support_dir}", "reject=maybe", "device=cpu",
         f"hydra.run.dir={tmp_path / 'run'}"],
        capture_output=True, text=True, cwd=tmp_path, timeout=300, check=False,
    )
    output = completed.stdout + completed.stderr
    assert completed.returncode == 2, output[-3000:]
    assert "reject='maybe'; use null" in output and "Traceback" not in output


def test_predict_single_query_file(siamese_ckpt: Path, support_dir: Path, faces: Path,
                                   tmp_path: Path) -> None:
    results = _predict(tmp_path, [f"ckpt_path={siamese_ckpt}", f"support_dir={support_dir}",
                                  f"query={faces / 'att_faces' / 's7' / '1.pgm'}", "top_k=1"])
    assert len(results["predictions"]) == 1 and results["predictions"][0]["top"][0]["class"] == "s7"
    assert len(results["predictions"][0]["top"]) == 1


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



def test_every_format_training_reads_is_read_by_predict(protonet_ckpt: Path, support_dir: Path,
                                                         tmp_path: Path) -> None:
    """A newcomer's input: a .webp support image and a .webp query were silently skipped."""
    from PIL import Image

    support = tmp_path / "support"
    shutil.copytree(support_dir, support)
    person = sorted(p for p in support.iterdir() if p.is_dir())[0]
    first = sorted(person.iterdir())[0]
    Image.open(first).save(person / "extra.webp")
    queries = tmp_path / "queries"
    queries.mkdir()
    Image.open(first).save(queries / "q1.webp")
    result = _predict(tmp_path, [f"ckpt_path={protonet_ckpt}", f"support_dir={support}", f"query={queries}"])
    assert [Path(p["query"]).name for p in result["predictions"]] == ["q1.webp"]


def test_reject_auto_warns_when_the_support_set_is_shaped_otherwise(protonet_ckpt: Path, support_dir: Path,
                                                                   faces: Path, tmp_path: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    """A newcomer's input: MatchingNet's threshold, chosen on 2-known-class episodes, rejected every
    query of a 4-class support set without a word."""
    stored = torch.load(protonet_ckpt, weights_only=True)["open_set"]
    n_support_classes = len([p for p in support_dir.iterdir() if p.is_dir()])
    with caplog.at_level("WARNING"):
        _predict(tmp_path, [f"ckpt_path={protonet_ckpt}", f"support_dir={support_dir}",
                            f"query={faces / 'att_faces' / 's7' / '6.pgm'}", "reject=auto"])
    differs = n_support_classes != stored["n_known"] or stored["n_shot"] != 2
    assert ("reject=auto's threshold was chosen on" in caplog.text) == differs
    assert differs  # the fixture's 2 people x 2 photos are not the validation shape
