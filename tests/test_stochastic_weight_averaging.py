"""keras_reg.callbacks.StochasticWeightAveraging.

The average is checked against the NumPy mean of the weights recorded at each
epoch end by an independent callback; the recomputed BatchNormalization
statistics against the moments of the layers' inputs computed in NumPy.
"""

import keras
import numpy as np
import pytest

import keras_reg
from keras_reg.callbacks import EarlyStopping, StochasticWeightAveraging
from tests.callback_helpers import ScriptedMetric, WeightRecorder, tiny_model
from tests.helpers import (
    assert_config_round_trip,
    assert_json_round_trip,
    assert_model_save_round_trip,
    invalid_message,
    raised_message,
)

BATCH_NORMS = [keras.layers.BatchNormalization, keras_reg.layers.BatchNormalization]


def _data(n=100, seed=0):
    rng = np.random.default_rng(seed)
    # Channels with different means and scales, so that a wrong axis shows.
    x = rng.normal(size=(n, 3)) * [1.0, 2.0, 0.5] + [0.0, 3.0, -1.0]
    y = x @ np.array([[1.0], [-2.0], [0.5]])
    return x.astype("float32"), y.astype("float32")


def _fit(model, callbacks, epochs, batch_size=32):
    x, y = _data()
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
    recorder = WeightRecorder()
    model.fit(
        x,
        y,
        epochs=epochs,
        batch_size=batch_size,
        shuffle=False,
        verbose=0,
        callbacks=[recorder, *callbacks],
    )
    return recorder


def _drive(swa, model):
    """Calls the hooks as `fit` does for one epoch, without compiling a step."""
    swa.set_model(model)
    swa.on_train_begin()
    swa.on_epoch_end(0)
    swa.on_train_end()


def _dense_model():
    keras.utils.set_random_seed(1)
    return keras.Sequential(
        [
            keras.Input((3,)),
            keras.layers.Dense(4, activation="tanh"),
            keras.layers.Dense(1),
        ]
    )


def _bn_model(batch_norm=keras.layers.BatchNormalization, **kwargs):
    keras.utils.set_random_seed(2)
    return keras.Sequential(
        [
            keras.Input((3,)),
            batch_norm(**kwargs),
            keras.layers.Dense(2),
            batch_norm(**kwargs),
            keras.layers.Dense(1),
        ]
    )


def _numpy(variable):
    return keras.ops.convert_to_numpy(variable)


def _trainable_indices(model):
    trainable = {id(v) for v in model.trainable_weights}
    return [i for i, w in enumerate(model.weights) if id(w) in trainable]


@pytest.mark.parametrize(
    "start_epoch, frequency, epochs", [(0, 1, 3), (2, 1, 5), (1, 2, 6)]
)
def test_average_equals_numpy_mean_of_epoch_snapshots(start_epoch, frequency, epochs):
    model = _dense_model()
    swa = StochasticWeightAveraging(start_epoch, frequency=frequency)
    recorder = _fit(model, [swa], epochs)
    averaged = list(range(start_epoch, epochs, frequency))
    assert swa.n_averaged == len(averaged)
    indices = _trainable_indices(model)
    assert len(indices) == 4
    weights = [model.get_weights()[index] for index in indices]
    for index, actual, from_swa in zip(
        indices, weights, swa.averaged_weights(), strict=True
    ):
        snapshots = np.stack([recorder.weights[epoch][index] for epoch in averaged])
        expected = snapshots.mean(axis=0, dtype="float64").astype("float32")
        np.testing.assert_allclose(actual, expected, rtol=1e-6, atol=1e-7)
        np.testing.assert_array_equal(from_swa, actual)
        assert from_swa.dtype == np.float32


def test_each_fit_starts_a_new_average():
    model = _dense_model()
    swa = StochasticWeightAveraging(0)
    _fit(model, [swa], 3)
    recorder = _fit(model, [swa], 2)
    assert swa.n_averaged == 2
    expected = (np.float64(recorder.weights[0][0]) + recorder.weights[1][0]) / 2
    np.testing.assert_allclose(model.get_weights()[0], expected, rtol=1e-6, atol=1e-7)


def test_no_epoch_averaged_leaves_model_unchanged_and_says_so(capsys):
    model = _dense_model()
    swa = StochasticWeightAveraging(5, verbose=1)
    recorder = _fit(model, [swa], 3)
    assert swa.n_averaged == 0
    assert swa.averaged_weights() is None
    for actual, last in zip(model.get_weights(), recorder.weights[2], strict=True):
        np.testing.assert_array_equal(actual, last)
    assert "no epoch reached start_epoch=5 (0-based)" in capsys.readouterr().out


