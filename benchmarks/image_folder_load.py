"""Load time and memory of `dataset=image_folder` on a miniImageNet-sized tree (60,000 JPEGs).

Writes (once; reused when it is already there) a synthetic tree into --dir: 100 classes of 84x84
RGB JPEGs in `images/<label>/<label><index>.jpg`, plus miniImageNet-style `train.csv`, `val.csv`,
`test.csv` (64/16/20 classes, header filename,label). Then measures, each in a fresh process:

* cold: list + stat the files, decode every JPEG into the preallocated uint8 array (tqdm bar),
  write the cache entry, read it back memory-mapped, load the three splits and the training split's
  mean/std;
* warm: the same with the cache entry present (no decoding), memory-mapped (the default) and
  with `mmap=False` (the whole entry read into private memory);
* warm, ratio split: the same images as class folders split by ratio (splits are copies, not views).

For each: seconds until the splits and mean/std are ready, then one pass over every training pixel
(as training eventually touches them) and the peak RSS (`getrusage` ru_maxrss) and the resident
private (RssAnon) and file-backed (RssFile: the mapped cache, evictable and shared between processes)
memory after it. `import torch` alone is measured too, as the baseline. Prints a table and writes
JSON (git commit, command, host, figures) to --out.

    python benchmarks/image_folder_load.py --dir /tmp/if_bench            # 60,000 images
    python benchmarks/image_folder_load.py --dir /tmp/if_bench --images 6000   # a 10x smaller run
"""

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SPLIT_CLASSES = {"train": 64, "val": 16, "test": 20}  # miniImageNet (Ravi & Larochelle 2017)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dir", type=Path, required=True, help="scratch folder for the tree and cache")
    parser.add_argument("--images", type=int, default=60_000, help="images in all (100 classes)")
    parser.add_argument("--size", type=int, default=84, help="side of the written JPEGs and the decode")
    parser.add_argument("--out", type=Path,
                        default=HERE / "results" / "image_folder_load" / "image_folder_load.json")
    parser.add_argument("--keep", action="store_true", help="keep the tree and cache in --dir")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # internal: one measurement, JSON to stdout
    return parser.parse_args()


# ------------------------------------------------------------------ the synthetic tree

def write_tree(root: Path, n_images: int, size: int) -> Path:
    """root/images/<label>/<label><8 digits>.jpg and root/{train,val,test}.csv; skipped when the
    CSVs of a tree of this many images exist."""
    import numpy as np
    from PIL import Image
    from tqdm import tqdm

    marker = root / f".written_{n_images}_{size}"
    if marker.exists():
        return root
    if root.exists():
        shutil.rmtree(root)
    n_classes = sum(SPLIT_CLASSES.values())
    per_class = n_images // n_classes
    rng = np.random.default_rng(0)
    labels = [f"n{1000000 + 1000 * c:08d}" for c in range(n_classes)]
    rows = {split: ["filename,label"] for split in SPLIT_CLASSES}
    splits = [s for s, n in SPLIT_CLASSES.items() for _ in range(n)]
    bar = tqdm(total=per_class * n_classes, desc="writing JPEGs", unit="img", mininterval=2)
    for c, label in enumerate(labels):
        folder = root / "images" / label
        folder.mkdir(parents=True)
        colour = rng.integers(30, 226, size=3)
        base = np.broadcast_to(colour, (size, size, 3)).astype(np.int16)
        for i in range(per_class):
            noise = rng.integers(-30, 31, size=(size, size, 3), dtype=np.int16)
            pixels = np.clip(base + noise, 0, 255).astype(np.uint8)
            name = f"{label}{i:08d}.jpg"
            Image.fromarray(pixels).save(folder / name, quality=90)
            rows[splits[c]].append(f"{name},{label}")
            bar.update()
    bar.close()
    for split, lines in rows.items():
        (root / f"{split}.csv").write_text("\n".join(lines) + "\n")
    marker.touch()
    return root


# ------------------------------------------------------------------ one measurement (child process)

