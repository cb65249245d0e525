"""Training throughput of the episodic engine, and the fraction of the device's compute it uses.

For each case (a method and an episode shape, with its meta-batch) and each variant of the engine it
times the real training step, `Trainer._train_step` (episode sampling from the uint8 split tensor,
forward, backward, Adam step), on a fresh model with the same seed, for --seconds after a warm-up,
in --rounds rounds that interleave the variants (a change of the machine's load hits them alike):

* eager: the default path (MAML: the meta-batch's tasks one at a time, trainer.vectorize_tasks=false);
* vectorized: MAML only, the meta-batch as one torch.func.vmap computation (trainer.vectorize_tasks);
* channels_last: device.channels_last=true (model and episode images in NHWC);
* compiled: device.compile=true (the backbone through torch.compile); not for second-order MAML,
  whose double backward torch.compile cannot do (recorded as unavailable, not tried);
* floor: ProtoNet eager on one pre-made episode (no sampling at all): the data path's share.

Compute limit: the FLOPs of one step (matmuls and convolutions of forward, backward and MAML's
inner-loop gradients, counted by torch.utils.flop_counter.FlopCounterMode on the eager step) over
the best rate of a large matmul and a Conv-4-sized convolution measured on the same device in the same
run. `limit_fraction` = FLOPs per step x steps per second / that rate. Element-wise work (BatchNorm,
ReLU, the optimiser) is not counted, so the fraction is a floor of the real utilisation.

The first step's mean loss of every variant is recorded: on the same model and episodes it must
agree with eager's (`same_loss_as_eager`, to 1e-3: see `compare_with_eager`).

    python benchmarks/train_throughput.py                    # CPU, Omniglot from $FEWSHOT_DATA_DIR
    python benchmarks/train_throughput.py --synthetic        # random images, no dataset needed
    python benchmarks/train_throughput.py --device cuda --seconds 10
    python benchmarks/train_throughput.py --cases protonet_5w1s15q --variants eager,channels_last

Prints one Markdown table and saves JSON (rates, FLOPs, the measured limit, git commit, command,
hardware, load average) to --out (default benchmarks/results/<device>_train_throughput/
throughput.json). On a shared CPU wall-clock rates fall with other processes' load: the table also
gives episodes per CPU-second of this process, which load changes less.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import OmegaConf
from torch.utils.flop_counter import FlopCounterMode

from fewshot_cli.backbones.conv4 import Conv4
from fewshot_cli.data.image_split import ImageSplit
from fewshot_cli.data.omniglot import Omniglot
from fewshot_cli.data.sampler import EpisodeSampler
from fewshot_cli.engine.device import DeviceContext
from fewshot_cli.engine.trainer import Trainer
from fewshot_cli.methods.base import FewShotMethod
from fewshot_cli.methods.maml import MAML
from fewshot_cli.methods.protonet import PrototypicalNetworks

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ("eager", "vectorized", "channels_last", "compiled", "floor")


@dataclass(frozen=True)
class Case:
    """A method on one episode shape; MAML with its meta-batch and inner steps (second order)."""

    name: str
    method: str
    n_way: int
    n_shot: int
    n_query: int
    tasks_per_step: int = 1
    inner_steps: int = 1


CASES = {case.name: case for case in (
    Case("protonet_5w1s15q", "protonet", 5, 1, 15),
    Case("protonet_60w5s5q", "protonet", 60, 5, 5),
    # Finn et al.'s Omniglot settings: 5-way meta-batch 32, 1 inner step; 20-way meta-batch 16, 5 steps.
    Case("maml_5w1s_mb32", "maml", 5, 1, 1, tasks_per_step=32, inner_steps=1),
    Case("maml_20w1s_mb16", "maml", 20, 1, 1, tasks_per_step=16, inner_steps=5),
)}
CPU_CASES = ("protonet_5w1s15q", "protonet_60w5s5q", "maml_5w1s_mb32")  # 20-way MAML: minutes per step


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--amp", default="none", choices=["none", "bf16", "fp16"])
    parser.add_argument("--cases", default=None,
                        help=f"comma-separated, from {', '.join(CASES)} (default: all on CUDA, "
                             f"{', '.join(CPU_CASES)} on CPU)")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated, from "
                        + ", ".join(VARIANTS))
    parser.add_argument("--compiled-cases", default=None,
                        help="cases that get the compiled variant (default: every case it applies to; "
                             "each compile costs tens of seconds)")
    parser.add_argument("--seconds", type=float, default=5.0, help="timed seconds per variant")
    parser.add_argument("--rounds", type=int, default=3,
                        help="the timed seconds split into this many rounds, variants interleaved")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (compiled: x3)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default torch's; 1 on a loaded machine: threads that "
                             "wait for a descheduled sibling burn CPU and make every rate noise)")
    parser.add_argument("--synthetic", action="store_true", help="random images instead of Omniglot")
    parser.add_argument("--data-dir", default=os.environ.get("FEWSHOT_DATA_DIR", "data"))
    parser.add_argument("--cache-dir", default=os.environ.get("FEWSHOT_CACHE_DIR", "~/.cache/fewshot_cli"))
    parser.add_argument("--out", default=None, help="JSON path (default benchmarks/results/"
                                                    "<device>_train_throughput/throughput.json)")
    parser.add_argument("--note", default="", help="free text stored in the JSON (e.g. machine load)")
    return parser.parse_args()


def load_split(args: argparse.Namespace) -> ImageSplit:
    if args.synthetic:
        generator = torch.Generator().manual_seed(0)
        images = torch.randint(0, 256, (964 * 20, 1, 28, 28), dtype=torch.uint8, generator=generator)
        labels = torch.arange(964).repeat_interleave(20)
        return ImageSplit(images, labels, [str(i) for i in range(964)], "synthetic/train")
    return Omniglot(root=args.data_dir, cache_dir=args.cache_dir, download=False).load_split("train")


def build_model(case: Case, ctx: DeviceContext) -> FewShotMethod:
    """The method on a 64-filter Conv-4 (Snell et al., Finn et al.), seeded, on ctx's device/layout."""
    torch.manual_seed(0)
    if case.method == "protonet":
        model: FewShotMethod = PrototypicalNetworks(Conv4(in_channels=1))
    else:
        model = MAML(Conv4(in_channels=1), input_shape=(1, 28, 28), n_way=case.n_way, head="learned",
                     inner_steps=case.inner_steps, first_order=False)
    model = model.to(ctx.device)
    if ctx.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if ctx.compile:
        model.backbone.compile()  # as tasks/build.py does for device.compile=true
    return model


