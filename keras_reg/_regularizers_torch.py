"""torch fast path for the elastic net penalty (keras_reg.regularizers).

Eager torch runs one kernel per op, so the penalty's cost is the number of
passes over the weights. Keras's L1L2 makes about nine (abs, sum, square, sum,
and their gradients); this makes five: two fused reductions forward, and one
sign, one in-place scale and one fused multiply-add backward. The portable
path in keras_reg.regularizers gives the same numbers (tested).
"""

import torch


class _ElasticNetPenalty(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, l1, l2):
        ctx.save_for_backward(x)
        ctx.l1 = l1
        ctx.l2 = l2
        flat = x.reshape(-1)
        return torch.linalg.vector_norm(flat, 1) * l1 + torch.dot(flat, flat) * l2

    @staticmethod
    def backward(ctx, upstream):
        (x,) = ctx.saved_tensors
        grad = torch.sign(x).mul_(upstream * ctx.l1)
        return torch.addcmul(grad, x, upstream * (2.0 * ctx.l2)), None, None


def elastic_net_penalty(x, l1, l2):
    """`l1 * sum(|x|) + l2 * sum(x**2)` and its gradient in five passes."""
    return _ElasticNetPenalty.apply(x, l1, l2)
