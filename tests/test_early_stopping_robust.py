"""EarlyStopping never loses the best model (issue 5).

NaN epochs, thresholds, Ctrl-C, exceptions, kill -9 with an atomic checkpoint,
resuming with BackupAndRestore, and the preallocated snapshot.
"""

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import keras
import numpy as np
import pytest

from keras_reg.callbacks import EarlyStopping, _checkpoint, _snapshot
from keras_reg.callbacks._snapshot import WeightSnapshot
from tests.helpers import REPO_ROOT
from tests.test_early_stopping import (
    ScriptedMetric,
    WeightRecorder,
    _data,
    _fit_scripted,
    _model,
)


class PoisonWeights(keras.callbacks.Callback):
    """Sets the first kernel to NaN at the start of epoch `epoch`."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            kernel = self.model.weights[0]
            kernel.assign(np.full(kernel.shape, np.nan, dtype="float32"))


class RaiseAt(keras.callbacks.Callback):
    """Raises RuntimeError at the start of epoch `epoch`."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            raise RuntimeError(f"interrupting at epoch {epoch}")


def _assert_weights_equal(actual, expected):
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected, strict=True):
        np.testing.assert_array_equal(a, e)


def _fit_real_loss(callback, extra_callbacks, epochs=6):
    model = _model()
    x, y = _data()
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
    _assert_weights_equal(model.get_weights(), recorder.weights[best_epoch])
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
    _assert_weights_equal(model.get_weights(), initial)
    assert capsys.readouterr().out == (
        "Epoch 1: early stopping: loss is nan (not finite).\n"
        "Restoring model weights from before training.\n"
    )


def test_infinite_value_stops_at_once_in_max_mode():
    callback = EarlyStopping(
        monitor="score", mode="max", patience=10, check_finite=True
    )
    _, history, _ = _fit_scripted(callback, [0.1, 0.2, math.inf, 0.3])
    assert len(history.history["loss"]) == 3
    assert (callback.stop_reason, callback.best, callback.best_epoch) == (
        "non_finite",
        0.2,
        1,
    )


@pytest.mark.parametrize("kwargs", [{}, {"check_finite": False}])
def test_check_finite_false_keeps_training_through_nan_as_keras_does(kwargs):
    callback = EarlyStopping(monitor="score", mode="min", patience=1, **kwargs)
    _, history, _ = _fit_scripted(callback, [1.0, math.nan, 0.5, 0.4])
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
    model, history, recorder = _fit_scripted(callback, values)
    assert len(history.history["loss"]) == stopped + 1
    assert callback.stop_reason == "stopping_threshold"
    assert (callback.stopped_epoch, callback.best_epoch) == (stopped, stopped)
    _assert_weights_equal(model.get_weights(), recorder.weights[stopped])


@pytest.mark.parametrize(
    "mode, values, threshold",
    [("min", [3.0, 2.0, 11.0, 1.0], 10.0), ("max", [0.5, 0.6, 0.05, 0.9], 0.1)],
)
def test_divergence_threshold_stops_once_worse(mode, values, threshold):
    callback = EarlyStopping(
        monitor="score", mode=mode, patience=10, divergence_threshold=threshold
    )
    _, history, _ = _fit_scripted(callback, values)
    assert len(history.history["loss"]) == 3
    assert callback.stop_reason == "divergence_threshold"
    assert (callback.stopped_epoch, callback.best, callback.best_epoch) == (
        2,
        values[1],
        1,
    )


