"""After training: the loss-curve figure (every method) and, for methods with an embedding, pair
verification on held-out classes (ROC AUC, equal error rate, a threshold chosen on validation pairs)
and the dissimilarity grid.

Pairs are drawn from whole splits (not episodes), balanced 50/50 same/different, from a generator
seeded by `eval_seed`, so every method is verified on the same pairs. The threshold picked on
validation pairs is stored in best.pt under "verification" for `fewshot predict pair=[a,b]`.
"""

import logging
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from fewshot_cli.data.base import FewShotDataset
from fewshot_cli.data.image_split import ImageSplit
from fewshot_cli.data.normalise import normalise
from fewshot_cli.data.pairs import balanced_pairs
from fewshot_cli.data.sampler import episode_seed
from fewshot_cli.engine.checkpoint import load_checkpoint, save_checkpoint
from fewshot_cli.engine.device import DeviceContext
from fewshot_cli.engine.figure_files import save_figure
from fewshot_cli.engine.pair_figures import dissimilarity_grid, loss_curve_figure, read_history
from fewshot_cli.engine.verification import best_accuracy_threshold, equal_error_rate, roc_auc
from fewshot_cli.methods.base import FewShotMethod

log = logging.getLogger(__name__)

VERIFICATION_PAIRS = 1000  # pairs per split (500 same, 500 different)
GRID_PAIRS = 8
EMBED_BATCH = 128


def embed_images(model: FewShotMethod, images: torch.Tensor, dataset: FewShotDataset,
                 ctx: DeviceContext) -> torch.Tensor:
    """Embeddings [B, D] of uint8 images [B, C, H, W], in eval mode, in batches."""
    parts = []
    with model.evaluating():
        for start in range(0, images.shape[0], EMBED_BATCH):
            batch = normalise(images[start:start + EMBED_BATCH].to(ctx.device), dataset.mean, dataset.std)
            with ctx.autocast():
                parts.append(model.embed(batch).float())
    return torch.cat(parts)


def split_pairs(split: ImageSplit, seed: int, stream: str,
                n_pairs: int = VERIFICATION_PAIRS) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Balanced pairs over a whole split: left, right indices [P] and `different` [P]."""
    generator = torch.Generator().manual_seed(episode_seed(seed, f"{stream}-pairs", 0))
    return balanced_pairs(split.labels, n_pairs, generator)


@torch.no_grad()
def pair_distances(model: FewShotMethod, split: ImageSplit, dataset: FewShotDataset,
                   ctx: DeviceContext, seed: int, stream: str) -> dict[str, torch.Tensor]:
    """Distances of the split's verification pairs: left, right, different, distance (all [P], CPU)."""
    left, right, different = split_pairs(split, seed, stream)
    used, inverse = torch.unique(torch.cat([left, right]), return_inverse=True)
    embeddings = embed_images(model, split.images[used], dataset, ctx)
    n = left.shape[0]
    distance = model.pair_distance(embeddings[inverse[:n]], embeddings[inverse[n:]]).float().cpu()
    return {"left": left, "right": right, "different": different, "distance": distance}


def pair_report(cfg: DictConfig, model: FewShotMethod, dataset: FewShotDataset, ctx: DeviceContext,
                output_dir: Path, writer: Any, best_path: Path) -> dict[str, Any]:
    """Write loss_curve.png; for embedding methods also verification metrics, the dissimilarity grid
    and the validation threshold (into best.pt). Returns the metrics to add to metrics.json."""
    history = read_history(output_dir / "train_history.jsonl")
    save_figure(loss_curve_figure(history), output_dir / "loss_curve.png", writer, "figures/loss_curve")
    if not model.has_embedding:
        return {}
    val = pair_distances(model, dataset.load_split("val"), dataset, ctx, cfg.eval_seed, "val")
    test_split = dataset.load_split(cfg.eval.split)
    test = pair_distances(model, test_split, dataset, ctx, cfg.eval_seed, cfg.eval.split)
    threshold, val_accuracy = best_accuracy_threshold(val["distance"], val["different"])
    called_same = test["distance"] <= threshold
    test_accuracy = float((called_same == (test["different"] < 0.5)).float().mean())
    rates = equal_error_rate(test["distance"], test["different"])
    verification = {"threshold": threshold, "threshold_split": "val", "val_pair_acc": 100 * val_accuracy}
    metrics = {
        "test/roc_auc": roc_auc(test["distance"], test["different"]),
        "test/eer": rates.eer,
        "test/eer_threshold": rates.threshold,
        "test/pair_acc": 100 * test_accuracy,
        "test/n_pairs": int(test["distance"].numel()),
        "val/pair_threshold": threshold,
        "val/pair_acc": 100 * val_accuracy,
    }
    log.info("verification on %d %s pairs: ROC AUC %.4f, EER %.2f%%, accuracy %.2f%% at the val "
             "threshold %.4g", metrics["test/n_pairs"], cfg.eval.split, metrics["test/roc_auc"],
             100 * rates.eer, metrics["test/pair_acc"], threshold)
    _store_threshold(best_path, verification)
    grid = _grid_order(test["different"], test_split.labels[test["left"].cpu()])
    figure = dissimilarity_grid(test_split.images[test["left"][grid].cpu()],
                                test_split.images[test["right"][grid].cpu()],
                                test["distance"][grid], test["different"][grid].cpu(), threshold)
    save_figure(figure, output_dir / "dissimilarity_grid.png", writer, "figures/dissimilarity_grid")
    if writer is not None:
        for name, value in metrics.items():
            writer.add_scalar(name, value, 0)
    return metrics


def _grid_order(different: torch.Tensor, left_labels: torch.Tensor) -> torch.Tensor:
    """GRID_PAIRS // 2 same and GRID_PAIRS // 2 different pairs, alternating, each pair's first image
    from another class where possible (so the grid shows several people or characters)."""
    different, left_labels = different.cpu(), left_labels.cpu()
    picks = []
    for want_different in (False, True):
        rows = torch.nonzero((different > 0.5) == want_different).flatten().tolist()
        seen: set[int] = set()
        chosen = [r for r in rows if int(left_labels[r]) not in seen and not seen.add(int(left_labels[r]))]
        chosen += [r for r in rows if r not in chosen]
        picks.append(torch.tensor(chosen[: GRID_PAIRS // 2], dtype=torch.long))
    n = min(len(picks[0]), len(picks[1]))
    return torch.stack([picks[0][:n], picks[1][:n]], dim=1).flatten()


def _store_threshold(best_path: Path, verification: dict[str, Any]) -> None:
    """Add the validation threshold to best.pt (rewritten atomically), for `fewshot predict`."""
    payload = load_checkpoint(best_path)
    payload["verification"] = verification
    save_checkpoint(best_path, payload)
