"""PyTorch fast path for DropBlock2D, for CPU tensors.

Block corners are rare (about `rate / block_size**2` of the positions), so
instead of dilating a dense corner mask with some twenty torch operations,
the corners are hashed by the C kernels of `torch_masks` (by NumPy where
they were not built) and found among the few packed keep words holding a
dropped draw. For float32 contiguous tensors the C kernels then clear each
corner's block in a mask packed one bit per element and apply it (as
`Dropout` does); other float CPU tensors are multiplied by a NumPy
multiplier whose blocks are cleared with one scattered assignment. Same
blocks as the portable path (tested).
"""

import math

import numpy as np
import torch

from keras_reg._backends import torch_masks
from keras_reg.layers import _masks

_ALL_KEPT = np.uint32(0xFFFFFFFF)


def _dropped_corners(n, threshold, seed, counter):
    """Flat indices, in increasing order, of the dropped draws of `keep`."""
    native = torch_masks.native
    if native is None:
        keep = torch_masks._multiplier(n, threshold, seed, counter, 1.0)
        return np.flatnonzero(keep == 0)
    bits, _, bits_threshold = _masks.draw_layout(threshold)
    words = torch.empty((n + 31) // 32, dtype=torch.int32)
    layout = (seed, counter, bits, bits_threshold, torch_masks.native_threads())
    native.keep_words(words.data_ptr(), n, *layout)
    words = words.numpy().view(np.uint32)
    rows = np.flatnonzero(words != _ALL_KEPT)
    kept = np.unpackbits(words[rows].astype("<u4").view(np.uint8), bitorder="little")
    flat = np.flatnonzero(kept == 0)
    corners = rows[flat // 32] * 32 + flat % 32
    return corners[corners < n]  # the last word's draws past `n` are not used


def drop_block(x, shape, plan, state, channels_first):
    """`x` times the DropBlock2D multiplier, for float CPU tensors."""
    if x.dtype not in torch_masks._FLOATS or x.device.type != "cpu":
        return None
    seed, counter = (value & 0xFFFFFFFF for value in torch.as_tensor(state).tolist())
    block_h, block_w, threshold, dropped_fraction = plan
    shape = tuple(int(dim) for dim in shape)
    if channels_first:
        batch, channels, rows, cols = shape
        corner_shape = (batch, channels, rows - block_h + 1, cols - block_w + 1)
        strides = (cols, 1)
    else:
        batch, rows, cols, channels = shape
        corner_shape = (batch, rows - block_h + 1, cols - block_w + 1, channels)
        strides = (cols * channels, channels)
    corners = _dropped_corners(math.prod(corner_shape), threshold, seed, counter)
    index = np.unravel_index(corners, corner_shape)
    # The corner's flat position in the input: its row and column are the
    # same, only the row length differs.
    start = np.ravel_multi_index(index, shape).astype(np.int64, copy=False)
    scale = _masks.scale(dropped_fraction, "float32")
    if torch_masks._native_usable(x, shape):
        # The C kernels clear the blocks in a mask packed one bit per element
        # and apply it, forward and backward, in one pass each.
        words = torch.full(((x.numel() + 31) // 32,), -1, dtype=torch.int32)
        block = (block_h, block_w, *strides)
        torch_masks.native.clear_blocks(
            words.data_ptr(), start.ctypes.data, start.size, *block
        )
        return torch_masks._NativeDrop.apply(x, words, scale)
    offsets = np.add.outer(
        np.arange(block_h) * strides[0], np.arange(block_w) * strides[1]
    ).ravel()
    keep = np.ones(math.prod(shape), np.bool_)
    keep[np.add.outer(start, offsets).ravel()] = False
    multiplier = np.multiply(keep, np.float32(scale), dtype=np.float32)
    # A 16-bit tensor times a 16-bit multiplier rounds as `_masks.drop` does.
    return x * torch.from_numpy(multiplier).to(x.dtype).view(shape)
