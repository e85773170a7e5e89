import math
import re

import keras
import numpy as np
import pytest

from keras_reg.layers import SpatialDropout1D, SpatialDropout2D, SpatialDropout3D
from tests.helpers import (
    assert_build_rule_like_keras,
    assert_model_save_round_trip,
    assert_same_public_state,
    assert_weights_files_interchangeable,
    raised_message,
    run_layer_test,
)
from tests.test_dropout import reference_keep

CASES = [
    (SpatialDropout1D, keras.layers.SpatialDropout1D, (3, 5, 4)),
    (SpatialDropout2D, keras.layers.SpatialDropout2D, (3, 4, 5, 6)),
    (SpatialDropout3D, keras.layers.SpatialDropout3D, (2, 3, 4, 2, 5)),
]
IDS = ["1D", "2D", "3D"]


def _numpy(x):
    return keras.ops.convert_to_numpy(x)


@pytest.mark.parametrize("cls, _, input_shape", CASES, ids=IDS)
def test_layer_battery(cls, _, input_shape, tmp_path):
    run_layer_test(
        cls,
        {"rate": 0.4, "seed": 3},
        input_shape,
        tmp_path,
        expected_num_trainable_weights=0,
        expected_num_non_trainable_weights=0,
    )


@pytest.mark.parametrize("cls, keras_cls, _", CASES, ids=IDS)
def test_config_matches_keras(cls, keras_cls, _):
    kwargs = {"rate": 0.3, "seed": 2, "name": "sd"}
    if cls is not SpatialDropout1D:
        kwargs["data_format"] = "channels_first"
    ours, theirs = cls(**kwargs), keras_cls(**kwargs)
    assert set(ours.get_config()) == set(theirs.get_config())
    for key in ("rate", "seed", "name", "data_format"):
        assert ours.get_config().get(key) == theirs.get_config().get(key)
    clone = cls.from_config(ours.get_config())
    assert clone.get_config() == ours.get_config()


@pytest.mark.parametrize(
    "cls, input_shape, data_format",
    [
        (SpatialDropout1D, (3, 5, 4), "channels_last"),
        (SpatialDropout2D, (3, 4, 5, 6), "channels_last"),
        (SpatialDropout2D, (3, 4, 5, 6), "channels_first"),
        (SpatialDropout3D, (2, 3, 4, 2, 5), "channels_last"),
        (SpatialDropout3D, (2, 3, 4, 2, 5), "channels_first"),
    ],
)
def test_whole_channels_are_dropped(cls, input_shape, data_format):
    kwargs = {} if cls is SpatialDropout1D else {"data_format": data_format}
    x = np.random.default_rng(0).uniform(1, 2, size=input_shape).astype("float32")
    y = _numpy(cls(0.5, seed=5, **kwargs)(x, training=True))
    channel_axis = 1 if data_format == "channels_first" else len(input_shape) - 1
    spatial = tuple(a for a in range(1, len(input_shape)) if a != channel_axis)
    kept = np.all(y != 0, axis=spatial)
    dropped = np.all(y == 0, axis=spatial)
    assert np.all(kept | dropped)
    noise = [1] * len(input_shape)
    noise[0], noise[channel_axis] = input_shape[0], input_shape[channel_axis]
    expected = reference_keep(tuple(noise), 0.5, 5, 0).reshape(kept.shape)
    np.testing.assert_array_equal(kept, expected)
    mask = np.expand_dims(kept, spatial)
    np.testing.assert_array_equal(y, np.where(mask, x * np.float32(2), np.float32(0)))


def test_channel_drop_fraction_close_to_rate():
    rate = 0.3
    y = _numpy(SpatialDropout2D(rate, seed=7)(np.ones((100, 2, 2, 100)), training=True))
    dropped = np.mean(y[:, 0, 0, :] == 0)
    # 1e4 Bernoulli(rate) channel draws: standard deviation of the fraction
    # sqrt(0.21 / 1e4) = 0.0046; six of them plus the 2**-17 quantization.
    assert abs(dropped - rate) < 6 * math.sqrt(rate * (1 - rate) / 1e4) + 2**-17


def test_identity_at_inference():
    x = np.random.default_rng(1).normal(size=(2, 3, 3, 4)).astype("float32")
    np.testing.assert_array_equal(_numpy(SpatialDropout2D(0.9)(x)), x)


def test_default_data_format_follows_keras_config():
    previous = keras.config.image_data_format()
    keras.config.set_image_data_format("channels_first")
    try:
        assert SpatialDropout2D(0.5).data_format == "channels_first"
    finally:
        keras.config.set_image_data_format(previous)
    assert SpatialDropout3D(0.5).data_format == previous