def _pooled_moments(values):
    return values.mean(axis=0), values.var(axis=0)


def _reference_statistics(model, x, batch_size, epsilon=1e-3):
    """Both BN layers' input moments over `x`, batch by batch in training mode.

    The first layer sees the data itself; the second sees the first layer's
    output, normalized with each batch's own mean and biased variance.
    """
    bn, dense = model.layers[0], model.layers[1]
    gamma, beta = _numpy(bn.gamma).astype("float64"), _numpy(bn.beta)
    kernel, bias = _numpy(dense.kernel).astype("float64"), _numpy(dense.bias)
    second_inputs = []
    for start in range(0, len(x), batch_size):
        batch = x[start : start + batch_size].astype("float64")
        mean, variance = batch.mean(axis=0), batch.var(axis=0)
        normalized = (batch - mean) / np.sqrt(variance + epsilon) * gamma + beta
        second_inputs.append(normalized @ kernel + bias)
    return _pooled_moments(x.astype("float64")), _pooled_moments(
        np.concatenate(second_inputs)
    )


@pytest.mark.parametrize("batch_norm", BATCH_NORMS, ids=["keras", "keras_reg"])
def test_statistics_are_pooled_moments_of_layer_inputs(batch_norm):
    x, y = _data()
    model = _bn_model(batch_norm)
    swa = StochasticWeightAveraging(1, data=(x, y), batch_size=32)
    _fit(model, [swa], 3)
    # 100 rows in batches of 32: the last batch of 4 weighs 4/100.
    expected = _reference_statistics(model, x, batch_size=32)
    for layer, (mean, variance) in zip(model.layers[::2], expected, strict=False):
        np.testing.assert_allclose(
            _numpy(layer.moving_mean), mean, rtol=1e-5, atol=1e-5
        )
        np.testing.assert_allclose(
            _numpy(layer.moving_variance), variance, rtol=1e-5, atol=1e-5
        )
        assert layer.momentum == 0.99


@pytest.mark.parametrize("batch_norm", BATCH_NORMS, ids=["keras", "keras_reg"])
def test_renorm_layer_gets_stddev_from_pooled_variance_and_keeps_renorm_state(
    batch_norm,
):
    x, _ = _data()
    model = _bn_model(batch_norm, renorm=True)
    layer = model.layers[0]
    renorm_state = [_numpy(layer.renorm_mean), _numpy(layer.renorm_stddev)]
    _drive(StochasticWeightAveraging(0, data=x), model)
    variance = x.astype("float64").var(axis=0)
    np.testing.assert_allclose(
        _numpy(layer.moving_mean), x.mean(0), rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(_numpy(layer.moving_variance), variance, rtol=1e-5)
    np.testing.assert_allclose(
        _numpy(layer.moving_stddev), np.sqrt(variance + layer.epsilon), rtol=1e-5
    )
    np.testing.assert_array_equal(_numpy(layer.renorm_mean), renorm_state[0])
    np.testing.assert_array_equal(_numpy(layer.renorm_stddev), renorm_state[1])


def test_ghost_batch_norm_gets_the_average_of_virtual_batch_moments():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(96, 3)) * [1.0, 2.0, 0.5] + [0.0, 3.0, -1.0]
    x[:48] += 1.0  # batches differ: a pooled variance would be larger
    x = x.astype("float32")
    layer = keras_reg.layers.BatchNormalization(virtual_batch_size=8)
    model = keras.Sequential([keras.Input((3,)), layer, keras.layers.Dense(1)])
    _drive(StochasticWeightAveraging(0, data=x, batch_size=32), model)
    # tf-keras's layout: in a batch of 32, virtual batch j holds rows j, j + 4,
    # j + 8, ...; 12 virtual batches of 8 rows each, equally weighted.
    virtual = [
        x[start : start + 32][j::4].astype("float64")
        for start in range(0, 96, 32)
        for j in range(4)
    ]
    variance = np.mean([v.var(axis=0) for v in virtual], axis=0)
    assert np.all(x.astype("float64").var(axis=0) > variance + 0.05)
    np.testing.assert_allclose(_numpy(layer.moving_mean), x.mean(0), rtol=1e-5)
    np.testing.assert_allclose(_numpy(layer.moving_variance), variance, rtol=1e-5)


