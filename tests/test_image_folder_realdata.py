"""Real AT&T faces read through `dataset=image_folder` score exactly as `dataset=att_faces` does.

The tree is ../shared/data/att_faces (s1..s40, 10 PGMs each) seen through train/, val/ and test/
folders of symlinks that reproduce ATTFaces' default split (natural order: s1-s30 train, s31-s35
val, s36-s40 test). Two settings make the comparison valid: `dataset.resize=stretch`, because
ATTFaces scales the 92x112 faces to a square without keeping the aspect ratio (image_folder's default
`crop` would cut 10 rows off the top and bottom, other pixels, so other accuracies), and
`dataset.mean=[0.0] dataset.std=[1.0]`, because att_faces does not normalise (image_folder would use
the training split's mean and std). Same pixels, same class order, same eval_seed: same episodes.
"""

from pathlib import Path

import pytest
import torch
from conftest import compose_config

from fewshot_cli.data.att_faces import ATTFaces
from fewshot_cli.data.image_folder import ImageFolder
from fewshot_cli.tasks.evaluate import evaluate
from fewshot_cli.tasks.train import train

pytestmark = [pytest.mark.realdata, pytest.mark.slow]

SIZE = 28  # small, so the run takes seconds; the comparison holds at any size


def split_tree(faces: Path, tmp_path: Path) -> Path:
    """tmp/faces/{train,val,test}/sN -> faces/sN, as ATTFaces(heldout=5, val_people=5) splits."""
    root = tmp_path / "faces"
    for split, people in (("train", range(1, 31)), ("val", range(31, 36)), ("test", range(36, 41))):
        (root / split).mkdir(parents=True)
        for person in people:
            (root / split / f"s{person}").symlink_to(faces / f"s{person}", target_is_directory=True)
    return root


def test_image_folder_reproduces_att_faces(real_att_faces: Path, tmp_path: Path) -> None:
    tree = split_tree(real_att_faces / "att_faces", tmp_path)
    cache = tmp_path / "cache"
    reference = ATTFaces(str(real_att_faces), str(cache), image_size=SIZE)
    stretched = ImageFolder(str(tree), str(cache), image_size=SIZE, channels=1, resize="stretch")
    cropped = ImageFolder(str(tree), str(cache), image_size=SIZE, channels=1)
    for split in ("train", "val", "test"):
        ours, theirs = stretched.load_split(split), reference.load_split(split)
        assert ours.class_names == theirs.class_names
        assert torch.equal(ours.labels, theirs.labels) and torch.equal(ours.images, theirs.images)
    assert not torch.equal(cropped.load_split("test").images, reference.load_split("test").images)

    common = [f"paths.data_dir={real_att_faces}", f"paths.cache_dir={cache}", "device=cpu", "logger=none"]
    train(compose_config("train", [
        *common, "method=protonet", "dataset=att_faces", f"dataset.image_size={SIZE}",
        "trainer.progress_bar=false", "trainer.max_episodes=10", "trainer.val_every=10",
        "trainer.checkpoint_every=10", "trainer.val_episodes=10", "eval.n_episodes=10"], tmp_path / "run"))
    best = tmp_path / "run" / "checkpoints" / "best.pt"
    scoring = [*common, f"ckpt_path={best}", "eval.n_episodes=200"]
    as_att = evaluate(compose_config("eval", scoring, tmp_path / "eval_att"))
    as_folder = evaluate(compose_config("eval", [
        *scoring, "dataset=image_folder", f"dataset.root={tree}",
        f"dataset.image_size={SIZE}", "dataset.channels=1", "dataset.resize=stretch",
        "dataset.mean=[0.0]", "dataset.std=[1.0]"], tmp_path / "eval_folder"))
    assert as_att["test/n_episodes"] == as_folder["test/n_episodes"] == 200
    assert as_att["test/acc"] == as_folder["test/acc"], (as_att["test/acc"], as_folder["test/acc"])
    print(f"att_faces {as_att['test/acc']:.2f} ± {as_att['test/acc_ci95']:.2f}, image_folder "
          f"{as_folder['test/acc']:.2f} ± {as_folder['test/acc_ci95']:.2f}")
