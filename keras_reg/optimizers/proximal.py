"""Proximal: wraps any Keras optimizer and applies proximal regularizers.

A proximal regularizer's gradient raises unless a Proximal vouches for it
(`vouched_for`); docs/regularizers.md ("How a missing wrapper is caught")
says when one does. Claims are weak references and never part of a config.
"""

import weakref

from keras import ops

from keras_reg._api import register
from keras_reg.optimizers._wrapper import WrappingOptimizer

# The state behind `vouched_for`: which Proximal optimizers claimed each
# proximal regularizer, which ones `fit` drives, which ones are within a step.
_CLAIMS = weakref.WeakKeyDictionary()
_DRIVEN_BY_FIT = weakref.WeakSet()
_IN_STEP = weakref.WeakSet()


def vouched_for(regularizer) -> bool:
    """Whether a `Proximal` optimizer will apply `regularizer`'s proximal step."""
    # One not yet built vouches within the step it drives (TensorFlow's `fit`
    # builds it in its first `apply`).
    if any(not optimizer.built for optimizer in _IN_STEP):
        return True
    return any(
        optimizer in _IN_STEP or optimizer not in _DRIVEN_BY_FIT
        for optimizer in _CLAIMS.get(regularizer, ())
    )


def forget_unfinished_steps(regularizer):
    """Called as a proximal regularizer computes its value, in a step's
    forward pass, before the step's `scale_loss`: a mark still held then by
    an optimizer that claimed it, or by one not built, was left by a step
    that raised before its `apply`, and vouches for nothing."""
    claims = _CLAIMS.get(regularizer, ())
    for optimizer in list(_IN_STEP):
        if not optimizer.built or optimizer in claims:
            _IN_STEP.discard(optimizer)


def _proximal_regularizer(variable):
    regularizer = getattr(variable, "regularizer", None)
    proximal = getattr(regularizer, "proximal", False)
    return regularizer if proximal and hasattr(regularizer, "proximal_step") else None


@register
class Proximal(WrappingOptimizer):
    """Wraps an optimizer and applies the proximal step of proximal regularizers.

    After each update of the wrapped optimizer, inside the compiled train
    step, `Proximal` applies `regularizer.proximal_step(w, learning_rate)` to
    every trainable variable whose regularizer was built with `proximal=True`
    (`keras_reg.regularizers.L1`, `ElasticNet`, `GroupLasso`): for L1,
    soft-thresholding `w <- sign(w) * max(|w| - learning_rate * l1, 0)`,
    which sets weights exactly to zero. It uses the current step's learning
    rate, the base one for adaptive optimizers (Adam, RMSprop).

    Training a model with proximal regularizers by any other optimizer raises
    a `ValueError` at the first step, a model recompiled with a plain
    optimizer included. In a custom training loop, and in `fit` under
    `mixed_float16` on TensorFlow without a distribution strategy, call
    `optimizer.build(model.trainable_variables)` before the first gradient.
    The learning rate, iterations and loss scaling are the wrapped
    optimizer's; the state of both saves into `.keras` files.

    Args:
        optimizer: A `keras.optimizers.Optimizer` instance or a name such as
            `"sgd"` or `"adam"`. Gradient accumulation
            (`gradient_accumulation_steps`) is not supported.
        name: String. The name of this optimizer. Defaults to `"proximal"`.

    Example:

    >>> import keras, numpy as np, keras_reg
    >>> model = keras.Sequential([
    ...     keras.Input((10,)),
    ...     keras.layers.Dense(
    ...         1, kernel_regularizer=keras_reg.regularizers.L1(0.05, proximal=True)
    ...     ),
    ... ])
    >>> model.compile(
    ...     optimizer=keras_reg.optimizers.Proximal(keras.optimizers.SGD(0.1)),
    ...     loss="mse",
    ... )
    >>> x = np.random.default_rng(0).normal(size=(64, 10))
    >>> _ = model.fit(x, x[:, :1], epochs=30, verbose=0)
    >>> kernel = model.layers[0].kernel.numpy()
    >>> bool((kernel[1:] == 0).all())  # the nine irrelevant inputs are exactly 0
    True

    Reference:
        Parikh and Boyd, [Proximal Algorithms](
        https://web.stanford.edu/~boyd/papers/prox_algs.html), 2014; Duchi and
        Singer, [Efficient Online and Batch Learning Using Forward Backward
        Splitting](https://jmlr.org/papers/v10/duchi09a.html), 2009.
    """

    def build(self, var_list):
        # A failed build leaves its mark unbuilt: the next forward pass of a
        # proximal regularizer clears it (`forget_unfinished_steps`).
        super().build(var_list)
        if self not in _IN_STEP:
            # Built by hand, as in a custom loop: the claims are standing.
            _DRIVEN_BY_FIT.discard(self)
        for variable in var_list:
            regularizer = _proximal_regularizer(variable)
            if regularizer is not None:
                _CLAIMS.setdefault(regularizer, weakref.WeakSet()).add(self)

    def scale_loss(self, loss):
        _DRIVEN_BY_FIT.add(self)
        _IN_STEP.add(self)
        return super().scale_loss(loss)

    def apply(self, grads, trainable_variables=None):
        variables = self._built_variables(trainable_variables)
        # The step that is about to run uses the learning rate at the current
        # iteration; the inner update increments the iteration counter.
        learning_rate = ops.convert_to_tensor(self.inner_optimizer.learning_rate)
        self.inner_optimizer.apply(grads, variables)
        for variable in variables:
            regularizer = _proximal_regularizer(variable)
            if regularizer is not None:
                self.assign(
                    variable, regularizer.proximal_step(variable, learning_rate)
                )
        _IN_STEP.discard(self)

    def finalize_variable_values(self, var_list):
        _IN_STEP.discard(self)
        super().finalize_variable_values(var_list)
