"""keras_reg.callbacks.EarlyStopping as a drop-in for Keras's (issue 2).

Behaviour is driven by `model.fit` on tiny data with a scripted metric, and
compared with `keras.callbacks.EarlyStopping` as an oracle on the same metric
sequences. Robustness features (issue 5) are in test_early_stopping_robust.py.
"""

import math
import warnings

import keras
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keras_reg.callbacks import EarlyStopping
from tests.helpers import assert_config_round_trip, assert_json_round_trip

KERAS_ARGUMENTS = (
    "monitor",
    "min_delta",
    "patience",
    "verbose",
    "mode",
    "baseline",
    "restore_best_weights",
    "start_from_epoch",
)


class ScriptedMetric(keras.callbacks.Callback):
    """Writes `values[epoch]` into the epoch logs under `name`.

    Listed before the callback under test, it runs first on the same logs
    dict, so the monitored sequence is fixed whatever the model learns.
    """

    def __init__(self, name, values):
        super().__init__()
        self.name = name
        self.values = list(values)

    def on_epoch_end(self, epoch, logs=None):
        logs[self.name] = float(self.values[epoch])


class WeightRecorder(keras.callbacks.Callback):
    """Keeps an independent copy of all model weights at each epoch end."""

    def __init__(self):
        super().__init__()
        self.weights = {}

    def on_epoch_end(self, epoch, logs=None):
        self.weights[epoch] = [np.array(w, copy=True) for w in self.model.get_weights()]


def _data(n=32, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3)).astype("float32")
    y = (x @ np.array([[1.0], [-2.0], [0.5]], dtype="float32")).astype("float32")
    return x, y


def _model(metrics=None):
    model = keras.Sequential(
        [
            keras.Input((3,)),
            keras.layers.Dense(4),
            keras.layers.BatchNormalization(),
            keras.layers.Dense(1),
        ]
    )
    model.compile(optimizer="sgd", loss="mse", metrics=metrics)
    return model


def _fit_scripted(callback, values, *, epochs=None, name="score", model=None):
    """Fits a tiny model whose `name` log follows `values`; returns history."""
    model = model or _model()
    x, y = _data()
    recorder = WeightRecorder()
    history = model.fit(
        x,
        y,
        batch_size=16,
        epochs=epochs or len(values),
        verbose=0,
        shuffle=False,
        callbacks=[ScriptedMetric(name, values), recorder, callback],
    )
    return model, history, recorder


def _summary(callback):
    return (callback.stopped_epoch, callback.best, callback.best_epoch, callback.wait)


def _run_both(values, **kwargs):
    """Fits with ours; drives Keras's with the same epoch logs as the oracle."""
    ours = EarlyStopping(monitor="score", **kwargs)
    theirs = keras.callbacks.EarlyStopping(monitor="score", **kwargs)
    _, ours_history, _ = _fit_scripted(ours, values)
    theirs_last_epoch = _drive(theirs, _built_model(), values)
    assert len(ours_history.history["loss"]) == theirs_last_epoch + 1
    assert _summary(ours) == _summary(theirs)
    return ours, len(ours_history.history["loss"])


# ---------------------------------------------------------------------------
# Behaviour in model.fit, with Keras's callback as the oracle.


def test_patience_stops_after_patience_epochs_without_improvement():
    values = [5.0, 4.0, 3.0, 3.5, 3.2, 3.1, 1.0, 0.5]
    ours, epochs_run = _run_both(values, mode="min", patience=3)
    # Best 3.0 at epoch 2; epochs 3, 4, 5 do not improve: wait hits 3 at 5.
    assert (ours.stopped_epoch, ours.best, ours.best_epoch) == (5, 3.0, 2)
    assert epochs_run == 6
    assert ours.stop_reason == "patience"


def test_patience_zero_stops_at_first_non_improvement():
    ours, epochs_run = _run_both([3.0, 2.0, 2.5, 1.0], mode="min", patience=0)
    assert (ours.stopped_epoch, epochs_run) == (2, 3)


def test_min_delta_ignores_improvements_not_larger_than_min_delta():
    # Each step improves by 0.25, less than min_delta=0.5.
    values = [4.0, 3.75, 3.5, 3.25, 3.0, 2.0]
    ours, epochs_run = _run_both(values, mode="min", patience=2, min_delta=0.5)
    assert (ours.stopped_epoch, ours.best, ours.best_epoch) == (2, 4.0, 0)
    assert epochs_run == 3


