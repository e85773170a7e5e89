"""Tests for keras_reg.callbacks.RegularizationMetrics."""

import csv
import glob
import os

import keras
import numpy as np
import pytest

import keras_reg
from keras_reg.callbacks import RegularizationMetrics, regularization_metrics
from keras_reg.optimizers import Proximal
from keras_reg.regularizers import L1, L2
from tests.helpers import assert_config_round_trip, assert_json_round_trip


def _data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 6)).astype("float32")
    y = x[:, :2] * np.array([1.0, -1.0], "float32")
    return x, y


def _model():
    model = keras.Sequential(
        [
            keras.Input((6,)),
            keras.layers.Dense(
                5,
                kernel_regularizer=L1(0.05, proximal=True),
                bias_regularizer=L2(0.01),
                name="hidden",
            ),
            keras.layers.Dense(2, kernel_regularizer=L1(0.01), name="out"),
        ]
    )
    model.compile(optimizer=Proximal(keras.optimizers.SGD(0.1)), loss="mse")
    return model


def test_logged_values_match_sparsity_report_every_epoch():
    model = _model()
    reports = []
    recorder = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: reports.append(
            keras_reg.sparsity_report(model, print_fn=None)
        )
    )
    x, y = _data()
    history = model.fit(
        x,
        y,
        epochs=4,
        batch_size=8,
        verbose=0,
        callbacks=[RegularizationMetrics(per_layer=True), recorder],
    )
    logs = history.history
    assert len(reports) == 4
    for epoch, report in enumerate(reports):
        assert logs["sparsity"][epoch] == report["kernels"]["zero_fraction"]
        assert logs["regularization_loss"][epoch] == report["total"]["penalty"]
        hidden = report["variables"]["hidden/kernel"]
        assert logs["hidden/sparsity"][epoch] == hidden["zero_fraction"]
        assert logs["hidden/regularization_loss"][epoch] == pytest.approx(
            hidden["penalty"] + report["variables"]["hidden/bias"]["penalty"]
        )
        assert (
            logs["out/sparsity"][epoch]
            == (report["variables"]["out/kernel"]["zero_fraction"])
        )
    # Proximal L1 on the hidden kernel zeroes weights of irrelevant inputs.
    assert logs["sparsity"][-1] > 0


def test_without_per_layer_only_the_two_totals_are_added():
    x, y = _data()
    history = _model().fit(
        x, y, epochs=1, verbose=0, callbacks=[RegularizationMetrics()]
    )
    assert sorted(history.history) == ["loss", "regularization_loss", "sparsity"]


def test_a_layer_with_empty_kernels_has_sparsity_zero_as_in_sparsity_report():
    # Dense on zero features: a (0, 3) kernel. sparsity_report gives an empty
    # variable a zero fraction of 0.0; the per-layer value follows it.
    model = keras.Sequential(
        [keras.Input((0,)), keras.layers.Dense(3, name="empty"), keras.layers.Dense(2)]
    )
    callback = RegularizationMetrics(per_layer=True)
    callback.set_model(model)
    metrics = callback.metrics()
    assert metrics["empty/sparsity"] == 0.0
    report = keras_reg.sparsity_report(model, print_fn=None)
    assert report["variables"]["empty/kernel"]["zero_fraction"] == 0.0


def test_csv_logger_after_the_callback_records_the_metrics(tmp_path):
    path = os.path.join(str(tmp_path), "log.csv")
    x, y = _data()
    _model().fit(
        x,
        y,
        epochs=2,
        verbose=0,
        callbacks=[RegularizationMetrics(), keras.callbacks.CSVLogger(path)],
    )
    with open(path) as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2
    assert {"sparsity", "regularization_loss"} <= set(rows[0])
    assert float(rows[1]["regularization_loss"]) > 0


def _event_tags(log_dir):
    import tensorflow as tf

    tags = set()
    for path in glob.glob(os.path.join(log_dir, "**", "events.out.*"), recursive=True):
        for event in tf.compat.v1.train.summary_iterator(path):
            tags.update(value.tag for value in event.summary.value)
    return tags


def test_tensorboard_after_the_callback_writes_the_metrics(tmp_path):
    # TensorFlow 2.21 no longer installs TensorBoard, which tf.summary needs.
    pytest.importorskip("tensorboard", reason="tensorboard is not installed")
    log_dir = os.path.join(str(tmp_path), "logs")
    x, y = _data()
    _model().fit(
        x,
        y,
        epochs=2,
        verbose=0,
        callbacks=[
            RegularizationMetrics(per_layer=True),
            keras.callbacks.TensorBoard(log_dir),
        ],
    )
    tags = _event_tags(log_dir)
    assert {"epoch_sparsity", "epoch_regularization_loss"} <= tags
    assert "epoch_hidden/sparsity" in tags


def test_config_round_trip_and_validation():
    callback = RegularizationMetrics(per_layer=True)
    assert callback.get_config() == {"per_layer": True}
    assert_config_round_trip(callback)
    assert_json_round_trip(callback)
    assert (
        keras.saving.get_registered_name(RegularizationMetrics)
        == "keras_reg>RegularizationMetrics"
    )
    for value in (1, "yes", None):
        with pytest.raises(ValueError) as info:
            RegularizationMetrics(per_layer=value)
        assert str(info.value) == (
            "Invalid value received for argument `per_layer`. Expected a bool. "
            f"Received: per_layer={value!r}"
        )


def test_module_docstring_examples_run():
    import doctest

    failures, _ = doctest.testmod(regularization_metrics, verbose=False)
    assert failures == 0
