"""device.channels_last: null resolves to the device's default (channels-last on CPU), and an
explicit value, false included, is kept."""

import pytest
import torch
from omegaconf import OmegaConf

from fewshot_cli.engine.device import DeviceContext


def context(**device) -> DeviceContext:
    settings = {"type": "cpu", "amp": "none", "channels_last": None, "compile": False,
                "deterministic": False, **device}
    return DeviceContext.from_config(OmegaConf.create(settings))


@pytest.mark.parametrize(("setting", "expected"), [(None, True), (True, True), (False, False)])
def test_channels_last_on_cpu(setting: bool | None, expected: bool) -> None:
    assert context(channels_last=setting).channels_last is expected


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_channels_last_default_on_cuda_is_off() -> None:
    assert context(type="cuda").channels_last is False


@pytest.mark.parametrize(("device", "expected"), [("cpu", True), ("auto", None)])
def test_the_device_configs_say_it(compose_train, device: str, expected: bool | None) -> None:
    cfg = compose_train([f"device={device}"])
    assert cfg.device.channels_last is expected
    override = compose_train([f"device={device}", "device.channels_last=false"])
    assert override.device.channels_last is False
