"""What keras_reg's penalties share.

Factor validation, float32 for half-precision weights, the guard on a
proximal penalty's gradient and soft-thresholding.
"""

import keras
from keras import ops

from keras_reg import _validation
from keras_reg._backends import fast_path
from keras_reg.optimizers import proximal as proximal_optimizer

_HALF_DTYPES = ("float16", "bfloat16")


def as_float_tensor(x):
    """Converts `x` to a tensor, upcasting half precision to float32.

    Summing a million squared float16 weights overflows float16 (max 65504), so
    penalties on half-precision inputs are computed in float32.
    """
    x = ops.convert_to_tensor(x)
    if keras.backend.standardize_dtype(x.dtype) in _HALF_DTYPES:
        x = ops.cast(x, "float32")
    return x


def check_factor(name, value, default):
    value = default if value is None else value
    return _validation.check_float(
        name, value, low=0.0, expected="a non-negative float"
    )


def value_without_gradient(regularizer, penalty_fn, x):
    """Returns `penalty_fn(x)`, whose gradient is zero.

    The gradient raises unless a Proximal vouches for `regularizer`: without
    one, training would drop the penalty silently. The value never raises.
    """

    def check():
        if not proximal_optimizer.vouched_for(regularizer):
            raise ValueError(
                f"{regularizer!r} applies its L1 part as a proximal step after "
                "each optimizer update, and only `keras_reg.optimizers.Proximal` "
                "does that. Without it the L1 part would silently have no "
                "effect. Wrap the optimizer: `model.compile(optimizer=keras_reg."
                'optimizers.Proximal("sgd"), ...)`. In a custom training loop, '
                "and in `fit` under mixed_float16 on TensorFlow without a "
                "distribution strategy, call "
                "`optimizer.build(model.trainable_variables)` before computing "
                "gradients."
            )

    proximal_optimizer.forget_unfinished_steps(regularizer)

    if keras.backend.backend() == "jax":
        return _jax_value_without_gradient(penalty_fn, ops.convert_to_tensor(x), check)
    if isinstance(x, keras.Variable):
        # TensorFlow treats a variable as a tensor, but its custom gradients
        # must not capture variables: read the value first.
        x = ops.copy(x)

    @ops.custom_gradient
    def penalty(x):
        def grad(*args, upstream=None):
            check()
            fast = fast_path("regularizers")
            if fast is not None:
                return fast.zero_gradient(x)
            return ops.zeros_like(x)

        return penalty_fn(x), grad

    return penalty(x)


def _jax_value_without_gradient(penalty_fn, x, check):
    # `keras.ops.custom_gradient` is `jax.custom_gradient` on JAX, which runs
    # the gradient function while it traces the forward pass, before the
    # trainer calls `optimizer.scale_loss`; the check belongs to the backward
    # pass, where `jax.custom_vjp` runs it.
    import jax

    @jax.custom_vjp
    def penalty(x):
        return penalty_fn(x)

    def forward(x):
        return penalty_fn(x), x

    def backward(x, upstream):
        check()
        return (jax.numpy.zeros_like(x),)

    penalty.defvjp(forward, backward)
    return penalty(x)


def threshold(learning_rate, factor, dtype):
    """`learning_rate * factor` as a tensor of `dtype`."""
    return ops.multiply(ops.cast(learning_rate, dtype), factor)


def soft_threshold(x, learning_rate, l1):
    """`x` after the soft-thresholding step `sign(x) * max(|x| - lr * l1, 0)`."""
    x = ops.convert_to_tensor(x)
    if l1 == 0.0:
        return x
    t = threshold(learning_rate, l1, x.dtype)
    fast = fast_path("regularizers")
    if fast is not None:
        return fast.soft_threshold(x, t)
    # sign(x) * max(|x| - t, 0) equals x - clip(x, -t, t) bit for bit (IEEE
    # rounding is symmetric), and the latter makes two passes instead of five.
    return ops.subtract(x, ops.clip(x, ops.negative(t), t))