def test_input_of_wrong_rank_raises_naming_the_shape():
    with pytest.raises(ValueError, match=r"Full shape received: \(2, 3\)"):
        SpatialDropout2D(0.5)(np.ones((2, 3)), training=True)


def test_seed_state_survives_save_and_load(tmp_path):
    model = keras.Sequential([keras.Input((4, 4, 8)), SpatialDropout2D(0.5, seed=9)])
    x = np.ones((6, 4, 4, 8), dtype="float32")
    model(x, training=True)
    restored = assert_model_save_round_trip(model, x, tmp_path)
    np.testing.assert_array_equal(
        _numpy(model(x, training=True)), _numpy(restored(x, training=True))
    )


def _message(name, expected, value):
    return (
        f"Invalid value received for argument `{name}`. Expected {expected}. "
        f"Received: {name}={value!r}"
    )


@pytest.mark.parametrize("cls", [SpatialDropout1D, SpatialDropout2D, SpatialDropout3D])
@pytest.mark.parametrize("rate", [-0.5, 1.01, float("nan"), False])
def test_bad_rate_raises(cls, rate):
    with pytest.raises(ValueError) as info:
        cls(rate)
    assert str(info.value) == _message("rate", "a float value between 0 and 1", rate)


@pytest.mark.parametrize("cls", [SpatialDropout2D, SpatialDropout3D])
@pytest.mark.parametrize("data_format", ["channels_middle", "NHWC", 3])
def test_bad_data_format_raises(cls, data_format):
    with pytest.raises(ValueError) as info:
        cls(0.5, data_format=data_format)
    expected = "one of {'channels_first', 'channels_last'}"
    assert str(info.value) == _message("data_format", expected, data_format)


@pytest.mark.parametrize("seed", [-3, 2.0, "7"])
def test_bad_seed_raises(seed):
    with pytest.raises(ValueError) as info:
        SpatialDropout1D(0.5, seed=seed)
    assert str(info.value) == _message("seed", "an int >= 0", seed)


# Drop-in fidelity: Keras's own spatial dropout layers are the oracle.

_ATTRIBUTES = ("rate", "seed", "noise_shape", "data_format", "supports_masking")
_ATTRIBUTES += ("built", "input_spec")


@pytest.mark.parametrize("ours, theirs, input_shape", CASES, ids=IDS)
@pytest.mark.parametrize(
    "kwargs",
    [
        dict(rate=0.0),
        dict(rate=0.3, seed=4),
        dict(rate=1, name="s"),
        dict(rate=0.5, data_format="channels_first"),
        dict(rate=0.5, data_format="Channels_Last"),
    ],
)
def test_config_attributes_and_state_are_keras(ours, theirs, input_shape, kwargs):
    if ours is SpatialDropout1D:
        kwargs = {k: v for k, v in kwargs.items() if k != "data_format"}
    assert_same_public_state(ours(**kwargs), theirs(**kwargs), _ATTRIBUTES)
    assert ours(**kwargs).compute_output_shape(input_shape) == theirs(
        **kwargs
    ).compute_output_shape(input_shape)


@pytest.mark.parametrize("ours, theirs, input_shape", CASES, ids=IDS)
def test_bad_rate_matches_the_regex_that_matches_keras_message(
    ours, theirs, input_shape
):
    phrase = r"Invalid value received for argument `rate`\. Expected a float value "
    phrase += r"between 0 and 1\."
    assert re.search(phrase, raised_message(lambda: theirs(1.5)))
    assert re.search(phrase, raised_message(lambda: ours(1.5)))


@pytest.mark.parametrize("ours, theirs", [c[:2] for c in CASES[1:]], ids=IDS[1:])
def test_bad_data_format_carries_keras_choices(ours, theirs):
    phrase = re.escape("{'channels_first', 'channels_last'}")
    mine = raised_message(lambda: ours(0.5, data_format="NHWC"))
    assert re.search(phrase, raised_message(lambda: theirs(0.5, data_format="NHWC")))
    assert re.search(phrase, mine)
    assert mine.endswith("Received: data_format='NHWC'")


@pytest.mark.parametrize("ours, theirs, input_shape", CASES, ids=IDS)
def test_subclass_overriding_build_is_built_only_when_called(ours, theirs, input_shape):
    x = np.ones(input_shape, "float32")
    assert_build_rule_like_keras(ours, theirs, (0.5,), x)


@pytest.mark.parametrize("ours, theirs, input_shape", CASES, ids=IDS)
def test_weights_files_load_into_keras_layers_and_back(
    ours, theirs, input_shape, tmp_path
):
    x = np.ones(input_shape, "float32")
    assert_weights_files_interchangeable(
        lambda: ours(0.5, seed=1), lambda: theirs(0.5, seed=1), x, tmp_path
    )
