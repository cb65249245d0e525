"""`fewshot predict`: use a trained checkpoint (or CLIP, which needs none) on your own images.

* `support_dir=DIR query=PATH`: DIR holds one subfolder per class with one or a few images; PATH is an
  image or a folder of images. For every method the support images and the queries become one
  Episode (labels in class-folder order, query labels unknown) scored by the method's own
  `loss_and_logits` in eval mode (MAML adapts to the support images first); each query gets its
  classes ranked by `FewShotMethod.probabilities` (in [0, 1], summing to 1), top `top_k` printed,
  and all of it goes to predictions.json (`tasks/predict_scoring.py`).
* `method=clip classes=[cat,dog] query=PATH` (or `support_dir=` for the names): zero-shot CLIP from
  class names alone; `method=clip_protonet support_dir=DIR` blends support prototypes with them.
* `reject=auto|<number>`: a query whose best logit is below the threshold (auto: chosen on
  validation episodes after training, best.pt["open_set"]) is answered "none of these".
* `pair=[a,b]`: the method's `pair_distance` between two images and the same/different call at the
  threshold chosen on validation pairs after training (stored in best.pt), or `threshold=`
  (methods with an embedding: ProtoNet, Siamese).

Images are decoded by the checkpoint's dataset class (`FewShotDataset.decode_files`), so size,
channels and Omniglot's inversion match training.
"""

import json
import logging
from pathlib import Path
from typing import Any

import torch
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf

from fewshot_cli.config.targets import check_role
from fewshot_cli.data.att_faces import natural_key
from fewshot_cli.data.base import FewShotDataset
from fewshot_cli.data.image_io import IMAGE_SUFFIXES, is_hidden
from fewshot_cli.engine.checkpoint import config_for_rebuilding, load_checkpoint, load_model_weights
from fewshot_cli.engine.device import DeviceContext
from fewshot_cli.errors import ConfigError, DatasetError
from fewshot_cli.methods.base import FewShotMethod
from fewshot_cli.methods.clip_zero_shot import CLIPZeroShot
from fewshot_cli.methods.names import method_name
from fewshot_cli.tasks.build import build_dataset, build_method
from fewshot_cli.tasks.pair_report import embed_images
from fewshot_cli.tasks.predict_scoring import (
    ImageLoader,
    clip_loader,
    dataset_loader,
    equal_shots,
    parse_reject,
    print_predictions,
    ranked_predictions,
    reject_threshold,
    score_queries,
)

log = logging.getLogger(__name__)


def predict(cfg: DictConfig) -> dict[str, Any]:
    """Classify `cfg.query` against `cfg.support_dir` (or `cfg.classes` for CLIP) and/or compare
    `cfg.pair`; print, write `<output_dir>/predictions.json` and return the results."""
    reject = parse_reject(cfg.reject)  # a bad value is refused before anything is loaded
    classes = _class_names(cfg.classes)
    # predict.yaml has no typed schema: a text or fractional value is refused here, not in a traceback.
    if isinstance(cfg.top_k, bool) or not isinstance(cfg.top_k, int) or cfg.top_k < 1:
        raise ConfigError(f"top_k={cfg.top_k!r} must be a whole number of at least 1")
    if cfg.threshold is not None and (isinstance(cfg.threshold, bool)
                                      or not isinstance(cfg.threshold, int | float)):
        raise ConfigError(f"threshold={cfg.threshold!r} must be a number (a distance) or null")
    if cfg.pair is None and (cfg.query is None or (cfg.support_dir is None and classes is None)):
        raise ConfigError("give support_dir=DIR and query=PATH (with method=clip: classes=[a,b] and "
                          "query=PATH), or pair=[a.png,b.png]")
    checkpoint = load_checkpoint(cfg.ckpt_path) if cfg.ckpt_path else None
    threshold, source = reject_threshold(reject, checkpoint, cfg.ckpt_path)
    ctx = DeviceContext.from_config(cfg.device)
    model, dataset, name = _rebuild(cfg, checkpoint, ctx)
    results: dict[str, Any] = {"ckpt_path": str(cfg.ckpt_path) if cfg.ckpt_path else None, "method": name}
    if cfg.query is not None:
        loader = dataset_loader(dataset, ctx) if dataset is not None else clip_loader(
            model.input_resolution, ctx.device)
        support_dir = Path(cfg.support_dir) if cfg.support_dir is not None else None
        results.update(classify(model, loader, ctx, support_dir, Path(cfg.query), cfg.top_k,
                                classes=classes, threshold=threshold, threshold_source=source))
        if reject == "auto":
            _warn_if_shaped_otherwise(checkpoint.get("open_set") or {}, results.get("support") or {})
    if cfg.pair is not None:
        if dataset is None or not model.has_embedding:
            raise ConfigError(f"pair= compares image embeddings and {name} has none (protonet and "
                              f"siamese checkpoints have); classify with support_dir=DIR query=PATH")
        threshold = cfg.threshold
        if threshold is None:
            threshold = checkpoint.get("verification", {}).get("threshold")
        results["pair"] = compare(model, dataset, ctx, [Path(p) for p in cfg.pair], threshold)
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    written = output_dir / "predictions.json"
    written.write_text(json.dumps(results, indent=2) + "\n")
    print(f"predictions written to {written}", flush=True)
    return results


