import math

import keras
import numpy as np
import pytest

import keras_reg
from keras_reg._backends import portable_only
from keras_reg.layers import DropBlock2D
from keras_reg.layers.drop_block import block_plan
from tests.helpers import (
    assert_model_save_round_trip,
    invalid_message,
    raised_message,
    run_layer_test,
)
from tests.test_dropout import reference_keep


def _numpy(x):
    return keras.ops.convert_to_numpy(x)


def _positive(shape, seed=0):
    return np.random.default_rng(seed).uniform(1, 2, size=shape).astype("float32")


def reference_dropped(shape, block_size, threshold, seed, counter, channels_first):
    """NumPy DropBlock mask (True where dropped), written from the docstring.

    Corners: the dropped draws of the documented mask algorithm over the
    valid region, in the input's layout; each drops the block below and to
    its right.
    """
    if channels_first:
        shape = (shape[0], shape[2], shape[3], shape[1])
    batch, rows, cols, channels = shape
    bh, bw = min(block_size, rows), min(block_size, cols)
    corner_shape = [batch, rows - bh + 1, cols - bw + 1, channels]
    if channels_first:
        corner_shape = [batch, channels, rows - bh + 1, cols - bw + 1]
    keep = reference_keep(corner_shape, threshold / 65536, seed, counter)
    if channels_first:
        keep = keep.transpose(0, 2, 3, 1)
    dropped = np.zeros(shape, bool)
    for n, i, j, c in zip(*np.nonzero(~keep), strict=True):
        dropped[n, i : i + bh, j : j + bw, c] = True
    return dropped.transpose(0, 3, 1, 2) if channels_first else dropped


def _coverage_brute_force(rows, cols, block):
    """How many valid blocks cover each position, by enumerating the blocks."""
    counts = np.zeros((rows, cols), int)
    for i in range(rows - block + 1):
        for j in range(cols - block + 1):
            counts[i : i + block, j : j + block] += 1
    return counts


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_layer_battery(data_format, tmp_path):
    run_layer_test(
        DropBlock2D,
        {"rate": 0.2, "block_size": 3, "data_format": data_format, "seed": 3},
        (2, 6, 7, 5),
        tmp_path,
        expected_num_trainable_weights=0,
        expected_num_non_trainable_weights=0,
    )


@pytest.mark.parametrize(
    "input_shape, block_size, rate, channels_first",
    [
        ((3, 9, 11, 4), 3, 0.2, False),
        ((3, 4, 9, 11), 4, 0.3, True),
        ((2, 5, 6, 3), 9, 0.4, False),  # block clipped to the whole map
        ((2, 3, 4, 12), 6, 0.25, True),  # clipped to the height only
    ],
)
def test_blocks_match_numpy_reference_on_every_path(
    input_shape, block_size, rate, channels_first
):
    data_format = "channels_first" if channels_first else "channels_last"
    x = _positive(input_shape)
    rows, cols = input_shape[2:] if channels_first else input_shape[1:3]
    _, _, threshold, fraction = block_plan(rows, cols, block_size, rate)
    scale = np.float32(1 / (1 - fraction))
    for counter in (0, 1):
        dropped = reference_dropped(
            input_shape, block_size, threshold, 7, counter, channels_first
        )
        expected = np.where(dropped, np.float32(0), x * scale)
        layer = DropBlock2D(rate, block_size, data_format=data_format, seed=7)
        with portable_only():
            portable = DropBlock2D(rate, block_size, data_format=data_format, seed=7)
            for _ in range(counter):
                portable(x, training=True)
            np.testing.assert_array_equal(_numpy(portable(x, training=True)), expected)
        for _ in range(counter):
            layer(x, training=True)
        np.testing.assert_array_equal(_numpy(layer(x, training=True)), expected)


def test_clipped_block_drops_whole_channels():
    x = np.ones((8, 4, 5, 16), "float32")
    y = _numpy(DropBlock2D(0.5, 50, seed=2)(x, training=True))
    per_map = y.reshape(8, 20, 16)
    assert np.all(np.ptp(per_map, axis=1) == 0)
    assert 0 < np.mean(per_map == 0) < 1


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_an_isolated_block_is_a_square_of_block_size(data_format):
    # A 16x16 map at a small rate: find the first seed that drops exactly one
    # block's worth of positions, and check that they form a 4x4 square.
    shape = (1, 1, 16, 16) if data_format == "channels_first" else (1, 16, 16, 1)
    for seed in range(200):
        layer = DropBlock2D(0.02, 4, data_format=data_format, seed=seed)
        y = _numpy(layer(np.ones(shape, "float32"), training=True))
        rows, cols = np.nonzero(y.reshape(16, 16) == 0)
        if rows.size == 16:
            break
    else:
        raise AssertionError("no seed dropped exactly 16 positions")
    assert np.ptp(rows) == 3 and np.ptp(cols) == 3