def test_negative_min_delta_means_its_absolute_value_as_in_keras():
    values = [4.0, 3.75, 3.5, 3.25, 3.0, 2.0]
    ours, _ = _run_both(values, mode="min", patience=2, min_delta=-0.5)
    assert ours.min_delta == 0.5
    assert ours.stopped_epoch == 2


def test_mode_max_keeps_the_highest_value():
    values = [0.1, 0.5, 0.4, 0.45, 0.3, 0.9]
    ours, epochs_run = _run_both(values, mode="max", patience=2)
    assert (ours.stopped_epoch, ours.best, ours.best_epoch) == (3, 0.5, 1)
    assert ours.monitor_op is np.greater
    assert epochs_run == 4


def test_mode_min_keeps_the_lowest_value():
    values = [0.9, 0.5, 0.6, 0.55, 0.7]
    ours, _ = _run_both(values, mode="min", patience=2)
    assert (ours.stopped_epoch, ours.best, ours.best_epoch) == (3, 0.5, 1)
    assert ours.monitor_op is np.less


def test_auto_mode_minimizes_val_loss():
    model = _model()
    x, y = _data()
    callback = EarlyStopping(monitor="val_loss", patience=5)
    model.fit(x, y, validation_data=(x, y), epochs=2, verbose=0, callbacks=[callback])
    assert callback.monitor_op is np.less


def test_auto_mode_maximizes_a_compiled_accuracy_metric():
    model = _model(metrics=["accuracy", "mae"])
    x, y = _data()
    ours = EarlyStopping(monitor="val_accuracy", patience=5)
    mae = EarlyStopping(monitor="val_mae", patience=5)
    theirs = keras.callbacks.EarlyStopping(monitor="val_accuracy", patience=5)
    model.fit(
        x,
        y,
        validation_data=(x, y),
        epochs=1,
        verbose=0,
        callbacks=[ours, mae, theirs],
    )
    assert ours.monitor_op is np.greater
    assert mae.monitor_op is np.less
    assert theirs.monitor_op is keras.ops.greater


def test_auto_mode_follows_a_metric_objects_direction():
    # AUC is a metric object whose direction is "up"; its name is "auc".
    model = _model(metrics=[keras.metrics.AUC(name="area")])
    x, y = _data()
    callback = EarlyStopping(monitor="area", patience=5)
    model.fit(x, (y > 0).astype("float32"), epochs=1, verbose=0, callbacks=[callback])
    assert callback.monitor_op is np.greater


@pytest.mark.parametrize(
    "name, expected",
    [
        ("val_auc", np.greater),
        ("custom_accuracy", np.greater),
        ("val_f1", np.greater),
        ("val_reconstruction_error", np.less),
        ("my_loss", np.less),
    ],
)
def test_auto_mode_falls_back_on_words_in_the_metric_name(name, expected):
    # No compiled metric has these names, where Keras raises.
    callback = EarlyStopping(monitor=name)
    callback.set_model(_built_model())
    callback.on_train_begin()
    callback.on_epoch_end(0, {name: 1.0})
    assert callback.monitor_op is expected


def test_auto_mode_raises_when_the_direction_cannot_be_inferred():
    callback = EarlyStopping(monitor="score")
    callback.set_model(_built_model())
    callback.on_train_begin()
    with pytest.raises(ValueError) as error:
        callback.on_epoch_end(0, {"score": 1.0})
    assert str(error.value) == (
        "EarlyStopping cannot tell whether `score` should be maximized or "
        'minimized. Pass mode="max" to keep the highest value or mode="min" to '
        "keep the lowest."
    )


def test_baseline_stops_when_no_epoch_beats_it():
    # Epochs 0 and 1 improve but stay above the baseline 1.0, so wait is not
    # reset (as in Keras, the stop check runs only on epochs that do not
    # improve): epoch 2 brings wait to 3 and stops. Without the baseline, wait
    # would be 1 there.
    values = [3.0, 2.5, 2.6, 2.7, 0.5]
    ours, epochs_run = _run_both(values, mode="min", patience=3, baseline=1.0)
    assert (ours.stopped_epoch, ours.best, ours.best_epoch) == (2, 2.5, 1)
    assert epochs_run == 3