def status_bytes(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return -1


def child(spec: dict[str, Any]) -> dict[str, Any]:
    """Build the dataset as `spec` says, load every split and the mean/std, touch the training pixels."""
    started = time.perf_counter()
    import torch

    from fewshot_cli.data.image_folder import ImageFolder

    after_import = {"seconds": time.perf_counter() - started, "rss_bytes": status_bytes("VmRSS")}
    if spec["kind"] == "import":
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # ru_maxrss is in KiB on Linux
        return {"import": after_import, "peak_rss_bytes": peak}
    torch.set_num_threads(1)
    options = {"split_csv_dir": spec["csv_dir"]} if spec["csv_dir"] else {}
    start = time.perf_counter()
    data = ImageFolder(spec["root"], spec["cache"], image_size=spec["size"], channels=3,
                       mmap=spec["mmap"], **options)
    splits = {s: data.load_split(s) for s in ("train", "val", "test")}
    mean, std = data.mean, data.std
    ready = time.perf_counter() - start
    touch_start = time.perf_counter()
    # Small chunks: sum(dtype=int64) widens its input, and the figure is the loader's, not this sum's.
    total = sum(int(splits["train"].images[i:i + 256].sum(dtype=torch.int64))
                for i in range(0, splits["train"].images.shape[0], 256))
    touched = time.perf_counter() - touch_start
    return {
        "ready_seconds": ready,
        "touch_train_seconds": touched,
        "images": {s: int(v.images.shape[0]) for s, v in splits.items()},
        "classes": {s: v.num_classes for s, v in splits.items()},
        "mean": mean, "std": std, "train_pixel_sum": total,
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "rss_anon_bytes": status_bytes("RssAnon"), "rss_file_bytes": status_bytes("RssFile"),
        "import_seconds": after_import["seconds"],
    }


def run_child(spec: dict[str, Any]) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, __file__, "--dir", ".", "--child", json.dumps(spec)],
                          capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"measurement {spec['name']} failed:\n{done.stderr[-3000:]}")
    return {"name": spec["name"], **json.loads(done.stdout.strip().splitlines()[-1])}


# ------------------------------------------------------------------ report

def git_info() -> dict[str, Any]:
    def git(*argv: str) -> str:
        return subprocess.run(["git", *argv], cwd=REPO, capture_output=True, text=True).stdout.rstrip()
    changed = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": git("rev-parse", "HEAD"), "uncommitted_changes": bool(changed)}


def host_info() -> dict[str, Any]:
    import torch
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return {"hostname": platform.node(), "cpu": cpu, "cpu_count": os.cpu_count(),
            "load_average": os.getloadavg(), "python": platform.python_version(),
            "torch": torch.__version__}


def gb(n: int) -> str:
    return f"{n / 1e9:.2f}"


def main() -> None:
    args = parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return
    scratch = args.dir.resolve()
    tree = scratch / "tree"
    cache = scratch / "cache"
    started = time.perf_counter()
    write_tree(tree, args.images, args.size)
    written = time.perf_counter() - started
    if cache.exists():
        shutil.rmtree(cache)  # cold means cold
    csv = {"root": str(tree / "images"), "csv_dir": str(tree), "cache": str(cache), "size": args.size}
    ratio = {"root": str(tree / "images"), "csv_dir": None, "cache": str(cache), "size": args.size}
    runs = [
        run_child({"name": "import torch + fewshot_cli only", "kind": "import"}),
        run_child({**csv, "name": "cold: decode + cache (CSV split)", "kind": "load", "mmap": True}),
        run_child({**csv, "name": "warm, mmap (CSV split)", "kind": "load", "mmap": True}),
        run_child({**csv, "name": "warm, no mmap (CSV split)", "kind": "load", "mmap": False}),
        run_child({**ratio, "name": "cold: decode + cache (ratio split)", "kind": "load", "mmap": True}),
        run_child({**ratio, "name": "warm, mmap (ratio split)", "kind": "load", "mmap": True}),
    ]
    entry_bytes = sum(p.stat().st_size for p in cache.glob("*.pt"))
    n_files = sum(1 for _ in (tree / "images").rglob("*.jpg"))
    report = {
        "benchmark": "image_folder_load",
        "command": " ".join(["python", *sys.argv]),
        "git": git_info(), "host": host_info(),
        "images": n_files, "classes": sum(SPLIT_CLASSES.values()), "size": args.size,
        "tree_write_seconds": written, "cache_entry_bytes_each": entry_bytes // 2, "runs": runs,
    }
    print(f"{n_files:,} JPEGs of {args.size}x{args.size}, 100 classes; cache entry "
          f"{gb(entry_bytes // 2)} GB; git {report['git']['commit'][:10]}"
          f"{' + uncommitted changes' if report['git']['uncommitted_changes'] else ''}; "
          f"{report['host']['cpu_count']} CPUs, load {report['host']['load_average'][0]:.1f}")
    print(f"| {'run':36} | ready (s) | touch train (s) | peak RSS (GB) | RssAnon (GB) | RssFile (GB) |")
    print(f"|{'-' * 38}|-----------|-----------------|---------------|--------------|--------------|")
    for run in runs:
        if "ready_seconds" not in run:
            print(f"| {run['name']:36} | {run['import']['seconds']:9.2f} | {'':15} | "
                  f"{gb(run['peak_rss_bytes']):>13} | {'':12} | {'':12} |")
            continue
        print(f"| {run['name']:36} | {run['ready_seconds']:9.2f} | {run['touch_train_seconds']:15.2f} | "
              f"{gb(run['peak_rss_bytes']):>13} | {gb(run['rss_anon_bytes']):>12} | "
              f"{gb(run['rss_file_bytes']):>12} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written {args.out}")
    if not args.keep:
        shutil.rmtree(scratch / "tree")
        shutil.rmtree(cache)


if __name__ == "__main__":
    main()