def _class_names(value: Any) -> list[str] | None:
    """`classes=[cat,dog]` as a list of distinct non-empty names (None when not given)."""
    if value is None:
        return None
    names = [str(v) for v in value] if OmegaConf.is_list(value) or isinstance(value, list) else None
    if not names or any(not n.strip() for n in names) or len(set(names)) != len(names):
        raise ConfigError(f"classes={value!r}; give a list of distinct class names, e.g. classes=[cat,dog]")
    return names


def _rebuild(cfg: DictConfig, checkpoint: dict[str, Any] | None,
             ctx: DeviceContext) -> tuple[FewShotMethod, FewShotDataset | None, str]:
    """The method with its weights, its dataset object (decodes images; no data is read) and its
    name. Without a checkpoint: `cfg.method` when it needs no training (CLIP), no dataset."""
    method = cfg.get("method")
    if checkpoint is None:
        if method is None or "_target_" not in method:
            raise ConfigError("give ckpt_path=<.../checkpoints/best.pt> (or method=clip or "
                              "method=clip_protonet, which need no checkpoint)")
        # The class alone, before it is imported: the node may not resolve without a checkpoint.
        check_role({"_target_": method._target_}, "method", "method", ConfigError)
        if not issubclass(get_class(method._target_), CLIPZeroShot):
            # Checked on the class: building it would first ask for a backbone and a dataset.
            raise ConfigError(f"method={method_name(method)} predicts with trained weights: give "
                              f"ckpt_path=<.../checkpoints/best.pt> (only method=clip and clip_protonet "
                              f"need none)")
        return build_method(method, ctx).eval(), None, method_name(method)
    saved = config_for_rebuilding(checkpoint["config"])
    node = OmegaConf.create({key: saved.get(key) for key in ("dataset", "backbone", "method")})
    if method is not None:
        if "_target_" in method and method._target_ != saved["method"]["_target_"]:
            raise ConfigError(f"method={method_name(method)} is not this checkpoint's method "
                              f"({method_name(saved['method'])}); leave method= out (change one of its "
                              f"settings with +method.<key>=<value>)")
        node.method = OmegaConf.merge(node.method, method)  # e.g. +method.inner_steps_eval=0
    node.paths = OmegaConf.to_container(cfg.paths, resolve=True)
    dataset = build_dataset(node.dataset)
    model = build_method(node.method, ctx)
    load_model_weights(model, checkpoint, node, Path(cfg.ckpt_path).name)
    model.eval()
    return model, dataset, method_name(node.method)


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
        raise DatasetError(f"{what} {path} holds no images (no file Pillow reads: .jpg, .png, .pgm, "
                           f".webp, ...)")
    return files


def class_folders(support_dir: Path) -> list[Path]:
    """The class subfolders of `support_dir`, natural order (hidden ones such as
    .ipynb_checkpoints skipped)."""
    if not support_dir.is_dir():
        raise DatasetError(f"support_dir {support_dir} is not a folder; expected "
                           f"{support_dir}/<class name>/<image files>")
    classes = sorted((d for d in support_dir.iterdir() if d.is_dir() and not is_hidden(d)),
                     key=lambda d: natural_key(d.name))
    if not classes:
        raise DatasetError(f"support_dir {support_dir} has no class subfolders; expected "
                           f"{support_dir}/<class name>/<image files>")
    return classes