def test_baseline_beaten_resets_wait():
    values = [3.0, 0.9, 1.0, 0.95, 0.8]
    ours, epochs_run = _run_both(values, mode="min", patience=2, baseline=1.0)
    assert (ours.stopped_epoch, ours.best, ours.best_epoch) == (3, 0.9, 1)
    assert epochs_run == 4


def test_start_from_epoch_ignores_warm_up_epochs():
    # Epochs 0-2 are warm-up: their low values are never the best.
    values = [0.1, 0.1, 0.1, 3.0, 2.0, 2.5, 2.6, 1.0]
    ours, epochs_run = _run_both(values, mode="min", patience=2, start_from_epoch=3)
    assert (ours.stopped_epoch, ours.best, ours.best_epoch) == (6, 2.0, 4)
    assert epochs_run == 7


def test_restores_weights_of_the_best_epoch_when_stopped_early():
    values = [5.0, 4.0, 2.0, 3.0, 3.5, 3.6]
    callback = EarlyStopping(
        monitor="score", mode="min", patience=2, restore_best_weights=True
    )
    model, _, recorder = _fit_scripted(callback, values)
    assert callback.stopped_epoch == 4 and callback.best_epoch == 2
    # All weights, BatchNormalization moving statistics included, are those
    # recorded at the end of epoch 2, bit for bit.
    assert len(model.get_weights()) == 8
    for restored, recorded in zip(
        model.get_weights(), recorder.weights[2], strict=True
    ):
        np.testing.assert_array_equal(restored, recorded)
    assert not np.array_equal(recorder.weights[4][0], recorder.weights[2][0])


def test_restores_best_weights_even_when_not_stopped_early():
    values = [5.0, 1.0, 3.0, 4.0]
    callback = EarlyStopping(
        monitor="score", mode="min", patience=10, restore_best_weights=True
    )
    model, history, recorder = _fit_scripted(callback, values)
    assert len(history.history["loss"]) == 4
    assert callback.stopped_epoch == 0 and callback.stop_reason == "completed"
    for restored, recorded in zip(
        model.get_weights(), recorder.weights[1], strict=True
    ):
        np.testing.assert_array_equal(restored, recorded)


def test_without_restore_best_weights_keeps_the_last_weights():
    values = [5.0, 1.0, 3.0, 4.0]
    callback = EarlyStopping(monitor="score", mode="min", patience=1)
    model, _, recorder = _fit_scripted(callback, values)
    assert callback.best_weights is None
    for final, recorded in zip(model.get_weights(), recorder.weights[2], strict=True):
        np.testing.assert_array_equal(final, recorded)


def test_reuse_across_two_fit_calls_resets_state():
    callback = EarlyStopping(
        monitor="score", mode="min", patience=1, restore_best_weights=True
    )
    model = _model()
    _, first, _ = _fit_scripted(callback, [3.0, 1.0, 2.0, 2.5, 0.1], model=model)
    assert len(first.history["loss"]) == 3
    assert (callback.stopped_epoch, callback.best, callback.best_epoch) == (2, 1.0, 1)
    # The second fit starts from scratch: the old best (1.0) is forgotten.
    _, second, recorder = _fit_scripted(callback, [9.0, 8.0, 7.0, 7.5], model=model)
    assert len(second.history["loss"]) == 4
    assert (callback.stopped_epoch, callback.best, callback.best_epoch) == (3, 7.0, 2)
    for restored, recorded in zip(
        model.get_weights(), recorder.weights[2], strict=True
    ):
        np.testing.assert_array_equal(restored, recorded)


def test_verbose_prints_keras_messages_with_the_reason(capsys):
    values = [5.0, 4.0, 2.0, 3.0, 3.5]
    callback = EarlyStopping(
        monitor="score",
        mode="min",
        patience=2,
        min_delta=0.001,
        verbose=1,
        restore_best_weights=True,
    )
    _fit_scripted(callback, values)
    assert capsys.readouterr().out == (
        "Epoch 5: early stopping: score did not improve by more than 0.001 for "
        "2 epochs (best 2.0000 at epoch 3).\n"
        "Restoring model weights from the end of the best epoch: 3.\n"
    )


