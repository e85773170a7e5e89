"""DropoutFamilyLayer: the base of keras_reg's random layers."""

import os

import keras
import numpy as np
from keras import ops

from keras_reg import _validation, mc_dropout
from keras_reg.layers._masks import drop

_DATA_FORMATS = ("channels_first", "channels_last")


def check_floating(layer, inputs):
    """Raises for inputs that dropping cannot scale (as Keras's TensorFlow
    and JAX dropout do; an integer input would lose the scale silently)."""
    dtype = keras.backend.standardize_dtype(inputs.dtype)
    if not keras.backend.is_float_dtype(dtype):
        raise ValueError(
            f"{type(layer).__name__} needs floating-point inputs in training: "
            f"kept units are scaled by 1 / (1 - rate). Received inputs of dtype {dtype}"
        )


def check_data_format(data_format):
    """Keras's rule: None means the global default, and case is ignored."""
    if data_format is None:
        return keras.config.image_data_format()
    if isinstance(data_format, str) and data_format.lower() in _DATA_FORMATS:
        return data_format.lower()
    raise _validation.invalid_argument(
        "data_format", "one of {'channels_first', 'channels_last'}", data_format
    )


class DropoutFamilyLayer(keras.layers.Layer):
    """Base of keras_reg's random layers: seed state, saving, Monte Carlo mode.

    Its `call` is element-wise dropout with a mask of `_noise_shape(inputs)`,
    which the layers that use it define; the others override `call`.

    The weights layout is Keras's: a dropout layer owns no weights, so
    `.weights.h5` files move between keras_reg's layers and Keras's in both
    directions. The seed generator's state (which Keras's own layers do not
    save) goes to the `.keras` archive's assets instead, so a model reloaded
    from a `.keras` file continues with the masks the original would have
    drawn next.
    """

    _SEED_STATE_KEY = "seed_generator_state"
    _SEED_STATE_FILE = "seed_generator_state.npy"

    def _init_seed(self, seed, draws=True):
        """Stores the validated `seed`, and a generator if the layer `draws`.

        As in Keras, a layer that never drops (rate 0) draws nothing and has
        no generator.
        """
        self.seed = _validation.check_seed("seed", seed)
        if draws:
            self.seed_generator = keras.random.SeedGenerator(self.seed)

    def _mark_built(self):
        """Marks the layer built unless a subclass defines its own `build`.

        Keras's rule for layers without state to create: built at
        construction, except in subclasses whose `build` would then never
        run.
        """
        if type(self).build is keras.layers.Layer.build:
            self.built = True

    def _is_active(self, training):
        context = mc_dropout.mc_context()
        if context is not None:
            context.layers_seen += 1
            return True
        return bool(training)

    def _next_state(self):
        """The seed state `(seed, counter)` of the next mask."""
        context = mc_dropout.mc_context()
        if context is not None:
            return context.next_state()
        return self.seed_generator.next()

    def call(self, inputs, training=False):
        """Element-wise dropout with the mask shape of `_noise_shape`."""
        if not self._is_active(training) or self.rate == 0:
            return inputs
        if self.rate == 1:
            return ops.zeros_like(inputs)
        check_floating(self, inputs)
        return drop(inputs, self._noise_shape(inputs), self.rate, self._next_state())

    def compute_output_shape(self, input_shape):
        return input_shape

    @classmethod
    def from_config(cls, config):
        return cls(**_validation.layer_constructor_kwargs(config))

    def save_assets(self, dir_path):
        generator = getattr(self, "seed_generator", None)
        if generator is not None:
            state = ops.convert_to_numpy(generator.state)
            np.save(os.path.join(dir_path, self._SEED_STATE_FILE), state)

    def load_assets(self, dir_path):
        generator = getattr(self, "seed_generator", None)
        if dir_path is None or generator is None:
            return
        path = os.path.join(dir_path, self._SEED_STATE_FILE)
        if os.path.exists(path):
            generator.state.assign(np.load(path, allow_pickle=False))

    def load_own_variables(self, store):
        # keras_reg 0.1 saved the seed state among the weights; such files
        # still load, with their state.
        own = {key: store[key] for key in store.keys() if key != self._SEED_STATE_KEY}
        super().load_own_variables(own)
        generator = getattr(self, "seed_generator", None)
        if generator is not None and self._SEED_STATE_KEY in store.keys():
            generator.state.assign(store[self._SEED_STATE_KEY])
