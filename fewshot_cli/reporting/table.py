"""Aggregating runs into one row per test setting: one result per trained model, mean ± CI across
episodes and across models."""

import csv
import io
import os
import statistics
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from fewshot_cli.engine.confidence import mean_ci95_over_replicates
from fewshot_cli.reporting.collect import RunRecord
from fewshot_cli.reporting.paper_numbers import paper_accuracy

Setting = tuple[str, str, int, int]  # (method, dataset label, n_way, n_shot)


@dataclass(frozen=True)
class ResultRow:
    """One test setting (method, tested dataset label, way, shot) over its trained models.

    Each model (training run) counts once: of several results of one model on this setting (a
    train-time test and re-evaluations of its checkpoint) the one with the most test episodes is
    kept (ties: the newest metrics.json) and the others are set aside, since scoring one model
    again is not a new replicate.
    """

    method: str
    dataset: str
    n_way: int
    n_shot: int
    n_models: int                 # distinct trained models (replicates), one kept result each
    seeds: tuple[str, ...]        # their distinct seeds
    acc: float                    # mean over models of the kept result's mean accuracy
    episode_ci95: float           # mean over models of the kept result's 95% CI across test episodes
    seed_ci95: float | None       # 95% CI of the mean across models (Student t), None for one model
    n_episodes: tuple[int, int]   # (fewest, most) test episodes of the kept results
    n_query: tuple[int, ...]      # distinct query counts per class of the kept results
    episodes_trained: float | None
    wall_time_s: float | None
    paper: float | None
    device: str
    best_episode: float | None = None            # training episode of best.pt (mean over models)
    stopped_by: tuple[str, ...] = ()             # what ended the models' training (distinct)
    git_commits: tuple[str, ...] = ()            # the code of the kept results (distinct)
    kept: tuple[tuple[Path, int], ...] = ()       # (run dir, test episodes) of each kept result
    set_aside: tuple[tuple[Path, int], ...] = ()  # the other results of the same models

    @property
    def difference(self) -> float | None:
        return None if self.paper is None else self.acc - self.paper


def aggregate(records: list[RunRecord]) -> list[ResultRow]:
    """One row per (method, dataset label, way, shot), one sample per trained model in it.

    The test query count is not part of the setting: it changes the CI over episodes, not the
    expected accuracy (queries are classified independently, MAML's transductive BatchNorm aside);
    a row whose kept results differ in it says so.
    """
    training = {str(r.path): r for r in records if r.task == "train"}
    groups: dict[Setting, dict[str, list[RunRecord]]] = defaultdict(lambda: defaultdict(list))
    for record in records:
        groups[(record.method, record.dataset, record.n_way, record.n_shot)][record.model].append(record)
    return [_row(key, models, training) for key, models in sorted(groups.items())]


def _preference(record: RunRecord) -> tuple:
    """Most test episodes first, then the newest (an eval of a checkpoint before its train-time test)."""
    return record.n_episodes, record.written, record.task == "eval", str(record.path)


def kept_results(records: list[RunRecord]) -> list[RunRecord]:
    """One result per trained model among `records` (of one setting), as the table keeps them: the
    most test episodes, then the newest; ordered by model."""
    models: dict[str, list[RunRecord]] = defaultdict(list)
    for record in records:
        models[record.model].append(record)
    return [max(results, key=_preference) for _, results in sorted(models.items())]


def _row(key: Setting, models: dict[str, list[RunRecord]], training: dict[str, RunRecord]) -> ResultRow:
    kept = kept_results([r for results in models.values() for r in results])
    set_aside = sorted((r for results in models.values() for r in results if r not in kept),
                       key=lambda r: str(r.path))
    # Episodes trained and wall time are the model's: from its training run when that is here.
    trainers = [training.get(r.model, r) for r in kept]
    accs = [r.acc for r in kept]
    trained = [r.episodes_trained for r in trainers if r.episodes_trained is not None]
    walls = [r.wall_time_s for r in trainers if r.wall_time_s is not None]
    best = [r.best_episode for r in trainers if r.best_episode is not None]
    seed_ci = mean_ci95_over_replicates(accs)  # Student t: there are only a few models
    episodes = [r.n_episodes for r in kept]
    return ResultRow(
        method=key[0], dataset=key[1], n_way=key[2], n_shot=key[3],
        n_models=len(kept),
        seeds=tuple(sorted({str(r.seed) for r in kept})),
        acc=statistics.fmean(accs),
        episode_ci95=statistics.fmean(r.acc_ci95 for r in kept),
        seed_ci95=seed_ci,
        n_episodes=(min(episodes), max(episodes)),
        n_query=tuple(sorted({r.n_query for r in kept if r.n_query is not None})),
        episodes_trained=statistics.fmean(trained) if trained else None,
        wall_time_s=statistics.fmean(walls) if walls else None,
        paper=paper_accuracy(*key),
        device=", ".join(sorted({r.device for r in kept})),
        best_episode=statistics.fmean(best) if best else None,
        stopped_by=tuple(sorted({r.stopped_by for r in trainers if r.stopped_by})),
        git_commits=tuple(sorted({r.git_commit for r in kept if r.git_commit})),
        kept=tuple((r.path, r.n_episodes) for r in kept),
        set_aside=tuple((r.path, r.n_episodes) for r in set_aside),
    )


