"""Aggregate training throughput of N concurrent training processes on one device.

Small models leave a large GPU mostly idle, but processes sharing a GPU by time-slicing do not add up
(two ProtoNet processes on one H100 ran at about half speed each). This measures it: for each N it
starts N worker processes that each build the same training step as benchmarks/train_throughput.py
(`Trainer._train_step` on ProtoNet 5w1s15q by default), warm up, wait at a barrier until all N are
ready, then train for --seconds; the aggregate is the sum of their episodes over the window. With
--mps it repeats every N under CUDA MPS (`nvidia-cuda-mps-control -d`, stopped afterwards), which
lets kernels of different processes run at the same time.

    python benchmarks/concurrent_throughput.py --device cuda --processes 1,4,8 --mps --out c.json
    python benchmarks/concurrent_throughput.py --device cpu --processes 1,2 --seconds 2 --synthetic

Saves JSON (per N and mode: each worker's episodes/s, the aggregate, the speed-up over one process,
git commit, command, hardware) to --out.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

sys.path.insert(0, str(Path(__file__).resolve().parent))
import train_throughput as bench  # the same step, model and data as the table

from fewshot_cli.engine.device import DeviceContext


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda", choices=["cpu", "cuda"])
    parser.add_argument("--case", default="protonet_5w1s15q", choices=list(bench.CASES))
    parser.add_argument("--processes", default="1,4,8", help="comma-separated process counts")
    parser.add_argument("--seconds", type=float, default=8.0, help="timed window per measurement")
    parser.add_argument("--mps", action="store_true", help="also measure every count under CUDA MPS")
    parser.add_argument("--synthetic", action="store_true", help="random images instead of Omniglot")
    parser.add_argument("--data-dir", default=os.environ.get("FEWSHOT_DATA_DIR", "data"))
    parser.add_argument("--cache-dir", default=os.environ.get("FEWSHOT_CACHE_DIR", "~/.cache/fewshot_cli"))
    parser.add_argument("--out", required=True, help="JSON path")
    # Worker mode (started by this script).
    parser.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--barrier", default=None, help=argparse.SUPPRESS)
    return parser.parse_args()


def worker(args: argparse.Namespace) -> None:
    """Build, warm up, say ready, wait for the start time, train until the window ends; print JSON."""
    barrier = Path(args.barrier)
    # As a training run configures the device (cuDNN autotuning and TF32 on CUDA), default layout.
    ctx = DeviceContext.from_config(OmegaConf.create({"type": args.device, "amp": "none",
                                                      "channels_last": False, "compile": False,
                                                      "deterministic": False}))
    case = bench.CASES[args.case]
    split = bench.load_split(args)
    with tempfile.TemporaryDirectory() as workdir:
        trainer = bench.build_trainer(case, "eager", split, ctx, None, Path(workdir))
        episodes = trainer.train_sampler.episodes(args.worker * 10**6, 10**6)
        for _ in range(10):
            trainer._train_step(episodes)
        ctx.synchronize()
        (barrier / f"ready{args.worker}").touch()
        go = barrier / "go"
        while not go.exists():
            time.sleep(0.01)
        start, end = (float(t) for t in go.read_text().split())
        while time.time() < start:
            time.sleep(0.001)
        steps = 0
        while time.time() < end:
            trainer._train_step(episodes)
            steps += 1
            if steps % 8 == 0:
                ctx.synchronize()
        ctx.synchronize()
        elapsed = time.time() - start
    print(json.dumps({"worker": args.worker, "episodes": steps * case.tasks_per_step,
                      "seconds": elapsed, "episodes_per_s": steps * case.tasks_per_step / elapsed}))


def measure(args: argparse.Namespace, count: int) -> dict:
    """Run `count` workers together; their rates and the aggregate over the common window."""
    barrier = Path(tempfile.mkdtemp(prefix="fewshot_barrier_"))
    command = [sys.executable, __file__, "--device", args.device, "--case", args.case,
               "--data-dir", args.data_dir, "--cache-dir", args.cache_dir, "--out", args.out,
               "--barrier", str(barrier)] + (["--synthetic"] if args.synthetic else [])
    environment = dict(os.environ)
    if args.device == "cpu":  # share the cores: one thread each, or they fight over every core
        environment["OMP_NUM_THREADS"] = "1"
    workers = [subprocess.Popen([*command, "--worker", str(i)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=environment)
               for i in range(count)]
    started = time.time()
    try:
        while len(list(barrier.glob("ready*"))) < count:
            failed = [w for w in workers if w.poll() not in (None, 0)]
            if failed:
                raise RuntimeError(f"a worker failed: {failed[0].stderr.read()[-2000:]}")
            if time.time() - started > 600:
                raise RuntimeError("workers not ready after 600 s")
            time.sleep(0.05)
        start = time.time() + 0.5
        (barrier / "go.tmp").write_text(f"{start} {start + args.seconds}")
        (barrier / "go.tmp").rename(barrier / "go")
        results = []
        for process in workers:
            stdout, stderr = process.communicate(timeout=600)
            if process.returncode != 0:
                raise RuntimeError(f"a worker failed: {stderr[-2000:]}")
            results.append(json.loads(stdout.strip().splitlines()[-1]))
    finally:
        for process in workers:
            if process.poll() is None:
                process.kill()
        shutil.rmtree(barrier, ignore_errors=True)
    return {"processes": count, "workers": results,
            "aggregate_episodes_per_s": sum(r["episodes"] for r in results)
            / max(r["seconds"] for r in results)}


def mps(start: bool) -> str | None:
    """Start (or stop) the MPS control daemon; None when done, else why it could not be."""
    control = shutil.which("nvidia-cuda-mps-control")
    if control is None:
        return "nvidia-cuda-mps-control not found"
    try:
        if start:
            done = subprocess.run([control, "-d"], capture_output=True, text=True, timeout=30)
        else:
            done = subprocess.run([control], input="quit\n", capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"{type(error).__name__}: {error}"
    if done.returncode != 0:
        return f"exit {done.returncode}: {(done.stderr or done.stdout).strip()[:300]}"
    if start:
        time.sleep(1.0)
    return None


def main() -> None:
    args = parse_args()
    if args.worker is not None:
        worker(args)
        return
    counts = [int(n) for n in args.processes.split(",")]
    modes = ["time-slicing"] + (["mps"] if args.mps else [])
    rows, notes = [], {}
    begun = time.perf_counter()
    for mode in modes:
        if mode == "mps":
            if args.device != "cuda":
                notes["mps"] = "MPS is CUDA only"
                continue
            problem = mps(start=True)
            if problem:
                notes["mps"] = f"not measured: could not start MPS ({problem})"
                continue
        try:
            for count in counts:
                try:
                    row = {"mode": mode, **measure(args, count)}
                except RuntimeError as error:
                    row = {"mode": mode, "processes": count, "error": str(error)[:2000]}
                rows.append(row)
                print(json.dumps({k: v for k, v in row.items() if k != "workers"}), flush=True)
        finally:
            if mode == "mps":
                stop = mps(start=False)
                if stop:
                    notes["mps_stop"] = stop
    for row in rows:
        single = next((r for r in rows if r["mode"] == "time-slicing" and r["processes"] == 1
                       and "aggregate_episodes_per_s" in r), None)
        if single and "aggregate_episodes_per_s" in row:
            row["speedup_vs_one_process"] = (row["aggregate_episodes_per_s"]
                                             / single["aggregate_episodes_per_s"])
    result = {"benchmark": "concurrent_throughput", "git_commit": bench.git_commit(),
              "command": " ".join(["python", *sys.argv]), "case": args.case, "device": args.device,
              "seconds_per_measurement": args.seconds,
              "data": "synthetic" if args.synthetic else "omniglot/train",
              "hardware": bench.hardware(torch.device(args.device)), "notes": notes, "rows": rows,
              "wall_s": round(time.perf_counter() - begun, 1)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"# saved {args.out}")


if __name__ == "__main__":
    main()
