"""`fewshot report DIR`: one results table (Markdown + CSV) and a curve plot for a folder of runs."""

import argparse
from pathlib import Path

from fewshot_cli.errors import FewShotError
from fewshot_cli.reporting.collect import find_runs
from fewshot_cli.reporting.curves import plot_curves
from fewshot_cli.reporting.paired import write_paired_report
from fewshot_cli.reporting.table import aggregate, to_csv, to_markdown


def report(root: Path, output_dir: Path | None = None, paired: str | None = None) -> str:
    """Write report.md, report.csv and report_curves.png into output_dir (default: root); with
    `paired` (a baseline method), also report_paired.md and report_paired.csv (reporting/paired.py).

    Returns the Markdown table(s).

    Raises:
        FewShotError: no runs, no baseline run, or runs of one setting on different episodes.
    """
    if not root.is_dir():
        raise FewShotError(f"{root} is not a directory; pass an outputs/ or multirun folder")
    records = find_runs(root)
    if not records:
        raise FewShotError(f"no run under {root} has a metrics.json with test/acc")
    output_dir = output_dir or root
    output_dir.mkdir(parents=True, exist_ok=True)
    rows = aggregate(records)
    markdown = to_markdown(rows, root)
    # Before report.md: a refused pairing (no baseline, other episodes) leaves no report half-new.
    paired_markdown = "" if paired is None else "\n" + write_paired_report(records, paired, output_dir)
    (output_dir / "report.md").write_text(markdown)
    (output_dir / "report.csv").write_text(to_csv(rows))
    plot_curves(records, output_dir / "report_curves.png")
    return markdown + paired_markdown


DEFAULT_BASELINE = "protonet"


def main(argv: list[str]) -> None:
    """`fewshot report DIR [--out OUT]`."""
    parser = argparse.ArgumentParser(
        prog="fewshot report",
        description="Gather every run's metrics.json and .hydra/config.yaml under DIR into one table "
                    "(Markdown and CSV) with the papers' numbers, and plot validation curves.")
    parser.add_argument("directory", type=Path, help="an outputs/ or multirun folder")
    parser.add_argument("--out", type=Path, default=None, help="where to write report.* (default: DIR)")
    parser.add_argument("--paired", nargs="?", const=DEFAULT_BASELINE, default=None, metavar="BASELINE",
                        help="also each method's difference from BASELINE (a method as the table names "
                             f"it; default {DEFAULT_BASELINE}) on the same test episodes: paired mean ± "
                             "95%% CI over the shared episodes, and over seeds where there are several")
    args = parser.parse_args(argv)
    print(report(args.directory, args.out, args.paired), end="")
    out = args.out or args.directory
    names = ("report.md", "report.csv", "report_curves.png", "report_paired.md", "report_paired.csv")
    written = ", ".join(name for name in names if (out / name).is_file()
                        and (args.paired or not name.startswith("report_paired")))
    print(f"\nwritten to {out}: {written}", flush=True)
