"""BatchNormalization's portable path: batch statistics on `keras.ops`.

Moments (masked, or synchronized across TensorFlow replicas), ghost batches,
the batch renormalization correction and the normalization formula. The
backend fast paths in `keras_reg._backends` must give the same numbers.
"""

import math

import keras
from keras import ops


def channel_shape(rank, axis, channels):
    """The shape that broadcasts a per-channel vector along `axis`.

    None for the last axis, where the vector broadcasts as it is: in eager
    TensorFlow a reshape costs more than a small tensor's arithmetic.
    """
    if axis == rank - 1:
        return None
    shape = [1] * rank
    shape[axis] = channels
    return tuple(shape)


def along(vector, shape):
    """`vector` reshaped to `shape` (from `channel_shape`) unless it is None."""
    return vector if shape is None else ops.reshape(vector, shape)


def normalize(x, mean, variance, gamma, beta, epsilon, shape):
    """`gamma * (x - mean) / sqrt(variance + epsilon) + beta`.

    `mean` and `variance` broadcast against `x`; `gamma` and `beta` are
    per-channel vectors (or None), reshaped to `shape`. Folded into
    `x * inv + shift`, the formula makes one pass over `x` where it is fused.
    """
    inv = ops.rsqrt(variance + epsilon)
    if gamma is not None:
        inv = inv * along(gamma, shape)
    shift = mean * inv
    shift = -shift if beta is None else along(beta, shape) - shift
    return x * inv + shift


def moments(x, mask, axes, synchronized=False):
    """Returns the biased mean and variance over `axes`, dimensions kept.

    The mask, as in Keras, covers every input dimension but the last; a
    channel with no kept value gets mean 0 and variance 0.
    """
    keep = None
    if mask is not None:
        keep = ops.broadcast_to(
            ops.expand_dims(ops.cast(mask, "bool"), -1), ops.shape(x)
        )
    if synchronized and keras.backend.backend() == "tensorflow":
        synced = _tensorflow_replica_moments(x, keep, axes)
        if synced is not None:
            return synced
    if keep is None:
        mean = ops.mean(x, axis=axes, keepdims=True)
        # The mean's share of the variance's gradient sums to zero, so it is
        # held constant: the same gradient with less work, which measured
        # faster under XLA than `E[x**2] - E[x]**2` or a hand-written one.
        centered = x - ops.stop_gradient(mean)
        return mean, ops.mean(ops.square(centered), axis=axes, keepdims=True)
    count = ops.sum(ops.cast(keep, x.dtype), axis=axes, keepdims=True)
    count = ops.maximum(count, 1.0)
    zeros = ops.zeros_like(x)
    mean = ops.sum(ops.where(keep, x, zeros), axis=axes, keepdims=True) / count
    deviation = ops.where(keep, x - mean, zeros)
    variance = ops.sum(ops.square(deviation), axis=axes, keepdims=True) / count
    return mean, variance


def _tensorflow_replica_moments(x, keep, axes):
    """The moments over every replica of a `tf.distribute` strategy.

    Each replica sees its own slice of the batch, so the sums, sums of
    squares and counts are all-reduced, as Keras does. None outside a
    strategy or on one replica: the local moments are then the global ones.
    On JAX, `keras.distribution` runs one program over the global batch, so
    nothing needs reducing there.
    """
    import tensorflow as tf

    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return None
    if keep is None:
        weights, values = ops.ones_like(x), x
    else:
        weights, values = ops.cast(keep, x.dtype), ops.where(keep, x, 0.0)
    total, squares, count = (
        context.all_reduce(
            tf.distribute.ReduceOp.SUM, ops.sum(value, axis=axes, keepdims=True)
        )
        for value in (values, ops.square(values), weights)
    )
    mean = tf.math.divide_no_nan(total, count)
    variance = ops.maximum(tf.math.divide_no_nan(squares, count) - mean**2, 0.0)
    return mean, variance


def ghost_batch_norm(x, mask, axis, size, gamma, beta, epsilon):
    """Ghost batch normalization: statistics per virtual batch of `size`.

    Returns the outputs and the virtual batches' average mean and variance,
    per channel, which update the moving statistics as in tf-keras. As in
    tf-keras, virtual batch `j` holds examples `j, j + n, j + 2n, ...`.
    """
    batch = x.shape[0]
    if batch is not None and batch % size:
        raise ValueError(
            f"The batch size must be a multiple of virtual_batch_size={size}. "
            f"Received: inputs.shape={tuple(x.shape)}"
        )
    if batch is None:
        x = _assert_batch_multiple(x, size)
    # tf-keras's layout: [virtual_batch_size, n_virtual, ...].
    grouped = ops.reshape(x, _grouped_shape(x, size))
    if mask is not None:
        mask = ops.reshape(mask, _grouped_shape(mask, size))
    work_axis = axis + 1
    axes = [i for i in range(len(grouped.shape)) if i not in (1, work_axis)]
    mean, variance = moments(grouped, mask, axes)
    channels = x.shape[axis]
    shape = channel_shape(len(grouped.shape), work_axis, channels)
    outputs = normalize(grouped, mean, variance, gamma, beta, epsilon, shape)
    return (
        ops.reshape(outputs, ops.shape(x)),
        ops.reshape(ops.mean(mean, axis=1), (channels,)),
        ops.reshape(ops.mean(variance, axis=1), (channels,)),
    )


def _grouped_shape(x, size):
    return (size, -1) + tuple(-1 if d is None else d for d in x.shape[1:])


def _assert_batch_multiple(x, size):
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


def renorm_transform(layer, mean, variance, gamma, beta):
    """Folds `layer`'s renorm correction `(x * r + d)` into gamma and beta."""
    stddev = ops.sqrt(variance + layer.epsilon)
    renorm_mean = ops.cast(layer.renorm_mean, mean.dtype)
    # The floor avoids dividing by a near-zero stddev early in training.
    renorm_stddev = ops.maximum(
        ops.cast(layer.renorm_stddev, mean.dtype), math.sqrt(layer.epsilon)
    )
    clipping = layer.renorm_clipping
    r = ops.clip(
        stddev / renorm_stddev,
        clipping.get("rmin", -math.inf),
        clipping.get("rmax", math.inf),
    )
    dmax = clipping.get("dmax", math.inf)
    d = ops.clip((mean - renorm_mean) / renorm_stddev, -dmax, dmax)
    # r and d are treated as constants in backpropagation (the paper).
    r = ops.stop_gradient(r)
    d = ops.stop_gradient(d)
    if gamma is not None:
        r, d = r * gamma, d * gamma
    if beta is not None:
        d = d + beta
    return r, d
