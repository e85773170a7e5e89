"""Every keras_reg layer trains under Keras's mixed-precision policies."""

import keras
import numpy as np
import pytest
from layer_zoo import build, fit_briefly, zoo_names

import keras_reg


@pytest.fixture(params=["mixed_float16", "mixed_bfloat16"])
def policy(request):
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(request.param)
    yield request.param
    keras.config.set_dtype_policy(previous)


def test_every_public_layer_has_a_zoo_entry():
    # `is_batch_normalization` is a function, not a layer.
    layers = {
        name
        for name in keras_reg.layers.__all__
        if isinstance(getattr(keras_reg.layers, name), type)
    }
    assert set(zoo_names()) == layers


@pytest.mark.parametrize("name", zoo_names())
def test_layer_trains_with_finite_float32_losses(policy, name):
    model, input_shape = build(name)
    history, x = fit_briefly(model, input_shape)
    assert np.isfinite(history.history["loss"][0])
    for loss in model.losses:
        assert keras.backend.standardize_dtype(loss.dtype) == "float32"
        assert np.isfinite(keras.ops.convert_to_numpy(loss))
    assert np.all(np.isfinite(model.predict(x, verbose=0)))


def test_batch_normalization_keeps_float32_statistics(policy):
    model, input_shape = build("BatchNormalization")
    fit_briefly(model, input_shape)
    layer = next(
        layer
        for layer in model.layers
        if isinstance(layer, keras_reg.layers.BatchNormalization)
    )
    compute_dtype = "float16" if policy == "mixed_float16" else "bfloat16"
    assert layer.compute_dtype == compute_dtype
    for variable in (layer.moving_mean, layer.moving_variance, layer.gamma):
        assert variable.dtype == "float32"
        assert np.all(np.isfinite(keras.ops.convert_to_numpy(variable)))


def test_dropout_keeps_the_input_dtype(policy):
    layer = keras_reg.layers.Dropout(0.5, seed=0)
    x = keras.ops.ones((4, 8), dtype=layer.compute_dtype)
    y = layer(x, training=True)
    assert keras.backend.standardize_dtype(y.dtype) == layer.compute_dtype


@pytest.mark.parametrize(
    "regularizer",
    [
        keras_reg.regularizers.L1(0.01),
        keras_reg.regularizers.L2(0.01),
        keras_reg.regularizers.ElasticNet(l1=0.01, l2=0.01),
    ],
    ids=lambda r: type(r).__name__,
)
def test_penalties_are_float32_and_finite(policy, regularizer):
    layer = keras.layers.Dense(8, kernel_regularizer=regularizer)
    layer.build((None, 8))
    # A kernel near float16's largest value: the penalty must not overflow.
    layer.kernel.assign(np.full((8, 8), 6e4, dtype="float32"))
    (penalty,) = layer.losses
    assert keras.backend.standardize_dtype(penalty.dtype) == "float32"
    assert np.isfinite(keras.ops.convert_to_numpy(penalty))
