"""The base of the optimizers that wrap another: Proximal, SAM, Pruning.

A wrapper delegates its learning rate, loss scaling, state and (unless it
counts its own) iterations to the wrapped `inner_optimizer`, and saves it in
its config. It takes no base optimizer arguments of its own.
"""

from types import SimpleNamespace

import keras

from keras_reg import _validation

EXPECTED = "a keras.optimizers.Optimizer instance or an optimizer name"


def find_wrapped(optimizer, cls):
    """The first `cls` in a chain of wrapped optimizers, or None."""
    while optimizer is not None and not isinstance(optimizer, cls):
        optimizer = getattr(optimizer, "inner_optimizer", None)
    return optimizer


class WrappingOptimizer(keras.optimizers.Optimizer):
    """An optimizer that wraps `optimizer`, named after its class by default.

    Subclasses list in `_NESTED` the config keys holding Keras objects, and
    may refuse some optimizers to wrap in `_refusal`.
    """

    _NESTED = ("optimizer",)

    def __init__(self, optimizer, name=None, **kwargs):
        if isinstance(optimizer, str):
            try:
                optimizer = keras.optimizers.get(optimizer)
            except ValueError:
                pass
        expected = EXPECTED
        if isinstance(optimizer, keras.optimizers.Optimizer):
            expected = self._refusal(optimizer)
            if expected is None and optimizer.gradient_accumulation_steps:
                # Most calls to `apply` would then update nothing.
                expected = "an optimizer without gradient_accumulation_steps"
        if expected is not None:
            raise _validation.invalid_argument("optimizer", expected, optimizer)
        cls = type(self).__name__
        if kwargs:
            raise ValueError(
                f"{cls} takes no base optimizer arguments; set them on the "
                f"wrapped optimizer. Received: {sorted(kwargs)}"
            )
        name = cls.lower() if name is None else _validation.check_str("name", name)
        super().__init__(learning_rate=0.0, name=name)
        self.inner_optimizer = optimizer
        # Keras's optimizers track as their own state every variable held in an
        # attribute, lists and tuples included: the model's variables (and the
        # ones subclasses pair with them) live in this namespace, out of reach.
        self._built_with = SimpleNamespace(variables=())

    def _refusal(self, optimizer):
        """What to expect instead of `optimizer` if it cannot be wrapped.

        By default the wrapper's own class, and a LossScaleOptimizer: it would
        skip an overflowing step that the wrapper's own work still took (Keras
        wraps the wrapper in one itself, outside, under mixed_float16).
        """
        if isinstance(optimizer, type(self) | keras.optimizers.LossScaleOptimizer):
            return (
                f"an optimizer other than {type(self).__name__} and LossScaleOptimizer"
            )
        return None

    def build(self, var_list):
        if not self.inner_optimizer.built:
            self.inner_optimizer.build(var_list)
        super().build(var_list)
        self._built_with.variables = tuple(var_list)

    def _built_variables(self, trainable_variables):
        """Builds on the first call; returns the variables `apply` updates."""
        if trainable_variables is not None:
            trainable_variables = list(trainable_variables)
            if not self.built:
                with keras.name_scope(self.name, caller=self):
                    self.build(trainable_variables)
            return trainable_variables
        if not self.built:
            raise ValueError(
                "When passing `grads` without `trainable_variables`, the "
                "optimizer must already be built. Call "
                "`optimizer.build(trainable_variables)` first."
            )
        return list(self._built_with.variables)

    def scale_loss(self, loss):
        return self.inner_optimizer.scale_loss(loss)

    @property
    def variables(self):
        return super().variables + self.inner_optimizer.variables

    @property
    def learning_rate(self):
        return self.inner_optimizer.learning_rate

    @learning_rate.setter
    def learning_rate(self, learning_rate):
        self.inner_optimizer.learning_rate = learning_rate

    @property
    def iterations(self):
        return self.inner_optimizer.iterations

    def apply_gradients(self, grads_and_vars):
        # Keras's returns its own `_iterations`; a wrapper counts its steps
        # in `iterations`.
        super().apply_gradients(grads_and_vars)
        return self.iterations

    def finalize_variable_values(self, var_list):
        self.inner_optimizer.finalize_variable_values(var_list)

    def get_config(self) -> dict:
        return {
            "name": self.name,
            "optimizer": keras.saving.serialize_keras_object(self.inner_optimizer),
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        for key in cls._NESTED:
            if isinstance(config.get(key), dict):
                config[key] = keras.saving.deserialize_keras_object(
                    config[key], custom_objects=custom_objects
                )
        return cls(**config)
