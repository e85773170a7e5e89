"""EarlyStopping that never loses the best model."""

import math
import warnings

import keras

from keras_reg import _validation
from keras_reg._api import register
from keras_reg.callbacks import _early_stopping_args as _args
from keras_reg.callbacks import _messages, _monitor
from keras_reg.callbacks._checkpoint import BestCheckpoint
from keras_reg.callbacks._interrupt import GracefulInterrupt, hold_interrupts
from keras_reg.callbacks._snapshot import ModelWeights

_CONFIG_KEYS = (
    "monitor min_delta patience verbose mode baseline restore_best_weights "
    "start_from_epoch check_finite stopping_threshold divergence_threshold "
    "handle_interrupt checkpoint_path"
).split()

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
    arguments, the public attributes (`best`, `wait`, `stopped_epoch`,
    `best_epoch`, `best_weights`, `monitor_op`, `min_delta`) and the messages
    are Keras's, and with the other arguments at their defaults it decides,
    restores and prints exactly as Keras's does. `best_weights` may be
    assigned; whatever it holds at the end of training is what
    `restore_best_weights` puts back. Any object with `get_weights()`,
    `set_weights()` and `stop_training` can be the model; for a Keras model,
    `best_weights` holds one reused copy that the next improvement overwrites.

    Beyond Keras, only where asked (docs/early_stopping.md tells more): other
    reasons to stop (`check_finite`, `stopping_threshold`,
    `divergence_threshold`), a graceful Ctrl-C (`handle_interrupt`), the best
    weights on disk, crash-safe, and resuming with
    `keras.callbacks.BackupAndRestore` (`checkpoint_path`). Used as a context
    manager around `fit`, it restores the best weights when `fit` raises (no
    Keras backend calls `on_train_end` then). `stop_reason` says why training
    ended (one of `STOP_REASONS`, None while running), `stop_message` in words.

    Args:
        monitor: Quantity to be monitored, a key of the epoch logs. Defaults
            to `"val_loss"`.
        min_delta: Minimum change that counts as an improvement (its absolute
            value, as in Keras). Defaults to `0`.
        patience: Epochs without improvement after which training stops;
            `math.inf` never stops. Defaults to `0`.
        verbose: `0` is silent, `1` (or `True`) prints Keras's messages, `2`
            also why training stopped. Defaults to `0`.
        mode: One of `"auto"`, `"min"`, `"max"` (anything else warns and
            means `"auto"`, as in Keras). `"auto"` follows the metric object's
            direction, or words in the name (`accuracy` up, `loss` down).
            Defaults to `"auto"`.
        baseline: Training stops if the monitored value does not beat this
            within `patience` epochs. Defaults to `None`.
        restore_best_weights: Whether to put back the weights of the best
            epoch at the end of training. Defaults to `False`.
        start_from_epoch: Warm-up epochs that are not monitored. Defaults to
            `0`.
        check_finite: Whether a NaN or infinite value stops training at once
            (it never becomes the best; with `restore_best_weights`, the last
            finite best, or the weights from before training, come back).
            Defaults to `False`: as in Keras, a NaN is never an improvement.
        stopping_threshold: Stop as soon as the monitored value is better than
            this. Defaults to `None`.
        divergence_threshold: Stop as soon as the monitored value is worse
            than this. Defaults to `None`.
        handle_interrupt: Whether the first Ctrl-C ends training after the
            current batch, restoring the best weights, and a second raises
            `KeyboardInterrupt`. Defaults to `False`: as in Keras, Ctrl-C
            raises.
        checkpoint_path: `None`, or a path ending in `.weights.h5` where the
            best weights are written atomically at each improvement, with the
            callback's progress beside it (`+ ".state.json"`) for resuming.
            Defaults to `None`.

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
        self.patience = _args.patience(patience)
        self.verbose = _args.verbose(verbose)
        if mode not in ("auto", "min", "max"):
            warnings.warn(
                f"{self.__class__.__name__} mode '{mode}' is unknown, fallback "
                "to auto mode.",
                stacklevel=2,
            )
            mode = "auto"
        self.mode = mode
        self.baseline = _args.baseline(baseline)
        self.restore_best_weights = _args.flag(
            "restore_best_weights", restore_best_weights
        )
        self.start_from_epoch = _args.start_from_epoch(start_from_epoch)
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
        self.checkpoint_path = _args.checkpoint_path(checkpoint_path)

        self.monitor_op = None
        self._weights = ModelWeights()
        self._interrupt = GracefulInterrupt(
            self.__class__.__name__,
            on_abort=lambda: self._set_reason("interrupted", _messages.ABORTED),
        )
        self._fit_model = None
        self._checkpoint = None
        self._reset()

    def _reset(self):
        self.wait = 0
        self.stopped_epoch = 0
        self.best = None
        self.best_epoch = 0
        self.best_weights = None
        self.stop_reason = None
        self.stop_message = None
        self._initial_weights = None
        self._last_epoch = None
        self._first_epoch_seen = False
        self._training = False
        self._interrupt.reset()

    def get_config(self) -> dict:
        config = {name: getattr(self, name) for name in _CONFIG_KEYS}
        # Negated once the direction is "min", as in Keras.
        config["min_delta"] = abs(self.min_delta)
        return config

    @classmethod
    def from_config(cls, config: dict) -> "EarlyStopping":
        return cls(**config)

    def get_state(self) -> dict:
        """Returns the callback's progress as a JSON-friendly dict (no weights)."""
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

    def __enter__(self) -> "EarlyStopping":
        return self

    def __exit__(self, exc_type, exc_value, traceback) -> bool:
        self._interrupt.uninstall()
        if exc_type is None or not self._training:
            return False
        self._training = False
        if self.stop_reason is None:
            if issubclass(exc_type, KeyboardInterrupt):
                self._set_reason("interrupted", _messages.INTERRUPTED)
            else:
                self._set_reason("exception", f"training raised {exc_type.__name__}")
            if self.verbose > 0:
                _messages.print_message(f"EarlyStopping: {self.stop_message}.")
        # `fit` has returned control: on JAX its own cleanup has already
        # written the training state into the variables, so what is restored
        # here stays.
        self._restore_at_end()
        return False

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
        self._reset()
        self._training = True
        self._checkpoint = (
            BestCheckpoint(self.checkpoint_path) if self.checkpoint_path else None
        )
        if self.restore_best_weights and self.check_finite:
            # Kept for a first monitored epoch that is not finite: the
            # weights from before training are then the last good ones.
            with hold_interrupts():
                self._initial_weights = self._weights.copy(self.model)
        if self.handle_interrupt:
            self._interrupt.install(self._fit_model)

    def on_epoch_begin(self, epoch, logs=None):
        if not self._first_epoch_seen:
            self._first_epoch_seen = True
            if epoch > 0 and self._checkpoint is not None:
                self._resume(epoch)

    def on_epoch_end(self, epoch, logs=None):
        if self._interrupt.requested:
            # The epoch was cut short by Ctrl-C: its metrics describe part of
            # an epoch, so it is not monitored.
            self._stop(epoch, "interrupted", _messages.INTERRUPTED)
            return
        self._last_epoch = epoch
        try:
            self._on_monitored_epoch_end(epoch, logs)
        finally:
            self._save_state()

    def on_train_end(self, logs=None):
        self._interrupt.uninstall()
        self._training = False
        if self._interrupt.requested and self.stop_reason is None:
            # Ctrl-C came after this callback had seen the epoch's logs.
            self._stop(self._last_epoch or 0, "interrupted", _messages.INTERRUPTED)
        if self.stop_reason is None:
            self._set_reason("completed", _messages.COMPLETED)
        if self.verbose >= 2 and self.stop_reason != "completed":
            _messages.print_message(
                f"Epoch {self.stopped_epoch + 1}: early stopping: {self.stop_message}."
            )
        elif self.stopped_epoch > 0 and self.verbose > 0:
            # Keras's line, word for word.
            _messages.print_message(f"Epoch {self.stopped_epoch + 1}: early stopping")
        self._restore_at_end()
        self._save_state(finished=True)

    def _on_monitored_epoch_end(self, epoch, logs):
        if self.monitor_op is None:
            # Delay setup until the model's metrics are all built.
            self._set_monitor_op()

        current = self.get_monitor_value(logs)
        if current is None:
            return
        current = float(current)
        if self.check_finite and not math.isfinite(current):
            message = _messages.not_finite(
                self.monitor, current, self.best, self.best_epoch
            )
            self._stop(epoch, "non_finite", message)
            return
        if epoch < self.start_from_epoch:
            return

        improved = self._is_improvement(current, self.best)
        if improved or (self.restore_best_weights and self.best_weights is None):
            # As in Keras: with no best weights yet (first monitored epoch,
            # or `best_weights` set to None), the current ones are the best.
            with hold_interrupts():
                if self.restore_best_weights:
                    self._set_best_weights(self._weights.copy(self.model))
                self.best_epoch = epoch
                if improved:
                    self.best = current
        self.wait += 1
        if improved:
            if self._checkpoint is not None:
                self._checkpoint.save_weights(self.model, epoch, self._fit_model)
            # Only restart wait if we beat both the baseline and our previous
            # best.
            if self.baseline is None or self._is_improvement(current, self.baseline):
                self.wait = 0
        elif self.wait >= self.patience and epoch > 0:
            beaten = self.baseline is None or self._is_improvement(
                self.best, self.baseline
            )
            self._stop(epoch, "patience", _messages.patience(self, beaten))
            return

        for reason, threshold, sign, word in (
            ("stopping_threshold", self.stopping_threshold, 1, "better"),
            ("divergence_threshold", self.divergence_threshold, -1, "worse"),
        ):
            if threshold is not None and _monitor.compare(
                self.monitor_op, sign * current, sign * threshold
            ):
                message = f"{self.monitor} {current:.4f} is {word} than"
                self._stop(epoch, reason, f"{message} {reason} {threshold:g}")
                return

    def _set_reason(self, reason, message):
        self.stop_reason = reason
        self.stop_message = message

    def _stop(self, epoch, reason, message):
        self.stopped_epoch = epoch
        self._set_reason(reason, message)
        self.model.stop_training = True

    def _set_monitor_op(self):
        self.monitor_op = _monitor.monitor_op(
            self.mode, self.monitor, self._fit_model, self.__class__.__name__
        )
        if self.monitor_op is keras.ops.less:
            self.min_delta *= -1

    def _is_improvement(self, monitor_value, reference_value):
        if reference_value is None:
            return True
        return _monitor.compare(
            self.monitor_op, monitor_value - self.min_delta, reference_value
        )

    def get_monitor_value(self, logs):
        logs = logs or {}
        monitor_value = logs.get(self.monitor)
        if monitor_value is None:
            warnings.warn(
                f"Early stopping conditioned on metric `{self.monitor}` "
                "which is not available. "
                f"Available metrics are: {','.join(logs)}",
                stacklevel=2,
            )
        return monitor_value

    def _set_best_weights(self, weights):
        self.best_weights = weights
        # The snapshot now holds the best epoch: the weights from before
        # training are gone from it, and no longer needed.
        self._initial_weights = None

    def _restore_at_end(self):
        if not self.restore_best_weights:
            return
        if self.best_weights is not None:
            weights = self.best_weights
            message = (
                "Restoring model weights from the end of the best epoch: "
                f"{self.best_epoch + 1}."
            )
        elif self.stop_reason == "non_finite" and self._initial_weights is not None:
            weights = self._initial_weights
            message = "Restoring model weights from before training."
        else:
            return
        if self.verbose > 0:
            _messages.print_message(message)
        with hold_interrupts():
            self._weights.put_back(self.model, weights)

    def _save_state(self, finished=False):
        if self._checkpoint is not None:
            self._checkpoint.save_state(
                {**self.get_state(), "finished": finished}, self._fit_model
            )

    def _resume(self, epoch):
        # A run resumed by keras.callbacks.BackupAndRestore starts at the
        # epoch after the last one backed up.
        state = self._checkpoint.resumable_state(epoch)
        if state is None:
            return
        self.set_state(state)
        if self.restore_best_weights and self._checkpoint.has_weights(state):
            with hold_interrupts():
                self._set_best_weights(
                    self._checkpoint.load_weights(
                        self.model, lambda: self._weights.copy(self.model)
                    )
                )
