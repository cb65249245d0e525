"""Finding runs under a directory and reading what each one measured."""

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from fewshot_cli.config.overrides import option_name
from fewshot_cli.methods.names import method_name, method_name_from_class

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunRecord:
    """One run directory (a `fewshot train` or `fewshot eval` job) and its test result."""

    path: Path
    task: str                   # "train" or "eval"
    method: str                 # as users type it, with its variant: "protonet", "maml (first-order)"
    dataset: str                # what was tested, e.g. "omniglot", "omniglot→mnist" (see dataset_label)
    n_way: int
    n_shot: int
    seed: int | None
    acc: float                  # percent, mean over test episodes
    acc_ci95: float             # percent, half-width over test episodes
    n_episodes: int
    episodes_trained: int | None
    wall_time_s: float | None
    device: str
    source_run: Path | None = None  # eval runs: the run directory that wrote the checkpoint
    n_query: int | None = None      # query images per class in each test episode
    written: float = 0.0            # metrics.json's modification time (which of two results is newer)
    episodes_file: str | None = None  # per-episode accuracies beside metrics.json (None: older run)
    best_episode: int | None = None   # training episode of best.pt (chosen on validation)
    stopped_by: str | None = None     # what ended training: max_episodes, plateau or max_minutes
    git_commit: str | None = None     # the code that produced the result (-dirty: uncommitted edits)
    debug: str | None = None          # debug preset of the run or of the model's training (e.g. "fast")

    @property
    def model(self) -> str:
        """The trained model this result belongs to (its replicate): the training run directory, i.e.
        the run itself for `fewshot train` and the checkpoint's run (ckpt_path) for `fewshot eval`.
        An eval without a checkpoint (an untrained or zero-shot model) is the model its method builds
        with its seed."""
        if self.task == "train":
            return str(self.path)
        if self.source_run is not None:
            return str(self.source_run)
        return f"untrained {self.method} seed={self.seed}"


def find_runs(root: Path) -> list[RunRecord]:
    """Every run below `root` whose metrics.json holds a test accuracy, sorted by path."""
    records = []
    for metrics_path in sorted(root.resolve().rglob("metrics.json")):
        record = read_run(metrics_path.parent)
        if record is not None:
            records.append(record)
    return records


def read_run(run_dir: Path) -> RunRecord | None:
    """A RunRecord from run_dir/metrics.json (+ .hydra/config.yaml and run_config.yaml), or None if
    it has no test result."""
    try:
        metrics: dict[str, Any] = json.loads((run_dir / "metrics.json").read_text())
    except (OSError, json.JSONDecodeError) as error:
        log.warning("skipping %s: unreadable metrics.json (%s)", run_dir, error)
        return None
    if "test/acc" not in metrics:
        return None
    config = _load_config(run_dir)
    source_run = _source_run(metrics.get("ckpt_path"))
    return RunRecord(
        path=run_dir,
        task=str(config.get("task", "train" if "train/episodes" in metrics else "eval")),
        method=_method(run_dir, config, metrics),
        dataset=dataset_label(metrics, tested_dataset_node(run_dir, config, source_run)),
        n_way=int(metrics["test/n_way"]),
        n_shot=int(metrics["test/n_shot"]),
        seed=metrics.get("seed", config.get("seed")),
        acc=float(metrics["test/acc"]),
        acc_ci95=float(metrics.get("test/acc_ci95", 0.0)),
        n_episodes=int(metrics.get("test/n_episodes", 0)),
        episodes_trained=metrics.get("train/episodes", metrics.get("ckpt_episode")),
        wall_time_s=metrics.get("train/wall_time_s"),
        device=str(metrics.get("device_name") or metrics.get("device", "?")),
        source_run=source_run,
        n_query=None if metrics.get("test/n_query") is None else int(metrics["test/n_query"]),
        written=(run_dir / "metrics.json").stat().st_mtime,
        episodes_file=metrics.get("test/episodes_file"),
        best_episode=metrics.get("val/best_episode", metrics.get("ckpt_episode")),
        stopped_by=metrics.get("train/stopped_by"),
        git_commit=metrics.get("git_commit"),
        debug=debug_preset(run_dir, metrics) or (source_run and debug_preset(source_run)),
    )


