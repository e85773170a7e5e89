"""GroupLasso: a penalty that drives whole groups of weights to zero together."""

import math

import keras
from keras import ops

from keras_reg import _validation
from keras_reg._api import register
from keras_reg.regularizers import _common


def _check_axis(axis):
    expected = "an int or a non-empty tuple of distinct ints"
    if not isinstance(axis, (list, tuple)):
        return _validation.check_int("axis", axis, expected=expected)
    axis = tuple(axis)
    if not axis or not all(_validation.is_integral(item) for item in axis):
        raise _validation.invalid_argument("axis", expected, axis)
    axis = tuple(int(item) for item in axis)
    if len(set(axis)) != len(axis):
        raise _validation.invalid_argument("axis", expected, axis)
    return axis


@register
class GroupLasso(keras.regularizers.Regularizer):
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
        self.factor = _common.check_factor("factor", factor, 0.01)
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
        x = _common.as_float_tensor(x)
        if self.proximal:
            return _common.value_without_gradient(self, self._penalty, x)
        return self._penalty(x)

    def proximal_step(self, x, learning_rate):
        """Returns `x` after block soft-thresholding for `learning_rate`."""
        x = ops.convert_to_tensor(x)
        axes, group_size = self._axes(x.shape)
        threshold = _common.threshold(
            learning_rate, self.factor * math.sqrt(group_size), x.dtype
        )
        norms = self._group_norms(x, axes)
        # An all-zero group gets a finite factor (divide_no_nan: 1) and stays
        # zero, never NaN, in every dtype and at a zero threshold too.
        shrink = ops.maximum(
            ops.subtract(1.0, ops.divide_no_nan(threshold, norms)), 0.0
        )
        return ops.multiply(x, shrink)

    def get_config(self) -> dict:
        return {"factor": self.factor, "axis": self.axis, "proximal": self.proximal}

    def __repr__(self):
        return (
            f"GroupLasso(factor={self.factor!r}, axis={self.axis!r}, "
            f"proximal={self.proximal!r})"
        )
