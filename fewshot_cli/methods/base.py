"""The contract every few-shot method fulfils, so the trainer and evaluator need no special cases."""

from abc import ABC, abstractmethod
from typing import ClassVar, NamedTuple

import torch
from torch import nn

from fewshot_cli.data.episode import Episode


class MethodOutput(NamedTuple):
    """What a method returns for one episode.

    Attributes:
        loss: scalar tensor, the method's own training loss (None for untrainable methods).
        logits: [n_way * n_query, n_way] scores of each query for each episode class
            (higher = more likely); accuracy is argmax(logits) == query_labels.
        metrics: extra scalars to log (already detached).
    """

    loss: torch.Tensor | None
    logits: torch.Tensor
    metrics: dict[str, float]


class FewShotMethod(nn.Module, ABC):
    """Stateless between episodes: everything an episode needs comes in the Episode.

    Class flags:
        trainable: False for methods used as-is (CLIP zero-shot); `fewshot train` refuses them.
        needs_grad_at_eval: True for methods that adapt by gradient at test time (MAML), so the
            evaluator keeps autograd on.
    """

    trainable: ClassVar[bool] = True
    needs_grad_at_eval: ClassVar[bool] = False

    @abstractmethod
    def loss_and_logits(self, episode: Episode) -> MethodOutput:
        """Score the episode's queries and compute the method's loss on them."""

    def forward(self, episode: Episode) -> MethodOutput:
        return self.loss_and_logits(episode)
