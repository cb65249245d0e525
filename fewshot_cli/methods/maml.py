"""Model-Agnostic Meta-Learning (Finn, Abbeel, Levine, ICML 2017), and first-order MAML."""

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, vmap
from torch.func import grad as func_grad

from fewshot_cli.backbones.probe import output_shape
from fewshot_cli.data.episode import Episode
from fewshot_cli.errors import ConfigError, FewShotError
from fewshot_cli.methods.base import FewShotMethod, MethodOutput
from fewshot_cli.methods.batch_norm_formula import BatchNormByFormula
from fewshot_cli.methods.functional import at_least_float32

HEADS = ("learned", "zero")
OOM_HINT = ("set method.first_order=true (no second-order graph), lower trainer.tasks_per_step, "
            "set trainer.vectorize_tasks=false (one task's graph at a time), use fewer "
            "method.inner_steps, or device.amp=bf16")


class MAML(FewShotMethod):
    """Adapt a network to each episode by gradient steps on its support set (the paper's Alg. 2).

    Inner loop, on fast weights θ'_0 = θ (the module's own parameters, never modified in place):

        θ'_{j+1} = θ'_j - α ∇_θ' CE(h(support; θ'_j), support labels),   j = 0 .. steps-1

    with `functional_call` running the network on the fast-weight dict. The returned loss is the query
    cross-entropy under θ'_steps; the trainer backpropagates it to θ and averages `trainer.
    tasks_per_step` episodes per optimiser step (the paper's meta-batch). Second-order by default: the
    inner gradients are built with `create_graph=True`, so the meta-gradient includes the Hessian-vector
    terms. With `first_order=True` (FOMAML, the paper's sec. 5.2) the inner gradients are detached, so
    dθ'/dθ = I and the meta-gradient is the query gradient taken at θ'.

    In eval mode (the evaluator) the loop runs `inner_steps_eval` steps without a second-order graph
    and predicts the queries under no_grad; it still needs autograd, hence `needs_grad_at_eval`.

    Network: h(x; θ) = W · backbone(x) + b, one output per way. `head="learned"` meta-learns the
    initial W, b as the paper does (so the episode way must equal `n_way`); `head="zero"` starts every
    task from W = 0, b = 0 and learns only the backbone's initialisation (the "zeroing trick" of Kao et
    al., ICLR 2022): any way at test time, and predictions do not depend on which class got which
    label. With a zero head the first inner step sets row k of W to (α / n_way) (μ_k - μ), μ_k the
    class-k mean feature and μ the support mean: a prototype classifier.

    BatchNorm: as in Finn et al.'s code, normalisation always uses the statistics of the current batch,
    at training and at test: the support batch while adapting, the query batch when predicting
    (so test predictions are transductive across the queries of an episode). This is done by stripping
    every BatchNorm layer of its running statistics at construction (`track_running_stats=False`, the
    buffers set to None): BatchNorm then normalises by the batch whatever `model.train()/eval()` says,
    nothing is updated in eval (or in training), and no such buffers appear in checkpoints. The affine
    BatchNorm weights are ordinary parameters and are adapted in the inner loop like the rest.

    Shapes: support [n_way * n_shot, C, H, W], query [n_way * n_query, C, H, W], backbone output
    [B, D] -> logits [n_way * n_query, n_way].

    Args:
        backbone: embedding network, images -> [B, D] (Conv-4; Finn et al. use 64 filters on Omniglot
            and 32 on miniImageNet).
        input_shape: [C, H, W] of the episode images, to size the head from the backbone's output.
        n_way: outputs of the learned head (the training and test way); unused with head="zero".
        inner_lr: α, the inner-loop step size (0.4 for 5-way Omniglot, 0.1 for 20-way, 0.01 for
            miniImageNet in the paper).
        inner_steps: gradient steps on the support set during training.
        inner_steps_eval: gradient steps at test time (10 in the paper).
        first_order: FOMAML: drop the second-order terms of the meta-gradient.
        head: "zero" (re-zeroed per task; the default, works at any way) or "learned" (the paper).
    """

    memory_hint: ClassVar[str] = OOM_HINT  # the trainer quotes it on CUDA OOM in backward
    # The inner loop's cross-entropy counts support images, so a class with more of them pulls the
    # adapted head towards itself: `fewshot predict` gives every class the same number.
    equal_shots = True

    needs_grad_at_eval = True
    vectorizes_tasks = True  # loss_and_logits_tasks: the meta-batch as one vmap'd computation
    query_batch_statistics = True  # BatchNorm without running statistics (see the class doc)

    def __init__(
        self,
        backbone: nn.Module,
        input_shape: tuple[int, int, int] | list[int],
        n_way: int = 5,
        inner_lr: float = 0.4,
        inner_steps: int = 1,
        inner_steps_eval: int = 10,
        first_order: bool = False,
        head: str = "zero",
    ) -> None:
        super().__init__()
        if head not in HEADS:
            raise ConfigError(f"method.head={head!r}; use one of {', '.join(HEADS)}")
        for name, value in (("inner_steps", inner_steps), ("inner_steps_eval", inner_steps_eval)):
            if value < 0:
                raise ConfigError(f"method.{name}={value} must be 0 or more")
        if inner_lr <= 0:
            raise ConfigError(f"method.inner_lr={inner_lr} must be positive")
        if n_way < 1:
            raise ConfigError(f"method.n_way={n_way} must be at least 1")
        shape = output_shape(backbone, tuple(input_shape))
        if len(shape) != 1:
            raise ConfigError(f"MAML needs a backbone that outputs vectors, got maps of shape "
                              f"{tuple(shape)}; use backbone.flatten=true")
        self.backbone = use_batch_statistics(backbone)
        self.feature_dim = int(shape[0])
        self.head_kind = head
        self.n_way = n_way
        self.head: nn.Linear | None = nn.Linear(self.feature_dim, n_way) if head == "learned" else None
        self.inner_lr = inner_lr
        self.inner_steps = inner_steps
        self.inner_steps_eval = inner_steps_eval
        self.first_order = first_order

    def loss_and_logits(self, episode: Episode) -> MethodOutput:
        with _clear_out_of_memory_error():
            return self._loss_and_logits(episode)

    def _loss_and_logits(self, episode: Episode) -> MethodOutput:
        self._check_way(episode.n_way)
        # Autograd is needed for the inner loop even if a caller turned it off (the evaluator keeps
        # it on because of needs_grad_at_eval; this makes the method safe under no_grad too).
        with torch.enable_grad():
            fast = self.adapt(episode.support_images, episode.support_labels, episode.n_way)
        if self.training:
            logits = self.forward_with(fast, episode.query_images)
        else:
            with torch.no_grad():  # nothing to backpropagate at test: keep no graph
                logits = self.forward_with(fast, episode.query_images)
        loss = F.cross_entropy(at_least_float32(logits), episode.query_labels)
        return MethodOutput(loss, logits, {})

    def loss_and_logits_tasks(self, episodes: Sequence[Episode]) -> MethodOutput:
        """A whole meta-batch of training episodes as one computation (`trainer.vectorize_tasks`).

        The same inner loop as `adapt` and the same query loss as `loss_and_logits`, written with
        `torch.func.grad` (the inner gradient) inside `torch.func.vmap` over the tasks, so T episodes
        run as one batched network call per inner step instead of T calls (conv weights that differ
        per task after the first inner step become one grouped convolution). The inner gradient
        stays differentiable for regular autograd, so `loss.sum().backward()` gives the
        second-order meta-gradient; with first_order it is detached (FOMAML), as in `adapt`.
        BatchNorm normalises each task by its own support or query batch, exactly as one episode
        at a time (vmap gives every task its own statistics), computed by its formula
        (BatchNormByFormula: PyTorch's fused kernel has a wrong second derivative under vmap).
        Out of training mode (no meta-gradient is taken) the episodes go through
        `loss_and_logits` one by one.

        Shapes: T episodes of one shape -> loss [T] (each task's query cross-entropy) and logits
        [T, n_way * n_query, n_way]. Memory: the graphs of all T tasks are alive at once (the loop
        frees each after its backward), so peak memory grows with T.

        Raises:
            ConfigError: episodes of different shapes, or a way the learned head does not have.
            FewShotError: CUDA out of memory, with the memory options.
        """
        if not self.training:
            outputs = [self.loss_and_logits(episode) for episode in episodes]
            return MethodOutput(torch.stack([o.loss for o in outputs]),
                                torch.stack([o.logits for o in outputs]), {})
        shapes = {(e.n_way, e.n_shot, e.n_query, tuple(e.support_images.shape[1:])) for e in episodes}
        if len(shapes) != 1:
            raise ConfigError(f"a vectorized meta-batch needs episodes of one shape, got {sorted(shapes)}; "
                              f"set trainer.vectorize_tasks=false")
        n_way = episodes[0].n_way
        self._check_way(n_way)
        # BatchNorm by its formula: the fused kernel's second derivative is wrong under vmap.
        with _clear_out_of_memory_error(), torch.enable_grad(), BatchNormByFormula():
            losses, logits = vmap(self._task_loss(n_way))(
                torch.stack([e.support_images for e in episodes]),
                torch.stack([e.support_labels for e in episodes]),
                torch.stack([e.query_images for e in episodes]),
                torch.stack([e.query_labels for e in episodes]))
        return MethodOutput(losses, logits, {})

    def _task_loss(self, n_way: int):
        """One training task as a pure function of its tensors, for vmap:
        (support [S, C, H, W], support labels [S], query [Q, C, H, W], query labels [Q]) ->
        (query loss [], logits [Q, n_way]). The module's parameters enter as closed-over tensors
        (unbatched), so the meta-gradient reaches them through every task."""
        parameters = dict(self.named_parameters())
        # Frozen parameters (requires_grad=False) are not adapted, as in `adapt`.
        fixed = {n: p for n, p in parameters.items() if not p.requires_grad}
        adapted = {n: p for n, p in parameters.items() if p.requires_grad}

        def support_loss(fast: dict[str, torch.Tensor], images: torch.Tensor,
                         labels: torch.Tensor) -> torch.Tensor:
            logits = self.forward_with({**fixed, **fast}, images)
            return F.cross_entropy(at_least_float32(logits), labels)

        inner_gradient = func_grad(support_loss)

        def task_loss(support: torch.Tensor, support_labels: torch.Tensor, query: torch.Tensor,
                      query_labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            fast = dict(adapted)
            if self.head is None:  # the zero head, re-created per task as in initial_weights
                dtype = next(iter(parameters.values())).dtype if parameters else support.dtype
                fast["head.weight"] = support.new_zeros(n_way, self.feature_dim, dtype=dtype)
                fast["head.bias"] = support.new_zeros(n_way, dtype=dtype)
            for _ in range(self.inner_steps):
                gradients = inner_gradient(fast, support, support_labels)
                # Detached: a constant step, so dθ'/dθ = I (FOMAML); otherwise autograd keeps the
                # inner gradient's own graph and the meta-gradient has the second-order terms.
                fast = {n: w - self.inner_lr * (gradients[n].detach() if self.first_order
                                                else gradients[n])
                        for n, w in fast.items()}
            logits = self.forward_with({**fixed, **fast}, query)
            return F.cross_entropy(at_least_float32(logits), query_labels), logits

        return task_loss

    def initial_weights(self, n_way: int, like: torch.Tensor) -> dict[str, torch.Tensor]:
        """θ'_0: the module's parameters themselves (not copies, so the meta-gradient reaches them),
        plus a fresh zero head when head="zero" (leaf tensors that require grad for the inner loop)."""
        weights = dict(self.named_parameters())
        if self.head is None:
            dtype = next(iter(weights.values())).dtype if weights else like.dtype
            weights["head.weight"] = torch.zeros(n_way, self.feature_dim, dtype=dtype,
                                                 device=like.device, requires_grad=True)
            weights["head.bias"] = torch.zeros(n_way, dtype=dtype, device=like.device,
                                               requires_grad=True)
        return weights

    def adapt(self, images: torch.Tensor, labels: torch.Tensor, n_way: int) -> dict[str, torch.Tensor]:
        """Run the inner loop on the support set; return the fast weights θ'.

        Shapes: images [n_support, C, H, W], labels [n_support] -> {name: tensor like the parameter}.
        """
        weights = self.initial_weights(n_way, images)
        steps = self.inner_steps if self.training else self.inner_steps_eval
        # Second-order only where a meta-gradient will be taken: training without first_order.
        second_order = self.training and not self.first_order
        for _ in range(steps):
            loss = F.cross_entropy(at_least_float32(self.forward_with(weights, images)), labels)
            names = [name for name, w in weights.items() if w.requires_grad]
            grads = torch.autograd.grad(loss, [weights[n] for n in names], create_graph=second_order,
                                        allow_unused=True)
            updated = dict(weights)
            for name, grad in zip(names, grads, strict=True):
                if grad is None:
                    continue
                # Without create_graph the gradient carries no graph: θ' - α g with g a constant,
                # which is FOMAML's dθ'/dθ = I.
                step = weights[name] - self.inner_lr * grad
                if not self.training:
                    # At test nothing flows back to θ: start each step from fresh leaves, so no
                    # graph through earlier steps is kept alive.
                    step = step.detach().requires_grad_()
                updated[name] = step
            weights = updated
        return weights

    def forward_with(self, weights: dict[str, torch.Tensor], images: torch.Tensor) -> torch.Tensor:
        """h(images; weights): [B, C, H, W] -> [B, n_way], the network run on a fast-weight dict."""
        prefix = "backbone."
        backbone_weights = {name[len(prefix):]: w for name, w in weights.items()
                            if name.startswith(prefix)}
        features = functional_call(self.backbone, backbone_weights, (images,))
        return F.linear(features, weights["head.weight"], weights["head.bias"])

    def _check_way(self, n_way: int) -> None:
        if self.head is not None and n_way != self.n_way:
            raise ConfigError(
                f"MAML's learned head has method.n_way={self.n_way} outputs but the episode is "
                f"{n_way}-way; set method.n_way={n_way} (train and test way must match) or use "
                f"method.head=zero"
            )


def use_batch_statistics(module: nn.Module) -> nn.Module:
    """Make every BatchNorm layer of `module` normalise by batch statistics in train and eval mode.

    Removes the running-statistics buffers (BatchNorm's own rule: with no running stats it uses the
    batch's), so there is nothing to update or restore. Returns the same module, changed in place.
    """
    for layer in module.modules():
        if isinstance(layer, nn.modules.batchnorm._BatchNorm):
            layer.track_running_stats = False
            layer.running_mean = None
            layer.running_var = None
            layer.num_batches_tracked = None
    return module


@contextmanager
def _clear_out_of_memory_error() -> Iterator[None]:
    """Turn a CUDA out-of-memory error in the inner loop into a FewShotError with the memory knobs."""
    try:
        yield
    except torch.cuda.OutOfMemoryError as error:
        raise FewShotError(f"CUDA ran out of memory in MAML's inner loop; {OOM_HINT}") from error
