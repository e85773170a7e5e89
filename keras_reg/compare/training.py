"""Trains one technique and measures what the comparison reports.

Every technique gets the same seed, architecture (a wide two-hidden-layer MLP),
optimizer and epoch budget. Train, validation and test numbers are measured
after `fit` returns (so after EarlyStopping restored its best weights), in
inference mode, on whole splits.

The curves and the EarlyStopping monitor use the *data* loss, a metric that
excludes the weight penalties: Keras's `loss` adds the L1/L2 penalty, which
would make the regularized runs' curves incomparable with the baseline's.
"""

import dataclasses
import re
import sys
import time

import keras
import numpy as np

from keras_reg.compare.data import Dataset
from keras_reg.compare.techniques import Technique

HIDDEN_UNITS = (512, 512)
LEARNING_RATE = 1e-3
# Training accuracy a classifier must reach for "epochs to threshold", and, for
# regression, the training R^2 (on the standardized target, MSE <= 1 - R^2).
ACCURACY_THRESHOLD = 0.95
R2_THRESHOLD = 0.9
# Keras clips probabilities to [eps, 1 - eps] before taking logs.
_EPSILON = 1e-7


@dataclasses.dataclass(frozen=True)
class Settings:
    epochs: int
    batch_size: int
    seed: int

    def describe(self) -> dict:
        return {
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "seed": self.seed,
            "hidden_units": list(HIDDEN_UNITS),
            "optimizer": "adam",
            "learning_rate": LEARNING_RATE,
        }


def build_model(technique: Technique, dataset: Dataset) -> keras.Model:
    """The shared MLP with `technique`'s layers and regularizers."""
    layers = [keras.Input(shape=(dataset.n_features,))]
    for units in HIDDEN_UNITS:
        layers.append(
            keras.layers.Dense(units, kernel_regularizer=technique.make_regularizer())
        )
        if technique.batch_normalization:
            layers.append(technique.make_batch_normalization())
        layers.append(keras.layers.Activation("relu"))
        if technique.dropout_rate:
            layers.append(technique.make_dropout())
    if dataset.task == "classification":
        head = keras.layers.Dense(
            dataset.n_classes,
            activation="softmax",
            kernel_regularizer=technique.make_regularizer(),
        )
    else:
        head = keras.layers.Dense(1, kernel_regularizer=technique.make_regularizer())
    layers.append(head)
    name = re.sub(r"[^A-Za-z0-9_]", "_", technique.name)
    model = keras.Sequential(layers, name=f"compare_{name}")
    optimizer = technique.wrap_optimizer(
        keras.optimizers.Adam(learning_rate=LEARNING_RATE)
    )
    # XLA compilation costs seconds per model and saves nothing on a model
    # this small; JAX needs its jit, and the other backends default to no XLA.
    jit_compile = False if keras.backend.backend() == "tensorflow" else "auto"
    if dataset.task == "classification":
        model.compile(
            optimizer=optimizer,
            jit_compile=jit_compile,
            loss="sparse_categorical_crossentropy",
            metrics=[
                keras.metrics.SparseCategoricalAccuracy(name="accuracy"),
                keras.metrics.SparseCategoricalCrossentropy(name="data_loss"),
            ],
        )
    else:
        model.compile(
            optimizer=optimizer,
            jit_compile=jit_compile,
            loss="mse",
            metrics=[keras.metrics.MeanSquaredError(name="data_loss")],
        )
    return model


class Progress(keras.callbacks.Callback):
    """One live line per technique: name, epoch i/N, validation metric, time.

    On a terminal the line is rewritten after every epoch; elsewhere (a log
    file, a pipe) it is printed once, when the technique finishes.
    """

    def __init__(self, prefix, epochs, started, metric_of_logs, stream=None):
        super().__init__()
        self.prefix = prefix
        self.epochs = epochs
        self.started = started
        self.metric_of_logs = metric_of_logs
        self.stream = stream if stream is not None else sys.stderr
        self.live = bool(getattr(self.stream, "isatty", lambda: False)())
        self.line = ""

    def _render(self, epoch, logs):
        name, value = self.metric_of_logs(logs)
        elapsed = time.perf_counter() - self.started
        return (
            f"{self.prefix}  epoch {epoch:>3}/{self.epochs}  "
            f"{name} {value:.4f}  elapsed {elapsed:6.1f}s"
        )

    def on_epoch_end(self, epoch, logs=None):
        self.line = self._render(epoch + 1, logs or {})
        if self.live:
            self.stream.write("\r" + self.line)
            self.stream.flush()

    def finish(self, suffix=""):
        end = "\n"
        self.stream.write(("\r" if self.live else "") + self.line + suffix + end)
        self.stream.flush()


def _kernels(model):
    return [
        keras.ops.convert_to_numpy(layer.kernel).astype("float64").ravel()
        for layer in model.layers
        if isinstance(layer, keras.layers.Dense)
    ]


