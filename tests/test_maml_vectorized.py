"""trainer.vectorize_tasks: MAML's meta-batch as one torch.func.vmap computation gives the per-task
loop's losses and meta-gradient (second and first order), and a training run sees the same episodes
and losses either way."""

import json
from pathlib import Path

import pytest
import torch
from conftest import compose_config
from synthetic_tasks import synthetic_samplers

from fewshot_cli.backbones.conv4 import Conv4
from fewshot_cli.data.episode import Episode
from fewshot_cli.errors import ConfigError
from fewshot_cli.methods.batch_norm_formula import BatchNormByFormula
from fewshot_cli.methods.maml import MAML
from fewshot_cli.tasks.train import train

# fp32 on a Conv-4 with three inner steps: observed differences are ~1e-5 of gradients of order 1
# (summation order); PyTorch's fused batch norm under vmap is off by ~1e-2 (see BatchNormByFormula).
TOLERANCE = {"rtol": 1e-4, "atol": 1e-4}


# CUDA (run by benchmarks/gpu_check.sh): cuDNN's grouped convolutions and their double backward.
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(),
                                                                 reason="no CUDA device"))]


def conv4_maml(device: str = "cpu", **options) -> MAML:
    torch.manual_seed(0)
    settings = {"input_shape": (1, 16, 16), "n_way": 5, "inner_lr": 0.4, "inner_steps": 3, **options}
    return MAML(Conv4(hidden_channels=16, out_channels=16), **settings).to(device).train()


def meta_batch(count: int = 4, device: str = "cpu") -> list[Episode]:
    """`count` 5-way 1-shot episodes with 3 queries per class, of Gaussian images.

    Not pattern images: on flat backgrounds two values of a max-pool window can differ by one
    rounding, and the two paths (fused vs formula batch norm) then pick different maxima, which
    moves a task's loss by ~1e-2 in fp32 (seen on Omniglot; both are valid subgradients). Continuous
    images make such near-ties improbable, so the comparison can be tight.
    """
    generator = torch.Generator().manual_seed(3)
    labels = torch.arange(5)
    return [Episode(torch.randn(5, 1, 16, 16, generator=generator).to(device), labels.to(device),
                    torch.randn(15, 1, 16, 16, generator=generator).to(device),
                    labels.repeat_interleave(3).to(device), labels, tuple("abcde"), 5, 1, 3, seed=i)
            for i in range(count)]


def loop_loss_and_gradient(model: MAML, episodes: list[Episode]) -> tuple[torch.Tensor, dict]:
    """The reference: one `loss_and_logits` and one backward per task, as the trainer's loop does."""
    model.zero_grad(set_to_none=True)
    losses = []
    for episode in episodes:
        loss = model.loss_and_logits(episode).loss
        (loss / len(episodes)).backward()
        losses.append(loss.detach())
    return torch.stack(losses), {n: p.grad.clone() for n, p in model.named_parameters()}


def vectorized_loss_and_gradient(model: MAML, episodes: list[Episode]) -> tuple[torch.Tensor, dict]:
    model.zero_grad(set_to_none=True)
    losses = model.loss_and_logits_tasks(episodes).loss
    (losses.sum() / len(episodes)).backward()
    return losses.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("head", ["learned", "zero"])