def build_trainer(case: Case, variant: str, split: ImageSplit, base: DeviceContext,
                  amp_dtype: torch.dtype | None, workdir: Path) -> Trainer:
    """A Trainer on `case` with the variant's settings; nothing is validated or saved."""
    ctx = DeviceContext(base.device, amp_dtype, variant == "channels_last", variant == "compiled")
    model = build_model(case, ctx).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    sampler = EpisodeSampler(split, case.n_way, case.n_shot, case.n_query, seed=0, stream="train",
                             device=ctx.device, channels_last=ctx.channels_last)
    settings = OmegaConf.create({"tasks_per_step": case.tasks_per_step, "grad_clip": None,
                                 "vectorize_tasks": variant == "vectorized"})
    return Trainer(model, optimizer, scheduler, sampler, sampler, ctx, settings, workdir, {})


def warm_up(trainer: Trainer, variant: str, args: argparse.Namespace) -> tuple[Iterator, float]:
    """The variant's episode stream, after its first step (whose mean loss is returned: the same
    model and episodes in every variant) and the warm-up steps (x3 when compiled)."""
    sampler = trainer.train_sampler
    if variant == "floor":  # the same pre-made episode every time: no sampling cost
        fixed = sampler.episode(0)
        episodes = iter(lambda: fixed, None)
    else:
        episodes = sampler.episodes(0, 10**9)
    trainer._train_step(episodes)
    first_loss = float(trainer._interval_loss) / trainer._interval_episodes
    for _ in range(args.warmup * (3 if variant == "compiled" else 1) - 1):
        trainer._train_step(episodes)
    trainer.ctx.synchronize()
    return episodes, first_loss


def timed_steps(trainer: Trainer, episodes: Iterator, seconds: float) -> tuple[int, float, float]:
    """Whole steps for `seconds` (at least one): (steps, wall seconds, CPU seconds of this process)."""
    steps, wall, cpu = 0, time.perf_counter(), time.process_time()
    while steps < 1 or time.perf_counter() - wall < seconds:
        trainer._train_step(episodes)
        steps += 1
        if steps % 8 == 0:
            trainer.ctx.synchronize()  # keep the host from running far ahead of the device
    trainer.ctx.synchronize()
    return steps, time.perf_counter() - wall, time.process_time() - cpu


def step_flops(case: Case, split: ImageSplit, ctx: DeviceContext, workdir: Path) -> int:
    """Matmul and convolution FLOPs of one eager training step (forward, inner loop, backward)."""
    trainer = build_trainer(case, "eager", split, ctx, ctx.amp_dtype, workdir)
    episodes = trainer.train_sampler.episodes(0, 10**9)
    with FlopCounterMode(display=False) as counter:
        trainer._train_step(episodes)
    return int(counter.get_total_flops())


