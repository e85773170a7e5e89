import json
import math

import keras
import numpy as np
import pytest

import keras_reg
from keras_reg import mc_predict
from keras_reg.layers import (
    DropConnect,
    Dropout,
    SpatialDropout1D,
    StochasticDepth,
)
from tests.helpers import run_python


def _numpy(x):
    return keras.ops.convert_to_numpy(x)


def _bn_classes():
    classes = [keras.layers.BatchNormalization]
    if issubclass(keras_reg.layers.BatchNormalization, keras.layers.Layer):
        classes.append(keras_reg.layers.BatchNormalization)
    return classes


def _package(cls):
    return cls.__module__.split(".")[0]


def _trained_bn_model(bn_cls, rate):
    model = keras.Sequential(
        [
            keras.Input((5,)),
            keras.layers.Dense(8),
            bn_cls(),
            Dropout(rate, seed=1),
            keras.layers.Dense(2),
        ]
    )
    model.compile(optimizer="sgd", loss="mse")
    rng = np.random.default_rng(0)
    model.fit(rng.normal(size=(16, 5)), rng.normal(size=(16, 2)), verbose=0)
    return model


def _x(rows=10, cols=5, seed=1):
    return np.random.default_rng(seed).normal(size=(rows, cols)).astype("float32")


@pytest.mark.parametrize(
    "bn_cls", _bn_classes(), ids=lambda c: c.__module__.split(".")[0]
)
def test_rate_zero_gives_the_deterministic_prediction_and_zero_std(bn_cls):
    model = _trained_bn_model(bn_cls, 0.0)
    x = _x()
    mean, std = mc_predict(model, x, samples=5, batch_size=4, seed=0)
    np.testing.assert_allclose(mean, model.predict(x, verbose=0), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(std, 0)
    assert mean.dtype == std.dtype == np.float32


@pytest.mark.parametrize(
    "bn_cls", _bn_classes(), ids=lambda c: c.__module__.split(".")[0]
)
def test_batch_normalization_statistics_untouched_and_used(bn_cls):
    model = _trained_bn_model(bn_cls, 0.5)
    dense, bn, _, head = model.layers
    before = [_numpy(v).copy() for v in model.variables]
    x = _x(rows=6) * 50 + 20  # batch statistics far from the moving ones
    samples = 200
    mean, std = mc_predict(model, x, samples=samples, seed=3)
    for old, variable in zip(before, model.variables, strict=True):
        np.testing.assert_array_equal(old, _numpy(variable))
    assert np.all(std > 0)
    # Dropout(0.5) feeds a linear head, so the expected output is the
    # dropout-free prediction with BatchNormalization in inference mode. One
    # sample's variance is sum_j w_j^2 h_j^2 (rate / (1 - rate) = 1); the mean
    # of `samples` samples is within six of its standard deviations.
    h = _numpy(bn(dense(x), training=False))
    kernel = _numpy(head.kernel)
    sigma = np.sqrt((h**2) @ (kernel**2) / samples)
    expected = model.predict(x, verbose=0)
    assert np.all(np.abs(mean - expected) < 6 * sigma + 1e-4)
    # Training-mode statistics would normalize h to order 1 instead.
    assert np.abs(h).max() > 20


def test_mean_and_std_are_the_sample_statistics():
    model = keras.Sequential([keras.Input((16,)), Dropout(0.5)])
    samples = 100
    mean, std = mc_predict(model, np.ones((64, 16)), samples=samples, seed=7)
    # Outputs are 0 or 2, so the population variance is mean * (2 - mean).
    np.testing.assert_allclose(std, np.sqrt(mean * (2 - mean)), atol=1e-6)
    # The grand mean averages 64 * 16 * 100 independent draws of variance 1:
    # standard deviation 0.0031; six of them bound it.
    assert abs(mean.mean() - 1) < 6 / math.sqrt(64 * 16 * samples)
    assert set(np.unique(np.round(mean * samples / 2)).astype(int)) <= set(
        range(samples + 1)
    )


def test_same_seed_repeats_and_different_seeds_differ():
    model = keras.Sequential([keras.Input((8,)), Dropout(0.5), keras.layers.Dense(3)])
    x = _x(cols=8)
    first = mc_predict(model, x, samples=6, seed=11)
    again = mc_predict(model, x, samples=6, seed=11)
    other = mc_predict(model, x, samples=6, seed=12)
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[1], other[1])


