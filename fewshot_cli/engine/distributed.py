"""Data parallelism over the tasks of a meta-batch, for runs launched with `torchrun`.

Each of the world_size processes takes a contiguous block of tasks_per_step / world_size episodes of
every meta-batch, back-propagates `loss / tasks_per_step` for its own episodes, and the gradients are
summed across processes: the result is exactly the single-process meta-batch gradient. BatchNorm
buffers are broadcast from rank 0 after each step (as DistributedDataParallel does), so every rank
holds the same model. Only rank 0 writes checkpoints, logs, TensorBoard events and metrics.json.

    torchrun --nproc_per_node=4 -m fewshot_cli train method=maml trainer.tasks_per_step=32 device=cuda

NCCL on GPUs (one per process, picked by LOCAL_RANK, which torchrun sets), gloo on CPU.
"""

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from fewshot_cli.engine.device import DeviceContext
from fewshot_cli.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistributedContext:
    """This process's place in the job: rank in 0..world_size-1."""

    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        """Rank 0 writes every output file."""
        return self.rank == 0

    @classmethod
    def from_environment(cls, ctx: DeviceContext) -> "DistributedContext":
        """Join the process group torchrun describes in WORLD_SIZE/RANK/LOCAL_RANK (or stay single)."""
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        if world_size <= 1:
            return cls()
        if not dist.is_initialized():
            if ctx.device.type == "cuda":
                torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
            dist.init_process_group(backend="nccl" if ctx.device.type == "cuda" else "gloo")
        context = cls(dist.get_rank(), dist.get_world_size())
        log.info("distributed training: rank %d of %d", context.rank, context.world_size)
        return context

    def my_tasks(self, tasks_per_step: int) -> range:
        """Positions in the meta-batch this rank trains on: a contiguous block."""
        if tasks_per_step % self.world_size:
            raise ConfigError(
                f"trainer.tasks_per_step={tasks_per_step} must be a multiple of the {self.world_size} "
                f"processes torchrun started, so every process trains on as many tasks"
            )
        per_rank = tasks_per_step // self.world_size
        return range(self.rank * per_rank, (self.rank + 1) * per_rank)

    def sum_gradients(self, parameters: Iterable[nn.Parameter]) -> None:
        """Sum .grad across processes (each rank already divided by the global meta-batch size)."""
        if self.world_size == 1:
            return
        for parameter in parameters:
            if parameter.grad is not None:
                dist.all_reduce(parameter.grad, op=dist.ReduceOp.SUM)

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """In-place sum of `tensor` across processes."""
        if self.world_size > 1:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def broadcast_buffers(self, module: nn.Module) -> None:
        """Copy rank 0's buffers (BatchNorm running statistics) to every rank."""
        if self.world_size == 1:
            return
        for buffer in module.buffers():
            dist.broadcast(buffer, src=0)
