"""Training throughput of the episodic engine against its compute floor.

For each episode shape it times (a) the real training step: episode sampling from the uint8 split
tensor, the Conv-4 ProtoNet forward/backward and the Adam step, and (b) the same step on one
pre-made episode already on the device (the compute floor: no sampling at all). The ratio says how
much the data path costs.

    python benchmarks/train_throughput.py                 # CPU, Omniglot from $FEWSHOT_DATA_DIR
    python benchmarks/train_throughput.py --device cuda --episodes 2000
    python benchmarks/train_throughput.py --synthetic     # random images, no dataset needed

Prints one table; timings are medians of --repeats runs after a warm-up.
"""

import argparse
import os
import platform
import statistics
import time

import torch
from omegaconf import OmegaConf

from fewshot_cli.backbones.conv4 import Conv4
from fewshot_cli.data.image_split import ImageSplit
from fewshot_cli.data.omniglot import Omniglot
from fewshot_cli.data.sampler import EpisodeSampler
from fewshot_cli.engine.device import DeviceContext
from fewshot_cli.methods.protonet import PrototypicalNetworks

SHAPES = ((5, 1, 15), (60, 5, 5))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--amp", default="none", choices=["none", "bf16", "fp16"])
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--episodes", type=int, default=60, help="timed episodes per repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--synthetic", action="store_true", help="random images instead of Omniglot")
    parser.add_argument("--data-dir", default=os.environ.get("FEWSHOT_DATA_DIR", "data"))
    parser.add_argument("--cache-dir", default=os.environ.get("FEWSHOT_CACHE_DIR", "~/.cache/fewshot_cli"))
    return parser.parse_args()


def load_split(args: argparse.Namespace) -> ImageSplit:
    if args.synthetic:
        generator = torch.Generator().manual_seed(0)
        images = torch.randint(0, 256, (4112 * 20, 1, 28, 28), dtype=torch.uint8, generator=generator)
        labels = torch.arange(4112).repeat_interleave(20)
        return ImageSplit(images, labels, [str(i) for i in range(4112)], "synthetic/train")
    return Omniglot(root=args.data_dir, cache_dir=args.cache_dir, download=False).load_split("train")


def timed(step, n: int, ctx: DeviceContext) -> float:
    """Episodes per second over n calls of step(i)."""
    ctx.synchronize()
    start = time.perf_counter()
    for i in range(n):
        step(i)
    ctx.synchronize()
    return n / (time.perf_counter() - start)


def measure(split: ImageSplit, shape: tuple[int, int, int], args: argparse.Namespace,
            ctx: DeviceContext) -> tuple[float, float]:
    n_way, n_shot, n_query = shape
    torch.manual_seed(0)
    model = PrototypicalNetworks(Conv4(in_channels=1)).to(ctx.device)
    if ctx.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    scaler = ctx.grad_scaler()
    sampler = EpisodeSampler(split, n_way, n_shot, n_query, seed=0, stream="train", device=ctx.device,
                             channels_last=ctx.channels_last)

    def train_on(episode) -> None:
        optimizer.zero_grad(set_to_none=True)
        with ctx.autocast():
            loss = model.loss_and_logits(episode).loss
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    fixed = sampler.episode(0)
    stream = sampler.episodes(0, 10**9)
    for _ in range(10):  # warm-up: cuDNN autotuning, allocator, lazy init
        train_on(next(stream))
        train_on(fixed)
    engine = [timed(lambda i: train_on(next(stream)), args.episodes, ctx) for _ in range(args.repeats)]
    floor = [timed(lambda i: train_on(fixed), args.episodes, ctx) for _ in range(args.repeats)]
    return statistics.median(engine), statistics.median(floor)


def main() -> None:
    args = parse_args()
    cfg = OmegaConf.create({"type": args.device, "amp": args.amp, "channels_last": args.channels_last,
                            "compile": False, "deterministic": False})
    ctx = DeviceContext.from_config(cfg)
    split = load_split(args)
    hardware = torch.cuda.get_device_name() if ctx.device.type == "cuda" else (
        f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads")
    print(f"# device={ctx.device} ({hardware}), torch {torch.__version__}, amp={args.amp}, "
          f"channels_last={args.channels_last}, {args.episodes} episodes x {args.repeats} repeats")
    print("| shape | engine episodes/s | floor episodes/s (pre-made tensors) | engine / floor |")
    print("|---|---|---|---|")
    for shape in SHAPES:
        engine, floor = measure(split, shape, args, ctx)
        print(f"| {shape[0]}w{shape[1]}s{shape[2]}q | {engine:.1f} | {floor:.1f} | {engine / floor:.1%} |",
              flush=True)


if __name__ == "__main__":
    main()