def compute_limit(device: torch.device) -> dict:
    """FLOP/s of a large fp32 matmul and of a Conv-4 layer (64->64 channels, 3x3, 28x28) forward,
    measured here (TF32 on CUDA where the engine allows it, as training does)."""
    def rate(run, flops: float) -> float:
        run()
        _sync(device)
        count, start = 0, time.perf_counter()
        while count < 3 or time.perf_counter() - start < 1.0:
            run()
            count += 1
        _sync(device)
        return flops * count / (time.perf_counter() - start)

    size = 4096 if device.type == "cuda" else 1024
    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)
    matmul = rate(lambda: a @ b, 2.0 * size ** 3)
    batch = 1024 if device.type == "cuda" else 64
    conv = torch.nn.Conv2d(64, 64, 3, padding=1).to(device)
    images = torch.randn(batch, 64, 28, 28, device=device)
    with torch.no_grad():
        convolution = rate(lambda: conv(images), 2.0 * batch * 64 * 64 * 9 * 28 * 28)
    return {"matmul_flops_per_s": matmul, "conv_flops_per_s": convolution,
            "limit_flops_per_s": max(matmul, convolution),
            "matmul_size": size, "conv_shape": [batch, 64, 28, 28]}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_case(case: Case, variants: list[str], split: ImageSplit, ctx: DeviceContext,
             args: argparse.Namespace, limit: float, workdir: Path) -> list[dict]:
    """Every variant of one case, timed in --rounds interleaved rounds (variant A, B, C, A, B, C,
    ...), so that a change of the machine's load falls on all variants alike."""
    flops = step_flops(case, split, ctx, workdir)
    rows, ready = [], {}
    for variant in variants:
        row = {"case": case.name, "method": case.method, "n_way": case.n_way, "n_shot": case.n_shot,
               "n_query": case.n_query, "tasks_per_step": case.tasks_per_step,
               "inner_steps": case.inner_steps, "variant": variant, "flops_per_step": flops}
        rows.append(row)
        reason = unavailable(case, variant)
        if variant == "compiled" and args.compiled_cases is not None and \
                case.name not in args.compiled_cases.split(","):
            reason = reason or "not requested (--compiled-cases)"
        if reason:
            row["unavailable"] = reason
            continue
        try:
            trainer = build_trainer(case, variant, split, ctx, ctx.amp_dtype, workdir)
            episodes, row["first_step_loss"] = warm_up(trainer, variant, args)
            ready[variant] = (trainer, episodes)
        except Exception as error:  # a variant this torch/device cannot run: say why, keep going
            row["unavailable"] = f"{type(error).__name__}: {str(error)[:300]}"
    totals = {variant: [0, 0.0, 0.0] for variant in ready}  # steps, wall s, CPU s
    for _ in range(args.rounds):
        for variant, (trainer, episodes) in ready.items():
            measured = timed_steps(trainer, episodes, args.seconds / args.rounds)
            totals[variant] = [a + b for a, b in zip(totals[variant], measured, strict=True)]
    for row in rows:
        if row["variant"] not in totals:
            continue
        steps, wall, cpu = totals[row["variant"]]
        tasks = steps * case.tasks_per_step
        row.update(steps=steps, wall_s=round(wall, 3), steps_per_s=steps / wall,
                   episodes_per_s=tasks / wall, episodes_per_cpu_s=tasks / max(cpu, 1e-9),
                   limit_fraction=row["flops_per_step"] * steps / wall / limit)
        print(table_row(row), flush=True)
    compare_with_eager(rows)
    if ctx.device.type == "cuda":
        ready.clear()
        torch.cuda.empty_cache()
    return rows


def compare_with_eager(rows: list[dict]) -> None:
    """Speed-up over eager, and whether the first step's mean loss agrees with eager's.

    1e-3, not tighter: on Omniglot's flat backgrounds two values of a max-pool window can differ by
    one rounding, and paths that round differently (NHWC, the vectorized batch norm) then pick
    different maxima; one task of 32 moved by 0.03 in fp32 here (a 1e-6 perturbation of the images
    does the same to the eager path). tests/test_maml_vectorized.py checks exact agreement on
    continuous images.
    """
    eager = next((r for r in rows if r["variant"] == "eager" and "episodes_per_s" in r), None)
    if eager is None:
        return
    for row in rows:
        if "episodes_per_s" not in row or row["variant"] == "floor":
            continue
        row["speedup_vs_eager"] = row["episodes_per_s"] / eager["episodes_per_s"]
        row["speedup_vs_eager_per_cpu_s"] = row["episodes_per_cpu_s"] / eager["episodes_per_cpu_s"]
        difference = abs(row["first_step_loss"] - eager["first_step_loss"]) / abs(eager["first_step_loss"])
        row["first_step_loss_rel_diff"] = difference
        row["same_loss_as_eager"] = difference < 1e-3


