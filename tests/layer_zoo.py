"""One small model per public keras_reg layer, for cross-cutting tests.

`test_every_public_layer_has_a_zoo_entry` keeps this table complete: a new
public layer without an entry here fails the suite.
"""

import keras
import numpy as np

import keras_reg


def _sequential(input_shape, *layers):
    return keras.Sequential([keras.Input(shape=input_shape), *layers])


def _flat_head():
    return [keras.layers.Flatten(), keras.layers.Dense(2)]


def _stochastic_depth_model():
    inputs = keras.Input(shape=(6,))
    residual = keras.layers.Dense(6)(inputs)
    x = keras_reg.layers.StochasticDepth(0.5, seed=1)([inputs, residual])
    return keras.Model(inputs, keras.layers.Dense(2)(x))


def _builders():
    layers = keras_reg.layers
    regs = keras_reg.regularizers
    dense_regs = {
        "kernel_regularizer": regs.ElasticNet(l1=1e-4, l2=1e-4),
        "bias_regularizer": regs.L2(1e-4),
    }
    builders = {
        "BatchNormalization": lambda: (
            _sequential((4, 4, 3), layers.BatchNormalization(), *_flat_head()),
            (4, 4, 3),
        ),
        "Dropout": lambda: (
            _sequential(
                (6,),
                keras.layers.Dense(6, **dense_regs),
                layers.Dropout(0.5, seed=1),
                keras.layers.Dense(2, kernel_regularizer=regs.L1(1e-4)),
            ),
            (6,),
        ),
        "SpatialDropout1D": lambda: (
            _sequential((5, 3), layers.SpatialDropout1D(0.5, seed=1), *_flat_head()),
            (5, 3),
        ),
        "SpatialDropout2D": lambda: (
            _sequential((4, 4, 3), layers.SpatialDropout2D(0.5, seed=1), *_flat_head()),
            (4, 4, 3),
        ),
        "DropBlock2D": lambda: (
            _sequential(
                (6, 6, 3), layers.DropBlock2D(0.2, block_size=3, seed=1), *_flat_head()
            ),
            (6, 6, 3),
        ),
        "SpatialDropout3D": lambda: (
            _sequential(
                (2, 3, 3, 2), layers.SpatialDropout3D(0.5, seed=1), *_flat_head()
            ),
            (2, 3, 3, 2),
        ),
        "StochasticDepth": lambda: (_stochastic_depth_model(), (6,)),
        "DropConnect": lambda: (
            _sequential(
                (6,),
                layers.DropConnect(keras.layers.Dense(4, **dense_regs), 0.5, seed=1),
                keras.layers.Dense(2),
            ),
            (6,),
        ),
    }
    return builders


def zoo_names():
    return sorted(name for name in _builders() if hasattr(keras_reg.layers, name))


def build(name):
    """Returns (model, input_shape) for the public layer `name`."""
    return _builders()[name]()


def fit_briefly(model, input_shape, *, epochs=1, **compile_kwargs):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, *input_shape)).astype("float32")
    y = rng.normal(size=(16, 2)).astype("float32")
    model.compile(optimizer="adam", loss="mse", **compile_kwargs)
    return model.fit(x, y, batch_size=8, epochs=epochs, verbose=0), x
