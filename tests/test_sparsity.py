"""Tests for keras_reg.sparsity_report."""

import keras
import numpy as np

import keras_reg
from keras_reg import sparsity
from keras_reg.regularizers import L1, L2, GroupLasso


def _np(x):
    return keras.ops.convert_to_numpy(x)


def _model():
    model = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(
                3, kernel_regularizer=L1(0.1), bias_regularizer=L2(0.2), name="first"
            ),
            keras.layers.Dense(2, kernel_regularizer=GroupLasso(0.3), name="second"),
        ],
        name="net",
    )
    rng = np.random.default_rng(0)
    first = rng.normal(size=(4, 3)).astype("float32")
    first[:, 1] = 0.0  # a dead unit
    first[0, 0] = 0.0
    model.layers[0].kernel.assign(first)
    model.layers[0].bias.assign(np.array([0.5, 0.0, -1.0], "float32"))
    model.layers[1].kernel.assign(rng.normal(size=(3, 2)).astype("float32"))
    return model


def test_entries_match_numpy():
    model = _model()
    report = keras_reg.sparsity_report(model, print_fn=None)
    assert list(report["variables"]) == [
        "first/kernel",
        "first/bias",
        "second/kernel",
        "second/bias",
    ]
    assert report["layers"] == {
        "first": ["first/kernel", "first/bias"],
        "second": ["second/kernel", "second/bias"],
    }
    first = _np(model.layers[0].kernel).astype(np.float64)
    entry = report["variables"]["first/kernel"]
    assert entry["layer"] == "first"
    assert entry["shape"] == (4, 3)
    assert entry["size"] == 12
    assert entry["zeros"] == 5
    assert entry["zero_fraction"] == 5 / 12
    np.testing.assert_allclose(entry["l1_norm"], np.abs(first).sum(), rtol=1e-6)
    np.testing.assert_allclose(entry["l2_norm"], np.linalg.norm(first), rtol=1e-6)
    np.testing.assert_allclose(entry["penalty"], 0.1 * np.abs(first).sum(), rtol=1e-6)
    assert entry["units"] == 3
    assert entry["dead_units"] == [1]

    bias = report["variables"]["first/bias"]
    assert (bias["zeros"], bias["units"], bias["dead_units"]) == (1, None, None)
    np.testing.assert_allclose(bias["penalty"], 0.2 * (0.25 + 1.0), rtol=1e-6)

    second = _np(model.layers[1].kernel).astype(np.float64)
    group_lasso = 0.3 * np.sqrt(3) * np.linalg.norm(second, axis=0).sum()
    np.testing.assert_allclose(
        report["variables"]["second/kernel"]["penalty"], group_lasso, rtol=1e-6
    )
    assert report["variables"]["second/bias"]["penalty"] is None


def test_totals_sum_kernels_and_all_variables():
    report = keras_reg.sparsity_report(_model(), print_fn=None)
    assert report["kernels"]["size"] == 12 + 6
    assert report["kernels"]["zeros"] == 5
    assert report["kernels"]["zero_fraction"] == 5 / 18
    # Biases start at zero except the two assigned in the first layer.
    assert report["total"]["size"] == 12 + 3 + 6 + 2
    assert report["total"]["zeros"] == 5 + 1 + 2
    variables = report["variables"].values()
    np.testing.assert_allclose(
        report["total"]["penalty"], sum(v["penalty"] or 0.0 for v in variables)
    )


def test_dead_units_are_conv_filters_along_the_last_axis():
    model = keras.Sequential([keras.Input((6, 6, 2)), keras.layers.Conv2D(4, 3)])
    kernel = np.ones((3, 3, 2, 4), "float32")
    kernel[..., 2] = 0.0
    kernel[0, 0, 0, 3] = 0.0  # one zero does not kill a filter
    model.layers[0].kernel.assign(kernel)
    report = keras_reg.sparsity_report(model, print_fn=None)
    entry = report["variables"][f"{model.layers[0].name}/kernel"]
    assert entry["dead_units"] == [2]
    assert entry["zeros"] == 18 + 1