def test_ghost_batch_norm_leaves_out_rows_past_whole_virtual_batches():
    rng = np.random.default_rng(4)
    x = (rng.normal(size=(36, 3)) * [1.0, 2.0, 0.5]).astype("float32")
    layer = keras_reg.layers.BatchNormalization(virtual_batch_size=8)
    model = keras.Sequential([keras.Input((3,)), layer, keras.layers.Dense(1)])
    # Batches of 16, 16 and 4 rows: the last holds no whole virtual batch.
    _drive(StochasticWeightAveraging(0, data=x, batch_size=16), model)
    virtual = [x[start : start + 16][j::2] for start in (0, 16) for j in range(2)]
    variance = np.mean([v.astype("float64").var(axis=0) for v in virtual], axis=0)
    mean = x[:32].mean(0)
    np.testing.assert_allclose(_numpy(layer.moving_mean), mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(_numpy(layer.moving_variance), variance, rtol=1e-5)


def test_docstring_example_runs():
    import doctest

    from keras_reg.callbacks import stochastic_weight_averaging

    results = doctest.testmod(stochastic_weight_averaging)
    assert results.attempted > 0
    assert results.failed == 0


def _py_dataset(x, batch_size):
    class Batches(keras.utils.PyDataset):
        def __len__(self):
            return -(-len(x) // batch_size)

        def __getitem__(self, index):
            return x[index * batch_size : (index + 1) * batch_size]

    return Batches()


@pytest.mark.parametrize(
    "form",
    ["array", "tuple_x", "list_of_batches", "generator", "py_dataset", "tf_data"],
)
def test_data_forms_give_the_whole_data_moments_to_the_first_layer(form):
    x, y = _data()
    batches = [(x[i : i + 25], y[i : i + 25]) for i in range(0, len(x), 25)]
    if form == "array":
        data = x
    elif form == "tuple_x":
        data = (x,)
    elif form == "list_of_batches":
        data = batches
    elif form == "generator":
        data = (batch for batch in batches)
    elif form == "py_dataset":
        data = _py_dataset(x, 40)
    else:
        tf = pytest.importorskip("tensorflow")
        data = tf.data.Dataset.from_tensor_slices((x, y)).batch(30)
    model = _bn_model()
    _drive(StochasticWeightAveraging(0, data=data), model)
    layer = model.layers[0]
    np.testing.assert_allclose(
        _numpy(layer.moving_mean), x.mean(0), rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(_numpy(layer.moving_variance), x.var(0), rtol=1e-5)


def test_used_up_data_raises_instead_of_leaving_stale_statistics():
    x, _ = _data()
    model = _bn_model()
    swa = StochasticWeightAveraging(0, data=iter([x]))
    _drive(swa, model)
    with pytest.raises(ValueError, match="`data` gave no example"):
        _drive(swa, model)


def test_pass_leaves_seed_states_and_momentum_as_they_were():
    x, _ = _data()
    keras.utils.set_random_seed(3)
    model = keras.Sequential(
        [
            keras.Input((3,)),
            keras.layers.Dense(4),
            keras_reg.layers.Dropout(0.5, seed=4),
            keras.layers.BatchNormalization(momentum=0.9),
            keras.layers.Dense(1),
        ]
    )

    class SeedStates(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            self.states = [_numpy(v).copy() for v in _seed_states(self.model)]

    seeds = SeedStates()
    _fit(model, [seeds, StochasticWeightAveraging(0, data=x)], 2)
    assert len(seeds.states) == 1
    for variable, state in zip(_seed_states(model), seeds.states, strict=True):
        np.testing.assert_array_equal(_numpy(variable), state)
    assert model.layers[2].momentum == 0.9


def _seed_states(model):
    statistics = {id(w) for w in model.weights}
    return [v for v in model.non_trainable_variables if id(v) not in statistics]


def test_frozen_batch_normalization_keeps_its_statistics_and_needs_no_data():
    model = _bn_model()
    model.layers[0].trainable = False
    model.layers[2].trainable = False
    swa = StochasticWeightAveraging(0)
    _fit(model, [swa], 2)
    # Only the Dense kernels and biases are averaged.
    assert len(swa.averaged_weights()) == 4
    for layer in model.layers[::2]:
        np.testing.assert_array_equal(_numpy(layer.moving_mean), 0.0)
        np.testing.assert_array_equal(_numpy(layer.moving_variance), 1.0)


def test_missing_data_raises_before_training_naming_nested_layers():
    inner = keras.Sequential(
        [keras.Input((3,)), keras_reg.layers.BatchNormalization(name="inner_bn")]
    )
    inputs = keras.Input((3,))
    outputs = keras.layers.Dense(1)(inner(inputs))
    model = keras.Model(inputs, outputs)
    started = WeightRecorder()
    x, y = _data()
    model.compile(optimizer="sgd", loss="mse")
    with pytest.raises(ValueError) as error:
        model.fit(
            x, y, epochs=1, verbose=0, callbacks=[StochasticWeightAveraging(0), started]
        )
    assert str(error.value) == (
        "StochasticWeightAveraging(update_bn=True) needs `data` to recompute the "
        "statistics of the model's BatchNormalization layers (inner_bn) for the "
        "averaged weights: pass data= (the training inputs) or update_bn=False."
    )
    assert started.weights == {}


def test_update_bn_false_keeps_the_last_epoch_statistics():
    model = _bn_model()
    recorder = _fit(model, [StochasticWeightAveraging(0, update_bn=False)], 2)
    statistics = [
        i for i in range(len(model.weights)) if i not in _trainable_indices(model)
    ]
    assert len(statistics) == 4
    for index in statistics:
        np.testing.assert_array_equal(
            model.get_weights()[index], recorder.weights[1][index]
        )


def _fit_with_early_stopping(order):
    # The scripted score is best at epoch 1; all 4 epochs run.
    x, y = _data(32)
    model = tiny_model()
    early_stopping = EarlyStopping(
        monitor="score", mode="min", patience=10, restore_best_weights=True
    )
    swa = StochasticWeightAveraging(0, data=x)
    callbacks = [early_stopping, swa] if order == "swa_last" else [swa, early_stopping]
    recorder = WeightRecorder()
    model.fit(
        x,
        y,
        batch_size=16,
        epochs=4,
        verbose=0,
        callbacks=[ScriptedMetric("score", [3.0, 1.0, 2.0, 2.5]), recorder, *callbacks],
    )
    return model, recorder, swa


def test_swa_listed_after_early_stopping_wins():
    model, recorder, swa = _fit_with_early_stopping("swa_last")
    indices = _trainable_indices(model)
    weights = model.get_weights()
    for index, average in zip(indices, swa.averaged_weights(), strict=True):
        np.testing.assert_array_equal(weights[index], average)
        expected = np.mean([recorder.weights[e][index] for e in range(4)], axis=0)
        np.testing.assert_allclose(weights[index], expected, rtol=1e-6, atol=1e-7)


def test_early_stopping_listed_after_swa_restores_the_best_epoch():
    model, recorder, _ = _fit_with_early_stopping("early_stopping_last")
    for actual, best in zip(model.get_weights(), recorder.weights[1], strict=True):
        np.testing.assert_array_equal(actual, best)


def test_saved_model_gains_no_variable(tmp_path):
    x, _ = _data()
    model = _bn_model(keras_reg.layers.BatchNormalization)
    fresh = len(model.variables)
    _fit(model, [StochasticWeightAveraging(0, data=x)], 2)
    assert len(model.variables) == fresh
    restored = assert_model_save_round_trip(model, x, tmp_path)
    assert len(restored.weights) == len(model.weights)


def test_config_round_trip_leaves_data_out():
    swa = StochasticWeightAveraging(
        3, frequency=2, update_bn=False, data=np.ones((4, 3)), batch_size=8, verbose=1
    )
    assert swa.get_config() == {
        "start_epoch": 3,
        "frequency": 2,
        "update_bn": False,
        "batch_size": 8,
        "verbose": 1,
    }
    assert assert_config_round_trip(swa).data is None
    assert_json_round_trip(swa)


@pytest.mark.parametrize(
    "kwargs, name, expected",
    [
        ({"start_epoch": -1}, "start_epoch", "an int >= 0"),
        ({"start_epoch": True}, "start_epoch", "an int >= 0"),
        ({"start_epoch": 1.0}, "start_epoch", "an int >= 0"),
        ({"frequency": 0}, "frequency", "an int >= 1"),
        ({"update_bn": 1}, "update_bn", "a bool"),
        ({"batch_size": 0}, "batch_size", "an int >= 1"),
        ({"data": "x.npy"}, "data", "None, arrays or an iterable of batches"),
        ({"data": 3}, "data", "None, arrays or an iterable of batches"),
        ({"verbose": "yes"}, "verbose", "a bool or a number"),
    ],
)
def test_invalid_arguments_raise_the_package_message(kwargs, name, expected):
    arguments = {"start_epoch": 0, **kwargs}
    message = raised_message(lambda: StochasticWeightAveraging(**arguments))
    assert message == invalid_message(name, expected, kwargs[name])
