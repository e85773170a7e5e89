"""PyTorch fast path for keras_reg.pruning: masks applied in place.

The portable `assign(w, w * mask)` allocates the product and copies it back;
an in-place multiply makes one pass and no allocation (docs/internals.md).
"""

import torch


def apply_masks(pairs):
    """Multiplies each variable of `(variable, mask)` pairs by its mask."""
    with torch.no_grad():
        for variable, mask in pairs:
            variable.value.mul_(mask.value)
