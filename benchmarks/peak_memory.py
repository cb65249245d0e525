"""Peak memory of short training runs and of `balanced_pairs` against the number of images.

Issue item 7: every ProtoNet or Siamese run on Omniglot peaked at about 4.5 GB, even for 5 episodes,
because the after-training pair verification drew pairs with N x N masks over whole val/test splits.
This script measures, each in a fresh subprocess:

* the peak RSS ("Maximum resident set size" of `/usr/bin/time -v`) of a 5-episode Omniglot run of
  ProtoNet and of the Siamese network on the CPU, validated and tested at the default episode
  counts (target: under 1.5 GB);
* the peak RSS added by one `balanced_pairs(labels, 1000, generator)` call over N labels (20 images a
  class, like Omniglot) for several N: linear growth means a few MB at N = 160,000, where one N x N
  bool mask alone is 25.6 GB (GB = 10^9 bytes throughout). The call runs under an address-space cap
  (--pairs-cap-gb, GiB), so quadratic code fails cleanly ("over cap") instead of exhausting a shared
  machine.

    FEWSHOT_DATA_DIR=/work/shared/data FEWSHOT_CACHE_DIR=/tmp/memcache python benchmarks/peak_memory.py
    git worktree add /tmp/before HEAD   # the code before a change, measured by this same script:
    python benchmarks/peak_memory.py --repo-root /tmp/before --out benchmarks/results/peak_memory/before.json

Prints one table and writes JSON (git commit, commands, host, CPU, torch version, figures) to --out.
"""

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent
# 5 training episodes, but validation and test at their defaults (300 and 1000 episodes): the stages
# after training (pair verification, the open-set threshold over every validation query) scale with
# them, and a 5-episode validation hid a 20 GB [candidates, queries] matrix in the open-set search.
RUN_OVERRIDES = ("dataset=omniglot trainer.max_episodes=5 trainer.val_every=5 trainer.checkpoint_every=5 "
                 "trainer.log_every=5 logger=none device=cpu")
METHODS = ("protonet", "siamese")
TARGET_GB = 1.5

# Child process: peak RSS added by one balanced_pairs call. VmHWM is reset (clear_refs 5) after the
# imports and the labels are in place, so the figure is the call's own peak, not torch's import.
PAIRS_CHILD = r"""
import json, resource, sys, time
import torch
import fewshot_cli
from fewshot_cli.data.pairs import balanced_pairs

def status(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024  # kB -> bytes

n, n_pairs, cap = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
labels = torch.arange((n + 19) // 20).repeat_interleave(20)[:n]
labels = labels[torch.randperm(n, generator=torch.Generator().manual_seed(0))]
resource.setrlimit(resource.RLIMIT_AS, (status("VmSize") + cap, resource.RLIM_INFINITY))
with open("/proc/self/clear_refs", "w") as handle:
    handle.write("5")
base = status("VmHWM")
start = time.perf_counter()
try:
    balanced_pairs(labels, n_pairs, torch.Generator().manual_seed(1))
    error = None
except (MemoryError, RuntimeError) as exc:  # torch's CPU allocator raises RuntimeError when malloc fails
    error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}"
seconds = time.perf_counter() - start
print(json.dumps({"n": n, "peak_added_bytes": status("VmHWM") - base, "seconds": seconds,
                  "error": error, "fewshot_cli": fewshot_cli.__file__}))
"""


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repo-root", type=Path, default=HERE.parent,
                        help="checkout whose fewshot_cli is measured (put first on PYTHONPATH)")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "peak_memory" / "peak_memory.json")
    parser.add_argument("--methods", nargs="*", default=list(METHODS), choices=METHODS)
    parser.add_argument("--pairs-n", type=int, nargs="*", default=[10_000, 20_000, 40_000, 160_000],
                        help="numbers of labels for the balanced_pairs measurement")
    parser.add_argument("--n-pairs", type=int, default=1000, help="pairs per call (pair_report's count)")
    parser.add_argument("--pairs-cap-gb", type=float, default=4.0,
                        help="address space (GiB) a balanced_pairs call may add before it counts as over cap")
    parser.add_argument("--no-warmup", action="store_true",
                        help="skip the unmeasured first run that fills the decoded-image cache")
    return parser.parse_args()