def test_without_seed_calls_differ_and_follow_set_random_seed():
    model = keras.Sequential([keras.Input((8,)), Dropout(0.5), keras.layers.Dense(3)])
    x = _x(cols=8)
    keras.utils.set_random_seed(5)
    a = mc_predict(model, x, samples=4)[1]
    b = mc_predict(model, x, samples=4)[1]
    keras.utils.set_random_seed(5)
    c = mc_predict(model, x, samples=4)[1]
    assert not np.array_equal(a, b)
    np.testing.assert_array_equal(a, c)


def test_model_seed_state_is_not_advanced():
    layer = Dropout(0.5, seed=4)
    model = keras.Sequential([keras.Input((3,)), layer])
    mc_predict(model, np.ones((4, 3)), samples=3, seed=0)
    assert _numpy(layer.seed_generator.state).tolist() == [4, 0]


@pytest.mark.parametrize(
    "make",
    [
        lambda: keras.Sequential([keras.Input((4, 3)), SpatialDropout1D(0.5)]),
        lambda: keras.Sequential(
            [keras.Input((4,)), DropConnect(keras.layers.Dense(3), 0.5)]
        ),
        lambda: _stochastic_depth_model(),
    ],
    ids=["SpatialDropout1D", "DropConnect", "StochasticDepth"],
)
def test_every_dropout_family_layer_is_active(make):
    model = make()
    x = np.ones((6,) + tuple(model.input_shape[1:]), dtype="float32")
    mean, std = mc_predict(model, x, samples=8, seed=2)
    assert std.max() > 0
    np.testing.assert_array_equal(_numpy(model(x)), _numpy(model(x)))


def _stochastic_depth_model():
    inputs = keras.Input((4,))
    residual = keras.layers.Dense(4)(inputs)
    return keras.Model(inputs, StochasticDepth(0.5)([inputs, residual]))


def test_each_model_call_sees_at_most_batch_size_rows():
    seen = []

    class Spy(keras.layers.Layer):
        def call(self, x):
            seen.append(x.shape[0])
            return x

    model = keras.Sequential([keras.Input((3,)), Spy(), Dropout(0.5)])
    seen.clear()
    mean, _ = mc_predict(model, np.ones((10, 3)), samples=3, batch_size=4, seed=0)
    assert mean.shape == (10, 3)
    assert [rows for rows in seen if rows is not None] == [4] * 6 + [2] * 3


def test_several_inputs_and_outputs_keep_their_structure():
    a, b = keras.Input((3,), name="a"), keras.Input((2,), name="b")
    joined = keras.layers.Concatenate()([a, b])
    outputs = {
        "u": Dropout(0.5)(keras.layers.Dense(2)(joined)),
        "v": keras.layers.Dense(1)(joined),
    }
    model = keras.Model({"a": a, "b": b}, outputs)
    x = {"a": np.ones((5, 3)), "b": np.ones((5, 2))}
    mean, std = mc_predict(model, x, samples=4, seed=1)
    assert set(mean) == set(std) == {"u", "v"}
    assert mean["u"].shape == (5, 2) and mean["v"].shape == (5, 1)
    np.testing.assert_array_equal(std["v"], 0)


def test_keras_dropout_layers_are_refused_by_name():
    model = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dropout(0.5, name="kd"),
            Dropout(0.5),
            keras.layers.GaussianNoise(0.1, name="gn"),
        ]
    )
    with pytest.raises(ValueError) as info:
        mc_predict(model, np.ones((2, 4)))
    assert str(info.value) == (
        "mc_predict runs the model with training=False, where Keras's own "
        "random layers do nothing. Replace them with keras_reg's layers. "
        "Received a model with: kd (Dropout), gn (GaussianNoise)"
    )


