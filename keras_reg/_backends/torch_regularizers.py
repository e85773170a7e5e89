"""PyTorch fast path for keras_reg.regularizers: penalties and soft-thresholding.

Fewer passes over the weights than the portable path, with the same numbers
(tested under `keras_reg._backends.portable_only()`); docs/internals.md.
"""

import torch


class _ElasticNetPenalty(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, l1, l2):
        flat = x.reshape(-1)
        # sum(|x|) = sign(x) . x, and the sign is kept for the backward pass.
        sign = torch.sign(flat)
        ctx.save_for_backward(x, sign)
        ctx.l1 = l1
        ctx.l2 = l2
        return torch.dot(flat, sign) * l1 + torch.dot(flat, flat) * l2

    @staticmethod
    def backward(ctx, upstream):
        x, sign = ctx.saved_tensors
        grad = torch.mul(sign, upstream * ctx.l1).reshape(x.shape)
        return grad.addcmul_(x, upstream * (2.0 * ctx.l2)), None, None


class _L2Penalty(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, l2):
        ctx.save_for_backward(x)
        ctx.l2 = l2
        flat = x.reshape(-1)
        return torch.dot(flat, flat) * l2

    @staticmethod
    def backward(ctx, upstream):
        (x,) = ctx.saved_tensors
        return x * (upstream * (2.0 * ctx.l2)), None


def penalty(x, l1, l2):
    """`l1 * sum(|x|) + l2 * sum(x**2)` and its gradient; `l2` is not 0."""
    if l1 == 0.0:
        return _L2Penalty.apply(x, l2)
    return _ElasticNetPenalty.apply(x, l1, l2)


def zero_gradient(x):
    """The gradient of a value-only penalty: None, which torch skips adding."""
    return None


def soft_threshold(x, threshold):
    """`sign(x) * max(|x| - threshold, 0)` in one pass.

    `softshrink` takes the threshold as a Python number: reading the 0-d
    threshold costs one host sync per variable and step on a GPU, far less
    than the two passes and the tensor-bound `clip` of the portable path.
    """
    return torch.nn.functional.softshrink(x, float(threshold))
