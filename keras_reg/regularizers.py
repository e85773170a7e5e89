"""Weight penalties: drop-in L1, L2 and ElasticNet (L1L2), proximal L1, GroupLasso.

`L1`, `L2` and `ElasticNet` (alias `L1L2`) compute the same penalties as
Keras's `keras.regularizers.L1`, `L2` and `L1L2`, take the same arguments and
write the same config keys, so one can replace the other line for line.

With `proximal=True`, the L1 part (and GroupLasso's whole penalty) is not
followed by its subgradient, which makes weights oscillate around zero without
ever reaching it. Instead `keras_reg.optimizers.Proximal` applies the proximal
(soft-thresholding) step right after each optimizer update, which sets weights
exactly to zero. The penalty value still counts in the reported loss so that
losses stay comparable; its gradient is zero.
"""

import math
import sys

import keras
from keras import ops

from keras_reg import _validation
from keras_reg._api import register

__all__ = [
    "ElasticNet",
    "GroupLasso",
    "L1",
    "L1L2",
    "L2",
    "OrthogonalRegularizer",
    "Regularizer",
    "deserialize",
    "elastic_net",
    "get",
    "group_lasso",
    "l1",
    "l1_l2",
    "l2",
    "orthogonal_regularizer",
    "serialize",
]

# The base class and the one regularizer keras_reg does not replace, so that
# `from keras_reg import regularizers` serves code written for
# `from keras import regularizers`.
Regularizer = keras.regularizers.Regularizer
OrthogonalRegularizer = keras.regularizers.OrthogonalRegularizer

_HALF_DTYPES = ("float16", "bfloat16")


def _as_float_tensor(x):
    """Converts `x` to a tensor, upcasting half precision to float32.

    Summing a million squared float16 weights overflows float16 (max 65504), so
    penalties on half-precision inputs are computed in float32.
    """
    x = ops.convert_to_tensor(x)
    if keras.backend.standardize_dtype(x.dtype) in _HALF_DTYPES:
        x = ops.cast(x, "float32")
    return x


def _use_torch_fast_path():
    # Eager torch pays for every pass over the weights, graph backends fuse
    # them; see keras_reg/_regularizers_torch.py. Tests patch this to compare
    # the fast path with the portable one.
    return keras.backend.backend() == "torch"


def _check_factor(name, value, default):
    if value is None:
        value = default
    return _validation.check_float(
        name, value, low=0.0, expected="a non-negative float"
    )


def _training_model_has_proximal_optimizer():
    """Whether the model training on this call stack uses `Proximal`.

    Returns None when no model's train step is on the stack (a custom training
    loop, or a backward pass on another thread).

    Keras's trainers compute gradients inside `Model.train_step`, so the model
    being trained, and the optimizer it is about to apply, sit on the call
    stack while a penalty's gradient is taken. Looking there is what makes
    the check right on every backend: TensorFlow builds the optimizer only
    after the first step's gradients are traced, and a model recompiled with
    a plain optimizer must fail even if a `Proximal` optimizer once
    registered its regularizers.
    """
    from keras_reg.optimizers.proximal import Proximal

    frame = sys._getframe(1)
    while frame is not None:
        if "train_step" in frame.f_code.co_name:
            owner = frame.f_locals.get("self")
            if isinstance(owner, keras.Model):
                optimizer = getattr(owner, "optimizer", None)
                while optimizer is not None:
                    if isinstance(optimizer, Proximal):
                        return True
                    optimizer = getattr(optimizer, "inner_optimizer", None)
                return False
        frame = frame.f_back
    return None


def _missing_proximal_optimizer_error(regularizer):
    return ValueError(
        f"{regularizer!r} applies its L1 part as a proximal step after each "
        "optimizer update, and only `keras_reg.optimizers.Proximal` does that. "
        "Without it the L1 part would silently have no effect. Wrap the "
        "optimizer: `model.compile(optimizer=keras_reg.optimizers.Proximal("
        '"sgd"), ...)`. In a custom training loop, call '
        "`optimizer.build(model.trainable_variables)` before computing "
        "gradients."
    )


