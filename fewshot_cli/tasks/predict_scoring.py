"""`fewshot predict` for every method: your images as an Episode, scored by the method's own
`loss_and_logits`, turned into ranked class probabilities and, optionally, "none of these".

* Images: a checkpoint's dataset decodes them (`FewShotDataset.decode_files`: size, channels,
  Omniglot's inversion) and the episode sampler's normalisation `(x / 255 - mean) / std` follows;
  CLIP methods take any image as CLIP's own preprocessing does (shorter side resized, centre crop).
* Episode: support images class-major with labels 0..n_way-1 in class-folder order, the query images
  with unknown labels (zeros: the loss the method also returns is ignored), in eval mode under the
  autograd mode the evaluator uses (on for MAML, which adapts to the support set first).
* Probabilities: `FewShotMethod.probabilities(logits)`, per method (softmax by default).
* Open set: a query whose best logit is below the threshold is "none of these"
  (`engine/open_set.py`).
"""

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fewshot_cli.data.base import FewShotDataset
from fewshot_cli.data.episode import Episode
from fewshot_cli.data.image_io import load_image
from fewshot_cli.data.normalise import normalise
from fewshot_cli.engine.device import DeviceContext
from fewshot_cli.engine.open_set import max_logit
from fewshot_cli.errors import ConfigError
from fewshot_cli.methods.base import FewShotMethod
from fewshot_cli.methods.clip_preprocess import CLIP_MEAN, CLIP_STD, clip_preprocess

log = logging.getLogger(__name__)

# Queries per episode: bounds memory (Relation Networks score Q x n_way map pairs). Queries are
# scored independently of each other by every method except MAML (`query_batch_statistics`), whose
# answers depend on the other images of the query batch.
QUERY_CHUNK = 64
NONE_OF_THESE = "none of these"

ImageLoader = Callable[[list[Path]], torch.Tensor]


def dataset_loader(dataset: FewShotDataset, ctx: DeviceContext) -> ImageLoader:
    """Files -> float [B, C, H, W] on the device, decoded and normalised as `dataset`'s episodes."""

    def load(paths: list[Path]) -> torch.Tensor:
        images = normalise(dataset.decode_files(paths).to(ctx.device), dataset.mean, dataset.std)
        return images.contiguous(memory_format=torch.channels_last) if ctx.channels_last else images

    return load


def clip_loader(resolution: int, device: torch.device) -> ImageLoader:
    """Files of any size -> float [B, 3, resolution, resolution] pixels in [0, 1] on `device`.

    Each image is decoded as RGB at its own size and put through CLIP's preprocessing
    (`clip_preprocess`: shorter side to `resolution`, centre crop), whose normalisation is then
    undone and the result rounded to grey levels: the CLIP method's own preprocessing of these
    pixels is then exactly a normalisation (no second resize), and differently sized images stack.
    """
    mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)

    def load(paths: list[Path]) -> torch.Tensor:
        out = []
        for path in paths:
            array = np.ascontiguousarray(load_image(path, None, "RGB").transpose(2, 0, 1))
            pixels = torch.from_numpy(array)[None].float() / 255.0
            normalised = clip_preprocess(pixels, resolution)
            out.append(((normalised * std + mean) * 255.0).round().clamp(0, 255) / 255.0)
        return torch.cat(out).to(device)

    return load


def equal_shots(files: list[Path], labels: torch.Tensor) -> tuple[list[Path], torch.Tensor, int]:
    """Keep the first k images of every class, k the smallest class's count.

    Args:
        files: support image files, class-major; labels: [S] in 0..n_way-1.
    Returns:
        the kept files, their labels [n_way * k] and k.
    """
    k = int(torch.bincount(labels).min())
    seen: dict[int, int] = {}
    keep = []
    for i, label in enumerate(labels.tolist()):
        seen[label] = seen.get(label, 0) + 1
        if seen[label] <= k:
            keep.append(i)
    return [files[i] for i in keep], labels[keep], k


