"""Shared pieces of the callback tests: a tiny model, a scripted metric, a
weight recorder, and child processes for signals.
"""

import os
import subprocess
import sys
import textwrap
import time

import keras
import numpy as np

from tests.helpers import REPO_ROOT


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


def data(n=32, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3)).astype("float32")
    y = (x @ np.array([[1.0], [-2.0], [0.5]], dtype="float32")).astype("float32")
    return x, y


def tiny_model(metrics=None):
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


def fit_scripted(callback, values, *, epochs=None, name="score", model=None):
    """Fits a tiny model whose `name` log follows `values`; returns history."""
    model = model or tiny_model()
    x, y = data()
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


class RaiseAt(keras.callbacks.Callback):
    """Raises RuntimeError at the start of epoch `epoch`."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            raise RuntimeError(f"interrupting at epoch {epoch}")


def assert_weights_equal(actual, expected):
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected, strict=True):
        np.testing.assert_array_equal(a, e)


CHILD_PRELUDE = """
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


def child_env():
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO_ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    return env


def start_child(code, env=None):
    return subprocess.Popen(
        [sys.executable, "-u", "-c", textwrap.dedent(CHILD_PRELUDE + code)],
        cwd=REPO_ROOT,
        env={**child_env(), **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_line(child, expected, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = child.stdout.readline()
        if not line:
            break
        if line.strip() == expected:
            return
    child.kill()
    raise AssertionError(f"child never printed {expected!r}: {child.stderr.read()}")