def test_threshold_messages(capsys):
    for verbose in (2, 1):
        _fit_scripted(
            EarlyStopping(
                monitor="score",
                mode="min",
                patience=5,
                stopping_threshold=1,
                verbose=verbose,
            ),
            [3.0, 0.5],
        )
        _fit_scripted(
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
    _fit_scripted(callback, [3.0, 2.0, 1.0])
    assert (callback.stop_reason, callback.stop_message) == (
        "completed",
        "training completed all epochs",
    )


# ---------------------------------------------------------------------------
# Exceptions and Ctrl-C in this process.


def test_user_callback_exception_restores_best_weights_before_propagating():
    previous = signal.getsignal(signal.SIGINT)
    callback = EarlyStopping(
        monitor="score", mode="min", patience=10, restore_best_weights=True
    )
    recorder = WeightRecorder()
    model = _model()
    x, y = _data()
    with pytest.raises(RuntimeError, match="^interrupting at epoch 4$"):
        with callback:
            model.fit(
                x,
                y,
                batch_size=16,
                epochs=8,
                verbose=0,
                shuffle=False,
                callbacks=[
                    RaiseAt(4),
                    ScriptedMetric("score", [3.0, 1.0, 2.0, 2.5, 0, 0, 0, 0]),
                    recorder,
                    callback,
                ],
            )
    assert callback.stop_reason == "exception"
    assert callback.stop_message == "training raised RuntimeError"
    assert callback.best_epoch == 1
    _assert_weights_equal(model.get_weights(), recorder.weights[1])
    assert signal.getsignal(signal.SIGINT) is previous


class SendSigint(keras.callbacks.Callback):
    """Sends SIGINT to this process `times` times after batch 0 of `epoch`."""

    def __init__(self, epoch, times):
        super().__init__()
        self.epoch = epoch
        self.times = times
        self.current_epoch = None

    def on_epoch_begin(self, epoch, logs=None):
        self.current_epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.current_epoch == self.epoch and batch == 0:
            for _ in range(self.times):
                os.kill(os.getpid(), signal.SIGINT)
                # Python runs the handler at its next check; give it one.
                time.sleep(0.01)


def _sigint_fit(callback, times):
    model = _model()
    x, y = _data(n=64)
    recorder = WeightRecorder()
    values = [5.0, 4.0, 3.0, 2.0, 1.0, 0.5, 0.2, 0.1]
    history = model.fit(
        x,
        y,
        batch_size=16,
        epochs=8,
        verbose=0,
        shuffle=False,
        callbacks=[
            SendSigint(3, times),
            ScriptedMetric("score", values),
            recorder,
            callback,
        ],
    )
    return model, history, recorder


@pytest.mark.skipif(
    threading.current_thread() is not threading.main_thread(),
    reason="signal handlers exist only on the main thread",
)
def test_ctrl_c_ends_the_epoch_restores_best_and_returns_history():
    def previous_handler(signum, frame):
        raise AssertionError("the previous handler must not see the first Ctrl-C")

    old = signal.signal(signal.SIGINT, previous_handler)
    try:
        callback = EarlyStopping(
            monitor="score",
            mode="min",
            patience=10,
            restore_best_weights=True,
            handle_interrupt=True,
        )
        model, history, recorder = _sigint_fit(callback, times=1)
        assert signal.getsignal(signal.SIGINT) is previous_handler
    finally:
        signal.signal(signal.SIGINT, old)
    # Epoch 3 was cut after its first batch and is not monitored: the best
    # is epoch 2, whose weights come back.
    assert len(history.history["loss"]) == 4
    assert (callback.stop_reason, callback.stopped_epoch) == ("interrupted", 3)
    assert (callback.best, callback.best_epoch) == (3.0, 2)
    _assert_weights_equal(model.get_weights(), recorder.weights[2])


@pytest.mark.skipif(
    threading.current_thread() is not threading.main_thread(),
    reason="signal handlers exist only on the main thread",
)
def test_second_ctrl_c_interrupts_at_once_and_best_is_restored():
    previous = signal.getsignal(signal.SIGINT)
    callback = EarlyStopping(
        monitor="score",
        mode="min",
        patience=10,
        restore_best_weights=True,
        handle_interrupt=True,
    )
    with pytest.raises(KeyboardInterrupt):
        with callback:
            model, _, recorder = _sigint_fit(callback, times=2)
    assert signal.getsignal(signal.SIGINT) is previous
    assert callback.stop_reason == "interrupted"
    assert callback.stop_message == "training aborted by a second Ctrl-C"
    assert callback.best_epoch == 2
    assert callback.best_weights is not None
    _assert_weights_equal(callback._fit_model.get_weights(), callback.best_weights)


_main_thread_only = pytest.mark.skipif(
    threading.current_thread() is not threading.main_thread(),
    reason="signal handlers exist only on the main thread",
)


@_main_thread_only
def test_ctrl_c_by_default_raises_keyboard_interrupt_as_keras_does():
    previous = signal.getsignal(signal.SIGINT)
    for callback_class in (EarlyStopping, keras.callbacks.EarlyStopping):
        callback = callback_class(
            monitor="score", mode="min", patience=10, restore_best_weights=True
        )
        with pytest.raises(KeyboardInterrupt):
            _sigint_fit(callback, times=1)
        assert signal.getsignal(signal.SIGINT) is previous
    assert callback.best_epoch == 2


@_main_thread_only
def test_ctrl_c_by_default_in_the_context_manager_restores_best_then_raises():
    # Restored means: after `fit` has raised, the model holds the best
    # epoch's weights. On JAX `fit` writes its training state into the
    # variables on the way out, so the restore must come after that.
    callback = EarlyStopping(
        monitor="score", mode="min", patience=10, restore_best_weights=True
    )
    recorder = WeightRecorder()
    model = _model()
    x, y = _data(n=64)
    with pytest.raises(KeyboardInterrupt):
        with callback:
            model.fit(
                x,
                y,
                batch_size=16,
                epochs=8,
                verbose=0,
                shuffle=False,
                callbacks=[
                    SendSigint(3, times=1),
                    ScriptedMetric("score", [5.0, 4.0, 3.0, 2.0, 1.0, 0, 0, 0]),
                    recorder,
                    callback,
                ],
            )
    assert (callback.stop_reason, callback.stop_message) == (
        "interrupted",
        "training interrupted (Ctrl-C)",
    )
    assert callback.best_epoch == 2
    _assert_weights_equal(model.get_weights(), recorder.weights[2])


@_main_thread_only
def test_ctrl_c_during_the_weight_copy_is_held_until_the_copy_is_complete(
    monkeypatch,
):
    armed = []
    copy = _snapshot.host_view

    def host_view(variable, *, fast=True):
        if armed:
            armed.clear()
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.01)
        return copy(variable, fast=fast)

    monkeypatch.setattr(_snapshot, "host_view", host_view)

    class ArmAt(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 2:
                armed.append(True)

    callback = EarlyStopping(
        monitor="score", mode="min", patience=10, restore_best_weights=True
    )
    recorder = WeightRecorder()
    model = _model()
    x, y = _data()
    with pytest.raises(KeyboardInterrupt):
        with callback:
            model.fit(
                x,
                y,
                batch_size=16,
                epochs=6,
                verbose=0,
                shuffle=False,
                callbacks=[
                    ScriptedMetric("score", [5.0, 4.0, 3.0, 2.0, 1.0, 0.5]),
                    recorder,
                    ArmAt(),
                    callback,
                ],
            )
    # The interrupt came while the first of eight variables was copied; all
    # eight are epoch 2's, the epoch that `best_epoch` names.
    assert not armed
    assert callback.best_epoch == 2
    _assert_weights_equal(callback.best_weights, recorder.weights[2])
    _assert_weights_equal(model.get_weights(), recorder.weights[2])


@_main_thread_only
def test_held_ctrl_c_goes_to_the_handler_in_place_afterwards():
    from keras_reg.callbacks.early_stopping import _sigint_held

    seen = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: seen.append(signum))
    try:
        with _sigint_held():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.01)
            assert seen == []
        assert seen == [signal.SIGINT]
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        with _sigint_held():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.01)
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)


