"""Output shape of a backbone for a given input shape, found by one dummy forward pass.

Methods whose layers depend on the embedding size (MAML's linear head, the LSTMs of Matching Networks'
full-context embeddings) need that size when they are built, before any episode is seen: the
optimiser is created from `model.parameters()` right after construction, so lazy modules would hand
it uninitialised parameters.
"""

import torch
from torch import nn


def output_shape(backbone: nn.Module, input_shape: tuple[int, ...]) -> torch.Size:
    """Shape of `backbone(x)[0]` for one input of shape `input_shape` ([C, H, W]).

    Runs two zero images (BatchNorm in training mode rejects a batch of one) in eval mode under
    no_grad, so no running statistic moves and no graph is kept; the training flag is restored.

    Returns:
        the per-example output shape, e.g. torch.Size([64]) for a flattening Conv-4 on 1x28x28.
    """
    was_training = backbone.training
    parameter = next(backbone.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    dtype = parameter.dtype if parameter is not None else torch.float32
    backbone.eval()
    try:
        with torch.no_grad():
            output = backbone(torch.zeros(2, *input_shape, device=device, dtype=dtype))
    finally:
        backbone.train(was_training)
    return output.shape[1:]