def _value_without_gradient(regularizer, penalty_fn, x):
    """Returns `penalty_fn(x)` whose gradient is zero.

    The backward pass only runs when a model is being trained, which is
    exactly when a missing `Proximal` optimizer would silently drop the
    penalty: the backward pass is where that mistake is caught.
    """
    if isinstance(x, keras.Variable):
        # TensorFlow treats a variable as a tensor, but its custom gradients
        # must not capture variables: read the value first.
        x = ops.copy(x)

    @ops.custom_gradient
    def penalty(x):
        def grad(*args, upstream=None):
            has_proximal = _training_model_has_proximal_optimizer()
            if has_proximal is None:
                # Outside Model.fit: a Proximal optimizer registers the
                # regularizers of the variables it was built with.
                has_proximal = regularizer._proximal_registered
            if not has_proximal:
                raise _missing_proximal_optimizer_error(regularizer)
            if _use_torch_fast_path():
                # torch reads None as "no gradient" and skips adding zeros.
                return None
            return ops.zeros_like(x)

        return penalty_fn(x), grad

    return penalty(x)


def _soft_threshold(x, threshold):
    if _use_torch_fast_path():
        from keras_reg._regularizers_torch import soft_threshold

        return soft_threshold(x, threshold)
    # sign(x) * max(|x| - t, 0) equals x - clip(x, -t, t) bit for bit (IEEE
    # rounding is symmetric), and the latter makes two passes instead of five.
    return ops.subtract(x, ops.clip(x, ops.negative(threshold), threshold))


def _threshold(learning_rate, factor, dtype):
    return ops.multiply(ops.cast(learning_rate, dtype), factor)


class _ProximalMixin:
    """Bookkeeping shared by regularizers that can be proximal."""

    # Set by `keras_reg.optimizers.Proximal.build` on the regularizers of the
    # variables it updates; a plain Python flag, never part of the config.
    _proximal_registered = False


@register
class L1(_ProximalMixin, keras.regularizers.Regularizer):
    """L1 weight penalty `l1 * sum(abs(x))`, optionally applied proximally.

    A drop-in replacement for `keras.regularizers.L1`: same argument, default
    and config key. `l1=None` means the default 0.01, as in Keras. The factor
    is kept as a Python float.

    With `proximal=True` the penalty's subgradient is not used. Instead,
    `keras_reg.optimizers.Proximal` applies the soft-thresholding step
    `w <- sign(w) * max(|w| - learning_rate * l1, 0)` after each update, so
    weights become exactly zero. The penalty value still appears in the loss.
    Training such a model without the `Proximal` optimizer raises a
    `ValueError` at the first training step.

    Args:
        l1: Non-negative float, the L1 factor. Defaults to 0.01.
        proximal: Bool. Whether to apply the L1 part as a proximal step
            (requires `keras_reg.optimizers.Proximal`). Defaults to `False`.
            The config holds the key `"proximal"` only when it is `True`, so a
            non-proximal config is exactly Keras's.

    Example:

    >>> import keras, numpy as np, keras_reg
    >>> regularizer = keras_reg.regularizers.L1(l1=0.1)
    >>> round(float(regularizer(np.array([[1.0, -2.0], [0.5, 0.0]]))), 6)
    0.35
    >>> layer = keras.layers.Dense(
    ...     4, kernel_regularizer=keras_reg.regularizers.L1(0.01, proximal=True)
    ... )

    Reference:
        Tibshirani, [Regression Shrinkage and Selection via the Lasso](
        https://doi.org/10.1111/j.2517-6161.1996.tb02080.x), 1996; Parikh and
        Boyd, [Proximal Algorithms](https://web.stanford.edu/~boyd/papers/prox_algs.html),
        2014.
    """

    def __init__(self, l1: float | None = 0.01, proximal: bool = False):
        self.l1 = _check_factor("l1", l1, 0.01)
        self.proximal = _validation.check_bool("proximal", proximal)

    def _l1_penalty(self, x):
        return ops.multiply(self.l1, ops.sum(ops.abs(x)))

    def __call__(self, x):
        x = _as_float_tensor(x)
        if self.proximal:
            return _value_without_gradient(self, self._l1_penalty, x)
        if _use_torch_fast_path():
            from keras_reg._regularizers_torch import l1_penalty

            return l1_penalty(x, self.l1)
        return self._l1_penalty(x)

    def proximal_step(self, x, learning_rate):
        """Returns `x` after the soft-thresholding step for `learning_rate`."""
        x = ops.convert_to_tensor(x)
        return _soft_threshold(x, _threshold(learning_rate, self.l1, x.dtype))

    def get_config(self) -> dict:
        config = {"l1": self.l1}
        if self.proximal:
            config["proximal"] = True
        return config

    def __repr__(self):
        return f"L1(l1={self.l1!r}, proximal={self.proximal!r})"


