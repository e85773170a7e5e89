"""EarlyStopping that never loses the best model."""

import contextlib
import math
import numbers
import os
import signal
import sys
import threading
import warnings

import keras
import numpy as np

from keras_reg import _validation
from keras_reg._api import register
from keras_reg.callbacks import _checkpoint
from keras_reg.callbacks._snapshot import WeightSnapshot

# Words that, as a part of a metric's name, say which way it should go. Used
# only when Keras itself cannot tell (no metric object of that name).
_HIGHER_IS_BETTER = frozenset(
    {"acc", "accuracy", "auc", "precision", "recall", "f1", "fbeta", "iou", "r2"}
)
_LOWER_IS_BETTER = frozenset(
    {
        "loss",
        "error",
        "crossentropy",
        "mse",
        "mae",
        "mape",
        "msle",
        "hinge",
        "kld",
        "kl",
        "poisson",
        "logcosh",
    }
)

# The compiled-metrics containers whose members Keras searches for a metric's
# direction (keras.src.trainers.compile_utils, not public).
_METRIC_CONTAINERS = frozenset({"CompileMetrics", "MetricsList"})

# The public metric classes that Keras 3.15.1 marks, with a private attribute,
# as going up or down; their subclasses go the same way. Keras's auto mode
# reads that attribute; this table gives the same answers through public
# names (tests/test_early_stopping.py checks it against Keras).
_METRICS_GOING_UP = (
    "AUC",
    "Accuracy",
    "BinaryAccuracy",
    "BinaryIoU",
    "CategoricalAccuracy",
    "ConcordanceCorrelation",
    "CosineSimilarity",
    "FBetaScore",
    "IoU",
    "MeanIoU",
    "OneHotIoU",
    "OneHotMeanIoU",
    "PearsonCorrelation",
    "Precision",
    "PrecisionAtRecall",
    "R2Score",
    "Recall",
    "RecallAtPrecision",
    "SensitivityAtSpecificity",
    "SparseCategoricalAccuracy",
    "SparseTopKCategoricalAccuracy",
    "SpecificityAtSensitivity",
    "TopKCategoricalAccuracy",
)
_METRICS_GOING_DOWN = (
    "BinaryCrossentropy",
    "CategoricalCrossentropy",
    "CategoricalHinge",
    "Hinge",
    "KLDivergence",
    "LogCoshError",
    "MeanAbsoluteError",
    "MeanAbsolutePercentageError",
    "MeanSquaredError",
    "MeanSquaredLogarithmicError",
    "Poisson",
    "RootMeanSquaredError",
    "SparseCategoricalCrossentropy",
    "SquaredHinge",
)

STOP_REASONS = (
    "patience",
    "non_finite",
    "stopping_threshold",
    "divergence_threshold",
    "interrupted",
    "exception",
    "completed",
)

_FLOAT32_MAX = float(np.finfo(np.float32).max)