def test_nested_keras_dropout_is_found():
    inner = keras.Sequential(
        [keras.Input((2, 2)), keras.layers.SpatialDropout1D(0.5, name="inner_sd")]
    )
    model = keras.Sequential([keras.Input((4,)), keras.layers.Reshape((2, 2)), inner])
    with pytest.raises(ValueError, match=r"inner_sd \(SpatialDropout1D\)"):
        mc_predict(model, np.ones((2, 4)))


def test_model_without_dropout_family_layers_is_refused():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, name="d")])
    with pytest.raises(ValueError) as info:
        mc_predict(model, np.ones((2, 4)))
    assert str(info.value) == (
        "mc_predict needs a model with keras_reg dropout-family layers "
        "(Dropout, SpatialDropout1D/2D/3D, DropBlock2D, StochasticDepth, "
        "DropConnect). "
        f"Received a model with none: {model.name}"
    )


def _message(name, expected, value):
    return (
        f"Invalid value received for argument `{name}`. Expected {expected}. "
        f"Received: {name}={value!r}"
    )


@pytest.mark.parametrize(
    "kwargs, name, expected",
    [
        ({"samples": 0}, "samples", "an int >= 1"),
        ({"samples": True}, "samples", "an int >= 1"),
        ({"samples": 2.5}, "samples", "an int >= 1"),
        ({"batch_size": 0}, "batch_size", "an int >= 1"),
        ({"batch_size": "8"}, "batch_size", "an int >= 1"),
        ({"seed": -1}, "seed", "an int in [0, 2**31)"),
        ({"seed": 1.0}, "seed", "an int in [0, 2**31)"),
        # An int32 on every backend: TensorFlow wrapped larger seeds onto
        # smaller ones, JAX and torch raised their own overflow errors.
        ({"seed": 2**31}, "seed", "an int in [0, 2**31)"),
    ],
)
def test_bad_arguments_raise(kwargs, name, expected):
    model = keras.Sequential([keras.Input((2,)), Dropout(0.5)])
    with pytest.raises(ValueError) as info:
        mc_predict(model, np.ones((2, 2)), **kwargs)
    assert str(info.value) == _message(name, expected, kwargs[name])


def test_non_model_raises():
    with pytest.raises(ValueError) as info:
        mc_predict("model.keras", np.ones((2, 2)))
    assert str(info.value) == _message("model", "a Keras model or layer", "model.keras")


_ALL_LAYERS_SCRIPT = """
import json, sys
import keras
import numpy as np
import keras_reg
from keras_reg import layers as L

def build():
    inputs = keras.Input((4, 6))
    x = L.SpatialDropout1D(0.3, seed=1)(inputs)
    x = keras.layers.Flatten()(x)
    x = L.DropConnect(keras.layers.Dense(8), 0.3, seed=2)(x)
    x = L.Dropout(0.3, seed=3)(x)
    r = keras.layers.Dense(8)(x)
    x = L.StochasticDepth(0.3, seed=4)([x, r])
    return keras.Model(inputs, keras.layers.Dense(2)(x))

keras.utils.set_random_seed(0)
model = build()
x = np.linspace(-1, 1, 5 * 24, dtype="float32").reshape(5, 4, 6)
if len(sys.argv) > 1:
    model.save(sys.argv[1])
    model = keras.saving.load_model(sys.argv[1])
train = [
    keras.ops.convert_to_numpy(model(x, training=True)).round(5).tolist()
    for _ in range(2)
]
mean, std = keras_reg.mc_predict(model, x, samples=3, batch_size=2, seed=9)
print(json.dumps([train, mean.round(5).tolist(), std.round(5).tolist()]))
"""


def test_same_masks_in_fresh_processes_and_after_save_load(tmp_path):
    # One fresh process builds, saves and reloads the model; another builds
    # it without saving. Both draw the same training masks and MC samples.
    path = str(tmp_path / "model.keras")
    results = []
    for argv in ([path], []):
        code = f"import sys; sys.argv = ['x'] + {argv!r}\n" + _ALL_LAYERS_SCRIPT
        result = run_python(code)
        assert result.returncode == 0, result.stderr
        results.append(json.loads(result.stdout.strip().splitlines()[-1]))
    assert results[0] == results[1]
    train = results[0][0]
    assert train[0] != train[1]
    assert np.max(results[0][2]) > 0
