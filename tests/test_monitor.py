"""Which way a monitored metric goes, and the float32 comparison
(keras_reg/callbacks/_monitor.py), with Keras as the oracle.
"""

import keras
import numpy as np
import pytest

from keras_reg.callbacks._monitor import compare, metric_direction, monitor_op


def _identity(y_true, y_pred):
    return y_true


def _public_metrics():
    """One instance of every public Keras metric class that can be built."""
    needs = {
        "PrecisionAtRecall": {"recall": 0.5},
        "RecallAtPrecision": {"precision": 0.5},
        "SensitivityAtSpecificity": {"specificity": 0.5},
        "SpecificityAtSensitivity": {"sensitivity": 0.5},
        "IoU": {"num_classes": 2, "target_class_ids": [0]},
        "MeanIoU": {"num_classes": 2},
        "OneHotIoU": {"num_classes": 2, "target_class_ids": [0]},
        "OneHotMeanIoU": {"num_classes": 2},
        "MeanMetricWrapper": {"fn": _identity},
    }
    metrics = []
    for name in sorted(dir(keras.metrics)):
        cls = getattr(keras.metrics, name)
        if isinstance(cls, type) and issubclass(cls, keras.metrics.Metric):
            if name != "Metric":
                metrics.append(cls(**needs.get(name, {})))
    return metrics


def _loss_metrics():
    """A MeanMetricWrapper around every public Keras loss, and two others."""
    metrics = []
    for name in sorted(dir(keras.losses)):
        loss = getattr(keras.losses, name)
        if isinstance(loss, type):
            if issubclass(loss, keras.losses.Loss) and name not in ("Loss",):
                try:
                    loss = loss()
                except TypeError:  # needs arguments
                    continue
            else:
                continue
        elif not callable(loss) or name in ("get", "serialize", "deserialize"):
            continue
        metrics.append(keras.metrics.MeanMetricWrapper(loss))

    def my_error(y_true, y_pred):
        return y_true - y_pred

    metrics.append(keras.metrics.MeanMetricWrapper(my_error))
    return metrics


def test_metric_directions_are_the_ones_keras_reads_from_its_metrics():
    # Keras's auto mode reads a private `_direction`; ours reads public
    # names. Both must agree on every public metric and on metrics made of
    # losses (Keras minimizes a metric made of one of its own losses).
    checked = 0
    for metric in [*_public_metrics(), *_loss_metrics()]:
        expected = getattr(metric, "_direction", None)
        if "generalized_cross_entropy" in str(metric.get_config().get("fn")):
            # Keras 3.15.1 leaves this loss out of its list of losses, so it
            # has no direction and Keras's auto mode raises; ours minimizes.
            assert expected is None
            expected = "down"
        assert metric_direction(metric) == expected, metric
        checked += 1
    assert checked > 60


@pytest.mark.parametrize(
    "mode, monitor, expected",
    [
        ("min", "val_accuracy", keras.ops.less),
        ("max", "val_loss", keras.ops.greater),
        ("auto", "val_loss", keras.ops.less),
        ("auto", "val_top_accuracy", keras.ops.greater),
        ("auto", "mean_error", keras.ops.less),
        # A mode set after construction to anything else is auto, as in
        # Keras's callback (its constructor warns and stores "auto").
        ("down", "val_accuracy", keras.ops.greater),
        ("MIN", "val_loss", keras.ops.less),
    ],
)
def test_monitor_op_follows_mode_then_the_metric_name(mode, monitor, expected):
    assert monitor_op(mode, monitor, None, "EarlyStopping") is expected


def test_monitor_op_names_the_caller_when_nothing_decides():
    with pytest.raises(ValueError, match="^Watcher callback received monitor=spin,"):
        monitor_op("auto", "spin", None, "Watcher")


# Pairs of floats around float32 rounding: equal in float32 and ordered in
# float64, ordered in both, infinities, and NaN, which is never smaller.
_PAIRS = [
    (1.0, 1.0 + 1e-9),
    (1.0 + 1e-9, 1.0),
    (0.5, 0.25),
    (-3.0, 2.0),
    (-np.inf, 0.0),
    (0.0, np.inf),
    (np.nan, 1.0),
    (1.0, np.nan),
    (2.0, 2.0),
]


@pytest.mark.parametrize("op", [keras.ops.less, keras.ops.greater])
@pytest.mark.parametrize("value, reference", _PAIRS)
def test_compare_answers_as_the_keras_op_does(op, value, reference):
    # Keras's EarlyStopping calls the op on Python floats; `compare` answers
    # without a tensor where it can and must never disagree.
    assert compare(op, value, reference) is bool(op(value, reference))


def test_compare_calls_any_other_op():
    calls = []

    def op(value, reference):
        calls.append((value, reference))
        return value == reference

    assert compare(op, 2.0, 2.0) is True
    assert calls == [(2.0, 2.0)]