@register
class EarlyStopping(keras.callbacks.Callback):
    """Stops training when a monitored metric has stopped improving.

    A drop-in replacement for `keras.callbacks.EarlyStopping`: the first eight
    arguments have Keras's names, order, defaults and meanings, and with the
    other arguments left at their defaults the callback decides, restores and
    prints exactly as Keras's does. The public attributes (`best`, `wait`,
    `stopped_epoch`, `best_epoch`, `best_weights`, `monitor_op`, `min_delta`,
    ...) mean what they mean in Keras: `monitor_op` is `keras.ops.less` or
    `keras.ops.greater`, `min_delta` turns negative once the direction is known
    to be "min", and `best_weights` is a plain attribute that may be read or
    assigned; whatever it holds at the end of training is what
    `restore_best_weights` puts back. Any object with `get_weights()`,
    `set_weights()` and `stop_training` can be the model, as in Keras.

    At the end of every epoch the monitored value is compared with the best so
    far; after `patience` epochs without an improvement larger than
    `min_delta`, training stops. With `restore_best_weights=True` the weights
    of the best epoch are put back at the end of `fit`, whether or not
    training stopped early. Beyond Keras, and only where asked:

    - `check_finite=True`: a NaN or infinite monitored value stops training at
      once and never becomes the best. With `restore_best_weights`, the last
      finite best is restored, or the weights from before training if the
      first monitored epoch was already not finite. By default, as in Keras,
      a NaN is a value like any other: it never compares better, so `wait`
      grows (a NaN in the first monitored epoch becomes the best, and nothing
      improves on it).
    - `stopping_threshold` stops as soon as the monitor is better than it;
      `divergence_threshold` stops as soon as it is worse.
    - `handle_interrupt=True`: the first Ctrl-C (SIGINT) during `fit` ends
      training at the end of the current batch, the best weights are restored
      and `fit` returns its History normally; a second Ctrl-C raises
      `KeyboardInterrupt` at once. The previous SIGINT handler is put back
      when `fit` ends (if `fit` raises outside the context manager below, at
      the end of the next `fit` or at that second Ctrl-C). The handler is
      installed only when `fit` runs on the main thread (Python allows signal
      handlers nowhere else). By default, as in Keras, Ctrl-C raises
      `KeyboardInterrupt` out of `fit`.
    - Exceptions, `KeyboardInterrupt` included: no Keras backend calls
      `on_train_end` when `fit` raises, so no callback can react. Use the
      callback as a context manager around `fit` and the best weights are
      restored after `fit` has let go of the model and before the exception
      propagates: `with early_stopping: model.fit(..., callbacks=[...])`.
      A Ctrl-C that arrives while the best weights are being copied or
      restored is held back until the copy is complete, so the weights put
      back are always those of one epoch.
    - `stop_reason` says why training ended (one of `"patience"`,
      `"non_finite"`, `"stopping_threshold"`, `"divergence_threshold"`,
      `"interrupted"`, `"exception"`, `"completed"`; None while running) and
      `stop_message` says it in words; `verbose=2` also prints it, for
      instance "Epoch 14: early stopping: val_loss did not improve by more
      than 0.001 for 5 epochs (best 0.2130 at epoch 9)." (`verbose=1` prints
      Keras's lines, word for word).
    - `checkpoint_path`: the best weights are also written there at every
      improvement, atomically (temporary file in the same folder, flush and
      fsync, `os.replace`), so a process killed at any moment leaves a file
      that `model.load_weights` reads and that holds the last best epoch.
      Under a distribution strategy only the chief writes. The callback's
      state is written next to it (`checkpoint_path + ".state.json"`) at
      every epoch, so a run interrupted and resumed with
      `keras.callbacks.BackupAndRestore` picks up `best`, `wait` and the best
      weights where it left off and stops where an uninterrupted run would.
      Needs a Keras model (`save_weights`, `load_weights`).
    - For a Keras model, the best weights are kept in one preallocated copy
      of all model weights (trainable and non-trainable, so
      BatchNormalization statistics are included), refreshed in place: no
      allocation per improvement, and peak memory of about one copy instead
      of Keras's two. `best_weights` then holds that copy's arrays, which the
      next improvement overwrites: copy them to keep a value.

    Args:
        monitor: Quantity to be monitored, a key of the epoch logs. Defaults
            to `"val_loss"`.
        min_delta: Minimum change in the monitored quantity to qualify as an
            improvement; its absolute value is used, as in Keras. Defaults to
            `0`.
        patience: Number of epochs with no improvement after which training
            is stopped; `math.inf` never stops. Defaults to `0`.
        verbose: `0` is silent, `1` (or `True`) prints Keras's messages when
            the callback acts, `2` also prints why training stopped. Defaults
            to `0`.
        mode: One of `"auto"`, `"min"`, `"max"`; any other value warns and
            falls back to `"auto"`, as in Keras. In `"auto"` mode the
            direction comes from the monitored metric: `loss` is minimized, a
            compiled metric goes the way its Keras metric object says, and
            otherwise names containing words such as `accuracy` or `auc` are
            maximized and words such as `loss` or `error` minimized. Defaults
            to `"auto"`.
        baseline: Baseline value for the monitored quantity. Training stops
            if the model does not show improvement over the baseline within
            `patience` epochs. Defaults to `None`.
        restore_best_weights: Whether to restore the weights of the best
            epoch at the end of training. Defaults to `False`.
        start_from_epoch: Number of warm-up epochs during which improvement is
            not monitored. Defaults to `0`.
        check_finite: Whether a NaN or infinite monitored value stops training
            at once (see above). Defaults to `False`, Keras's behaviour.
        stopping_threshold: Stop as soon as the monitored value is better than
            this. Defaults to `None`.
        divergence_threshold: Stop as soon as the monitored value is worse
            than this. Defaults to `None`.
        handle_interrupt: Whether the first Ctrl-C ends training gracefully
            (see above). Defaults to `False`, Keras's behaviour: Ctrl-C raises
            `KeyboardInterrupt`.
        checkpoint_path: Path ending in `.weights.h5` where the best weights
            are written atomically at each improvement, or `None`. Defaults
            to `None`.

    Example:

    >>> import keras, numpy as np
    >>> import keras_reg
    >>> x = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
    >>> y = x.sum(axis=1, keepdims=True)
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    >>> model.compile(optimizer="sgd", loss="mse")
    >>> early_stopping = keras_reg.callbacks.EarlyStopping(
    ...     monitor="loss", patience=2, restore_best_weights=True
    ... )
    >>> with early_stopping:
    ...     history = model.fit(
    ...         x, y, epochs=5, verbose=0, callbacks=[early_stopping]
    ...     )
    >>> early_stopping.stop_reason
    'completed'

    Reference:
        Prechelt, "Early Stopping - But When?", in Neural Networks: Tricks of
        the Trade, 1998. https://doi.org/10.1007/3-540-49430-8_3
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        min_delta: float = 0,
        patience: int | float = 0,
        verbose: int | bool = 0,
        mode: str = "auto",
        baseline: float | None = None,
        restore_best_weights: bool = False,
        start_from_epoch: int | float = 0,
        check_finite: bool = False,
        stopping_threshold: float | None = None,
        divergence_threshold: float | None = None,
        handle_interrupt: bool = False,
        checkpoint_path: str | None = None,
    ):
        super().__init__()
        self.monitor = _validation.check_str("monitor", monitor)
        # Keras keeps abs(min_delta) and negates it when the direction turns
        # out to be "min" (see `_set_monitor_op`).
        self.min_delta = abs(_validation.check_float("min_delta", min_delta))
        self.patience = _check_patience(patience)
        self.verbose = _check_verbose(verbose)
        if mode not in ("auto", "min", "max"):
            warnings.warn(
                f"{self.__class__.__name__} mode '{mode}' is unknown, fallback "
                "to auto mode.",
                stacklevel=2,
            )
            mode = "auto"
        self.mode = mode
        self.baseline = _check_baseline(baseline)
        self.restore_best_weights = _check_flag(
            "restore_best_weights", restore_best_weights
        )
        self.start_from_epoch = _check_start_from_epoch(start_from_epoch)
        self.check_finite = _validation.check_bool("check_finite", check_finite)
        self.stopping_threshold = _validation.check_optional_float(
            "stopping_threshold", stopping_threshold
        )
        self.divergence_threshold = _validation.check_optional_float(
            "divergence_threshold", divergence_threshold
        )
        self.handle_interrupt = _validation.check_bool(
            "handle_interrupt", handle_interrupt
        )
        if checkpoint_path is not None and (
            not isinstance(checkpoint_path, str)
            or not checkpoint_path.endswith(".weights.h5")
            or checkpoint_path == ".weights.h5"
        ):
            raise _validation.invalid_argument(
                "checkpoint_path",
                'None or a path ending in ".weights.h5"',
                checkpoint_path,
            )
        self.checkpoint_path = checkpoint_path

        self.best = None
        self.wait = 0
        self.stopped_epoch = 0
        self.best_epoch = 0
        self.best_weights = None
        self.monitor_op = None
        self.stop_reason = None
        self.stop_message = None
        self._snapshot = None
        self._initial_weights = None
        self._interrupted = False
        self._previous_sigint = None
        self._sigint_installed = False
        self._first_epoch_seen = False
        self._last_epoch = None
        self._fit_model = None
        self._training = False

    # ------------------------------------------------------------------
    # Configuration.

    def get_config(self) -> dict:
        return {
            "monitor": self.monitor,
            # Negated once the direction is "min", as in Keras.
            "min_delta": abs(self.min_delta),
            "patience": self.patience,
            "verbose": self.verbose,
            "mode": self.mode,
            "baseline": self.baseline,
            "restore_best_weights": self.restore_best_weights,
            "start_from_epoch": self.start_from_epoch,
            "check_finite": self.check_finite,
            "stopping_threshold": self.stopping_threshold,
            "divergence_threshold": self.divergence_threshold,
            "handle_interrupt": self.handle_interrupt,
            "checkpoint_path": self.checkpoint_path,
        }

    @classmethod
    def from_config(cls, config: dict) -> "EarlyStopping":
        return cls(**config)

    # ------------------------------------------------------------------
    # Progress.

    def get_state(self) -> dict:
        """Returns the callback's progress as a JSON-friendly dict.

        The best weights themselves live in memory (`best_weights`) and, with
        `checkpoint_path`, in that file, whose path the dict names.
        """
        return {
            "epoch": self._last_epoch,
            "best": self.best,
            "wait": self.wait,
            "best_epoch": self.best_epoch,
            "stopped_epoch": self.stopped_epoch,
            "stop_reason": self.stop_reason,
            "has_best_weights": self.best_weights is not None,
            "checkpoint_path": self.checkpoint_path,
        }

    def set_state(self, state: dict) -> None:
        """Restores progress saved by `get_state` (not the weights)."""
        best = state["best"]
        self.best = None if best is None else float(best)
        self.wait = int(state["wait"])
        self.best_epoch = int(state["best_epoch"])
        self.stopped_epoch = int(state["stopped_epoch"])
        self.stop_reason = state["stop_reason"]
        self._last_epoch = state["epoch"]

    # ------------------------------------------------------------------
    # Context manager: restore the best weights when `fit` raises.

    def __enter__(self) -> "EarlyStopping":
        return self

    def __exit__(self, exc_type, exc_value, traceback) -> bool:
        self._uninstall_sigint()
        if exc_type is None or not self._training:
            return False
        self._training = False
        if self.stop_reason is None:
            if issubclass(exc_type, KeyboardInterrupt):
                self.stop_reason = "interrupted"
                self.stop_message = "training interrupted (Ctrl-C)"
            else:
                self.stop_reason = "exception"
                self.stop_message = f"training raised {exc_type.__name__}"
            if self.verbose > 0:
                self._print(f"EarlyStopping: {self.stop_message}.")
        # `fit` has returned control: on JAX its own cleanup has already
        # written the training state into the variables, so what is restored
        # here stays.
        self._restore_at_end()
        return False

    # ------------------------------------------------------------------
    # Callback hooks.

    def set_model(self, model):
        super().set_model(model)
        # The signal handler must not use `self.model`: on JAX that property
        # syncs the training state, which is not safe in the middle of a step.
        # It also unwraps PyTorch's DistributedDataParallel, done here once.
        if keras.backend.backend() == "torch":
            from torch.nn.parallel import DistributedDataParallel

            if isinstance(model, DistributedDataParallel):
                model = model.module
        self._fit_model = model

    def on_train_begin(self, logs=None):
        # Allow instances to be re-used across `model.fit()` calls.
        self.wait = 0
        self.stopped_epoch = 0
        self.best = None
        self.best_weights = None
        self.best_epoch = 0
        self.stop_reason = None
        self.stop_message = None
        self._initial_weights = None
        self._interrupted = False
        self._first_epoch_seen = False
        self._last_epoch = None
        self._training = True
        if self.restore_best_weights and self.check_finite:
            # Kept for a first monitored epoch that is not finite: the
            # weights from before training are then the last good ones.
            with _sigint_held():
                self._initial_weights = self._copy_weights()
        self._install_sigint()

    def on_epoch_begin(self, epoch, logs=None):
        if not self._first_epoch_seen:
            self._first_epoch_seen = True
            if epoch > 0:
                self._maybe_resume(epoch)

    def on_epoch_end(self, epoch, logs=None):
        if self._interrupted:
            # The epoch was cut short by Ctrl-C: its metrics describe part of
            # an epoch, so it is not monitored.
            self._stop(epoch, "interrupted", "training interrupted (Ctrl-C)")
            return
        self._last_epoch = epoch
        try:
            self._on_monitored_epoch_end(epoch, logs)
        finally:
            self._save_state()

    def on_train_end(self, logs=None):
        self._uninstall_sigint()
        self._training = False
        if self._interrupted and self.stop_reason is None:
            # Ctrl-C came after this callback had seen the epoch's logs.
            self._stop(
                self._last_epoch or 0, "interrupted", "training interrupted (Ctrl-C)"
            )
        if self.stop_reason is None:
            self.stop_reason = "completed"
            self.stop_message = "training completed all epochs"
        if self.verbose >= 2 and self.stop_reason != "completed":
            self._print(
                f"Epoch {self.stopped_epoch + 1}: early stopping: {self.stop_message}."
            )
        elif self.stopped_epoch > 0 and self.verbose > 0:
            # Keras's line, word for word.
            self._print(f"Epoch {self.stopped_epoch + 1}: early stopping")
        self._restore_at_end()
        self._save_state(finished=True)

    # ------------------------------------------------------------------
    # Monitoring.

    def _on_monitored_epoch_end(self, epoch, logs):
        if self.monitor_op is None:
            # Delay setup until the model's metrics are all built.
            self._set_monitor_op()

        current = self.get_monitor_value(logs)
        if current is None:
            return
        current = float(current)
        if self.check_finite and not math.isfinite(current):
            best = (
                f" (best {self.best:.4f} at epoch {self.best_epoch + 1})"
                if self.best is not None
                else ""
            )
            self._stop(
                epoch, "non_finite", f"{self.monitor} is {current} (not finite){best}"
            )
            return
        if epoch < self.start_from_epoch:
            return

        captured = False
        if self.restore_best_weights and self.best_weights is None:
            # As in Keras: with no best weights yet (first monitored epoch,
            # or `best_weights` set to None), the current ones are the best.
            with _sigint_held():
                self._set_best_weights(self._copy_weights())
                self.best_epoch = epoch
            captured = True

        self.wait += 1
        if self._is_improvement(current, self.best):
            held = (
                _sigint_held()
                if self.restore_best_weights
                else contextlib.nullcontext()
            )
            with held:
                self.best = current
                self.best_epoch = epoch
                if self.restore_best_weights and not captured:
                    self._set_best_weights(self._copy_weights())
            if self.checkpoint_path is not None and _checkpoint.is_chief(
                self._fit_model
            ):
                _checkpoint.atomic_save_weights(self.model, self.checkpoint_path, epoch)
            # Only restart wait if we beat both the baseline and our previous
            # best.
            if self.baseline is None or self._is_improvement(current, self.baseline):
                self.wait = 0
        elif self.wait >= self.patience and epoch > 0:
            self._stop(epoch, "patience", self._patience_message())
            return

        if self.stopping_threshold is not None and _compare(
            self.monitor_op, current, self.stopping_threshold
        ):
            self._stop(
                epoch,
                "stopping_threshold",
                f"{self.monitor} {current:.4f} is better than stopping_threshold "
                f"{self.stopping_threshold:g}",
            )
        elif self.divergence_threshold is not None and _compare(
            self.monitor_op, -current, -self.divergence_threshold
        ):
            self._stop(
                epoch,
                "divergence_threshold",
                f"{self.monitor} {current:.4f} is worse than divergence_threshold "
                f"{self.divergence_threshold:g}",
            )

    def _patience_message(self):
        if self.min_delta:
            what = f"did not improve by more than {abs(self.min_delta):g}"
        else:
            what = "did not improve"
        if self.baseline is not None and not self._is_improvement(
            self.best, self.baseline
        ):
            what = f"did not improve on baseline {self.baseline:g}"
        return (
            f"{self.monitor} {what} for {self.wait} epochs "
            f"(best {self.best:.4f} at epoch {self.best_epoch + 1})"
        )

    def _stop(self, epoch, reason, message):
        self.stopped_epoch = epoch
        self.stop_reason = reason
        self.stop_message = message
        self.model.stop_training = True

    def _set_monitor_op(self):
        if self.mode == "min":
            self.monitor_op = keras.ops.less
        elif self.mode == "max":
            self.monitor_op = keras.ops.greater
        else:
            self.monitor_op = self._infer_monitor_op()
        if self.monitor_op is keras.ops.less:
            self.min_delta *= -1

    def _infer_monitor_op(self):
        metric_name = self.monitor.removeprefix("val_")
        monitor_op = keras.ops.less if metric_name == "loss" else None
        for metric in self._compiled_metrics():
            if metric.name == metric_name:
                direction = _metric_direction(metric)
                if direction == "up":
                    monitor_op = keras.ops.greater
                elif direction == "down":
                    monitor_op = keras.ops.less
        if monitor_op is not None:
            return monitor_op
        words = set(metric_name.lower().split("_"))
        if words & _HIGHER_IS_BETTER and not words & _LOWER_IS_BETTER:
            return keras.ops.greater
        if words & _LOWER_IS_BETTER and not words & _HIGHER_IS_BETTER:
            return keras.ops.less
        raise ValueError(
            f"{self.__class__.__name__} callback received "
            f"monitor={self.monitor}, but Keras isn't able to "
            "automatically determine whether that metric should be "
            "maximized or minimized. Pass `mode='max'` in order to "
            "monitor based on the highest metric value, or pass "
            "`mode='min'` in order to use the lowest value."
        )

    def _compiled_metrics(self):
        metrics = []
        for metric in getattr(self._fit_model, "metrics", None) or []:
            names = {cls.__name__ for cls in type(metric).__mro__}
            if names & _METRIC_CONTAINERS:
                metrics.extend(metric.metrics)
        return metrics

    def _is_improvement(self, monitor_value, reference_value):
        if reference_value is None:
            return True
        return _compare(
            self.monitor_op, monitor_value - self.min_delta, reference_value
        )

    def get_monitor_value(self, logs):
        logs = logs or {}
        monitor_value = logs.get(self.monitor)
        if monitor_value is None:
            warnings.warn(
                (
                    f"Early stopping conditioned on metric `{self.monitor}` "
                    "which is not available. "
                    f"Available metrics are: {','.join(list(logs.keys()))}"
                ),
                stacklevel=2,
            )
        return monitor_value

    # ------------------------------------------------------------------
    # Weights.

    def _copy_weights(self):
        """The model's current weights, as `best_weights` holds them.

        A Keras model's weights go into the preallocated snapshot, whose
        list of arrays is returned; any other model (only `get_weights` and
        `set_weights`, or its own versions of them) gives `get_weights()`.
        """
        model = self.model
        variables = _keras_variables(model)
        if variables is None:
            return model.get_weights()
        if self._snapshot is None or not self._snapshot.matches(variables):
            self._snapshot = WeightSnapshot(variables)
        self._snapshot.capture(variables)
        return self._snapshot.buffers

    def _set_best_weights(self, weights):
        self.best_weights = weights
        # The snapshot now holds the best epoch: the weights from before
        # training are gone from it, and no longer needed.
        self._initial_weights = None

    def _put_back(self, weights):
        """Sets the model's weights to `weights`, in place from the snapshot."""
        model = self.model
        if self._snapshot is not None and weights is self._snapshot.buffers:
            variables = _keras_variables(model)
            if variables is not None and self._snapshot.matches(variables):
                self._snapshot.restore(variables)
                return
        model.set_weights(weights)

    def _restore_at_end(self):
        if not self.restore_best_weights:
            return
        if self.best_weights is not None:
            if self.verbose > 0:
                self._print(
                    "Restoring model weights from the end of the best epoch: "
                    f"{self.best_epoch + 1}."
                )
            weights = self.best_weights
        elif self.stop_reason == "non_finite" and self._initial_weights is not None:
            if self.verbose > 0:
                self._print("Restoring model weights from before training.")
            weights = self._initial_weights
        else:
            return
        with _sigint_held():
            self._put_back(weights)

    # ------------------------------------------------------------------
    # Resuming after an interruption (with keras.callbacks.BackupAndRestore).

    def _state_path(self):
        return self.checkpoint_path + ".state.json"

    def _save_state(self, finished=False):
        if self.checkpoint_path is None or not _checkpoint.is_chief(self._fit_model):
            return
        state = self.get_state()
        state["finished"] = finished
        _checkpoint.atomic_write_json(self._state_path(), state)

    def _maybe_resume(self, epoch):
        if self.checkpoint_path is None:
            return
        state = _checkpoint.read_json(self._state_path())
        if not state or state.get("finished") or state.get("epoch") != epoch - 1:
            return
        has_weights = bool(state.get("has_best_weights")) and os.path.exists(
            self.checkpoint_path
        )
        if state.get("best") is not None and self.checkpoint_path:
            saved_epoch = _checkpoint.read_saved_epoch(self.checkpoint_path)
            if saved_epoch != state["best_epoch"]:
                warnings.warn(
                    f"Not resuming EarlyStopping from {self._state_path()}: "
                    f"{self.checkpoint_path} holds epoch {saved_epoch}, the state "
                    f"expects epoch {state['best_epoch']}.",
                    stacklevel=2,
                )
                return
        self.set_state(state)
        if self.restore_best_weights and has_weights:
            with _sigint_held():
                self._set_best_weights(self._load_checkpoint_weights())

    def _load_checkpoint_weights(self):
        # load_weights also writes the optimizer's variables, so both the
        # model's and the optimizer's current values are put back after the
        # best weights have been copied out.
        model = self.model
        variables = list(model.weights)
        optimizer = getattr(model, "optimizer", None)
        optimizer_variables = list(optimizer.variables) if optimizer else []
        saved = [np.array(keras.ops.convert_to_numpy(v)) for v in variables]
        saved_optimizer = [
            np.array(keras.ops.convert_to_numpy(v)) for v in optimizer_variables
        ]
        model.load_weights(self.checkpoint_path)
        best_weights = self._copy_weights()
        for variable, value in zip(variables, saved, strict=True):
            variable.assign(value)
        for variable, value in zip(optimizer_variables, saved_optimizer, strict=True):
            variable.assign(value)
        return best_weights

    # ------------------------------------------------------------------
    # Ctrl-C.

    def _install_sigint(self):
        if self._sigint_installed or not self.handle_interrupt:
            return
        if threading.current_thread() is not threading.main_thread():
            return
        previous = signal.getsignal(signal.SIGINT)
        if previous is None:
            # Installed outside Python: it could not be put back.
            return
        self._previous_sigint = previous
        signal.signal(signal.SIGINT, self._on_sigint)
        self._sigint_installed = True

    def _uninstall_sigint(self):
        if not self._sigint_installed:
            return
        self._sigint_installed = False
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, self._previous_sigint)
        self._previous_sigint = None

    def _on_sigint(self, signum, frame):
        if self._interrupted:
            # A second Ctrl-C: the user does not want to wait for the batch.
            self._uninstall_sigint()
            self.stop_reason = "interrupted"
            self.stop_message = "training aborted by a second Ctrl-C"
            raise KeyboardInterrupt
        if not self._training:
            # Training is over and the handler is still in place: behave as
            # the previous handler.
            previous = self._previous_sigint
            self._uninstall_sigint()
            if callable(previous):
                previous(signum, frame)
            elif previous != signal.SIG_IGN:
                raise KeyboardInterrupt
            return
        self._interrupted = True
        self._fit_model.stop_training = True
        sys.stderr.write(
            "\nEarlyStopping: stopping at the end of the current batch "
            "(press Ctrl-C again to abort).\n"
        )
        sys.stderr.flush()

    def _print(self, message):
        # Keras's io_utils.print_msg: stdout, or absl logging when Keras's
        # interactive logging is off.
        if keras.config.is_interactive_logging_enabled():
            sys.stdout.write(message + "\n")
            sys.stdout.flush()
        else:
            from absl import logging

            logging.info(message)