def test_prints_one_table_row_per_variable_and_total():
    lines = []
    report = keras_reg.sparsity_report(_model(), print_fn=lines.append)
    assert len(lines) == 1
    table = lines[0].splitlines()
    assert table[0].split() == [
        "variable",
        "shape",
        "size",
        "zeros",
        "zero",
        "%",
        "L1",
        "norm",
        "L2",
        "norm",
        "penalty",
        "dead",
        "units",
    ]
    assert set(table[1]) == {"-"}
    rows = {line.split()[0]: line.split() for line in table[2:]}
    assert list(rows) == list(report["variables"]) + ["[kernels]", "[total]"]
    assert rows["first/kernel"][1:5] == ["4x3", "12", "5", "41.67"]
    assert rows["first/kernel"][-1] == "1/3"
    assert rows["first/bias"][-2:] == ["0.25", "-"]
    assert rows["[total]"][1:4] == ["23", "8", "34.78"]


def test_print_fn_none_prints_nothing(capsys):
    keras_reg.sparsity_report(_model(), print_fn=None)
    assert capsys.readouterr().out == ""
    keras_reg.sparsity_report(_model())
    assert "first/kernel" in capsys.readouterr().out


def test_module_docstring_examples_run():
    import doctest

    failures, _ = doctest.testmod(sparsity, verbose=False)
    assert failures == 0


def _pruned_model(mode):
    from keras_reg import pruning

    model = _model()
    model.compile(
        optimizer=pruning.Pruning(
            keras.optimizers.SGD(0.0), pruning.ConstantSparsity(0.5), mode=mode
        ),
        loss="mse",
    )
    rng = np.random.default_rng(2)
    model.train_on_batch(rng.normal(size=(4, 4)), rng.normal(size=(4, 2)))
    return model


def test_reports_the_pruned_entries_of_each_masked_variable():
    model = _pruned_model("layer")
    report = keras_reg.sparsity_report(model, print_fn=None)
    first, second = (
        report["variables"]["first/kernel"],
        report["variables"]["second/kernel"],
    )
    # Half of 12 and of 6; the kernel's own zeros are among the smallest.
    assert (first["pruned"], first["pruned_fraction"]) == (6, 0.5)
    assert (second["pruned"], second["pruned_fraction"]) == (3, 0.5)
    assert first["zeros"] == np.count_nonzero(_np(model.layers[0].kernel) == 0) == 6
    assert report["variables"]["first/bias"]["pruned"] is None
    assert (report["kernels"]["pruned"], report["kernels"]["pruned_fraction"]) == (
        9,
        0.5,
    )
    assert report["total"]["pruned"] == 9


def test_structured_pruning_reports_dead_units_and_pruned_biases():
    report = keras_reg.sparsity_report(_pruned_model("structured"), print_fn=None)
    first = report["variables"]["first/kernel"]
    # Unit 1 is all zeros: it goes first; round(0.5 * 3) = 2 units.
    assert first["pruned"] == 8 and 1 in first["dead_units"]
    assert len(first["dead_units"]) == 2
    assert report["variables"]["first/bias"]["pruned"] == 2
    assert report["variables"]["second/bias"]["pruned"] == 1


def test_a_pruned_empty_kernel_has_pruned_fraction_zero():
    # Dense on zero features: a (0, 3) kernel, masked like the others. Its
    # fractions are 0.0, as zero_fraction's is for an empty variable.
    from keras_reg import pruning

    model = keras.Sequential(
        [keras.Input((0,)), keras.layers.Dense(3, name="empty"), keras.layers.Dense(2)]
    )
    optimizer = pruning.Pruning(
        keras.optimizers.SGD(0.1), pruning.ConstantSparsity(0.5)
    )
    model.compile(optimizer=optimizer, loss="mse")
    optimizer.build(model.trainable_variables)
    entry = keras_reg.sparsity_report(model, print_fn=None)["variables"]["empty/kernel"]
    assert (entry["size"], entry["pruned"], entry["pruned_fraction"]) == (0, 0, 0.0)
    assert entry["zero_fraction"] == 0.0


def test_table_has_a_pruned_column_only_for_pruned_models():
    lines = []
    keras_reg.sparsity_report(_pruned_model("layer"), print_fn=lines.append)
    table = lines[0].splitlines()
    assert table[0].split()[-2:] == ["pruned", "%"]
    rows = {line.split()[0]: line.split() for line in table[2:]}
    assert rows["first/kernel"][-1] == "50.00"
    assert rows["first/bias"][-1] == "-"
    assert rows["[kernels]"][-1] == "50.00"
    assert rows["[total]"][-1] == f"{100 * 9 / 23:.2f}"
    report = keras_reg.sparsity_report(_model(), print_fn=lines.append)
    assert "pruned" not in lines[1]
    assert report["variables"]["first/kernel"]["pruned"] is None
