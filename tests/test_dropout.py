import math
import os
import re

import keras
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keras_reg.layers import Dropout, SpatialDropout1D, _masks
from tests.helpers import (
    assert_build_rule_like_keras,
    assert_config_round_trip,
    assert_model_save_round_trip,
    assert_same_public_state,
    assert_weights_files_interchangeable,
    raised_message,
    run_layer_test,
)

BACKEND = keras.backend.backend()


def _fmix32(h):
    h = np.asarray(h, dtype=np.uint32)
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))


def reference_keep(shape, rate, seed, counter):
    """NumPy re-implementation of the documented mask algorithm."""
    threshold = round(rate * 65536)
    # The fewest of 1, 2, 4, 8, 16 bits per draw that represent the
    # threshold exactly.
    bits = next(b for b in (1, 2, 4, 8, 16) if threshold % 2 ** (16 - b) == 0)
    n = int(np.prod(shape))
    per_word = 32 // bits
    with np.errstate(over="ignore"):
        k1 = _fmix32(np.uint32(seed) ^ np.uint32(0x5BD1E995))
        k2 = _fmix32(np.uint32(counter) ^ np.uint32(0x27D4EB2F))
        words = np.arange(1, -(-n // per_word) + 1, dtype=np.uint64)
        words = (words * 0x9E3779B9 % 2**32).astype(np.uint32)
        h = _fmix32(_fmix32(words ^ k1) ^ k2).astype(np.uint64)
    # Element i * per_word + m is bits [m * bits, (m + 1) * bits) of word i.
    draws = [(h >> (m * bits)) % 2**bits for m in range(per_word)]
    draws = np.stack(draws, axis=-1).reshape(-1)[:n]
    return (draws * 2 ** (16 - bits) >= threshold).reshape(shape)


def _numpy(x):
    return keras.ops.convert_to_numpy(x)


def _ones(shape):
    return np.ones(shape, dtype="float32")


@pytest.mark.parametrize(
    "init_kwargs, input_shape",
    [
        ({"rate": 0.3}, (2, 3)),
        ({"rate": 0.5, "noise_shape": (None, 1, None), "seed": 7}, (2, 4, 3)),
        ({"rate": 0.0}, (3, 2)),
        ({"rate": 1.0, "seed": 1}, (2, 2, 2, 2)),
    ],
)
def test_layer_battery(init_kwargs, input_shape, tmp_path):
    run_layer_test(
        Dropout,
        init_kwargs,
        input_shape,
        tmp_path,
        expected_num_trainable_weights=0,
        expected_num_non_trainable_weights=0,
    )


def test_config_keys_and_attributes_match_keras_dropout():
    ours = Dropout(0.25, noise_shape=[None, 1], seed=3, name="d")
    theirs = keras.layers.Dropout(0.25, noise_shape=[None, 1], seed=3, name="d")
    assert set(ours.get_config()) == set(theirs.get_config())
    for attribute in ("rate", "noise_shape", "seed", "supports_masking"):
        assert getattr(ours, attribute) == getattr(theirs, attribute)
    assert isinstance(ours.rate, float)
    assert ours.noise_shape == (None, 1)
    assert len(ours.variables) == 1  # the seed generator state


def test_swapping_keras_dropout_changes_no_prediction():
    x = np.random.default_rng(0).normal(size=(8, 5)).astype("float32")

    def model(dropout_cls):
        keras.utils.set_random_seed(5)
        return keras.Sequential(
            [keras.Input((5,)), dropout_cls(0.4), keras.layers.Dense(3)]
        )

    np.testing.assert_array_equal(
        model(Dropout).predict(x, verbose=0),
        model(keras.layers.Dropout).predict(x, verbose=0),
    )


def test_identity_at_inference():
    x = np.random.default_rng(1).normal(size=(4, 6)).astype("float32")
    layer = Dropout(0.7, seed=1)
    np.testing.assert_array_equal(_numpy(layer(x)), x)
    np.testing.assert_array_equal(_numpy(layer(x, training=False)), x)


def test_mask_matches_numpy_reference_of_documented_algorithm():
    shape = (3, 5, 7)
    layer = Dropout(0.3, seed=11)
    first = _numpy(layer(_ones(shape), training=True))
    second = _numpy(layer(_ones(shape), training=True))
    np.testing.assert_array_equal(first != 0, reference_keep(shape, 0.3, 11, 0))
    np.testing.assert_array_equal(second != 0, reference_keep(shape, 0.3, 11, 1))


@pytest.mark.parametrize("rate", [0.1, 0.5, 0.9])
def test_zero_fraction_close_to_rate(rate):
    n = 200 * 500
    y = _numpy(Dropout(rate, seed=3)(_ones((200, 500)), training=True))
    # The number of zeros is Binomial(n, p) with p the effective rate, within
    # 2**-17 of `rate`. Its standard deviation is sqrt(p (1 - p) / n) as a
    # fraction: 0.0016 at most for n = 1e5. Six standard deviations plus the
    # quantization error bound a correct implementation (two-sided tail
    # probability 2e-9).
    bound = 6 * math.sqrt(rate * (1 - rate) / n) + 2**-17
    assert abs(np.mean(y == 0) - rate) < bound


@pytest.mark.parametrize("rate", [0.5, 0.25, 0.125, 0.3])  # 1, 2, 4, 16 bits
def test_draws_sharing_a_hash_word_are_unbiased_and_uncorrelated(rate):
    # One 32-bit word gives 32 one-bit draws at rate 0.5, 16 two-bit draws at
    # 0.25, 8 four-bit draws at 0.125. Each position within a word must drop
    # with probability p = rate, and draws at every distance L = 1..31 apart
    # independently (a draw reusing another's bits repeats at some L < 32).
    # Position: each of the 32 positions has m = n / 32 = 3125 draws, so its
    # zero fraction has standard deviation sqrt(p (1 - p) / m).
    # Distance L: the m = n - L products D_i D_{i+L} of independent
    # Bernoulli(p) indicators have mean p**2 and variance p**2 (1 - p**2);
    # the m - L pairs of products sharing an indicator have covariance
    # p**3 (1 - p), and all others 0. The fraction of both dropped has
    # variance (m p**2 (1 - p**2) + 2 (m - L) p**3 (1 - p)) / m**2.
    # Six standard deviations: two-sided tail 2e-9 per check, 1.3e-7 over all
    # 63 checks.
    n = 200 * 500
    p = rate
    y = _numpy(Dropout(rate, seed=8)(_ones((200, 500)), training=True))
    dropped = (y == 0).reshape(-1)
    for position in range(32):
        fraction = np.mean(dropped[position::32])
        assert abs(fraction - p) < 6 * math.sqrt(p * (1 - p) / (n / 32))
    for distance in range(1, 32):
        m = n - distance
        both = np.mean(dropped[distance:] & dropped[:-distance])
        variance = m * p**2 * (1 - p**2) + 2 * (m - distance) * p**3 * (1 - p)
        assert abs(both - p**2) < 6 * math.sqrt(variance) / m, distance


def test_survivors_scaled_exactly_by_inverse_keep_probability():
    rate = 0.3
    x = np.random.default_rng(2).uniform(0.5, 2.0, size=(50, 40)).astype("float32")
    y = _numpy(Dropout(rate, seed=9)(x, training=True))
    kept = y != 0
    assert 0 < kept.sum() < kept.size
    np.testing.assert_array_equal(y[kept], x[kept] * np.float32(1 / (1 - rate)))


@pytest.mark.parametrize(
    "noise_shape, shared_axes",
    [((None, 1, None), (1,)), ((6, 1, 8), (1,)), ((1, 5, 1), (0, 2))],
)
def test_noise_shape_broadcasts_mask_over_size_one_axes(noise_shape, shared_axes):
    y = _numpy(
        Dropout(0.5, noise_shape=noise_shape, seed=4)(_ones((6, 5, 8)), training=True)
    )
    for axis in shared_axes:
        first = np.take(y, [0], axis=axis)
        np.testing.assert_array_equal(y, np.broadcast_to(first, y.shape))
    assert 0 < np.mean(y == 0) < 1
    resolved = tuple(
        d if d is not None else s for d, s in zip(noise_shape, y.shape, strict=True)
    )
    expected = np.broadcast_to(reference_keep(resolved, 0.5, 4, 0), y.shape)
    np.testing.assert_array_equal(y != 0, expected)


@pytest.mark.parametrize("noise_shape", [(1, 4), (3, 1), (4,)])
def test_a_shorter_noise_shape_broadcasts_from_the_right_as_in_keras(noise_shape):
    x = _ones((2, 3, 4))
    keras_y = _numpy(
        keras.layers.Dropout(0.5, noise_shape=noise_shape, seed=3)(x, training=True)
    )
    y = _numpy(Dropout(0.5, noise_shape=noise_shape, seed=3)(x, training=True))
    padded = (1,) * (x.ndim - len(noise_shape)) + noise_shape
    shared = tuple(slice(0, 1) if size == 1 else slice(None) for size in padded)
    for out in (keras_y, y):  # one mask, broadcast over the size-1 axes
        np.testing.assert_array_equal(out, np.broadcast_to(out[shared], out.shape))
    expected = np.broadcast_to(reference_keep(noise_shape, 0.5, 3, 0), x.shape)
    np.testing.assert_array_equal(y != 0, expected)


@pytest.mark.parametrize(
    "noise_shape", [(None, 1), (1, 1, 1, 4), (2, 3, 2)], ids=["none", "long", "size"]
)
def test_a_noise_shape_that_does_not_broadcast_raises_naming_the_shape(noise_shape):
    # Keras raises too, each backend its own way: (None, 1) takes the
    # batch size 2 at index 0, and (2, 1) does not broadcast to (2, 3, 4).
    layer = Dropout(0.5, noise_shape=noise_shape)
    message = (
        "`noise_shape` must broadcast to the input's shape, entry by entry from "
        f"the right. Received: noise_shape={noise_shape} for an input of shape "
        "(2, 3, 4)"
    )
    # Layer.__call__ decorates the message with call arguments; call() does not.
    with pytest.raises(ValueError) as info:
        layer.call(keras.ops.ones((2, 3, 4)), training=True)
    assert str(info.value) == message
    with pytest.raises(ValueError, match=re.escape(message)):
        layer(_ones((2, 3, 4)), training=True)


@pytest.mark.parametrize(
    "layer",
    [Dropout(0.25), SpatialDropout1D(0.25)],
    ids=["Dropout", "SpatialDropout1D"],
)
def test_integer_inputs_raise_in_training_and_pass_at_inference(layer):
    # Keras's Dropout raises on TensorFlow (ValueError) and JAX (TypeError);
    # kept integer units cannot be scaled by 1 / (1 - rate).
    x = keras.ops.convert_to_tensor(np.full((2, 3, 4), 10, "int32"))
    with pytest.raises(ValueError, match="needs floating-point inputs in training"):
        layer(x, training=True)
    np.testing.assert_array_equal(_numpy(layer(x)), np.full((2, 3, 4), 10))


def test_same_seed_same_masks_and_successive_calls_differ():
    x = _ones((20, 30))
    first, second = Dropout(0.5, seed=21), Dropout(0.5, seed=21)
    a1, a2 = _numpy(first(x, training=True)), _numpy(first(x, training=True))
    np.testing.assert_array_equal(a1, _numpy(second(x, training=True)))
    np.testing.assert_array_equal(a2, _numpy(second(x, training=True)))
    assert not np.array_equal(a1, a2)
    assert not np.array_equal(a1, _numpy(Dropout(0.5, seed=22)(x, training=True)))


def test_dropped_units_are_zero_and_kept_non_finite_values_pass():
    x = np.full((8, 8), np.inf, dtype="float32")
    x[::2] = -1.0
    y = _numpy(Dropout(0.5, seed=3)(x, training=True))
    keep = reference_keep((8, 8), 0.5, 3, 0)
    np.testing.assert_array_equal(y[keep], x[keep] * 2)
    np.testing.assert_array_equal(y[~keep & (x == -1)], 0)
    # Like Keras's TensorFlow dropout, a dropped infinity becomes NaN.
    assert np.all(np.isnan(y[~keep & np.isinf(x)]))


def test_rate_one_returns_zeros_without_nan():
    x = np.array([[1.0, np.inf, -np.inf, np.nan]], dtype="float32")
    y = _numpy(Dropout(1.0)(x, training=True))
    np.testing.assert_array_equal(y, np.zeros_like(x))


def test_rate_zero_is_identity_in_training():
    x = np.random.default_rng(3).normal(size=(4, 4)).astype("float32")
    np.testing.assert_array_equal(_numpy(Dropout(0.0)(x, training=True)), x)


def test_gradient_is_mask_times_inverse_keep_probability():
    rate = 0.25
    layer = Dropout(rate, seed=5)
    x = _ones((6, 7))
    expected = reference_keep((6, 7), rate, 5, 0) * np.float32(1 / (1 - rate))
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        x = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(layer(x, training=True))
        grad = tape.gradient(loss, x)
    elif backend == "jax":
        import jax

        state = layer.seed_generator.state.value

        def loss_fn(x):
            with keras.StatelessScope(
                state_mapping=[(layer.seed_generator.state, state)]
            ):
                return keras.ops.sum(layer(x, training=True))

        grad = jax.grad(loss_fn)(x)
    else:
        import torch

        x = torch.tensor(x, requires_grad=True)
        layer(x, training=True).sum().backward()
        grad = x.grad
    np.testing.assert_array_equal(_numpy(grad), expected)


def test_mixed_precision_computes_in_float16():
    layer = Dropout(0.5, seed=1, dtype="mixed_float16")
    y = layer(np.ones((4, 4), dtype="float16"), training=True)
    assert keras.backend.standardize_dtype(y.dtype) == "float16"
    assert set(np.unique(_numpy(y)).tolist()) <= {0.0, 2.0}


def test_mask_propagates_like_keras():
    inputs = keras.Input((3, 2))
    masked = keras.layers.Masking()(inputs)
    outputs = Dropout(0.5)(masked)
    assert outputs._keras_mask is not None


def test_fit_advances_the_seed_state_once_per_step():
    model = keras.Sequential(
        [keras.Input((4,)), Dropout(0.5, seed=2), keras.layers.Dense(1)]
    )
    model.compile(optimizer="sgd", loss="mse")
    x, y = _ones((12, 4)), _ones((12, 1))
    model.fit(x, y, batch_size=4, epochs=2, verbose=0)
    state = _numpy(model.layers[0].seed_generator.state)
    assert state.tolist() == [2, 6]


def test_save_load_restores_seed_state_and_continues_the_masks(tmp_path):
    model = keras.Sequential([keras.Input((40,)), Dropout(0.5, seed=8)])
    x = _ones((10, 40))
    model(x, training=True)
    restored = assert_model_save_round_trip(model, x, tmp_path)
    np.testing.assert_array_equal(
        _numpy(model(x, training=True)), _numpy(restored(x, training=True))
    )
    np.testing.assert_array_equal(
        _numpy(restored.layers[0].seed_generator.state), [8, 2]
    )


@settings(max_examples=10, deadline=None)
@given(
    shape=st.lists(st.integers(1, 6), min_size=1, max_size=4).map(tuple),
    rate=st.floats(0.0, 1.0, allow_nan=False),
    seed=st.integers(0, 2**31 - 1),
)
def test_outputs_are_zero_or_exactly_scaled_for_any_shape_and_rate(shape, rate, seed):
    x = np.random.default_rng(seed).uniform(1, 2, size=shape).astype("float32")
    y = _numpy(Dropout(rate, seed=seed)(x, training=True))
    assert y.shape == x.shape
    if rate == 1.0:
        np.testing.assert_array_equal(y, 0)
        return
    np.testing.assert_array_equal(y != 0, reference_keep(shape, rate, seed, 0))
    kept = y != 0
    np.testing.assert_array_equal(y[kept], x[kept] * np.float32(1 / (1 - rate)))


@settings(max_examples=50, deadline=None)
@given(rate=st.floats(0.0, 1.0, allow_nan=False))
def test_effective_rate_within_two_to_minus_sixteen_of_rate(rate):
    effective = _masks.drop_threshold(rate) / 2**16
    assert abs(effective - rate) <= 2**-17


def _message(name, expected, value):
    return (
        f"Invalid value received for argument `{name}`. Expected {expected}. "
        f"Received: {name}={value!r}"
    )


@pytest.mark.parametrize(
    "rate", [-0.1, 1.5, float("nan"), float("inf"), True, "0.5", None]
)
def test_bad_rate_raises(rate):
    with pytest.raises(ValueError) as info:
        Dropout(rate)
    assert str(info.value) == _message("rate", "a float value between 0 and 1", rate)


@pytest.mark.parametrize(
    "noise_shape, expected",
    [
        ("abc", "a tuple or list of integers"),
        (5, "an iterable of integers (e.g., a tuple or list)"),
        ((2, 0), "all dimensions to be positive integers or None"),
        ((2, -1), "all dimensions to be positive integers or None"),
        ((2.0, 3), "all elements to be integers or None"),
        ((True, 3), "all elements to be integers or None"),
        (("2",), "all elements to be integers or None"),
        (("2", -1), "all elements to be integers or None"),
    ],
)
def test_bad_noise_shape_raises(noise_shape, expected):
    with pytest.raises(ValueError) as info:
        Dropout(0.5, noise_shape=noise_shape)
    assert str(info.value) == _message("noise_shape", expected, noise_shape)


@pytest.mark.parametrize("seed", [-1, 1.5, "1", True])
def test_bad_seed_raises(seed):
    with pytest.raises(ValueError) as info:
        Dropout(0.5, seed=seed)
    assert str(info.value) == _message("seed", "an int >= 0", seed)


def test_from_config_validates_too():
    config = Dropout(0.5).get_config()
    config["rate"] = 2.0
    with pytest.raises(ValueError) as info:
        Dropout.from_config(config)
    assert str(info.value) == _message("rate", "a float value between 0 and 1", 2.0)


def test_config_round_trip_turns_lists_into_tuples():
    clone = assert_config_round_trip(Dropout(0.5, noise_shape=[None, 1]))
    assert clone.noise_shape == (None, 1)


# Drop-in fidelity: Keras's own Dropout is the oracle.

# Each phrase is the one Keras 3.15's checks print for that kind of mistake.
_KERAS_PHRASES = [
    (
        dict(rate=1.5),
        r"Invalid value received for argument `rate`\. Expected a "
        r"float value between 0 and 1\.",
    ),
    (dict(rate=-0.1), r"Expected a float value between 0 and 1\."),
    (dict(rate=0.5, noise_shape="abc"), r"Expected a tuple or list of integers\."),
    (dict(rate=0.5, noise_shape=5), r"Expected an iterable of integers"),
    (
        dict(rate=0.5, noise_shape=(2, "x")),
        r"Invalid value received for argument "
        r"`noise_shape`\. Expected all elements to be integers or None\.",
    ),
    (
        dict(rate=0.5, noise_shape=(2, 0)),
        r"Expected all dimensions to be positive "
        r"integers or None\.",
    ),
    (
        dict(rate=0.5, noise_shape=(-1,)),
        r"Expected all dimensions to be positive "
        r"integers or None\.",
    ),
]


@pytest.mark.parametrize("kwargs, phrase", _KERAS_PHRASES)
def test_error_matches_the_regex_that_matches_keras_message(kwargs, phrase):
    theirs = raised_message(lambda: keras.layers.Dropout(**kwargs))
    ours = raised_message(lambda: Dropout(**kwargs))
    assert re.search(phrase, theirs)
    assert re.search(phrase, ours)
    name = "rate" if "noise_shape" not in kwargs else "noise_shape"
    assert ours.endswith(f"Received: {name}={kwargs[name]!r}")


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(rate=0.3),
        dict(rate=0.0),
        dict(rate=1),
        dict(rate=0.5, noise_shape=[None, 1, 4], seed=7),
        dict(rate=0.25, seed=0, dtype="mixed_float16", name="d"),
    ],
)
def test_config_attributes_and_state_are_keras(kwargs):
    attributes = ("rate", "seed", "noise_shape", "supports_masking", "built")
    assert_same_public_state(
        Dropout(**kwargs), keras.layers.Dropout(**kwargs), attributes
    )


