"""`fewshot report --paired BASELINE`: each method's difference from a baseline method on the same
test episodes, as a paired mean ± 95% CI.

Every method tested with the same eval_seed, split and episode shape is scored on the same episodes
(data/sampler.py), so the difference can be taken episode by episode. An episode that is hard for
one method tends to be hard for the other: the paired differences vary far less than either
method's accuracies, and the paired CI is much tighter than what two independent CIs allow (their
half-widths combine as sqrt(a² + b²)). With several trained models (seeds) per method, the CI over
seeds of the per-seed mean differences says how much of the difference is the luck of one model.
"""

import csv
import io
import math
import statistics
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from fewshot_cli.engine.confidence import mean_ci95_over_replicates, t_quantile_975
from fewshot_cli.engine.episode_record import read_episode_accuracies
from fewshot_cli.errors import FewShotError
from fewshot_cli.reporting.collect import RunRecord
from fewshot_cli.reporting.table import kept_results

PairedSetting = tuple[str, int, int, int | None]  # (dataset label, n_way, n_shot, n_query)


@dataclass(frozen=True)
class PairedDifference:
    """Mean of per-episode differences and its 95% CI half-width, in percentage points."""

    mean: float
    ci95: float
    n_episodes: int


def paired_difference(baseline: Sequence[float], other: Sequence[float]) -> PairedDifference:
    """Mean over episodes of other[i] - baseline[i] ± t_{0.975, n-1} * sd / sqrt(n) (Student t over
    the n per-episode differences; a paired t interval). Inputs are accuracies as fractions in
    [0, 1] of the same episodes in the same order; the result is in percentage points.

    Raises:
        ValueError: the sequences differ in length or hold fewer than two episodes.
    """
    if len(baseline) != len(other):
        raise ValueError(f"{len(baseline)} baseline episodes but {len(other)} paired episodes")
    n = len(baseline)
    if n < 2:
        raise ValueError("a paired CI needs at least two episodes")
    differences = [o - b for b, o in zip(baseline, other, strict=True)]
    mean = statistics.fmean(differences)
    sd = statistics.stdev(differences)
    return PairedDifference(100.0 * mean, 100.0 * t_quantile_975(n - 1) * sd / math.sqrt(n), n)


@dataclass(frozen=True)
class PairedRow:
    """One method against the baseline in one test setting, over their shared episodes."""

    setting: PairedSetting
    method: str
    baseline: str
    n_models: int                   # trained models of `method` (one result each)
    n_baseline_models: int
    seeds: tuple[str, ...]
    episodes: PairedDifference      # model-averaged accuracies, paired over episodes
    seed_ci95: float | None         # CI over this method's models of their paired mean differences
    independent_ci95: float         # what two independent CIs allow: sqrt(ci_method² + ci_baseline²)


@dataclass(frozen=True)
class _Run:
    record: RunRecord
    fingerprints: list[str]
    accuracies: list[float]


def paired_rows(records: list[RunRecord], baseline: str) -> tuple[list[PairedRow], list[str]]:
    """Each method's difference from `baseline`, per test setting (dataset label, way, shot and the
    query count, which changes the episodes), and notes on the settings that have no baseline.

    One result per trained model, as in the main table (the most test episodes, then the newest).
    Runs without per-episode accuracies (made before they were kept) are left out and named in the
    notes.

    Raises:
        FewShotError: no run of `baseline` has per-episode accuracies, or two runs of one setting
            were tested on different episodes (another eval_seed or split), which cannot be paired.
    """
    notes: list[str] = []
    settings: dict[PairedSetting, dict[str, list[_Run]]] = defaultdict(dict)
    grouped: dict[tuple[PairedSetting, str], list[RunRecord]] = defaultdict(list)
    for record in records:
        if record.episodes_file is None:
            notes.append(f"{record.path}: no per-episode accuracies (a run from before they were kept)")
            continue
        grouped[((record.dataset, record.n_way, record.n_shot, record.n_query), record.method)].append(record)
    for (setting, method), group in sorted(grouped.items(), key=lambda item: str(item[0])):
        settings[setting][method] = [_read(record) for record in kept_results(group)]
    if not any(baseline in methods for methods in settings.values()):
        present = sorted({method for methods in settings.values() for method in methods})
        raise FewShotError(f"no run of the baseline {baseline!r} with per-episode accuracies; "
                           f"choose one of: {', '.join(present) or 'none found'}")
    rows = []
    for setting, methods in sorted(settings.items(), key=lambda item: str(item[0])):
        _check_same_episodes(setting, methods)
        if baseline not in methods:
            notes.append(f"{_setting_label(setting)}: no {baseline} run, so "
                         f"{', '.join(sorted(methods))} not compared")
            continue
        rows += [_compare(setting, method, runs, baseline, methods[baseline])
                 for method, runs in sorted(methods.items()) if method != baseline]
    return rows, notes


def _read(record: RunRecord) -> _Run:
    path = record.path / str(record.episodes_file)
    try:
        fingerprints, accuracies = read_episode_accuracies(path)
    except (OSError, ValueError, KeyError) as error:
        raise FewShotError(f"cannot read the per-episode accuracies {path} ({error})") from error
    return _Run(record, fingerprints, accuracies)


