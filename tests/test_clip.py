"""CLIP zero-shot and CLIP ProtoNet with tiny randomly initialised CLIP models (no network).

The models are built with the package's own `clip.model.CLIP`, saved with torch.save(state_dict) and
loaded back through `clip.load(path, jit=False)` by the method, as a user's local .pt file would be.
"""

import json
import math
import os
import subprocess
import sys
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import compose_config
from PIL import Image

from fewshot_cli.data.image_split import ImageSplit
from fewshot_cli.data.sampler import EpisodeSampler
from fewshot_cli.engine.clip_full_split_eval import classify_split, topk_correct
from fewshot_cli.errors import CheckpointError, ConfigError
from fewshot_cli.methods import clip_model
from fewshot_cli.methods.clip_model import import_clip, load_clip
from fewshot_cli.methods.clip_preprocess import clip_preprocess
from fewshot_cli.methods.clip_prompts import (
    CIFAR100_TEMPLATES,
    MNIST_TEMPLATES,
    ensemble_text_features,
    resolve_templates,
)
from fewshot_cli.methods.clip_protonet import CLIPProtoNet
from fewshot_cli.methods.clip_zero_shot import CLIPZeroShot
from fewshot_cli.tasks.zero_shot import figure_indices, resolve_protocol, write_clip_figures

REPO_ROOT = Path(__file__).resolve().parents[1]
CLIP_VOCAB = 49408  # the tokenizer's vocabulary: the token embedding needs every id


def save_tiny_clip(path: Path, vision: str = "vit", seed: int = 0) -> Path:
    """A randomly initialised CLIP small enough for CPU tests (~13 MB, mostly token embeddings).

    clip.load's build_model infers 64-wide heads (width // 64), so widths are 64; the ResNet variant
    uses width 8 (its attention pool has width * 32 / 64 = 4 heads). Input resolution 32.
    """
    clip = import_clip()
    torch.manual_seed(seed)
    layers: int | tuple[int, int, int, int] = 1 if vision == "vit" else (1, 1, 1, 1)
    model = clip.model.CLIP(
        embed_dim=32, image_resolution=32, vision_layers=layers, vision_width=64 if vision == "vit" else 8,
        vision_patch_size=8, context_length=77, vocab_size=CLIP_VOCAB, transformer_width=64,
        transformer_heads=1, transformer_layers=1,
    )
    torch.save(model.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_clip(tmp_path_factory.mktemp("clip") / "tiny_vit.pt")


@pytest.fixture(scope="module")
def zero_shot(tiny_clip: Path, tmp_path_factory: pytest.TempPathFactory) -> CLIPZeroShot:
    return CLIPZeroShot(model=str(tiny_clip), download_root=str(tmp_path_factory.mktemp("root")))


def random_split(n_classes: int = 6, per_class: int = 4, channels: int = 3, side: int = 32,
                 seed: int = 0) -> ImageSplit:
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n_classes * per_class, channels, side, side), dtype=torch.uint8,
                           generator=generator)
    labels = torch.arange(n_classes).repeat(per_class)
    names = ["apple", "bear", "sweet pepper", "castle", "rocket", "whale", "tulip", "train"][:n_classes]
    return ImageSplit(images, labels, names, "random/test")


# --- loading ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("vision", ["vit", "resnet"])
def test_tiny_clip_loads_through_clip_load(vision: str, tmp_path: Path) -> None:
    path = save_tiny_clip(tmp_path / f"tiny_{vision}.pt", vision)
    method = CLIPZeroShot(model=str(path), download_root=str(tmp_path))
    assert method.input_resolution == 32 and not method.trainable
    assert all(not p.requires_grad for p in method.parameters())
    features = method.encode_images(torch.rand(3, 3, 32, 32))
    assert features.shape == (3, 32) and features.dtype == torch.float32
    assert torch.allclose(features.norm(dim=-1), torch.ones(3), atol=1e-5)
    method.train()
    assert not method.clip.training  # frozen BatchNorm statistics even in train mode