def score_queries(model: FewShotMethod, support: torch.Tensor, support_labels: torch.Tensor,
                  class_names: Sequence[str], queries: torch.Tensor,
                  ctx: DeviceContext) -> torch.Tensor:
    """Logits of every query with the method's own `loss_and_logits`, in eval mode.

    Args:
        support: [S, C, H, W] float images on the device, class-major (S = 0 for zero-shot CLIP).
        support_labels: [S] in 0..n_way-1 (n_way = len(class_names)).
        queries: [Q, C, H, W] float images on the device.
    Returns:
        [Q, n_way] float32 logits on the CPU (higher = more likely), QUERY_CHUNK queries per episode.

    For a method with `query_batch_statistics` (MAML: BatchNorm normalises by the query batch) the
    support images are put in every query batch as well, and only the queries' rows are kept: a
    single query would otherwise be normalised by its own statistics (one image of one class, far
    from the n_way * n_query images of training episodes) and its answer would be noise.
    """
    n_way = len(class_names)
    labels = support_labels.to(support.device)
    counts = torch.bincount(labels, minlength=n_way)
    parts = []
    with model.evaluating():
        for start in range(0, queries.shape[0], QUERY_CHUNK):
            chunk = queries[start:start + QUERY_CHUNK]
            context = support if model.query_batch_statistics else support[:0]
            chunk = torch.cat([context, chunk])
            episode = Episode(
                support_images=support,
                support_labels=labels,
                query_images=chunk,
                # Unknown: the method's loss on them is computed and ignored.
                query_labels=torch.zeros(chunk.shape[0], dtype=torch.long, device=chunk.device),
                class_ids=torch.arange(n_way, device=chunk.device),
                class_names=tuple(class_names),
                n_way=n_way,
                n_shot=int(counts.min()) if len(labels) else 0,
                n_query=chunk.shape[0],
            )
            with ctx.autocast():
                logits = model.loss_and_logits(episode).logits
            parts.append(logits[context.shape[0]:].detach().float().cpu())
    return torch.cat(parts)


def parse_reject(value: Any) -> float | str | None:
    """The `reject=` setting: None (never reject), "auto", or a finite number (a logit)."""
    if value is None:
        return None
    if value == "auto" and isinstance(value, str):
        return "auto"
    if isinstance(value, int | float) and not isinstance(value, bool) and np.isfinite(value):
        return float(value)
    raise ConfigError(f"reject={value!r}; use null (never answer \"{NONE_OF_THESE}\"), auto (the "
                      f"threshold chosen on validation episodes after training, stored in best.pt) "
                      f"or a number (a query whose best logit is below it is \"{NONE_OF_THESE}\")")


def reject_threshold(reject: float | str | None, checkpoint: dict[str, Any] | None,
                     ckpt_path: str | None) -> tuple[float | None, str | None]:
    """(threshold on the best logit, where it came from) for a parsed `reject=` value."""
    if reject is None:
        return None, None
    if reject != "auto":
        return float(reject), "reject="
    if checkpoint is None:
        raise ConfigError("reject=auto uses the threshold a training run stores in best.pt; without "
                          "ckpt_path give reject=<number>, a logit (CLIP's logits are 100 x cosine)")
    stored = checkpoint.get("open_set")
    if not stored:
        raise ConfigError(f"reject=auto: {ckpt_path} holds no open-set threshold (training writes one "
                          f"into best.pt when the validation split has at least 3 classes; older "
                          f"checkpoints and last.pt have none); give reject=<number>, the best logit "
                          f"below which a query is \"{NONE_OF_THESE}\"")
    return float(stored["threshold"]), (f"best.pt, chosen on validation episodes, balanced accuracy "
                                        f"{100 * stored['balanced_acc']:.1f}%")


def ranked_predictions(paths: list[Path], logits: torch.Tensor, probabilities: torch.Tensor,
                       class_names: Sequence[str], top_k: int,
                       threshold: float | None) -> list[dict[str, Any]]:
    """One JSON-ready entry per query: the top_k classes by probability, the best logit and the
    answer (the top class, or None with rejected=True when the best logit is below `threshold`)."""
    k = min(top_k, len(class_names))
    best = max_logit(logits)
    results = []
    for path, row_logits, row, score in zip(paths, logits, probabilities, best.tolist(), strict=True):
        top = torch.topk(row, k)
        ranked = [{"class": class_names[i], "probability": float(p), "logit": float(row_logits[i])}
                  for p, i in zip(top.values.tolist(), top.indices.tolist(), strict=True)]
        rejected = threshold is not None and score < threshold
        results.append({"query": str(path), "prediction": None if rejected else ranked[0]["class"],
                        "rejected": rejected, "max_logit": score, "top": ranked})
    return results


def print_predictions(results: list[dict[str, Any]], threshold: float | None) -> None:
    """One line per query: `<path>: <class> <probability>, ...`, led by "none of these" when
    rejected."""
    for result in results:
        classes = ", ".join(f"{r['class']} {r['probability']:.3f}" for r in result["top"])
        if result["rejected"]:
            print(f"{result['query']}: {NONE_OF_THESE} (best logit {result['max_logit']:.4g} < "
                  f"{threshold:.4g}); {classes}", flush=True)
        else:
            print(f"{result['query']}: {classes}", flush=True)
