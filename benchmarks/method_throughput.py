"""Training and test throughput, and peak training memory, of every episodic method.

Each method trains on 5-way 1-shot 15-query episodes of Omniglot's training split (28x28, Conv-4
backbones as configured in conf/method/), one optimiser step per episode (meta-batch 1, so MAML's
figure is per task), with episodes drawn by the real sampler. It then runs test episodes the way the
evaluator does (MAML adapts with 10 steps, autograd on).

Every method runs in its own subprocess, so memory figures do not mix:

* CUDA: torch.cuda.max_memory_allocated() over the timed training episodes;
* CPU: the growth of the process's peak resident set size (ru_maxrss) from just before training to
  its end, i.e. what training adds on top of the loaded data and model (activations, the autograd
  graph, gradients, optimiser state, and the allocator's and kernels' own workspace, which makes a
  floor of ~100 MiB shared by every method). tracemalloc cannot be used: torch allocates outside
  Python.

A device-independent figure is printed too: the bytes of the tensors that the autograd graph of one
training episode holds when its loss is returned (counted once per storage through
saved_tensors_hooks), the activation memory that grows with MAML's inner steps and second order.

    python benchmarks/method_throughput.py                  # CPU, Omniglot from $FEWSHOT_DATA_DIR
    python benchmarks/method_throughput.py --synthetic      # random images, no dataset needed
    python benchmarks/method_throughput.py --device cuda --episodes 200
    python benchmarks/method_throughput.py --out benchmarks/results/method_throughput/cpu.json

Prints one Markdown table; rates are medians of --repeats timed runs after a warm-up. On a shared
CPU, wall-clock rates fall with other processes' load, so the table also gives episodes per CPU-second
of this process (time.process_time), which load barely changes; compare methods on that column when
the machine is busy, and run with --threads 1 for the cleanest figure.
"""

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
import weakref
from collections.abc import Callable

import torch
from torch import nn

from fewshot_cli.backbones.conv4 import Conv4
from fewshot_cli.data.image_split import ImageSplit
from fewshot_cli.data.sampler import EpisodeSampler
from fewshot_cli.methods.base import FewShotMethod
from fewshot_cli.methods.maml import MAML
from fewshot_cli.methods.matchingnet import MatchingNetworks
from fewshot_cli.methods.protonet import PrototypicalNetworks
from fewshot_cli.methods.relationnet import RelationNetworks

SHAPE = (5, 1, 15)
INPUT = (1, 28, 28)


def conv4() -> nn.Module:
    return Conv4(in_channels=1)


