"""`fewshot report DIR`: one results table (Markdown + CSV) and a curve plot for a folder of runs."""

import argparse
from pathlib import Path

from fewshot_cli.errors import FewShotError
from fewshot_cli.reporting.collect import find_runs
from fewshot_cli.reporting.curves import plot_curves
from fewshot_cli.reporting.table import aggregate, to_csv, to_markdown


def report(root: Path, output_dir: Path | None = None) -> str:
    """Write report.md, report.csv and report_curves.png into output_dir (default: root).

    Returns the Markdown table.
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
    (output_dir / "report.md").write_text(markdown)
    (output_dir / "report.csv").write_text(to_csv(rows))
    plot_curves(records, output_dir / "report_curves.png")
    return markdown


def main(argv: list[str]) -> None:
    """`fewshot report DIR [--out OUT]`."""
    parser = argparse.ArgumentParser(
        prog="fewshot report",
        description="Gather every run's metrics.json and .hydra/config.yaml under DIR into one table "
                    "(Markdown and CSV) with the papers' numbers, and plot validation curves.")
    parser.add_argument("directory", type=Path, help="an outputs/ or multirun folder")
    parser.add_argument("--out", type=Path, default=None, help="where to write report.* (default: DIR)")
    args = parser.parse_args(argv)
    print(report(args.directory, args.out), end="")
    out = args.out or args.directory
    written = ", ".join(name for name in ("report.md", "report.csv", "report_curves.png")
                        if (out / name).is_file())
    print(f"\nwritten to {out}: {written}", flush=True)