@register
class L2(keras.regularizers.Regularizer):
    """L2 weight penalty `l2 * sum(square(x))`.

    A drop-in replacement for `keras.regularizers.L2`: same argument, default
    and config key. `l2=None` means the default 0.01, as in Keras. The factor
    is kept as a Python float.

    Args:
        l2: Non-negative float, the L2 factor. Defaults to 0.01.

    Example:

    >>> import keras, numpy as np, keras_reg
    >>> regularizer = keras_reg.regularizers.L2(l2=0.1)
    >>> round(float(regularizer(np.array([[1.0, -2.0], [0.5, 0.0]]))), 6)
    0.525
    >>> layer = keras.layers.Dense(4, kernel_regularizer=regularizer)

    Reference:
        Hoerl and Kennard, [Ridge Regression: Biased Estimation for
        Nonorthogonal Problems](https://doi.org/10.1080/00401706.1970.10488634),
        1970.
    """

    def __init__(self, l2: float | None = 0.01):
        self.l2 = _check_factor("l2", l2, 0.01)

    def __call__(self, x):
        x = _as_float_tensor(x)
        if _use_torch_fast_path():
            from keras_reg._regularizers_torch import l2_penalty

            return l2_penalty(x, self.l2)
        return ops.multiply(self.l2, ops.sum(ops.square(x)))

    def get_config(self) -> dict:
        return {"l2": self.l2}

    def __repr__(self):
        return f"L2(l2={self.l2!r})"