def unavailable(case: Case, variant: str) -> str | None:
    if variant == "vectorized" and case.method != "maml":
        return "metric methods run one episode per backbone call (BatchNorm batch statistics)"
    if variant == "compiled" and case.method == "maml":
        return "torch.compile cannot double backward (second-order MAML)"
    if variant == "floor" and case.method != "protonet":
        return "measured for ProtoNet only"
    return None


def table_row(row: dict) -> str:
    shape = f"{row['n_way']}w{row['n_shot']}s{row['n_query']}q"
    if row["tasks_per_step"] > 1:
        shape += f" mb{row['tasks_per_step']} k{row['inner_steps']}"
    return (f"| {row['method']} | {shape} | {row['variant']} | {row['episodes_per_s']:.1f} | "
            f"{row['steps_per_s']:.2f} | {row['episodes_per_cpu_s']:.1f} | "
            f"{row['flops_per_step'] / 1e9:.2f} | {row['limit_fraction']:.2%} | "
            f"{row['first_step_loss']:.5f} |")


def git_commit() -> str:
    def git(*command: str) -> str:
        return subprocess.run(["git", *command], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    commit = git("rev-parse", "HEAD")
    if not commit:  # a copy without .git (a device machine): the commit gpu_carry.sh recorded
        return os.environ.get("FEWSHOT_GIT_COMMIT", "unknown")
    return commit + ("+uncommitted changes" if git("status", "--porcelain", "--untracked-files=no")
                     else "")


def hardware(device: torch.device) -> dict:
    info = {"platform": platform.platform(), "python": platform.python_version(),
            "torch": torch.__version__, "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "load_average_start": list(os.getloadavg())}
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                 if line.startswith("model name")]
        info["cpu"] = names[0] if names else platform.processor()
    if device.type == "cuda":
        info.update(gpu=torch.cuda.get_device_name(device), cuda=torch.version.cuda,
                    cudnn=torch.backends.cudnn.version())
    return info


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = OmegaConf.create({"type": args.device, "amp": args.amp, "channels_last": False,
                            "compile": False, "deterministic": False})
    ctx = DeviceContext.from_config(cfg)
    names = args.cases.split(",") if args.cases else list(CASES if ctx.device.type == "cuda" else CPU_CASES)
    variants = args.variants.split(",")
    for name in names:
        if name not in CASES:
            sys.exit(f"unknown case {name!r}; use {', '.join(CASES)}")
    for variant in variants:
        if variant not in VARIANTS:
            sys.exit(f"unknown variant {variant!r}; use {', '.join(VARIANTS)}")
    started = time.perf_counter()
    info = hardware(ctx.device)
    split = load_split(args)
    limit = compute_limit(ctx.device)
    gflops = {key: limit[f"{key}_flops_per_s"] / 1e9 for key in ("limit", "matmul", "conv")}
    print(f"# device={ctx.device} ({info.get('gpu', info.get('cpu'))}), torch {torch.__version__}, "
          f"amp={args.amp}, {args.seconds:g} s per variant; limit {gflops['limit']:.1f} GFLOP/s "
          f"(matmul {gflops['matmul']:.1f}, conv {gflops['conv']:.1f})")
    print("| method | shape | variant | episodes/s | steps/s | episodes/CPU-s | GFLOP/step | "
          "of limit | first-step loss |")
    print("|---|---|---|---|---|---|---|---|---|")
    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        for name in names:
            rows += run_case(CASES[name], variants, split, ctx, args, limit["limit_flops_per_s"],
                             Path(workdir))
    for row in rows:
        if "unavailable" in row:
            print(f"# {row['case']} {row['variant']}: unavailable ({row['unavailable']})")
    info["load_average_end"] = list(os.getloadavg())
    result = {"benchmark": "train_throughput", "git_commit": git_commit(),
              "command": " ".join([sys.executable.rsplit("/", 1)[-1], *sys.argv]),
              "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "device": str(ctx.device),
              "amp": args.amp, "data": "synthetic" if args.synthetic else "omniglot/train",
              "seconds_per_variant": args.seconds, "wall_s": round(time.perf_counter() - started, 1),
              "hardware": info, "compute_limit": limit, "note": args.note, "rows": rows}
    out = Path(args.out) if args.out else ROOT / "benchmarks" / "results" / \
        f"{ctx.device.type}_train_throughput" / "throughput.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"# saved {out} ({result['wall_s']:.0f} s)")


if __name__ == "__main__":
    main()
