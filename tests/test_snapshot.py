"""The preallocated weight snapshot and ModelWeights (callbacks/_snapshot.py)."""

import keras
import numpy as np

from keras_reg.callbacks import EarlyStopping, _snapshot
from keras_reg.callbacks._snapshot import ModelWeights, WeightSnapshot
from tests.callback_helpers import (
    ScriptedMetric,
    WeightRecorder,
    assert_weights_equal,
    data,
    tiny_model,
)


def test_snapshot_buffers_are_preallocated_and_reused_across_improvements():
    callback = EarlyStopping(
        monitor="score", mode="min", patience=10, restore_best_weights=True
    )
    seen = []

    class Watch(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            buffers = callback.best_weights
            seen.append([(id(b), b.__array_interface__["data"][0]) for b in buffers])

    model = tiny_model()
    x, y = data()
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
    assert_weights_equal(callback.best_weights, recorder.weights[4])


def test_snapshot_fast_path_gives_the_same_numbers_as_the_portable_path():
    model = tiny_model()
    x, y = data()
    model.fit(x, y, epochs=1, verbose=0)
    fast = WeightSnapshot(model.weights, fast=True)
    portable = WeightSnapshot(model.weights, fast=False)
    fast.capture(model.weights)
    portable.capture(model.weights)
    assert_weights_equal(fast.buffers, portable.buffers)
    assert_weights_equal(fast.buffers, model.get_weights())
    expected = [np.array(b, copy=True) for b in fast.buffers]
    model.fit(x, y, epochs=1, verbose=0)
    portable.restore(model.weights)
    assert_weights_equal(model.get_weights(), expected)
    model.fit(x, y, epochs=1, verbose=0)
    fast.restore(model.weights)
    assert_weights_equal(model.get_weights(), expected)


def test_fast_restore_in_slices_writes_every_row(monkeypatch):
    # A chunk smaller than one variable makes TensorFlow restore it slice by
    # slice; every row, including a short last slice, must come back.
    monkeypatch.setattr(_snapshot, "_RESTORE_CHUNK_BYTES", 40)
    variable = keras.Variable(np.zeros((7, 3), dtype="float32"))
    buffer = np.arange(21, dtype="float32").reshape(7, 3)
    _snapshot.restore_into(variable, buffer, fast=True)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(variable), buffer)


def test_model_weights_restores_a_keras_model_in_place_from_one_snapshot():
    model = tiny_model()
    x, y = data()
    keeper = ModelWeights()
    first = keeper.copy(model)
    expected = [np.array(w, copy=True) for w in model.get_weights()]
    assert_weights_equal(first, expected)
    model.fit(x, y, epochs=1, verbose=0)
    # The next copy reuses the same buffers.
    assert keeper.copy(model) is first
    assert_weights_equal(first, model.get_weights())
    saved = [np.array(w, copy=True) for w in first]
    model.fit(x, y, epochs=1, verbose=0)
    keeper.put_back(model, first)
    assert_weights_equal(model.get_weights(), saved)


class _DuckModel:
    """Only `get_weights` and `set_weights`, as Keras's callback requires."""

    def __init__(self):
        self.values = [np.arange(3.0), np.ones((2, 2))]
        self.calls = []

    def get_weights(self):
        self.calls.append("get")
        return [np.array(v, copy=True) for v in self.values]

    def set_weights(self, weights):
        self.calls.append("set")
        self.values = [np.array(w, copy=True) for w in weights]


def test_model_weights_calls_get_and_set_weights_of_other_models():
    model = _DuckModel()
    keeper = ModelWeights()
    weights = keeper.copy(model)
    model.values = [np.zeros(3), np.zeros((2, 2))]
    keeper.put_back(model, weights)
    assert model.calls == ["get", "set"]
    assert_weights_equal(model.values, [np.arange(3.0), np.ones((2, 2))])
    assert keeper.snapshot is None


def test_model_weights_sets_a_list_that_is_not_its_snapshot():
    # `best_weights` may be assigned any list, as in Keras.
    model = tiny_model()
    keeper = ModelWeights()
    keeper.copy(model)
    other = [np.full(w.shape, 0.5, dtype=w.dtype) for w in model.get_weights()]
    keeper.put_back(model, other)
    assert_weights_equal(model.get_weights(), other)