def test_offline_named_model_explains_where_to_put_the_file(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("no network")

    monkeypatch.setattr("urllib.request.urlopen", offline)
    monkeypatch.setattr(clip_model, "CLIP_DEFAULT_ROOT", str(tmp_path / "default"))
    with pytest.raises(CheckpointError) as caught:
        load_clip("ViT-B/32", str(tmp_path / "weights"))
    message = str(caught.value)
    assert str(tmp_path / "weights" / "ViT-B-32.pt") in message
    assert "openaipublic" in message and "method.model=" in message


def test_named_model_is_found_in_clips_default_cache(tiny_clip: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A file already in ~/.cache/clip is used (clip.load then checks its SHA-256)."""
    default = tmp_path / "default"
    default.mkdir()
    (default / "RN50.pt").write_bytes(tiny_clip.read_bytes())
    monkeypatch.setattr(clip_model, "CLIP_DEFAULT_ROOT", str(default))
    assert clip_model._root_holding("RN50.pt", str(tmp_path / "empty")) == str(default)
    assert clip_model._root_holding("ViT-B-32.pt", str(tmp_path / "empty")) == str(tmp_path / "empty")


def test_unknown_model_and_foreign_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="neither a CLIP model name"):
        load_clip("ViT-Z/99", str(tmp_path))
    foreign = tmp_path / "foreign.pt"
    torch.save({"weight": torch.zeros(2)}, foreign)
    with pytest.raises(CheckpointError, match="not a CLIP"):
        load_clip(str(foreign), str(tmp_path))


# --- prompts ---------------------------------------------------------------------------------------


def test_prompt_ensemble_against_a_hand_computed_case() -> None:
    # class 0: templates give (3, 4) and (0, 2): unit (0.6, 0.8) and (0, 1); mean (0.3, 0.9);
    # renormalised (0.3, 0.9) / sqrt(0.9) = (0.316228, 0.948683).
    # class 1: (-5, 0) and (0, -0.5): unit (-1, 0) and (0, -1); mean (-0.5, -0.5) -> (-0.7071, -0.7071).
    per_template = torch.tensor([[[3.0, 4.0], [0.0, 2.0]], [[-5.0, 0.0], [0.0, -0.5]]])
    expected = torch.tensor([[0.3 / math.sqrt(0.9), 0.9 / math.sqrt(0.9)],
                             [-1 / math.sqrt(2), -1 / math.sqrt(2)]])
    assert torch.allclose(ensemble_text_features(per_template), expected, atol=1e-6)
    # The raw mean (without per-template normalisation) would be different:
    raw = F.normalize(per_template.mean(dim=1), dim=-1)
    assert not torch.allclose(raw, expected, atol=1e-3)


def test_template_sets_and_files(tmp_path: Path) -> None:
    assert len(CIFAR100_TEMPLATES) == 18 and len(set(CIFAR100_TEMPLATES)) == 18
    assert CIFAR100_TEMPLATES[0] == "a photo of a {}."
    assert resolve_templates("cifar100", "", None) == CIFAR100_TEMPLATES
    assert resolve_templates("mnist", "", None) == ('a photo of the number: "{}".',)
    assert resolve_templates("single", "itap of a {}.", None) == ("itap of a {}.",)
    template_file = tmp_path / "templates.txt"
    template_file.write_text("# mine\na sketch of a {}.\n\n  a toy {}.  \n")
    assert resolve_templates("cifar100", "", str(template_file)) == ("a sketch of a {}.", "a toy {}.")
    with pytest.raises(ConfigError, match=r"method\.templates"):
        resolve_templates("imagenet80", "", None)
    with pytest.raises(ConfigError, match="exactly once"):
        resolve_templates("single", "a photo", None)
    with pytest.raises(ConfigError, match="cannot be read"):
        resolve_templates("single", "{}", str(tmp_path / "missing.txt"))


def test_text_classifier_is_the_ensemble_of_the_encoded_templates(zero_shot: CLIPZeroShot) -> None:
    clip = import_clip()
    names = ["apple", "sweet pepper"]
    got = zero_shot.text_classifier(names)
    assert got.shape == (2, 32)
    with torch.no_grad():
        for row, name in enumerate(names):
            tokens = clip.tokenize([t.format(name) for t in CIFAR100_TEMPLATES])
            per_template = F.normalize(zero_shot.clip.encode_text(tokens).float(), dim=-1)
            expected = F.normalize(per_template.mean(dim=0), dim=-1)
            assert torch.allclose(got[row], expected, atol=1e-5)


def test_text_features_are_cached_per_class_name(zero_shot: CLIPZeroShot,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    first = zero_shot.text_classifier(["whale", "rocket"])
    encoded: list[list[str]] = []
    original = zero_shot.encode_prompts
    monkeypatch.setattr(zero_shot, "encode_prompts",
                        lambda prompts: encoded.append(prompts) or original(prompts))
    again = zero_shot.text_classifier(["rocket", "whale", "tulip"])
    assert torch.equal(again[0], first[1]) and torch.equal(again[1], first[0])
    assert encoded == [[t.format("tulip") for t in CIFAR100_TEMPLATES]]  # only the new name


# --- preprocessing ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("height", "width", "channels", "size"),
                         [(32, 32, 3, 224), (28, 28, 1, 224), (28, 28, 1, 32), (40, 30, 3, 24),
                          (64, 96, 3, 48)])
def test_preprocessing_matches_clips_pil_transform(height: int, width: int, channels: int,
                                                   size: int) -> None:
    clip = import_clip()
    rng = np.random.default_rng(height * width + size)
    yy, xx = np.mgrid[0:height, 0:width]
    smooth = 127 + 90 * np.sin(xx / 3.0)[..., None] * np.cos(yy[..., None] / 4.0 + np.arange(channels))
    array = np.clip(smooth + rng.normal(0, 20, smooth.shape), 0, 255).astype(np.uint8)
    pil = Image.fromarray(array[..., 0] if channels == 1 else array)
    expected = clip.clip._transform(size)(pil)  # [3, size, size]
    pixels = torch.from_numpy(array).permute(2, 0, 1)[None].float() / 255.0
    got = clip_preprocess(pixels, size)[0]
    assert got.shape == expected.shape == (3, size, size)
    one_level = 1.0 / 255.0 / 0.2613  # one grey level after CLIP's normalisation (largest 1/std)
    difference = (got - expected).abs()
    assert float(difference.max()) <= one_level + 1e-4
    assert float((difference > 1e-4).float().mean()) < 0.02


def test_episode_normalisation_is_undone(tiny_clip: Path, tmp_path: Path) -> None:
    mean, std = [0.5071, 0.4865, 0.4409], [0.2673, 0.2564, 0.2762]
    method = CLIPZeroShot(model=str(tiny_clip), download_root=str(tmp_path), input_mean=mean,
                          input_std=std)
    split = random_split()
    normalised = EpisodeSampler(split, 3, 1, 2, seed=0, stream="test", mean=tuple(mean), std=tuple(std))
    raw = EpisodeSampler(split, 3, 1, 2, seed=0, stream="test")
    got = method.encode_images(method.episode_pixels(normalised.episode(0).query_images))
    expected = method.encode_images(raw.episode(0).query_images)
    assert torch.allclose(got, expected, atol=1e-5)


# --- episodes --------------------------------------------------------------------------------------


def test_zero_shot_logits_on_an_episode(zero_shot: CLIPZeroShot) -> None:
    episode = EpisodeSampler(random_split(), 5, 1, 3, seed=0, stream="test").episode(0)
    output = zero_shot.loss_and_logits(episode)
    assert output.loss is None and output.logits.shape == (15, 5)
    text = zero_shot.text_classifier(list(episode.class_names))
    expected = zero_shot.logit_scale * zero_shot.encode_images(episode.query_images) @ text.T
    assert torch.allclose(output.logits, expected, atol=1e-5)
    assert math.isclose(float(zero_shot.logit_scale), 1 / 0.07, rel_tol=1e-3)  # CLIP's initial value


def test_clip_protonet_blends_prototypes_and_text(tiny_clip: Path, tmp_path: Path,
                                                  zero_shot: CLIPZeroShot) -> None:
    episode = EpisodeSampler(random_split(per_class=5), 4, 2, 3, seed=1, stream="test").episode(0)
    support = zero_shot.encode_images(episode.support_images)
    query = zero_shot.encode_images(episode.query_images)
    prototypes = F.normalize(support.view(4, 2, -1).mean(dim=1), dim=-1)  # class-major support
    visual = zero_shot.logit_scale * query @ prototypes.T
    text = zero_shot.loss_and_logits(episode).logits
    for weight, expected in ((0.0, visual), (1.0, text), (0.25, 0.75 * visual + 0.25 * text)):
        method = CLIPProtoNet(text_weight=weight, model=str(tiny_clip), download_root=str(tmp_path))
        assert not method.trainable and not method.zero_shot
        assert torch.allclose(method.loss_and_logits(episode).logits, expected, atol=1e-4)
    with pytest.raises(ConfigError, match="text_weight"):
        CLIPProtoNet(text_weight=1.5, model=str(tiny_clip))


# --- full test set ---------------------------------------------------------------------------------


def test_topk_correct_hand_case() -> None:
    logits = torch.tensor([[0.1, 0.9, 0.0], [0.5, 0.2, 0.3], [0.0, 0.1, 0.2]])
    labels = torch.tensor([1, 2, 0])
    assert topk_correct(logits, labels, 1).tolist() == [True, False, False]
    assert topk_correct(logits, labels, 2).tolist() == [True, True, False]
    assert topk_correct(logits, labels, 5).tolist() == [True, True, True]  # k > K: every class


def test_classify_split_matches_a_direct_computation(zero_shot: CLIPZeroShot) -> None:
    split = random_split(n_classes=8, per_class=5)
    result = classify_split(zero_shot, split, batch_size=7, progress_bar=False)
    logits = zero_shot.zero_shot_logits(zero_shot.encode_images(split.images.float() / 255),
                                        split.class_names)
    predicted = logits.argmax(dim=1)
    assert result.top1 == pytest.approx(100 * float((predicted == split.labels).double().mean()))
    assert result.top5 == pytest.approx(100 * float(topk_correct(logits, split.labels, 5).double().mean()))
    for c in range(8):
        in_class = split.labels == c
        assert float(result.per_class[c]) == pytest.approx(
            100 * float((predicted[in_class] == c).double().mean()))
    assert torch.equal(result.top5_classes[:, 0], predicted)
    assert result.n_images == 40 and result.top5_probs.shape == (40, 5)


def test_figures_are_written_and_logged(zero_shot: CLIPZeroShot, tmp_path: Path) -> None:
    logged: list[tuple[str, tuple[int, ...]]] = []

    class Writer:
        def add_image(self, tag: str, image: np.ndarray, step: int, dataformats: str) -> None:
            logged.append((tag, image.shape))

    split = random_split(n_classes=6, per_class=3, channels=1, side=28)
    assert figure_indices(split.labels, 4).tolist() == [0, 1, 2, 3]
    paths = write_clip_figures(zero_shot, split, tmp_path, Writer(), n_images=4)
    assert [p.name for p in paths] == ["clip_similarity.png", "clip_top5.png"]
    for path in paths:
        with Image.open(path) as image:
            assert image.format == "PNG" and image.width > 300 and image.height > 200
    assert [tag for tag, _ in logged] == ["figures/clip_similarity", "figures/clip_top5"]
    assert all(len(shape) == 3 and shape[2] == 3 for _, shape in logged)


def test_protocol_choice(zero_shot: CLIPZeroShot, tiny_clip: Path, tmp_path: Path) -> None:
    class Benchmark:
        zero_shot_benchmark = True

    class Episodic:
        pass

    protonet = CLIPProtoNet(model=str(tiny_clip), download_root=str(tmp_path))
    assert resolve_protocol("auto", Benchmark(), zero_shot) == "full"
    assert resolve_protocol("auto", Episodic(), zero_shot) == "episodes"
    assert resolve_protocol("auto", Benchmark(), protonet) == "episodes"
    assert resolve_protocol("episodes", Benchmark(), zero_shot) == "episodes"
    with pytest.raises(ConfigError, match="zero-shot method"):
        resolve_protocol("full", Benchmark(), protonet)
    with pytest.raises(ConfigError, match=r"eval\.protocol"):
        resolve_protocol("all", Benchmark(), zero_shot)


# --- configs and the command line ------------------------------------------------------------------


def test_method_configs_follow_the_dataset(tmp_path: Path) -> None:
    paths = [f"paths.data_dir={tmp_path}", f"paths.cache_dir={tmp_path / 'cache'}",
             f"paths.output_dir={tmp_path / 'out'}"]
    cfg = compose_config("eval", ["method=clip", "dataset=cifar100", *paths])
    assert cfg.method.model == "ViT-B/32" and cfg.method.templates == "cifar100"
    assert cfg.method.download_root == f"{tmp_path / 'cache'}/clip"
    assert list(cfg.method.input_mean) == list(cfg.dataset.mean)
    assert cfg.eval.protocol == "auto" and cfg.eval.figures
    mnist = compose_config("eval", ["method=clip", "dataset=mnist", *paths])
    assert mnist.method.templates == "mnist" and mnist.method.input_mean is None
    omniglot = compose_config("eval", ["method=clip", "dataset=omniglot", *paths])
    assert omniglot.method.templates == "cifar100"  # datasets without a set: the default
    blended = compose_config("eval", ["method=clip_protonet", "dataset=cifar_fs", "method.text_weight=0.3",
                                      *paths])
    assert blended.method._target_.endswith("CLIPProtoNet") and blended.method.text_weight == 0.3
    assert blended.method.model == "ViT-B/32"


def test_clip_zero_shot_on_mnist_digits_uses_the_number_prompt(tiny_clip: Path, tmp_path: Path) -> None:
    """dataset=mnist dataset.classes_split=all + method=clip: the full protocol over digit names."""
    sys.path.insert(0, str(Path(__file__).parent))
    try:
        from test_mnist import write_idx_mnist
    finally:
        sys.path.pop(0)
    from fewshot_cli.tasks.evaluate import evaluate

    data_dir = write_idx_mnist(tmp_path / "data")
    cfg = compose_config("eval", [
        "method=clip", f"method.model={tiny_clip}", "dataset=mnist", "dataset.classes_split=all",
        f"paths.data_dir={data_dir}", f"paths.cache_dir={tmp_path / 'cache'}",
        f"paths.output_dir={tmp_path / 'run'}", "device=cpu", "logger=none", "eval.figures=false",
    ])
    metrics = evaluate(cfg)
    assert metrics["test/protocol"] == "full" and metrics["test/n_images"] == 30
    assert metrics["method/n_templates"] == len(MNIST_TEMPLATES)
    assert sorted(metrics["test/per_class_acc"]) == [str(d) for d in range(10)]


def _write_cifar(data_dir: Path) -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    try:
        from test_cifar import write_fake_cifar100
    finally:
        sys.path.pop(0)
    write_fake_cifar100(data_dir / "cifar100", train_per_class=1, test_per_class=2)


def test_clip_protonet_episodes_on_cifar_fs(tiny_clip: Path, tmp_path: Path) -> None:
    from fewshot_cli.tasks.evaluate import evaluate

    _write_cifar(tmp_path / "data")
    cfg = compose_config("eval", [
        "method=clip_protonet", f"method.model={tiny_clip}", "dataset=cifar_fs",
        f"paths.data_dir={tmp_path / 'data'}", f"paths.cache_dir={tmp_path / 'cache'}",
        f"paths.output_dir={tmp_path / 'run'}", "device=cpu", "logger=none",
        "eval_episodes.n_way=5", "eval_episodes.n_shot=1", "eval_episodes.n_query=2", "eval.n_episodes=3",
    ])
    metrics = evaluate(cfg)
    assert metrics["test/n_episodes"] == 3 and "test/top1" not in metrics
    assert metrics["figures"] == ["clip_similarity.png", "clip_top5.png"]
    assert (tmp_path / "run" / "clip_top5.png").is_file()


@pytest.mark.slow
def test_cli_full_cifar100_zero_shot_writes_metrics_and_figures(tiny_clip: Path, tmp_path: Path) -> None:
    _write_cifar(tmp_path / "data")
    run_dir = tmp_path / "run"
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    completed = subprocess.run(
        [sys.executable, "-m", "fewshot_cli", "eval", "method=clip", f"method.model={tiny_clip}",
         "dataset=cifar100", f"paths.data_dir={tmp_path / 'data'}",
         f"paths.cache_dir={tmp_path / 'cache'}", "dataset.download=false", "device=cpu",
         f"hydra.run.dir={run_dir}"],
        capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=300, check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "test/top1" in completed.stdout
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["test/protocol"] == "full" and metrics["test/n_images"] == 200
    assert metrics["test/n_classes"] == 100 and metrics["method/n_templates"] == 18
    assert 0.0 <= metrics["test/top1"] <= metrics["test/top5"] <= 100.0
    assert metrics["test/acc"] == metrics["test/top1"]
    assert len(metrics["test/per_class_acc"]) == 100 and "aquarium fish" in metrics["test/per_class_acc"]
    for name in metrics["figures"]:
        assert (run_dir / name).is_file()
    assert metrics["figures"] == ["clip_similarity.png", "clip_top5.png"]
    assert list((run_dir / "tb").glob("events.out.tfevents.*"))


@pytest.mark.slow
def test_cli_offline_named_model_exits_with_one_sentence(tmp_path: Path) -> None:
    _write_cifar(tmp_path / "data")
    script = (
        "import sys, urllib.error, urllib.request\n"
        "def offline(*a, **k):\n    raise urllib.error.URLError('offline')\n"
        "urllib.request.urlopen = offline\n"
        "from fewshot_cli.cli import main\nsys.argv = ['fewshot'] + sys.argv[1:]\nmain()\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", script, "eval", "method=clip", "method.model=RN50", "dataset=cifar100",
         f"paths.data_dir={tmp_path / 'data'}", f"paths.cache_dir={tmp_path / 'cache'}", "device=cpu",
         f"hydra.run.dir={tmp_path / 'run'}"],
        capture_output=True, text=True, env={**os.environ, "HOME": str(tmp_path)}, cwd=REPO_ROOT,
        timeout=300, check=False,
    )
    assert completed.returncode == 2, completed.stderr[-3000:]
    output = completed.stdout + completed.stderr
    assert "RN50.pt" in output and str(tmp_path / "cache" / "clip") in output
    assert "Traceback" not in output

