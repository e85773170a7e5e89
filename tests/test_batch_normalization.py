"""Tests for keras_reg.layers.BatchNormalization: drop-in behaviour, then ghost
batch normalization and synchronized statistics beyond Keras."""

import doctest
import json
import re

import keras
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import keras_reg
from keras_reg.layers import BatchNormalization
from keras_reg.layers import batch_normalization as bn_module
from tests.helpers import (
    assert_config_round_trip,
    assert_json_round_trip,
    assert_model_save_round_trip,
    run_layer_test,
    run_python,
)

BACKEND = keras.backend.backend()


def to_numpy(x):
    return keras.ops.convert_to_numpy(x)


def reference_train(
    x, axis, gamma, beta, moving_mean, moving_variance, momentum, epsilon, mask=None
):
    """NumPy batch norm in training mode, in float64.

    Returns the output and the updated moving mean and variance. The mask, as
    in Keras, covers every input dimension but the last.
    """
    x = x.astype("float64")
    axis = axis % x.ndim
    reduce = tuple(i for i in range(x.ndim) if i != axis)
    if mask is None:
        weights = np.ones_like(x)
    else:
        weights = np.broadcast_to(mask[..., None], x.shape).astype("float64")
    count = np.maximum(weights.sum(axis=reduce, keepdims=True), 1.0)
    mean = (weights * x).sum(axis=reduce, keepdims=True) / count
    variance = (weights * (x - mean) ** 2).sum(axis=reduce, keepdims=True) / count
    shape = [1] * x.ndim
    shape[axis] = -1
    y = (x - mean) / np.sqrt(variance + epsilon)
    y = y * gamma.reshape(shape) + beta.reshape(shape)
    mean, variance = mean.reshape(-1), variance.reshape(-1)
    new_mean = moving_mean * momentum + mean * (1 - momentum)
    new_variance = moving_variance * momentum + variance * (1 - momentum)
    return y, new_mean, new_variance


def random_weights(channels, rng):
    return [
        rng.normal(1.0, 0.3, channels).astype("float32"),
        rng.normal(0.0, 0.5, channels).astype("float32"),
        rng.normal(0.0, 1.0, channels).astype("float32"),
        rng.uniform(0.5, 2.0, channels).astype("float32"),
    ]


SHAPES_AND_AXES = [
    ((6, 3), -1),
    ((6, 3), 1),
    ((4, 5, 3), -1),
    ((4, 5, 3), 1),
    ((3, 4, 5, 2), -1),
    ((3, 4, 5, 2), 1),
    ((3, 4, 5, 2), -3),
    ((2, 3, 4, 2, 3), -1),
    ((2, 3, 4, 2, 3), 2),
]


# Standard layer battery ------------------------------------------------------


@pytest.mark.parametrize(
    "input_shape, axis",
    [((4, 3), -1), ((4, 5, 3), 1), ((2, 4, 4, 3), -1), ((2, 3, 4, 4, 2), 1)],
)
def test_layer_battery_over_ranks_2_to_5(input_shape, axis, tmp_path):
    run_layer_test(
        BatchNormalization,
        {"axis": axis, "momentum": 0.9},
        input_shape,
        tmp_path,
        expected_num_trainable_weights=2,
        expected_num_non_trainable_weights=2,
    )


def test_layer_battery_with_renorm_and_regularizers(tmp_path):
    run_layer_test(
        BatchNormalization,
        {
            "renorm": True,
            "renorm_clipping": {"rmax": 2.0, "rmin": 0.5, "dmax": 1.0},
            "gamma_regularizer": "l2",
            "beta_constraint": "non_neg",
        },
        (4, 3),
        tmp_path,
        expected_num_trainable_weights=2,
        expected_num_non_trainable_weights=5,
    )


def test_layer_battery_without_center_and_scale(tmp_path):
    run_layer_test(
        BatchNormalization,
        {"center": False, "scale": False},
        (4, 2, 3),
        tmp_path,
        expected_num_trainable_weights=0,
        expected_num_non_trainable_weights=2,
    )


def test_docstring_example_runs():
    finder = doctest.DocTestFinder(recurse=False)
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    (test,) = finder.find(BatchNormalization, globs={})
    assert test.examples
    runner.run(test)
    assert runner.failures == 0


# Drop-in compatibility with Keras ---------------------------------------------


def test_config_has_exactly_keras_keys_and_values():
    ours = BatchNormalization(momentum=0.9, epsilon=1e-4, renorm=True).get_config()
    theirs = keras.layers.BatchNormalization(
        momentum=0.9, epsilon=1e-4, renorm=True
    ).get_config()
    ours.pop("name"), theirs.pop("name")
    assert ours == theirs


def test_default_config_loads_into_keras_and_back():
    config = BatchNormalization(axis=1, momentum=0.5).get_config()
    keras_layer = keras.layers.BatchNormalization.from_config(config)
    assert BatchNormalization.from_config(keras_layer.get_config()).get_config() == (
        config
    )


def test_config_is_json_and_attributes_are_python_values():
    layer = BatchNormalization(
        momentum=np.float32(0.5), renorm=True, renorm_clipping={"rmax": 3}
    )
    assert type(layer.momentum) is float and type(layer.epsilon) is float
    assert layer.renorm_clipping == {"rmax": 3.0}
    assert type(layer.renorm_clipping["rmax"]) is float
    json.dumps(layer.get_config())
    assert_config_round_trip(layer)
    assert_json_round_trip(layer)


