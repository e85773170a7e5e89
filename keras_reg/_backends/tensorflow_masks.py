"""TensorFlow fast path for dropout masks: one XLA-compiled function.

The keys, hash and multiplier compiled as one kernel, in place of a score of
small graph kernels (docs/internals.md).
"""

import functools

import tensorflow as tf

from keras_reg.layers import _masks, _xla


@functools.cache
def _compiled_multiplier():
    def multiplier(shape, threshold, state, rate, dtype):
        keep = _masks.keep(tf.unstack(shape), threshold, state)
        return _masks.multiplier(keep, rate, dtype.name)

    return tf.function(multiplier, jit_compile=True)


def drop(x, shape, rate, state):
    """`_masks.drop`, or None where XLA would compile for every call.

    XLA compiles once per mask shape (see `_xla`), so a mask with a
    dimension other than the batch unknown while tracing is left to the
    portable graph kernels, as are all masks where TensorFlow has no XLA.
    """
    if not _xla.tf_xla_usable(shape):
        return None
    shape = tf.stack([tf.cast(dim, tf.int32) for dim in shape])
    threshold = _masks.drop_threshold(rate)
    return x * _compiled_multiplier()(shape, threshold, state, rate, x.dtype)