@register
class ElasticNet(_ProximalMixin, keras.regularizers.Regularizer):
    """Elastic net penalty `l1 * sum(abs(x)) + l2 * sum(square(x))`.

    A drop-in replacement for `keras.regularizers.L1L2` (also exported as
    `keras_reg.regularizers.L1L2`): same arguments, defaults (0.0, so that
    `ElasticNet(l2=0.1)` has no L1 part) and config keys. `None` means 0.0, as
    in Keras. Factors are kept as Python floats.

    With `proximal=True` the L1 part is applied by
    `keras_reg.optimizers.Proximal` as the soft-thresholding step
    `w <- sign(w) * max(|w| - learning_rate * l1, 0)` after each update; the L2
    part stays an ordinary gradient penalty. Both parts appear in the loss.

    Args:
        l1: Non-negative float, the L1 factor. Defaults to 0.0.
        l2: Non-negative float, the L2 factor. Defaults to 0.0.
        proximal: Bool. Whether to apply the L1 part as a proximal step
            (requires `keras_reg.optimizers.Proximal`). Defaults to `False`.
            The config holds the key `"proximal"` only when it is `True`, so a
            non-proximal config is exactly Keras's.

    Example:

    >>> import keras, numpy as np, keras_reg
    >>> regularizer = keras_reg.regularizers.ElasticNet(l1=0.1, l2=0.1)
    >>> round(float(regularizer(np.array([[1.0, -2.0], [0.5, 0.0]]))), 6)
    0.875
    >>> layer = keras.layers.Dense(4, kernel_regularizer=regularizer)

    Reference:
        Zou and Hastie, [Regularization and Variable Selection via the Elastic
        Net](https://doi.org/10.1111/j.1467-9868.2005.00503.x), 2005.
    """

    def __init__(
        self, l1: float | None = 0.0, l2: float | None = 0.0, proximal: bool = False
    ):
        self.l1 = _check_factor("l1", l1, 0.0)
        self.l2 = _check_factor("l2", l2, 0.0)
        self.proximal = _validation.check_bool("proximal", proximal)

    def _l1_penalty(self, x):
        return ops.multiply(self.l1, ops.sum(ops.abs(x)))

    def _l2_penalty(self, x):
        return ops.multiply(self.l2, ops.sum(ops.square(x)))

    def __call__(self, x):
        x = _as_float_tensor(x)
        if _use_torch_fast_path() and not (self.proximal and self.l1 != 0.0):
            from keras_reg._regularizers_torch import (
                elastic_net_penalty,
                l1_penalty,
                l2_penalty,
            )

            if self.l1 != 0.0 and self.l2 != 0.0:
                return elastic_net_penalty(x, self.l1, self.l2)
            if self.l1 != 0.0:
                return l1_penalty(x, self.l1)
            if self.l2 != 0.0:
                return l2_penalty(x, self.l2)
        return self._portable_call(x)

    def _portable_call(self, x):
        terms = []
        if self.l1 != 0.0:
            if self.proximal:
                terms.append(_value_without_gradient(self, self._l1_penalty, x))
            else:
                terms.append(self._l1_penalty(x))
        if self.l2 != 0.0:
            terms.append(self._l2_penalty(x))
        if not terms:
            return ops.zeros((), dtype=x.dtype)
        if len(terms) == 1:
            return terms[0]
        return ops.add(terms[0], terms[1])

    def proximal_step(self, x, learning_rate):
        """Returns `x` after the soft-thresholding step of the L1 part."""
        x = ops.convert_to_tensor(x)
        if self.l1 == 0.0:
            return x
        return _soft_threshold(x, _threshold(learning_rate, self.l1, x.dtype))

    def get_config(self) -> dict:
        config = {"l1": self.l1, "l2": self.l2}
        if self.proximal:
            config["proximal"] = True
        return config

    def __repr__(self):
        return f"ElasticNet(l1={self.l1!r}, l2={self.l2!r}, proximal={self.proximal!r})"


L1L2 = ElasticNet


def _check_axis(axis):
    expected = "an int or a non-empty tuple of distinct ints"
    if isinstance(axis, list):
        axis = tuple(axis)
    if isinstance(axis, tuple):
        if not axis:
            raise _validation.invalid_argument("axis", expected, axis)
        for item in axis:
            if not _validation.is_integral(item):
                raise _validation.invalid_argument("axis", expected, axis)
        axis = tuple(int(item) for item in axis)
        if len(set(axis)) != len(axis):
            raise _validation.invalid_argument("axis", expected, axis)
        return axis
    if not _validation.is_integral(axis):
        raise _validation.invalid_argument("axis", expected, axis)
    return int(axis)