@pytest.mark.parametrize(
    "rows, cols, block_size, rate",
    [(32, 32, 7, 0.1), (32, 32, 7, 0.3), (7, 9, 3, 0.5), (14, 14, 7, 0.05)],
)
def test_expected_dropped_fraction_is_rate(rows, cols, block_size, rate):
    block_h, block_w, threshold, fraction = block_plan(rows, cols, block_size, rate)
    assert (block_h, block_w) == (block_size, block_size)
    gamma = threshold / 65536
    counts = _coverage_brute_force(rows, cols, block_size)
    assert fraction == pytest.approx(1 - np.mean((1 - gamma) ** counts), abs=1e-12)
    # The fraction grows with gamma at most as fast as block_size**2 * gamma:
    # quantizing gamma to a multiple of 2**-16 moves it by 2**-17 at most.
    assert abs(fraction - rate) <= block_size**2 * 2**-17


def test_empirical_dropped_fraction_and_mean_match_rate():
    rate, block, side, maps = 0.3, 7, 32, 64 * 64
    x = np.ones((64, side, side, 64), "float32")
    y = _numpy(DropBlock2D(rate, block, seed=11)(x, training=True))
    dropped = np.mean(y == 0)
    # Each map's dropped fraction D depends on its 26 * 26 independent corner
    # draws, and resampling one corner moves D by at most b = 49 / 1024.
    # Efron-Stein: Var(D) <= 676 * gamma * b**2 = 0.0178 (gamma = 0.0115),
    # so over 4096 independent maps the standard deviation of the mean is at
    # most sqrt(0.0178 / 4096) = 0.0021. Six of them, plus the quantization
    # of gamma (49 * 2**-17), bound the deviation. The paper's gamma would
    # drop 0.251, outside the bound.
    _, _, threshold, _ = block_plan(side, side, block, rate)
    variance = (side - block + 1) ** 2 * (threshold / 65536) * (block**2 / side**2) ** 2
    bound = 6 * math.sqrt(variance / maps)
    assert abs(dropped - rate) < bound + block**2 * 2**-17
    # Kept units are scaled by 1 / (1 - rate) (the exact expected fraction of
    # the quantized gamma), so the mean output is 1 up to the same deviation.
    assert abs(np.mean(y) - 1) < (bound + block**2 * 2**-17) / (1 - rate)


def test_identity_at_inference_and_at_rate_zero():
    x = _positive((2, 6, 6, 3))
    np.testing.assert_array_equal(_numpy(DropBlock2D(0.5, 3)(x)), x)
    layer = DropBlock2D(0.0, 3)
    np.testing.assert_array_equal(_numpy(layer(x, training=True)), x)
    assert not hasattr(layer, "seed_generator")


def test_same_seed_same_masks_different_seeds_and_calls_differ():
    x = np.ones((4, 12, 12, 8), "float32")

    def draw(seed, calls=1):
        layer = DropBlock2D(0.2, 3, seed=seed)
        for _ in range(calls - 1):
            layer(x, training=True)
        return _numpy(layer(x, training=True))

    np.testing.assert_array_equal(draw(5), draw(5))
    assert not np.array_equal(draw(5), draw(6))
    assert not np.array_equal(draw(5), draw(5, calls=2))


def test_mc_predict_draws_varying_blocks():
    model = keras.Sequential(
        [
            keras.Input((8, 8, 2)),
            DropBlock2D(0.3, 3, seed=0),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(1),
        ]
    )
    x = _positive((5, 8, 8, 2))
    mean, std = keras_reg.mc_predict(model, x, samples=8, seed=1)
    again, _ = keras_reg.mc_predict(model, x, samples=8, seed=1)
    assert np.all(std > 0)
    np.testing.assert_array_equal(mean, again)