def test_output_shape_and_spec_are_keras():
    ours, theirs = Dropout(0.5), keras.layers.Dropout(0.5)
    assert ours.compute_output_shape((None, 3, 4)) == theirs.compute_output_shape(
        (None, 3, 4)
    )
    symbolic = keras.KerasTensor((None, 3), dtype="float16")
    mine, keras_spec = (layer.compute_output_spec(symbolic) for layer in (ours, theirs))
    assert (mine.shape, mine.dtype) == (keras_spec.shape, keras_spec.dtype)


@pytest.mark.parametrize("rate", [0.0, 0.5])
def test_subclass_overriding_build_is_built_only_when_called(rate):
    assert_build_rule_like_keras(Dropout, keras.layers.Dropout, (rate,), _ones((2, 5)))


@pytest.mark.parametrize("rate", [0.0, 0.5])
def test_weights_files_load_into_keras_dropout_and_back(rate, tmp_path):
    assert_weights_files_interchangeable(
        lambda: Dropout(rate, seed=3),
        lambda: keras.layers.Dropout(rate, seed=3),
        _ones((4, 5)),
        tmp_path,
    )


def test_weights_file_of_keras_reg_0_1_still_loads_with_its_seed_state(tmp_path):
    # keras_reg 0.1 wrote the seed state as a variable named after
    # `DropoutFamilyLayer._SEED_STATE_KEY` next to the layer's (absent) weights.
    import h5py

    model = keras.Sequential([keras.Input((4,)), Dropout(0.5, seed=8, name="dropout")])
    path = os.path.join(str(tmp_path), "old.weights.h5")
    model.save_weights(path)
    with h5py.File(path, "a") as archive:
        archive["layers/dropout/vars"].create_dataset(
            "seed_generator_state", data=np.array([8, 5], "int32")
        )
    model.load_weights(path)
    assert _numpy(model.layers[0].seed_generator.state).tolist() == [8, 5]


def test_seed_state_lives_in_the_archive_assets(tmp_path):
    import zipfile

    model = keras.Sequential([keras.Input((4,)), Dropout(0.5, seed=8)])
    model(_ones((2, 4)), training=True)
    path = os.path.join(str(tmp_path), "model.keras")
    model.save(path)
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
    assert any(name.endswith("seed_generator_state.npy") for name in names)
    restored = keras.saving.load_model(path)
    assert _numpy(restored.layers[0].seed_generator.state).tolist() == [8, 1]
