"""`fewshot predict`: use a trained checkpoint on your own images.

* `support_dir=DIR query=PATH`: DIR holds one subfolder per class with one or a few images; PATH is an
  image or a folder of images. Each query gets the method's class scores (`FewShotMethod.class_scores`:
  prototypes for ProtoNet, the best support image for Siamese), top `top_k` printed.
* `pair=[a,b]`: the method's `pair_distance` between two images and the same/different call at the
  threshold chosen on validation pairs after training (stored in best.pt), or `threshold=`.

Works for every method with `has_embedding`; images are decoded by the checkpoint's dataset class
(`FewShotDataset.decode_files`), so size, channels and Omniglot's inversion match training.
"""

import json
import logging
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from fewshot_cli.data.att_faces import IMAGE_SUFFIXES, natural_key
from fewshot_cli.data.base import FewShotDataset
from fewshot_cli.data.image_io import is_hidden
from fewshot_cli.engine.checkpoint import load_checkpoint, load_model_weights
from fewshot_cli.engine.device import DeviceContext
from fewshot_cli.errors import ConfigError, DatasetError
from fewshot_cli.methods.base import FewShotMethod
from fewshot_cli.tasks.build import build_dataset, build_method
from fewshot_cli.tasks.pair_report import embed_images

log = logging.getLogger(__name__)


def predict(cfg: DictConfig) -> dict[str, Any]:
    """Classify `cfg.query` against `cfg.support_dir` and/or compare `cfg.pair`; print and return."""
    if not cfg.ckpt_path:
        raise ConfigError("give ckpt_path=<.../checkpoints/best.pt>")
    if cfg.pair is None and (cfg.support_dir is None or cfg.query is None):
        raise ConfigError("give support_dir=DIR and query=PATH, or pair=[a.png,b.png]")
    checkpoint = load_checkpoint(cfg.ckpt_path)
    ctx = DeviceContext.from_config(cfg.device)
    model, dataset = _rebuild(cfg, checkpoint, ctx)
    results: dict[str, Any] = {"ckpt_path": str(cfg.ckpt_path)}
    if cfg.support_dir is not None and cfg.query is not None:
        results["predictions"] = classify(model, dataset, ctx, Path(cfg.support_dir), Path(cfg.query),
                                          cfg.top_k)
    if cfg.pair is not None:
        threshold = cfg.threshold
        if threshold is None:
            threshold = checkpoint.get("verification", {}).get("threshold")
        results["pair"] = compare(model, dataset, ctx, [Path(p) for p in cfg.pair], threshold)
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "predictions.json").write_text(json.dumps(results, indent=2) + "\n")
    return results


def _rebuild(cfg: DictConfig, checkpoint: dict[str, Any],
             ctx: DeviceContext) -> tuple[FewShotMethod, FewShotDataset]:
    """The checkpoint's method (with its weights) and dataset object (no data is read)."""
    saved = checkpoint["config"]
    node = OmegaConf.create({key: saved.get(key) for key in ("dataset", "backbone", "method")})
    node.paths = OmegaConf.to_container(cfg.paths, resolve=True)
    dataset = build_dataset(node.dataset)
    model = build_method(node.method, ctx)
    if not model.has_embedding:
        raise ConfigError(f"{saved['method']['_target_'].rsplit('.', 1)[-1]} has no image embedding; "
                          f"`fewshot predict` works with embedding methods (protonet, siamese)")
    load_model_weights(model, checkpoint, node, Path(cfg.ckpt_path).name)
    model.eval()
    return model, dataset


def image_files(path: Path, what: str) -> list[Path]:
    """`path` itself if it is an image file, else the image files directly inside the folder
    (hidden ones such as .DS_Store or ._photo.jpg skipped)."""
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise DatasetError(f"{what} {path} does not exist; give an image file or a folder of images")
    files = sorted((f for f in path.iterdir()
                    if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES and not is_hidden(f)),
                   key=lambda f: natural_key(f.name))
    if not files:
        raise DatasetError(f"{what} {path} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    return files


def support_files(support_dir: Path) -> tuple[list[str], list[Path], torch.Tensor]:
    """Class names (subfolders, natural order; hidden ones such as .ipynb_checkpoints skipped),
    their image files and labels [S]."""
    if not support_dir.is_dir():
        raise DatasetError(f"support_dir {support_dir} is not a folder; expected "
                           f"{support_dir}/<class name>/<image files>")
    classes = sorted((d for d in support_dir.iterdir() if d.is_dir() and not is_hidden(d)),
                     key=lambda d: natural_key(d.name))
    if not classes:
        raise DatasetError(f"support_dir {support_dir} has no class subfolders; expected "
                           f"{support_dir}/<class name>/<image files>")
    files: list[Path] = []
    labels: list[int] = []
    for label, folder in enumerate(classes):
        found = image_files(folder, "support class folder")
        files.extend(found)
        labels.extend([label] * len(found))
    return [d.name for d in classes], files, torch.tensor(labels, dtype=torch.long)


@torch.no_grad()
def classify(model: FewShotMethod, dataset: FewShotDataset, ctx: DeviceContext, support_dir: Path,
             query: Path, top_k: int = 5) -> list[dict[str, Any]]:
    """Top classes with scores for every query image; printed one block per query."""
    names, files, labels = support_files(support_dir)
    queries = image_files(query, "query")
    support = embed_images(model, dataset.decode_files(files), dataset, ctx)
    embedded = embed_images(model, dataset.decode_files(queries), dataset, ctx)
    scores = model.class_scores(embedded, support, labels.to(support.device), len(names)).float().cpu()
    k = min(top_k, len(names))
    results = []
    for path, row in zip(queries, scores, strict=True):
        top = torch.topk(row, k)
        ranked = [{"class": names[i], "score": float(s)} for s, i in zip(top.values, top.indices,
                                                                         strict=True)]
        results.append({"query": str(path), "top": ranked})
        print(f"{path}: " + ", ".join(f"{r['class']} ({r['score']:.4g})" for r in ranked), flush=True)
    return results


@torch.no_grad()
def compare(model: FewShotMethod, dataset: FewShotDataset, ctx: DeviceContext, pair: list[Path],
            threshold: float | None) -> dict[str, Any]:
    """Distance between two images and the same/different call at `threshold` (if any)."""
    if len(pair) != 2:
        raise ConfigError(f"pair needs exactly two image paths, got {len(pair)}")
    for path in pair:
        if not path.is_file():
            raise DatasetError(f"pair image {path} does not exist")
    embedded = embed_images(model, dataset.decode_files(pair), dataset, ctx)
    distance = float(model.pair_distance(embedded[:1], embedded[1:]).float().cpu()[0])
    result: dict[str, Any] = {"a": str(pair[0]), "b": str(pair[1]), "distance": distance,
                              "threshold": threshold}
    if threshold is None:
        print(f"distance {distance:.4g} (no threshold in the checkpoint; pass threshold=...)", flush=True)
    else:
        result["same"] = distance <= threshold
        verdict = "same" if result["same"] else "different"
        print(f"distance {distance:.4g}: {verdict} (threshold {threshold:.4g})", flush=True)
    return result