@register
class GroupLasso(_ProximalMixin, keras.regularizers.Regularizer):
    """Group lasso: `factor * sum_g sqrt(|g|) * ||w_g||_2` over weight groups.

    The norm is taken along `axis` (the Keras `MaxNorm`/`UnitNorm`
    convention), so each group is one slice over the remaining axes and `|g|`
    is its number of weights. The penalty drives whole groups to zero together:
    whole units or whole input features instead of single weights.

    - Dense kernel `(input_dim, units)`: `axis=0` (default) groups each unit's
      incoming weights, so whole units switch off; `axis=1` groups each input
      feature's outgoing weights, so whole inputs are dropped.
    - Conv2D kernel `(kh, kw, in_channels, filters)`: `axis=(0, 1, 2)` groups
      whole filters; `axis=(0, 1, 3)` groups whole input channels. Conv1D and
      Conv3D work the same way with one axis fewer or more.

    The sum of norms is not differentiable where a group is zero, so gradient
    descent alone leaves groups small but not zero. With `proximal=True`,
    `keras_reg.optimizers.Proximal` applies block soft-thresholding after each
    update, `w_g <- w_g * max(0, 1 - lr * factor * sqrt(|g|) / ||w_g||)`, and
    whole groups become exactly zero; the penalty value still counts in the
    loss but contributes no gradient.

    Args:
        factor: Non-negative float, the penalty factor. Defaults to 0.01.
        axis: Int or tuple of ints, the axes along which each group's L2 norm
            is taken. Defaults to 0 (Dense: one group per unit).
        proximal: Bool. Whether to apply block soft-thresholding through
            `keras_reg.optimizers.Proximal` instead of the gradient. Defaults
            to `False`.

    Example:

    >>> import keras, numpy as np, keras_reg
    >>> regularizer = keras_reg.regularizers.GroupLasso(factor=0.5, axis=0)
    >>> # Columns have norms 5 and 0, each group holds 4 weights: 0.5 * 2 * 5.
    >>> float(regularizer(np.array([[3.0, 0.0], [4.0, 0.0], [0, 0], [0, 0]])))
    5.0
    >>> dense = keras.layers.Dense(
    ...     8, kernel_regularizer=keras_reg.regularizers.GroupLasso(
    ...         0.01, axis=0, proximal=True))
    >>> conv = keras.layers.Conv2D(
    ...     8, 3, kernel_regularizer=keras_reg.regularizers.GroupLasso(
    ...         0.01, axis=(0, 1, 2)))

    Reference:
        Yuan and Lin, [Model Selection and Estimation in Regression with Grouped
        Variables](https://doi.org/10.1111/j.1467-9868.2005.00532.x), 2006;
        Scardapane et al., [Group Sparse Regularization for Deep Neural
        Networks](https://arxiv.org/abs/1607.00485), 2017.
    """

    def __init__(
        self,
        factor: float = 0.01,
        axis: int | tuple[int, ...] = 0,
        proximal: bool = False,
    ):
        self.factor = _check_factor("factor", factor, 0.01)
        self.axis = _check_axis(axis)
        self.proximal = _validation.check_bool("proximal", proximal)

    def _axes(self, shape):
        rank = len(shape)
        axes = self.axis if isinstance(self.axis, tuple) else (self.axis,)
        if any(not -rank <= axis < rank for axis in axes):
            raise ValueError(
                f"GroupLasso with axis={self.axis!r} cannot group a weight of "
                f"shape {tuple(shape)} (rank {rank})."
            )
        axes = tuple(sorted(axis % rank for axis in axes))
        if len(set(axes)) != len(axes):
            raise ValueError(
                f"GroupLasso with axis={self.axis!r} names the same axis twice "
                f"for a weight of shape {tuple(shape)}."
            )
        group_size = math.prod(shape[axis] for axis in axes)
        return axes, group_size

    def _group_norms(self, x, axes):
        squares = ops.sum(ops.square(x), axis=axes, keepdims=True)
        positive = ops.greater(squares, 0.0)
        # The inner `where` keeps sqrt away from 0, whose derivative is
        # infinite, so an all-zero group gets gradient 0 instead of NaN.
        safe = ops.where(positive, squares, ops.ones_like(squares))
        return ops.where(positive, ops.sqrt(safe), ops.zeros_like(squares))

    def _penalty(self, x):
        axes, group_size = self._axes(x.shape)
        weight = self.factor * math.sqrt(group_size)
        return ops.multiply(weight, ops.sum(self._group_norms(x, axes)))

    def __call__(self, x):
        x = _as_float_tensor(x)
        if self.proximal:
            return _value_without_gradient(self, self._penalty, x)
        return self._penalty(x)

    def proximal_step(self, x, learning_rate):
        """Returns `x` after block soft-thresholding for `learning_rate`."""
        x = ops.convert_to_tensor(x)
        axes, group_size = self._axes(x.shape)
        threshold = _threshold(
            learning_rate, self.factor * math.sqrt(group_size), x.dtype
        )
        norms = self._group_norms(x, axes)
        # An all-zero group divides by a tiny positive number instead of 0, so
        # its shrink factor comes out <= 0 and it stays zero, never NaN.
        tiny = float(keras.backend.epsilon()) ** 4
        shrink = ops.maximum(
            ops.subtract(1.0, ops.divide(threshold, ops.maximum(norms, tiny))), 0.0
        )
        return ops.multiply(x, shrink)

    def get_config(self) -> dict:
        return {"factor": self.factor, "axis": self.axis, "proximal": self.proximal}

    def __repr__(self):
        return (
            f"GroupLasso(factor={self.factor!r}, axis={self.axis!r}, "
            f"proximal={self.proximal!r})"
        )


