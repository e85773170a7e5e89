"""DropoutFamilyLayer: the base of keras_reg's random layers."""

import os

import keras
import numpy as np
from keras import ops

from keras_reg import _validation, mc_dropout


class DropoutFamilyLayer(keras.layers.Layer):
    """Base of keras_reg's random layers: seed state, saving, Monte Carlo mode.

    The weights layout is Keras's: a dropout layer owns no weights, so
    `.weights.h5` files move between keras_reg's layers and Keras's in both
    directions. The seed generator's state (which Keras's own layers do not
    save) goes to the `.keras` archive's assets instead, so a model reloaded
    from a `.keras` file continues with the masks the original would have
    drawn next.
    """

    _SEED_STATE_KEY = "seed_generator_state"
    _SEED_STATE_FILE = "seed_generator_state.npy"

    def _init_seed(self, seed):
        self.seed_generator = keras.random.SeedGenerator(seed)

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
