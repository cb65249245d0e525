"""Summarise a cross-validated sweep: one line per folder of runs (mean over folds of test accuracy,
a 95% CI across folds, the mean per-episode CI, ROC AUC, EER, wall time).

    python benchmarks/summarize_folds.py OUT/contrastive OUT/bce ...

Each folder holds one `fewshot train|eval -m dataset.fold=...` sweep (numbered job dirs with
metrics.json). The across-fold CI uses Student's t (few folds), because on AT&T faces the held-out
people matter more than the episodes drawn from them.
"""

import json
import statistics
import sys
from pathlib import Path

# Two-sided 95% Student t quantiles for n - 1 degrees of freedom (n folds).
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}


def summarize(folder: Path) -> str:
    """One Markdown table row for the runs below `folder`."""
    runs = [json.loads(p.read_text()) for p in sorted(folder.glob("*/metrics.json"))]
    if not runs:
        return f"| {folder.name} | no finished runs | | | | | |"
    accs = [m["test/acc"] for m in runs]
    across = 0.0
    if len(accs) > 1:
        across = T95.get(len(accs) - 1, 1.96) * statistics.stdev(accs) / len(accs) ** 0.5
    cells = [
        folder.name,
        f"{statistics.fmean(accs):.2f} ± {across:.2f}",
        " / ".join(f"{a:.1f}" for a in accs),
        f"± {statistics.fmean(m.get('test/acc_ci95', 0.0) for m in runs):.2f}",
        _mean(runs, "test/roc_auc", "{:.3f}"),
        _mean(runs, "test/eer", "{:.1%}"),
        _mean(runs, "train/wall_time_s", "{:.1f} min", scale=1 / 60),
    ]
    return "| " + " | ".join(cells) + " |"


def _mean(runs: list[dict], key: str, spec: str, scale: float = 1.0) -> str:
    """The formatted mean of `key` over the runs that have it ("" when none has)."""
    values = [m[key] * scale for m in runs if key in m]
    return spec.format(statistics.fmean(values)) if values else ""


def main(folders: list[str]) -> None:
    print("| model | accuracy, mean over folds (95% CI across folds) | per fold | mean per-episode CI | "
          "ROC AUC | EER | train time per fold |")
    print("|---|---|---|---|---|---|---|")
    for folder in folders:
        if Path(folder).is_dir():
            print(summarize(Path(folder)))


if __name__ == "__main__":
    main(sys.argv[1:])
