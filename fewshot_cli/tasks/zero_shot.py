"""`fewshot eval` for CLIP: the full-test-set zero-shot protocol and the notebook figures.

`tasks/evaluate.py` scores methods on episodes. Zero-shot benchmarks are scored differently: CLIP's
numbers (Radford et al. 2021; CIFAR-100 top-1: RN50 41.6, ViT-B/32 65.1) are top-1 accuracy over a
whole test set against all of its classes. `eval.protocol` chooses:

* ``episodes``: the usual mean ± 95% CI over test episodes (every method, CLIP included);
* ``full``: every image of `eval.split`, top-1 / top-5 / per-class accuracy (zero-shot methods);
* ``auto`` (default): ``full`` for a zero-shot method on a zero-shot benchmark dataset
  (`dataset=cifar100`, `dataset=mnist dataset.classes_split=all`), ``episodes`` otherwise.

With `eval.figures=true`, CLIP methods also write `clip_similarity.png` and `clip_top5.png` into the
run directory (and to TensorBoard under `figures/`), whichever protocol ran.
"""

import logging
import math
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from fewshot_cli.data.base import FewShotDataset
from fewshot_cli.data.image_split import ImageSplit
from fewshot_cli.engine.clip_full_split_eval import classify_split
from fewshot_cli.engine.device import DeviceContext, released_cuda_memory
from fewshot_cli.engine.run_outputs import open_tensorboard, write_metrics
from fewshot_cli.errors import ConfigError
from fewshot_cli.methods.base import FewShotMethod
from fewshot_cli.methods.clip_zero_shot import CLIPZeroShot

log = logging.getLogger(__name__)

PROTOCOLS = ("auto", "episodes", "full")


def is_zero_shot(model: FewShotMethod) -> bool:
    """Whether `model` classifies images from class names alone (needs no support set)."""
    return isinstance(model, CLIPZeroShot) and model.zero_shot


def resolve_protocol(protocol: str, dataset: FewShotDataset, model: FewShotMethod) -> str:
    """'episodes' or 'full' for `eval.protocol` (see the module docstring)."""
    if protocol not in PROTOCOLS:
        raise ConfigError(f"eval.protocol={protocol!r}; use one of {', '.join(PROTOCOLS)}")
    if protocol == "full" and not is_zero_shot(model):
        raise ConfigError("eval.protocol=full classifies a whole split from class names and needs a "
                          "zero-shot method (method=clip); use eval.protocol=episodes")
    if protocol == "auto":
        benchmark = bool(getattr(dataset, "zero_shot_benchmark", False))
        return "full" if benchmark and is_zero_shot(model) else "episodes"
    return protocol


def evaluate_full(
    cfg: DictConfig,
    dataset: FewShotDataset,
    model: CLIPZeroShot,
    ctx: DeviceContext,
    output_dir: Path,
) -> dict[str, Any]:
    """Zero-shot top-1 / top-5 / per-class accuracy on every image of `cfg.eval.split`.

    Writes and returns metrics.json (accuracies in percent; `test/acc` is top-1 with a binomial
    95% CI, so results tables treat it like an episodic score).
    """
    split = dataset.load_split(cfg.eval.split)
    log.info("zero-shot %s on %d %s images, %d classes, %d prompt template(s), on %s",
             model.model_name, split.images.shape[0], split.name, split.num_classes,
             len(model.templates), ctx.device)
    writer = open_tensorboard(output_dir, cfg.logger.tensorboard)
    try:
        with released_cuda_memory():
            result = classify_split(model, split, batch_size=model.batch_size)
            figures = (write_clip_figures(model, split, output_dir, writer, cfg.eval.figure_images)
                       if cfg.eval.figures else [])
        p = result.top1 / 100.0
        ci95 = 100.0 * 1.96 * math.sqrt(p * (1.0 - p) / result.n_images)
        line = (f"{cfg.eval.split}/top1 {result.top1:.2f} ± {ci95:.2f}  top5 {result.top5:.2f} "
                f"(zero-shot, all {result.n_images} images of {split.name}, {split.num_classes} classes)")
        # Printed bare for scripts reading stdout, and logged so that eval.log holds the result too.
        print(line, flush=True)
        log.info("%s", line)
        metrics: dict[str, Any] = {
            "test/acc": result.top1,
            "test/acc_ci95": ci95,
            "test/top1": result.top1,
            "test/top5": result.top5,
            "test/mean_per_class_acc": result.mean_per_class,
            "test/per_class_acc": {  # None for a class without images (NaN is not JSON)
                name: None if math.isnan(acc) else acc
                for name, acc in zip(split.class_names, result.per_class.tolist(), strict=True)
            },
            "test/n_images": result.n_images,
            "test/n_classes": split.num_classes,
            # Results tables read every run as N-way K-shot: a whole split is K-way 0-shot.
            "test/n_way": split.num_classes,
            "test/n_shot": 0,
            "test/protocol": "full",
            "test/split": cfg.eval.split,
            "dataset": dataset.name,
            "method": type(model).__name__,
            "seed": cfg.seed,
            "method/model": model.model_name,
            "method/n_templates": len(model.templates),
            "ckpt_path": None,
            "device": str(ctx.device),
            "figures": [str(path.relative_to(output_dir)) for path in figures],
        }
        if writer is not None:
            writer.add_scalar("test/top1", result.top1, 0)
            writer.add_scalar("test/top5", result.top5, 0)
    finally:
        if writer is not None:
            writer.close()
    log.info("metrics written to %s", write_metrics(output_dir, metrics))
    return metrics