HEADER = ("method", "dataset", "setting", "models (seeds)", "accuracy ± CI over episodes",
          "± CI over models", "test episodes", "episodes trained", "best at", "ended by", "wall time",
          "paper", "difference", "device", "git commit", "set aside")


def _range(low: int, high: int, dash: str = "–") -> str:
    return str(low) if low == high else f"{low}{dash}{high}"


def _setting(row: ResultRow) -> str:
    setting = f"{row.n_way}-way {row.n_shot}-shot"
    if len(row.n_query) > 1:  # kept results with different query counts: their CIs differ
        setting += f", {_range(row.n_query[0], row.n_query[-1])} query"
    return setting


def _cells(row: ResultRow) -> tuple[str, ...]:
    def fmt(value: float | None, spec: str, suffix: str = "") -> str:
        return "" if value is None else f"{value:{spec}}{suffix}"

    return (row.method, row.dataset, _setting(row),
            f"{row.n_models} ({', '.join(row.seeds)})", f"{row.acc:.2f} ± {row.episode_ci95:.2f}",
            fmt(row.seed_ci95, ".2f"), _range(*row.n_episodes), fmt(row.episodes_trained, ".0f"),
            fmt(row.best_episode, ".0f"), ", ".join(row.stopped_by),
            fmt(None if row.wall_time_s is None else row.wall_time_s / 60, ".1f", " min"),
            fmt(row.paper, ".1f"), fmt(row.difference, "+.2f"), row.device, ", ".join(row.git_commits),
            str(len(row.set_aside)) if row.set_aside else "")


def _shown(path: Path, root: Path | None) -> str:
    if root is not None:
        try:
            return os.path.relpath(path, root)
        except ValueError:  # another drive (Windows)
            pass
    return str(path)


def to_markdown(rows: list[ResultRow], root: Path | None = None) -> str:
    """The table, then a note naming each set-aside result and the one kept instead (paths relative
    to `root` when given)."""
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(_cells(row)) + " |" for row in rows]
    notes = [row for row in rows if row.set_aside]
    if notes:
        lines += ["", "Set aside: further results of a model already counted in its row (one result "
                  "per trained model; kept: the most test episodes, then the newest).", ""]
        for row in notes:
            aside = ", ".join(f"{_shown(p, root)} ({n} episodes)" for p, n in row.set_aside)
            kept = ", ".join(f"{_shown(p, root)} ({n} episodes)" for p, n in row.kept)
            lines.append(f"- {row.method} | {row.dataset} | {_setting(row)}: {aside}; kept {kept}")
    return "\n".join(lines) + "\n"


def to_csv(rows: list[ResultRow]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["method", "dataset", "n_way", "n_shot", "n_models", "seeds", "acc", "episode_ci95",
                     "seed_ci95", "n_episodes", "n_query", "episodes_trained", "best_episode",
                     "stopped_by", "wall_time_s", "paper", "difference", "device", "git_commit",
                     "n_set_aside"])
    for r in rows:
        writer.writerow([r.method, r.dataset, r.n_way, r.n_shot, r.n_models, " ".join(r.seeds),
                         f"{r.acc:.4f}", f"{r.episode_ci95:.4f}",
                         "" if r.seed_ci95 is None else f"{r.seed_ci95:.4f}", _range(*r.n_episodes, dash="-"),
                         " ".join(map(str, r.n_query)),
                         "" if r.episodes_trained is None else f"{r.episodes_trained:.0f}",
                         "" if r.best_episode is None else f"{r.best_episode:.0f}",
                         " ".join(r.stopped_by),
                         "" if r.wall_time_s is None else f"{r.wall_time_s:.1f}",
                         "" if r.paper is None else r.paper,
                         "" if r.difference is None else f"{r.difference:.4f}", r.device,
                         " ".join(r.git_commits), len(r.set_aside)])
    return buffer.getvalue()