@pytest.mark.parametrize(
    "input_shape, axis, use_mask",
    [
        ((6, 3), -1, False),
        ((4, 5, 3), 1, True),
        ((3, 4, 5, 2), -1, True),
        ((3, 4, 5, 2), -3, False),
        ((2, 3, 4, 2, 3), 2, True),
    ],
)
def test_matches_keras_with_identical_weights(input_shape, axis, use_mask):
    rng = np.random.default_rng(0)
    x = rng.normal(2.0, 3.0, input_shape).astype("float32")
    mask = rng.random(input_shape[:-1]) < 0.7 if use_mask else None
    if use_mask:
        mask.flat[0] = True
    ours = BatchNormalization(axis=axis, momentum=0.8)
    theirs = keras.layers.BatchNormalization(axis=axis, momentum=0.8)
    ours.build(input_shape)
    theirs.build(input_shape)
    weights = random_weights(input_shape[axis], rng)
    theirs.set_weights(weights)
    ours.set_weights(theirs.get_weights())
    for training in (True, False, True):
        expected = theirs(x, training=training, mask=mask)
        actual = ours(x, training=training, mask=mask)
        np.testing.assert_allclose(to_numpy(actual), to_numpy(expected), atol=2e-5)
    for a, b in zip(ours.get_weights(), theirs.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("clipping", [None, {"rmax": 1.2, "rmin": 0.9, "dmax": 0.1}])
def test_renorm_matches_keras_with_identical_weights(clipping):
    rng = np.random.default_rng(1)
    x = rng.normal(1.0, 2.0, (8, 4, 3)).astype("float32")
    kwargs = {
        "renorm": True,
        "renorm_clipping": clipping,
        "momentum": 0.7,
        "renorm_momentum": 0.6,
    }
    ours = BatchNormalization(**kwargs)
    theirs = keras.layers.BatchNormalization(**kwargs)
    ours.build(x.shape)
    theirs.build(x.shape)
    weights = random_weights(3, rng) + [
        rng.uniform(0.5, 2.0, 3).astype("float32"),
        rng.normal(0.0, 1.0, 3).astype("float32"),
        rng.uniform(0.5, 2.0, 3).astype("float32"),
    ]
    theirs.set_weights(weights)
    ours.set_weights(weights)
    for training in (True, True, False):
        np.testing.assert_allclose(
            to_numpy(ours(x, training=training)),
            to_numpy(theirs(x, training=training)),
            atol=2e-5,
        )
    for a, b in zip(ours.get_weights(), theirs.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_keras_trained_weights_give_identical_predictions():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(32, 4)).astype("float32")
    y = rng.normal(size=(32, 1)).astype("float32")

    def model(bn_class):
        return keras.Sequential(
            [
                keras.Input((4,)),
                keras.layers.Dense(3),
                bn_class(),
                keras.layers.Dense(1),
            ]
        )

    theirs = model(keras.layers.BatchNormalization)
    theirs.compile("sgd", "mse")
    theirs.fit(x, y, epochs=2, batch_size=8, verbose=0)
    ours = model(BatchNormalization)
    ours.set_weights(theirs.get_weights())
    np.testing.assert_allclose(
        ours.predict(x, verbose=0), theirs.predict(x, verbose=0), atol=1e-5
    )


# NumPy reference -------------------------------------------------------------


@pytest.mark.parametrize("input_shape, axis", SHAPES_AND_AXES)
@pytest.mark.parametrize("use_mask", [False, True])
def test_training_output_and_moving_statistics_match_numpy(input_shape, axis, use_mask):
    rng = np.random.default_rng(3)
    x = rng.normal(-1.0, 2.0, input_shape).astype("float32")
    mask = None
    if use_mask:
        mask = rng.random(input_shape[:-1]) < 0.6
        mask.flat[0] = True
    layer = BatchNormalization(axis=axis, momentum=0.75, epsilon=1e-2)
    layer.build(input_shape)
    weights = random_weights(input_shape[axis], rng)
    layer.set_weights(weights)
    y = layer(x, training=True, mask=mask)
    expected, mean, variance = reference_train(
        x, axis, *weights, momentum=0.75, epsilon=1e-2, mask=mask
    )
    np.testing.assert_allclose(to_numpy(y), expected, atol=2e-5)
    np.testing.assert_allclose(to_numpy(layer.moving_mean), mean, atol=1e-5)
    np.testing.assert_allclose(to_numpy(layer.moving_variance), variance, atol=1e-5)


@pytest.mark.parametrize("input_shape, axis", SHAPES_AND_AXES[::2])
def test_inference_uses_moving_statistics(input_shape, axis):
    rng = np.random.default_rng(4)
    x = rng.normal(size=input_shape).astype("float32")
    layer = BatchNormalization(axis=axis)
    layer.build(input_shape)
    gamma, beta, mean, variance = random_weights(input_shape[axis], rng)
    layer.set_weights([gamma, beta, mean, variance])
    shape = [1] * len(input_shape)
    shape[axis] = -1
    expected = (x - mean.reshape(shape)) / np.sqrt(
        variance.reshape(shape) + 1e-3
    ) * gamma.reshape(shape) + beta.reshape(shape)
    np.testing.assert_allclose(to_numpy(layer(x)), expected, atol=1e-5)
    np.testing.assert_allclose(to_numpy(layer(x, training=False)), expected, atol=1e-5)
    np.testing.assert_array_equal(to_numpy(layer.moving_mean), mean)


def test_fully_masked_channel_gives_zero_statistics():
    x = np.full((2, 3, 2), 5.0, "float32")
    mask = np.zeros((2, 3), bool)
    layer = BatchNormalization(momentum=0.5)
    layer(x, training=True, mask=mask)
    np.testing.assert_allclose(to_numpy(layer.moving_mean), [0.0, 0.0])
    np.testing.assert_allclose(to_numpy(layer.moving_variance), [0.5, 0.5])


def test_masked_values_do_not_influence_statistics():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(4, 6, 3)).astype("float32")
    mask = np.ones((4, 6), bool)
    mask[:, 4:] = False
    outputs = []
    for fill in (0.0, 1e4):
        x_filled = x.copy()
        x_filled[:, 4:] = fill
        layer = BatchNormalization()
        y = to_numpy(layer(x_filled, training=True, mask=mask))
        outputs.append(y[:, :4])
    np.testing.assert_allclose(outputs[0], outputs[1], atol=1e-5)


def test_mask_is_consumed_from_keras_masking_layer():
    x = np.ones((2, 4, 3), "float32")
    x[:, 2:] = 0.0
    x[0, 0] = 3.0
    inputs = keras.Input((4, 3))
    masked = keras.layers.Masking(0.0)(inputs)
    outputs = BatchNormalization(momentum=0.0)(masked)
    model = keras.Model(inputs, outputs)
    model(x, training=True)
    layer = model.layers[-1]
    # Kept rows: [3,3,3], then three rows of ones -> mean 1.5, var 0.75.
    np.testing.assert_allclose(to_numpy(layer.moving_mean), [1.5] * 3, atol=1e-6)
    np.testing.assert_allclose(to_numpy(layer.moving_variance), [0.75] * 3, atol=1e-6)


def reference_renorm(x, weights, momentum, renorm_momentum, epsilon, clipping):
    """NumPy batch renormalization step (Ioffe, 2017) on a rank-2 input."""
    gamma, beta, moving_mean, _, moving_stddev, renorm_mean, renorm_stddev = (
        w.astype("float64") for w in weights
    )
    x = x.astype("float64")
    mean, variance = x.mean(axis=0), x.var(axis=0)
    stddev = np.sqrt(variance + epsilon)
    floor = np.maximum(renorm_stddev, np.sqrt(epsilon))
    r = np.clip(
        stddev / floor, clipping.get("rmin", -np.inf), clipping.get("rmax", np.inf)
    )
    d = np.clip(
        (mean - renorm_mean) / floor,
        -clipping.get("dmax", np.inf),
        clipping.get("dmax", np.inf),
    )
    y = ((x - mean) / stddev * r + d) * gamma + beta
    new_stddev = moving_stddev * momentum + stddev * (1 - momentum)
    return y, {
        "moving_mean": moving_mean * momentum + mean * (1 - momentum),
        "moving_variance": np.maximum(new_stddev**2 - epsilon, 0.0),
        "moving_stddev": new_stddev,
        "renorm_mean": renorm_mean * renorm_momentum + mean * (1 - renorm_momentum),
        "renorm_stddev": renorm_stddev * renorm_momentum
        + stddev * (1 - renorm_momentum),
    }


@pytest.mark.parametrize(
    "clipping", [{}, {"rmax": 1.5, "rmin": 0.8}, {"dmax": 0.2}, {"rmax": 1.0}]
)
def test_renorm_step_matches_numpy(clipping):
    rng = np.random.default_rng(6)
    x = rng.normal(2.0, 3.0, (16, 3)).astype("float32")
    layer = BatchNormalization(
        renorm=True, renorm_clipping=clipping, momentum=0.9, renorm_momentum=0.8
    )
    layer.build(x.shape)
    weights = random_weights(3, rng) + [
        rng.uniform(0.5, 2.0, 3).astype("float32"),
        rng.normal(0.0, 1.0, 3).astype("float32"),
        rng.uniform(0.5, 2.0, 3).astype("float32"),
    ]
    layer.set_weights(weights)
    y = layer(x, training=True)
    expected, state = reference_renorm(x, weights, 0.9, 0.8, 1e-3, clipping)
    np.testing.assert_allclose(to_numpy(y), expected, atol=3e-5)
    for name, value in state.items():
        np.testing.assert_allclose(
            to_numpy(getattr(layer, name)), value, atol=1e-5, err_msg=name
        )


def test_renorm_corrections_are_constants_for_gradients():
    # With r and d held constant the gradient of sum(y * g) with respect to
    # beta is sum(g) whatever the correction, as in the paper.
    rng = np.random.default_rng(7)
    x = rng.normal(size=(8, 2)).astype("float32")
    layer = BatchNormalization(renorm=True, momentum=0.0)
    layer.build(x.shape)
    g = rng.normal(size=x.shape).astype("float32")
    grads = _gradients(layer, x, g)
    np.testing.assert_allclose(grads["beta"], g.sum(axis=0), rtol=1e-5)


