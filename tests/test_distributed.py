"""Meta-batch data parallelism: 2 gloo processes on the CPU must produce exactly the single-process
meta-batch gradient (each rank trains on its own block of the meta-batch's tasks)."""

import os
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from omegaconf import OmegaConf

from fewshot_cli.backbones.conv4 import Conv4
from fewshot_cli.data.image_split import ImageSplit
from fewshot_cli.data.sampler import EpisodeSampler
from fewshot_cli.engine.device import DeviceContext
from fewshot_cli.engine.distributed import DistributedContext
from fewshot_cli.engine.trainer import Trainer
from fewshot_cli.errors import ConfigError
from fewshot_cli.methods.protonet import PrototypicalNetworks

TASKS_PER_STEP = 4
WORLD_SIZE = 2


def make_trainer(output_dir: Path, distributed: DistributedContext) -> Trainer:
    """A ProtoNet trainer on a fixed random split; identical in every process (seeded)."""
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (12 * 6, 1, 28, 28), dtype=torch.uint8, generator=generator)
    split = ImageSplit(images, torch.arange(12).repeat_interleave(6), [str(c) for c in range(12)], "toy")
    ctx = DeviceContext(torch.device("cpu"), None, False, False)
    sampler = EpisodeSampler(split, 3, 1, 2, seed=7, stream="train")
    torch.manual_seed(0)
    model = PrototypicalNetworks(Conv4(in_channels=1, hidden_channels=8, out_channels=8))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=10)
    settings = OmegaConf.create({"max_episodes": 8, "tasks_per_step": TASKS_PER_STEP, "val_every": 8,
                                 "val_episodes": 1, "log_every": 4, "checkpoint_every": 8,
                                 "grad_clip": None, "progress_bar": False})
    return Trainer(model, optimizer, scheduler, sampler, sampler, ctx, settings, output_dir, {},
                   distributed=distributed)


def meta_batch_gradients(trainer: Trainer) -> dict[str, torch.Tensor]:
    trainer.accumulate_gradients(trainer._episode_stream(0, 1))
    return {name: p.grad.detach().clone() for name, p in trainer.model.named_parameters()}


def _worker(rank: int, store: str, output: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=WORLD_SIZE)
    try:
        trainer = make_trainer(Path(output).parent, DistributedContext(rank, WORLD_SIZE))
        gradients = meta_batch_gradients(trainer)
        if rank == 0:
            torch.save(gradients, output)
    finally:
        dist.destroy_process_group()
    # Leave without running C++ static destructors: with torch 2.14.1 a gloo thread is sometimes
    # still joinable then and the worker aborts ("terminate called without an active exception",
    # SIGABRT, about 1 run in 15) after its work is done.
    os._exit(0)


@pytest.mark.slow
def test_two_gloo_processes_average_to_the_single_process_gradient(tmp_path: Path) -> None:
    output = tmp_path / "gradients.pt"
    mp.spawn(_worker, args=(str(tmp_path / "store"), str(output)), nprocs=WORLD_SIZE, join=True)
    distributed = torch.load(output, weights_only=True)
    single = meta_batch_gradients(make_trainer(tmp_path, DistributedContext()))
    assert distributed.keys() == single.keys()
    for name, gradient in single.items():
        assert gradient.abs().sum() > 0, name
        torch.testing.assert_close(distributed[name], gradient, rtol=1e-5, atol=1e-7, msg=name)


def test_each_rank_takes_its_own_block_of_the_meta_batch() -> None:
    assert DistributedContext(0, 2).my_tasks(4) == range(0, 2)
    assert DistributedContext(1, 2).my_tasks(4) == range(2, 4)
    assert DistributedContext().my_tasks(4) == range(0, 4)
    with pytest.raises(ConfigError, match=r"tasks_per_step=3 must be a multiple of the 2 processes"):
        DistributedContext(0, 2).my_tasks(3)
