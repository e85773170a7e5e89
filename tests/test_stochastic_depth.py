import math

import keras
import numpy as np
import pytest

from keras_reg.layers import StochasticDepth
from tests.helpers import (
    assert_config_round_trip,
    assert_json_round_trip,
    assert_model_save_round_trip,
)
from tests.test_dropout import reference_keep


def _numpy(x):
    return keras.ops.convert_to_numpy(x)


def _residual_model(rate=0.5, seed=1, width=6):
    inputs = keras.Input((width,))
    residual = keras.layers.Dense(width)(inputs)
    outputs = StochasticDepth(rate, seed=seed)([inputs, residual])
    return keras.Model(inputs, keras.layers.Dense(2)(outputs))


def test_layer_battery(tmp_path):
    # The shared helper calls a layer on one tensor; StochasticDepth takes
    # two, so the same checks are spelled out here.
    layer = StochasticDepth(0.3, seed=4)
    assert_config_round_trip(layer)
    assert_json_round_trip(layer)
    shortcut = keras.Input((3, 5))
    residual = keras.Input((3, 5))
    symbolic = StochasticDepth(0.3, seed=4)([shortcut, residual], training=True)
    assert tuple(symbolic.shape) == (None, 3, 5)
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(2, 4, 3, 5)).astype("float32")
    for training in (False, True):
        y = _numpy(layer([a, b], training=training))
        assert y.shape == (4, 3, 5) and np.all(np.isfinite(y))
    assert len(layer.trainable_weights) == len(layer.non_trainable_weights) == 0
    model = _residual_model()
    model.compile(optimizer="sgd", loss="mse")
    x = rng.normal(size=(8, 6)).astype("float32")
    history = model.fit(x, rng.normal(size=(8, 2)), batch_size=4, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert_model_save_round_trip(model, x, tmp_path)


def test_inference_returns_shortcut_plus_residual():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(2, 5, 4)).astype("float32")
    np.testing.assert_array_equal(_numpy(StochasticDepth(0.9)([a, b])), a + b)


def test_residual_dropped_or_scaled_per_sample():
    rate = 0.4
    rng = np.random.default_rng(2)
    shortcut = rng.normal(size=(16, 3, 2)).astype("float32")
    residual = rng.uniform(1, 2, size=(16, 3, 2)).astype("float32")
    y = _numpy(StochasticDepth(rate, seed=6)([shortcut, residual], training=True))
    keep = reference_keep((16, 1, 1), rate, 6, 0)
    assert 0 < keep.sum() < keep.size
    expected = shortcut + np.where(keep, residual * np.float32(1 / (1 - rate)), 0)
    np.testing.assert_array_equal(y, expected)


def test_drop_fraction_close_to_rate():
    rate = 0.2
    n = 20000
    y = _numpy(
        StochasticDepth(rate, seed=3)(
            [np.zeros((n, 2)), np.ones((n, 2))], training=True
        )
    )
    # n Bernoulli(rate) sample draws: the fraction's standard deviation is
    # sqrt(0.16 / 2e4) = 0.0028; six of them plus the 2**-17 quantization.
    assert abs(np.mean(y[:, 0] == 0) - rate) < 6 * math.sqrt(0.16 / n) + 2**-17
    np.testing.assert_array_equal(y[:, 0], y[:, 1])


def test_rate_one_returns_the_shortcut():
    a = np.full((3, 2), 5.0, "float32")
    b = np.full((3, 2), np.inf, "float32")
    y = _numpy(StochasticDepth(1.0)([a, b], training=True))
    np.testing.assert_array_equal(y, a)


@pytest.mark.parametrize("rate", [0.0, 1.0])
def test_rates_that_never_draw_hold_no_seed_state(rate, tmp_path):
    # As Keras's Dropout at rate 0: no generator, so no variable in the model.
    layer = StochasticDepth(rate, seed=3)
    assert layer.variables == [] and not hasattr(layer, "seed_generator")
    model = _residual_model(rate=rate)
    x = np.ones((4, 6), "float32")
    before = _numpy(model(x, training=True))
    restored = assert_model_save_round_trip(model, x, tmp_path)
    np.testing.assert_array_equal(_numpy(restored(x, training=True)), before)


def test_same_seed_same_masks_and_state_survives_save_and_load(tmp_path):
    model = _residual_model(seed=12)
    x = np.random.default_rng(3).normal(size=(32, 6)).astype("float32")
    clone = _residual_model(seed=12)
    clone.set_weights(model.get_weights())
    np.testing.assert_array_equal(
        _numpy(model(x, training=True)), _numpy(clone(x, training=True))
    )
    restored = assert_model_save_round_trip(model, x, tmp_path)
    np.testing.assert_array_equal(
        _numpy(model(x, training=True)), _numpy(restored(x, training=True))
    )


@pytest.mark.parametrize(
    "inputs, shapes",
    [
        ([np.ones((2, 3))], "[(2, 3)]"),
        ([np.ones((2, 3)), np.ones((2, 4))], "[(2, 3), (2, 4)]"),
        ([np.ones((2, 3))] * 3, "[(2, 3), (2, 3), (2, 3)]"),
    ],
)
def test_inputs_other_than_two_equal_shapes_raise(inputs, shapes):
    message = (
        "StochasticDepth expects a list [shortcut, residual] of two tensors of "
        f"the same shape. Received inputs of shape {shapes}"
    )
    tensors = [keras.ops.convert_to_tensor(x) for x in inputs]
    with pytest.raises(ValueError) as info:
        StochasticDepth(0.5).call(tensors, training=True)
    assert str(info.value) == message


def test_single_tensor_input_raises():
    with pytest.raises(ValueError) as info:
        StochasticDepth(0.5).call(keras.ops.ones((2, 3)))
    assert str(info.value) == (
        "StochasticDepth expects a list [shortcut, residual] of two tensors of "
        "the same shape. Received inputs of shape (2, 3)"
    )


def _message(name, expected, value):
    return (
        f"Invalid value received for argument `{name}`. Expected {expected}. "
        f"Received: {name}={value!r}"
    )


@pytest.mark.parametrize("rate", [-0.1, 2, float("inf"), True, "0.1"])
def test_bad_rate_raises(rate):
    with pytest.raises(ValueError) as info:
        StochasticDepth(rate)
    assert str(info.value) == _message("rate", "a float value between 0 and 1", rate)


@pytest.mark.parametrize("seed", [-1, 0.5, False])
def test_bad_seed_raises(seed):
    with pytest.raises(ValueError) as info:
        StochasticDepth(0.1, seed=seed)
    assert str(info.value) == _message("seed", "an int >= 0", seed)


def test_default_rate_and_config():
    layer = StochasticDepth()
    assert layer.rate == 0.1 and layer.seed is None
    config = layer.get_config()
    assert config["rate"] == 0.1 and config["seed"] is None
