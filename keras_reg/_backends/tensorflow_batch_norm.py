"""BatchNormalization's TensorFlow fast path, for channels-last float32 inputs.

Training runs the fused batch norm kernel; inference inside a graph runs the
portable formula compiled by XLA. Each returns None where it does not apply
(docs/internals.md lists where), and the layer then runs the portable path.
"""

import tensorflow as tf

from keras_reg.layers import _xla
from keras_reg.layers._batch_norm_stats import normalize

# tf.compat.v1.nn.fused_batch_norm silently raises a smaller epsilon to this.
_FUSED_MIN_EPSILON = 1.001e-5

_compiled_normalize = tf.function(normalize, jit_compile=True, reduce_retracing=True)


def _channels_last_float32(x, axis):
    return x.dtype == tf.float32 and len(x.shape) >= 2 and axis == len(x.shape) - 1


def train(x, axis, gamma, beta, epsilon):
    """Returns (outputs, batch mean, biased batch variance), or None."""
    if not _channels_last_float32(x, axis) or epsilon < _FUSED_MIN_EPSILON:
        return None
    channels = x.shape[-1]
    values = x.shape.num_elements()
    if values is not None and values // channels == 1:
        return None
    # Any channels-last input is a (values, 1, 1, channels) NHWC image to the
    # kernel; the reshapes are free.
    y, mean, variance = tf.compat.v1.nn.fused_batch_norm(
        tf.reshape(x, (-1, 1, 1, channels)),
        tf.ones((channels,), x.dtype) if gamma is None else gamma,
        tf.zeros((channels,), x.dtype) if beta is None else beta,
        epsilon=epsilon,
        is_training=True,
        data_format="NHWC",
    )
    # The kernel returns the unbiased variance; Keras's moving variance takes
    # the biased one. A single value per channel has variance 0.
    count = tf.cast(tf.size(x) // channels, variance.dtype)
    variance = tf.where(
        count > 1.0, variance * ((count - 1.0) / count), tf.zeros_like(variance)
    )
    shape = x.shape if x.shape.is_fully_defined() else tf.shape(x)
    return tf.reshape(y, shape), mean, variance


def infer(x, axis, mean, variance, gamma, beta, epsilon):
    """Returns the inference outputs, or None."""
    if not _channels_last_float32(x, axis) or tf.executing_eagerly():
        return None
    if not _xla.tf_xla_usable(x.shape):
        return None
    # The channel count stays in the trace key, as `shape`: with traces
    # relaxed across channel counts (reduce_retracing), a gradient in the
    # test suite met another call's count ("Incompatible shapes: [7,3,5] vs.
    # [4]", TensorFlow 2.21).
    shape = (x.shape[-1],)
    return _compiled_normalize(x, mean, variance, gamma, beta, epsilon, shape)
