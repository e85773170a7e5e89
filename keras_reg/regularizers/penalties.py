"""Drop-in L1, L2 and ElasticNet (L1L2) weight penalties, L1 optionally proximal."""

import keras
from keras import ops

from keras_reg import _validation
from keras_reg._api import register
from keras_reg._backends import fast_path
from keras_reg.regularizers import _common


def _penalty(regularizer, x, l1, l2, proximal=False):
    """`l1 * sum(|x|) + l2 * sum(x**2)`; a `proximal` L1 part has no gradient.

    A term whose factor is None is left out. A zero factor keeps its term, as
    Keras's L1(0) and L2(0) do: a zero gradient rather than none.
    """
    x = _common.as_float_tensor(x)
    fast = fast_path("regularizers")
    if fast is not None and l2 and (not l1 or not proximal):
        return fast.penalty(x, l1 or 0.0, l2)
    terms = []
    if l1 is not None:

        def l1_term(x):
            return ops.multiply(l1, ops.sum(ops.abs(x)))

        if proximal:
            terms.append(_common.value_without_gradient(regularizer, l1_term, x))
        else:
            terms.append(l1_term(x))
    if l2 is not None:
        terms.append(ops.multiply(l2, ops.sum(ops.square(x))))
    if not terms:
        return ops.zeros((), dtype=x.dtype)
    return terms[0] if len(terms) == 1 else ops.add(*terms)


@register
class L1(keras.regularizers.Regularizer):
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
        self.l1 = _common.check_factor("l1", l1, 0.01)
        self.proximal = _validation.check_bool("proximal", proximal)

    def __call__(self, x):
        return _penalty(self, x, self.l1, None, self.proximal)

    def proximal_step(self, x, learning_rate):
        """Returns `x` after the soft-thresholding step for `learning_rate`."""
        return _common.soft_threshold(x, learning_rate, self.l1)

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
        self.l2 = _common.check_factor("l2", l2, 0.01)

    def __call__(self, x):
        return _penalty(self, x, None, self.l2)

    def get_config(self) -> dict:
        return {"l2": self.l2}

    def __repr__(self):
        return f"L2(l2={self.l2!r})"


@register
class ElasticNet(keras.regularizers.Regularizer):
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
        proximal: Bool, as in `L1`: whether the L1 part is a proximal step.
            Defaults to `False`.

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
        self.l1 = _common.check_factor("l1", l1, 0.0)
        self.l2 = _common.check_factor("l2", l2, 0.0)
        self.proximal = _validation.check_bool("proximal", proximal)

    def __call__(self, x):
        # As Keras's L1L2: zero factors add no term.
        return _penalty(self, x, self.l1 or None, self.l2 or None, self.proximal)

    def proximal_step(self, x, learning_rate):
        """Returns `x` after the soft-thresholding step of the L1 part."""
        return _common.soft_threshold(x, learning_rate, self.l1)

    def get_config(self) -> dict:
        config = {"l1": self.l1, "l2": self.l2}
        if self.proximal:
            config["proximal"] = True
        return config

    def __repr__(self):
        return f"ElasticNet(l1={self.l1!r}, l2={self.l2!r}, proximal={self.proximal!r})"


L1L2 = ElasticNet
