"""After training, every trainable method: choose the open-set threshold of `fewshot predict
reject=auto` on validation episodes and store it in best.pt under "open_set".

An open-set episode is an ordinary evaluation episode over `n_known + n_unknown` classes whose
support set keeps only the first `n_known` classes: the queries of the other classes come from
classes outside the support and should be answered "none of these". Each query is scored with the
method's own `loss_and_logits` (eval mode; autograd on for MAML, which adapts on the known support),
and its open-set score is its best logit (`engine/open_set.py`). The threshold maximising balanced
accuracy of known-vs-unknown on validation episodes is stored; the same rule is then measured on
test episodes (balanced accuracy at that threshold and the ROC AUC of the score) for metrics.json.

Episodes: the evaluation shape (`eval_episodes` n_way, n_shot, n_query) for the known classes and
as many unknown classes again, lowered to what the split holds (AT&T's 5 validation people:
4 known + 1 unknown), drawn from `eval_seed` on their own stream (`<split>-open-set`), so the
threshold is fixed for a checkpoint and every method is measured on the same episodes.
"""

import logging
from pathlib import Path
from typing import Any, NamedTuple

import torch
from omegaconf import DictConfig

from fewshot_cli.data.base import FewShotDataset
from fewshot_cli.data.episode import Episode
from fewshot_cli.data.image_split import ImageSplit
from fewshot_cli.data.sampler import EpisodeSampler
from fewshot_cli.engine.checkpoint import load_checkpoint, save_checkpoint
from fewshot_cli.engine.device import DeviceContext
from fewshot_cli.engine.open_set import SCORE, balanced_accuracy, best_balanced_threshold, max_logit
from fewshot_cli.engine.verification import roc_auc
from fewshot_cli.errors import FewShotError
from fewshot_cli.methods.base import FewShotMethod

log = logging.getLogger(__name__)

CHECKPOINT_KEY = "open_set"


class OpenSetShape(NamedTuple):
    """Known classes (with support), unknown classes (queries only), shots and queries per class."""

    n_known: int
    n_unknown: int
    n_shot: int
    n_query: int


def open_set_shape(split: ImageSplit, n_way: int, n_shot: int, n_query: int) -> OpenSetShape | None:
    """The open-set episode shape `split` supplies for an n_way n_shot n_query evaluation shape.

    n_known = n_way and n_unknown = n_way where the split has 2 * n_way classes with n_shot +
    n_query images; otherwise n_known is lowered to the qualifying classes minus one and n_unknown to
    what remains. Queries are lowered (to 1 at the least) only while fewer than 3 classes qualify.
    None when fewer than 3 classes qualify even then (2 known + 1 unknown is the least that measures
    anything).
    """
    counts = split.class_counts()
    queries = n_query
    eligible = int((counts >= n_shot + queries).sum())
    while eligible < 3 and queries > 1:
        queries -= 1
        eligible = int((counts >= n_shot + queries).sum())
    if eligible < 3:
        return None
    n_known = min(n_way, eligible - 1)
    return OpenSetShape(n_known, min(n_way, eligible - n_known), n_shot, queries)


def known_part(episode: Episode, n_known: int) -> tuple[Episode, torch.Tensor]:
    """The episode seen by the method: support of the first `n_known` classes only, every query.

    Returns the Episode (query labels of unknown queries set to 0: their loss term is ignored) and
    `known` bool [n_query_total], True for queries of a support class.
    """
    keep = episode.support_labels < n_known
    known = episode.query_labels < n_known
    return Episode(
        support_images=episode.support_images[keep],
        support_labels=episode.support_labels[keep],
        query_images=episode.query_images,
        query_labels=torch.where(known, episode.query_labels, torch.zeros_like(episode.query_labels)),
        class_ids=episode.class_ids[:n_known],
        class_names=episode.class_names[:n_known],
        n_way=n_known,
        n_shot=episode.n_shot,
        n_query=episode.n_query,
        seed=episode.seed,
    ), known