def _predict(model, x, chunk=4096):
    # Direct calls instead of model.predict: predict compiles a function per
    # model and retraces it for every new batch shape, which TensorFlow
    # reports in warnings on stderr; a forward pass in inference mode is all
    # that is needed here.
    parts = [
        keras.ops.convert_to_numpy(model(x[i : i + chunk], training=False))
        for i in range(0, len(x), chunk)
    ]
    return np.concatenate(parts).astype("float64")


def _split_metrics(model, dataset, x, y):
    predictions = _predict(model, x)
    if dataset.task == "classification":
        probabilities = np.clip(predictions, _EPSILON, 1 - _EPSILON)
        picked = probabilities[np.arange(len(y)), y]
        return {
            "accuracy": float(np.mean(np.argmax(predictions, axis=1) == y)),
            "cross_entropy": float(-np.mean(np.log(picked))),
        }
    error = (predictions[:, 0] - y) * dataset.target_std
    return {
        "mse": float(np.mean(error**2)),
        "mae": float(np.mean(np.abs(error))),
    }


def _first_epoch(values, reached):
    for i, value in enumerate(values):
        if reached(value):
            return i + 1
    return None


def train_technique(
    technique: Technique,
    dataset: Dataset,
    settings: Settings,
    *,
    progress_prefix: str = "",
    started: float | None = None,
    stream=None,
    quiet: bool = False,
) -> dict:
    """Trains `technique` and returns its `techniques[i]` entry of results.json."""
    begin = time.perf_counter()
    started = begin if started is None else started
    # The same seed for every technique: same initial weights, same shuffling.
    keras.utils.set_random_seed(settings.seed)
    model = build_model(technique, dataset)
    monitor = "val_data_loss"
    callbacks = technique.make_callbacks(monitor)
    early_stopping = callbacks[0] if technique.early_stopping else None
    classification = dataset.task == "classification"
    std2 = dataset.target_std**2

    def metric_of_logs(logs):
        if classification:
            return "val_accuracy", float(logs.get("val_accuracy", float("nan")))
        return "val_mse", float(logs.get("val_data_loss", float("nan"))) * std2

    progress = None
    if not quiet:
        progress = Progress(
            progress_prefix, settings.epochs, started, metric_of_logs, stream
        )
        callbacks.append(progress)
    history = model.fit(
        dataset.x_train,
        dataset.y_train,
        validation_data=(dataset.x_val, dataset.y_val),
        epochs=settings.epochs,
        batch_size=settings.batch_size,
        callbacks=callbacks,
        verbose=0,
    )
    history = {
        key: [float(v) for v in values] for key, values in history.history.items()
    }
    epochs_run = len(history["loss"])
    if early_stopping is not None:
        best_epoch = int(early_stopping.best_epoch) + 1
    else:
        best_epoch = int(np.argmin(history[monitor])) + 1

    train = _split_metrics(model, dataset, dataset.x_train, dataset.y_train)
    val = _split_metrics(model, dataset, dataset.x_val, dataset.y_val)
    test = _split_metrics(model, dataset, dataset.x_test, dataset.y_test)
    # The restored model's validation data loss, measured the way fit measured
    # it, so that it is comparable with the per-epoch history.
    evaluated = model.evaluate(
        dataset.x_val,
        dataset.y_val,
        batch_size=settings.batch_size,
        verbose=0,
        return_dict=True,
    )
    final_val_data_loss = float(evaluated["data_loss"])

    weights = np.concatenate(_kernels(model))
    if classification:
        gap = train["accuracy"] - val["accuracy"]
        to_threshold = _first_epoch(
            history["accuracy"], lambda a: a >= ACCURACY_THRESHOLD
        )
    else:
        gap = val["mse"] - train["mse"]
        to_threshold = _first_epoch(
            history["data_loss"], lambda mse: mse <= 1 - R2_THRESHOLD
        )
    wall = time.perf_counter() - begin
    if progress is not None:
        progress.finish(f"  done in {wall:.1f}s")
    return {
        "name": technique.name,
        "description": technique.description,
        "config": technique.to_config(),
        "train": train,
        "validation": val,
        "test": test,
        "generalization_gap": float(gap),
        "epochs_run": epochs_run,
        "best_epoch": best_epoch,
        "stopped_early": epochs_run < settings.epochs,
        "final_val_data_loss": final_val_data_loss,
        "zero_weight_fraction": float(np.mean(weights == 0.0)),
        "near_zero_weight_fraction": float(np.mean(np.abs(weights) < 1e-3)),
        "mean_abs_weight": float(np.mean(np.abs(weights))),
        "n_kernel_weights": int(weights.size),
        "epochs_to_threshold": to_threshold,
        "history": history,
        "wall_time_s": wall,
    }