def test_warns_when_the_monitored_metric_is_missing():
    callback = EarlyStopping(monitor="val_missing", mode="min")
    callback.set_model(_model())
    callback.on_train_begin()
    with pytest.warns(UserWarning) as record:
        callback.on_epoch_end(0, {"loss": 1.0, "mae": 2.0})
    assert [str(w.message) for w in record] == [
        "Early stopping conditioned on metric `val_missing` which is not "
        "available. Available metrics are: loss,mae"
    ]
    assert callback.best is None and callback.wait == 0


def test_public_attributes_match_keras_before_training():
    ours = EarlyStopping(baseline=0.5, patience=3)
    theirs = keras.callbacks.EarlyStopping(baseline=0.5, patience=3)
    for name in ("best", "wait", "stopped_epoch", "monitor_op", "best_weights"):
        assert getattr(ours, name) == getattr(theirs, name), name
    for name in KERAS_ARGUMENTS:
        assert getattr(ours, name) == getattr(theirs, name), name


# ---------------------------------------------------------------------------
# Keras's callback as an oracle, driven directly with epoch logs.


def _drive(callback, model, values):
    callback.set_model(model)
    model.stop_training = False
    callback.on_train_begin()
    for epoch, value in enumerate(values):
        callback.on_epoch_end(epoch, {"score": value})
        if model.stop_training:
            break
    callback.on_train_end()
    return epoch


def _built_model():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    return model


def _assert_same_as_keras(values, **kwargs):
    model = _built_model()
    ours = EarlyStopping(monitor="score", **kwargs)
    theirs = keras.callbacks.EarlyStopping(monitor="score", **kwargs)
    last_ours = _drive(ours, model, values)
    last_theirs = _drive(theirs, model, values)
    assert last_ours == last_theirs
    assert ours.stopped_epoch == theirs.stopped_epoch
    assert ours.best_epoch == theirs.best_epoch
    assert ours.wait == theirs.wait
    if theirs.best is None or ours.best is None:
        assert ours.best is theirs.best
    else:
        # Both hold the monitored value itself, as a Python float.
        assert ours.best == float(theirs.best)


def test_check_finite_false_matches_keras_even_on_nan():
    # Keras makes a NaN in the first epoch the best forever; with
    # check_finite=False ours reproduces exactly that.
    values = [math.nan, 1.0, 0.5, 0.2]
    model = _built_model()
    ours = EarlyStopping(monitor="score", mode="min", patience=2, check_finite=False)
    theirs = keras.callbacks.EarlyStopping(monitor="score", mode="min", patience=2)
    _drive(ours, model, values)
    _drive(theirs, model, values)
    assert ours.stopped_epoch == theirs.stopped_epoch == 2
    assert math.isnan(ours.best) and math.isnan(float(theirs.best))


# Values on a grid of quarters are exact in float32 and float64, so Keras's
# float32 comparison and ours (float64) agree on every pair.
_grid = st.integers(min_value=0, max_value=16).map(lambda i: i / 4)


@settings(max_examples=40, deadline=None)
@given(
    values=st.lists(_grid, min_size=1, max_size=12),
    patience=st.integers(min_value=0, max_value=3),
    min_delta=st.sampled_from([0.0, 0.25, 0.5]),
    mode=st.sampled_from(["min", "max"]),
    baseline=st.none() | _grid,
    start_from_epoch=st.integers(min_value=0, max_value=3),
    restore_best_weights=st.booleans(),
)
def test_matches_keras_on_random_metric_sequences(
    values, patience, min_delta, mode, baseline, start_from_epoch, restore_best_weights
):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _assert_same_as_keras(
            values,
            patience=patience,
            min_delta=min_delta,
            mode=mode,
            baseline=baseline,
            start_from_epoch=start_from_epoch,
            restore_best_weights=restore_best_weights,
        )


# ---------------------------------------------------------------------------
# Configuration.


