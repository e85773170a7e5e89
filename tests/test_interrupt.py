"""Ctrl-C during fit: EarlyStopping's graceful stop, the context manager that
restores the best weights when fit raises, and the pieces in
keras_reg/callbacks/_interrupt.py on their own.
"""

import json
import os
import signal
import sys
import threading
import time

import keras
import pytest

from keras_reg.callbacks import EarlyStopping, _snapshot
from keras_reg.callbacks._interrupt import GracefulInterrupt, hold_interrupts
from tests.callback_helpers import (
    RaiseAt,
    ScriptedMetric,
    WeightRecorder,
    assert_weights_equal,
    data,
    start_child,
    tiny_model,
    wait_for_line,
)


@pytest.fixture(autouse=True)
def _python_sigint_handler():
    """Python's own Ctrl-C handler, as in a terminal: a process started in
    the background by a script inherits SIGINT ignored, and Python then
    installs none (Ctrl-C does nothing, for Keras's callbacks as for ours)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


# Exceptions and Ctrl-C in this process.


def test_user_callback_exception_restores_best_weights_before_propagating():
    previous = signal.getsignal(signal.SIGINT)
    callback = EarlyStopping(
        monitor="score", mode="min", patience=10, restore_best_weights=True
    )
    recorder = WeightRecorder()
    model = tiny_model()
    x, y = data()
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
    assert_weights_equal(model.get_weights(), recorder.weights[1])
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
    model = tiny_model()
    x, y = data(n=64)
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
    assert_weights_equal(model.get_weights(), recorder.weights[2])


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
    assert_weights_equal(callback._fit_model.get_weights(), callback.best_weights)


@pytest.mark.skipif(
    threading.current_thread() is not threading.main_thread(),
    reason="signal handlers exist only on the main thread",
)
def test_second_ctrl_c_without_the_context_manager_records_why():
    previous = signal.getsignal(signal.SIGINT)
    callback = EarlyStopping(
        monitor="score", mode="min", patience=10, handle_interrupt=True
    )
    with pytest.raises(KeyboardInterrupt):
        _sigint_fit(callback, times=2)
    assert signal.getsignal(signal.SIGINT) is previous
    assert (callback.stop_reason, callback.stop_message) == (
        "interrupted",
        "training aborted by a second Ctrl-C",
    )


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
    model = tiny_model()
    x, y = data(n=64)
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
    assert_weights_equal(model.get_weights(), recorder.weights[2])


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
    model = tiny_model()
    x, y = data()
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
    assert_weights_equal(callback.best_weights, recorder.weights[2])
    assert_weights_equal(model.get_weights(), recorder.weights[2])


@_main_thread_only
def test_hold_interrupts_delivers_a_held_ctrl_c_to_the_handler_in_place_afterwards():
    seen = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: seen.append(signum))
    try:
        with hold_interrupts():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.01)
            assert seen == []
        assert seen == [signal.SIGINT]
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        with hold_interrupts():
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
    model = tiny_model()
    x, y = data()
    with pytest.raises(RuntimeError):
        model.fit(
            x,
            y,
            epochs=3,
            verbose=0,
            callbacks=[ScriptedMetric("score", [3.0, 2.0, 1.0]), RaiseAt(1), callback],
        )
    assert signal.getsignal(signal.SIGINT) == callback._interrupt._handle
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
    model = tiny_model()
    x, y = data()
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
    model = tiny_model()
    x, y = data()
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
    child = start_child(_SIGINT_CHILD)
    try:
        wait_for_line(child, "ready")
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


# ---------------------------------------------------------------------------
# GracefulInterrupt on its own.


class _Model:
    stop_training = False


@_main_thread_only
def test_graceful_interrupt_first_ctrl_c_requests_a_stop_second_raises(capsys):
    previous = signal.getsignal(signal.SIGINT)
    model = _Model()
    interrupt = GracefulInterrupt("Watcher")
    interrupt.install(model)
    try:
        assert interrupt.installed and not interrupt.requested
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.01)
        assert interrupt.requested and model.stop_training
        assert not interrupt.aborted
        assert "Watcher: stopping at the end of the current batch" in (
            capsys.readouterr().err
        )
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.01)
        assert interrupt.aborted and not interrupt.installed
        assert signal.getsignal(signal.SIGINT) is previous
    finally:
        interrupt.uninstall()
        signal.signal(signal.SIGINT, previous)


@_main_thread_only
def test_graceful_interrupt_install_twice_keeps_one_handler_and_a_fresh_request():
    previous = signal.getsignal(signal.SIGINT)
    interrupt = GracefulInterrupt("Watcher")
    interrupt.install(_Model())
    try:
        handler = signal.getsignal(signal.SIGINT)
        interrupt.requested = True
        interrupt.install(_Model())
        assert signal.getsignal(signal.SIGINT) == handler
        assert not interrupt.requested
        interrupt.uninstall()
        assert signal.getsignal(signal.SIGINT) is previous
        interrupt.uninstall()
        assert signal.getsignal(signal.SIGINT) is previous
    finally:
        signal.signal(signal.SIGINT, previous)


def test_hold_interrupts_off_the_main_thread_changes_nothing():
    seen = []

    def run():
        before = signal.getsignal(signal.SIGINT)
        with hold_interrupts():
            seen.append(signal.getsignal(signal.SIGINT) == before)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    assert seen == [True]
