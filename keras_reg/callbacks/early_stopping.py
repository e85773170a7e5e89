"""EarlyStopping that never loses the best model."""

import math
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

STOP_REASONS = (
    "patience",
    "non_finite",
    "stopping_threshold",
    "divergence_threshold",
    "interrupted",
    "exception",
    "completed",
)


@register
class EarlyStopping(keras.callbacks.Callback):
    """Stops training when a monitored metric has stopped improving.

    A drop-in replacement for `keras.callbacks.EarlyStopping`: the first eight
    arguments have Keras's names, defaults and meanings, and the public
    attributes (`best`, `wait`, `stopped_epoch`, `best_epoch`, `best_weights`,
    `monitor_op`) mean what they mean in Keras. At the end of every epoch the
    monitored value is compared with the best so far; after `patience` epochs
    without an improvement larger than `min_delta`, training stops. With
    `restore_best_weights=True` the weights of the best epoch are put back at
    the end of `fit`, whether or not training stopped early.

    It differs from Keras where Keras loses the best model:

    - A NaN or infinite monitored value stops training at once and never
      becomes the best (`check_finite`). With `restore_best_weights`, the last
      finite best is restored, or the weights from before training if the
      first monitored epoch was already not finite.
    - `stopping_threshold` stops as soon as the monitor is better than it;
      `divergence_threshold` stops as soon as it is worse.
    - `stop_reason` says why training ended (one of `"patience"`,
      `"non_finite"`, `"stopping_threshold"`, `"divergence_threshold"`,
      `"interrupted"`, `"exception"`, `"completed"`; None while running) and
      `stop_message` says it in words; with `verbose=1` the message is
      printed, for instance "Epoch 14: early stopping: val_loss did not
      improve by more than 0.001 for 5 epochs (best 0.2130 at epoch 9)."
    - Ctrl-C (`handle_interrupt=True`): the first SIGINT during `fit` ends
      training at the end of the current batch, the best weights are
      restored and `fit` returns its History normally; a second Ctrl-C
      raises `KeyboardInterrupt` at once. The previous SIGINT handler is put
      back when `fit` ends. The handler is installed only when `fit` runs on
      the main thread (Python allows signal handlers nowhere else); on other
      threads Ctrl-C behaves as without this callback.
    - Exceptions: no Keras backend calls `on_train_end` when `fit` raises, so
      no callback can react. Use the callback as a context manager around
      `fit` and the best weights are restored before any exception
      (including a second Ctrl-C) propagates:
      `with early_stopping: model.fit(..., callbacks=[early_stopping])`.
    - `checkpoint_path`: the best weights are also written there at every
      improvement, atomically (temporary file in the same folder, flush and
      fsync, `os.replace`), so a process killed at any moment leaves a file
      that `model.load_weights` reads and that holds the last best epoch.
      Under a distribution strategy only the chief writes. The callback's
      state is written next to it (`checkpoint_path + ".state.json"`) at
      every epoch, so a run interrupted and resumed with
      `keras.callbacks.BackupAndRestore` picks up `best`, `wait` and the best
      weights where it left off and stops where an uninterrupted run would.
    - The snapshot for `restore_best_weights` is one preallocated copy of all
      model weights (trainable and non-trainable, so BatchNormalization
      statistics are included), refreshed in place: no allocation per
      improvement, and peak memory of about one copy instead of Keras's two.

    Args:
        monitor: Quantity to be monitored, a key of the epoch logs. Defaults
            to `"val_loss"`.
        min_delta: Minimum change in the monitored quantity to qualify as an
            improvement; its absolute value is used, as in Keras. Defaults to
            `0`.
        patience: Number of epochs with no improvement after which training
            is stopped. Defaults to `0`.
        verbose: `0` is silent, `1` prints a message when the callback acts.
            Defaults to `0`.
        mode: One of `"auto"`, `"min"`, `"max"`. In `"auto"` mode the
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
            at once. Defaults to `True`.
        stopping_threshold: Stop as soon as the monitored value is better than
            this. Defaults to `None`.
        divergence_threshold: Stop as soon as the monitored value is worse
            than this. Defaults to `None`.
        handle_interrupt: Whether Ctrl-C ends training gracefully (see above).
            Defaults to `True`.
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
        patience: int = 0,
        verbose: int = 0,
        mode: str = "auto",
        baseline: float | None = None,
        restore_best_weights: bool = False,
        start_from_epoch: int = 0,
        check_finite: bool = True,
        stopping_threshold: float | None = None,
        divergence_threshold: float | None = None,
        handle_interrupt: bool = True,
        checkpoint_path: str | None = None,
    ):
        super().__init__()
        self.monitor = _validation.check_str("monitor", monitor)
        self.min_delta = abs(_validation.check_float("min_delta", min_delta))
        self.patience = _validation.check_int("patience", patience, low=0)
        self.verbose = _validation.check_int("verbose", verbose, low=0)
        self.mode = _validation.check_str("mode", mode, choices=("auto", "min", "max"))
        self.baseline = _validation.check_optional_float("baseline", baseline)
        self.restore_best_weights = _validation.check_bool(
            "restore_best_weights", restore_best_weights
        )
        self.start_from_epoch = _validation.check_int(
            "start_from_epoch", start_from_epoch, low=0
        )
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
        self.monitor_op = None
        self.stop_reason = None
        self.stop_message = None
        self._snapshot = None
        self._has_best_weights = False
        self._has_initial_weights = False
        self._signed_delta = 0.0
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
            "min_delta": self.min_delta,
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
    # Public state.

    @property
    def best_weights(self):
        """The best epoch's weights as NumPy arrays, or None (as in Keras).

        The arrays are the snapshot's own buffers, reused across
        improvements: copy them to keep a value.
        """
        if not self._has_best_weights:
            return None
        return self._snapshot.buffers

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
            "has_best_weights": self._has_best_weights,
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
            self.stop_reason = "exception"
            self.stop_message = f"training raised {exc_type.__name__}"
            self._print(f"EarlyStopping: {self.stop_message}.")
        self._restore()
        return False

    # ------------------------------------------------------------------
    # Callback hooks.

    def set_model(self, model):
        super().set_model(model)
        # The signal handler must not touch `self.model`: on JAX that property
        # syncs the training state, which is not safe in the middle of a step.
        self._fit_model = model

    def on_train_begin(self, logs=None):
        # Allow instances to be re-used across `model.fit()` calls.
        self.wait = 0
        self.stopped_epoch = 0
        self.best = None
        self.best_epoch = 0
        self.stop_reason = None
        self.stop_message = None
        self._has_best_weights = False
        self._has_initial_weights = False
        self._interrupted = False
        self._first_epoch_seen = False
        self._last_epoch = None
        self._training = True
        if self.restore_best_weights:
            variables = self.model.weights
            if self._snapshot is None or not self._snapshot.matches(variables):
                self._snapshot = WeightSnapshot(variables)
            # Kept for a first monitored epoch that is not finite: the
            # weights from before training are then the last good ones.
            self._snapshot.capture(variables)
            self._has_initial_weights = True
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
        elif self.verbose > 0 and self.stop_message is not None:
            self._print(
                f"Epoch {self.stopped_epoch + 1}: early stopping: {self.stop_message}."
            )
        self._restore()
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

        self.wait += 1
        if self._is_improvement(current, self.best):
            self.best = current
            self.best_epoch = epoch
            self._record_best(epoch)
            # Only restart wait if we beat both the baseline and our previous
            # best.
            if self.baseline is None or self._is_improvement(current, self.baseline):
                self.wait = 0
        elif self.wait >= self.patience and epoch > 0:
            self._stop(epoch, "patience", self._patience_message())
            return

        if self.stopping_threshold is not None and self.monitor_op(
            current, self.stopping_threshold
        ):
            self._stop(
                epoch,
                "stopping_threshold",
                f"{self.monitor} {current:.4f} is better than stopping_threshold "
                f"{self.stopping_threshold:g}",
            )
        elif self.divergence_threshold is not None and self.monitor_op(
            -current, -self.divergence_threshold
        ):
            self._stop(
                epoch,
                "divergence_threshold",
                f"{self.monitor} {current:.4f} is worse than divergence_threshold "
                f"{self.divergence_threshold:g}",
            )

    def _patience_message(self):
        if self.min_delta:
            what = f"did not improve by more than {self.min_delta:g}"
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
        self._fit_model.stop_training = True

    def _set_monitor_op(self):
        if self.mode == "min":
            self.monitor_op = np.less
        elif self.mode == "max":
            self.monitor_op = np.greater
        else:
            self.monitor_op = self._infer_monitor_op()
        # The signed delta keeps `min_delta` itself a positive constant.
        self._signed_delta = (
            -self.min_delta if self.monitor_op is np.less else self.min_delta
        )

    def _infer_monitor_op(self):
        metric_name = self.monitor.removeprefix("val_")
        monitor_op = np.less if metric_name == "loss" else None
        for metric in self._compiled_metrics():
            if metric.name == metric_name:
                direction = getattr(metric, "_direction", None)
                if direction == "up":
                    monitor_op = np.greater
                elif direction is not None:
                    monitor_op = np.less
        if monitor_op is not None:
            return monitor_op
        words = set(metric_name.lower().split("_"))
        if words & _HIGHER_IS_BETTER and not words & _LOWER_IS_BETTER:
            return np.greater
        if words & _LOWER_IS_BETTER and not words & _HIGHER_IS_BETTER:
            return np.less
        raise ValueError(
            f"EarlyStopping cannot tell whether `{self.monitor}` should be "
            'maximized or minimized. Pass mode="max" to keep the highest value '
            'or mode="min" to keep the lowest.'
        )

    def _compiled_metrics(self):
        metrics = []
        model = self._fit_model
        for metric in getattr(model, "metrics", None) or []:
            # The compiled-metrics container lists its members in `metrics`.
            members = getattr(metric, "metrics", None)
            if isinstance(members, (list, tuple)):
                metrics.extend(members)
        return metrics

    def _is_improvement(self, monitor_value, reference_value):
        if reference_value is None:
            return True
        return bool(
            self.monitor_op(monitor_value - self._signed_delta, reference_value)
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

    def _record_best(self, epoch):
        if self.restore_best_weights:
            self._snapshot.capture(self.model.weights)
            self._has_best_weights = True
        if self.checkpoint_path is not None and _checkpoint.is_chief(self._fit_model):
            _checkpoint.atomic_save_weights(self.model, self.checkpoint_path, epoch)

    def _restore(self):
        if not self.restore_best_weights or self._snapshot is None:
            return
        if self._has_best_weights:
            if self.verbose > 0:
                self._print(
                    "Restoring model weights from the end of the best epoch: "
                    f"{self.best_epoch + 1}."
                )
        elif self.stop_reason == "non_finite" and self._has_initial_weights:
            if self.verbose > 0:
                self._print("Restoring model weights from before training.")
        else:
            return
        self._snapshot.restore(self.model.weights)

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
            self._load_checkpoint_into_snapshot()
            self._has_best_weights = True

    def _load_checkpoint_into_snapshot(self):
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
        self._snapshot.capture(variables)
        for variable, value in zip(variables, saved, strict=True):
            variable.assign(value)
        for variable, value in zip(optimizer_variables, saved_optimizer, strict=True):
            variable.assign(value)

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
        if not self._fit_is_running(frame):
            # `fit` left through an exception without this callback's context
            # manager, so the handler was never removed: behave as before.
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

    def _fit_is_running(self, frame):
        while frame is not None:
            if (
                frame.f_code.co_name == "fit"
                and frame.f_locals.get("self") is self._fit_model
            ):
                return True
            frame = frame.f_back
        return False

    def _print(self, message):
        if self.verbose > 0:
            print(message, flush=True)