# ----------------------------------------------------------------------
# Helpers.


def _keras_variables(model):
    """`model.weights` if `get_weights`/`set_weights` are Keras's own over them.

    Keras's `Layer.get_weights` returns the values of `model.weights` in order,
    and `set_weights` assigns them back, so the snapshot can stand in for
    both. A model without Keras variables, or with its own `get_weights` or
    `set_weights`, returns None: its methods are then called, as Keras does.
    """
    cls = type(model)
    if (
        getattr(cls, "get_weights", None) is not keras.layers.Layer.get_weights
        or getattr(cls, "set_weights", None) is not keras.layers.Layer.set_weights
    ):
        return None
    variables = list(model.weights)
    if not all(isinstance(variable, keras.Variable) for variable in variables):
        return None
    return variables


def _public_classes(names):
    return tuple(
        cls
        for cls in (getattr(keras.metrics, name, None) for name in names)
        if isinstance(cls, type)
    )


def _metric_direction(metric):
    """ "up", "down" or None: which way Keras's auto mode takes `metric`."""
    if isinstance(metric, _public_classes(_METRICS_GOING_UP)):
        return "up"
    if isinstance(metric, _public_classes(_METRICS_GOING_DOWN)):
        return "down"
    if isinstance(metric, keras.metrics.MeanMetricWrapper) and _wraps_a_keras_loss(
        metric
    ):
        # Keras: a metric made of one of its own losses is minimized.
        return "down"
    return None


