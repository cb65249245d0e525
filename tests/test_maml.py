"""MAML: exact meta-gradients (second and first order), an untouched inner loop, BatchNorm on batch
statistics, the head options, the out-of-memory error, and learning on a synthetic task."""

import pytest
import torch
import torch.nn.functional as F
from synthetic_tasks import accuracy_gain, mean, synthetic_samplers, train_beside_untrained
from torch import nn
from torch.func import functional_call

from fewshot_cli.backbones.conv4 import Conv4
from fewshot_cli.data.episode import Episode
from fewshot_cli.engine.device import DeviceContext
from fewshot_cli.engine.evaluator import evaluate_episodes
from fewshot_cli.errors import ConfigError, FewShotError
from fewshot_cli.methods.maml import MAML, OOM_HINT


def tiny_backbone() -> nn.Module:
    """[B, 1, 2, 2] -> [B, 3]: small enough for a finite-difference check of every parameter, with a
    BatchNorm so the batch-statistics path is differentiated twice too."""
    return nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Tanh())


def tiny_maml(**options) -> MAML:
    torch.manual_seed(0)
    settings = {"input_shape": (1, 2, 2), "n_way": 2, "inner_lr": 0.5, "inner_steps": 2,
                "head": "learned", **options}
    return MAML(tiny_backbone(), **settings).double()


def tiny_episode(n_way: int = 2, n_shot: int = 2, n_query: int = 3, side: int = 2,
                 dtype: torch.dtype = torch.float64, seed: int = 1) -> Episode:
    generator = torch.Generator().manual_seed(seed)
    support = torch.randn(n_way * n_shot, 1, side, side, generator=generator, dtype=dtype)
    query = torch.randn(n_way * n_query, 1, side, side, generator=generator, dtype=dtype)
    return Episode(support, torch.arange(n_way).repeat_interleave(n_shot), query,
                   torch.arange(n_way).repeat_interleave(n_query), torch.arange(n_way),
                   tuple(f"c{i}" for i in range(n_way)), n_way, n_shot, n_query)


def meta_gradient(model: MAML, episode: Episode) -> dict[str, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    model.train()
    model.loss_and_logits(episode).loss.backward()
    return {name: p.grad.detach().clone() for name, p in model.named_parameters()}


def finite_difference_gradient(model: MAML, episode: Episode, eps: float = 1e-6) -> dict[str, torch.Tensor]:
    """Central differences of the meta-loss L_query(θ'(θ)) in every coordinate of θ."""
    model.train()
    gradients = {}
    for name, parameter in model.named_parameters():
        flat = parameter.data.view(-1)
        estimate = torch.zeros_like(flat)
        for i in range(flat.numel()):
            original = flat[i].item()
            flat[i] = original + eps
            plus = model.loss_and_logits(episode).loss.item()
            flat[i] = original - eps
            minus = model.loss_and_logits(episode).loss.item()
            flat[i] = original
            estimate[i] = (plus - minus) / (2 * eps)
        gradients[name] = estimate.view_as(parameter)
    return gradients


def test_second_order_gradient_matches_finite_differences() -> None:
    model = tiny_maml()
    episode = tiny_episode()
    analytic = meta_gradient(model, episode)
    numeric = finite_difference_gradient(model, episode)
    for name in analytic:
        torch.testing.assert_close(analytic[name], numeric[name], rtol=1e-5, atol=1e-7, msg=name)
    # The check has teeth: dropping the second-order terms changes the gradient by far more than the
    # tolerance above.
    first_order = meta_gradient(tiny_maml(first_order=True), episode)
    difference = max((analytic[n] - first_order[n]).abs().max().item() for n in analytic)
    assert difference > 1e-3


def detached_inner_gradient(model: MAML, episode: Episode) -> dict[str, torch.Tensor]:
    """The FOMAML gradient written out by hand: inner steps whose gradients are detached constants."""
    params = dict(model.named_parameters())

    def forward(weights: dict[str, torch.Tensor], images: torch.Tensor) -> torch.Tensor:
        backbone = {k.removeprefix("backbone."): w for k, w in weights.items() if k.startswith("backbone.")}
        features = functional_call(model.backbone, backbone, (images,))
        return F.linear(features, weights["head.weight"], weights["head.bias"])

    fast = dict(params)
    for _ in range(model.inner_steps):
        loss = F.cross_entropy(forward(fast, episode.support_images), episode.support_labels)
        grads = torch.autograd.grad(loss, list(fast.values()))
        fast = {k: w - model.inner_lr * g.detach() for (k, w), g in zip(fast.items(), grads, strict=True)}
    query_loss = F.cross_entropy(forward(fast, episode.query_images), episode.query_labels)
    return dict(zip(params, torch.autograd.grad(query_loss, list(params.values())), strict=True))


def test_first_order_gradient_equals_gradient_with_detached_inner_gradients() -> None:
    model = tiny_maml(first_order=True)
    episode = tiny_episode()
    automatic = meta_gradient(model, episode)
    by_hand = detached_inner_gradient(model, episode)
    for name in automatic:
        torch.testing.assert_close(automatic[name], by_hand[name], rtol=1e-10, atol=1e-12, msg=name)


@pytest.mark.parametrize("head", ["learned", "zero"])
@pytest.mark.parametrize("training", [True, False])
def test_inner_loop_leaves_the_parameters_untouched(head: str, training: bool) -> None:
    model = tiny_maml(head=head)
    model.train(training)
    before = {name: t.clone() for name, t in model.state_dict().items()}
    episode = tiny_episode()
    fast = model.adapt(episode.support_images, episode.support_labels, episode.n_way)
    model.loss_and_logits(episode)
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, before[name]), name
    # ...while the fast weights did move away from where they started.
    start = torch.zeros(2, dtype=torch.float64) if model.head is None else model.head.bias
    assert not torch.equal(fast["head.bias"], start)
    assert all(p.grad is None for p in model.parameters())