def episode_figures(
    cfg: DictConfig, dataset: FewShotDataset, model: FewShotMethod, output_dir: Path
) -> dict[str, Any]:
    """After an episodic eval of a CLIP method: write the figures, return {"figures": [...]}.

    Returns {} for other methods or with eval.figures=false.
    """
    if not (cfg.eval.figures and isinstance(model, CLIPZeroShot)):
        return {}
    writer = open_tensorboard(output_dir, cfg.logger.tensorboard)
    try:
        with released_cuda_memory():
            paths = write_clip_figures(model, dataset.load_split(cfg.eval.split), output_dir, writer,
                                       cfg.eval.figure_images)
    finally:
        if writer is not None:
            writer.close()
    return {"figures": [str(path.relative_to(output_dir)) for path in paths]}


def figure_indices(labels: torch.Tensor, n_images: int) -> torch.Tensor:
    """Indices of the first image of each of the first `n_images` distinct classes, in split order."""
    seen: dict[int, int] = {}
    for index, label in enumerate(labels.tolist()):
        if label not in seen:
            seen[label] = index
            if len(seen) == n_images:
                break
    return torch.tensor(list(seen.values()), dtype=torch.long)


@torch.no_grad()
def write_clip_figures(
    model: CLIPZeroShot,
    split: ImageSplit,
    output_dir: Path,
    writer: Any = None,
    n_images: int = 8,
) -> list[Path]:
    """The notebook figures for `n_images` images of distinct classes of `split`.

    clip_similarity.png: cos(prompt-ensemble text embedding of each image's class, image embedding);
    clip_top5.png: softmax(s * cos) over all classes of the split, five best per image.
    """
    from fewshot_cli.engine.clip_figures import similarity_figure, top5_figure
    from fewshot_cli.engine.figure_files import save_figure

    if n_images < 1:
        raise ConfigError(f"eval.figure_images={n_images} must be at least 1")
    chosen = figure_indices(split.labels, n_images)
    images = split.images[chosen]  # uint8 [n, C, H, W]
    names = [split.class_names[i] for i in split.labels[chosen].tolist()]
    features = model.encode_images(images.to(model.device).float() / 255.0)  # [n, D]
    texts = model.text_classifier(names)  # [n, D]
    description = model.templates[0]
    title = f"Cosine similarity between text and image features ({Path(model.model_name).name})"
    if len(model.templates) > 1:
        title += f"\ntext: ensemble of {len(model.templates)} templates (first shown)"
    similarity = similarity_figure(images, [description.format(n) for n in names],
                                   texts @ features.T, title=title)
    logits = model.zero_shot_logits(features, split.class_names)  # [n, K]
    probs, best = logits.softmax(dim=-1).topk(min(5, split.num_classes), dim=-1)
    top_names = [[split.class_names[c] for c in row] for row in best.tolist()]
    top5 = top5_figure(images, names, top_names, probs)
    return [
        save_figure(similarity, output_dir / "clip_similarity.png", writer, "figures/clip_similarity"),
        save_figure(top5, output_dir / "clip_top5.png", writer, "figures/clip_top5"),
    ]
