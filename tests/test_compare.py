"""Tests of `python -m keras_reg compare` (keras_reg/compare/, issue 3).

Most runs call `main(argv)` in-process with two or three techniques and one to
three epochs; one subprocess runs the whole default command end to end.
"""

import csv
import io
import json
import math
import os
import subprocess
import sys

import keras
import matplotlib.image
import numpy as np
import pytest

from keras_reg.compare import cli, data, techniques, training, verdicts
from keras_reg.compare.cli import main
from tests.helpers import REPO_ROOT

BACKEND = keras.backend.backend()
TECHNIQUE_NAMES = [
    "baseline",
    "L1",
    "L1 (proximal)",
    "L2",
    "ElasticNet",
    "Dropout",
    "BatchNormalization",
    "EarlyStopping",
    "Combined",
]
CLAIMS = [
    "L1 drives weights to exactly zero",
    "L2 keeps weights small",
    "ElasticNet drives weights to zero and keeps them small",
    "Dropout reduces overfitting",
    "BatchNormalization speeds up convergence",
    "EarlyStopping stops at the point of best generalization",
]


# --- results.json schema (documented in keras_reg/compare/report.py) ---


def _is_number(value, allow_none=False):
    if value is None:
        return allow_none
    return isinstance(value, int | float) and not isinstance(value, bool)


def assert_results_schema(doc, task, names, epochs):
    assert doc["schema_version"] == 1
    assert doc["keras_reg_version"] == __import__("keras_reg").__version__
    assert doc["keras_version"] == keras.__version__
    assert doc["backend"] == BACKEND
    assert set(doc) == {
        "schema_version",
        "keras_reg_version",
        "keras_version",
        "backend",
        "settings",
        "data",
        "threshold",
        "techniques",
        "verdicts",
        "total_wall_time_s",
    }
    settings = doc["settings"]
    assert settings["epochs"] == epochs
    assert set(settings) == {
        "epochs",
        "batch_size",
        "seed",
        "hidden_units",
        "optimizer",
        "learning_rate",
    }
    d = doc["data"]
    assert d["task"] == task
    for key in ("n_features", "n_train", "n_validation", "n_test"):
        assert isinstance(d[key], int) and d[key] > 0
    assert doc["threshold"]["metric"] == (
        "accuracy" if task == "classification" else "r2"
    )
    split_keys = (
        {"accuracy", "cross_entropy"} if task == "classification" else {"mse", "mae"}
    )
    assert [t["name"] for t in doc["techniques"]] == names
    for t in doc["techniques"]:
        for split in ("train", "validation", "test"):
            assert set(t[split]) == split_keys
            assert all(_is_number(v) for v in t[split].values())
        if task == "classification":
            assert 0 <= t["train"]["accuracy"] <= 1
        assert _is_number(t["generalization_gap"])
        assert 1 <= t["best_epoch"] <= t["epochs_run"] <= epochs
        assert isinstance(t["stopped_early"], bool)
        assert 0 <= t["zero_weight_fraction"] <= t["near_zero_weight_fraction"] <= 1
        assert t["mean_abs_weight"] > 0
        assert isinstance(t["n_kernel_weights"], int)
        assert t["epochs_to_threshold"] is None or (
            1 <= t["epochs_to_threshold"] <= t["epochs_run"]
        )
        for key in ("loss", "val_loss", "data_loss", "val_data_loss"):
            assert len(t["history"][key]) == t["epochs_run"]
        assert set(t["config"]) == {
            "regularizer",
            "regularizer_kwargs",
            "dropout_rate",
            "batch_normalization",
            "early_stopping",
            "optimizer_wrapper",
        }
        assert t["wall_time_s"] > 0
    for v in doc["verdicts"]:
        assert set(v) == {"claim", "technique", "holds", "text", "numbers"}
        assert isinstance(v["holds"], bool)
        assert v["text"].startswith(v["claim"] + ": ")
        assert v["text"].endswith(": holds" if v["holds"] else ": does not hold")
    assert doc["total_wall_time_s"] > 0


