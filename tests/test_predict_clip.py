"""`fewshot predict` with CLIP, no checkpoint: zero-shot from class names (`classes=` or the support
folder names) and `clip_protonet`'s blend of support prototypes and text, with the tiny randomly
initialised CLIP of tests/test_clip.py."""

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import compose_config
from PIL import Image
from test_clip import save_tiny_clip

from fewshot_cli.errors import ConfigError
from fewshot_cli.methods.clip_zero_shot import CLIPZeroShot
from fewshot_cli.tasks.predict import predict


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_clip(tmp_path_factory.mktemp("clip") / "tiny_vit.pt")


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Queries of several sizes and modes, and a support folder of 2 classes x 2 images."""
    root = tmp_path_factory.mktemp("clip_images")
    rng = np.random.default_rng(0)
    (root / "queries").mkdir()
    for i, (height, width) in enumerate([(40, 60), (64, 32), (32, 32)]):
        Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(
            root / "queries" / f"{i}.png")
    Image.fromarray(rng.integers(0, 256, (50, 50), dtype=np.uint8), mode="L").save(
        root / "queries" / "grey.png")
    for name, colour in (("cat", (200, 30, 30)), ("dog", (30, 30, 200))):
        (root / "support" / name).mkdir(parents=True)
        for j in range(2):
            pixels = np.clip(np.array(colour) + rng.normal(0, 20, (36, 36, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / "support" / name / f"{j}.png")
    return root


def _predict(tmp_path: Path, tiny_clip: Path, overrides: list[str]) -> dict:
    return predict(compose_config("predict", [
        "device=cpu", f"method.model={tiny_clip}", f"paths.cache_dir={tmp_path / 'cache'}", *overrides,
    ], tmp_path / "out"))


def _probabilities(results: dict) -> torch.Tensor:
    """[Q, n_way] in the order of results["classes"]."""
    rows = []
    for prediction in results["predictions"]:
        by_class = {r["class"]: r["probability"] for r in prediction["top"]}
        rows.append([by_class[name] for name in results["classes"]])
    return torch.tensor(rows)


def test_clip_zero_shot_from_class_names(tiny_clip: Path, images: Path, tmp_path: Path) -> None:
    results = _predict(tmp_path, tiny_clip, ["method=clip", "classes=[cat,dog]",
                                             f"query={images / 'queries'}"])
    assert results["ckpt_path"] is None and results["method"] == "clip"
    assert results["classes"] == ["cat", "dog"]
    probabilities = _probabilities(results)
    assert probabilities.shape == (4, 2)
    assert torch.allclose(probabilities.sum(dim=1), torch.ones(4), atol=1e-5)
    # The same as CLIP run directly on each image at its own size (clip's preprocessing inside).
    model = CLIPZeroShot(model=str(tiny_clip), download_root=str(tmp_path))
    files = sorted((images / "queries").iterdir(), key=lambda f: f.name)
    assert [Path(p["query"]).name for p in results["predictions"]] == ["0.png", "1.png", "2.png", "grey.png"]
    for file, row in zip(files, probabilities, strict=True):
        with Image.open(file) as image:
            pixels = torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1)[None] / 255.0
        logits = model.zero_shot_logits(model.encode_images(pixels), ["cat", "dog"])
        assert torch.allclose(row, torch.softmax(logits[0], dim=0), atol=1e-5)
    # Other names, other prompts, other answers: the names are really used.
    renamed = _probabilities(_predict(tmp_path, tiny_clip, [
        "method=clip", "classes=[castle,rocket]", f"query={images / 'queries'}"]))
    assert not torch.allclose(renamed, probabilities, atol=1e-3)


def test_clip_class_names_from_the_support_folders(tiny_clip: Path, images: Path, tmp_path: Path) -> None:
    names_only = tmp_path / "names_only"
    for name in ("cat", "dog"):
        (names_only / name).mkdir(parents=True)  # no images needed for zero-shot CLIP
    from_folders = _predict(tmp_path, tiny_clip, ["method=clip", f"support_dir={names_only}",
                                                  f"query={images / 'queries'}"])
    from_classes = _predict(tmp_path, tiny_clip, ["method=clip", "classes=[cat,dog]",
                                                  f"query={images / 'queries'}"])
    assert from_folders["classes"] == ["cat", "dog"]
    assert torch.allclose(_probabilities(from_folders), _probabilities(from_classes))
    ids = tmp_path / "ids"
    for name in ("n0001", "n0002"):
        (ids / name).mkdir(parents=True)
    renamed = _predict(tmp_path, tiny_clip, ["method=clip", f"support_dir={ids}", "classes=[cat,dog]",
                                             f"query={images / 'queries'}"])
    assert renamed["classes"] == ["cat", "dog"]
    assert torch.allclose(_probabilities(renamed), _probabilities(from_classes))


def test_clip_protonet_blends_support_prototypes_and_text(tiny_clip: Path, images: Path,
                                                          tmp_path: Path) -> None:
    common = ["method=clip_protonet", f"support_dir={images / 'support'}", f"query={images / 'queries'}"]
    text_only = _probabilities(_predict(tmp_path, tiny_clip, [*common, "method.text_weight=1.0"]))
    zero_shot = _probabilities(_predict(tmp_path, tiny_clip, [
        "method=clip", "classes=[cat,dog]", f"query={images / 'queries'}"]))
    assert torch.allclose(text_only, zero_shot, atol=1e-5)  # w = 1: zero-shot CLIP
    prototypes = _probabilities(_predict(tmp_path, tiny_clip, [*common, "method.text_weight=0.0"]))
    blended = _probabilities(_predict(tmp_path, tiny_clip, [*common, "method.text_weight=0.5"]))
    assert not torch.allclose(prototypes, zero_shot, atol=1e-3)
    assert not torch.allclose(blended, prototypes, atol=1e-3) and not torch.allclose(blended, zero_shot,
                                                                                      atol=1e-3)
    # The support images are used: a support image as query is closest to its own prototype.
    own = _predict(tmp_path, tiny_clip, ["method=clip_protonet", "method.text_weight=0.0",
                                         f"support_dir={images / 'support'}",
                                         f"query={images / 'support' / 'dog' / '0.png'}"])
    assert own["predictions"][0]["prediction"] == "dog"


def test_clip_reject_and_bad_settings(tiny_clip: Path, images: Path, tmp_path: Path) -> None:
    query = f"query={images / 'queries'}"
    everything = _predict(tmp_path, tiny_clip, ["method=clip", "classes=[cat,dog]", query, "reject=1000"])
    assert all(p["rejected"] and p["prediction"] is None for p in everything["predictions"])
    nothing = _predict(tmp_path, tiny_clip, ["method=clip", "classes=[cat,dog]", query, "reject=-1000"])
    assert not any(p["rejected"] for p in nothing["predictions"])
    with pytest.raises(ConfigError, match="reject=auto uses the threshold a training run stores"):
        _predict(tmp_path, tiny_clip, ["method=clip", "classes=[cat,dog]", query, "reject=auto"])
    with pytest.raises(ConfigError, match="compares queries with support images"):
        _predict(tmp_path, tiny_clip, ["method=clip_protonet", "classes=[cat,dog]", query])
    with pytest.raises(ConfigError, match=r"classes=.*distinct class names"):
        _predict(tmp_path, tiny_clip, ["method=clip", "classes=[cat,cat]", query])
    with pytest.raises(ConfigError, match="ranks at least 2 classes"):
        _predict(tmp_path, tiny_clip, ["method=clip", "classes=[cat]", query])
    with pytest.raises(ConfigError, match="pair= compares image embeddings"):
        _predict(tmp_path, tiny_clip, ["method=clip",
                                       f"pair=[{images}/queries/0.png,{images}/queries/1.png]"])
    with pytest.raises(ConfigError, match=r"classes=\[a,b\] and query=PATH"):
        _predict(tmp_path, tiny_clip, ["method=clip", "classes=[cat,dog]"])