def test_seed_state_survives_save_and_load(tmp_path):
    model = keras.Sequential([keras.Input((6, 6, 4)), DropBlock2D(0.3, 2, seed=9)])
    x = np.ones((3, 6, 6, 4), dtype="float32")
    model(x, training=True)
    restored = assert_model_save_round_trip(model, x, tmp_path)
    np.testing.assert_array_equal(
        _numpy(model(x, training=True)), _numpy(restored(x, training=True))
    )


def test_config_and_output_shape():
    layer = DropBlock2D(0.1, 5, data_format="Channels_First", seed=3, name="db")
    config = layer.get_config()
    assert {k: config[k] for k in ("rate", "block_size", "data_format", "seed")} == {
        "rate": 0.1,
        "block_size": 5,
        "data_format": "channels_first",
        "seed": 3,
    }
    assert DropBlock2D.from_config(config).get_config() == config
    assert layer.compute_output_shape((None, 3, 8, 8)) == (None, 3, 8, 8)


def test_default_data_format_follows_keras_config():
    previous = keras.config.image_data_format()
    keras.config.set_image_data_format("channels_first")
    try:
        assert DropBlock2D(0.1, 3).data_format == "channels_first"
    finally:
        keras.config.set_image_data_format(previous)


@pytest.mark.parametrize("rate", [-0.1, 1.0, 1.5, float("nan"), True, "0.5"])
def test_bad_rate_raises(rate):
    message = raised_message(lambda: DropBlock2D(rate, 3))
    assert message == invalid_message("rate", "a float in [0, 1)", rate)


@pytest.mark.parametrize("block_size", [0, -2, 2.5, True, "3", None])
def test_bad_block_size_raises(block_size):
    message = raised_message(lambda: DropBlock2D(0.1, block_size))
    assert message == invalid_message("block_size", "an int >= 1", block_size)


@pytest.mark.parametrize("data_format", ["NHWC", "channels_middle", 3])
def test_bad_data_format_raises(data_format):
    message = raised_message(lambda: DropBlock2D(0.1, 3, data_format=data_format))
    expected = "one of {'channels_first', 'channels_last'}"
    assert message == invalid_message("data_format", expected, data_format)


@pytest.mark.parametrize("seed", [-1, 1.0])
def test_bad_seed_raises(seed):
    message = raised_message(lambda: DropBlock2D(0.1, 3, seed=seed))
    assert message == invalid_message("seed", "an int >= 0", seed)


def test_docstring_example_runs():
    import doctest

    from keras_reg.layers import drop_block

    failures, attempted = doctest.testmod(drop_block, verbose=False)
    assert attempted > 0 and failures == 0


@pytest.mark.skipif(keras.backend.backend() != "torch", reason="torch fast path")
@pytest.mark.parametrize("without_native", [False, True])
@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize(
    "shape, block_size, data_format",
    [
        ((3, 10, 9, 5), 4, "channels_last"),
        ((3, 5, 10, 9), 4, "channels_first"),
        ((3, 10, 9, 64), 4, "channels_last"),
        ((2, 6, 5, 32), 7, "channels_last"),  # clipped to the map
    ],
)
def test_torch_fast_path_equals_portable(
    without_native, dtype, shape, block_size, data_format, monkeypatch
):
    from keras_reg._backends import fast_path

    if without_native:
        monkeypatch.setattr(fast_path("masks"), "native", None)
    x = _positive(shape).astype(dtype)

    def layer():
        return DropBlock2D(0.3, block_size, data_format, seed=4, dtype=dtype)

    fast = _numpy(layer()(x, training=True))
    with portable_only():
        portable = _numpy(layer()(x, training=True))
    assert fast.dtype == np.dtype(dtype)
    assert 0 < np.mean(fast == 0) < 1
    np.testing.assert_array_equal(fast, portable)


@pytest.mark.parametrize("dtype", ["float16", "mixed_float16", "bfloat16"])
def test_other_dtypes_drop_the_same_blocks(dtype):
    x = _positive((2, 9, 9, 3))
    ref = _numpy(DropBlock2D(0.3, 3, seed=8)(x, training=True))
    layer = DropBlock2D(0.3, 3, seed=8, dtype=dtype)
    y = _numpy(layer(x.astype(layer.compute_dtype), training=True))
    assert y.dtype == np.dtype(layer.compute_dtype)
    np.testing.assert_array_equal(y == 0, ref == 0)
