"""keras_reg.callbacks.EarlyStopping as a drop-in for Keras's (issue 2).

Behaviour is driven by `model.fit` on tiny data with a scripted metric, and
compared with `keras.callbacks.EarlyStopping` as an oracle on the same metric
sequences.
"""

import math
import warnings

import keras
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keras_reg.callbacks import EarlyStopping
from tests.callback_helpers import (
    ScriptedMetric,
    WeightRecorder,
    assert_weights_equal,
    data,
    fit_scripted,
    tiny_model,
)
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


def _summary(callback):
    return (callback.stopped_epoch, callback.best, callback.best_epoch, callback.wait)


def _run_both(values, **kwargs):
    """Fits with ours; drives Keras's with the same epoch logs as the oracle."""
    ours = EarlyStopping(monitor="score", **kwargs)
    theirs = keras.callbacks.EarlyStopping(monitor="score", **kwargs)
    _, ours_history, _ = fit_scripted(ours, values)
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
    assert EarlyStopping(min_delta=-0.5).min_delta == 0.5
    ours, _ = _run_both(values, mode="min", patience=2, min_delta=-0.5)
    assert ours.stopped_epoch == 2
    assert ours.get_config()["min_delta"] == 0.5


@pytest.mark.parametrize("mode, sign", [("min", -1), ("max", 1)])
def test_min_delta_turns_negative_once_the_direction_is_min_as_in_keras(mode, sign):
    # Keras stores abs(min_delta) and negates it when it learns, at the first
    # epoch end, that the monitor is minimized; a second fit does not negate
    # it again.
    model = _built_model()
    ours = EarlyStopping(monitor="score", mode=mode, min_delta=0.25)
    theirs = keras.callbacks.EarlyStopping(monitor="score", mode=mode, min_delta=0.25)
    assert ours.min_delta == theirs.min_delta == 0.25
    for _ in range(2):
        _drive(ours, model, [1.0, 2.0])
        _drive(theirs, model, [1.0, 2.0])
        assert ours.min_delta == theirs.min_delta == sign * 0.25


def test_mode_max_keeps_the_highest_value():
    values = [0.1, 0.5, 0.4, 0.45, 0.3, 0.9]
    ours, epochs_run = _run_both(values, mode="max", patience=2)
    assert (ours.stopped_epoch, ours.best, ours.best_epoch) == (3, 0.5, 1)
    assert ours.monitor_op is keras.ops.greater
    assert epochs_run == 4


def test_mode_min_keeps_the_lowest_value():
    values = [0.9, 0.5, 0.6, 0.55, 0.7]
    ours, _ = _run_both(values, mode="min", patience=2)
    assert (ours.stopped_epoch, ours.best, ours.best_epoch) == (3, 0.5, 1)
    assert ours.monitor_op is keras.ops.less


def test_auto_mode_minimizes_val_loss():
    model = tiny_model()
    x, y = data()
    callback = EarlyStopping(monitor="val_loss", patience=5)
    model.fit(x, y, validation_data=(x, y), epochs=2, verbose=0, callbacks=[callback])
    assert callback.monitor_op is keras.ops.less


def test_auto_mode_maximizes_a_compiled_accuracy_metric():
    model = tiny_model(metrics=["accuracy", "mae"])
    x, y = data()
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
    assert ours.monitor_op is theirs.monitor_op is keras.ops.greater
    assert mae.monitor_op is keras.ops.less


def test_auto_mode_follows_a_metric_objects_direction():
    # AUC is a metric object whose direction is "up"; its name is "auc".
    model = tiny_model(metrics=[keras.metrics.AUC(name="area")])
    x, y = data()
    callback = EarlyStopping(monitor="area", patience=5)
    model.fit(x, (y > 0).astype("float32"), epochs=1, verbose=0, callbacks=[callback])
    assert callback.monitor_op is keras.ops.greater


def test_auto_mode_minimizes_a_metric_made_of_a_keras_loss_like_keras():
    model = tiny_model(metrics=[keras.losses.huber, keras.losses.cosine_similarity])
    x, y = data()
    names = ("huber", "val_cosine_similarity")
    ours = [EarlyStopping(monitor=name, patience=5) for name in names]
    theirs = [keras.callbacks.EarlyStopping(monitor=name, patience=5) for name in names]
    model.fit(
        x, y, validation_data=(x, y), epochs=1, verbose=0, callbacks=[*ours, *theirs]
    )
    for mine, keras_callback in zip(ours, theirs, strict=True):
        assert mine.monitor_op is keras_callback.monitor_op is keras.ops.less