# Keras's lower-case aliases, and ours.
l1 = L1
l2 = L2
l1_l2 = ElasticNet
elastic_net = ElasticNet
group_lasso = GroupLasso
orthogonal_regularizer = OrthogonalRegularizer

# The names `get` and `deserialize` resolve: Keras's (class names and their
# snake case, "l1l2" included), Keras's documented "l1_l2", and ours.
_OBJECTS = {
    "Regularizer": Regularizer,
    "regularizer": Regularizer,
    "L1": L1,
    "l1": L1,
    "L2": L2,
    "l2": L2,
    "L1L2": ElasticNet,
    "l1l2": ElasticNet,
    "l1_l2": ElasticNet,
    "ElasticNet": ElasticNet,
    "elastic_net": ElasticNet,
    "GroupLasso": GroupLasso,
    "group_lasso": GroupLasso,
    "OrthogonalRegularizer": OrthogonalRegularizer,
    "orthogonal_regularizer": OrthogonalRegularizer,
}


def serialize(regularizer) -> dict:
    """Returns the config dict of `regularizer`, as `keras.regularizers.serialize`.

    Example:

    >>> serialize(L2(0.1))["registered_name"]
    'keras_reg>L2'
    """
    return keras.saving.serialize_keras_object(regularizer)


def deserialize(config, custom_objects=None):
    """Rebuilds a regularizer from `serialize`'s output or a name.

    As `keras.regularizers.deserialize`, with keras_reg's classes behind the
    names: `"l2"`, `{"class_name": "L2", "config": {...}}` and the config
    `keras.regularizers.serialize` writes for Keras's `L2` all give
    `keras_reg.regularizers.L2`. A registered name (`"keras_reg>L2"`, or a
    user's registered class) gives that class.

    Example:

    >>> deserialize({"class_name": "L1", "config": {"l1": 0.5}}).l1
    0.5
    """
    return keras.saving.deserialize_keras_object(
        config, module_objects=_OBJECTS, custom_objects=custom_objects
    )


def get(identifier):
    """Returns a regularizer for `identifier`, as `keras.regularizers.get`.

    None gives None; a dict is deserialized; a name gives that class built
    with its defaults (`"l1"` is `L1(0.01)`); a class is instantiated; any
    other callable is returned unchanged.

    Example:

    >>> get("l2").l2
    0.01
    >>> get(None) is None
    True
    """
    if identifier is None:
        return None
    if isinstance(identifier, dict):
        regularizer = deserialize(identifier)
    elif isinstance(identifier, str):
        regularizer = _OBJECTS.get(identifier)
    else:
        regularizer = identifier
    if not callable(regularizer):
        raise ValueError(f"Could not interpret regularizer identifier: {identifier}")
    if isinstance(regularizer, type):
        return regularizer()
    return regularizer
