"""Aggregating runs into one row per setting: mean ± CI across episodes and across seeds."""

import csv
import io
import math
import statistics
from collections import defaultdict
from dataclasses import dataclass

from fewshot_cli.reporting.collect import RunRecord
from fewshot_cli.reporting.paper_numbers import paper_accuracy


@dataclass(frozen=True)
class ResultRow:
    """One (method, dataset, way, shot) setting over all its runs (seeds)."""

    method: str
    dataset: str
    n_way: int
    n_shot: int
    n_runs: int                 # runs averaged (several per seed when e.g. folds or presets differ)
    seeds: tuple[str, ...]
    acc: float                  # mean over runs of the per-run mean accuracy
    episode_ci95: float         # mean over runs of the per-run 95% CI across test episodes
    seed_ci95: float | None     # 95% CI of the mean across runs (t-free normal approx.), None for one run
    n_episodes: int
    episodes_trained: float | None
    wall_time_s: float | None
    paper: float | None
    device: str

    @property
    def difference(self) -> float | None:
        return None if self.paper is None else self.acc - self.paper


def aggregate(records: list[RunRecord]) -> list[ResultRow]:
    """One row per (method, dataset, way, shot); every run in it is one sample.

    An eval run of a checkpoint replaces that checkpoint's training run when both scored the same
    setting, so a re-evaluation (e.g. with more episodes) is not counted twice.
    """
    rescored = {(r.source_run, r.n_way, r.n_shot) for r in records if r.source_run is not None}
    groups: dict[tuple[str, str, int, int], list[RunRecord]] = defaultdict(list)
    for record in records:
        if record.task == "train" and (record.path, record.n_way, record.n_shot) in rescored:
            continue
        groups[(record.method, record.dataset, record.n_way, record.n_shot)].append(record)
    return [_row(key, runs) for key, runs in sorted(groups.items())]


def _row(key: tuple[str, str, int, int], runs: list[RunRecord]) -> ResultRow:
    accs = [r.acc for r in runs]
    trained = [r.episodes_trained for r in runs if r.episodes_trained is not None]
    walls = [r.wall_time_s for r in runs if r.wall_time_s is not None]
    seed_ci = 1.96 * statistics.stdev(accs) / math.sqrt(len(accs)) if len(accs) > 1 else None
    return ResultRow(
        method=key[0], dataset=key[1], n_way=key[2], n_shot=key[3],
        n_runs=len(runs),
        seeds=tuple(sorted({str(r.seed) for r in runs})),
        acc=statistics.fmean(accs),
        episode_ci95=statistics.fmean(r.acc_ci95 for r in runs),
        seed_ci95=seed_ci,
        n_episodes=max(r.n_episodes for r in runs),
        episodes_trained=statistics.fmean(trained) if trained else None,
        wall_time_s=statistics.fmean(walls) if walls else None,
        paper=paper_accuracy(*key),
        device=", ".join(sorted({r.device for r in runs})),
    )


HEADER = ("method", "dataset", "setting", "runs (seeds)", "accuracy ± CI over episodes",
          "± CI over seeds", "test episodes", "episodes trained", "wall time", "paper", "difference",
          "device")


def _cells(row: ResultRow) -> tuple[str, ...]:
    def fmt(value: float | None, spec: str, suffix: str = "") -> str:
        return "" if value is None else f"{value:{spec}}{suffix}"

    return (row.method, row.dataset, f"{row.n_way}-way {row.n_shot}-shot",
            f"{row.n_runs} ({', '.join(row.seeds)})", f"{row.acc:.2f} ± {row.episode_ci95:.2f}",
            fmt(row.seed_ci95, ".2f"), str(row.n_episodes), fmt(row.episodes_trained, ".0f"),
            fmt(None if row.wall_time_s is None else row.wall_time_s / 60, ".1f", " min"),
            fmt(row.paper, ".1f"), fmt(row.difference, "+.2f"), row.device)


def to_markdown(rows: list[ResultRow]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(_cells(row)) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def to_csv(rows: list[ResultRow]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["method", "dataset", "n_way", "n_shot", "n_runs", "seeds", "acc", "episode_ci95",
                     "seed_ci95", "n_episodes", "episodes_trained", "wall_time_s", "paper",
                     "difference", "device"])
    for r in rows:
        writer.writerow([r.method, r.dataset, r.n_way, r.n_shot, r.n_runs, " ".join(r.seeds),
                         f"{r.acc:.4f}", f"{r.episode_ci95:.4f}",
                         "" if r.seed_ci95 is None else f"{r.seed_ci95:.4f}", r.n_episodes,
                         "" if r.episodes_trained is None else f"{r.episodes_trained:.0f}",
                         "" if r.wall_time_s is None else f"{r.wall_time_s:.1f}",
                         "" if r.paper is None else r.paper,
                         "" if r.difference is None else f"{r.difference:.4f}", r.device])
    return buffer.getvalue()