def debug_preset(run_dir: Path, metrics: dict[str, Any] | None = None) -> str | None:
    """The `debug=` preset a run was made with ("fast"), else None: metrics.json's "debug", or for
    runs older than that field the `debug=` entry Hydra kept in .hydra/overrides.yaml."""
    if metrics is None:
        try:
            metrics = json.loads((run_dir / "metrics.json").read_text())
        except (OSError, json.JSONDecodeError):
            metrics = {}
    if metrics.get("debug"):
        return str(metrics["debug"])
    overrides = run_dir / ".hydra" / "overrides.yaml"
    try:
        typed = OmegaConf.to_container(OmegaConf.load(overrides)) if overrides.is_file() else None
    except Exception:  # an unreadable record of overrides only loses this hint
        return None
    for override in typed if isinstance(typed, list) else []:
        key, _, value = str(override).partition("=")
        if key.lstrip("+~") == "debug" and value not in ("", "none", "null"):
            return value
    return None


GROUP_NAMES = {"omniglot": "alphabet"}  # what a dataset's class groups are called in the table

# Per dataset, the config keys that decide which classes the test split holds, with their defaults
# (conf/dataset/<name>.yaml; tests/test_report.py checks they agree). A non-default value is part
# of the row label: Omniglot's Lake split tests other characters than Vinyals', so neither its mean
# nor a paper's number may be shared. att_faces' `fold` is deliberately absent: a fold is one
# replicate of a k-fold cross-validation over people (the dataset's docstring: report the mean over
# folds), so the folds of one setting are averaged in one row, like seeds.
CLASS_SPLIT_KEYS: dict[str, dict[str, Any]] = {
    "omniglot": {"split_scheme": "vinyals"},
    "mnist": {"classes_split": "disjoint", "test_classes": [7, 8, 9]},
    "att_faces": {"heldout": 5},
}


def dataset_label(metrics: dict[str, Any], node: dict[str, Any] | None = None) -> str:
    """The tested dataset as the table shows it, one label per set of test classes.

    `node` is the tested dataset's config node (`tested_dataset_node`). The label is the dataset's
    name, "train→test" for a cross-domain eval (an Omniglot checkpoint scored on MNIST), then in
    parentheses whatever changes the test classes or the episodes: a non-default class split
    (`split_scheme=lake`, `classes_split=all`; CLASS_SPLIT_KEYS), a split other than test
    (`eval.split=val`), and "within alphabet" for episodes drawn inside one class group (Koch et
    al.'s protocol). Runs with different labels are neither averaged together nor compared with the
    paper number of another label.
    """
    node = node or {}
    tested = str(metrics.get("dataset") or node.get("name", "?"))
    trained = metrics.get("train_dataset")
    label = f"{trained}→{tested}" if trained and trained != tested else tested
    details = class_split(tested, node)
    split = metrics.get("test/split") or "test"
    if split != "test":
        details.append(f"eval.split={split}")
    if metrics.get("test/within_group"):
        details.append(f"within {GROUP_NAMES.get(tested, 'group')}")
    return f"{label} ({', '.join(details)})" if details else label


# Keys that change what the network sees without changing the classes, with their defaults
# (conf/dataset/<name>.yaml): a model tested at another image size is another setting.
INPUT_KEYS: dict[str, dict[str, Any]] = {
    "omniglot": {"image_size": 28}, "mnist": {"image_size": 28}, "att_faces": {"image_size": 100},
    "cifar_fs": {"image_size": 32}, "cifar100": {"image_size": 32}, "image_folder": {"image_size": 84},
    "mini_imagenet": {"image_size": 84}, "cub": {"image_size": 84},
}


def class_split(dataset: str, node: dict[str, Any]) -> list[str]:
    """["key=value"] for each of the dataset's class-split and input keys set to other than its
    default (a key the node lacks, as in a run from before the key existed, counts as the default).
    Your own images (image_folder) are named by their folder: two folders are two datasets."""
    defaults = {**CLASS_SPLIT_KEYS.get(dataset, {}), **INPUT_KEYS.get(dataset, {})}
    details = []
    if dataset == "image_folder":
        for key in ("root", "split_csv_dir"):
            if node.get(key):
                details.append(f"{key}={Path(str(node[key])).name}")
        if node.get("split") and not node.get("split_csv_dir"):
            details.append("split=" + ",".join(map(str, node["split"])))
    if dataset == "mnist" and node.get("classes_split") == "all":
        defaults.pop("test_classes")  # every digit is tested whatever the list says
    for key, default in defaults.items():
        value = node.get(key, default)
        if value is not None and value != default:
            shown = ",".join(map(str, value)) if isinstance(value, list | tuple) else value
            details.append(f"{key}={shown}")
    return details