@pytest.mark.parametrize(
    "name, expected",
    [
        ("val_auc", keras.ops.greater),
        ("custom_accuracy", keras.ops.greater),
        ("val_f1", keras.ops.greater),
        ("val_reconstruction_error", keras.ops.less),
        ("my_loss", keras.ops.less),
    ],
)
def test_auto_mode_falls_back_on_words_in_the_metric_name(name, expected):
    # No compiled metric has these names, where Keras raises.
    callback = EarlyStopping(monitor=name)
    callback.set_model(_built_model())
    callback.on_train_begin()
    callback.on_epoch_end(0, {name: 1.0})
    assert callback.monitor_op is expected


def test_auto_mode_raises_keras_error_when_the_direction_cannot_be_inferred():
    messages = []
    for callback_class in (EarlyStopping, keras.callbacks.EarlyStopping):
        callback = callback_class(monitor="score")
        callback.set_model(_built_model())
        callback.on_train_begin()
        with pytest.raises(ValueError) as error:
            callback.on_epoch_end(0, {"score": 1.0})
        messages.append(str(error.value))
    assert (
        messages[0]
        == messages[1]
        == (
            "EarlyStopping callback received monitor=score, but Keras isn't able to "
            "automatically determine whether that metric should be maximized or "
            "minimized. Pass `mode='max'` in order to monitor based on the highest "
            "metric value, or pass `mode='min'` in order to use the lowest value."
        )
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
    model, _, recorder = fit_scripted(callback, values)
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
    model, history, recorder = fit_scripted(callback, values)
    assert len(history.history["loss"]) == 4
    assert callback.stopped_epoch == 0 and callback.stop_reason == "completed"
    for restored, recorded in zip(
        model.get_weights(), recorder.weights[1], strict=True
    ):
        np.testing.assert_array_equal(restored, recorded)


def test_without_restore_best_weights_keeps_the_last_weights():
    values = [5.0, 1.0, 3.0, 4.0]
    callback = EarlyStopping(monitor="score", mode="min", patience=1)
    model, _, recorder = fit_scripted(callback, values)
    assert callback.best_weights is None
    for final, recorded in zip(model.get_weights(), recorder.weights[2], strict=True):
        np.testing.assert_array_equal(final, recorded)


def test_reuse_across_two_fit_calls_resets_state():
    callback = EarlyStopping(
        monitor="score", mode="min", patience=1, restore_best_weights=True
    )
    model = tiny_model()
    _, first, _ = fit_scripted(callback, [3.0, 1.0, 2.0, 2.5, 0.1], model=model)
    assert len(first.history["loss"]) == 3
    assert (callback.stopped_epoch, callback.best, callback.best_epoch) == (2, 1.0, 1)
    # The second fit starts from scratch: the old best (1.0) is forgotten.
    _, second, recorder = fit_scripted(callback, [9.0, 8.0, 7.0, 7.5], model=model)
    assert len(second.history["loss"]) == 4
    assert (callback.stopped_epoch, callback.best, callback.best_epoch) == (3, 7.0, 2)
    for restored, recorded in zip(
        model.get_weights(), recorder.weights[2], strict=True
    ):
        np.testing.assert_array_equal(restored, recorded)


def _printed(capsys, callback_class, values, **kwargs):
    capsys.readouterr()
    fit_scripted(callback_class(monitor="score", **kwargs), values)
    return capsys.readouterr().out


def test_verbose_prints_keras_lines_word_for_word(capsys):
    kwargs = dict(
        mode="min", patience=2, min_delta=0.001, verbose=1, restore_best_weights=True
    )
    values = [5.0, 4.0, 2.0, 3.0, 3.5]
    ours = _printed(capsys, EarlyStopping, values, **kwargs)
    theirs = _printed(capsys, keras.callbacks.EarlyStopping, values, **kwargs)
    assert (
        ours
        == theirs
        == (
            "Epoch 5: early stopping\n"
            "Restoring model weights from the end of the best epoch: 3.\n"
        )
    )


def test_verbose_true_prints_like_keras_when_restoring_without_a_stop(capsys):
    kwargs = dict(mode="min", patience=5, verbose=True, restore_best_weights=True)
    values = [5.0, 1.0, 3.0]
    ours = _printed(capsys, EarlyStopping, values, **kwargs)
    theirs = _printed(capsys, keras.callbacks.EarlyStopping, values, **kwargs)
    assert (
        ours
        == theirs
        == ("Restoring model weights from the end of the best epoch: 2.\n")
    )


def test_verbose_prints_nothing_when_nothing_happens_as_in_keras(capsys):
    kwargs = dict(mode="min", patience=5, verbose=1)
    ours = _printed(capsys, EarlyStopping, [3.0, 2.0], **kwargs)
    theirs = _printed(capsys, keras.callbacks.EarlyStopping, [3.0, 2.0], **kwargs)
    assert ours == theirs == ""


def test_verbose_goes_to_absl_logging_when_interactive_logging_is_off(capsys):
    kwargs = dict(mode="min", patience=0, verbose=1, restore_best_weights=True)
    keras.config.disable_interactive_logging()
    try:
        ours = _printed(capsys, EarlyStopping, [1.0, 2.0], **kwargs)
        theirs = _printed(capsys, keras.callbacks.EarlyStopping, [1.0, 2.0], **kwargs)
    finally:
        keras.config.enable_interactive_logging()
    assert ours == theirs == ""


def test_verbose_2_also_says_why_training_stopped(capsys):
    values = [5.0, 4.0, 2.0, 3.0, 3.5]
    out = _printed(
        capsys,
        EarlyStopping,
        values,
        mode="min",
        patience=2,
        min_delta=0.001,
        verbose=2,
        restore_best_weights=True,
    )
    assert out == (
        "Epoch 5: early stopping: score did not improve by more than 0.001 for "
        "2 epochs (best 2.0000 at epoch 3).\n"
        "Restoring model weights from the end of the best epoch: 3.\n"
    )


def test_warns_like_keras_when_the_monitored_metric_is_missing():
    messages = []
    for callback_class in (EarlyStopping, keras.callbacks.EarlyStopping):
        callback = callback_class(monitor="val_missing", mode="min")
        callback.set_model(tiny_model())
        callback.on_train_begin()
        with pytest.warns(UserWarning) as record:
            callback.on_epoch_end(0, {"loss": 1.0, "mae": 2.0})
        messages.append([str(w.message) for w in record])
        assert callback.best is None and callback.wait == 0
    assert (
        messages[0]
        == messages[1]
        == [
            "Early stopping conditioned on metric `val_missing` which is not "
            "available. Available metrics are: loss,mae"
        ]
    )


KERAS_STATE = ("best", "wait", "stopped_epoch", "monitor_op", "best_weights")


def test_public_attributes_match_keras_before_training():
    ours = EarlyStopping(baseline=0.5, patience=3)
    theirs = keras.callbacks.EarlyStopping(baseline=0.5, patience=3)
    for name in (*KERAS_STATE, *KERAS_ARGUMENTS, "model", "params"):
        assert getattr(ours, name) == getattr(theirs, name), name
    # Keras creates best_epoch in on_train_begin; ours has it from the start.
    assert ours.best_epoch == 0


def test_train_begin_resets_every_per_run_attribute_as_in_keras():
    for callback_class in (EarlyStopping, keras.callbacks.EarlyStopping):
        callback = callback_class(monitor="score", patience=3)
        callback.set_model(_built_model())
        callback.best, callback.wait, callback.stopped_epoch = 0.1, 3, 5
        callback.best_epoch, callback.best_weights = 5, object()
        callback.on_train_begin()
        assert (callback.best, callback.wait, callback.stopped_epoch) == (None, 0, 0)
        assert (callback.best_epoch, callback.best_weights) == (0, None)


# ---------------------------------------------------------------------------
# Keras's callback as an oracle, driven directly with epoch logs.


def _drive(callback, model, values):
    """Drives `callback` by hand on `{"score": value}` logs; returns the last epoch."""
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


def _same_value(a, b):
    if a is None or b is None:
        return a is b
    a, b = float(a), float(b)
    return a == b or (math.isnan(a) and math.isnan(b))


def _assert_same_as_keras(values, **kwargs):
    model = _built_model()
    ours = EarlyStopping(monitor="score", **kwargs)
    kwargs.pop("check_finite", None)
    theirs = keras.callbacks.EarlyStopping(monitor="score", **kwargs)
    last_ours = _drive(ours, model, values)
    last_theirs = _drive(theirs, model, values)
    assert last_ours == last_theirs
    assert ours.stopped_epoch == theirs.stopped_epoch
    assert ours.best_epoch == theirs.best_epoch
    assert ours.wait == theirs.wait
    # Both hold the monitored value itself, as a Python float.
    assert _same_value(ours.best, theirs.best)


def test_nan_by_default_behaves_exactly_as_in_keras():
    # A NaN never compares better, so wait grows; a NaN in the first
    # monitored epoch becomes the best and nothing improves on it.
    for values in ([1.0, math.nan, math.nan, 0.5], [math.nan, 1.0, 0.5, 0.2]):
        _assert_same_as_keras(values, mode="min", patience=2)
        _assert_same_as_keras(values, mode="min", patience=2, check_finite=False)
    model = _built_model()
    ours = EarlyStopping(monitor="score", mode="min", patience=2)
    _drive(ours, model, [math.nan, 1.0, 0.5, 0.2])
    assert ours.stopped_epoch == 2 and math.isnan(ours.best)
    assert ours.stop_reason == "patience"


def test_nan_by_default_restores_the_same_weights_as_keras():
    values = [1.0, 0.5, math.nan, math.nan, math.nan]
    models = []
    for callback_class in (EarlyStopping, keras.callbacks.EarlyStopping):
        callback = callback_class(monitor="score", patience=2, mode="min")
        callback.restore_best_weights = True
        model = DuckModel()
        _drive_duck(callback, model, values)
        models.append((model.weights, callback.stopped_epoch, callback.best_epoch))
    assert models[0] == models[1] == ("weights of epoch 1", 3, 1)


# Quarters are exact in float32 and float64; the other values are pairs that
# only float64 tells apart, float32's largest value, NaN and infinities, where
# Keras's float32 comparison must be reproduced exactly.
_values = st.one_of(
    st.integers(min_value=0, max_value=16).map(lambda i: i / 4),
    st.sampled_from(
        [
            1.0,
            1.0 + 1e-9,
            1.0 - 1e-9,
            float(np.nextafter(np.float32(1), np.float32(2))),
            float(np.nextafter(np.float32(1), np.float32(0))),
            3.4028235e38,
            math.nan,
            math.inf,
            -math.inf,
        ]
    ),
)
_baselines = st.none() | st.integers(min_value=0, max_value=16).map(lambda i: i / 4)


@settings(max_examples=60, deadline=None)
@given(
    values=st.lists(_values, min_size=1, max_size=12),
    patience=st.integers(min_value=0, max_value=3),
    min_delta=st.sampled_from([0, 0.0, 1e-9, 0.25, 0.5]),
    mode=st.sampled_from(["min", "max"]),
    baseline=_baselines | st.sampled_from([1.0 + 1e-9, math.inf, -math.inf]),
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


_EDGE_VALUES = (
    0.0,
    0.3,
    0.30000001,
    1.0,
    1.0 + 1e-9,
    1.0 - 1e-9,
    float(np.nextafter(np.float32(1), np.float32(2))),
    3.4028235e38,
    3.5e38,
    1e39,
    1e-50,
    2e-50,
    -1e-50,
    math.nan,
    math.inf,
    -math.inf,
    1,
    np.float32(0.3),
    np.float64(0.30000001),
)


@pytest.mark.parametrize("mode", ["min", "max"])
@pytest.mark.parametrize("min_delta", [0, 1e-9, 0.1])
def test_is_improvement_agrees_with_keras_on_edge_values(mode, min_delta):
    model = _built_model()
    ours = EarlyStopping(monitor="score", mode=mode, min_delta=min_delta)
    theirs = keras.callbacks.EarlyStopping(
        monitor="score", mode=mode, min_delta=min_delta
    )
    for callback in (ours, theirs):
        callback.set_model(model)
        callback._set_monitor_op()
    for value in _EDGE_VALUES:
        for reference in _EDGE_VALUES:
            try:
                expected = bool(theirs._is_improvement(value, reference))
            except ValueError:
                # TensorFlow cannot make a float32 tensor of 1e39: Keras
                # raises there, and has no answer to compare with.
                continue
            assert ours._is_improvement(value, reference) is expected, (
                value,
                reference,
            )


# ---------------------------------------------------------------------------
# best_weights and models that only offer get_weights / set_weights.


class DuckModel:
    """A model in name only: `get_weights`, `set_weights`, `stop_training`.

    Its "weights" are a label; `weights` is a plain attribute, not a list of
    Keras variables.
    """

    def __init__(self):
        self.stop_training = False
        self.weights = "initial weights"

    def get_weights(self):
        return self.weights

    def set_weights(self, weights):
        self.weights = weights


def _drive_duck(callback, model, values, *, weights=None):
    """Drives `callback` through the callback API; weights change each epoch."""
    weights = weights or (lambda epoch: f"weights of epoch {epoch}")
    callback.set_model(model)
    callback.on_train_begin()
    for epoch, value in enumerate(values):
        model.set_weights(weights(epoch))
        callback.on_epoch_end(epoch, {"score": value})
        if model.stop_training:
            break
    callback.on_train_end()
    return epoch


@pytest.mark.parametrize(
    "values, kwargs",
    [
        ([0.2, 0.15, 0.1, 0.11, 0.12], dict(patience=2)),
        ([0.9, 0.8, 0.7, 0.71, 0.72, 0.73], dict(patience=5, baseline=0.5)),
        ([0.3, 0.2, 0.25, 0.1], dict(patience=10)),
        ([0.3, 0.2, 0.25, 0.1, 0.4, 0.5], dict(patience=1, start_from_epoch=2)),
    ],
)
def test_duck_typed_model_is_stopped_and_restored_as_by_keras(values, kwargs):
    outcomes = []
    for callback_class in (EarlyStopping, keras.callbacks.EarlyStopping):
        model = DuckModel()
        callback = callback_class(
            monitor="score", mode="min", restore_best_weights=True, **kwargs
        )
        last = _drive_duck(callback, model, values)
        outcomes.append(
            (last, callback.stopped_epoch, callback.best_epoch, model.weights)
        )
    assert outcomes[0] == outcomes[1]


def test_duck_typed_model_with_array_weights_gets_them_back():
    rng = np.random.default_rng(0)
    per_epoch = [[rng.normal(size=(3, 2)), rng.normal(size=2)] for _ in range(5)]
    restored = []
    for callback_class in (EarlyStopping, keras.callbacks.EarlyStopping):
        model = DuckModel()
        callback = callback_class(
            monitor="score", mode="max", patience=1, restore_best_weights=True
        )
        _drive_duck(
            callback,
            model,
            [0.1, 0.5, 0.4, 0.3, 0.9],
            weights=lambda epoch: [np.copy(w) for w in per_epoch[epoch]],
        )
        restored.append(model.weights)
    for ours, theirs, expected in zip(*restored, per_epoch[1], strict=True):
        np.testing.assert_array_equal(ours, expected)
        np.testing.assert_array_equal(theirs, expected)


def test_keras_model_with_its_own_get_and_set_weights_has_them_called():
    # A model that overrides get_weights/set_weights is treated as Keras
    # treats it: its methods, not its variables, are the weights.
    calls = []

    class Wrapped(keras.Sequential):
        def get_weights(self):
            calls.append("get")
            return super().get_weights()

        def set_weights(self, weights):
            calls.append("set")
            super().set_weights(weights)

    model = Wrapped([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    callback = EarlyStopping(
        monitor="score", mode="min", patience=5, restore_best_weights=True
    )
    _, _, recorder = fit_scripted(callback, [3.0, 1.0, 2.0], model=model)
    assert calls.count("set") == 1 and "get" in calls
    for restored, recorded in zip(
        model.get_weights(), recorder.weights[1], strict=True
    ):
        np.testing.assert_array_equal(restored, recorded)


def test_best_weights_is_assignable_and_the_assigned_value_is_restored():
    values = [3.0, 1.0, 2.0, 2.5]
    model = tiny_model()
    replacement = [np.full(w.shape, 0.5, w.dtype) for w in model.get_weights()]

    class Replace(keras.callbacks.Callback):
        def __init__(self, target):
            super().__init__()
            self.target = target

        def on_epoch_end(self, epoch, logs=None):
            if epoch == 2:
                self.target.best_weights = replacement

    results = []
    for callback_class in (EarlyStopping, keras.callbacks.EarlyStopping):
        model = tiny_model()
        callback = callback_class(
            monitor="score", mode="min", patience=10, restore_best_weights=True
        )
        x, y = data()
        model.fit(
            x,
            y,
            epochs=len(values),
            verbose=0,
            callbacks=[ScriptedMetric("score", values), callback, Replace(callback)],
        )
        assert callback.best_weights is replacement
        results.append(model.get_weights())
    for ours, theirs, expected in zip(*results, replacement, strict=True):
        np.testing.assert_array_equal(ours, expected)
        np.testing.assert_array_equal(theirs, expected)


def test_best_weights_holds_the_best_epochs_arrays_like_keras():
    values = [3.0, 1.0, 2.0]
    held = []
    for callback_class in (EarlyStopping, keras.callbacks.EarlyStopping):
        callback = callback_class(
            monitor="score", mode="min", patience=10, restore_best_weights=True
        )
        _, _, recorder = fit_scripted(callback, values)
        assert isinstance(callback.best_weights, list)
        held.append([np.array(w, copy=True) for w in callback.best_weights])
        for kept, recorded in zip(held[-1], recorder.weights[1], strict=True):
            np.testing.assert_array_equal(kept, recorded)
    assert len(held[0]) == len(held[1])


def test_best_weights_set_to_none_takes_the_next_epoch_as_keras_does():
    values = [0.5, 0.4, 0.6, 0.7, 0.8]
    outcomes = []
    for callback_class in (EarlyStopping, keras.callbacks.EarlyStopping):
        model = DuckModel()
        callback = callback_class(
            monitor="score", mode="min", patience=10, restore_best_weights=True
        )
        callback.set_model(model)
        callback.on_train_begin()
        for epoch, value in enumerate(values):
            model.set_weights(f"weights of epoch {epoch}")
            callback.on_epoch_end(epoch, {"score": value})
            if epoch == 2:
                callback.best_weights = None
        callback.on_train_end()
        outcomes.append((callback.best_epoch, model.weights))
    assert outcomes[0] == outcomes[1] == (3, "weights of epoch 3")


def test_default_stop_is_the_same_as_keras_for_a_never_built_sequential():
    # Keras's own style of test: an empty Sequential driven by hand.
    losses = [10.0, 9.0, 8.0, 9.0, 8.9, 8.8, 8.7, 8.6, 8.5]
    for patience in range(4):
        stopped = []
        for callback_class in (EarlyStopping, keras.callbacks.EarlyStopping):
            callback = callback_class(monitor="loss", patience=patience)
            callback.set_model(keras.Sequential())
            callback.model.compile(loss="mse", optimizer="sgd")
            callback.on_train_begin()
            for epoch, loss in enumerate(losses):
                callback.on_epoch_end(epoch, {"loss": loss})
                if callback.model.stop_training:
                    break
            stopped.append(callback.stopped_epoch)
        assert stopped[0] == stopped[1] == max(patience, 1) + 2


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
        "check_finite": False,
        "stopping_threshold": None,
        "divergence_threshold": None,
        "handle_interrupt": False,
        "checkpoint_path": None,
    }


def test_new_arguments_default_to_keras_behaviour():
    callback = EarlyStopping()
    assert callback.check_finite is False
    assert callback.handle_interrupt is False
    assert callback.stopping_threshold is None
    assert callback.divergence_threshold is None
    assert callback.checkpoint_path is None


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
# What Keras accepts is accepted.


@pytest.mark.parametrize(
    "kwargs",
    [
        {"verbose": True},
        {"verbose": False},
        {"verbose": 2},
        {"verbose": -1},
        {"verbose": np.int64(1)},
        {"min_delta": 0},
        {"min_delta": 1},
        {"min_delta": np.float32(0.25)},
        {"baseline": 1},
        {"baseline": np.float64(0.5)},
        {"baseline": math.inf},
        {"baseline": -math.inf},
        {"patience": 2.5},
        {"patience": 3.0},
        {"patience": math.inf},
        {"patience": np.int32(2)},
        {"restore_best_weights": 1},
        {"restore_best_weights": 0},
        {"restore_best_weights": None},
        {"restore_best_weights": np.bool_(True)},
        {"start_from_epoch": -2},
        {"start_from_epoch": 1.5},
        {"start_from_epoch": np.int64(1)},
    ],
)
def test_accepts_what_keras_accepts_and_behaves_the_same(kwargs):
    ours = EarlyStopping(**kwargs)
    theirs = keras.callbacks.EarlyStopping(**kwargs)
    for name in KERAS_ARGUMENTS:
        assert getattr(ours, name) == getattr(theirs, name), name
    values = [1.0, 0.5, 0.75, 0.6, 0.4, 0.45, 0.5, 0.55, 0.6]
    kwargs = {"mode": "min", **kwargs, "verbose": 0}
    _assert_same_as_keras(values, **kwargs)


@pytest.mark.parametrize("mode", ["MIN", "Max", "maximum", "", None, 1])
def test_unknown_mode_warns_like_keras_and_falls_back_to_auto(mode):
    messages = []
    for callback_class in (EarlyStopping, keras.callbacks.EarlyStopping):
        with pytest.warns(UserWarning) as record:
            callback = callback_class(mode=mode)
        assert callback.mode == "auto"
        messages.append([str(w.message) for w in record])
    assert (
        messages[0]
        == messages[1]
        == [f"EarlyStopping mode '{mode}' is unknown, fallback to auto mode."]
    )


def test_unknown_mode_then_infers_the_direction_as_auto_does():
    with pytest.warns(UserWarning):
        callback = EarlyStopping(monitor="loss", mode="MIN")
    callback.set_model(_built_model())
    callback.on_train_begin()
    callback.on_epoch_end(0, {"loss": 1.0})
    assert callback.monitor_op is keras.ops.less


# ---------------------------------------------------------------------------
# Bad input: the whole message. Each refusal is a value Keras takes silently
# and that can only be a mistake which changes what training does.


@pytest.mark.parametrize(
    "kwargs, message",
    [
        # Never matches a key of the logs (and `mode="auto"` crashes in Keras).
        ({"monitor": 3}, "Expected a non-empty string. Received: monitor=3"),
        ({"monitor": ""}, "Expected a non-empty string. Received: monitor=''"),
        ({"monitor": None}, "Expected a non-empty string. Received: monitor=None"),
        # With NaN or an infinite delta, no epoch ever counts as an improvement.
        ({"min_delta": math.nan}, "Expected a finite float. Received: min_delta=nan"),
        ({"min_delta": math.inf}, "Expected a finite float. Received: min_delta=inf"),
        # Keras reads True as 1 and a string fails only inside abs().
        ({"min_delta": True}, "Expected a finite float. Received: min_delta=True"),
        ({"min_delta": "0.1"}, "Expected a finite float. Received: min_delta='0.1'"),
        # Keras treats a negative patience as 0 (often meant as "no limit")
        # and a NaN one as "never stop".
        ({"patience": -1}, "Expected an int or float >= 0. Received: patience=-1"),
        (
            {"patience": math.nan},
            "Expected an int or float >= 0. Received: patience=nan",
        ),
        ({"patience": True}, "Expected an int or float >= 0. Received: patience=True"),
        ({"patience": None}, "Expected an int or float >= 0. Received: patience=None"),
        ({"verbose": "1"}, "Expected a bool or a number. Received: verbose='1'"),
        ({"verbose": None}, "Expected a bool or a number. Received: verbose=None"),
        # A NaN baseline is never beaten: training always stops after patience.
        (
            {"baseline": math.nan},
            "Expected None or a float that is not NaN. Received: baseline=nan",
        ),
        (
            {"baseline": False},
            "Expected None or a float that is not NaN. Received: baseline=False",
        ),
        # "False" is truthy: Keras would restore.
        (
            {"restore_best_weights": "False"},
            "Expected a bool. Received: restore_best_weights='False'",
        ),
        (
            {"restore_best_weights": 2},
            "Expected a bool. Received: restore_best_weights=2",
        ),
        # NaN silently skips the warm-up; infinity never monitors at all.
        (
            {"start_from_epoch": math.nan},
            "Expected a finite int or float. Received: start_from_epoch=nan",
        ),
        (
            {"start_from_epoch": math.inf},
            "Expected a finite int or float. Received: start_from_epoch=inf",
        ),
        (
            {"start_from_epoch": None},
            "Expected a finite int or float. Received: start_from_epoch=None",
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
        "Invalid value received for argument `patience`. Expected an int or "
        "float >= 0. Received: patience=-3"
    )


def test_docstring_example_runs():
    import doctest

    from keras_reg.callbacks import early_stopping

    results = doctest.testmod(early_stopping, optionflags=doctest.ELLIPSIS)
    assert results.attempted > 0 and results.failed == 0


class PoisonWeights(keras.callbacks.Callback):
    """Sets the first kernel to NaN at the start of epoch `epoch`."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            kernel = self.model.weights[0]
            kernel.assign(np.full(kernel.shape, np.nan, dtype="float32"))


def _fit_real_loss(callback, extra_callbacks, epochs=6):
    model = tiny_model()
    x, y = data()
    initial = [np.array(w, copy=True) for w in model.get_weights()]
    recorder = WeightRecorder()
    history = model.fit(
        x,
        y,
        batch_size=16,
        epochs=epochs,
        verbose=0,
        shuffle=False,
        callbacks=[*extra_callbacks, recorder, callback],
    )
    return model, history, recorder, initial


# ---------------------------------------------------------------------------
# check_finite.


def test_nan_loss_at_epoch_k_stops_at_once_and_restores_last_finite_best(capsys):
    callback = EarlyStopping(
        monitor="loss",
        patience=10,
        restore_best_weights=True,
        verbose=2,
        check_finite=True,
    )
    model, history, recorder, _ = _fit_real_loss(callback, [PoisonWeights(3)])
    losses = history.history["loss"]
    assert len(losses) == 4 and math.isnan(losses[3])
    assert all(math.isfinite(loss) for loss in losses[:3])
    best_epoch = int(np.argmin(losses[:3]))
    assert callback.stop_reason == "non_finite"
    assert callback.stopped_epoch == 3
    assert (callback.best, callback.best_epoch) == (losses[best_epoch], best_epoch)
    assert_weights_equal(model.get_weights(), recorder.weights[best_epoch])
    assert capsys.readouterr().out == (
        f"Epoch 4: early stopping: loss is nan (not finite) (best "
        f"{losses[best_epoch]:.4f} at epoch {best_epoch + 1}).\n"
        f"Restoring model weights from the end of the best epoch: "
        f"{best_epoch + 1}.\n"
    )


def test_nan_loss_at_epoch_zero_restores_weights_from_before_training(capsys):
    callback = EarlyStopping(
        monitor="loss",
        patience=10,
        restore_best_weights=True,
        verbose=2,
        check_finite=True,
    )
    model, history, _, initial = _fit_real_loss(callback, [PoisonWeights(0)])
    assert len(history.history["loss"]) == 1
    assert callback.stop_reason == "non_finite"
    assert callback.best is None and callback.best_weights is None
    assert_weights_equal(model.get_weights(), initial)
    assert capsys.readouterr().out == (
        "Epoch 1: early stopping: loss is nan (not finite).\n"
        "Restoring model weights from before training.\n"
    )


def test_infinite_value_stops_at_once_in_max_mode():
    callback = EarlyStopping(
        monitor="score", mode="max", patience=10, check_finite=True
    )
    _, history, _ = fit_scripted(callback, [0.1, 0.2, math.inf, 0.3])
    assert len(history.history["loss"]) == 3
    assert (callback.stop_reason, callback.best, callback.best_epoch) == (
        "non_finite",
        0.2,
        1,
    )


@pytest.mark.parametrize("kwargs", [{}, {"check_finite": False}])
def test_check_finite_false_keeps_training_through_nan_as_keras_does(kwargs):
    callback = EarlyStopping(monitor="score", mode="min", patience=1, **kwargs)
    _, history, _ = fit_scripted(callback, [1.0, math.nan, 0.5, 0.4])
    # NaN is simply not an improvement: wait reaches 1 at epoch 1 and stops.
    assert len(history.history["loss"]) == 2
    assert callback.stop_reason == "patience"


def test_check_finite_verbose_1_prints_only_keras_lines(capsys):
    callback = EarlyStopping(
        monitor="loss",
        patience=10,
        restore_best_weights=True,
        verbose=1,
        check_finite=True,
    )
    _, history, _, _ = _fit_real_loss(callback, [PoisonWeights(3)])
    best_epoch = int(np.argmin(history.history["loss"][:3]))
    assert capsys.readouterr().out == (
        "Epoch 4: early stopping\n"
        f"Restoring model weights from the end of the best epoch: {best_epoch + 1}.\n"
    )


# ---------------------------------------------------------------------------
# Thresholds and stop_reason.


@pytest.mark.parametrize(
    "mode, values, threshold, stopped",
    [
        ("min", [3.0, 2.0, 0.9, 0.5], 1.0, 2),
        ("max", [0.5, 0.7, 0.95, 0.99], 0.9, 2),
        # Equal to the threshold is not better than it.
        ("min", [3.0, 1.0, 0.5, 0.1], 1.0, 2),
    ],
)
def test_stopping_threshold_stops_once_better(mode, values, threshold, stopped):
    callback = EarlyStopping(
        monitor="score",
        mode=mode,
        patience=10,
        stopping_threshold=threshold,
        restore_best_weights=True,
    )
    model, history, recorder = fit_scripted(callback, values)
    assert len(history.history["loss"]) == stopped + 1
    assert callback.stop_reason == "stopping_threshold"
    assert (callback.stopped_epoch, callback.best_epoch) == (stopped, stopped)
    assert_weights_equal(model.get_weights(), recorder.weights[stopped])


@pytest.mark.parametrize(
    "mode, values, threshold",
    [("min", [3.0, 2.0, 11.0, 1.0], 10.0), ("max", [0.5, 0.6, 0.05, 0.9], 0.1)],
)
def test_divergence_threshold_stops_once_worse(mode, values, threshold):
    callback = EarlyStopping(
        monitor="score", mode=mode, patience=10, divergence_threshold=threshold
    )
    _, history, _ = fit_scripted(callback, values)
    assert len(history.history["loss"]) == 3
    assert callback.stop_reason == "divergence_threshold"
    assert (callback.stopped_epoch, callback.best, callback.best_epoch) == (
        2,
        values[1],
        1,
    )


def test_threshold_messages(capsys):
    for verbose in (2, 1):
        fit_scripted(
            EarlyStopping(
                monitor="score",
                mode="min",
                patience=5,
                stopping_threshold=1,
                verbose=verbose,
            ),
            [3.0, 0.5],
        )
        fit_scripted(
            EarlyStopping(
                monitor="score",
                mode="min",
                patience=5,
                divergence_threshold=5,
                verbose=verbose,
            ),
            [3.0, 6.0],
        )
    assert capsys.readouterr().out == (
        "Epoch 2: early stopping: score 0.5000 is better than stopping_threshold 1.\n"
        "Epoch 2: early stopping: score 6.0000 is worse than divergence_threshold 5.\n"
        "Epoch 2: early stopping\n"
        "Epoch 2: early stopping\n"
    )


def test_stop_reason_is_none_before_and_completed_after_a_full_run():
    callback = EarlyStopping(monitor="score", mode="min", patience=5)
    assert callback.stop_reason is None
    fit_scripted(callback, [3.0, 2.0, 1.0])
    assert (callback.stop_reason, callback.stop_message) == (
        "completed",
        "training completed all epochs",
    )


# ---------------------------------------------------------------------------
# Bad input for the new arguments.


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"check_finite": "yes"}, "Expected a bool. Received: check_finite='yes'"),
        (
            {"stopping_threshold": math.nan},
            "Expected a finite float. Received: stopping_threshold=nan",
        ),
        (
            {"divergence_threshold": math.inf},
            "Expected a finite float. Received: divergence_threshold=inf",
        ),
        (
            {"divergence_threshold": True},
            "Expected a finite float. Received: divergence_threshold=True",
        ),
        ({"handle_interrupt": 0}, "Expected a bool. Received: handle_interrupt=0"),
        (
            {"checkpoint_path": "best.h5"},
            'Expected None or a path ending in ".weights.h5". '
            "Received: checkpoint_path='best.h5'",
        ),
        (
            {"checkpoint_path": 3},
            'Expected None or a path ending in ".weights.h5". '
            "Received: checkpoint_path=3",
        ),
    ],
)
def test_invalid_new_argument_raises_value_error(kwargs, message):
    (name,) = kwargs
    with pytest.raises(ValueError) as error:
        EarlyStopping(**kwargs)
    assert str(error.value) == (
        f"Invalid value received for argument `{name}`. {message}"
    )