def _gradients(layer, x, upstream, training=True):
    """Gradients of sum(layer(x, training) * upstream) by weight name."""
    trainable = layer.trainable_variables
    non_trainable = layer.non_trainable_variables
    upstream = keras.ops.convert_to_tensor(upstream)

    def loss_fn(trainable_values, x):
        y, _ = layer.stateless_call(
            trainable_values, non_trainable_values, x, training=training
        )
        return keras.ops.sum(y * upstream)

    non_trainable_values = [v.value for v in non_trainable]
    values = [v.value for v in trainable]
    if BACKEND == "tensorflow":
        import tensorflow as tf

        x_tensor = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(values)
            tape.watch(x_tensor)
            loss = loss_fn(values, x_tensor)
        grads = tape.gradient(loss, values + [x_tensor])
    elif BACKEND == "jax":
        import jax

        grads = jax.grad(loss_fn, argnums=(0, 1))(values, x)
        grads = list(grads[0]) + [grads[1]]
    else:
        import torch

        values = [v.detach().clone().requires_grad_(True) for v in values]
        x_tensor = torch.tensor(x, requires_grad=True)
        loss = loss_fn(values, x_tensor)
        grads = torch.autograd.grad(loss, values + [x_tensor])
    names = [v.path.split("/")[-1] for v in trainable] + ["inputs"]
    return dict(zip(names, [to_numpy(g) for g in grads], strict=True))


# Properties --------------------------------------------------------------------