METHODS: dict[str, tuple[str, Callable[[], FewShotMethod]]] = {
    "protonet": ("ProtoNet", lambda: PrototypicalNetworks(conv4())),
    "matchingnet": ("MatchingNet (cosine)", lambda: MatchingNetworks(conv4())),
    "matchingnet_fce": ("MatchingNet + FCE (K=5)",
                        lambda: MatchingNetworks(conv4(), fce=True, input_shape=INPUT)),
    "relationnet": ("RelationNet (64x7x7 maps)",
                    lambda: RelationNetworks(Conv4(in_channels=1, pooled_blocks=2, flatten=False),
                                             input_shape=INPUT)),
    "maml": ("MAML 2nd order, 1 step", lambda: MAML(conv4(), input_shape=INPUT, head="learned")),
    "maml_5steps": ("MAML 2nd order, 5 steps",
                    lambda: MAML(conv4(), input_shape=INPUT, head="learned", inner_steps=5, inner_lr=0.1)),
    "fomaml_5steps": ("FOMAML, 5 steps", lambda: MAML(conv4(), input_shape=INPUT, head="learned",
                                                      inner_steps=5, inner_lr=0.1, first_order=True)),
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--episodes", type=int, default=30, help="timed training episodes per repeat")
    parser.add_argument("--test-episodes", type=int, default=10, help="timed test episodes per repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--methods", default=",".join(METHODS), help=f"comma list of {', '.join(METHODS)}")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--synthetic", action="store_true", help="random images instead of Omniglot")
    parser.add_argument("--data-dir", default=os.environ.get("FEWSHOT_DATA_DIR", "data"))
    parser.add_argument("--cache-dir", default=os.environ.get("FEWSHOT_CACHE_DIR", "~/.cache/fewshot_cli"))
    parser.add_argument("--out", help="also write the table, settings, commit and load as JSON here")
    parser.add_argument("--note", default="", help="free text stored in the JSON (e.g. what else ran)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # internal: measure one method, print JSON
    return parser.parse_args()


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def load_split(args: argparse.Namespace) -> ImageSplit:
    if args.synthetic:
        generator = torch.Generator().manual_seed(0)
        images = torch.randint(0, 256, (4112 * 20, *INPUT), dtype=torch.uint8, generator=generator)
        labels = torch.arange(4112).repeat_interleave(20)
        return ImageSplit(images, labels, [str(i) for i in range(4112)], "synthetic/train")
    from fewshot_cli.data.omniglot import Omniglot

    return Omniglot(root=args.data_dir, cache_dir=args.cache_dir, download=False).load_split("train")


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def rate(step: Callable[[], None], n: int, device: torch.device) -> tuple[float, float]:
    """Calls of step() per wall-clock second and per CPU-second of this process, over n calls."""
    synchronize(device)
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(n):
        step()
    synchronize(device)
    return n / (time.perf_counter() - wall), n / (time.process_time() - cpu)


def median_rates(step: Callable[[], None], n: int, repeats: int,
                 device: torch.device) -> tuple[float, float]:
    runs = [rate(step, n, device) for _ in range(repeats)]
    return statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def graph_mib(model: FewShotMethod, sampler: EpisodeSampler) -> float:
    """MiB of distinct tensor storages that the autograd graph of one training episode still holds
    when the loss is returned, i.e. what the (meta-)backward pass needs; graphs the method already
    consumed (MAML's inner steps without create_graph) are gone by then and not counted."""
    saved: list[weakref.ref] = []

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        saved.append(weakref.ref(tensor))
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        loss = model.loss_and_logits(sampler.episode(0)).loss
    storages = {}
    for ref in saved:
        tensor = ref()
        if tensor is not None:
            storages[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
    loss.backward()
    model.zero_grad(set_to_none=True)
    return sum(storages.values()) / 2**20


def measure(method: str, args: argparse.Namespace) -> dict[str, float]:
    """Train and test throughput and peak training memory of one method, in this process."""
    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    split = load_split(args)
    sampler = EpisodeSampler(split, *SHAPE, seed=0, stream="train", device=device)
    torch.manual_seed(0)
    model = METHODS[method][1]().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    stream = sampler.episodes(0, 10**9)

    def train_step() -> None:
        optimizer.zero_grad(set_to_none=True)
        model.loss_and_logits(next(stream)).loss.backward()
        optimizer.step()

    def test_step() -> None:
        grad_mode = torch.enable_grad if model.needs_grad_at_eval else torch.no_grad
        with grad_mode():
            model.loss_and_logits(next(stream))

    model.train()
    rss_before = peak_rss_mib()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for _ in range(3):  # warm-up: allocator, cuDNN autotuning, lazy initialisation
        train_step()
    train, train_cpu = median_rates(train_step, args.episodes, args.repeats, device)
    if device.type == "cuda":
        memory = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        memory = peak_rss_mib() - rss_before
    graph = graph_mib(model, sampler)
    model.eval()
    test_step()
    test, test_cpu = median_rates(test_step, args.test_episodes, args.repeats, device)
    return {"train": train, "train_cpu": train_cpu, "test": test, "test_cpu": test_cpu, "memory_mib": memory,
            "graph_mib": graph, "parameters": sum(p.numel() for p in model.parameters())}


def run_worker(method: str, args: argparse.Namespace) -> dict[str, float]:
    """Measure `method` in a fresh interpreter, so its memory peak is its own."""
    command = [sys.executable, __file__, "--worker", method, "--device", args.device,
               "--episodes", str(args.episodes), "--test-episodes", str(args.test_episodes),
               "--repeats", str(args.repeats), "--threads", str(args.threads), "--data-dir", args.data_dir,
               "--cache-dir", args.cache_dir]
    if args.synthetic:
        command.append("--synthetic")
    result = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    args = parse_args()
    if args.worker:
        print(json.dumps(measure(args.worker, args)), flush=True)
        return
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        sys.exit(f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(METHODS)}")
    device = resolve_device(args.device)
    threads = args.threads or torch.get_num_threads()
    load = f", load average {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""
    hardware = torch.cuda.get_device_name(device) if device.type == "cuda" else (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"{threads} torch threads{load}")
    memory_kind = ("peak torch.cuda.max_memory_allocated" if device.type == "cuda"
                   else "peak RSS growth during training")
    data = "synthetic images" if args.synthetic else "Omniglot train split"
    print(f"# device={device} ({hardware}), torch {torch.__version__}; {SHAPE[0]}w{SHAPE[1]}s{SHAPE[2]}q "
          f"episodes from the {data}, 28x28; {args.episodes} train / {args.test_episodes} test "
          f"episodes x {args.repeats} repeats (median); memory = {memory_kind}")
    print("| method | parameters | train episodes/s | train episodes/CPU-s | test episodes/s "
          "| test episodes/CPU-s | peak memory (MiB) | graph held for backward (MiB) |")
    print("|---|---|---|---|---|---|---|---|")
    started, rows = time.time(), []
    for method in methods:
        row = run_worker(method, args)
        rows.append({"method": method, "label": METHODS[method][0], **row})
        print(f"| {METHODS[method][0]} | {int(row['parameters']):,} | {row['train']:.1f} "
              f"| {row['train_cpu']:.1f} | {row['test']:.1f} | {row['test_cpu']:.1f} "
              f"| {row['memory_mib']:.0f} | {row['graph_mib']:.1f} |", flush=True)
    if args.out:
        write_json(args, device, hardware, memory_kind, rows, time.time() - started)


def write_json(args: argparse.Namespace, device: torch.device, hardware: str, memory_kind: str,
               rows: list[dict], wall_s: float) -> None:
    """The table as data, with what it was measured on and under: rates on a shared CPU fall with
    other processes' load, so the load averages at the end are stored beside them."""
    from fewshot_cli.engine.provenance import code_commit

    result = {
        "benchmark": "method_throughput",
        "command": " ".join(["python", "benchmarks/method_throughput.py", *sys.argv[1:]]),
        "git_commit": code_commit(),
        "device": str(device), "hardware": hardware, "torch": torch.__version__,
        "shape": {"n_way": SHAPE[0], "n_shot": SHAPE[1], "n_query": SHAPE[2]},
        "episodes": args.episodes, "test_episodes": args.test_episodes, "repeats": args.repeats,
        "threads": args.threads or torch.get_num_threads(),
        "data": "synthetic" if args.synthetic else "omniglot",
        "memory": memory_kind, "wall_s": round(wall_s, 1),
        "load_average_at_end": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "note": args.note,
        "rows": rows,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as file:
        file.write(json.dumps(result, indent=2) + "\n")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
