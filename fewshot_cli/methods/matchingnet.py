"""Matching Networks (Vinyals, Blundell, Lillicrap, Kavukcuoglu, Wierstra, NeurIPS 2016)."""

import torch
import torch.nn.functional as F
from torch import nn

from fewshot_cli.backbones.probe import output_shape
from fewshot_cli.data.episode import Episode
from fewshot_cli.errors import ConfigError
from fewshot_cli.methods.base import FewShotMethod, MethodOutput
from fewshot_cli.methods.functional import (
    at_least_float32,
    cosine_similarity_matrix,
    squared_euclidean_distance,
)

DISTANCES = ("cosine", "l2")


class MatchingNetworks(FewShotMethod):
    """Classify each query by attention over the labelled support set (the paper's eq. 1-2).

    P(y = k | x̂, S) = Σ_i a(x̂, x_i) 1[y_i = k],  a(x̂, x_i) = softmax_i(c(f(x̂), g(x_i)) / τ)

    with c the cosine similarity (the paper's) or the negative squared Euclidean distance
    (`distance="l2"`). The loss is the negative log-likelihood of the query labels under P, and the
    returned logits are log P: exp(logits) sums to 1 over the classes of every query.

    Without full-context embeddings f = g = the backbone. With `fce=True` (the paper's appendix A.2):

    * g(x_i, S) = h→_i + h←_i + g'(x_i), a bidirectional LSTM read over the support embeddings g' in
      episode order (hidden size = embedding size so the three terms add up);
    * f(x̂, S) = attLSTM(f'(x̂), g(S), K): K "processing steps" of an LSTM whose input is f'(x̂) and
      whose previous hidden state is [h_{k-1}, r_{k-1}], with h_k = ĥ_k + f'(x̂) and the read-out
      r_k = Σ_i softmax_i(h_kᵀ g(x_i)) g(x_i). Concatenating r to the hidden state is implemented as
      feeding it as extra LSTM input: W_h [h, r] = W_h' h + W_r r, the same affine map of the gates.
      h_0 = f'(x̂) and c_0 = 0 (the paper leaves them unspecified); the output is h_K.

    Shapes: support [n_way * n_shot, C, H, W], query [n_way * n_query, C, H, W] -> logits (log-
    probabilities) [n_way * n_query, n_way].

    Args:
        backbone: embedding network, images -> [B, D] (f' = g' = backbone, shared weights).
        distance: "cosine" (the paper's) or "l2".
        temperature: τ dividing the similarities before the softmax. The paper uses none (τ = 1);
            cosines in [-1, 1] then cap a 5-way one-shot probability at about 0.65, which costs
            nothing in accuracy but keeps the loss from reaching 0.
        fce: use full-context embeddings (the paper uses them on miniImageNet, not on Omniglot).
        fce_steps: K, the attention LSTM's processing steps (not given in the paper).
        input_shape: [C, H, W] of the episode images; needed with fce=True only, to size the LSTMs
            from the backbone's output (the config passes the dataset's channels and image size).
    """

    # P(y = k) adds up the attention of class k's support items: with uneven counts a class with
    # more images gets more mass whatever the query.
    equal_shots = True

    def __init__(
        self,
        backbone: nn.Module,
        distance: str = "cosine",
        temperature: float = 1.0,
        fce: bool = False,
        fce_steps: int = 5,
        input_shape: tuple[int, int, int] | list[int] | None = None,
    ) -> None:
        super().__init__()
        if distance not in DISTANCES:
            raise ConfigError(f"method.distance={distance!r}; use one of {', '.join(DISTANCES)}")
        if temperature <= 0:
            raise ConfigError(f"method.temperature={temperature} must be positive")
        self.backbone = backbone
        self.distance = distance
        self.temperature = temperature
        self.fce = fce
        self.support_lstm: nn.LSTM | None = None
        self.query_lstm: nn.LSTMCell | None = None
        self.fce_steps = fce_steps
        if fce:
            if fce_steps < 1:
                raise ConfigError(f"method.fce_steps={fce_steps} must be at least 1")
            if input_shape is None:
                raise ConfigError("method.fce=true needs method.input_shape=[C, H, W] to size its LSTMs")
            shape = output_shape(backbone, tuple(input_shape))
            if len(shape) != 1:
                raise ConfigError(f"method.fce=true needs a backbone that outputs vectors, got maps "
                                  f"of shape {tuple(shape)}; use backbone.flatten=true")
            dim = int(shape[0])
            self.support_lstm = nn.LSTM(dim, dim, batch_first=True, bidirectional=True)
            # Input [f'(x̂), r]; hidden h: the paper's LSTM over hidden state [h, r] (see class doc).
            self.query_lstm = nn.LSTMCell(2 * dim, dim)

    def loss_and_logits(self, episode: Episode) -> MethodOutput:
        # One forward pass over support and query together, so BatchNorm sees the whole episode.
        n_support = episode.support_images.shape[0]
        embeddings = self.backbone(torch.cat([episode.support_images, episode.query_images]))
        if embeddings.ndim != 2:
            raise ConfigError(f"Matching Networks need a backbone that outputs vectors, got "
                              f"{tuple(embeddings.shape[1:])} maps; use backbone.flatten=true")
        support, query = embeddings[:n_support], embeddings[n_support:]
        if self.fce:
            support = self.full_context_support(support)
            query = self.full_context_query(query, support)
        log_probs = self.class_log_probabilities(query, support, episode.support_labels, episode.n_way)
        loss = F.nll_loss(log_probs, episode.query_labels)
        return MethodOutput(loss, log_probs, {})

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """The logits are already log P(y = k | x̂, S) (the attention mass of each class, eq. 1):
        exp, renormalised against rounding. [Q, n_way] -> [Q, n_way]."""
        probs = logits.float().exp()
        return probs / probs.sum(dim=-1, keepdim=True)

    def attention_logits(self, query: torch.Tensor, support: torch.Tensor) -> torch.Tensor:
        """[Q, D] x [S, D] -> [Q, S] scores c(f(x̂), g(x_i)) / τ, softmaxed over the support set."""
        if self.distance == "cosine":
            scores = cosine_similarity_matrix(query, support)
        else:
            scores = -squared_euclidean_distance(query, support)
        return scores / self.temperature

    def class_log_probabilities(self, query: torch.Tensor, support: torch.Tensor,
                                support_labels: torch.Tensor, n_way: int) -> torch.Tensor:
        """log Σ_{i: y_i = k} a(x̂, x_i) for every query and class: [Q, D], [S, D] -> [Q, n_way].

        Summed in log space (logsumexp of the log-attention over each class's support items), so a
        class whose attention underflows gets a large negative log-probability, never log(0) = -inf.
        """
        scores = at_least_float32(self.attention_logits(query, support))
        log_attention = F.log_softmax(scores, dim=1)  # [Q, S]
        one_hot = F.one_hot(support_labels, n_way).to(log_attention.dtype)  # [S, n_way]
        # log(1) = 0 keeps a support item in its class's sum, log(0) = -inf drops it.
        mask = one_hot.log()
        return torch.logsumexp(log_attention[:, :, None] + mask[None, :, :], dim=1)

    def full_context_support(self, support: torch.Tensor) -> torch.Tensor:
        """g(x_i, S) = h→_i + h←_i + g'(x_i): [S, D] -> [S, D] (the paper's eq. in A.2)."""
        assert self.support_lstm is not None
        dim = support.shape[1]
        states, _ = self.support_lstm(support[None])  # [1, S, 2D]: forward and backward halves
        return support + states[0, :, :dim] + states[0, :, dim:]

    def full_context_query(self, query: torch.Tensor, support: torch.Tensor) -> torch.Tensor:
        """f(x̂, S) = attLSTM(f'(x̂), g(S), K): [Q, D], [S, D] -> [Q, D]."""
        assert self.query_lstm is not None
        hidden, cell = query, torch.zeros_like(query)
        for _ in range(self.fce_steps):
            # r_{k-1}: attention read-out of g(S) with the previous hidden state (dot-product kernel).
            readout = torch.softmax(hidden @ support.T, dim=1) @ support
            h_hat, cell = self.query_lstm(torch.cat([query, readout], dim=1), (hidden, cell))
            hidden = h_hat + query  # the skip connection h_k = ĥ_k + f'(x̂)
        return hidden