def child_env(repo_root: Path) -> dict[str, str]:
    """The environment of every measured process: `repo_root`'s fewshot_cli first on the path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(repo_root), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def run_command(method: str, output_dir: Path) -> list[str]:
    """The 5-episode CPU training command of `method`, writing into `output_dir`."""
    return [sys.executable, "-m", "fewshot_cli", "train", f"method={method}", *RUN_OVERRIDES.split(),
            f"paths.output_dir={output_dir}", f"hydra.run.dir={output_dir}"]


def time_v(command: list[str], repo_root: Path) -> dict[str, Any]:
    """Run `command` under /usr/bin/time -v; its peak RSS (bytes), wall time and exit status."""
    done = subprocess.run(["/usr/bin/time", "-v", *command], cwd=repo_root, env=child_env(repo_root),
                          capture_output=True, text=True)
    rss_kb = re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr)
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", done.stderr)
    return {
        "peak_rss_kbytes": int(rss_kb.group(1)) if rss_kb else None,  # as time -v prints it (KiB)
        "peak_rss_bytes": int(rss_kb.group(1)) * 1024 if rss_kb else None,
        "wall": wall.group(1) if wall else None,
        "exit_status": done.returncode,
        "output_tail": None if done.returncode == 0 else done.stderr[-2000:],
    }


def measure_runs(args: argparse.Namespace, scratch: Path) -> list[dict[str, Any]]:
    if not args.no_warmup and args.methods:
        time_v(run_command(args.methods[0], scratch / "warmup"), args.repo_root)
    results = []
    for method in args.methods:
        command = run_command(method, scratch / method)
        result = time_v(command, args.repo_root)
        printable = " ".join(["/usr/bin/time", "-v", "python", *command[1:]])
        results.append({"method": method, "command": printable.replace(str(scratch), "<tmp>"), **result})
    return results


def measure_pairs(args: argparse.Namespace) -> list[dict[str, Any]]:
    cap = int(args.pairs_cap_gb * 2**30)
    results = []
    for n in args.pairs_n:
        done = subprocess.run([sys.executable, "-c", PAIRS_CHILD, str(n), str(args.n_pairs), str(cap)],
                              cwd=args.repo_root, env=child_env(args.repo_root),
                              capture_output=True, text=True)
        if done.returncode != 0:
            results.append({"n": n, "peak_added_bytes": None, "seconds": None,
                            "error": f"exit {done.returncode}: {done.stderr[-300:]}"})
            continue
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return results


def git_info(repo_root: Path) -> dict[str, Any]:
    def git(*argv: str) -> str:
        # rstrip only: a porcelain status line starts with a meaningful space (" M path")
        return subprocess.run(["git", *argv], cwd=repo_root, capture_output=True, text=True).stdout.rstrip()
    changed = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": git("rev-parse", "HEAD"), "uncommitted_changes": bool(changed),
            "changed_files": [line[3:] for line in changed.splitlines()]}


def host_info() -> dict[str, Any]:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return {"hostname": platform.node(), "cpu": cpu, "cpu_count": os.cpu_count(),
            "python": platform.python_version(), "torch": torch.__version__}


def gb(n_bytes: int | None) -> str:
    return "-" if n_bytes is None else f"{n_bytes / 1e9:.3f} GB"


def print_table(report: dict[str, Any]) -> None:
    print(f"repo {report['repo_root']} @ {report['git']['commit'][:10]}"
          f"{' + uncommitted changes' if report['git']['uncommitted_changes'] else ''}")
    print(f"{'5-episode Omniglot run (CPU)':32} {'peak RSS':>12} {'wall':>9}  target < {TARGET_GB} GB")
    for run in report["runs"]:
        verdict = "ok" if run["peak_rss_bytes"] and run["peak_rss_bytes"] < TARGET_GB * 1e9 else "OVER"
        if run["exit_status"]:
            verdict = f"FAILED (exit {run['exit_status']})"
        wall = run["wall"] or "-"
        print(f"  method={run['method']:25} {gb(run['peak_rss_bytes']):>12} {wall:>9}  {verdict}")
    print(f"{'balanced_pairs, ' + str(report['n_pairs']) + ' pairs':32} {'peak added':>12} {'seconds':>9}")
    for row in report["balanced_pairs"]:
        peak = gb(row["peak_added_bytes"])
        seconds = "-" if row["seconds"] is None else f"{row['seconds']:.3f}"
        extra = ""
        if row["error"]:  # the figure is only what was reached before an allocation failed
            peak, seconds = f"> {report['pairs_cap_gb']} GiB", "-"
            extra = f"  ({row['error'][:90]})"
        print(f"  N = {row['n']:<26,} {peak:>12} {seconds:>9}{extra}")


def main() -> None:
    args = parse_args()
    args.repo_root = args.repo_root.resolve()
    for name in ("FEWSHOT_DATA_DIR", "FEWSHOT_CACHE_DIR"):
        if name not in os.environ:
            print(f"warning: {name} is not set; the runs use the config's default", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="peak_memory_") as scratch:
        runs = measure_runs(args, Path(scratch))
    report = {
        "benchmark": "peak_memory",
        "script_command": " ".join([Path(sys.executable).name, *sys.argv]),
        "repo_root": str(args.repo_root),
        "git": git_info(args.repo_root),
        "host": host_info(),
        "env": {name: os.environ.get(name) for name in ("FEWSHOT_DATA_DIR", "FEWSHOT_CACHE_DIR")},
        "target_peak_rss_gb": TARGET_GB,
        "runs": runs,
        "n_pairs": args.n_pairs,
        "pairs_cap_gb": args.pairs_cap_gb,
        "balanced_pairs": measure_pairs(args),
    }
    print_table(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
