"""The best weights on disk and resuming (callbacks/_checkpoint.py), alone and
through EarlyStopping's checkpoint_path.
"""

import json
import os
import signal
import sys
import time

import keras
import numpy as np
import pytest

from keras_reg.callbacks import EarlyStopping, _checkpoint
from keras_reg.callbacks._checkpoint import BestCheckpoint
from tests.callback_helpers import (
    RaiseAt,
    ScriptedMetric,
    assert_weights_equal,
    data,
    fit_scripted,
    start_child,
    tiny_model,
    wait_for_line,
)


def test_checkpoint_holds_the_best_epoch_and_loads(tmp_path):
    path = str(tmp_path / "best.weights.h5")
    callback = EarlyStopping(
        monitor="score", mode="min", patience=2, checkpoint_path=path
    )
    _, _, recorder = fit_scripted(callback, [3.0, 1.0, 2.0, 2.5, 0.1])
    assert _checkpoint.read_saved_epoch(path) == 1
    fresh = tiny_model()
    fresh.load_weights(path)
    assert_weights_equal(fresh.get_weights(), recorder.weights[1])
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
    model = tiny_model()
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
    fit_scripted(callback, [3.0, 1.0])
    assert os.listdir(tmp_path) == []


def test_is_chief_without_a_distribution():
    assert _checkpoint.is_chief() is True
    assert _checkpoint.is_chief(tiny_model()) is True


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
        model = tiny_model()
    assert _checkpoint.is_chief(model) is True


# ---------------------------------------------------------------------------
# Resuming with BackupAndRestore.


def test_resume_with_backup_and_restore_matches_an_uninterrupted_run(tmp_path):
    # Best at epoch 2, then no improvement: with patience 3, an uninterrupted
    # run stops at epoch 5 and restores epoch 2.
    values = [5.0, 4.0, 3.0, 3.5, 3.6, 3.7, 3.8, 3.9]

    def run(tag, interrupt_at):
        keras.utils.set_random_seed(7)
        model = tiny_model()
        x, y = data()
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
    assert_weights_equal(model_b.get_weights(), model_a.get_weights())


def test_state_round_trips_through_get_state_and_set_state():
    callback = EarlyStopping(monitor="score", mode="min", patience=3)
    fit_scripted(callback, [3.0, 1.0, 2.0])
    state = callback.get_state()
    json.dumps(state)
    other = EarlyStopping(monitor="score", mode="min", patience=3)
    other.set_state(state)
    assert other.get_state() == state


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
        child = start_child(_KILL_CHILD, {"KILL_FOLDER": str(folder)})
        wait_for_line(child, "started")
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
        assert_weights_equal(model.get_weights(), expected)


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
# BestCheckpoint on its own.


def _state(epoch, best_epoch, **extra):
    return {"epoch": epoch, "best": 1.0, "best_epoch": best_epoch, **extra}


def test_resumable_state_is_the_one_saved_at_the_end_of_the_previous_epoch(
    tmp_path,
):
    checkpoint = BestCheckpoint(str(tmp_path / "best.weights.h5"))
    assert checkpoint.state_path == str(tmp_path / "best.weights.h5.state.json")
    assert checkpoint.resumable_state(3) is None
    checkpoint.save_weights(tiny_model(), epoch=1)
    checkpoint.save_state(_state(2, 1, finished=False))
    assert checkpoint.resumable_state(3) == _state(2, 1, finished=False)
    # Another epoch, or a finished run, is not resumed.
    assert checkpoint.resumable_state(4) is None
    checkpoint.save_state(_state(2, 1, finished=True))
    assert checkpoint.resumable_state(3) is None


def test_resumable_state_refuses_a_weights_file_of_another_epoch(tmp_path):
    # Killed between the two writes: the file holds epoch 1, the state says
    # the best is epoch 2.
    checkpoint = BestCheckpoint(str(tmp_path / "best.weights.h5"))
    checkpoint.save_weights(tiny_model(), epoch=1)
    checkpoint.save_state(_state(2, 2))
    with pytest.warns(UserWarning, match="holds epoch 1, the state expects epoch 2"):
        assert checkpoint.resumable_state(3) is None


def test_load_weights_copies_the_file_and_leaves_model_and_optimizer_as_they_were(
    tmp_path,
):
    checkpoint = BestCheckpoint(str(tmp_path / "best.weights.h5"))
    model = tiny_model()
    x, y = data()
    model.fit(x, y, epochs=1, verbose=0)
    saved = [np.array(w, copy=True) for w in model.get_weights()]
    checkpoint.save_weights(model, epoch=0)
    model.fit(x, y, epochs=1, verbose=0)
    current = [np.array(w, copy=True) for w in model.get_weights()]
    optimizer = [np.array(v, copy=True) for v in model.optimizer.variables]
    loaded = checkpoint.load_weights(
        model, lambda: [np.array(w, copy=True) for w in model.get_weights()]
    )
    assert_weights_equal(loaded, saved)
    assert_weights_equal(model.get_weights(), current)
    assert_weights_equal(
        [keras.ops.convert_to_numpy(v) for v in model.optimizer.variables], optimizer
    )
