"""DropBlock2D: drops contiguous square blocks of each feature map."""

import functools

import keras
import numpy as np
from keras import ops

from keras_reg._api import register
from keras_reg._backends import fast_path
from keras_reg._validation import check_float, check_int
from keras_reg.layers import _masks
from keras_reg.layers.dropout_family import (
    DropoutFamilyLayer,
    check_data_format,
    check_floating,
)


def _coverage(size, block):
    """How many valid block positions cover each of `size` positions."""
    p = np.arange(size)
    return np.minimum(p, size - block) - np.maximum(0, p - block + 1) + 1


@functools.cache
def block_plan(height, width, block_size, rate):
    """Returns `(block_h, block_w, threshold, dropped)` for one map size.

    The block is clipped to the map. Blocks lie wholly inside the map, so
    their top-left corners are drawn on the valid `(height - block_h + 1) x
    (width - block_w + 1)` region, each with probability `gamma`. A position
    covered by `k` of these corners is dropped with probability `1 - (1 -
    gamma)**k`; `gamma` is solved (bisection, the fraction grows with it) so
    that the mean over the map equals `rate`, then quantized to the 16-bit
    threshold of `_masks.keep`. `dropped` is the exact expected dropped
    fraction of that threshold.
    """
    block_h, block_w = min(block_size, height), min(block_size, width)
    counts = np.outer(_coverage(height, block_h), _coverage(width, block_w))
    counts, weights = np.unique(counts, return_counts=True)
    weights = weights / weights.sum()

    def fraction(gamma):
        return 1.0 - float(np.sum(weights * (1.0 - gamma) ** counts))

    # Every position is covered at least once, so fraction(rate) >= rate.
    low, high = 0.0, rate
    for _ in range(60):
        mid = 0.5 * (low + high)
        low, high = (mid, high) if fraction(mid) < rate else (low, mid)
    # Below 2**16: a full threshold would drop every position of a map.
    threshold = min(_masks.drop_threshold(0.5 * (low + high)), (1 << 16) - 1)
    return block_h, block_w, threshold, fraction(threshold / (1 << 16))


def _dilate(dropped, axis, block):
    """ORs each position of `axis` with the `block - 1` before it, after
    padding `block - 1` zeros on both sides: the axis grows by `block - 1`.

    Doubling the window (1, 2, 4, ...) takes about log2(block) ORs; boolean
    tensors measured fastest (JAX) and pad on every backend.
    """
    pad = [(0, 0)] * 4
    pad[axis] = (block - 1, block - 1)
    dropped = ops.pad(dropped, pad)
    window = 1
    while window < block:
        step = min(window, block - window)
        length = dropped.shape[axis] - step
        head = (slice(None),) * axis + (slice(0, length),)
        tail = (slice(None),) * axis + (slice(step, step + length),)
        dropped = ops.logical_or(dropped[head], dropped[tail])
        window += step
    return dropped


def block_multiplier(shape, plan, state, channels_first, dtype):
    """The multiplier of one DropBlock mask: 0 in blocks, else `1 / (1 - p)`.

    `shape` is the input's, `plan` is `block_plan`'s, `state` a seed state.
    Block corners are `_masks.keep`'s dropped draws for the valid region,
    in the input's layout, so every backend draws the same blocks.
    """
    block_h, block_w, threshold, dropped_fraction = plan
    h_axis, w_axis = (2, 3) if channels_first else (1, 2)
    corners = list(shape)
    corners[h_axis] -= block_h - 1
    corners[w_axis] -= block_w - 1
    dropped = ops.logical_not(_masks.keep(corners, threshold, state))
    dropped = _dilate(dropped, h_axis, block_h)
    dropped = _dilate(dropped, w_axis, block_w)
    return _masks.multiplier(ops.logical_not(dropped), dropped_fraction, dtype)


