"""PyTorch fast path for SAM's ascent step: in place, no temporary weights.

Eager torch allocates every operation's result: the portable ascent makes
three temporaries of each weight's size (the squares, the scaled
perturbation, `assign_add`'s sum, then copied back), and ASAM four more.
Here the squared norms are dot products, the perturbation is added with one
`addcmul_`, and ASAM's scaled gradient takes two buffers (docs/internals.md).
"""

import torch


def _squared_norm(x):
    flat = x.reshape(-1)
    if flat.dtype != torch.float32:
        flat = flat.float()
    return torch.dot(flat, flat)


def ascend(pairs, groups, rho, adaptive, eta):
    """Adds SAM's perturbation to each variable of `(gradient, variable)` pairs.

    The same numbers as the portable `SAM.apply` ascent, up to the order of
    the sums: `groups` holds each pair's norm group.
    """
    with torch.no_grad():
        directions, squares = [], {}
        for (gradient, variable), group in zip(pairs, groups, strict=True):
            scaled = gradient
            if adaptive:  # T g and T^2 g with T = |w| + eta
                scale = variable.value.abs().add_(eta)
                scaled = gradient * scale
            square = _squared_norm(scaled)
            squares[group] = squares.get(group, 0.0) + square
            directions.append(scaled.mul_(scale) if adaptive else scaled)
        factors = {
            group: rho / (torch.sqrt(square) + 1e-12)
            for group, square in squares.items()
        }
        for (_, variable), group, e in zip(pairs, groups, directions, strict=True):
            variable.value.addcmul_(e, factors[group].to(e.dtype))
