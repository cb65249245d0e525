"""Checkpoints: atomic writes, weights_only loading, and refusal of foreign `_target_`s."""

from pathlib import Path

import pytest
import torch

from fewshot_cli.engine import checkpoint as checkpoint_module
from fewshot_cli.engine.checkpoint import CHECKPOINT_FORMAT, load_checkpoint, save_checkpoint
from fewshot_cli.errors import CheckpointError

CONFIG = {"method": {"_target_": "fewshot_cli.methods.protonet.PrototypicalNetworks",
                     "backbone": {"_target_": "fewshot_cli.backbones.conv4.Conv4"}},
          "optimizer": {"_target_": "torch.optim.Adam", "_partial_": True, "lr": 1e-3}}


def payload(config: dict | None = None) -> dict:
    return {"model": {"w": torch.arange(6.0).view(2, 3)}, "episode": 40,
            "state": {"step": 40, "best_val_acc": 91.5}, "config": config or CONFIG,
            "rng": {"torch": torch.get_rng_state()}}


def test_round_trip_with_weights_only(tmp_path: Path) -> None:
    path = tmp_path / "checkpoints" / "last.pt"
    save_checkpoint(path, payload())
    raw = torch.load(path, weights_only=True)  # plain containers only
    assert raw["format"] == CHECKPOINT_FORMAT
    assert set(raw["versions"]) == {"fewshot_cli", "torch"}
    loaded = load_checkpoint(path)
    assert torch.equal(loaded["model"]["w"], torch.arange(6.0).view(2, 3))
    assert loaded["episode"] == 40
    assert loaded["config"] == CONFIG


def test_save_leaves_no_temp_files_and_replaces_old_file(tmp_path: Path) -> None:
    path = tmp_path / "last.pt"
    save_checkpoint(path, payload())
    second = payload()
    second["episode"] = 80
    save_checkpoint(path, second)
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]
    assert load_checkpoint(path)["episode"] == 80


def test_failed_write_keeps_previous_checkpoint_intact(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "last.pt"
    save_checkpoint(path, payload())
    before = path.read_bytes()
    real_save = torch.save

    def killed_midway(obj, target) -> None:
        real_save(obj, target)
        Path(target).write_bytes(Path(target).read_bytes()[:100])  # torn file...
        raise KeyboardInterrupt  # ...and the process stops

    monkeypatch.setattr(checkpoint_module.torch, "save", killed_midway)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, {**payload(), "episode": 99})
    assert path.read_bytes() == before
    assert load_checkpoint(path)["episode"] == 40
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # temp file cleaned up


@pytest.mark.parametrize("bad_config", [
    {"method": {"_target_": "os.system", "_args_": ["touch /tmp/pwned"]}},
    {"method": {"backbone": {"_target_": "subprocess.call"}}},
    {"callbacks": [{"_target_": "builtins.eval"}]},
    {"method": {"_target_": "fewshot_cli_evil.Model"}},  # prefix match needs the dot
    {"method": {"_target_": 42}},
])
def test_foreign_target_is_refused(tmp_path: Path, bad_config: dict) -> None:
    path = tmp_path / "evil.pt"
    save_checkpoint(path, payload(bad_config))
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(path)
    message = str(error.value)
    assert "_target_" in message
    assert "refused before anything ran" in message


def test_os_system_target_message_names_it(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    save_checkpoint(path, payload({"method": {"_target_": "os.system"}}))
    with pytest.raises(CheckpointError, match=r"evil\.pt:config\.method\._target_='os\.system' is not a "
                                              r"few-shot method of fewshot-cli"):
        load_checkpoint(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"does not exist"):
        load_checkpoint(tmp_path / "nope.pt")


def test_directory_is_not_a_checkpoint(tmp_path: Path) -> None:
    """A newcomer's input: a run folder as ckpt_path said it "does not exist"."""
    save_checkpoint(tmp_path / "run" / "checkpoints" / "best.pt", payload())
    with pytest.raises(CheckpointError, match=r"is a folder; pass the best.pt or last.pt file under its "
                                              r"checkpoints/ folder \(e.g. .*run/checkpoints/best.pt\)"):
        load_checkpoint(tmp_path)
    with pytest.raises(CheckpointError, match=r"is a folder; .*checkpoints/ folder$"):
        load_checkpoint(tmp_path / "run" / "checkpoints")


def test_corrupt_file(tmp_path: Path) -> None:
    path = tmp_path / "best.pt"
    path.write_bytes(b"\x00garbage, not a zip archive" * 10)
    with pytest.raises(CheckpointError, match=r"best\.pt is not a PyTorch checkpoint: it is a "):
        load_checkpoint(path)


def test_truncated_file(tmp_path: Path) -> None:
    path = tmp_path / "last.pt"
    save_checkpoint(path, payload())
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(CheckpointError, match=r"last\.pt is not a PyTorch checkpoint: it is a "):
        load_checkpoint(path)


class Exploit:
    def __reduce__(self):
        return (print, ("unpickled arbitrary code",))


def test_pickled_objects_are_not_loaded(tmp_path: Path) -> None:
    path = tmp_path / "pickle.pt"
    torch.save({"format": CHECKPOINT_FORMAT, "model": Exploit()}, path)
    with pytest.raises(CheckpointError, match=r"holding pickled Python objects \(print\)"):
        load_checkpoint(path)


def test_a_text_file_is_named_as_one(tmp_path: Path) -> None:
    """The issue's input: a text file as ckpt_path said "(pop from empty list)"."""
    path = tmp_path / "fake.pt"
    path.write_text("not a checkpoint\n")
    with pytest.raises(CheckpointError, match=r"fake\.pt is not a PyTorch checkpoint: it is a text file"):
        load_checkpoint(path)


def test_an_empty_file_is_named_as_one(tmp_path: Path) -> None:
    path = tmp_path / "empty.pt"
    path.write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"it is an empty file"):
        load_checkpoint(path)


def test_a_state_dict_of_another_program_lists_its_keys(tmp_path: Path) -> None:
    """The issue's input: a foreign .pt said "(format 1)"."""
    path = tmp_path / "foreign.pt"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "epoch": 3}, path)
    with pytest.raises(CheckpointError, match=r"is a PyTorch file but not a fewshot-cli checkpoint "
                                              r"\(it has no format/config/model entries; its keys: "
                                              r"epoch, state_dict\)"):
        load_checkpoint(path)


def test_a_newer_format_names_the_version_that_wrote_it(tmp_path: Path) -> None:
    path = tmp_path / "new.pt"
    torch.save({"format": 99, "config": {}, "model": {}, "versions": {"fewshot_cli": "9.0"}}, path)
    with pytest.raises(CheckpointError, match=r"format 99.*cannot read.*\(9\.0\)"):
        load_checkpoint(path)


@pytest.mark.parametrize("content", [[1, 2, 3], {"model": {}}, {"format": 1}])
def test_foreign_torch_file_is_not_a_checkpoint(tmp_path: Path, content) -> None:
    path = tmp_path / "other.pt"
    torch.save(content, path)
    with pytest.raises(CheckpointError, match=r"not a fewshot-cli checkpoint"):
        load_checkpoint(path)