@settings(max_examples=12, deadline=None)
@given(
    data=st.data(),
    rank=st.integers(2, 4),
    momentum=st.floats(0.0, 1.0),
    epsilon=st.floats(1e-4, 1.0),
)
def test_property_matches_numpy_for_random_shapes_and_axes(
    data, rank, momentum, epsilon
):
    shape = tuple(data.draw(st.lists(st.integers(1, 4), min_size=rank, max_size=rank)))
    axis = data.draw(st.integers(-rank, rank - 1))
    seed = data.draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    x = rng.normal(1.0, 2.0, shape).astype("float32")
    layer = BatchNormalization(axis=axis, momentum=momentum, epsilon=epsilon)
    layer.build(shape)
    weights = random_weights(shape[axis], rng)
    layer.set_weights(weights)
    y = layer(x, training=True)
    expected, mean, variance = reference_train(
        x, axis, *weights, momentum=momentum, epsilon=epsilon
    )
    np.testing.assert_allclose(to_numpy(y), expected, atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(to_numpy(layer.moving_mean), mean, atol=1e-5)
    np.testing.assert_allclose(
        to_numpy(layer.moving_variance), variance, atol=1e-4, rtol=1e-5
    )


@settings(max_examples=10, deadline=None)
@given(rows=st.integers(2, 16), channels=st.integers(1, 4), seed=st.integers(0, 2**16))
def test_property_training_output_is_standardized(rows, channels, seed):
    # With gamma=1, beta=0 each channel's output has mean 0 and variance
    # var / (var + epsilon); epsilon is tiny here, so variance ~ 1 unless a
    # channel is constant (all values equal), where the output is all zero.
    x = np.random.default_rng(seed).normal(size=(rows, channels)) * 10
    x = x.astype("float32")
    y = to_numpy(BatchNormalization(epsilon=1e-6)(x, training=True))
    np.testing.assert_allclose(y.mean(axis=0), 0.0, atol=1e-4)
    expected = x.var(axis=0) / (x.var(axis=0) + 1e-6)
    np.testing.assert_allclose(y.var(axis=0), expected, rtol=1e-3, atol=1e-4)


# trainable=False, shapes, mixed precision ---------------------------------------


def test_non_trainable_layer_runs_in_inference_mode_and_keeps_state():
    rng = np.random.default_rng(8)
    x = rng.normal(3.0, 2.0, (8, 3)).astype("float32")
    layer = BatchNormalization()
    layer.build(x.shape)
    layer.trainable = False
    before = [w.copy() for w in layer.get_weights()]
    np.testing.assert_allclose(
        to_numpy(layer(x, training=True)), to_numpy(layer(x, training=False))
    )
    for a, b in zip(before, layer.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_non_trainable_layer_is_frozen_inside_fit():
    rng = np.random.default_rng(9)
    x = rng.normal(3.0, 2.0, (16, 3)).astype("float32")
    layer = BatchNormalization()
    model = keras.Sequential([keras.Input((3,)), layer, keras.layers.Dense(1)])
    layer.trainable = False
    model.compile("sgd", "mse")
    model.fit(x, x[:, :1], epochs=1, batch_size=8, verbose=0)
    np.testing.assert_array_equal(to_numpy(layer.moving_mean), np.zeros(3))
    np.testing.assert_array_equal(to_numpy(layer.moving_variance), np.ones(3))


def test_fit_updates_moving_statistics_like_keras():
    rng = np.random.default_rng(10)
    x = rng.normal(3.0, 2.0, (16, 3)).astype("float32")
    states = []
    for bn_class in (keras.layers.BatchNormalization, BatchNormalization):
        keras.utils.set_random_seed(0)
        layer = bn_class(momentum=0.5)
        model = keras.Sequential([keras.Input((3,)), layer, keras.layers.Dense(1)])
        model.compile("sgd", "mse")
        model.fit(x, x[:, :1], epochs=2, batch_size=8, shuffle=False, verbose=0)
        states.append(model.get_weights())
    for a, b in zip(*states, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("shape", [(None, 3), (2, 4, 5), (None, 8, 8, 16), [2, 3]])
def test_compute_output_shape_is_input_shape_as_in_keras(shape):
    ours = BatchNormalization().compute_output_shape(shape)
    theirs = keras.layers.BatchNormalization().compute_output_shape(shape)
    assert ours == theirs == shape
    assert type(ours) is type(theirs)


def test_input_rank_that_lacks_axis_raises_naming_the_shape(plain_call_errors):
    layer = BatchNormalization(axis=3)
    message = _message(
        "axis",
        "an int in [-2, 1] for inputs of rank 2 (Axis 3 is out of bounds for "
        "input shape (4, 5))",
        3,
    )
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        layer.build((4, 5))
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        layer.compute_output_shape((4, 5))
    message = _message(
        "axis",
        "an int in [-2, 1] for inputs of rank 2 (Axis -3 is out of bounds for "
        "input shape (4, 5))",
        -3,
    )
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        BatchNormalization(axis=-3)(np.zeros((4, 5), "float32"))


def test_unknown_channel_size_raises_naming_the_shape():
    message = (
        "The normalized axis -1 must have a known size. "
        "Received: input_shape=(None, None)"
    )
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        BatchNormalization().build((None, None))


@pytest.fixture
def plain_call_errors():
    """Keras otherwise wraps errors raised in `call` with argument details."""
    keras.config.disable_traceback_filtering()
    yield
    keras.config.enable_traceback_filtering()


def test_mask_of_wrong_rank_raises(plain_call_errors):
    message = (
        "Invalid value received for argument `mask`. Expected a mask of rank 2 "
        "for inputs of shape (2, 3, 4) (The mask provided should be one "
        "dimension less than the inputs). Received: mask.shape=(2, 3, 4)"
    )
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        BatchNormalization()(
            np.ones((2, 3, 4), "float32"),
            training=True,
            mask=np.ones((2, 3, 4), bool),
        )


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_inputs_use_float32_statistics(dtype):
    # 6e4 is near float16's largest value (65504); its square overflows
    # float16, so finite statistics show that the reduction runs in float32.
    # Under a mixed policy the moving statistics are float32 variables; under
    # a pure float16 policy they are float16, as in Keras.
    x = np.zeros((8, 2), "float32")
    x[:4] = 6e4
    layer = BatchNormalization(momentum=0.0, dtype=f"mixed_{dtype}")
    y = layer(keras.ops.cast(x, dtype), training=True)
    assert keras.backend.standardize_dtype(y.dtype) == dtype
    assert keras.backend.standardize_dtype(layer.moving_mean.dtype) == "float32"
    np.testing.assert_allclose(to_numpy(layer.moving_mean), [3e4, 3e4], rtol=1e-2)
    np.testing.assert_allclose(to_numpy(layer.moving_variance), [9e8, 9e8], rtol=1e-2)
    y = to_numpy(keras.ops.cast(y, "float32"))
    np.testing.assert_allclose(y[:4], 1.0, atol=1e-2)
    np.testing.assert_allclose(y[4:], -1.0, atol=1e-2)


def test_mixed_float16_policy_matches_keras():
    rng = np.random.default_rng(11)
    x = rng.normal(5.0, 3.0, (8, 4, 3)).astype("float32")
    outputs = []
    for bn_class in (keras.layers.BatchNormalization, BatchNormalization):
        layer = bn_class(dtype="mixed_float16", momentum=0.5)
        y = layer(x, training=True)
        assert keras.backend.standardize_dtype(y.dtype) == "float16"
        assert keras.backend.standardize_dtype(layer.gamma.dtype) == "float32"
        outputs.append((to_numpy(y), layer.get_weights()))
    np.testing.assert_allclose(outputs[0][0], outputs[1][0], atol=2e-3)
    for a, b in zip(outputs[0][1], outputs[1][1], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-3)


@pytest.mark.skipif(BACKEND == "jax", reason="JAX disables float64 by default")
def test_float64_layer_keeps_float64():
    x = np.random.default_rng(12).normal(size=(5, 2))
    layer = BatchNormalization(dtype="float64", momentum=0.0)
    y = layer(keras.ops.convert_to_tensor(x, "float64"), training=True)
    assert keras.backend.standardize_dtype(y.dtype) == "float64"
    # Statistics computed in float32 would be off by ~1e-8 relative or more.
    np.testing.assert_allclose(
        to_numpy(layer.moving_variance), x.var(axis=0), rtol=1e-12
    )


def test_model_with_layer_saves_and_reloads(tmp_path):
    rng = np.random.default_rng(13)
    x = rng.normal(size=(8, 4, 3)).astype("float32")
    model = keras.Sequential(
        [keras.Input((4, 3)), BatchNormalization(axis=1, renorm=True)]
    )
    model(x, training=True)
    restored = assert_model_save_round_trip(model, x, tmp_path)
    assert isinstance(restored.layers[0], BatchNormalization)


# Bad input ---------------------------------------------------------------------


def _message(name, expected, value):
    return (
        f"Invalid value received for argument `{name}`. Expected {expected}. "
        f"Received: {name}={value!r}"
    )


CLIPPING_DICT = 'None or a dict with only the keys "rmax", "rmin", "dmax"'
CLIPPING_BOUNDS = "float bounds that are not NaN (infinity means no bound)"
CLIPPING_R = "the correction r is clipped to [rmin, rmax]"

# Every case here is accepted by keras.layers.BatchNormalization (3.15.1);
# `test_keras_accepts_what_keras_reg_deliberately_rejects` checks that, and
# each is a deliberate difference: the value silently corrupts training or
# is a type confusion (see the comments).
BAD_ARGUMENTS = [
    # int() truncates 1.5 to 1 and turns True into 1: a wrong axis, silently.
    ("axis", 1.5, "an int"),
    ("axis", 1.0, "an int"),
    ("axis", "1", "an int"),
    ("axis", True, "an int"),
    # Outside [0, 1] the moving statistics diverge; NaN makes them NaN; True
    # (1.0) freezes them, a misplaced flag rather than a momentum.
    ("momentum", 1.5, "a float in [0, 1]"),
    ("momentum", -0.1, "a float in [0, 1]"),
    ("momentum", float("nan"), "a float in [0, 1]"),
    ("momentum", True, "a float in [0, 1]"),
    ("momentum", "0.9", "a float in [0, 1]"),
    # epsilon <= 0 divides by zero on a constant channel; inf zeroes outputs.
    ("epsilon", 0.0, "a float > 0"),
    ("epsilon", -1e-3, "a float > 0"),
    ("epsilon", float("nan"), "a float > 0"),
    ("epsilon", float("inf"), "a float > 0"),
    # Keras tests truth: "False" and 2 would enable, None would disable.
    ("center", 2, "a bool, 0 or 1"),
    ("scale", "False", "a bool, 0 or 1"),
    ("renorm", None, "a bool, 0 or 1"),
    ("renorm_momentum", 2.0, "a float in [0, 1]"),
    ("renorm_momentum", float("nan"), "a float in [0, 1]"),
    ("renorm_clipping", {"dmax": float("nan")}, CLIPPING_BOUNDS),
    ("renorm_clipping", {"rmax": True}, CLIPPING_BOUNDS),
    ("renorm_clipping", {"rmax": "3"}, CLIPPING_BOUNDS),
    ("renorm_clipping", {"rmax": 0.0}, f"rmax > 0 ({CLIPPING_R})"),
    ("renorm_clipping", {"rmax": -1.0, "rmin": -2.0}, f"rmax > 0 ({CLIPPING_R})"),
    ("renorm_clipping", {"rmin": float("inf")}, f"rmin < inf ({CLIPPING_R})"),
]

# Keras rejects these too, with a TypeError or an error of its own.
BAD_ARGUMENTS_KERAS_REJECTS = [
    ("axis", (1, 2), "an int"),
    ("axis", [1], "an int"),
    ("renorm_clipping", [("rmax", 2.0)], CLIPPING_DICT),
    ("renorm_clipping", 3.0, CLIPPING_DICT),
    ("virtual_batch_size", 0, "an int >= 1"),
    ("virtual_batch_size", 2.0, "an int >= 1"),
    ("virtual_batch_size", True, "an int >= 1"),
]


def _bad_kwargs(name, value):
    kwargs = {name: value}
    if name == "renorm_clipping":
        kwargs["renorm"] = True
    return kwargs


def test_every_bad_argument_raises_with_whole_message():
    # One test over all cases: each test pays the session-reset fixture.
    for name, value, expected in BAD_ARGUMENTS + BAD_ARGUMENTS_KERAS_REJECTS:
        message = _message(name, expected, value)
        with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
            BatchNormalization(**_bad_kwargs(name, value))


def test_keras_accepts_what_keras_reg_deliberately_rejects():
    # Keeps the list of deliberate differences true for this Keras version.
    for name, value, _ in BAD_ARGUMENTS:
        keras.layers.BatchNormalization(**_bad_kwargs(name, value))


def test_bad_argument_in_config_raises_from_config():
    config = BatchNormalization().get_config()
    config["momentum"] = 7.0
    message = _message("momentum", "a float in [0, 1]", 7.0)
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        BatchNormalization.from_config(config)


def test_edited_keras_file_with_bad_argument_fails_to_load(tmp_path):
    import zipfile

    model = keras.Sequential([keras.Input((3,)), BatchNormalization()])
    path = tmp_path / "model.keras"
    model.save(path)
    edited = tmp_path / "edited.keras"
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(edited, "w") as target:
        for item in source.infolist():
            data = source.read(item.filename)
            if item.filename == "config.json":
                config = json.loads(data)
                layer_config = config["config"]["layers"][-1]["config"]
                layer_config["epsilon"] = -1.0
                data = json.dumps(config).encode()
            target.writestr(item, data)
    message = _message("epsilon", "a float > 0", -1.0)
    with pytest.raises(ValueError, match=re.escape(message)):
        keras.saving.load_model(edited, safe_mode=True)


# Keras's error messages ----------------------------------------------------------
#
# Where Keras validates an argument, the regular expressions of Keras's own test
# file and the distinctive sentence of Keras's message match keras_reg's message
# too, which keeps the template's head and "Received: name=value" tail.

_HEAD = re.compile(r"^Invalid value received for argument `[a-z_]+`\. Expected ")


def _error(build):
    with pytest.raises(ValueError) as info:
        build()
    return str(info.value)


def _assert_same_phrases(theirs, ours, patterns, tail):
    for pattern in patterns:
        assert re.search(pattern, theirs), (pattern, theirs)
        assert re.search(pattern, ours), (pattern, ours)
    assert _HEAD.match(ours), ours
    assert ours.endswith(tail), ours


CONSTRUCTOR_ERRORS = [
    (
        {"renorm": True, "renorm_clipping": {"random_key": 1.0}},
        # Keras's test regex, then its message's distinctive sentence.
        [
            "Received invalid keys",
            r"Received invalid keys for `renorm_clipping` argument: .*random_key",
        ],
        "Received: renorm_clipping={'random_key': 1.0}",
    ),
    (
        {"renorm": True, "renorm_clipping": {"rmax": 0.0, "rmin": 1.0}},
        [
            "rmax should be",
            "rmax should be greater than rmin in the `renorm_clipping` argument",
        ],
        "Received: renorm_clipping={'rmax': 0.0, 'rmin': 1.0}",
    ),
    (
        {"renorm": True, "renorm_clipping": {"rmax": 1.0, "dmax": -1.0}},
        [
            "dmax should be non-negative",
            "dmax should be non-negative in the `renorm_clipping` argument",
        ],
        "Received: renorm_clipping={'rmax': 1.0, 'dmax': -1.0}",
    ),
]


@pytest.mark.parametrize("kwargs, patterns, tail", CONSTRUCTOR_ERRORS)
def test_constructor_errors_carry_keras_phrases(kwargs, patterns, tail):
    theirs = _error(lambda: keras.layers.BatchNormalization(**kwargs))
    ours = _error(lambda: BatchNormalization(**kwargs))
    _assert_same_phrases(theirs, ours, patterns, tail)


@pytest.mark.skipif(BACKEND != "torch", reason="synchronized is supported here")
@pytest.mark.parametrize("value", [True, 1])
def test_synchronized_on_torch_carries_keras_phrase(value):
    theirs = _error(lambda: keras.layers.BatchNormalization(synchronized=value))
    ours = _error(lambda: BatchNormalization(synchronized=value))
    # Keras's sentence ends "with the TensorFlow backend."; keras_reg's names
    # JAX as well, where it supports the argument.
    pattern = "Argument synchronized=True is only supported with the TensorFlow"
    _assert_same_phrases(theirs, ours, [pattern], f"Received: synchronized={value}")
    expected = (
        "False on the torch backend (Argument synchronized=True is only supported "
        "with the TensorFlow or JAX backend)"
    )
    assert ours == _message("synchronized", expected, value)


@pytest.mark.skipif(BACKEND != "jax", reason="JAX only")
def test_synchronized_is_accepted_on_jax_where_keras_raises():
    with pytest.raises(ValueError, match="only supported with the TensorFlow"):
        keras.layers.BatchNormalization(synchronized=True)
    assert BatchNormalization(synchronized=True).synchronized is True


def test_axis_out_of_bounds_carries_keras_phrase(plain_call_errors):
    # Keras's build fails with a bare IndexError ("tuple index out of
    # range"); its compute_output_shape has the message. keras_reg raises
    # the one message from build, compute_output_shape and a call.
    theirs = _error(
        lambda: keras.layers.BatchNormalization(axis=3).compute_output_shape((4, 5))
    )
    pattern = r"Axis 3 is out of bounds for input shape \(4, 5\)"
    for build in (
        lambda: BatchNormalization(axis=3).build((4, 5)),
        lambda: BatchNormalization(axis=3).compute_output_shape((4, 5)),
        lambda: BatchNormalization(axis=3)(np.zeros((4, 5), "float32")),
    ):
        ours = _error(build)
        _assert_same_phrases(theirs, ours, [pattern], "Received: axis=3")
    # Keras's message ends with the same tail.
    assert theirs.endswith("Received: axis=3")


@pytest.mark.parametrize("filtering", [False, True])
def test_mask_rank_error_carries_keras_phrase(filtering):
    x = np.ones((2, 3, 4), "float32")
    mask = np.ones((2, 3, 4), bool)
    if not filtering:
        keras.config.disable_traceback_filtering()
    try:
        theirs = _error(
            lambda: keras.layers.BatchNormalization()(x, training=True, mask=mask)
        )
        ours = _error(lambda: BatchNormalization()(x, training=True, mask=mask))
    finally:
        keras.config.enable_traceback_filtering()
    pattern = "The mask provided should be one dimension less than the inputs"
    if filtering:
        # Keras wraps errors raised in `call` the same way for both layers.
        assert re.search(pattern, theirs) and re.search(pattern, ours)
        assert "Received: mask.shape=(2, 3, 4)" in ours
    else:
        _assert_same_phrases(theirs, ours, [pattern], "Received: mask.shape=(2, 3, 4)")


# Arguments Keras accepts -----------------------------------------------------------

ACCEPTED_LIKE_KERAS = [
    {"center": 1, "scale": 0},
    {"center": 0, "scale": np.bool_(True)},
    {"renorm": 1},
    {"synchronized": 0},
    {"synchronized": False, "renorm": np.bool_(False)},
    {"momentum": 1, "epsilon": 1},
    {"momentum": 0, "renorm_momentum": 1, "renorm": True},
    {"momentum": np.float32(0.5), "epsilon": np.float64(1e-4)},
    {"axis": np.int64(1)},
    {"axis": -2},
    {"renorm": True, "renorm_clipping": {"rmax": 3, "rmin": 0, "dmax": 5}},
    {"renorm": True, "renorm_clipping": {"rmax": float("inf"), "dmax": float("inf")}},
    {"renorm": True, "renorm_clipping": {"rmin": float("-inf")}},
    {"renorm": True, "renorm_clipping": {}},
    {"renorm": True, "renorm_clipping": {"rmax": 2.0, "rmin": 2.0, "dmax": 0.0}},
    # Without renorm Keras neither reads nor checks renorm_clipping.
    {"renorm_clipping": {"random_key": 1.0}},
    {"renorm_clipping": {"rmax": 0.0, "rmin": 1.0}},
]


@pytest.mark.parametrize("kwargs", ACCEPTED_LIKE_KERAS, ids=repr)
def test_accepts_what_keras_accepts_with_equal_config(kwargs):
    theirs = keras.layers.BatchNormalization(**kwargs).get_config()
    layer = BatchNormalization(**kwargs)
    ours = layer.get_config()
    ours.pop("name"), theirs.pop("name")
    assert ours == theirs
    assert list(ours) == list(theirs)
    # Plain Python values, whatever was passed.
    for name in ("center", "scale", "renorm", "synchronized"):
        assert type(getattr(layer, name)) is bool
    for name in ("momentum", "epsilon", "renorm_momentum"):
        assert type(getattr(layer, name)) is float
    assert type(layer.axis) is int
    assert_config_round_trip(layer)


@pytest.mark.skipif(BACKEND != "tensorflow", reason="Keras raises elsewhere")
def test_synchronized_one_is_accepted_as_in_keras():
    assert BatchNormalization(synchronized=1).synchronized is True
    assert keras.layers.BatchNormalization(synchronized=1).synchronized == 1


def test_infinite_clipping_bounds_save_and_train(tmp_path):
    clipping = {"rmax": float("inf"), "rmin": 0.0, "dmax": float("inf")}
    layer = BatchNormalization(renorm=True, renorm_clipping=clipping)
    assert_json_round_trip(layer)
    x = np.random.default_rng(15).normal(size=(8, 3)).astype("float32")
    model = keras.Sequential([keras.Input((3,)), layer])
    y = to_numpy(model(x, training=True))
    assert np.all(np.isfinite(y))
    restored = assert_model_save_round_trip(model, x, tmp_path)
    assert restored.layers[0].renorm_clipping == clipping


# Keras's class as the oracle ------------------------------------------------------

ORACLE_KWARGS = [
    {},
    {"axis": 1, "momentum": 0.5, "epsilon": 1e-2},
    {"center": False},
    {"scale": False},
    {"center": False, "scale": False},
    {"renorm": True},
    {
        "renorm": True,
        "renorm_clipping": {"rmax": 1.5, "rmin": 0.7, "dmax": 0.3},
        "renorm_momentum": 0.8,
        "momentum": 0.6,
        "moving_variance_initializer": keras.initializers.Constant(4.0),
    },
    {
        "beta_initializer": "random_normal",
        "gamma_initializer": keras.initializers.Constant(2.0),
        "moving_mean_initializer": "ones",
        "beta_regularizer": "l2",
        "gamma_regularizer": keras.regularizers.L1(0.1),
        "beta_constraint": "non_neg",
        "gamma_constraint": keras.constraints.MaxNorm(2.0),
    },
]

_ATTRIBUTES = [
    "axis",
    "momentum",
    "epsilon",
    "center",
    "scale",
    "renorm",
    "renorm_clipping",
    "renorm_momentum",
    "synchronized",
    "supports_masking",
    "trainable",
    "input_spec",
    "gamma",
    "beta",
    "moving_mean",
    "moving_variance",
]
_SERIALIZED_ATTRIBUTES = [
    ("beta_initializer", keras.initializers.serialize),
    ("gamma_initializer", keras.initializers.serialize),
    ("moving_mean_initializer", keras.initializers.serialize),
    ("moving_variance_initializer", keras.initializers.serialize),
    ("beta_regularizer", keras.regularizers.serialize),
    ("gamma_regularizer", keras.regularizers.serialize),
    ("beta_constraint", keras.constraints.serialize),
    ("gamma_constraint", keras.constraints.serialize),
]


def _pair(kwargs):
    return BatchNormalization(**kwargs), keras.layers.BatchNormalization(**kwargs)


def _public_names(layer):
    return {name for name in dir(layer) if not name.startswith("_")}


@pytest.mark.parametrize("kwargs", ORACLE_KWARGS, ids=repr)
def test_public_attributes_equal_keras_before_and_after_build(kwargs):
    ours, theirs = _pair(kwargs)
    assert _public_names(ours) - _public_names(theirs) == {"virtual_batch_size"}
    assert _public_names(theirs) <= _public_names(ours)
    for name in _ATTRIBUTES:
        assert getattr(ours, name) == getattr(theirs, name), name
    for name, serialize in _SERIALIZED_ATTRIBUTES:
        assert serialize(getattr(ours, name)) == serialize(getattr(theirs, name))
    ours.build((4, 5, 3))
    theirs.build((4, 5, 3))
    assert _public_names(ours) - _public_names(theirs) == {"virtual_batch_size"}
    assert _public_names(theirs) <= _public_names(ours)
    assert vars(ours.input_spec) == vars(theirs.input_spec)
    assert ours.supports_masking is theirs.supports_masking is True
    for name in ("gamma", "beta", "moving_stddev", "renorm_mean", "renorm_stddev"):
        assert (getattr(ours, name, None) is None) == (
            getattr(theirs, name, None) is None
        ), name


@pytest.mark.parametrize("kwargs", ORACLE_KWARGS, ids=repr)
def test_config_equals_keras_config_and_loads_both_ways(kwargs):
    ours, theirs = _pair(kwargs)
    our_config, their_config = ours.get_config(), theirs.get_config()
    our_config.pop("name"), their_config.pop("name")
    assert our_config == their_config
    assert list(our_config) == list(their_config)
    full = theirs.get_config()
    assert BatchNormalization.from_config(full).get_config() == full
    full = ours.get_config()
    assert keras.layers.BatchNormalization.from_config(full).get_config() == full


@pytest.mark.parametrize("kwargs", ORACLE_KWARGS, ids=repr)
def test_weights_equal_keras_in_names_shapes_order_split_and_values(kwargs):
    for trainable in (True, False):
        ours, theirs = _pair(kwargs)
        ours.build((2, 5, 3))
        theirs.build((2, 5, 3))
        ours.trainable = trainable
        theirs.trainable = trainable
        for attribute in ("weights", "trainable_weights", "non_trainable_weights"):
            pairs = list(
                zip(getattr(ours, attribute), getattr(theirs, attribute), strict=True)
            )
            for a, b in pairs:
                assert a.path.split("/")[-1] == b.path.split("/")[-1]
                assert tuple(a.shape) == tuple(b.shape)
                assert a.dtype == b.dtype
                assert a.trainable == b.trainable
                assert a.constraint == b.constraint or (
                    keras.constraints.serialize(a.constraint)
                    == keras.constraints.serialize(b.constraint)
                )
        # Random initializers draw their own values: compare deterministic
        # ones only.
        if "beta_initializer" not in kwargs:
            for a, b in zip(ours.get_weights(), theirs.get_weights(), strict=True):
                np.testing.assert_allclose(a, b, rtol=1e-6)
        assert len(ours.losses) == len(theirs.losses)


def _oracle_weights(theirs, rng):
    weights = []
    for variable in theirs.weights:
        name = variable.path.split("/")[-1]
        shape = tuple(variable.shape)
        if "variance" in name or "stddev" in name:
            weights.append(rng.uniform(0.5, 2.0, shape).astype("float32"))
        elif name == "gamma":
            weights.append(rng.normal(1.0, 0.3, shape).astype("float32"))
        else:
            weights.append(rng.normal(0.0, 0.5, shape).astype("float32"))
    return weights


@pytest.mark.parametrize("kwargs", ORACLE_KWARGS, ids=repr)
@pytest.mark.parametrize("use_mask", [False, True])
def test_keras_weights_give_keras_outputs_in_training_and_inference(kwargs, use_mask):
    rng = np.random.default_rng(16)
    shape = (6, 5, 3)
    x = rng.normal(1.0, 2.0, shape).astype("float32")
    mask = None
    if use_mask:
        mask = rng.random(shape[:-1]) < 0.7
        mask[0] = True
    ours, theirs = _pair(kwargs)
    theirs.build(shape)
    ours.build(shape)
    theirs.set_weights(_oracle_weights(theirs, rng))
    ours.set_weights(theirs.get_weights())
    for training in (True, False, True, None):
        expected = theirs(x, training=training, mask=mask)
        actual = ours(x, training=training, mask=mask)
        np.testing.assert_allclose(to_numpy(actual), to_numpy(expected), atol=3e-5)
    for a, b in zip(ours.get_weights(), theirs.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kwargs", [{}, {"renorm": True}, {"axis": 1}], ids=repr)
def test_frozen_layer_behaves_like_frozen_keras_layer(kwargs):
    # Keras's test_trainable_behavior: trainable=False means inference mode
    # even with training=True, no state update, and every weight
    # non-trainable; trainable=True restores the split.
    rng = np.random.default_rng(17)
    x = rng.normal(5.0, 10.0, (20, 4, 3)).astype("float32")
    ours, theirs = _pair(kwargs)
    theirs.build(x.shape)
    ours.build(x.shape)
    theirs.set_weights(_oracle_weights(theirs, rng))
    ours.set_weights(theirs.get_weights())
    before = ours.get_weights()
    for layer in (ours, theirs):
        layer.trainable = False
    assert len(ours.trainable_weights) == len(theirs.trainable_weights) == 0
    assert len(ours.non_trainable_weights) == len(theirs.non_trainable_weights)
    np.testing.assert_allclose(
        to_numpy(ours(x, training=True)), to_numpy(theirs(x, training=True)), atol=3e-5
    )
    for a, b in zip(before, ours.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    for layer in (ours, theirs):
        layer.trainable = True
    assert len(ours.trainable_weights) == len(theirs.trainable_weights)
    assert len(ours.non_trainable_weights) == len(theirs.non_trainable_weights)
    np.testing.assert_allclose(
        to_numpy(ours(x, training=True)), to_numpy(theirs(x, training=True)), atol=3e-5
    )
    for a, b in zip(ours.get_weights(), theirs.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_frozen_layer_in_fit_matches_keras():
    rng = np.random.default_rng(18)
    x = rng.normal(3.0, 2.0, (16, 3)).astype("float32")
    states = []
    for bn_class in (keras.layers.BatchNormalization, BatchNormalization):
        keras.utils.set_random_seed(0)
        layer = bn_class(momentum=0.5)
        model = keras.Sequential([keras.Input((3,)), layer, keras.layers.Dense(1)])
        layer.trainable = False
        model.compile("sgd", "mse")
        model.fit(x, x[:, :1], epochs=2, batch_size=8, shuffle=False, verbose=0)
        states.append(model.get_weights())
    for a, b in zip(*states, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_weights_file_moves_between_keras_and_keras_reg_models(tmp_path):
    rng = np.random.default_rng(19)
    x = rng.normal(size=(16, 4)).astype("float32")

    def model(bn_class):
        return keras.Sequential(
            [
                keras.Input((4,)),
                keras.layers.Dense(3),
                bn_class(renorm=True),
                keras.layers.Dense(1),
            ]
        )

    theirs = model(keras.layers.BatchNormalization)
    theirs.compile("sgd", "mse")
    theirs.fit(x, x[:, :1], epochs=1, batch_size=8, verbose=0)
    theirs.save_weights(tmp_path / "keras.weights.h5")
    ours = model(BatchNormalization)
    ours.load_weights(tmp_path / "keras.weights.h5")
    np.testing.assert_allclose(
        ours.predict(x, verbose=0), theirs.predict(x, verbose=0), atol=1e-5
    )
    ours.save_weights(tmp_path / "ours.weights.h5")
    back = model(keras.layers.BatchNormalization)
    back.load_weights(tmp_path / "ours.weights.h5")
    for a, b in zip(back.get_weights(), theirs.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_mask_passes_through_as_in_keras():
    x = np.ones((2, 4, 3), "float32")
    mask = np.array([[True, True, False, False], [True, False, True, False]])
    our_mask = BatchNormalization().compute_mask(x, mask)
    their_mask = keras.layers.BatchNormalization().compute_mask(x, mask)
    np.testing.assert_array_equal(to_numpy(our_mask), to_numpy(their_mask))
    np.testing.assert_array_equal(to_numpy(our_mask), mask)


# is_batch_normalization ------------------------------------------------------------


class _KerasSubclass(keras.layers.BatchNormalization):
    pass


class _OurSubclass(BatchNormalization):
    pass


@pytest.mark.parametrize(
    "layer, expected",
    [
        (keras.layers.BatchNormalization(), True),
        (BatchNormalization(), True),
        (_KerasSubclass(), True),
        (_OurSubclass(), True),
        (keras.layers.LayerNormalization(), False),
        (keras.layers.GroupNormalization(groups=1), False),
        (keras.layers.Dense(2), False),
        (keras_reg.layers.Dropout(0.5), False),
        (BatchNormalization, False),
        (None, False),
    ],
    ids=lambda value: type(value).__name__,
)
def test_is_batch_normalization(layer, expected):
    assert keras_reg.layers.is_batch_normalization(layer) is expected
    assert keras_reg.is_batch_normalization is keras_reg.layers.is_batch_normalization


def test_is_batch_normalization_covers_a_public_sync_batch_normalization(monkeypatch):
    class SyncBatchNormalization(keras.layers.Layer):
        pass

    monkeypatch.setattr(
        keras.layers, "SyncBatchNormalization", SyncBatchNormalization, raising=False
    )
    assert keras_reg.is_batch_normalization(SyncBatchNormalization())


def test_is_batch_normalization_docstring_example_runs():
    finder = doctest.DocTestFinder(recurse=False)
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    (test,) = finder.find(keras_reg.layers.is_batch_normalization, globs={})
    assert test.examples
    runner.run(test)
    assert runner.failures == 0


def test_fine_tuning_idiom_keeps_both_batch_normalizations_frozen():
    # The keras-io idiom with isinstance unfreezes keras_reg's layer; with
    # is_batch_normalization both stay frozen and in inference mode.
    rng = np.random.default_rng(20)
    x = rng.normal(4.0, 2.0, (16, 4)).astype("float32")
    base = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(4),
            BatchNormalization(),
            keras.layers.Dense(4),
            keras.layers.BatchNormalization(),
        ]
    )
    model = keras.Sequential([base, keras.layers.Dense(1)])
    for layer in base.layers:
        layer.trainable = False
    unfrozen_by_isinstance = [
        layer.name
        for layer in base.layers
        if not isinstance(layer, keras.layers.BatchNormalization)
    ]
    assert base.layers[1].name in unfrozen_by_isinstance
    for layer in base.layers:
        if not keras_reg.is_batch_normalization(layer):
            layer.trainable = True
    assert [layer.trainable for layer in base.layers] == [True, False, True, False]
    statistics = [w.copy() for w in base.layers[1].get_weights()]
    statistics += [w.copy() for w in base.layers[3].get_weights()]
    model.compile("sgd", "mse")
    model.fit(x, x[:, :1], epochs=1, batch_size=8, verbose=0)
    after = base.layers[1].get_weights() + base.layers[3].get_weights()
    for a, b in zip(statistics, after, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.skipif(BACKEND not in ("tensorflow", "jax"), reason="raises there")
def test_synchronized_on_one_device_equals_unsynchronized():
    rng = np.random.default_rng(14)
    x = rng.normal(2.0, 3.0, (8, 3)).astype("float32")
    results = []
    for synchronized in (False, True):
        layer = BatchNormalization(synchronized=synchronized, momentum=0.5)
        results.append((to_numpy(layer(x, training=True)), layer.get_weights()))
    np.testing.assert_allclose(results[0][0], results[1][0], atol=1e-6)
    for a, b in zip(results[0][1], results[1][1], strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_registered_under_package_name():
    assert (
        keras.saving.get_registered_name(BatchNormalization)
        == "keras_reg>BatchNormalization"
    )
    assert keras_reg.BatchNormalization is BatchNormalization
    assert bn_module.BatchNormalization is BatchNormalization


# Ghost batch normalization ---------------------------------------------------


def reference_ghost(
    x,
    size,
    axis,
    gamma,
    beta,
    moving_mean,
    moving_variance,
    momentum,
    epsilon,
    mask=None,
):
    """Ghost batch norm in NumPy, with tf-keras's grouping.

    Virtual batch j holds rows j, j + n, j + 2n, ... (n = batch // size); the
    moving statistics move toward the virtual batches' average statistics.
    """
    n = x.shape[0] // size
    y = np.empty(x.shape, "float64")
    means, variances = [], []
    for j in range(n):
        rows = slice(j, None, n)
        sub_mask = None if mask is None else mask[rows]
        out, mean, variance = reference_train(
            x[rows],
            axis,
            gamma,
            beta,
            np.zeros_like(gamma),
            np.zeros_like(gamma),
            0.0,
            epsilon,
            sub_mask,
        )
        y[rows] = out
        means.append(mean)
        variances.append(variance)
    new_mean = moving_mean * momentum + np.mean(means, axis=0) * (1 - momentum)
    new_variance = moving_variance * momentum + np.mean(variances, axis=0) * (
        1 - momentum
    )
    return y, new_mean, new_variance


@pytest.mark.parametrize(
    "shape, axis, size, use_mask",
    [
        ((8, 3), -1, 2, False),
        ((12, 3), -1, 4, False),
        ((6, 4, 3), -1, 3, True),
        ((8, 3, 4), 1, 2, False),
        ((4, 3, 3, 2), -1, 2, True),
        ((6, 2), -1, 6, False),
    ],
)
def test_ghost_batch_norm_matches_numpy(shape, axis, size, use_mask):
    rng = np.random.default_rng(23)
    x = rng.normal(1.0, 2.0, shape).astype("float32")
    # Shift half of the rows so that virtual batches differ from the batch.
    x[: shape[0] // 2] += 3.0
    mask = None
    if use_mask:
        mask = rng.random(shape[:-1]) < 0.7
        mask[:, 0] = True
    layer = BatchNormalization(axis=axis, momentum=0.7, virtual_batch_size=size)
    layer.build(shape)
    weights = random_weights(shape[axis], rng)
    layer.set_weights(weights)
    y = layer(x, training=True, mask=mask)
    expected, mean, variance = reference_ghost(
        x, size, axis, *weights, momentum=0.7, epsilon=1e-3, mask=mask
    )
    np.testing.assert_allclose(to_numpy(y), expected, atol=3e-5)
    np.testing.assert_allclose(to_numpy(layer.moving_mean), mean, atol=1e-5)
    np.testing.assert_allclose(to_numpy(layer.moving_variance), variance, atol=1e-5)


def test_ghost_batch_norm_inference_is_unchanged():
    rng = np.random.default_rng(24)
    x = rng.normal(size=(6, 3)).astype("float32")
    weights = random_weights(3, rng)
    outputs = []
    for size in (None, 2):
        layer = BatchNormalization(virtual_batch_size=size)
        layer.build(x.shape)
        layer.set_weights(weights)
        outputs.append(to_numpy(layer(x, training=False)))
    np.testing.assert_array_equal(outputs[0], outputs[1])


def test_ghost_batch_with_whole_batch_equals_plain_batch_norm():
    rng = np.random.default_rng(25)
    x = rng.normal(size=(8, 4, 3)).astype("float32")
    results = []
    for size in (None, 8):
        layer = BatchNormalization(virtual_batch_size=size, momentum=0.5)
        results.append((to_numpy(layer(x, training=True)), layer.get_weights()))
    np.testing.assert_allclose(results[0][0], results[1][0], atol=1e-5)
    for a, b in zip(results[0][1], results[1][1], strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_ghost_batch_not_a_multiple_raises(plain_call_errors):
    message = (
        "The batch size must be a multiple of virtual_batch_size=4. "
        "Received: inputs.shape=(6, 3)"
    )
    layer = BatchNormalization(virtual_batch_size=4)
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        layer(np.zeros((6, 3), "float32"), training=True)
    # Inference does not split the batch.
    layer(np.zeros((6, 3), "float32"), training=False)


@pytest.mark.skipif(BACKEND != "tensorflow", reason="TensorFlow graphs only")
def test_ghost_batch_not_a_multiple_raises_at_run_time_in_graphs():
    import tensorflow as tf

    layer = BatchNormalization(virtual_batch_size=4)
    layer.build((None, 3))
    step = tf.function(
        lambda x: layer(x, training=True),
        input_signature=[tf.TensorSpec((None, 3), tf.float32)],
    )
    step(np.zeros((8, 3), "float32"))
    message = "The batch size must be a multiple of virtual_batch_size=4."
    with pytest.raises(tf.errors.InvalidArgumentError, match=re.escape(message)):
        step(np.zeros((6, 3), "float32"))


@pytest.mark.parametrize(
    "kwargs, condition",
    [
        (
            {"renorm": True},
            "when renorm=True (ghost batch normalization does not combine with renorm)",
        ),
        ({"axis": 0}, "when axis=0 (virtual batches split the batch axis)"),
    ],
)
def test_ghost_batch_rejects_arguments_it_does_not_combine_with(kwargs, condition):
    message = (
        f"Invalid value received for argument `virtual_batch_size`. Expected "
        f"None {condition}. Received: virtual_batch_size=2"
    )
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        BatchNormalization(virtual_batch_size=2, **kwargs)


@pytest.mark.skipif(BACKEND == "torch", reason="synchronized raises on torch")
def test_ghost_batch_rejects_synchronized():
    message = (
        "Invalid value received for argument `virtual_batch_size`. Expected "
        "None when synchronized=True (ghost batch normalization does not "
        "combine with synchronized). Received: virtual_batch_size=2"
    )
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        BatchNormalization(virtual_batch_size=2, synchronized=True)


def test_ghost_batch_config_round_trips_and_stays_keras_compatible(tmp_path):
    assert "virtual_batch_size" not in BatchNormalization().get_config()
    layer = BatchNormalization(virtual_batch_size=4)
    assert layer.get_config()["virtual_batch_size"] == 4
    assert assert_config_round_trip(layer).virtual_batch_size == 4
    run_layer_test(
        BatchNormalization,
        {"virtual_batch_size": 2},
        (4, 3, 2),
        tmp_path,
        expected_num_trainable_weights=2,
        expected_num_non_trainable_weights=2,
    )


# Synchronized statistics across devices ------------------------------------------

_GLOBAL_BATCH = """
import json
import numpy as np
rng = np.random.default_rng(0)
# The two device halves differ in mean, so the average of per-device
# variances (about 2.5) is far from the global variance (about 9).
x = np.concatenate(
    [rng.normal(0, 1, (8, 3)), rng.normal(5, 2, (8, 3))]
).astype("float32")
"""


def _fit_and_report(setup):
    return (
        _GLOBAL_BATCH
        + setup
        + """
import keras
import keras_reg
results = {}
for synchronized in (True, False):
    with scope():
        layer = keras_reg.layers.BatchNormalization(
            synchronized=synchronized, momentum=0.0
        )
        model = keras.Sequential([keras.Input((3,)), layer])
        model.compile("sgd", "mse")
    model.fit(x, np.zeros_like(x), batch_size=16, epochs=1, shuffle=False,
              verbose=0)
    results[str(synchronized)] = [
        np.asarray(layer.moving_mean).tolist(),
        np.asarray(layer.moving_variance).tolist(),
    ]
print(json.dumps(results))
"""
    )


def _global_statistics():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 1, (8, 3)), rng.normal(5, 2, (8, 3))]).astype(
        "float32"
    )
    return x.mean(axis=0), x.var(axis=0)


# These run their own backend in a subprocess, whatever the session's backend;
# once is enough, in the default (TensorFlow) session.
once = pytest.mark.skipif(
    BACKEND != "tensorflow", reason="subprocess test, run in the TensorFlow session"
)


@once
def test_synchronized_on_jax_uses_global_batch_of_two_devices():
    setup = """
import contextlib
import jax
import keras
assert len(jax.devices()) == 2, jax.devices()
keras.distribution.set_distribution(
    keras.distribution.DataParallel(devices=jax.devices())
)
scope = contextlib.nullcontext
"""
    result = run_python(
        _fit_and_report(setup),
        env={
            "KERAS_BACKEND": "jax",
            "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
        },
    )
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads(result.stdout.strip().splitlines()[-1])
    mean, variance = _global_statistics()
    # keras.distribution runs one program over the global batch, so the
    # statistics are global with or without the flag.
    for synchronized in ("True", "False"):
        np.testing.assert_allclose(results[synchronized][0], mean, rtol=1e-5)
        np.testing.assert_allclose(results[synchronized][1], variance, rtol=1e-5)


@once
def test_synchronized_on_tensorflow_all_reduces_across_two_replicas():
    setup = """
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration()] * 2
)
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
scope = strategy.scope
"""
    result = run_python(_fit_and_report(setup), env={"KERAS_BACKEND": "tensorflow"})
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads(result.stdout.strip().splitlines()[-1])
    mean, variance = _global_statistics()
    np.testing.assert_allclose(results["True"][0], mean, rtol=1e-5)
    np.testing.assert_allclose(results["True"][1], variance, rtol=1e-5)
    # Unsynchronized replicas each see 8 rows: local statistics, as Keras.
    assert not np.allclose(results["False"][1], variance, rtol=0.1)