def _without_wall_times(value):
    if isinstance(value, dict):
        return {
            k: _without_wall_times(v)
            for k, v in value.items()
            if not k.endswith("wall_time_s")
        }
    if isinstance(value, list):
        return [_without_wall_times(v) for v in value]
    return value


def _read(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


# --- end to end ---


def _run_module(args):
    """Runs `python -m keras_reg ARGS` from the repository root."""
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO_ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    return subprocess.run(
        [sys.executable, "-m", "keras_reg", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_default_command_three_epochs_writes_table_verdicts_and_files(tmp_path):
    out = tmp_path / "out"
    result = _run_module(["compare", "--epochs", "3", "--output", str(out)])
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    # Keras's progress bars and Python or tf.function warnings stay off.
    for noise in ("Warning", "retracing", "━━"):
        assert noise not in result.stderr + result.stdout
    stdout = result.stdout
    for name in TECHNIQUE_NAMES:
        assert f"\n{name} " in stdout
    verdict_lines = [
        line
        for line in stdout.splitlines()
        if line.endswith(": holds") or line.endswith(": does not hold")
    ]
    assert [line.split(": ")[0] for line in verdict_lines] == CLAIMS
    assert f"Wrote results.json, results.csv, results.png to {out}" in stdout
    # One progress line per technique (stderr is a pipe, not a terminal).
    for i, name in enumerate(TECHNIQUE_NAMES, start=1):
        assert f"[{i}/9] {name}" in result.stderr
    assert "epoch   3/3  val_accuracy" in result.stderr
    assert sorted(os.listdir(out)) == ["results.csv", "results.json", "results.png"]

    doc = _read(out / "results.json")
    assert_results_schema(doc, "classification", TECHNIQUE_NAMES, 3)
    assert doc["data"]["source"] == "digits"
    assert doc["data"]["n_train"] == 300
    assert doc["data"]["n_validation"] == 300
    assert doc["data"]["n_test"] == 1797 - 600
    assert [v["claim"] for v in doc["verdicts"]] == CLAIMS
    assert [v["text"] for v in doc["verdicts"]] == verdict_lines

    with open(out / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["technique"] for r in rows] == TECHNIQUE_NAMES
    for row, entry in zip(rows, doc["techniques"], strict=True):
        assert float(row["validation_metric"]) == entry["validation"]["accuracy"]
        assert float(row["zero_weight_fraction"]) == entry["zero_weight_fraction"]
        assert int(row["epochs_run"]) == entry["epochs_run"]

    image = matplotlib.image.imread(out / "results.png")
    assert image.shape[:2] == (900, 1400)


def test_same_seed_gives_same_json_numbers(tmp_path, capsys):
    # Promised on TensorFlow (issue 3); it holds on JAX and torch CPU too. One
    # run in this process, one in a fresh one, as a user would run it twice.
    argv = ["compare", "--techniques", "Dropout", "--epochs", "1", "--seed", "7"]
    assert main(argv + ["--quiet", "--output", str(tmp_path / "a")]) == 0
    result = _run_module(argv + ["--output", str(tmp_path / "b")])
    assert result.returncode == 0, result.stderr[-3000:]
    first = _read(tmp_path / "a" / "results.json")
    second = _read(tmp_path / "b" / "results.json")
    assert _without_wall_times(first) == _without_wall_times(second)


# --- user CSV data ---


def _write_csv(path, header, rows):
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return str(path)


def _classification_rows(n=60, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    labels = np.where(x[:, 0] + 0.5 * x[:, 1] > 0, "yes", "no")
    return [
        [*(str(float(v)) for v in row), label]
        for row, label in zip(x, labels, strict=True)
    ]


def test_user_csv_classification_with_string_labels(tmp_path, capsys):
    path = _write_csv(
        tmp_path / "c.csv", ["a", "b", "c", "label"], _classification_rows()
    )
    out = tmp_path / "out"
    argv = ["compare", "--data", path, "--target", "label", "--epochs", "2"]
    assert main(argv + ["--techniques", "L2", "--output", str(out)]) == 0
    captured = capsys.readouterr()
    doc = _read(out / "results.json")
    assert_results_schema(doc, "classification", ["baseline", "L2"], 2)
    assert doc["data"]["class_names"] == ["no", "yes"]
    assert doc["data"]["source"] == os.path.abspath(path)
    # 60 rows split 60/20/20.
    assert (doc["data"]["n_train"], doc["data"]["n_validation"]) == (36, 12)
    assert doc["data"]["n_test"] == 12
    assert [v["technique"] for v in doc["verdicts"]] == ["L2"]
    assert "train acc" in captured.out
    progress = captured.err.splitlines()
    assert progress[0].startswith("keras-reg compare: ")
    assert progress[1].startswith("[1/2] baseline  epoch   2/2  val_accuracy ")
    assert progress[2].startswith("[2/2] L2        epoch   2/2  val_accuracy ")


# The README's command that writes a regression CSV, run verbatim.
README_DIABETES_CSV = (
    "import numpy as np; from sklearn.datasets import load_diabetes as f; d = f(); "
    "np.savetxt('diabetes.csv', np.c_[d.data, d.target], delimiter=',', "
    "header=','.join(d.feature_names + ['target']), comments='')"
)


def test_user_csv_regression_reports_mse_and_mae(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exec(README_DIABETES_CSV, {})
    path = "diabetes.csv"
    out = tmp_path / "out"
    argv = ["compare", "--data", path, "--target", "target", "--epochs", "2"]
    argv += ["--techniques", "EarlyStopping", "--quiet", "--output", str(out)]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    lines = captured.out.splitlines()
    assert lines[0].split()[:3] == ["technique", "train", "MSE"]
    assert "Wrote" not in captured.out
    assert lines[-1].startswith(
        "EarlyStopping stops at the point of best generalization"
    )
    doc = _read(out / "results.json")
    assert_results_schema(doc, "regression", ["baseline", "EarlyStopping"], 2)
    for t in doc["techniques"]:
        # The gap is validation minus training MSE for regression.
        assert t["generalization_gap"] == pytest.approx(
            t["validation"]["mse"] - t["train"]["mse"]
        )
        assert t["train"]["mae"] <= math.sqrt(t["train"]["mse"]) + 1e-9


def test_csv_features_standardized_with_training_statistics_only(tmp_path):
    ids = np.arange(40, dtype="float64")
    feature = 3.0 * ids + 7.0
    rows = [
        [str(float(f)), str(float(i + 0.5))] for f, i in zip(feature, ids, strict=True)
    ]
    path = _write_csv(tmp_path / "d.csv", ["f", "y"], rows)
    ds = data.load_csv_dataset(path, "y", "regression", seed=3)
    # Recover each row's id from the (train-standardized) target.
    split_ids = [
        np.rint(y * ds.target_std + ds.target_mean - 0.5).astype(int)
        for y in (ds.y_train, ds.y_val, ds.y_test)
    ]
    assert sorted(np.concatenate(split_ids).tolist()) == list(range(40))
    train_raw = feature[split_ids[0]]
    mean, std = train_raw.mean(), train_raw.std()
    assert ds.target_mean == pytest.approx(ids[split_ids[0]].mean() + 0.5)
    for x, which in zip((ds.x_train, ds.x_val, ds.x_test), split_ids, strict=True):
        np.testing.assert_allclose(
            x[:, 0], (feature[which] - mean) / std, rtol=1e-5, atol=1e-5
        )
    # The validation split is not standardized with its own statistics.
    assert (
        abs(float(ds.x_val[:, 0].mean())) > 1e-3
        or abs(float(ds.x_val[:, 0].std()) - 1) > 1e-3
    )


@pytest.mark.parametrize(
    "values, task, expected",
    [
        (["cat", "dog"] * 15, "auto", "classification"),
        ([str(i % 3) for i in range(30)], "auto", "classification"),
        ([f"{i * 0.37:.2f}" for i in range(30)], "auto", "regression"),
        # 30 distinct integers in 30 rows are a quantity, not labels.
        ([str(i) for i in range(30)], "auto", "regression"),
        ([str(i % 3) for i in range(30)], "regression", "regression"),
        ([f"{i % 4}.5" for i in range(30)], "classification", "classification"),
    ],
)
def test_task_detection_and_override(tmp_path, values, task, expected):
    rows = [[str(i % 7), v] for i, v in enumerate(values)]
    path = _write_csv(tmp_path / "t.csv", ["x", "y"], rows)
    ds = data.load_csv_dataset(path, "y", task, seed=0)
    assert ds.task == expected
    if expected == "classification":
        assert ds.n_classes == len(set(values))


def test_digits_split_is_small_stratified_and_seeded():
    a = data.load_digits_dataset(0)
    b = data.load_digits_dataset(0)
    c = data.load_digits_dataset(1)
    assert (len(a.x_train), len(a.x_val), len(a.x_test)) == (300, 300, 1197)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    assert not np.array_equal(a.x_train, c.x_train)
    # Stratified: each of the 10 digits has 30 +- 1 training images.
    counts = np.bincount(a.y_train, minlength=10)
    assert counts.min() >= 29 and counts.max() <= 31
    np.testing.assert_allclose(a.x_train.mean(axis=0), 0, atol=1e-5)


# --- bad input: one line, exit status 2, nothing written ---


def _bad_cases(tmp):
    """(argv, expected message) pairs; files are created under `tmp`."""
    good_rows = _classification_rows(30)
    good = _write_csv(tmp / "good.csv", ["a", "b", "c", "label"], good_rows)
    missing = str(tmp / "missing.csv")
    binary = tmp / "data.bin"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    nul = tmp / "nul.csv"
    nul.write_bytes(b"a,y\n1,\x00\n")
    ragged = tmp / "ragged.csv"
    ragged.write_text("a,b,label\n1,2,yes\n3,4\n")
    one_column = tmp / "one.csv"
    one_column.write_text("label\n1\n2\n")
    text = _write_csv(
        tmp / "text.csv",
        ["a", "color", "label"],
        [["1", "red", "x"]] + [[str(i), str(i), "y"] for i in range(25)],
    )
    nan_rows = [["1.0", "2.0", "yes"]] * 20 + [["nan", "2.0", "no"]]
    with_nan = _write_csv(tmp / "nan.csv", ["a", "b", "label"], nan_rows)
    empty_rows = [["1.0", "2.0", "yes"]] * 5 + [["1.0", "", "no"]]
    with_empty = _write_csv(tmp / "empty.csv", ["a", "b", "label"], empty_rows)
    few = _write_csv(tmp / "few.csv", ["a", "b", "c", "label"], good_rows[:19])
    single = _write_csv(
        tmp / "single.csv", ["a", "label"], [[str(i), "cat"] for i in range(25)]
    )
    blank = tmp / "blank.csv"
    blank.write_text("\n\n")
    a_file = tmp / "taken"
    a_file.write_text("keep me")
    valid = ", ".join(TECHNIQUE_NAMES)
    return [
        (["--data", missing, "--target", "y"], f"data file {missing!r} does not exist"),
        (
            ["--data", str(tmp), "--target", "y"],
            f"data file {str(tmp)!r} is a directory, not a CSV file",
        ),
        (
            ["--data", str(binary), "--target", "y"],
            f"{str(binary)!r} is not a CSV file: it is not UTF-8 text",
        ),
        (
            ["--data", str(nul), "--target", "y"],
            f"{str(nul)!r} is not a CSV file: it contains binary data",
        ),
        (
            ["--data", str(ragged), "--target", "label"],
            f"{str(ragged)!r} is not a CSV file: line 3 has 2 fields, the header has 3",
        ),
        (
            ["--data", str(one_column), "--target", "label"],
            f"{str(one_column)!r} is not a CSV file with a header row and at least "
            "two comma-separated columns",
        ),
        (["--data", str(blank), "--target", "y"], f"data file {str(blank)!r} is empty"),
        (
            ["--data", good, "--target", "price"],
            f"target column 'price' not found in {good!r}; columns: 'a', 'b', 'c', "
            "'label'",
        ),
        (
            ["--data", text, "--target", "label"],
            f"{text!r} has non-numeric feature column(s): 'color' (e.g. 'red' at "
            "line 2); encode them as numbers first",
        ),
        (
            ["--data", with_nan, "--target", "label"],
            f"{with_nan!r} has a missing value 'nan' in column 'a' at line 22; fill "
            "or drop incomplete rows first",
        ),
        (
            ["--data", with_empty, "--target", "label"],
            f"{with_empty!r} has an empty value in column 'b' at line 7; fill or "
            "drop incomplete rows first",
        ),
        (
            ["--data", few, "--target", "label"],
            f"{few!r} has 19 data rows; compare needs at least 20",
        ),
        (
            ["--data", single, "--target", "label"],
            "target column 'label' has a single class ('cat'); classification "
            "needs at least two",
        ),
        (
            ["--techniques", "L2,Lasso"],
            f"unknown technique 'Lasso'; valid: {valid}",
        ),
        (["--epochs", "0"], "--epochs must be a positive integer (got 0)"),
        (["--epochs", "-3"], "--epochs must be a positive integer (got -3)"),
        (["--epochs", "ten"], "argument --epochs: invalid int value: 'ten'"),
        (["--batch-size", "0"], "--batch-size must be a positive integer (got 0)"),
        (
            ["--output", str(a_file)],
            f"output path {str(a_file)!r} is a file, not a directory",
        ),
        (
            ["--output", str(a_file / "sub")],
            f"output path {str(a_file / 'sub')!r} is inside a file ({str(a_file)!r})",
        ),
        (["--data", good], "--data needs --target COLUMN, the column to predict"),
        (["--target", "label"], "--target needs --data"),
        (["--seed", "-1"], "--seed must be an integer in [0, 2**32 - 1] (got -1)"),
    ]


BAD_CASE_IDS = [
    "missing_file",
    "directory",
    "binary_not_csv",
    "nul_bytes_not_csv",
    "ragged_not_csv",
    "one_column_not_csv",
    "blank_file",
    "target_missing",
    "non_numeric_feature",
    "nan_value",
    "empty_value",
    "fewer_than_20_rows",
    "single_class",
    "unknown_technique",
    "zero_epochs",
    "negative_epochs",
    "epochs_not_int",
    "zero_batch_size",
    "output_is_file",
    "output_inside_file",
    "data_without_target",
    "target_without_data",
    "negative_seed",
]


@pytest.mark.parametrize("case", range(len(BAD_CASE_IDS)), ids=BAD_CASE_IDS)
def test_bad_input_one_line_exit_2_nothing_written(tmp_path, capsys, case):
    argv, message = _bad_cases(tmp_path)[case]
    before = sorted(os.listdir(tmp_path))
    out = tmp_path / "out"
    if "--output" not in argv:
        argv = argv + ["--output", str(out)]
    assert main(["compare", *argv]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == f"keras-reg compare: error: {message}\n"
    assert sorted(os.listdir(tmp_path)) == before
    assert (tmp_path / "taken").read_text() == "keep me"


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read a chmod 000 file")
def test_unreadable_file_is_one_line_error(tmp_path, capsys):
    path = _write_csv(tmp_path / "locked.csv", ["a", "b"], [["1", "2"]] * 25)
    os.chmod(path, 0)
    argv = ["compare", "--data", path, "--target", "b"]
    assert main(argv + ["--output", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err == (
        f"keras-reg compare: error: cannot read data file {path!r}: Permission denied\n"
    )
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(
    not os.path.exists("/proc/self/mem"), reason="needs Linux's /proc/self/mem"
)
def test_file_that_fails_to_read_is_one_line_error(tmp_path, capsys):
    # /proc/self/mem exists and is a file, but reading it from offset 0 fails
    # (EIO) even for root, unlike a chmod 000 file.
    argv = ["compare", "--data", "/proc/self/mem", "--target", "y"]
    assert main(argv + ["--output", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err == (
        "keras-reg compare: error: cannot read data file '/proc/self/mem': "
        "Input/output error\n"
    )
    assert not (tmp_path / "out").exists()


def test_bad_input_in_subprocess_has_no_traceback(tmp_path):
    out = tmp_path / "out"
    result = _run_module(["compare", "--epochs", "0", "--output", str(out)])
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1] == (
        "keras-reg compare: error: --epochs must be a positive integer (got 0)"
    )
    assert result.stdout == ""
    assert not out.exists()


def test_help_explains_every_option_with_defaults(capsys):
    assert main(["compare", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    for expected in (
        "--data FILE.csv",
        "(default: scikit-learn's digits, no download)",
        "--target COLUMN",
        "--task {auto,classification,regression}",
        "(default: auto)",
        "--epochs N epoch budget of every technique (default: 30)",
        "--batch-size N batch size (default: 32)",
        "(default: 0)",
        "(default: ./keras_reg_compare/)",
        "--quiet print only the table and the verdicts",
        "KERAS_BACKEND",
    ):
        assert expected in text
    for technique in techniques.TECHNIQUES:
        assert f"{technique.name} {technique.description}" in text


def test_top_level_without_command_is_an_error(capsys):
    assert main([]) == 2
    assert capsys.readouterr().err == (
        "keras-reg: error: the following arguments are required: COMMAND\n"
    )


# --- techniques, progress, verdicts ---


def test_techniques_resolve_case_insensitive_baseline_first():
    chosen = techniques.resolve(["dropout", "L2", "l2", "l1-proximal"])
    assert [t.name for t in chosen] == ["baseline", "L1 (proximal)", "L2", "Dropout"]
    with pytest.raises(ValueError, match="^no technique given; valid: baseline, L1"):
        techniques.resolve([])


def test_technique_is_one_entry_with_regularizer_and_optimizer_wrapper():
    import keras_reg

    combined = techniques.BY_NAME["Combined"]
    regularizer = combined.make_regularizer()
    assert type(regularizer) is keras_reg.regularizers.ElasticNet
    assert regularizer.get_config() == {"l1": 1e-4, "l2": 1e-3}
    assert isinstance(combined.make_dropout(), keras_reg.layers.Dropout)
    assert isinstance(
        combined.make_batch_normalization(), keras_reg.layers.BatchNormalization
    )
    (stopper,) = combined.make_callbacks("val_data_loss")
    assert type(stopper) is keras_reg.callbacks.EarlyStopping
    assert stopper.restore_best_weights is True
    assert techniques.BY_NAME["baseline"].make_callbacks("val_data_loss") == []
    assert techniques.BY_NAME["baseline"].make_regularizer() is None
    optimizer = keras.optimizers.SGD()
    assert techniques.BY_NAME["L2"].wrap_optimizer(optimizer) is optimizer
    json.dumps(combined.to_config())


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_rewrites_one_live_line_on_a_terminal():
    stream = _Terminal()
    progress = training.Progress(
        "[1/1] L2", 3, 0.0, lambda logs: ("val_accuracy", logs["val_accuracy"]), stream
    )
    for epoch, value in enumerate((0.5, 0.75, 0.875)):
        progress.on_epoch_end(epoch, {"val_accuracy": value})
    progress.finish("  done")
    text = stream.getvalue()
    assert text.count("\n") == 1
    frames = text.split("\r")[1:]
    assert len(frames) == 4
    assert frames[0].startswith("[1/1] L2  epoch   1/3  val_accuracy 0.5000  elapsed")
    assert frames[3].startswith("[1/1] L2  epoch   3/3  val_accuracy 0.8750  elapsed")
    assert frames[3].endswith("s  done\n")


def _fake_result(name, **overrides):
    result = {
        "name": name,
        "zero_weight_fraction": 0.0,
        "near_zero_weight_fraction": 0.01,
        "mean_abs_weight": 0.04,
        "generalization_gap": 0.08,
        "epochs_to_threshold": 3,
        "best_epoch": 5,
        "epochs_run": 15,
        "final_val_data_loss": 0.4,
        "history": {"val_data_loss": [0.9, 0.6, 0.5, 0.45, 0.4, 0.41]},
    }
    result.update(overrides)
    return result


@pytest.mark.parametrize(
    "technique, overrides, expected",
    [
        (
            "L1 (proximal)",
            {"zero_weight_fraction": 0.4, "near_zero_weight_fraction": 0.5},
            "L1 drives weights to exactly zero: with L1 (proximal), 40.0% of kernel "
            "weights exactly 0 "
            "vs 0.0% (baseline); |w| < 1e-3: 50.0% vs 1.0%: holds",
        ),
        (
            "L1 (proximal)",
            {"zero_weight_fraction": 0.005, "near_zero_weight_fraction": 0.8},
            "L1 drives weights to exactly zero: with L1 (proximal), 0.5% of kernel "
            "weights exactly 0 "
            "vs 0.0% (baseline); |w| < 1e-3: 80.0% vs 1.0%: does not hold",
        ),
        (
            "L2",
            {"mean_abs_weight": 0.01},
            "L2 keeps weights small: mean |w| 0.0100 vs 0.0400 (baseline): holds",
        ),
        (
            "L2",
            {"mean_abs_weight": 0.05},
            "L2 keeps weights small: mean |w| 0.0500 vs 0.0400 (baseline): "
            "does not hold",
        ),
        (
            "ElasticNet",
            {"mean_abs_weight": 0.01},
            "ElasticNet drives weights to zero and keeps them small: 0.0% of kernel "
            "weights exactly 0 vs 0.0% (baseline); |w| < 1e-3: 1.0% vs 1.0%; "
            "mean |w| 0.0100 vs 0.0400 (baseline): does not hold",
        ),
        (
            "Dropout",
            {"generalization_gap": 0.05},
            "Dropout reduces overfitting: generalization gap (train - validation "
            "accuracy) 0.0500 vs 0.0800 (baseline): holds",
        ),
        (
            "Dropout",
            {"generalization_gap": 0.08},
            "Dropout reduces overfitting: generalization gap (train - validation "
            "accuracy) 0.0800 vs 0.0800 (baseline): does not hold",
        ),
        (
            "BatchNormalization",
            {"epochs_to_threshold": None},
            "BatchNormalization speeds up convergence: training accuracy >= 0.95 "
            "after never vs 3 epochs (baseline): does not hold",
        ),
        (
            "BatchNormalization",
            {"epochs_to_threshold": 2},
            "BatchNormalization speeds up convergence: training accuracy >= 0.95 "
            "after 2 epochs vs 3 epochs (baseline): holds",
        ),
        (
            "EarlyStopping",
            {},
            "EarlyStopping stops at the point of best generalization: restored "
            "epoch 5 has validation loss 0.4000 vs run minimum 0.4000 (epoch 5); "
            "ran 15 epochs: holds",
        ),
        (
            # Weights of the last epoch kept instead of the best epoch's.
            "EarlyStopping",
            {"final_val_data_loss": 0.41, "best_epoch": 6},
            "EarlyStopping stops at the point of best generalization: restored "
            "epoch 6 has validation loss 0.4100 vs run minimum 0.4000 (epoch 5); "
            "ran 15 epochs: does not hold",
        ),
    ],
)
def test_verdict_text_and_outcome(technique, overrides, expected):
    results = [_fake_result("baseline"), _fake_result(technique, **overrides)]
    (verdict,) = verdicts.judge(results, "classification")
    assert verdict.text == expected
    assert verdict.holds == expected.endswith(": holds")


def test_no_verdict_without_its_technique():
    results = [_fake_result("baseline"), _fake_result("Dropout")]
    assert [v.technique for v in verdicts.judge(results, "regression")] == ["Dropout"]
    # The L1 claim is judged on the proximal row only, never on plain L1.
    plain = [_fake_result("baseline"), _fake_result("L1", zero_weight_fraction=0.5)]
    assert verdicts.judge(plain, "classification") == []
    assert verdicts.judge([_fake_result("Dropout")], "regression") == []


def test_output_folder_checks_do_not_create_it(tmp_path):
    target = tmp_path / "a" / "b"
    cli._check_output(str(target))
    assert not (tmp_path / "a").exists()
