"""Episodes per second of the training sampler with and without natural-image augmentation.

Times `EpisodeSampler.episodes` (index drawing, gathering from the uint8 split tensor, float
conversion, normalisation) on random RGB images of CIFAR-FS (32 px) and miniImageNet (84 px) size,
once plain and once with `dataset.augment.kind=natural` (per-image random resized crop, flip and
colour jitter; fewshot_cli/data/natural_augment.py). No model runs: this is the data path alone,
to compare with a training step's time (benchmarks/train_throughput.py).

    python benchmarks/augment_throughput.py                   # CPU
    python benchmarks/augment_throughput.py --device cuda --episodes 2000

Prints one table; rates are medians of --repeats runs after a warm-up.
"""

import argparse
import platform
import statistics
import time

import torch

from fewshot_cli.data.image_split import ImageSplit
from fewshot_cli.data.natural_augment import NaturalAugment
from fewshot_cli.data.sampler import EpisodeSampler

SIZES = (32, 84)
SHAPES = ((5, 1, 15), (5, 5, 15))
CLASSES, PER_CLASS = 64, 60


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--episodes", type=int, default=100, help="timed episodes per repeat")
    parser.add_argument("--repeats", type=int, default=3)
    return parser.parse_args()


def synthetic_split(size: int) -> ImageSplit:
    images = torch.randint(0, 256, (CLASSES * PER_CLASS, 3, size, size), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(0))
    labels = torch.arange(CLASSES).repeat_interleave(PER_CLASS)
    return ImageSplit(images, labels, [str(c) for c in range(CLASSES)], f"synthetic{size}/train")


def rate(sampler: EpisodeSampler, episodes: int, repeats: int, device: torch.device) -> float:
    """Median episodes/s of `repeats` runs of `episodes` episodes (the device synchronised)."""
    for episode in sampler.episodes(0, 10):  # warm-up: allocator, lazy init
        episode.query_images.sum()
    rates = []
    for repeat in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        for _ in sampler.episodes((repeat + 1) * episodes, episodes):
            pass
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        rates.append(episodes / (time.perf_counter() - start))
    return statistics.median(rates)


def main() -> None:
    args = parse_args()
    device = torch.device(args.device)
    hardware = torch.cuda.get_device_name(device) if device.type == "cuda" else (
        f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads")
    print(f"# device={device} ({hardware}), torch {torch.__version__}, "
          f"{args.episodes} episodes x {args.repeats} repeats, sampler only (no model)")
    print("| images | shape | plain episodes/s | augmented episodes/s | augmented / plain |")
    print("|---|---|---|---|---|")
    for size in SIZES:
        split = synthetic_split(size)
        for n_way, n_shot, n_query in SHAPES:
            rates = [rate(EpisodeSampler(split, n_way, n_shot, n_query, seed=0, stream="train",
                                         device=device, mean=(0.5,) * 3, std=(0.25,) * 3,
                                         augment=augment), args.episodes, args.repeats, device)
                     for augment in (None, NaturalAugment())]
            print(f"| 3x{size}x{size} | {n_way}w{n_shot}s{n_query}q | {rates[0]:.0f} | {rates[1]:.0f} "
                  f"| {rates[1] / rates[0]:.1%} |", flush=True)


if __name__ == "__main__":
    main()