def _check_same_episodes(setting: PairedSetting, methods: dict[str, list[_Run]]) -> None:
    """Every run of the setting must have drawn the same episodes where their counts overlap."""
    runs = [run for group in methods.values() for run in group]
    reference = runs[0]
    for run in runs[1:]:
        shared = min(len(run.fingerprints), len(reference.fingerprints))
        if run.fingerprints[:shared] != reference.fingerprints[:shared]:
            first = next(i for i in range(shared) if run.fingerprints[i] != reference.fingerprints[i])
            raise FewShotError(
                f"{reference.record.path} and {run.record.path} ({_setting_label(setting)}) were tested "
                f"on different episodes (from episode {first} on: another eval_seed, split or class "
                f"split), so they cannot be paired; evaluate both with the same eval_seed")


def _compare(setting: PairedSetting, method: str, runs: list[_Run], baseline: str,
             baseline_runs: list[_Run]) -> PairedRow:
    shared = min(len(run.accuracies) for run in [*runs, *baseline_runs])
    base_mean = _mean_over_models(baseline_runs, shared)
    by_seed = {run.record.seed: run for run in baseline_runs}
    per_seed = []
    for run in runs:
        # Same seed in both methods: a pair of models; otherwise against the baseline's average.
        partner = by_seed.get(run.record.seed)
        reference = partner.accuracies[:shared] if partner is not None else base_mean
        per_seed.append(100.0 * statistics.fmean(
            a - b for a, b in zip(run.accuracies[:shared], reference, strict=True)))
    method_ci = statistics.fmean(run.record.acc_ci95 for run in runs)
    base_ci = statistics.fmean(run.record.acc_ci95 for run in baseline_runs)
    return PairedRow(
        setting=setting, method=method, baseline=baseline,
        n_models=len(runs), n_baseline_models=len(baseline_runs),
        seeds=tuple(sorted({str(run.record.seed) for run in runs})),
        episodes=paired_difference(base_mean, _mean_over_models(runs, shared)),
        seed_ci95=mean_ci95_over_replicates(per_seed),
        independent_ci95=math.hypot(method_ci, base_ci),
    )


def _mean_over_models(runs: list[_Run], episodes: int) -> list[float]:
    """Per-episode accuracy averaged over the models, for the first `episodes` episodes."""
    return [statistics.fmean(run.accuracies[i] for run in runs) for i in range(episodes)]


def _setting_label(setting: PairedSetting) -> str:
    dataset, way, shot, query = setting
    queries = f", {query} query" if query is not None else ""
    return f"{dataset} {way}-way {shot}-shot{queries}"


PAIRED_HEADER = ("dataset", "setting", "method", "baseline", "models (seeds)", "shared episodes",
                 "paired difference ± 95% CI", "± CI over seeds", "± independent CIs")


def paired_markdown(rows: list[PairedRow], notes: list[str], baseline: str) -> str:
    """The paired table (percentage points, method minus baseline), then the notes."""
    lines = [f"Paired differences from {baseline} on the same test episodes (percentage points; "
             f"method minus {baseline}).", "",
             "| " + " | ".join(PAIRED_HEADER) + " |", "|" + "---|" * len(PAIRED_HEADER)]
    for row in rows:
        dataset, way, shot, query = row.setting
        setting = f"{way}-way {shot}-shot" + (f", {query} query" if query is not None else "")
        lines.append("| " + " | ".join((
            dataset, setting, row.method, f"{row.baseline} ({row.n_baseline_models})",
            f"{row.n_models} ({', '.join(row.seeds)})", str(row.episodes.n_episodes),
            f"{row.episodes.mean:+.2f} ± {row.episodes.ci95:.2f}",
            "" if row.seed_ci95 is None else f"{row.seed_ci95:.2f}",
            f"{row.independent_ci95:.2f}")) + " |")
    if notes:
        lines += ["", "Not compared:", ""] + [f"- {note}" for note in notes]
    return "\n".join(lines) + "\n"


def paired_csv(rows: list[PairedRow]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["dataset", "n_way", "n_shot", "n_query", "method", "baseline", "n_models",
                     "n_baseline_models", "seeds", "shared_episodes", "difference", "episode_ci95",
                     "seed_ci95", "independent_ci95"])
    for row in rows:
        writer.writerow([*row.setting, row.method, row.baseline, row.n_models, row.n_baseline_models,
                         " ".join(row.seeds), row.episodes.n_episodes, f"{row.episodes.mean:.4f}",
                         f"{row.episodes.ci95:.4f}",
                         "" if row.seed_ci95 is None else f"{row.seed_ci95:.4f}",
                         f"{row.independent_ci95:.4f}"])
    return buffer.getvalue()


def write_paired_report(records: list[RunRecord], baseline: str, output_dir: Path) -> str:
    """Write report_paired.md and report_paired.csv into output_dir; return the Markdown."""
    rows, notes = paired_rows(records, baseline)
    markdown = paired_markdown(rows, notes, baseline)
    (output_dir / "report_paired.md").write_text(markdown)
    (output_dir / "report_paired.csv").write_text(paired_csv(rows))
    return markdown