@pytest.mark.parametrize("first_order", [False, True], ids=["second_order", "first_order"])
def test_vectorized_meta_batch_equals_the_task_loop(first_order: bool, head: str, device: str,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    # fp32 convolutions and matmuls on CUDA (TF32 rounds to 10 mantissa bits, far above the
    # tolerance; a DeviceContext on CUDA turns it on for the process).
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    matmul_tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        check_vectorized_equals_loop(first_order, head, device)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = matmul_tf32


def check_vectorized_equals_loop(first_order: bool, head: str, device: str) -> None:
    model = conv4_maml(device, first_order=first_order, head=head)
    episodes = meta_batch(device=device)
    loop_losses, loop_gradient = loop_loss_and_gradient(model, episodes)
    losses, gradient = vectorized_loss_and_gradient(model, episodes)
    torch.testing.assert_close(losses, loop_losses, **TOLERANCE)
    assert set(gradient) == set(loop_gradient)
    for name in gradient:
        torch.testing.assert_close(gradient[name], loop_gradient[name], **TOLERANCE, msg=name)
    # The comparison has teeth: the tasks differ, and second order differs from first order by more
    # than the tolerance.
    assert loop_losses.std() > 1e-3
    _, other_order = loop_loss_and_gradient(conv4_maml(device, first_order=not first_order, head=head),
                                            episodes)
    assert max((other_order[n] - loop_gradient[n]).abs().max() for n in gradient) > 1e-2


def test_vectorized_logits_are_each_tasks_own() -> None:
    model = conv4_maml()
    episodes = meta_batch(3)
    logits = model.loss_and_logits_tasks(episodes).logits
    assert logits.shape == (3, 15, 5)
    for task, episode in enumerate(episodes):
        torch.testing.assert_close(logits[task], model.loss_and_logits(episode).logits.detach(),
                                   **TOLERANCE)


def test_out_of_training_mode_the_episodes_run_one_by_one() -> None:
    model = conv4_maml(inner_steps_eval=2).eval()
    episodes = meta_batch(2)
    losses = model.loss_and_logits_tasks(episodes).loss
    expected = torch.stack([model.loss_and_logits(e).loss for e in episodes])
    torch.testing.assert_close(losses, expected)


def test_episodes_of_different_shapes_are_refused() -> None:
    model = conv4_maml(head="zero")
    three_way = list(synthetic_samplers(n_way=3, n_shot=1, n_query=3).train.episodes(0, 1))  # 3-way
    with pytest.raises(ConfigError, match="vectorize_tasks=false"):
        model.loss_and_logits_tasks(meta_batch(1) + three_way)


def test_batch_norm_formula_equals_the_fused_kernel() -> None:
    generator = torch.Generator().manual_seed(0)
    images = 3 * torch.randn(6, 4, 5, 5, generator=generator, dtype=torch.float64) + 1
    weight, bias = torch.randn(4, dtype=torch.float64), torch.randn(4, dtype=torch.float64)
    fused = torch.nn.functional.batch_norm(images, None, None, weight, bias, True, 0.1, 1e-5)
    with BatchNormByFormula():
        formula = torch.nn.functional.batch_norm(images, None, None, weight, bias, True, 0.1, 1e-5)
    torch.testing.assert_close(formula, fused, rtol=1e-12, atol=1e-12)


def run_history(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "train_history.jsonl").read_text().splitlines()]


def test_training_runs_see_the_same_episodes_and_losses_either_way(
        tmp_path: Path, tiny_train_overrides: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, list[int]] = {"loop": [], "vectorized": []}
    current: list[str] = []
    one_task, many_tasks = MAML.loss_and_logits, MAML.loss_and_logits_tasks

    def record_one(self, episode):
        if self.training:
            seen[current[0]].append(episode.seed)
        return one_task(self, episode)

    def record_many(self, episodes):
        seen[current[0]].extend(e.seed for e in episodes)
        return many_tasks(self, episodes)

    monkeypatch.setattr(MAML, "loss_and_logits", record_one)
    monkeypatch.setattr(MAML, "loss_and_logits_tasks", record_many)
    common = [*tiny_train_overrides, "method=maml", "method.inner_steps_eval=1",
              "trainer.tasks_per_step=2", "trainer.log_every=2"]
    metrics = {}
    for name, flag in (("loop", "false"), ("vectorized", "true")):
        current[:] = [name]
        cfg = compose_config("train", [*common, f"trainer.vectorize_tasks={flag}"], tmp_path / name)
        metrics[name] = train(cfg)
    assert len(seen["loop"]) == 4 and len(set(seen["loop"])) == 4
    assert seen["vectorized"] == seen["loop"]
    loop, vectorized = run_history(tmp_path / "loop"), run_history(tmp_path / "vectorized")
    assert [r["episode"] for r in vectorized] == [r["episode"] for r in loop]
    # 1e-2, not tighter: the synthetic characters have flat backgrounds, where a max-pool near-tie
    # can move one task's loss by ~1e-2 (see meta_batch); a wrong vectorized loss differs by far more.
    for ours, theirs in zip(vectorized, loop, strict=True):
        if "train/loss" in ours:
            assert ours["train/loss"] == pytest.approx(theirs["train/loss"], rel=1e-2)
    assert {"test/acc"} <= set(metrics["vectorized"]) and {"test/acc"} <= set(metrics["loop"])