def open_set_scores(model: FewShotMethod, split: ImageSplit, dataset: FewShotDataset,
                    shape: OpenSetShape, n_episodes: int, seed: int, ctx: DeviceContext,
                    stream: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Best logits [n_episodes * queries] and `known` [same] over `n_episodes` open-set episodes,
    in eval mode (autograd on for methods that adapt at test time)."""
    sampler = EpisodeSampler(split, shape.n_known + shape.n_unknown, shape.n_shot, shape.n_query,
                             seed=seed, stream=f"{stream}-open-set", device=ctx.device,
                             config_key="eval_episodes", mean=dataset.mean, std=dataset.std,
                             channels_last=ctx.channels_last)
    scores, known = [], []
    with model.evaluating():
        for episode in sampler.episodes(0, n_episodes):
            seen, is_known = known_part(episode, shape.n_known)
            with ctx.autocast():
                logits = model.loss_and_logits(seen).logits
            scores.append(max_logit(logits).cpu())
            known.append(is_known.cpu())
    return torch.cat(scores), torch.cat(known)


def open_set_report(cfg: DictConfig, model: FewShotMethod, dataset: FewShotDataset,
                    ctx: DeviceContext, best_path: Path) -> dict[str, Any]:
    """Choose the reject threshold on validation episodes, store it in best.pt, measure it on test
    episodes; returns the metrics for metrics.json (empty when the splits are too small)."""
    shape_cfg = cfg.eval_episodes
    n_episodes = int(cfg.trainer.val_episodes)
    val_split = dataset.load_split("val")
    shape = open_set_shape(val_split, shape_cfg.n_way, shape_cfg.n_shot, shape_cfg.n_query)
    if shape is None:
        log.warning("no open-set threshold for `fewshot predict reject=auto`: %s has fewer than 3 "
                    "classes with %d images (2 in the support, 1 outside it)", val_split.name,
                    shape_cfg.n_shot + 1)
        return {}
    try:
        scores, known = open_set_scores(model, val_split, dataset, shape, n_episodes, cfg.eval_seed,
                                        ctx, "val")
    except FewShotError as error:  # e.g. MAML's learned head, whose way is fixed
        log.warning("no open-set threshold for `fewshot predict reject=auto`: %s", error)
        return {}
    threshold, val_balanced = best_balanced_threshold(scores, known)
    stored = {"threshold": threshold, "score": SCORE, "balanced_acc": val_balanced, "split": "val",
              "n_episodes": n_episodes, "n_known": shape.n_known, "n_unknown": shape.n_unknown,
              "n_shot": shape.n_shot, "n_query": shape.n_query}
    payload = load_checkpoint(best_path)
    payload[CHECKPOINT_KEY] = stored
    save_checkpoint(best_path, payload)
    metrics: dict[str, Any] = {"val/open_set_threshold": threshold,
                               "val/open_set_balanced_acc": 100 * val_balanced}
    test_split = dataset.load_split(cfg.eval.split)
    test_shape = open_set_shape(test_split, shape_cfg.n_way, shape_cfg.n_shot, shape_cfg.n_query)
    if test_shape is not None:
        try:
            test_scores, test_known = open_set_scores(model, test_split, dataset, test_shape,
                                                      n_episodes, cfg.eval_seed, ctx, cfg.eval.split)
        except FewShotError as error:
            log.warning("open set not measured on %s: %s", test_split.name, error)
        else:
            accepted = test_scores >= threshold
            metrics["test/open_set_balanced_acc"] = 100 * balanced_accuracy(accepted, test_known)
            # roc_auc takes distances (lower = same): minus the score, "different" = unknown.
            metrics["test/open_set_auroc"] = roc_auc(-test_scores, (~test_known).float())
    log.info("open set (reject=auto): threshold %.4g on the best logit, balanced accuracy %.2f%% on "
             "%d validation episodes (%d known + %d unknown classes)%s", threshold, 100 * val_balanced,
             n_episodes, shape.n_known, shape.n_unknown,
             f"; test {metrics['test/open_set_balanced_acc']:.2f}%, AUROC "
             f"{metrics['test/open_set_auroc']:.3f}" if "test/open_set_auroc" in metrics else "")
    return metrics

