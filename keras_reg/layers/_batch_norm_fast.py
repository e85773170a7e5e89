"""Backend-specific pieces of BatchNormalization.

Everything here sits beside the portable keras.ops path in
`batch_normalization.py` and must give the same numbers: tests compare the
two for each backend. Backend modules are imported lazily so that the layer
never imports a framework the user did not choose.
"""

import keras
from keras import ops

from keras_reg.layers import _xla

# tf.compat.v1.nn.fused_batch_norm silently raises a smaller epsilon to this.
_FUSED_MIN_EPSILON = 1.001e-5


def available(layer, x, *, mask, training, dtype=None):
    """Whether a backend kernel can run this call with Keras's semantics.

    TensorFlow: for a last-axis (channels-last) input, the fused kernel in
    training; at inference, the portable formula compiled by XLA where only
    the batch dimension may vary between calls (`_xla`), else the fused
    kernel, or the portable path for an epsilon the kernel would raise. On CPU
    the fused kernel's channels-first (NCHW) variant measured slower than the
    portable path, so channels-first runs the portable path. Torch: the
    native kernel for the last axis or axis 1. JAX: none; the portable
    two-pass formulation
    (mean, then the mean squared deviation from the mean held constant for
    the gradient) measured faster under XLA than a single-pass
    `E[x**2] - E[x]**2` and than a hand-written backward pass.
    """
    if not layer._use_fast_path or mask is not None:
        return False
    if training and (layer.renorm or layer.synchronized):
        return False
    rank = len(x.shape)
    axis = layer.axis % rank
    if rank < 2:
        return False
    if dtype is None:
        dtype = keras.backend.standardize_dtype(x.dtype)
    backend = keras.backend.backend()
    if backend == "tensorflow":
        if dtype != "float32" or axis != rank - 1:
            return False
        if not training:
            return True
        if layer.epsilon < _FUSED_MIN_EPSILON:
            return False
        return _static_count(x, axis) != 1
    if backend == "torch":
        if dtype not in ("float32", "float64") or axis not in (1, rank - 1):
            return False
        # Torch refuses training statistics of a single value per channel.
        return not (training and _static_count(x, axis) in (1, None))
    return False


def _static_count(x, axis):
    """Values per channel, or None when a dimension is unknown."""
    count = 1
    for i, size in enumerate(x.shape):
        if i == axis:
            continue
        if size is None:
            return None
        count *= size
    return count


def train(layer, x, axis, gamma, beta):
    """Returns (outputs, batch mean, biased batch variance)."""
    if keras.backend.backend() == "tensorflow":
        return _tf_train(layer, x, gamma, beta)
    return _torch_train(layer, x, axis, gamma, beta)


def infer(layer, x, axis, mean, variance, gamma, beta, normalize):
    """Returns the inference outputs.

    `normalize` is the portable formula, `normalize(x, mean, variance, gamma,
    beta, epsilon, shape)`: TensorFlow runs it XLA-compiled.
    """
    if keras.backend.backend() == "tensorflow":
        return _tf_infer(layer, x, mean, variance, gamma, beta, normalize)
    return _torch_infer(layer, x, axis, mean, variance, gamma, beta)


def _tf_shape(x):
    """The static shape where it is known: one graph operation fewer."""
    import tensorflow as tf

    return x.shape if x.shape.is_fully_defined() else tf.shape(x)


def _tf_scale_offset(x, gamma, beta):
    import tensorflow as tf

    channels = x.shape[-1]
    scale = tf.ones((channels,), x.dtype) if gamma is None else gamma
    offset = tf.zeros((channels,), x.dtype) if beta is None else beta
    return scale, offset


def _tf_fused(layer, x, gamma, beta, *, training, mean=None, variance=None):
    """The fused kernel on channels-last `x`: `(y, mean, variance)`.

    In training `mean` and `variance` are the batch's, the variance unbiased;
    at inference they are the ones passed in.
    """
    import tensorflow as tf

    # Any channels-last input is a (values, 1, 1, channels) NHWC image to the
    # fused kernel; the reshapes are free.
    flat = tf.reshape(x, (-1, 1, 1, x.shape[-1]))
    scale, offset = _tf_scale_offset(x, gamma, beta)
    y, mean, variance = tf.compat.v1.nn.fused_batch_norm(
        flat,
        scale,
        offset,
        mean=mean,
        variance=variance,
        epsilon=layer.epsilon,
        is_training=training,
        data_format="NHWC",
    )
    return tf.reshape(y, _tf_shape(x)), mean, variance


