"""TensorFlow fast path for DropBlock2D: one XLA-compiled function.

As for `tensorflow_masks`: Keras does not XLA-compile TensorFlow training
on CPU, where the portable multiplier (the corners' hash, the dilation and
the scale) would run as some thirty graph kernels. Compiled, it is one
function, and the graph adds one multiplication.
"""

import functools

import tensorflow as tf

from keras_reg.layers import _xla
from keras_reg.layers import drop_block as _drop_block


@functools.cache
def _compiled_multiplier(dims, plan, channels_first, dtype):
    """Compiled for the static dimensions `dims` after the batch."""

    def multiplier(batch, state):
        shape = (batch,) + dims
        return _drop_block.block_multiplier(shape, plan, state, channels_first, dtype)

    return tf.function(multiplier, jit_compile=True)


def drop_block(x, shape, plan, state, channels_first):
    """`x` times the DropBlock2D multiplier, or None where XLA would compile
    for every call (see `_xla`)."""
    if not _xla.tf_xla_usable(shape):
        return None
    dims = tuple(int(dim) for dim in shape[1:])
    compiled = _compiled_multiplier(dims, plan, channels_first, x.dtype.name)
    return x * compiled(tf.cast(shape[0], tf.int32), state)
