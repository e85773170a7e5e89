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
    "acc accuracy auc precision recall f1 fbeta iou r2".split()
)
_LOWER_IS_BETTER = frozenset(
    "loss error crossentropy mse mae mape msle hinge kld kl poisson logcosh".split()
)

# The compiled-metrics containers whose members Keras searches for a metric's
# direction (keras.src.trainers.compile_utils, not public).
_METRIC_CONTAINERS = frozenset({"CompileMetrics", "MetricsList"})


def _public_classes(names):
    return tuple(
        getattr(keras.metrics, name)
        for name in names.split()
        if isinstance(getattr(keras.metrics, name, None), type)
    )


# The public metric classes that Keras 3.15.1 marks as going up or down; their
# subclasses go the same way (tests/test_monitor.py checks the tables).
_METRICS_GOING_UP = _public_classes(
    "AUC Accuracy BinaryAccuracy BinaryIoU CategoricalAccuracy "
    "ConcordanceCorrelation CosineSimilarity FBetaScore IoU MeanIoU OneHotIoU "
    "OneHotMeanIoU PearsonCorrelation Precision PrecisionAtRecall R2Score Recall "
    "RecallAtPrecision SensitivityAtSpecificity SparseCategoricalAccuracy "
    "SparseTopKCategoricalAccuracy SpecificityAtSensitivity TopKCategoricalAccuracy"
)
_METRICS_GOING_DOWN = _public_classes(
    "BinaryCrossentropy CategoricalCrossentropy CategoricalHinge Hinge KLDivergence "
    "LogCoshError MeanAbsoluteError MeanAbsolutePercentageError MeanSquaredError "
    "MeanSquaredLogarithmicError Poisson RootMeanSquaredError "
    "SparseCategoricalCrossentropy SquaredHinge"
)

# Modes and metric directions.
_OPS = {
    "min": keras.ops.less,
    "down": keras.ops.less,
    "max": keras.ops.greater,
    "up": keras.ops.greater,
}

_FLOAT32_MAX = float(np.finfo(np.float32).max)


def monitor_op(mode, monitor, model, caller):
    """`keras.ops.less` or `keras.ops.greater` for `mode` and `monitor`.

    In "auto" mode `loss` is minimized, a compiled metric of `model` goes the
    way its class says, and otherwise words of the name decide. `caller`
    names the callback in the error raised when nothing decides.
    """
    if mode in ("min", "max"):  # anything else is auto, as in Keras
        return _OPS[mode]
    metric_name = monitor.removeprefix("val_")
    direction = "down" if metric_name == "loss" else None
    for metric in _compiled_metrics(model):
        if metric.name == metric_name:
            direction = metric_direction(metric) or direction
    if direction is None:
        words = set(metric_name.lower().split("_"))
        up, down = words & _HIGHER_IS_BETTER, words & _LOWER_IS_BETTER
        if up and not down:
            direction = "up"
        elif down and not up:
            direction = "down"
        else:
            raise ValueError(
                f"{caller} callback received monitor={monitor}, but Keras isn't "
                "able to automatically determine whether that metric should be "
                "maximized or minimized. Pass `mode='max'` in order to monitor "
                "based on the highest metric value, or pass `mode='min'` in "
                "order to use the lowest value."
            )
    return _OPS[direction]


def _compiled_metrics(model):
    metrics = []
    for metric in getattr(model, "metrics", None) or []:
        names = {cls.__name__ for cls in type(metric).__mro__}
        if names & _METRIC_CONTAINERS:
            metrics.extend(metric.metrics)
    return metrics


def metric_direction(metric):
    """ "up", "down" or None: which way Keras's auto mode takes `metric`."""
    if isinstance(metric, _METRICS_GOING_UP):
        return "up"
    if isinstance(metric, _METRICS_GOING_DOWN):
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
    if fn.get("module") == "keras.losses":  # an instance of a Keras loss class
        return True
    name = fn.get("config")
    loss = getattr(keras.losses, name, None) if isinstance(name, str) else None
    return (
        fn.get("class_name") == "function"
        and callable(loss)
        and not isinstance(loss, type)
    )


def compare(op, value, reference):
    """Returns `bool(op(value, reference))`, without a tensor where float32
    gives the same answer (docs/internals.md explains why that is exact)."""
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