def test_batchnorm_uses_batch_statistics_in_train_and_eval_without_state() -> None:
    torch.manual_seed(0)
    model = MAML(Conv4(hidden_channels=8, out_channels=8), input_shape=(1, 16, 16), inner_steps=2,
                 inner_steps_eval=2)
    # No running statistics exist, so none can be updated (train) or relied on (eval).
    assert list(model.buffers()) == []
    assert all(not m.track_running_stats for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    episode = tiny_episode(n_way=3, n_shot=2, n_query=4, side=16, dtype=torch.float32)
    train_logits = model.loss_and_logits(episode).logits
    model.eval()
    with torch.no_grad():  # the method turns autograd back on for its inner loop
        eval_logits = model.loss_and_logits(episode).logits
        again = model.loss_and_logits(episode).logits
    # Same steps, same batches: eval mode computes exactly what training mode computes...
    torch.testing.assert_close(eval_logits, train_logits.detach())
    torch.testing.assert_close(again, eval_logits)
    # ...and a query's prediction depends on the other queries (transductive batch statistics).
    alone = model.forward_with(model.adapt(episode.support_images, episode.support_labels, 3),
                               episode.query_images[:2])
    assert not torch.allclose(alone, eval_logits[:2])


def test_eval_uses_inner_steps_eval() -> None:
    model = tiny_maml(inner_steps=1, inner_steps_eval=0)
    episode = tiny_episode()
    model.eval()
    unadapted = model.loss_and_logits(episode).logits
    direct = model.forward_with(dict(model.named_parameters()), episode.query_images)
    torch.testing.assert_close(unadapted, direct.detach())


def test_zero_head_adapts_to_any_way_and_learned_head_checks_it() -> None:
    zero = tiny_maml(head="zero")
    assert zero.head is None
    for n_way in (2, 4):
        output = zero.loss_and_logits(tiny_episode(n_way=n_way))
        assert output.logits.shape == (n_way * 3, n_way)
    with pytest.raises(ConfigError, match=r"method.n_way=2 .* 4-way"):
        tiny_maml(head="learned").loss_and_logits(tiny_episode(n_way=4))


def test_bad_options_are_config_errors() -> None:
    with pytest.raises(ConfigError, match=r"method\.head"):
        tiny_maml(head="random")
    with pytest.raises(ConfigError, match=r"method\.inner_lr"):
        tiny_maml(inner_lr=0.0)
    with pytest.raises(ConfigError, match="outputs vectors"):
        MAML(Conv4(pooled_blocks=2, flatten=False), input_shape=(1, 28, 28))


def test_cuda_out_of_memory_becomes_a_fewshot_error_with_the_memory_hint(
        monkeypatch: pytest.MonkeyPatch) -> None:
    model = tiny_maml()

    def exhausted(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(model, "forward_with", exhausted)
    with pytest.raises(FewShotError, match=r"method\.first_order=true") as error:
        model.loss_and_logits(tiny_episode())
    assert "trainer.tasks_per_step" in OOM_HINT
    assert isinstance(error.value.__cause__, torch.cuda.OutOfMemoryError)


def test_evaluator_runs_maml_with_autograd() -> None:
    samplers = synthetic_samplers(n_way=3, n_query=2)
    torch.manual_seed(0)
    model = MAML(Conv4(hidden_channels=8, out_channels=8), input_shape=(1, 16, 16), inner_steps_eval=2)
    ctx = DeviceContext(torch.device("cpu"), None, False, False)
    estimate = evaluate_episodes(model, samplers.test, 3, ctx, progress_bar=False)
    assert 0.0 <= estimate.mean <= 100.0 and estimate.n_episodes == 3


@pytest.mark.parametrize("first_order", [False, True], ids=["second_order", "first_order"])
def test_maml_learns_a_synthetic_task(first_order: bool) -> None:
    samplers = synthetic_samplers()
    torch.manual_seed(0)
    model = MAML(Conv4(hidden_channels=16, out_channels=16), input_shape=(1, 16, 16), head="learned",
                 inner_lr=0.4, inner_steps=1, inner_steps_eval=3, first_order=first_order)
    losses, untrained_losses, untrained = train_beside_untrained(model, samplers.train, n_episodes=24,
                                                                 lr=3e-3, tasks_per_step=2)
    assert mean(losses[-6:]) < 0.95 * mean(untrained_losses[-6:])  # 5%: more than float noise
    # Untrained, MAML still adapts its head at test time (~46%, chance 20%): so the bar is that model.
    gain = accuracy_gain(model, untrained, samplers.test, 20)
    assert gain.mean - gain.ci95 > 0, gain  # the paired 95% CI of the gain (points) excludes 0


def test_zero_head_first_step_is_a_prototype_classifier() -> None:
    """From W = 0 one step gives row k = (α / n_way)(μ_k - μ): class means minus the support mean."""
    model = tiny_maml(head="zero", inner_steps=1, inner_lr=0.3)
    episode = tiny_episode(n_way=3, n_shot=4)
    fast = model.adapt(episode.support_images, episode.support_labels, 3)
    features = model.backbone(episode.support_images).detach()
    class_means = features.view(3, 4, -1).mean(dim=1)
    expected = 0.3 / 3 * (class_means - features.mean(dim=0))
    torch.testing.assert_close(fast["head.weight"].detach(), expected)