@register
class DropBlock2D(DropoutFamilyLayer):
    """Drops contiguous square blocks of each 2D feature map.

    In training, blocks of `block_size x block_size` positions are set to 0
    in each feature map, independently per sample and channel, and what is
    kept is scaled by `1 / (1 - rate)`. Neighbouring activations of a
    convolutional feature map are strongly correlated, so dropping them one
    by one barely regularizes: dropping blocks removes whole regions of
    semantic information. At inference, and at `rate=0`, the layer is the
    identity.

    Blocks lie wholly inside the map, so their corners are drawn on the
    valid region of `(rows - block_size + 1) x (cols - block_size + 1)`
    positions, with a probability `gamma` solved for the map's size so that
    the expected fraction of dropped positions equals `rate`, overlaps of
    blocks included. The paper's closed form for `gamma` ignores overlaps,
    and drops less than `rate` (9.4% instead of 10% at rate 0.1, block 7,
    32x32 maps). `gamma` is quantized to a multiple of `2**-16`, so the
    expected dropped fraction is within `block_size**2 * 2**-17` of `rate`
    (a `gamma` below `2**-17` drops nothing); the scale uses that exact
    fraction, so the expected sum of a constant map is unchanged. Positions
    near the border are covered by fewer blocks and dropped less often than
    interior ones. A `block_size` larger than the map is clipped to it (as
    timm does): a block then spans the map's whole height, width, or both.

    Block corners are drawn as the masks of `keras_reg.layers.Dropout`:
    reproducible with a seed, bit-identical on every backend, saved with the
    model and active inside `keras_reg.mc_predict`. The spatial dimensions
    must be known when the layer is called.

    Args:
        rate: float in [0, 1). Expected fraction of the positions to drop.
        block_size: int >= 1. Side of the square blocks.
        data_format: `"channels_last"` (inputs `(samples, rows, cols,
            channels)`) or `"channels_first"` (inputs `(samples, channels,
            rows, cols)`), any case. None uses
            `keras.config.image_data_format()`.
        seed: optional non-negative int, the random seed.
        **kwargs: base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: 4D tensor.
        training: Python bool: True drops blocks, False returns the input.

    Example:

    >>> import numpy as np
    >>> layer = DropBlock2D(0.2, block_size=3, seed=1)
    >>> x = np.ones((2, 8, 8, 4), dtype="float32")
    >>> y = np.asarray(layer(x, training=True))
    >>> bool(np.all(np.isin(y, [0.0, y.max()])))
    True
    >>> bool(np.all(np.asarray(layer(x)) == x))
    True

    Reference:
        - [Ghiasi et al., 2018](https://arxiv.org/abs/1810.12890)
    """

    def __init__(
        self,
        rate: float,
        block_size: int,
        data_format: str | None = None,
        seed: int | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.rate = check_float("rate", rate, low=0, high=1, high_open=True)
        self.block_size = check_int("block_size", block_size, low=1)
        self.data_format = check_data_format(data_format)
        self._init_seed(seed, draws=self.rate > 0)
        self.supports_masking = True
        self.input_spec = keras.layers.InputSpec(ndim=4)
        self._mark_built()

    def call(self, inputs, training=False):
        if not self._is_active(training) or self.rate == 0:
            return inputs
        channels_first = self.data_format == "channels_first"
        rows, cols = inputs.shape[2:] if channels_first else inputs.shape[1:3]
        if rows is None or cols is None:
            raise ValueError(
                "DropBlock2D needs the spatial dimensions of its input known "
                f"when it is called. Received an input of shape {inputs.shape}"
            )
        check_floating(self, inputs)
        plan = block_plan(rows, cols, self.block_size, self.rate)
        if plan[2] == 0:  # gamma below 2**-17: no block is ever drawn
            return inputs
        shape = (ops.shape(inputs)[0],) + tuple(inputs.shape[1:])
        state = self._next_state()
        module = fast_path("drop_block")
        if module is not None:
            y = module.drop_block(inputs, shape, plan, state, channels_first)
            if y is not None:
                return y
        multiplier = block_multiplier(shape, plan, state, channels_first, inputs.dtype)
        return ops.multiply(inputs, multiplier)

    def get_config(self):
        return {
            **super().get_config(),
            "rate": self.rate,
            "block_size": self.block_size,
            "data_format": self.data_format,
            "seed": self.seed,
        }