def _tf_train(layer, x, gamma, beta):
    import tensorflow as tf

    y, mean, variance = _tf_fused(layer, x, gamma, beta, training=True)
    # The kernel returns the unbiased variance; Keras's moving variance takes
    # the biased one. A single value per channel has variance 0.
    count = tf.cast(tf.size(x) // x.shape[-1], variance.dtype)
    variance = tf.where(
        count > 1.0, variance * ((count - 1.0) / count), tf.zeros_like(variance)
    )
    return y, mean, variance


_tf_compiled = {}


def _tf_infer(layer, x, mean, variance, gamma, beta, normalize):
    import tensorflow as tf

    shape = (x.shape[-1],)
    # In a graph, the portable `x * inv + shift` compiled by XLA: one pass
    # over `x`. Keras does not XLA-compile TensorFlow on CPU, and there the
    # graph runs it as two passes, while the fused kernel in inference mode
    # measured slower than one XLA call (1024x512: 0.25 against 0.18 ms of
    # compute). Eager calls would retrace per shape, and a dynamic feature
    # dimension would compile per size: those take the fused kernel.
    if not tf.executing_eagerly() and _xla.tf_xla_usable(x.shape):
        if normalize not in _tf_compiled:
            _tf_compiled[normalize] = tf.function(
                normalize, jit_compile=True, reduce_retracing=True
            )
        function = _tf_compiled[normalize]
        return function(x, mean, variance, gamma, beta, layer.epsilon, shape)
    if layer.epsilon < _FUSED_MIN_EPSILON:
        return normalize(x, mean, variance, gamma, beta, layer.epsilon, shape)
    y, _, _ = _tf_fused(
        layer, x, gamma, beta, training=False, mean=mean, variance=variance
    )
    return y


def _torch_view(x, axis):
    """x as (values, channels) or (batch, channels, values) for torch."""
    channels = x.shape[axis]
    if axis == x.ndim - 1:
        return x.reshape(-1, channels)
    return x.reshape(x.shape[0], channels, -1)


def _torch_train(layer, x, axis, gamma, beta):
    import torch

    view = _torch_view(x, axis)
    channels = x.shape[axis]
    # With momentum 1 the running buffers receive exactly this batch's mean
    # and unbiased variance; the layer's own moving averages use the biased
    # variance, as in Keras.
    mean = torch.zeros(channels, dtype=x.dtype, device=x.device)
    variance = torch.zeros(channels, dtype=x.dtype, device=x.device)
    if gamma is None and beta is not None and x.is_cuda:
        # Without a weight but with a bias, torch's CUDA backward failed
        # ("tensor does not have a device") for a (batch, channels, values)
        # view of an input copied from the CPU; a weight of ones is exact.
        gamma = torch.ones(channels, dtype=x.dtype, device=x.device)
    y = torch.batch_norm(
        view, gamma, beta, mean, variance, True, 1.0, layer.epsilon, _cudnn()
    )
    count = view.numel() // channels
    variance = variance * ((count - 1) / count)
    return y.reshape(x.shape), mean, variance


def _torch_infer(layer, x, axis, mean, variance, gamma, beta):
    import torch

    # Inference is `x * a + c` with per-channel `a = gamma / sqrt(variance +
    # epsilon)` and `c = beta - mean * a`: one fused multiply-add pass
    # (torch.addcmul), which measured faster on CPU than torch.batch_norm's
    # inference kernel (45 vs 85 us at 1024x512, 454 vs 730 us at
    # 64x32x32x64, 2 threads).
    scale = torch.rsqrt(variance + layer.epsilon)
    if gamma is not None:
        scale = scale * gamma
    if beta is None:
        offset = -(mean * scale)
    else:
        offset = torch.addcmul(beta, mean, scale, value=-1)
    view = _torch_view(x, axis)
    if view.ndim == 3:
        scale = scale[:, None]
        offset = offset[:, None]
    return torch.addcmul(offset, view, scale).reshape(x.shape)


def _cudnn():
    import torch

    return torch.backends.cudnn.enabled


def synchronized_moments(x, keep, axes):
    """Cross-replica mean and variance, or None when there is nothing to sync.

    Only TensorFlow needs work here: inside a `tf.distribute` replica
    context each replica sees its own slice, so the sums, sums of squares and
    counts are all-reduced, as Keras does. On JAX the distribution API runs
    one program over the global batch, so the local statistics already are
    global.
    """
    if keras.backend.backend() != "tensorflow":
        return None
    import tensorflow as tf

    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return None
    if keep is None:
        weights = ops.ones_like(x)
        values = x
    else:
        weights = ops.cast(keep, x.dtype)
        values = ops.where(keep, x, ops.zeros_like(x))
    local_sum = ops.sum(values, axis=axes, keepdims=True)
    local_squares = ops.sum(ops.square(values), axis=axes, keepdims=True)
    local_count = ops.sum(weights, axis=axes, keepdims=True)
    total = context.all_reduce(tf.distribute.ReduceOp.SUM, local_sum)
    squares = context.all_reduce(tf.distribute.ReduceOp.SUM, local_squares)
    count = context.all_reduce(tf.distribute.ReduceOp.SUM, local_count)
    mean = tf.math.divide_no_nan(total, count)
    variance = ops.maximum(tf.math.divide_no_nan(squares, count) - mean**2, 0.0)
    return mean, variance


def assert_batch_multiple(x, size):
    """Returns `x`, checked for a batch size unknown while tracing.

    Only TensorFlow graphs have unknown sizes at run time; the check runs
    before the reshape that would otherwise fail with a less clear message.
    """
    if keras.backend.backend() != "tensorflow":
        return x
    import tensorflow as tf

    check = tf.debugging.assert_equal(
        tf.shape(x)[0] % size,
        0,
        message=f"The batch size must be a multiple of virtual_batch_size={size}.",
    )
    with tf.control_dependencies([check]):
        return tf.identity(x)
