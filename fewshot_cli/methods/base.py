"""The contract every few-shot method fulfils, so the trainer and evaluator need no special cases."""

from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from typing import ClassVar, NamedTuple

import torch
from torch import nn

from fewshot_cli.data.episode import Episode
from fewshot_cli.methods.functional import class_max
from fewshot_cli.methods.pair_functional import euclidean_distance


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
        has_embedding: True for methods that map an image to a vector and compare vectors
            (ProtoNet, Siamese); they implement `embed` and may refine `pair_distance` (used by
            `fewshot predict pair=` and the verification metrics) and `class_scores`.
        equal_shots: True for methods whose class score adds up the support images of a class
            (Relation Networks sum the maps, Matching Networks sum the attention), so a class with
            more images scores higher whatever the query; `fewshot predict` then gives every class
            the smallest count of support images (and says so).
        query_batch_statistics: True for methods whose BatchNorm normalises the queries by the
            statistics of the query batch even in eval mode (MAML, as Finn et al.'s code), so a
            query's answer depends on the other queries; `fewshot predict` then puts the support
            images into the query batch too (a lone query would be normalised by itself).
        vectorizes_tasks: True for methods that implement `loss_and_logits_tasks(episodes)`, a
            training meta-batch as one computation (loss [T], logits [T, Q, n_way]) that equals
            one `loss_and_logits` per episode; the trainer uses it under trainer.vectorize_tasks.
        memory_hint: what to change when a training step runs out of CUDA memory; the trainer
            quotes it in its one-sentence error. The default names the episode shape, which bounds
            every method's activations; MAML names its meta-gradient's own knobs.
    """

    trainable: ClassVar[bool] = True
    needs_grad_at_eval: ClassVar[bool] = False
    has_embedding: ClassVar[bool] = False
    equal_shots: ClassVar[bool] = False
    query_batch_statistics: ClassVar[bool] = False
    vectorizes_tasks: ClassVar[bool] = False
    memory_hint: ClassVar[str] = "use smaller episodes (n_way, n_shot, n_query)"

    @abstractmethod
    def loss_and_logits(self, episode: Episode) -> MethodOutput:
        """Score the episode's queries and compute the method's loss on them."""

    def forward(self, episode: Episode) -> MethodOutput:
        return self.loss_and_logits(episode)

    @contextmanager
    def evaluating(self) -> Iterator[None]:
        """Eval mode for scoring episodes (evaluation, open-set thresholds, `fewshot predict`), and
        the mode the model was in restored afterwards, also when scoring raises.

        Autograd stays on only for methods that adapt by gradient at test time
        (`needs_grad_at_eval`, MAML's inner loop); every other method scores without a graph.
        """
        was_training = self.training
        self.eval()
        grad_mode = torch.enable_grad if self.needs_grad_at_eval else torch.no_grad
        try:
            with grad_mode():
                yield
        finally:
            self.train(was_training)

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """Class probabilities of `loss_and_logits`'s logits (`fewshot predict`): [Q, n_way] ->
        [Q, n_way] float32 in [0, 1], each row summing to 1.

        Default: softmax over the classes, the distribution the method's cross-entropy trains
        (ProtoNet's p(y = k | x), Snell et al. eq. 2; MAML's head; CLIP's softmax of s * cos).
        Methods whose logits are not softmax inputs override it and say how.
        """
        return torch.softmax(logits.float(), dim=-1)

    # Optional embedding API (has_embedding = True): `fewshot predict pair=` and pair verification.

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Embeddings of images: [B, C, H, W] -> [B, D]."""
        raise NotImplementedError(f"{type(self).__name__} has no image embedding")

    def pair_distance(self, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        """Dissimilarity of paired embeddings, lower = more alike: [P, D] x [P, D] -> [P].

        Default: Euclidean distance.
        """
        return euclidean_distance(left, right)

    def class_scores(self, query: torch.Tensor, support: torch.Tensor, support_labels: torch.Tensor,
                     n_way: int) -> torch.Tensor:
        """Scores (higher = more likely) of query embeddings [Q, D] for the classes of support
        embeddings [S, D] with labels [S] in 0..n_way-1 -> [Q, n_way].

        Default: nearest neighbour, minus the smallest `pair_distance` to the class's support images.
        """
        q, s = query.shape[0], support.shape[0]
        distances = self.pair_distance(query.repeat_interleave(s, 0), support.repeat(q, 1)).view(q, s)
        return class_max(-distances, support_labels, n_way)