def tested_dataset_node(run_dir: Path, config: dict[str, Any], source_run: Path | None) -> dict[str, Any]:
    """The dataset node the run tested on, as `fewshot eval` builds it (evaluate.merge_with_checkpoint):
    the run's own full node (run_config.yaml, then .hydra/config.yaml), else the checkpoint's
    training run's node with the eval's few overridden keys (`+dataset.split_scheme=lake`) over it.
    Without the training run, the overridden keys alone ({} for none: every key its default)."""
    own = _dataset_node(run_dir, config)
    if own.get("_target_") or source_run is None:
        return own
    source = _dataset_node(source_run, _load_config(source_run))
    if own.get("name", source.get("name")) != source.get("name"):
        return own  # another dataset's keys: the checkpoint's node says nothing about it
    return {**source, **own}


def _dataset_node(run_dir: Path, config: dict[str, Any]) -> dict[str, Any]:
    for node in (_load_config(run_dir, "run_config.yaml").get("dataset"), config.get("dataset")):
        if isinstance(node, dict) and node:
            return node
    return {}


def _source_run(ckpt_path: str | None) -> Path | None:
    """<run>/checkpoints/best.pt -> <run> (resolved, so it compares with other run paths)."""
    return Path(ckpt_path).expanduser().resolve().parent.parent if ckpt_path else None


def _load_config(run_dir: Path, name: str = ".hydra/config.yaml") -> dict[str, Any]:
    path = run_dir / name
    if not path.is_file():
        return {}
    container = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    return container if isinstance(container, dict) else {}


def _method(run_dir: Path, config: dict[str, Any], metrics: dict[str, Any]) -> str:
    """The run's method as users name it (see methods.names), e.g. "protonet", "maml (first-order)".

    From the run's own method node first: run_config.yaml (what a resumed run really trained with),
    then .hydra/config.yaml. An eval of a checkpoint has `method: null` there (or only the keys it
    overrode, no `_target_`), so then metrics.json's "method". Older runs wrote it as the class
    name, which has no variant: the checkpoint's training run's config gives it when that run is
    still where ckpt_path says, else the plain name ("PrototypicalNetworks" -> "protonet").
    """
    source_run = _source_run(metrics.get("ckpt_path"))
    backbone = _backbone_label(run_dir, config, source_run)
    node = _method_node(run_dir, config)
    if node is not None:
        return method_name(node) + backbone
    written = str(metrics.get("method") or "?")
    if written == method_name_from_class(written) or source_run is None:
        return method_name_from_class(written) + backbone  # already a config name, or nowhere to look
    source_node = _method_node(source_run, _load_config(source_run))
    name = method_name(source_node) if source_node is not None else method_name_from_class(written)
    return name + backbone


DEFAULT_BACKBONES = ("conv4", "conv4_maps", None)  # the papers' Conv-4: no suffix


def _backbone_label(run_dir: Path, config: dict[str, Any], source_run: Path | None) -> str:
    """" [resnet12]", " [torchvision resnet18 IMAGENET1K_V1]", or "" for the default Conv-4: another
    embedding network is another model (and the papers' numbers are Conv-4's)."""
    node = None
    for place in ([run_dir] if source_run is None else [source_run, run_dir]):
        for name in ("run_config.yaml", ".hydra/config.yaml"):
            candidate = _load_config(place, name).get("backbone")
            if isinstance(candidate, dict) and candidate.get("_target_"):
                node = candidate
                break
        if node is not None:
            break
    if node is None:
        return ""
    option = option_name("backbone", str(node["_target_"]))
    if option in DEFAULT_BACKBONES:
        return ""
    if option == "torchvision":
        weights = f" {node['weights']}" if node.get("weights") else ""
        return f" [torchvision {node.get('name', '?')}{weights}]"
    return f" [{option or str(node['_target_']).rsplit('.', 1)[-1]}]"


def _method_node(run_dir: Path, config: dict[str, Any]) -> dict[str, Any] | None:
    """The run's full method node (one with `_target_`), or None."""
    for node in (_load_config(run_dir, "run_config.yaml").get("method"), config.get("method")):
        if isinstance(node, dict) and node.get("_target_"):
            return node
    return None