def _wraps_a_keras_loss(metric):
    try:
        fn = metric.get_config().get("fn")
    except Exception:  # a function the config cannot describe is not Keras's
        return False
    if not isinstance(fn, dict):
        return False
    if fn.get("module") == "keras.losses":
        # An instance of one of Keras's loss classes.
        return True
    name = fn.get("config")
    loss = getattr(keras.losses, name, None) if isinstance(name, str) else None
    return fn.get("class_name") == "function" and (
        callable(loss) and not isinstance(loss, type)
    )


def _compare(op, value, reference):
    """Returns `bool(op(value, reference))`, without tensors where it can.

    `keras.ops.less` and `keras.ops.greater` turn Python floats into float32
    tensors (float64 where `floatx` or JAX's x64 mode says so), so Keras's
    comparison is a float32 one. Rounding to a narrower float never reverses
    an order, so "not smaller in float64" is "not smaller" at any precision;
    "smaller" is answered here when it also holds in float32 (then it holds
    in float64 too). The rare pairs that only float64 can tell apart, and
    any other `monitor_op`, go to the op itself.
    """
    if op is keras.ops.less:
        low, high = value, reference
    elif op is keras.ops.greater:
        low, high = reference, value
    else:
        return bool(op(value, reference))
    if type(low) is float and type(high) is float:
        if not low < high:
            return False
        if (
            abs(low) < _FLOAT32_MAX
            and abs(high) < _FLOAT32_MAX
            and np.float32(low) < np.float32(high)
            and keras.config.floatx() in ("float32", "float64")
        ):
            return True
    return bool(op(value, reference))


