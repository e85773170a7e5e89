"""Which way EarlyStopping's monitored metric should go, and the comparison.

Keras's auto mode reads a private attribute of its metric objects; the tables
below give the same answers through public class names (tests check them
against Keras), and words in the metric's name decide where no metric object
says.
"""

import keras
import numpy as np

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

# The public metric classes that Keras 3.15.1 marks as going up or down; their
# subclasses go the same way (tests/test_early_stopping.py checks the tables).
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

_FLOAT32_MAX = float(np.finfo(np.float32).max)


def monitor_op(mode, monitor, model, caller):
    """`keras.ops.less` or `keras.ops.greater` for `mode` and `monitor`.

    In "auto" mode `loss` is minimized, a compiled metric of `model` goes the
    way its class says, and otherwise words of the name decide. `caller`
    names the callback in the error raised when nothing decides.
    """
    if mode == "min":
        return keras.ops.less
    if mode == "max":
        return keras.ops.greater
    metric_name = monitor.removeprefix("val_")
    op = keras.ops.less if metric_name == "loss" else None
    for metric in _compiled_metrics(model):
        if metric.name == metric_name:
            direction = metric_direction(metric)
            if direction == "up":
                op = keras.ops.greater
            elif direction == "down":
                op = keras.ops.less
    if op is not None:
        return op
    words = set(metric_name.lower().split("_"))
    if words & _HIGHER_IS_BETTER and not words & _LOWER_IS_BETTER:
        return keras.ops.greater
    if words & _LOWER_IS_BETTER and not words & _HIGHER_IS_BETTER:
        return keras.ops.less
    raise ValueError(
        f"{caller} callback received monitor={monitor}, but Keras isn't able "
        "to automatically determine whether that metric should be maximized "
        "or minimized. Pass `mode='max'` in order to monitor based on the "
        "highest metric value, or pass `mode='min'` in order to use the "
        "lowest value."
    )


def _compiled_metrics(model):
    metrics = []
    for metric in getattr(model, "metrics", None) or []:
        names = {cls.__name__ for cls in type(metric).__mro__}
        if names & _METRIC_CONTAINERS:
            metrics.extend(metric.metrics)
    return metrics


def _public_classes(names):
    return tuple(
        cls
        for cls in (getattr(keras.metrics, name, None) for name in names)
        if isinstance(cls, type)
    )


def metric_direction(metric):
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


def compare(op, value, reference):
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
