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
    # A debug=fast run (4 training episodes, 10 test episodes) checks that a command works; averaged
    # with real runs as another model it would wreck the row's mean and spread.
    # When every run is one (a smoke test of a sweep), the table shows them, saying so.
    debug_runs = [record for record in records if record.debug]
    if len(debug_runs) < len(records):
        records = [record for record in records if not record.debug]
    else:
        debug_runs = []
    output_dir = output_dir or root
    output_dir.mkdir(parents=True, exist_ok=True)
    rows = aggregate(records)
    markdown = to_markdown(rows, root) + _debug_note(records, debug_runs)
    # Before report.md: a refused pairing (no baseline, other episodes) leaves no report half-new.
    paired_markdown = "" if paired is None else "\n" + write_paired_report(records, paired, output_dir)
    (output_dir / "report.md").write_text(markdown)
    (output_dir / "report.csv").write_text(to_csv(rows))
    plot_curves(records, output_dir / "report_curves.png")
    return markdown + paired_markdown


def _debug_note(records: list, debug_runs: list) -> str:
    """A line under the table naming the debug runs it leaves out, or saying that its rows are all
    debug runs ("" when there are none)."""
    if records and all(record.debug for record in records):
        return ("\nEvery run above was made with debug= (or evaluates a model trained with it): a "
                "check that the commands work, not results.\n")
    if not debug_runs:
        return ""
    names = ", ".join(sorted(str(record.path.name) for record in debug_runs))
    return (f"\nLeft out: {len(debug_runs)} run(s) made with debug= (or evaluating a model trained "
            f"with it), checks of a command rather than results: {names}\n")


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
