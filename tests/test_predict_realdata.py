"""`fewshot predict reject=auto` on real AT&T faces: a short-trained ProtoNet answers held-out photos
of the support people with their names and a solid red image with "none of these".

Needs ../shared/data/att_faces (or FEWSHOT_DATA_DIR); skipped otherwise. About 20 s on a 2-core CPU:
80 training episodes at 32x32.
"""

import shutil
from pathlib import Path

import pytest
import torch
from conftest import compose_config
from PIL import Image

from fewshot_cli.tasks.predict import predict
from fewshot_cli.tasks.train import train

pytestmark = [pytest.mark.realdata, pytest.mark.slow]

TEST_PEOPLE = ("s36", "s37", "s38", "s39", "s40")  # the default split's 5 test people (fold 0)


def test_a_red_image_is_none_of_the_people(real_att_faces: Path, tmp_path: Path) -> None:
    cfg = compose_config("train", [
        "method=protonet", "dataset=att_faces", "dataset.image_size=32", "device=cpu", "logger=none",
        "trainer.progress_bar=false", "train_episodes.n_way=10", "train_episodes.n_query=5",
        "trainer.max_episodes=80", "trainer.val_every=80", "trainer.val_episodes=40",
        "eval.n_episodes=20", f"paths.data_dir={real_att_faces}", f"paths.cache_dir={tmp_path / 'cache'}",
    ], tmp_path / "run")
    metrics = train(cfg)
    ckpt = tmp_path / "run" / "checkpoints" / "best.pt"
    stored = torch.load(ckpt, weights_only=True)["open_set"]
    assert stored["score"] == "max_logit" and stored["balanced_acc"] > 0.7
    assert metrics["test/open_set_auroc"] > 0.8  # unknown test people score lower than known ones

    support, queries = tmp_path / "people", tmp_path / "queries"
    queries.mkdir()
    for person in TEST_PEOPLE:  # never seen in training
        (support / person).mkdir(parents=True)
        for number in (1, 2):
            shutil.copy(real_att_faces / "att_faces" / person / f"{number}.pgm", support / person)
        shutil.copy(real_att_faces / "att_faces" / person / "10.pgm", queries / f"{person}.pgm")
    Image.new("RGB", (92, 112), (255, 0, 0)).save(queries / "red.png")

    def answers(reject: str) -> dict[str, dict]:
        results = predict(compose_config("predict", [
            f"ckpt_path={ckpt}", f"support_dir={support}", f"query={queries}", f"reject={reject}",
            "device=cpu"], tmp_path / "predict"))
        return {Path(p["query"]).stem: p for p in results["predictions"]}

    rejecting = answers("auto")
    assert rejecting["red"]["prediction"] is None  # "none of these"
    faces = [rejecting[person] for person in TEST_PEOPLE]
    assert sum(rejecting[person]["top"][0]["class"] == person for person in TEST_PEOPLE) >= 4
    # The threshold is tuned for unseen faces (balanced accuracy about 80% after 80 episodes), so
    # a face near it may be rejected too; the red image is far below every face.
    assert sum(face["prediction"] is not None for face in faces) >= 3
    assert rejecting["red"]["max_logit"] < min(face["max_logit"] for face in faces)
    assert answers("null")["red"]["prediction"] in TEST_PEOPLE  # without reject= it names somebody