def test_get_config_returns_exactly_the_constructor_arguments():
    callback = EarlyStopping(
        monitor="val_accuracy",
        min_delta=0.01,
        patience=3,
        verbose=1,
        mode="max",
        baseline=0.5,
        restore_best_weights=True,
        start_from_epoch=2,
    )
    config = callback.get_config()
    assert tuple(config)[: len(KERAS_ARGUMENTS)] == KERAS_ARGUMENTS
    assert config == {
        "monitor": "val_accuracy",
        "min_delta": 0.01,
        "patience": 3,
        "verbose": 1,
        "mode": "max",
        "baseline": 0.5,
        "restore_best_weights": True,
        "start_from_epoch": 2,
        "check_finite": True,
        "stopping_threshold": None,
        "divergence_threshold": None,
        "handle_interrupt": True,
        "checkpoint_path": None,
    }


def test_config_and_json_round_trip():
    callback = EarlyStopping(
        monitor="loss",
        patience=2,
        baseline=1.5,
        stopping_threshold=0.01,
        checkpoint_path="best.weights.h5",
    )
    assert_config_round_trip(callback)
    restored = assert_json_round_trip(callback)
    assert isinstance(restored, EarlyStopping)


def test_registered_under_the_package_name():
    assert keras.saving.get_registered_name(EarlyStopping) == "keras_reg>EarlyStopping"


def test_positional_arguments_are_keras_order():
    args = ("loss", 0.1, 2, 1, "min", 0.5, True, 3)
    ours = EarlyStopping(*args)
    theirs = keras.callbacks.EarlyStopping(*args)
    for name in KERAS_ARGUMENTS:
        assert getattr(ours, name) == getattr(theirs, name), name


# ---------------------------------------------------------------------------
# Bad input: the whole message.


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"monitor": 3}, "Expected a non-empty string. Received: monitor=3"),
        ({"monitor": ""}, "Expected a non-empty string. Received: monitor=''"),
        ({"monitor": None}, "Expected a non-empty string. Received: monitor=None"),
        ({"min_delta": math.nan}, "Expected a finite float. Received: min_delta=nan"),
        ({"min_delta": math.inf}, "Expected a finite float. Received: min_delta=inf"),
        ({"min_delta": True}, "Expected a finite float. Received: min_delta=True"),
        ({"min_delta": "0.1"}, "Expected a finite float. Received: min_delta='0.1'"),
        ({"patience": -1}, "Expected an int >= 0. Received: patience=-1"),
        ({"patience": 1.5}, "Expected an int >= 0. Received: patience=1.5"),
        ({"patience": True}, "Expected an int >= 0. Received: patience=True"),
        ({"patience": None}, "Expected an int >= 0. Received: patience=None"),
        ({"verbose": -1}, "Expected an int >= 0. Received: verbose=-1"),
        ({"verbose": True}, "Expected an int >= 0. Received: verbose=True"),
        (
            {"mode": "maximum"},
            'Expected one of "auto", "min", "max". Received: mode=\'maximum\'',
        ),
        ({"mode": None}, 'Expected one of "auto", "min", "max". Received: mode=None'),
        ({"baseline": math.nan}, "Expected a finite float. Received: baseline=nan"),
        ({"baseline": -math.inf}, "Expected a finite float. Received: baseline=-inf"),
        ({"baseline": False}, "Expected a finite float. Received: baseline=False"),
        (
            {"restore_best_weights": 1},
            "Expected a bool. Received: restore_best_weights=1",
        ),
        (
            {"start_from_epoch": -2},
            "Expected an int >= 0. Received: start_from_epoch=-2",
        ),
        (
            {"start_from_epoch": 2.0},
            "Expected an int >= 0. Received: start_from_epoch=2.0",
        ),
    ],
)
def test_invalid_keras_argument_raises_value_error(kwargs, message):
    (name,) = kwargs
    with pytest.raises(ValueError) as error:
        EarlyStopping(**kwargs)
    assert str(error.value) == (
        f"Invalid value received for argument `{name}`. {message}"
    )


def test_from_config_validates_too():
    config = EarlyStopping().get_config()
    config["patience"] = -3
    with pytest.raises(ValueError) as error:
        EarlyStopping.from_config(config)
    assert str(error.value) == (
        "Invalid value received for argument `patience`. Expected an int >= 0. "
        "Received: patience=-3"
    )


def test_docstring_example_runs():
    import doctest

    from keras_reg.callbacks import early_stopping

    results = doctest.testmod(early_stopping, optionflags=doctest.ELLIPSIS)
    assert results.attempted > 0 and results.failed == 0
