"""What EarlyStopping says, and where it says it."""

import sys

import keras

INTERRUPTED = "training interrupted (Ctrl-C)"
ABORTED = "training aborted by a second Ctrl-C"
COMPLETED = "training completed all epochs"


def print_message(message):
    """Prints as Keras's callbacks do: stdout, or absl logging when Keras's
    interactive logging is off."""
    if keras.config.is_interactive_logging_enabled():
        sys.stdout.write(message + "\n")
        sys.stdout.flush()
    else:
        from absl import logging

        logging.info(message)


def patience(callback, baseline_beaten):
    """Why `callback` (an EarlyStopping) ran out of patience."""
    if not baseline_beaten:
        what = f"did not improve on baseline {callback.baseline:g}"
    elif callback.min_delta:
        what = f"did not improve by more than {abs(callback.min_delta):g}"
    else:
        what = "did not improve"
    best = f"best {callback.best:.4f} at epoch {callback.best_epoch + 1}"
    return f"{callback.monitor} {what} for {callback.wait} epochs ({best})"


def not_finite(monitor, value, best, best_epoch):
    after = "" if best is None else f" (best {best:.4f} at epoch {best_epoch + 1})"
    return f"{monitor} is {value} (not finite){after}"