def support_files(support_dir: Path) -> tuple[list[str], list[Path], torch.Tensor]:
    """Class names (subfolders, natural order), their image files (class-major) and labels [S]."""
    classes = class_folders(support_dir)
    files: list[Path] = []
    labels: list[int] = []
    for label, folder in enumerate(classes):
        found = image_files(folder, "support class folder")
        files.extend(found)
        labels.extend([label] * len(found))
    return [d.name for d in classes], files, torch.tensor(labels, dtype=torch.long)


def classify(model: FewShotMethod, loader: ImageLoader, ctx: DeviceContext, support_dir: Path | None,
             query: Path, top_k: int = 5, classes: list[str] | None = None,
             threshold: float | None = None, threshold_source: str | None = None) -> dict[str, Any]:
    """Rank the classes of `support_dir` (or `classes`) for every query image; print one line per
    query and return {"classes", "support", "reject", "predictions"} for predictions.json.

    Zero-shot CLIP uses only the class names (`classes`, else the subfolder names); every other
    method builds its episode from the support images. Methods with `equal_shots` get the smallest
    class's count of images per class (the first ones in natural order), which is logged.
    """
    name = type(model).__name__
    support_info: dict[str, Any] = {"dir": str(support_dir) if support_dir else None}
    if getattr(model, "zero_shot", False):  # CLIP: prompts from the names, support images unused
        folders = [d.name for d in class_folders(support_dir)] if support_dir is not None else None
        if classes is not None and folders is not None and len(classes) != len(folders):
            raise ConfigError(f"classes= names {len(classes)} classes but support_dir {support_dir} "
                              f"has {len(folders)} class folders; give one name per folder, in order")
        names = classes or folders
        support = None
        labels = torch.zeros(0, dtype=torch.long)
    else:
        if support_dir is None:
            raise ConfigError(f"{name} compares queries with support images: give support_dir=DIR "
                              f"(one subfolder of images per class)")
        names, files, labels = support_files(support_dir)
        if classes is not None and len(classes) != len(names):
            raise ConfigError(f"classes= names {len(classes)} classes but support_dir {support_dir} "
                              f"has {len(names)} class folders; give one name per folder, in order")
        names = classes or names
        counts = torch.bincount(labels, minlength=len(names))
        support_info["images_per_class"] = dict(zip(names, counts.tolist(), strict=True))
        if model.equal_shots and int(counts.min()) != int(counts.max()):
            files, labels, shots = equal_shots(files, labels)
            support_info["shots_used"] = shots
            log.info("support classes hold %d to %d images; %s adds up each class's support images, "
                     "so every class uses its first %d", int(counts.min()), int(counts.max()), name, shots)
        support = loader(files)
    if len(names) < 2:
        raise ConfigError(f"{len(names)} class given; predict ranks at least 2 classes (one subfolder "
                          f"of support_dir, or one classes= name, per class)")
    queries = image_files(query, "query")
    query_images = loader(queries)
    if support is None:  # an empty support set shaped like the queries
        support = query_images[:0]
    logits = score_queries(model, support, labels, names, query_images, ctx)
    probabilities = model.probabilities(logits)
    if threshold is not None:
        log.info("a query whose best logit is below %.4g is \"none of these\" (%s)", threshold,
                 threshold_source)
    predictions = ranked_predictions(queries, logits, probabilities, names, top_k, threshold)
    print_predictions(predictions, threshold)
    return {"classes": names, "support": support_info,
            "reject": {"threshold": threshold, "score": "max_logit", "source": threshold_source},
            "predictions": predictions}


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


def _warn_if_shaped_otherwise(stored: dict[str, Any], support: dict[str, Any]) -> None:
    """reject=auto's threshold was chosen on episodes of `n_known` classes with `n_shot` images each;
    a logit scale that moves with the number of classes or shots (Matching Networks' log-probabilities,
    MAML's adapted head) makes it unreliable on a support set of another shape, so say so."""
    counts = list((support.get("images_per_class") or {}).values())
    if not counts or "n_known" not in stored:
        return
    shots = support.get("shots_used") or min(counts)
    if len(counts) != stored["n_known"] or shots != stored.get("n_shot", shots):
        log.warning("reject=auto's threshold was chosen on %d-way %d-shot validation episodes; this "
                    "support set is %d-way %d-shot; the best logit's scale can move with the way and "
                    "shot (a little for distances to prototypes, much for matchingnet and maml), so "
                    "check the answers or give reject=<number>",
                    stored["n_known"], stored.get("n_shot", 0), len(counts), shots)
