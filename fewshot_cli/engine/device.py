"""Device selection and the numeric settings that go with it (AMP, channels-last, determinism)."""

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from omegaconf import DictConfig

from fewshot_cli.errors import ConfigError

log = logging.getLogger(__name__)

AMP_DTYPES = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}
# device.channels_last=null resolves per device to the layout measured faster for training there
# (benchmarks/train_throughput.py, 2-core CPU: ProtoNet Conv-4 1.3-1.7x per CPU-second in NHWC,
# MAML 0.9-1.0x). CUDA keeps the default layout until the GPU table shows otherwise.
CHANNELS_LAST_DEFAULT = {"cpu": True, "cuda": False}


@dataclass(frozen=True)
class DeviceContext:
    """Resolved `device` config: where tensors go and how the forward pass runs."""

    device: torch.device
    amp_dtype: torch.dtype | None
    channels_last: bool
    compile: bool

    @classmethod
    def from_config(cls, cfg: DictConfig) -> "DeviceContext":
        """Resolve device.type auto|cpu|cuda and check the options against the hardware.

        Never picks a GPU ordinal: `cuda` means the current device, which launchers control with
        CUDA_VISIBLE_DEVICES (SLURM/submitit give each job its own GPUs that way; a hard-coded
        ordinal would put every job of a sweep on one GPU, or on one the job was not given).
        """
        kind = cfg.type
        if kind not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"device.type={kind!r}; use auto, cpu or cuda")
        if kind == "cuda" and not torch.cuda.is_available():
            raise ConfigError("device=cuda but no CUDA GPU is visible to torch; use device=cpu or auto")
        use_cuda = kind == "cuda" or (kind == "auto" and torch.cuda.is_available())
        device = torch.device("cuda" if use_cuda else "cpu")
        if cfg.amp not in AMP_DTYPES:
            raise ConfigError(f"device.amp={cfg.amp!r}; use one of {', '.join(AMP_DTYPES)}")
        amp_dtype = AMP_DTYPES[cfg.amp] if use_cuda else None
        if cfg.amp != "none" and not use_cuda:
            log.warning("device.amp=%s ignored on CPU; running in float32", cfg.amp)
        _configure_determinism(bool(cfg.deterministic), use_cuda)
        channels_last = cfg.get("channels_last")
        if channels_last is None:
            channels_last = CHANNELS_LAST_DEFAULT[device.type]
        return cls(device, amp_dtype, bool(channels_last), bool(cfg.compile))

    def autocast(self) -> contextlib.AbstractContextManager:
        """Mixed-precision context for forward passes (a no-op without AMP)."""
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def grad_scaler(self) -> torch.amp.GradScaler:
        """Loss scaling is needed for fp16 only; bf16 has float32's exponent range."""
        return torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)

    def synchronize(self) -> None:
        """Wait for queued GPU work, so host clocks measure it."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def _configure_determinism(deterministic: bool, use_cuda: bool) -> None:
    torch.use_deterministic_algorithms(deterministic, warn_only=False)
    if use_cuda:
        # cuDNN autotuning picks the fastest kernels but not always the same ones run to run.
        torch.backends.cudnn.benchmark = not deterministic
        torch.backends.cudnn.deterministic = deterministic
        torch.backends.cuda.matmul.allow_tf32 = not deterministic
        torch.backends.cudnn.allow_tf32 = not deterministic


@contextlib.contextmanager
def released_cuda_memory() -> Iterator[None]:
    """Free cached CUDA memory on exit: the basic launcher runs sweep jobs in one process."""
    try:
        yield
    finally:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