@contextlib.contextmanager
def _sigint_held():
    """Holds a Ctrl-C back until the block is done, then delivers it.

    Copying or restoring the weights cut short by `KeyboardInterrupt` would
    leave the snapshot, or the model, mixing two epochs. Only the main thread
    receives signals; elsewhere, or under a handler installed outside Python,
    nothing is changed.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)
    if previous is None:
        yield
        return
    received = []
    signal.signal(signal.SIGINT, lambda signum, frame: received.append(frame))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if received:
            if callable(previous):
                previous(signal.SIGINT, received[0])
            elif previous == signal.SIG_DFL:
                signal.raise_signal(signal.SIGINT)


# ----------------------------------------------------------------------
# Argument checks. Where Keras accepts a value and it means something, it is
# accepted; values that can only be a mistake and would silently change
# training are refused with the package's error template.


def _is_number(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _as_python_number(value):
    return int(value) if isinstance(value, numbers.Integral) else float(value)


def _check_patience(value):
    # Keras compares `wait >= patience`: a float works (2.5 waits 3 epochs)
    # and `math.inf` never stops. NaN never stops either, and a negative
    # count stops at the first epoch without improvement, like 0: neither
    # can be what was meant.
    if not _is_number(value) or math.isnan(value) or value < 0:
        raise _validation.invalid_argument("patience", "an int or float >= 0", value)
    return _as_python_number(value)


def _check_verbose(value):
    # Keras only asks `verbose > 0`; `verbose=True` is common.
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if not _is_number(value):
        raise _validation.invalid_argument("verbose", "a bool or a number", value)
    return _as_python_number(value)


def _check_baseline(value):
    # An infinite baseline means something (always or never beaten); NaN
    # is never beaten, so training would always stop after `patience`.
    if value is None:
        return None
    if not _is_number(value) or math.isnan(value):
        raise _validation.invalid_argument(
            "baseline", "None or a float that is not NaN", value
        )
    return float(value)


def _check_flag(name, value):
    # Keras only asks whether the value is truthy. A string is refused:
    # "False" is truthy.
    if value is None or isinstance(value, (bool, np.bool_)):
        return value if value is None else bool(value)
    if isinstance(value, numbers.Integral) and value in (0, 1):
        return int(value)
    raise _validation.invalid_argument(name, "a bool", value)


def _check_start_from_epoch(value):
    # Keras compares `epoch < start_from_epoch`: a negative value is no
    # warm-up, like 0. NaN would silently skip the warm-up and infinity
    # would never monitor at all.
    if not _is_number(value) or not math.isfinite(value):
        raise _validation.invalid_argument(
            "start_from_epoch", "a finite int or float", value
        )
    return _as_python_number(value)