@_main_thread_only
def test_after_fit_raised_outside_the_context_manager_ctrl_c_still_gets_out():
    # fit raised and on_train_end never ran, so the handler is still in
    # place: the first Ctrl-C asks for a stop that no fit will see, the second
    # raises KeyboardInterrupt and puts the previous handler back.
    previous = signal.getsignal(signal.SIGINT)
    callback = EarlyStopping(monitor="score", mode="min", handle_interrupt=True)
    model = _model()
    x, y = _data()
    with pytest.raises(RuntimeError):
        model.fit(
            x,
            y,
            epochs=3,
            verbose=0,
            callbacks=[ScriptedMetric("score", [3.0, 2.0, 1.0]), RaiseAt(1), callback],
        )
    assert signal.getsignal(signal.SIGINT) == callback._on_sigint
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(0.01)
    with pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.01)
    assert signal.getsignal(signal.SIGINT) is previous


@pytest.mark.parametrize("kwargs", [{}, {"handle_interrupt": False}])
def test_handle_interrupt_false_installs_no_handler(kwargs):
    seen = []

    class Spy(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append(signal.getsignal(signal.SIGINT))

    previous = signal.getsignal(signal.SIGINT)
    callback = EarlyStopping(monitor="score", mode="min", **kwargs)
    model = _model()
    x, y = _data()
    model.fit(
        x,
        y,
        epochs=1,
        verbose=0,
        callbacks=[ScriptedMetric("score", [1.0]), Spy(), callback],
    )
    assert seen == [previous]


def test_off_the_main_thread_no_handler_is_installed():
    seen = []
    errors = []

    class Spy(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append(signal.getsignal(signal.SIGINT))

    previous = signal.getsignal(signal.SIGINT)
    model = _model()
    x, y = _data()
    callback = EarlyStopping(monitor="score", mode="min", handle_interrupt=True)

    def train():
        try:
            model.fit(
                x,
                y,
                epochs=1,
                verbose=0,
                callbacks=[ScriptedMetric("score", [1.0]), Spy(), callback],
            )
        except BaseException as error:  # reported to the main thread below
            errors.append(error)

    thread = threading.Thread(target=train)
    thread.start()
    thread.join()
    assert errors == []
    assert seen == [previous]
    assert callback.stop_reason == "completed"


# ---------------------------------------------------------------------------
# Snapshot.


def test_snapshot_buffers_are_preallocated_and_reused_across_improvements():
    callback = EarlyStopping(
        monitor="score", mode="min", patience=10, restore_best_weights=True
    )
    seen = []

    class Watch(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            buffers = callback.best_weights
            seen.append([(id(b), b.__array_interface__["data"][0]) for b in buffers])

    model = _model()
    x, y = _data()
    recorder = WeightRecorder()
    # Five improvements in a row.
    model.fit(
        x,
        y,
        batch_size=16,
        epochs=5,
        verbose=0,
        shuffle=False,
        callbacks=[
            ScriptedMetric("score", [5.0, 4.0, 3.0, 2.0, 1.0]),
            recorder,
            callback,
            Watch(),
        ],
    )
    assert callback.best_epoch == 4
    assert len(seen) == 5 and all(ids == seen[0] for ids in seen)
    # One buffer per weight, trainable and not (BatchNormalization's moving
    # statistics), holding the last best epoch.
    assert len(callback.best_weights) == len(model.weights) == 8
    _assert_weights_equal(callback.best_weights, recorder.weights[4])


def test_snapshot_fast_path_gives_the_same_numbers_as_the_portable_path():
    model = _model()
    x, y = _data()
    model.fit(x, y, epochs=1, verbose=0)
    fast = WeightSnapshot(model.weights, fast=True)
    portable = WeightSnapshot(model.weights, fast=False)
    fast.capture(model.weights)
    portable.capture(model.weights)
    _assert_weights_equal(fast.buffers, portable.buffers)
    _assert_weights_equal(fast.buffers, model.get_weights())
    expected = [np.array(b, copy=True) for b in fast.buffers]
    model.fit(x, y, epochs=1, verbose=0)
    portable.restore(model.weights)
    _assert_weights_equal(model.get_weights(), expected)
    model.fit(x, y, epochs=1, verbose=0)
    fast.restore(model.weights)
    _assert_weights_equal(model.get_weights(), expected)


def test_fast_restore_in_slices_writes_every_row(monkeypatch):
    # A chunk smaller than one variable makes TensorFlow restore it slice by
    # slice; every row, including a short last slice, must come back.
    monkeypatch.setattr(_snapshot, "_RESTORE_CHUNK_BYTES", 40)
    variable = keras.Variable(np.zeros((7, 3), dtype="float32"))
    buffer = np.arange(21, dtype="float32").reshape(7, 3)
    _snapshot.restore_into(variable, buffer, fast=True)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(variable), buffer)


# ---------------------------------------------------------------------------
# Checkpoint file.


def test_checkpoint_holds_the_best_epoch_and_loads(tmp_path):
    path = str(tmp_path / "best.weights.h5")
    callback = EarlyStopping(
        monitor="score", mode="min", patience=2, checkpoint_path=path
    )
    _, _, recorder = _fit_scripted(callback, [3.0, 1.0, 2.0, 2.5, 0.1])
    assert _checkpoint.read_saved_epoch(path) == 1
    fresh = _model()
    fresh.load_weights(path)
    _assert_weights_equal(fresh.get_weights(), recorder.weights[1])
    assert sorted(os.listdir(tmp_path)) == [
        "best.weights.h5",
        "best.weights.h5.state.json",
    ]
    with open(path + ".state.json") as handle:
        state = json.load(handle)
    assert state == {
        "epoch": 3,
        "best": 1.0,
        "wait": 2,
        "best_epoch": 1,
        "stopped_epoch": 3,
        "stop_reason": "patience",
        "has_best_weights": False,
        "checkpoint_path": path,
        "finished": True,
    }


def test_failed_write_leaves_the_previous_checkpoint_and_no_temporary(
    tmp_path, monkeypatch
):
    path = str(tmp_path / "best.weights.h5")
    model = _model()
    _checkpoint.atomic_save_weights(model, path, epoch=1)
    before = open(path, "rb").read()

    def failing_replace(source, destination):
        raise OSError("disk full")

    monkeypatch.setattr(_checkpoint.os, "replace", failing_replace)
    model.weights[0].assign(np.zeros(model.weights[0].shape, dtype="float32"))
    with pytest.raises(OSError, match="^disk full$"):
        _checkpoint.atomic_save_weights(model, path, epoch=2)
    assert os.listdir(tmp_path) == ["best.weights.h5"]
    assert open(path, "rb").read() == before
    assert _checkpoint.read_saved_epoch(path) == 1


def test_only_the_chief_writes(tmp_path, monkeypatch):
    monkeypatch.setattr(_checkpoint, "is_chief", lambda model=None: False)
    path = str(tmp_path / "best.weights.h5")
    callback = EarlyStopping(monitor="score", mode="min", checkpoint_path=path)
    _fit_scripted(callback, [3.0, 1.0])
    assert os.listdir(tmp_path) == []


def test_is_chief_without_a_distribution():
    assert _checkpoint.is_chief() is True
    assert _checkpoint.is_chief(_model()) is True


@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="tf.distribute strategies exist only on the TensorFlow backend",
)
def test_is_chief_follows_the_models_tensorflow_strategy():
    class Extended:
        should_checkpoint = False

    class Strategy:
        extended = Extended()

    class Model:
        distribute_strategy = Strategy()

    assert _checkpoint.is_chief(Model()) is False
    import tensorflow as tf

    with tf.distribute.MirroredStrategy(["/cpu:0"]).scope():
        model = _model()
    assert _checkpoint.is_chief(model) is True


# ---------------------------------------------------------------------------
# Resuming with BackupAndRestore.


def test_resume_with_backup_and_restore_matches_an_uninterrupted_run(tmp_path):
    # Best at epoch 2, then no improvement: with patience 3, an uninterrupted
    # run stops at epoch 5 and restores epoch 2.
    values = [5.0, 4.0, 3.0, 3.5, 3.6, 3.7, 3.8, 3.9]

    def run(tag, interrupt_at):
        keras.utils.set_random_seed(7)
        model = _model()
        x, y = _data()
        backup = keras.callbacks.BackupAndRestore(str(tmp_path / f"backup_{tag}"))
        path = str(tmp_path / f"{tag}.weights.h5")

        def fit(extra):
            callback = EarlyStopping(
                monitor="score",
                mode="min",
                patience=3,
                restore_best_weights=True,
                checkpoint_path=path,
            )
            history = model.fit(
                x,
                y,
                batch_size=16,
                epochs=len(values),
                verbose=0,
                shuffle=False,
                callbacks=[*extra, ScriptedMetric("score", values), backup, callback],
            )
            return callback, history

        if interrupt_at is not None:
            with pytest.raises(RuntimeError):
                fit([RaiseAt(interrupt_at)])
        callback, history = fit([])
        return model, callback, history

    model_a, straight, history_a = run("straight", None)
    model_b, resumed, history_b = run("resumed", 4)
    assert len(history_a.history["loss"]) == 6
    # The resumed fit runs epochs 4 and 5 only.
    assert len(history_b.history["loss"]) == 2
    for name in ("stopped_epoch", "best", "best_epoch", "wait", "stop_reason"):
        assert getattr(resumed, name) == getattr(straight, name), name
    assert (straight.stopped_epoch, straight.best_epoch) == (5, 2)
    _assert_weights_equal(model_b.get_weights(), model_a.get_weights())


def test_state_round_trips_through_get_state_and_set_state():
    callback = EarlyStopping(monitor="score", mode="min", patience=3)
    _fit_scripted(callback, [3.0, 1.0, 2.0])
    state = callback.get_state()
    json.dumps(state)
    other = EarlyStopping(monitor="score", mode="min", patience=3)
    other.set_state(state)
    assert other.get_state() == state


# ---------------------------------------------------------------------------
# Subprocesses: Ctrl-C from outside, kill -9.

_CHILD_PRELUDE = """
import json, os, signal, sys, time
import keras
import numpy as np
from keras_reg.callbacks import EarlyStopping

keras.utils.set_random_seed(0)
rng = np.random.default_rng(0)
x = rng.normal(size=(64, 32)).astype("float32")
y = x[:, :1] - x[:, 1:2]

def build():
    model = keras.Sequential([
        keras.Input((32,)),
        keras.layers.Dense(128, activation="relu"),
        keras.layers.BatchNormalization(),
        keras.layers.Dense(128, activation="relu"),
        keras.layers.Dense(1),
    ])
    model.compile(optimizer="sgd", loss="mse")
    return model

class Slow(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        time.sleep(0.005)
"""


def _child_env():
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO_ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    return env


def _start_child(code, env=None):
    return subprocess.Popen(
        [sys.executable, "-u", "-c", textwrap.dedent(_CHILD_PRELUDE + code)],
        cwd=REPO_ROOT,
        env={**_child_env(), **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for_line(child, expected, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = child.stdout.readline()
        if not line:
            break
        if line.strip() == expected:
            return
    child.kill()
    raise AssertionError(f"child never printed {expected!r}: {child.stderr.read()}")


_SIGINT_CHILD = """
def previous(signum, frame):
    print("previous handler called", flush=True)

signal.signal(signal.SIGINT, previous)
model = build()

class Recorder(keras.callbacks.Callback):
    weights = {}
    def on_epoch_end(self, epoch, logs=None):
        self.weights[epoch] = [np.array(w) for w in self.model.get_weights()]
        if epoch == 2:
            print("ready", flush=True)

recorder = Recorder()
callback = EarlyStopping(monitor="loss", patience=10**6, restore_best_weights=True,
                         handle_interrupt=True)
history = model.fit(x, y, batch_size=8, epochs=10**6, verbose=0, shuffle=False,
                    callbacks=[Slow(), recorder, callback])
equal = all(np.array_equal(a, b) for a, b in
            zip(model.get_weights(), recorder.weights[callback.best_epoch]))
print(json.dumps({
    "epochs": len(history.history["loss"]),
    "stop_reason": callback.stop_reason,
    "best_epoch": callback.best_epoch,
    "losses": history.history["loss"],
    "best": callback.best,
    "restored_best": equal,
    "previous_back": signal.getsignal(signal.SIGINT) is previous,
}), flush=True)
"""


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child is POSIX")
def test_sigint_from_outside_ends_fit_normally_with_best_weights():
    child = _start_child(_SIGINT_CHILD)
    try:
        _wait_for_line(child, "ready")
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=120)
    finally:
        # A child that ignored the signal trains for 10**6 epochs: never
        # leave it running.
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 0, err
    report = json.loads(out.strip().splitlines()[-1])
    assert report["stop_reason"] == "interrupted"
    assert report["epochs"] >= 3 and report["epochs"] < 10**6
    # SIGINT lands at an arbitrary point after epoch 2's logs: either during
    # a later epoch, which is then cut and not monitored, or after this
    # callback saw the last epoch. Either way the best is the lowest loss
    # among the epochs seen in full.
    losses = report["losses"]
    assert report["best"] == losses[report["best_epoch"]]
    assert report["best"] in (min(losses[:-1]), min(losses))
    assert report["restored_best"]
    assert report["previous_back"]
    assert "previous handler called" not in out


_KILL_CHILD = """
folder = os.environ["KILL_FOLDER"]
model = build()

class Recorder(keras.callbacks.Callback):
    # Saves each epoch's weights atomically before EarlyStopping runs.
    def on_epoch_end(self, epoch, logs=None):
        target = os.path.join(folder, f"epoch_{epoch}.npz")
        np.savez(target + ".tmp.npz", *self.model.get_weights())
        os.replace(target + ".tmp.npz", target)
        if epoch == 1:
            print("started", flush=True)

class Score(keras.callbacks.Callback):
    # Improves at most epochs, not at every fourth.
    def on_epoch_end(self, epoch, logs=None):
        logs["score"] = 1000.0 - epoch if epoch % 4 else 2000.0

callback = EarlyStopping(monitor="score", mode="min", patience=10**6,
                         checkpoint_path=os.path.join(folder, "best.weights.h5"))
model.fit(x, y, batch_size=64, epochs=10**6, verbose=0,
          callbacks=[Score(), Recorder(), callback])
"""


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
def test_kill_9_leaves_a_loadable_checkpoint_of_the_best_epoch(tmp_path):
    # Each child is killed 0, 0.2 or 0.5 s after its first epoch, at an
    # arbitrary point of its write cycle (an epoch takes a few tens of ms).
    folders = []
    for index, delay in enumerate((0.0, 0.2, 0.5)):
        folder = tmp_path / f"run{index}"
        folder.mkdir()
        folders.append(folder)
        child = _start_child(_KILL_CHILD, {"KILL_FOLDER": str(folder)})
        _wait_for_line(child, "started")
        time.sleep(delay)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=60)
        assert child.returncode == -signal.SIGKILL
    for folder in folders:
        path = str(folder / "best.weights.h5")
        epoch = _checkpoint.read_saved_epoch(path)
        # The score improves at every epoch but multiples of 4 (after 0).
        assert epoch is not None and (epoch == 0 or epoch % 4 != 0)
        model = _build_kill_child_model()
        model.load_weights(path)
        with np.load(folder / f"epoch_{epoch}.npz") as recorded:
            expected = [recorded[f"arr_{i}"] for i in range(len(recorded.files))]
        _assert_weights_equal(model.get_weights(), expected)


def _build_kill_child_model():
    model = keras.Sequential(
        [
            keras.Input((32,)),
            keras.layers.Dense(128, activation="relu"),
            keras.layers.BatchNormalization(),
            keras.layers.Dense(128, activation="relu"),
            keras.layers.Dense(1),
        ]
    )
    model.compile(optimizer="sgd", loss="mse")
    return model


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
