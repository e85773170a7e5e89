"""Training under tf.distribute and keras.distribution.

BatchNormalization's global-batch statistics under both are tested next to the
layer, in test_batch_normalization.py.

Each scenario runs in a fresh subprocess: the device layout (two logical CPUs
for TensorFlow, two host devices for JAX) must be fixed before the framework
starts. A scenario is run from the pytest process of its own backend only, so
the three backend runs of the suite do not repeat it.
"""

import json
import os
import socket
import subprocess
import sys

import keras
import pytest
from helpers import REPO_ROOT, run_python

BACKEND = keras.backend.backend()

tensorflow_only = pytest.mark.skipif(
    BACKEND != "tensorflow",
    reason="tf.distribute scenarios run from the TensorFlow test process",
)
jax_only = pytest.mark.skipif(
    BACKEND != "jax",
    reason="keras.distribution scenarios run from the JAX test process",
)

TWO_LOGICAL_CPUS = """
import os
os.environ["KERAS_BACKEND"] = "tensorflow"
import tensorflow as tf
cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(
    cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2
)
import json
import keras
import numpy as np
import keras_reg
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
assert strategy.num_replicas_in_sync == 2
"""

# A model with every model-side keras_reg object, built by each scenario.
ALL_OBJECTS_MODEL = """
def make_model():
    regs = keras_reg.regularizers
    model = keras.Sequential([
        keras.Input(shape=(8,)),
        keras.layers.Dense(
            16,
            kernel_regularizer=regs.ElasticNet(l1=1e-4, l2=1e-4),
            bias_regularizer=regs.L2(1e-4),
        ),
        keras_reg.layers.BatchNormalization(synchronized=True),
        keras_reg.layers.Dropout(0.2, seed=1),
        keras.layers.Dense(3, kernel_regularizer=regs.L1(1e-4)),
    ])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model

rng = np.random.default_rng(0)
x = rng.normal(size=(128, 8)).astype("float32")
y = (x[:, 0] > 0).astype("int32") + (x[:, 1] > 1).astype("int32")
"""


def _last_json_line(result):
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@tensorflow_only
def test_mirrored_strategy_fits_with_every_object_and_early_stopping():
    result = run_python(
        TWO_LOGICAL_CPUS
        + ALL_OBJECTS_MODEL
        + """
with strategy.scope():
    model = make_model()
stopper = keras_reg.callbacks.EarlyStopping(
    monitor="val_loss", patience=2, restore_best_weights=True
)
history = model.fit(x, y, validation_split=0.25, epochs=6, batch_size=16,
                    callbacks=[stopper], verbose=0)
losses = history.history["val_loss"]
print(json.dumps({
    "epochs": len(losses),
    "finite": bool(np.all(np.isfinite(model.predict(x, verbose=0)))),
    "best": float(stopper.best),
    "min_val_loss": float(min(losses)),
}))
"""
    )
    out = _last_json_line(result)
    assert out["finite"]
    assert 1 <= out["epochs"] <= 6
    assert out["best"] == pytest.approx(out["min_val_loss"])


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


@jax_only
def test_jax_data_parallel_fits_with_every_object():
    result = run_python(
        """
import os
os.environ["KERAS_BACKEND"] = "jax"
import jax
import json
import keras
import numpy as np
import keras_reg
assert len(jax.devices()) == 2
keras.distribution.set_distribution(keras.distribution.DataParallel())
"""
        + ALL_OBJECTS_MODEL
        + """
model = make_model()
stopper = keras_reg.callbacks.EarlyStopping(patience=2, restore_best_weights=True)
history = model.fit(x, y, validation_split=0.25, epochs=5, batch_size=16,
                    callbacks=[stopper], verbose=0)
print(json.dumps({
    "epochs": len(history.history["loss"]),
    "finite": bool(np.all(np.isfinite(model.predict(x, verbose=0)))),
}))
""",
        env={"XLA_FLAGS": "--xla_force_host_platform_device_count=2"},
    )
    out = _last_json_line(result)
    assert out["finite"]
    assert 1 <= out["epochs"] <= 5


@tensorflow_only
def test_multi_worker_mirrored_workers_stop_together_and_only_chief_writes(
    tmp_path,
):
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    script = os.path.join(REPO_ROOT, "tests", "multi_worker_script.py")
    procs = []
    for index in range(2):
        env = dict(os.environ)
        env["PYTHONPATH"] = REPO_ROOT
        env["KERAS_BACKEND"] = "tensorflow"
        env["TF_CPP_MIN_LOG_LEVEL"] = "3"
        env["TF_CONFIG"] = json.dumps(
            {"cluster": cluster, "task": {"type": "worker", "index": index}}
        )
        procs.append(
            subprocess.Popen(
                [sys.executable, script, str(tmp_path)],
                cwd=REPO_ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    outputs = []
    try:
        for proc in procs:
            stdout, stderr = proc.communicate(timeout=240)
            assert proc.returncode == 0, stderr[-3000:]
            outputs.append(json.loads(stdout.strip().splitlines()[-1]))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    assert outputs[0]["epochs"] == outputs[1]["epochs"]
    assert outputs[0]["stopped_epoch"] == outputs[1]["stopped_epoch"]
    assert outputs[0]["best_epoch"] == outputs[1]["best_epoch"]
    assert (tmp_path / "worker0" / "best.weights.h5").exists()
    assert not (tmp_path / "worker1").exists()

    # The saved model loads, and the chief's checkpoint holds the weights that
    # EarlyStopping restored at the end of training.
    loaded = run_python(
        f"""
import json
import keras
import numpy as np
import keras_reg
folder = {str(tmp_path)!r}
model = keras.saving.load_model(folder + "/model.keras")
x = np.random.default_rng(0).normal(size=(128, 8)).astype("float32")
# Float32 tolerance: the worker called the model eagerly and predict runs a
# graph, where BatchNormalization's inference is XLA-compiled instead of the
# fused kernel (the same formula, rounded differently).
same_as_saved = np.allclose(
    model.predict(x, verbose=0),
    np.load(folder + "/restored_predictions.npy"),
    rtol=1e-5,
    atol=1e-6,
)
model.load_weights(folder + "/worker0/best.weights.h5")
same_as_checkpoint = np.allclose(
    model.predict(x, verbose=0),
    np.load(folder + "/restored_predictions.npy"),
    rtol=1e-5,
    atol=1e-6,
)
print(json.dumps({{
    "layer": type(model.layers[1]).__module__,
    "same_as_saved": bool(same_as_saved),
    "same_as_checkpoint": bool(same_as_checkpoint),
}}))
"""
    )
    out = _last_json_line(loaded)
    assert out["layer"].startswith("keras_reg")
    assert out["same_as_saved"]
    assert out["same_as_checkpoint"]
