"""Tests of `python -m keras_reg compare` (keras_reg/compare/, compare 2.0).

Most runs call the command in-process with small settings (two seeds, one or
two grid strengths, two epochs); a module fixture shares one all-technique run
between the tests that read it. The statistics are tested against independent
references in test_compare_verdicts.py and the `--model` files in
test_compare_models.py. One slow test, on TensorFlow only, runs the default
command twice on disjoint seeds.
"""

import contextlib
import csv
import dataclasses
import io
import json
import math
import os
import pathlib
import re
import subprocess
import sys
import tempfile

import keras
import matplotlib.image
import numpy as np
import pytest
from scipy import stats

import keras_reg
from keras_reg.compare import cli, data, plot, report, techniques
from keras_reg.compare.cli import main
from tests.helpers import REPO_ROOT
from tests.test_compare_verdicts import holm_reference, t_interval_reference

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
    "SWA",
    "Combined",
]
CLAIMS = [
    "L1 drives weights to exactly zero",
    "L2 keeps weights small",
    "ElasticNet pulls weights toward zero",
    "Dropout reduces overfitting",
    "BatchNormalization speeds up convergence",
    "EarlyStopping lowers the test loss",
    "SWA lowers the test loss",
]
OUTCOMES = ("holds", "does not hold", "inconclusive")
# The strengths of `--grid 2`: each technique's grid ends, written out here
# rather than read from techniques.py.
GRID_2 = {
    "baseline": [None],
    "L1": [1e-5, 1e-3],
    "L1 (proximal)": [0.1, 1.0],
    "L2": [1e-4, 1e-2],
    "ElasticNet": [1e-4, 1e-2],
    "Dropout": [0.2, 0.5],
    "BatchNormalization": [None],
    "EarlyStopping": [3, 10],
    "SWA": [None],
    "Combined": [None],
}
GRID_2_LABELS = {
    "L1": "l1=1e-05, l1=0.001",
    "L1 (proximal)": "l1=0.1, l1=1",
    "L2": "l2=0.0001, l2=0.01",
    "ElasticNet": "l1=1e-05, l2=0.0001, l1=0.001, l2=0.01",
    "Dropout": "rate=0.2, rate=0.5",
    "EarlyStopping": "patience=3, patience=10",
}
# Built-in MLP on digits: 64 -> 256 -> 256 -> 10.
DIGITS_KERNEL_WEIGHTS = 64 * 256 + 256 * 256 + 256 * 10
CLAIM_MEASURES = {
    "L1 (proximal)": "zero_weight_fraction",
    "L2": "mean_abs_weight",
    "ElasticNet": "near_zero_weight_fraction",
    "Dropout": "generalization_gap",
    "BatchNormalization": "epochs_to_threshold",
    "EarlyStopping": "test_data_loss",
    "SWA": "test_data_loss",
}
DIRECTION_UP = {"L1 (proximal)", "ElasticNet"}


def _run_in_process(argv):
    """Runs `compare ARGV` here; returns (status, stdout, stderr)."""
    stdout, stderr = io.StringIO(), io.StringIO()
    args = cli.build_parser().parse_args(["compare", *argv])
    status = cli.run_compare(args, stdout=stdout, stderr=stderr)
    return status, stdout.getvalue(), stderr.getvalue()


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


def _read(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


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


def _is_number(value):
    return isinstance(value, int | float) and not isinstance(value, bool)


def _by_name(doc):
    return {t["name"]: t for t in doc["techniques"]}


def _chosen_runs(technique):
    """The runs at the chosen strength, in seed order."""
    runs = [
        r for r in technique["runs"] if r["strength"] == technique["chosen_strength"]
    ]
    return sorted(runs, key=lambda r: r["seed"])


def _measure(run, measure, task, epochs):
    """One of report.MEASURES from a run of results.json, written out here."""
    metric = "accuracy" if task == "classification" else "mse"
    if measure in ("train_metric", "validation_metric", "test_metric"):
        return run[measure.split("_")[0]][metric]
    if measure == "epochs_to_threshold":
        # Documented: never reaching it counts as epochs + 1.
        return epochs + 1 if run[measure] is None else run[measure]
    return run[measure]


# --- results.json, schema version 2 (documented in docs/compare.md, "Files") ---


def assert_results_schema(doc, task, names, epochs, seeds, grid):
    assert set(doc) == {
        "schema_version",
        "keras_reg_version",
        "keras_version",
        "backend",
        "settings",
        "data",
        "threshold",
        "statistics",
        "techniques",
        "verdicts",
        "sparsity_vs_accuracy",
        "notes",
        "total_wall_time_s",
    }
    assert doc["schema_version"] == 2
    assert isinstance(doc["notes"], list)
    assert doc["keras_reg_version"] == keras_reg.__version__
    assert doc["keras_version"] == keras.__version__
    assert doc["backend"] == BACKEND
    settings = doc["settings"]
    assert set(settings) == {
        "epochs",
        "batch_size",
        "seeds",
        "grid",
        "model",
        "hidden_units",
    }
    assert settings["epochs"] == epochs
    assert settings["seeds"] == seeds
    assert settings["grid"] == grid
    assert isinstance(settings["batch_size"], int)
    d = doc["data"]
    assert set(d) == {
        "source",
        "target",
        "task",
        "n_features",
        "n_classes",
        "class_names",
        "n_train",
        "n_validation",
        "n_test",
    }
    assert d["task"] == task
    for key in ("n_features", "n_train", "n_validation", "n_test"):
        assert isinstance(d[key], int) and d[key] > 0
    if task == "classification":
        assert d["n_classes"] == len(d["class_names"]) >= 2
        assert doc["threshold"] == {"metric": "accuracy", "value": 0.95}
    else:
        assert d["n_classes"] is None and d["class_names"] is None
        assert doc["threshold"] == {"metric": "r2", "value": 0.9}
    assert set(doc["statistics"]) == {
        "interval",
        "test",
        "correction",
        "alpha",
        "selection",
    }
    assert doc["statistics"]["alpha"] == 0.05

    split_keys = {"accuracy"} if task == "classification" else {"mse", "mae"}
    assert [t["name"] for t in doc["techniques"]] == names
    for t in doc["techniques"]:
        assert set(t) == {
            "name",
            "description",
            "config",
            "grid",
            "chosen_strength",
            "chosen_label",
            "summary",
            "runs",
            "wall_time_s",
        }
        assert isinstance(t["description"], str) and t["description"]
        json.dumps(t["config"])
        strengths = [g["strength"] for g in t["grid"]]
        for g in t["grid"]:
            assert set(g) == {"strength", "label", "validation_mean"}
            assert g["strength"] is None or _is_number(g["strength"])
            assert isinstance(g["label"], str)
            assert _is_number(g["validation_mean"])
        assert t["chosen_strength"] in strengths
        assert isinstance(t["chosen_label"], str)
        assert set(t["summary"]) == set(report.MEASURES)
        for entry in t["summary"].values():
            assert set(entry) == {"mean", "ci_low", "ci_high"}
            assert all(_is_number(v) for v in entry.values())
            assert entry["ci_low"] <= entry["mean"] <= entry["ci_high"]
        # One run per strength x seed, strengths in grid order.
        assert [(r["strength"], r["seed"]) for r in t["runs"]] == [
            (s, seed) for s in strengths for seed in seeds
        ]
        for run in t["runs"]:
            for part in ("train", "validation", "test"):
                assert split_keys | {"data_loss"} <= set(run[part])
                assert all(_is_number(run[part][k]) for k in split_keys)
                if task == "classification":
                    assert 0 <= run[part]["accuracy"] <= 1
            assert run["test_data_loss"] == run["test"]["data_loss"]
            assert _is_number(run["generalization_gap"])
            assert isinstance(run["epochs_run"], int)
            assert 1 <= run["best_epoch"] <= run["epochs_run"] <= epochs
            reached = run["epochs_to_threshold"]
            assert reached is None or 1 <= reached <= run["epochs_run"]
            assert 0 <= run["zero_weight_fraction"] <= 1
            assert run["zero_weight_fraction"] <= run["near_zero_weight_fraction"] <= 1
            assert 0 <= run["zero_unit_fraction"] <= 1
            assert run["mean_abs_weight"] > 0
            assert isinstance(run["n_kernel_weights"], int)
            assert set(run["history"]) == {
                "val_data_loss",
                "train_metric",
                "val_metric",
            }
            for values in run["history"].values():
                assert len(values) == run["epochs_run"]
            assert set(run) == {
                "strength",
                "seed",
                "train",
                "validation",
                "test",
                "test_data_loss",
                "generalization_gap",
                "epochs_run",
                "best_epoch",
                "epochs_to_threshold",
                "zero_weight_fraction",
                "zero_unit_fraction",
                "near_zero_weight_fraction",
                "mean_abs_weight",
                "n_kernel_weights",
                "history",
            }
        assert t["wall_time_s"] > 0
    for v in doc["verdicts"]:
        assert set(v) == {
            "claim",
            "technique",
            "measure",
            "claimed_direction",
            "outcome",
            "effect",
            "ci_low",
            "ci_high",
            "p_holm",
            "differences",
            "text",
        }
        assert v["claimed_direction"] in ("up", "down")
        assert v["outcome"] in OUTCOMES
        assert v["ci_low"] <= v["effect"] <= v["ci_high"]
        assert 0 <= v["p_holm"] <= 1
        assert len(v["differences"]) == len(seeds)
        assert v["text"].startswith(v["claim"] + ": ")
        assert v["text"].endswith(f": {v['outcome']}")
    assert doc["total_wall_time_s"] > 0


# --- one all-technique run shared by the tests below ---

SMALL_SEEDS = [3, 4]
SMALL_EPOCHS = 2


SMALL = ["--epochs", str(SMALL_EPOCHS), "--seeds", "2", "--seed", "3", "--grid", "2"]


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    """All techniques on digits, --grid 2, seeds 3-4, 2 epochs (in-process)."""
    out = tmp_path_factory.mktemp("digits") / "out"
    # Whatever bypasses the command's own streams (Keras's progress bars,
    # printed warnings) lands here.
    stray_out, stray_err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stray_out), contextlib.redirect_stderr(stray_err):
        status, stdout, stderr = _run_in_process(SMALL + ["--output", str(out)])
    assert status == 0
    return {
        "out": out,
        "stdout": stdout,
        "stderr": stderr,
        "stray": stray_out.getvalue() + stray_err.getvalue(),
        "doc": _read(out / "results.json"),
    }


def test_results_json_follows_schema_version_2(digits_run):
    doc = digits_run["doc"]
    assert_results_schema(
        doc, "classification", TECHNIQUE_NAMES, SMALL_EPOCHS, SMALL_SEEDS, 2
    )
    assert doc["settings"]["model"] == "built-in MLP"
    assert doc["settings"]["hidden_units"] == [256, 256]
    assert doc["data"]["source"] == "digits"
    assert doc["data"]["target"] is None
    assert doc["data"]["class_names"] == [str(i) for i in range(10)]
    # 1797 digits: a fixed test split of 597, 300 + 300 drawn per seed.
    assert (doc["data"]["n_train"], doc["data"]["n_validation"]) == (300, 300)
    assert doc["data"]["n_test"] == 597
    assert [v["claim"] for v in doc["verdicts"]] == CLAIMS


def test_run_splits_hold_exactly_the_documented_keys(digits_run):
    for t in digits_run["doc"]["techniques"]:
        for run in t["runs"]:
            for part in ("train", "validation", "test"):
                assert set(run[part]) == {"accuracy", "data_loss"}


def test_every_strength_of_the_grid_runs_on_every_seed(digits_run):
    for t in digits_run["doc"]["techniques"]:
        assert [g["strength"] for g in t["grid"]] == pytest.approx(GRID_2[t["name"]])
        for run in t["runs"]:
            assert run["n_kernel_weights"] == DIGITS_KERNEL_WEIGHTS


def test_chosen_strength_has_the_best_mean_validation_accuracy(digits_run):
    for t in digits_run["doc"]["techniques"]:
        means = {}
        for run in t["runs"]:
            means.setdefault(run["strength"], []).append(run["validation"]["accuracy"])
        means = {s: float(np.mean(v)) for s, v in means.items()}
        for g in t["grid"]:
            assert g["validation_mean"] == pytest.approx(
                means[g["strength"]], abs=1e-12
            )
        best = max(means.values())
        # The first strength in grid order on a tie.
        first_best = next(s for s in means if means[s] == best)
        assert t["chosen_strength"] == first_best


def test_summary_is_the_t_interval_over_seeds_at_the_chosen_strength(digits_run):
    for t in digits_run["doc"]["techniques"]:
        runs = _chosen_runs(t)
        assert [r["seed"] for r in runs] == SMALL_SEEDS
        for measure in report.MEASURES:
            values = [
                _measure(r, measure, "classification", SMALL_EPOCHS) for r in runs
            ]
            entry = t["summary"][measure]
            if np.ptp(values) == 0:
                expected = (values[0],) * 3
            else:
                expected = t_interval_reference(values)
            np.testing.assert_allclose(
                (entry["mean"], entry["ci_low"], entry["ci_high"]),
                expected,
                rtol=1e-9,
                atol=1e-12,
            )


def test_verdicts_are_holm_corrected_paired_tests_of_the_chosen_runs(digits_run):
    doc = digits_run["doc"]
    techniques_by_name = _by_name(doc)
    baseline = _chosen_runs(techniques_by_name["baseline"])
    raw_p, differences = [], []
    for verdict in doc["verdicts"]:
        measure = CLAIM_MEASURES[verdict["technique"]]
        assert verdict["measure"] == measure
        ours = _chosen_runs(techniques_by_name[verdict["technique"]])
        d = np.array(
            [
                _measure(a, measure, "classification", SMALL_EPOCHS)
                - _measure(b, measure, "classification", SMALL_EPOCHS)
                for a, b in zip(ours, baseline, strict=True)
            ]
        )
        differences.append(d)
        if np.ptp(d) == 0:
            # Documented: no spread, so the exact sign-flip test's p-value.
            raw_p.append(1.0 if d[0] == 0 else 2.0 ** (1 - len(d)))
        else:
            raw_p.append(stats.ttest_rel(d, np.zeros_like(d)).pvalue)
    for verdict, d, p in zip(
        doc["verdicts"], differences, holm_reference(raw_p), strict=True
    ):
        np.testing.assert_allclose(verdict["differences"], d, rtol=1e-12, atol=1e-15)
        assert verdict["effect"] == pytest.approx(d.mean(), abs=1e-12)
        assert verdict["p_holm"] == pytest.approx(p, rel=1e-9, abs=1e-15)
        direction = 1 if verdict["technique"] in DIRECTION_UP else -1
        assert verdict["claimed_direction"] == ("up" if direction > 0 else "down")
        if p < 0.05 and d.mean() * direction > 0:
            expected = "holds"
        elif p < 0.05 and d.mean() * direction < 0:
            expected = "does not hold"
        else:
            expected = "inconclusive"
        assert verdict["outcome"] == expected


def test_early_stopping_runs_ride_on_the_baselines_training(digits_run):
    # EarlyStopping changes no training step: its towers start from the same
    # weights and batches as the baseline's, so their curves are the same.
    by_name = _by_name(digits_run["doc"])
    baseline = {r["seed"]: r for r in by_name["baseline"]["runs"]}
    for run in by_name["EarlyStopping"]["runs"]:
        curve = run["history"]["val_data_loss"]
        reference = baseline[run["seed"]]["history"]["val_data_loss"]
        np.testing.assert_allclose(curve, reference[: len(curve)], rtol=1e-6)
        # The restored weights are the best epoch's (first minimum).
        assert run["best_epoch"] == int(np.argmin(curve)) + 1
        assert run["validation"]["data_loss"] == pytest.approx(
            curve[run["best_epoch"] - 1], rel=1e-5
        )


def test_run_numbers_agree_with_each_other(digits_run):
    for t in digits_run["doc"]["techniques"]:
        for run in t["runs"]:
            assert run["generalization_gap"] == pytest.approx(
                run["test"]["data_loss"] - run["train"]["data_loss"], abs=1e-12
            )
            history = run["history"]
            if t["name"] not in ("EarlyStopping", "Combined"):
                assert run["best_epoch"] == int(np.argmin(history["val_data_loss"])) + 1
            reached = [
                i + 1 for i, m in enumerate(history["train_metric"]) if m >= 0.95
            ]
            assert run["epochs_to_threshold"] == (reached[0] if reached else None)


def test_manual_lists_the_measures_in_the_csv_column_order():
    # docs/compare.md specifies results.json and results.csv; its list of
    # measures is the order of the CSV's columns, so it must be MEASURES'.
    manual = (pathlib.Path(REPO_ROOT) / "docs" / "compare.md").read_text()
    sentence = manual.split("MEASURE is one of ", 1)[1].split(". ", 1)[0]
    assert tuple(re.findall(r"`(\w+)`", sentence)) == report.MEASURES


def test_csv_has_one_row_per_technique_matching_the_json(digits_run):
    with open(digits_run["out"] / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == list(report.CSV_COLUMNS)
    techniques_json = digits_run["doc"]["techniques"]
    assert [r["technique"] for r in rows] == TECHNIQUE_NAMES
    for row, entry in zip(rows, techniques_json, strict=True):
        assert row["chosen_strength"] == entry["chosen_label"]
        assert row["metric"] == "accuracy"
        for measure in report.MEASURES:
            for stat in ("mean", "ci_low", "ci_high"):
                assert (
                    float(row[f"{measure}_{stat}"]) == entry["summary"][measure][stat]
                )


def test_png_has_the_fixed_size(digits_run):
    path = digits_run["out"] / "results.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = plot.FIGURE_SIZE_PX
    assert matplotlib.image.imread(path).shape[:2] == (height, width)


def test_stdout_has_the_table_and_one_line_per_verdict(digits_run):
    lines = digits_run["stdout"].splitlines()
    assert lines[0].split()[:4] == ["technique", "strength", "train", "acc"]
    for name, t in zip(TECHNIQUE_NAMES, digits_run["doc"]["techniques"], strict=True):
        rows = lines[2 : 2 + len(TECHNIQUE_NAMES)]
        row = next(line for line in rows if line.startswith(name + " "))
        assert (t["chosen_label"] or "-") in row
    verdict_lines = [line for line in lines if line.split(": ")[0] in CLAIMS]
    assert verdict_lines == [v["text"] for v in digits_run["doc"]["verdicts"]]
    out = os.path.abspath(digits_run["out"])
    assert lines[-1].startswith(
        f"Wrote results.json, results.csv, results.png to {out}"
    )


def test_progress_line_shows_technique_strengths_seeds_and_eta(digits_run):
    lines = digits_run["stderr"].splitlines()
    # Towers: one per strength and seed, EarlyStopping's patiences share one.
    # SWA averages the baseline's towers.
    towers = 2 * sum(
        len(GRID_2[n]) for n in TECHNIQUE_NAMES if n not in ("EarlyStopping", "SWA")
    )
    towers += 2
    assert lines[0] == (
        "keras-reg compare: digits (classification, 300 train / 300 validation / "
        f"597 test rows), {len(TECHNIQUE_NAMES)} techniques, {towers} runs "
        "(2 seeds, grid 2) x 2 epochs, "
        f"backend {BACKEND}"
    )
    # stderr is not a terminal: one line per technique, when it finishes.
    assert len(lines) == 1 + len(TECHNIQUE_NAMES)
    for i, (name, line) in enumerate(
        zip(TECHNIQUE_NAMES, lines[1:], strict=True), start=1
    ):
        shown = f" [{GRID_2_LABELS[name]}]" if name in GRID_2_LABELS else ""
        if name == "SWA":  # epochs int(0.75 * 2) + 1 = 2 to 2
            assert re.fullmatch(
                rf"\[{i}/{len(TECHNIQUE_NAMES)}\] SWA +seeds 3-4  the baseline's "
                r"epochs 2-2 averaged  elapsed +\d+\.\ds  ETA +\d+\.\ds",
                line,
            ), line
            continue
        pattern = (
            rf"\[{i}/{len(TECHNIQUE_NAMES)}\] {re.escape(name)} *{re.escape(shown)} "
            r"seeds 3-4  epoch   "
            r"2/2  elapsed +\d+\.\ds  ETA +\d+\.\ds"
        )
        assert re.fullmatch(pattern, line), line
    assert lines[-1].endswith("ETA   0.0s")


# --- quiet output and determinism ---


def test_nothing_bypasses_the_commands_streams(digits_run):
    # No Keras progress bar, no printed warning: only the table, the
    # verdicts and the progress lines, on the streams the command was given.
    assert digits_run["stray"] == ""


def test_same_seed_gives_the_same_numbers(digits_run, tmp_path):
    # Each technique's runs depend only on its seeds: a second run of one
    # technique, later in the same process, repeats the baseline's and
    # Dropout's numbers of the all-technique run (only wall times differ).
    argv = SMALL + ["--techniques", "Dropout", "--quiet", "--output", str(tmp_path)]
    status, _, _ = _run_in_process(argv)
    assert status == 0
    again = _by_name(_without_wall_times(_read(tmp_path / "results.json")))
    first = _by_name(_without_wall_times(digits_run["doc"]))
    assert list(again) == ["baseline", "Dropout"]
    assert again["baseline"] == first["baseline"]
    assert again["Dropout"] == first["Dropout"]


# --- two disjoint seed sets agree (issue: "Done when") ---


@pytest.mark.slow
@pytest.mark.skipif(
    BACKEND != "tensorflow",
    reason="two default runs (5 seeds, grid 3, 30 epochs) take over two minutes "
    "on TensorFlow on 2 CPU cores; CI's time budget runs them on that backend only",
)
def test_disjoint_seed_sets_agree_on_every_decided_verdict(tmp_path):
    docs = []
    for first_seed in ("0", "5"):
        out = tmp_path / first_seed
        status, _, _ = _run_in_process(["--seed", first_seed, "--output", str(out)])
        assert status == 0
        docs.append(_read(out / "results.json"))
    assert docs[0]["settings"]["seeds"] == [0, 1, 2, 3, 4]
    assert docs[1]["settings"]["seeds"] == [5, 6, 7, 8, 9]
    assert [v["claim"] for v in docs[0]["verdicts"]] == CLAIMS
    assert [v["claim"] for v in docs[1]["verdicts"]] == CLAIMS
    for a, b in zip(docs[0]["verdicts"], docs[1]["verdicts"], strict=True):
        outcomes = {a["outcome"], b["outcome"]}
        assert outcomes != {"holds", "does not hold"}, (a["text"], b["text"])
        if "inconclusive" not in outcomes:
            assert a["outcome"] == b["outcome"]
    # With 30 epochs EarlyStopping stops some runs: a stopped run ran
    # exactly `patience` epochs past its best one.
    stopped = 0
    for doc in docs:
        for run in _by_name(doc)["EarlyStopping"]["runs"]:
            if run["epochs_run"] < 30:
                stopped += 1
                assert run["epochs_run"] - run["best_epoch"] == run["strength"]
    assert stopped > 0


# --- a synthetic data set where L2 provably acts and a no-op provably does not ---


def test_l2_holds_and_a_no_op_technique_is_inconclusive(tmp_path, monkeypatch):
    rng = np.random.default_rng(2026)
    x = rng.normal(size=(240, 8))
    y = x @ rng.normal(size=8) + 0.5 * rng.normal(size=240)
    path = tmp_path / "linear.npz"
    np.savez(path, x=x, y=y)
    # A Dropout at rate 0 adds no layer (Technique.regularize_kwargs), so its
    # towers are bit for bit the baseline's: every paired difference is 0
    # and the paired test has nothing to detect (p = 1).
    #
    # L2 at the grid's top, l2 = 0.01: both towers of a seed start from the
    # same weights and see the same batches; the penalized loss adds
    # l2 * sum(w**2), whose gradient 2 * l2 * w has the sign of w for every
    # weight, so each step's penalty term moves every weight toward 0 (with
    # SGD, w <- (1 - 2 * lr * l2) * w - lr * g_data). Most of the 67,840
    # kernel weights (the 256 x 256 layer) get little data gradient on a
    # linear target, and Adam turns a gradient of constant sign into a step
    # of about the learning rate toward 0, so mean |w| ends lower on every
    # seed by a margin far above the seed-to-seed spread.
    #
    # Bound: Holm over the two claims doubles L2's p-value (Dropout's is 1),
    # so "holds" needs p < 0.025, |t| > t(0.9875, 4) = 3.50 on 5 seeds. On
    # TensorFlow the differences are -0.0048 to -0.0040 after 3 epochs,
    # t = -35, ten times the bound; a penalty ten times weaker still gives
    # t = -14.
    changed = tuple(
        dataclasses.replace(t, grid=(0.0, 0.0), default=0.0)
        if t.name == "Dropout"
        else dataclasses.replace(t, default=1e-2)
        if t.name == "L2"
        else t
        for t in techniques.TECHNIQUES
    )
    monkeypatch.setattr(techniques, "TECHNIQUES", changed)
    out = tmp_path / "out"
    argv = ["--data", str(path), "--techniques", "L2", "Dropout", "--grid", "1"]
    status, _, _ = _run_in_process(argv + ["--epochs", "3", "--output", str(out)])
    assert status == 0
    doc = _read(out / "results.json")
    assert_results_schema(
        doc, "regression", ["baseline", "L2", "Dropout"], 3, list(range(5)), 1
    )
    assert doc["data"]["source"] == str(path)
    assert doc["data"]["target"] == "y"
    # 240 rows: 20% validation, 20% test, the rest for training.
    assert (doc["data"]["n_train"], doc["data"]["n_validation"]) == (144, 48)
    assert doc["data"]["n_test"] == 48
    l2, dropout = doc["verdicts"]
    assert l2["claim"] == "L2 keeps weights small"
    assert l2["outcome"] == "holds"
    assert all(d < 0 for d in l2["differences"])
    assert dropout["claim"] == "Dropout reduces overfitting"
    assert dropout["outcome"] == "inconclusive"
    assert dropout["differences"] == [0.0] * 5
    assert dropout["p_holm"] == 1.0
    by_name = _by_name(doc)
    assert by_name["L2"]["chosen_strength"] == 1e-2
    assert by_name["Dropout"]["chosen_strength"] == 0.0
    assert by_name["L2"]["runs"][0]["n_kernel_weights"] == 8 * 256 + 256 * 256 + 256
    # Bit for bit: every number of every run, curves included.
    for ours, theirs in zip(
        by_name["Dropout"]["runs"], by_name["baseline"]["runs"], strict=True
    ):
        assert {k: v for k, v in ours.items() if k != "strength"} == {
            k: v for k, v in theirs.items() if k != "strength"
        }


# --- user data: CSV and .npz ---


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


FAST = ["--epochs", "2", "--seeds", "2", "--grid", "1"]


def test_user_csv_classification_with_string_labels(tmp_path, capsys):
    path = _write_csv(
        tmp_path / "c.csv", ["a", "b", "c", "label"], _classification_rows()
    )
    out = tmp_path / "out"
    argv = ["compare", "--data", path, "--target", "label", *FAST]
    assert main(argv + ["--techniques", "L2", "--output", str(out)]) == 0
    captured = capsys.readouterr()
    doc = _read(out / "results.json")
    assert_results_schema(doc, "classification", ["baseline", "L2"], 2, [0, 1], 1)
    assert doc["data"]["class_names"] == ["no", "yes"]
    assert doc["data"]["source"] == os.path.abspath(path)
    assert doc["data"]["target"] == "label"
    assert doc["data"]["n_features"] == 3
    # 60 rows split 60/20/20.
    assert (doc["data"]["n_train"], doc["data"]["n_validation"]) == (36, 12)
    assert doc["data"]["n_test"] == 12
    assert [v["technique"] for v in doc["verdicts"]] == ["L2"]
    assert "train acc" in captured.out
    progress = captured.err.splitlines()
    assert progress[0].startswith(f"keras-reg compare: {os.path.abspath(path)} (")
    assert progress[1].startswith("[1/2] baseline seeds 0-1  epoch   2/2  elapsed")
    assert progress[2].startswith("[2/2] L2       [l2=0.001] seeds 0-1  epoch   2/2")


# The README's command that writes a regression CSV, run verbatim.
README_DIABETES_CSV = (
    "import numpy as np; from sklearn.datasets import load_diabetes as f; d = f(); "
    "np.savetxt('diabetes.csv', np.c_[d.data, d.target], delimiter=',', "
    "header=','.join(d.feature_names + ['target']), comments='')"
)


def test_user_csv_regression_reports_mse_and_mae(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exec(README_DIABETES_CSV, {})
    out = tmp_path / "out"
    argv = ["compare", "--data", "diabetes.csv", "--target", "target", *FAST]
    argv += ["--techniques", "EarlyStopping", "--quiet", "--output", str(out)]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    lines = captured.out.splitlines()
    assert lines[0].split()[:4] == ["technique", "strength", "train", "MSE"]
    assert "Wrote" not in captured.out
    assert lines[-1].startswith("EarlyStopping lowers the test loss: test data loss ")
    doc = _read(out / "results.json")
    assert_results_schema(
        doc, "regression", ["baseline", "EarlyStopping"], 2, [0, 1], 1
    )
    assert doc["data"]["n_features"] == 10
    for t in doc["techniques"]:
        for run in t["runs"]:
            for part in ("train", "validation", "test"):
                # Mean |e| <= root mean e**2 (Jensen), in the target's units.
                assert run[part]["mae"] <= math.sqrt(run[part]["mse"]) + 1e-9
            # Diabetes targets are in the hundreds: MSE in the target's
            # units, the data loss on the standardized target.
            assert run["train"]["mse"] > 100 * run["train"]["data_loss"]


def test_npz_classification_loads_x_and_y(tmp_path):
    rng = np.random.default_rng(5)
    x = rng.normal(size=(90, 4)).astype("float32")
    y = np.argmax(x[:, :3], axis=1)
    path = tmp_path / "three.npz"
    np.savez(path, x=x, y=y)
    problem = data.load_npz_problem(str(path), "auto")
    assert problem.describe() == {
        "source": str(path),
        "target": "y",
        "task": "classification",
        "n_features": 4,
        "n_classes": 3,
        "class_names": ["0", "1", "2"],
        "n_train": 54,
        "n_validation": 18,
        "n_test": 18,
    }
    np.testing.assert_array_equal(problem.x, x.astype("float64"))
    np.testing.assert_array_equal(problem.y, y)
    split = problem.split(0)
    assert split.x_train.shape == (54, 4) and split.y_train.dtype == np.int32


def test_npz_task_override_reads_integer_labels_as_a_quantity(tmp_path):
    x = np.arange(60, dtype="float64").reshape(30, 2)
    path = tmp_path / "ints.npz"
    np.savez(path, x=x, y=np.arange(30) % 3)
    assert data.load_npz_problem(str(path), "auto").task == "classification"
    problem = data.load_npz_problem(str(path), "regression")
    assert problem.task == "regression" and problem.n_classes is None
    np.testing.assert_array_equal(problem.y, np.arange(30) % 3)


def test_csv_features_standardized_with_training_statistics_only(tmp_path):
    ids = np.arange(40, dtype="float64")
    feature = 3.0 * ids + 7.0
    rows = [
        [str(float(f)), str(float(i + 0.5))] for f, i in zip(feature, ids, strict=True)
    ]
    path = _write_csv(tmp_path / "d.csv", ["f", "y"], rows)
    split = data.load_csv_problem(path, "y", "regression").split(3)
    # 40 rows: 8 test, 8 validation, the other 24 train; together all rows.
    assert (len(split.x_train), len(split.x_val), len(split.x_test)) == (24, 8, 8)
    # One affine map (x - mean) / std took the raw feature to all three
    # splits; recover it from the sorted values.
    standardized = np.concatenate([split.x_train, split.x_val, split.x_test])[:, 0]
    slope, intercept = np.polyfit(np.sort(feature), np.sort(standardized), 1)
    np.testing.assert_allclose(
        np.sort(standardized), slope * np.sort(feature) + intercept, atol=1e-5
    )
    std, mean = 1 / slope, -intercept / slope
    train_ids = np.rint((split.x_train[:, 0] * std + mean - 7.0) / 3.0).astype(int)
    val_ids = np.rint((split.x_val[:, 0] * std + mean - 7.0) / 3.0).astype(int)
    assert mean == pytest.approx(feature[train_ids].mean(), rel=1e-5)
    assert std == pytest.approx(feature[train_ids].std(), rel=1e-5)
    # The target too, with the training rows' mean and std.
    y_train = ids[train_ids] + 0.5
    assert split.target_std == pytest.approx(y_train.std())
    np.testing.assert_allclose(
        split.y_val, (ids[val_ids] + 0.5 - y_train.mean()) / y_train.std(), rtol=1e-5
    )
    # The validation split is not standardized with its own statistics.
    assert (
        abs(float(split.x_val[:, 0].mean())) > 1e-3
        or abs(float(split.x_val[:, 0].std()) - 1) > 1e-3
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
    problem = data.load_csv_problem(path, "y", task)
    assert problem.task == expected
    if expected == "classification":
        assert problem.n_classes == len(set(values))


def test_digits_test_split_is_fixed_and_seeds_vary_train_and_validation():
    problem = data.load_digits_problem()
    again = data.load_digits_problem()
    np.testing.assert_array_equal(problem.test, again.test)
    assert len(problem.test) == 597
    assert sorted(np.concatenate([problem.pool, problem.test])) == list(range(1797))
    a, b, c = problem.split(0), problem.split(0), problem.split(1)
    assert (len(a.x_train), len(a.x_val), len(a.x_test)) == (300, 300, 597)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    np.testing.assert_array_equal(a.y_val, b.y_val)
    assert not np.array_equal(a.y_train, c.y_train)
    assert not np.array_equal(a.y_val, c.y_val)
    # The same test rows for every seed.
    np.testing.assert_array_equal(a.y_test, c.y_test)
    np.testing.assert_array_equal(a.y_test, problem.y[problem.test])
    # Stratified: each of the 10 digits has 30 +- 1 training images.
    counts = np.bincount(a.y_train, minlength=10)
    assert counts.min() >= 29 and counts.max() <= 31
    np.testing.assert_allclose(a.x_train.mean(axis=0), 0, atol=1e-5)


# --- choosing the strength: validation only ---


def _fake_run(strength, seed, val, test):
    return {
        "strength": strength,
        "seed": seed,
        "train": {"accuracy": 1.0, "mse": 0.1},
        "validation": {"accuracy": val, "mse": val},
        "test": {"accuracy": test, "mse": test},
        "test_data_loss": 0.5,
        "generalization_gap": 0.1,
        "epochs_run": 3,
        "best_epoch": 2,
        "epochs_to_threshold": None,
        "zero_weight_fraction": 0.0,
        "zero_unit_fraction": 0.0,
        "near_zero_weight_fraction": 0.0,
        "mean_abs_weight": 0.1,
    }


L2_TECHNIQUE = next(t for t in techniques.TECHNIQUES if t.name == "L2")


@pytest.mark.parametrize(
    "task, validation, expected",
    [
        # Highest mean accuracy: 0.01 (0.80), though its test accuracy is
        # the worst of the three.
        (
            "classification",
            {1e-4: (0.7, 0.8), 1e-3: (0.75, 0.75), 1e-2: (0.9, 0.7)},
            1e-2,
        ),
        # Lowest mean MSE.
        ("regression", {1e-4: (0.7, 0.8), 1e-3: (0.5, 0.7), 1e-2: (0.9, 0.7)}, 1e-3),
        # A tie goes to the first strength.
        (
            "classification",
            {1e-4: (0.8, 0.8), 1e-3: (0.9, 0.7), 1e-2: (0.1, 0.1)},
            1e-4,
        ),
        # A diverged strength (NaN) is never chosen, however low its
        # other seed's MSE.
        (
            "regression",
            {1e-4: (math.nan, 0.1), 1e-3: (0.5, 0.7), 1e-2: (0.9, 0.7)},
            1e-3,
        ),
    ],
)
def test_strength_is_chosen_on_validation_numbers_only(task, validation, expected):
    # The test numbers favour every strength but the expected one.
    runs = [
        _fake_run(s, seed, val, 0.0 if s == expected else 1.0)
        if task == "classification"
        else _fake_run(s, seed, val, 1.0 if s == expected else 0.0)
        for s, values in validation.items()
        for seed, val in enumerate(values)
    ]
    summary = report.summarize(L2_TECHNIQUE, runs, task, 3, 1.0)
    assert summary["chosen_strength"] == expected
    assert summary["chosen_label"] == f"l2={expected:g}"
    assert [g["strength"] for g in summary["grid"]] == list(validation)
    assert [g["validation_mean"] for g in summary["grid"]] == pytest.approx(
        [np.mean(v) for v in validation.values()], nan_ok=True
    )
    # The summary is over the chosen runs; never reached counts epochs + 1.
    assert summary["summary"]["validation_metric"]["mean"] == pytest.approx(
        np.mean(validation[expected])
    )
    assert summary["summary"]["epochs_to_threshold"]["mean"] == 4


# --- techniques and progress ---


def test_techniques_resolve_case_insensitive_baseline_first():
    chosen = techniques.resolve(["dropout", "L2", "l2", "l1-proximal"])
    assert [t.name for t in chosen] == ["baseline", "L1 (proximal)", "L2", "Dropout"]
    with pytest.raises(ValueError, match="^no technique given; valid: baseline, L1"):
        techniques.resolve([])


@pytest.mark.parametrize(
    "name, n, expected",
    [
        ("baseline", 3, [None]),
        ("L2", 1, [1e-3]),
        ("L2", 3, [1e-4, 1e-3, 1e-2]),
        ("L1 (proximal)", 3, [0.1, 0.316, 1.0]),
        ("Dropout", 3, [0.2, 0.35, 0.5]),
        ("EarlyStopping", 1, [5]),
        ("EarlyStopping", 3, [3, 5, 10]),
        ("Combined", 9, [None]),
    ],
)
def test_technique_strength_grids(name, n, expected):
    technique = next(t for t in techniques.TECHNIQUES if t.name == name)
    assert technique.values(n) == pytest.approx(expected)


def test_regularize_kwargs_of_each_kind_of_technique():
    by_name = {t.name: t for t in techniques.TECHNIQUES}
    assert by_name["baseline"].regularize_kwargs(None) == {"batch_normalization": False}
    # Rate 0 adds no Dropout layer at all.
    assert by_name["Dropout"].regularize_kwargs(0.0) == {"batch_normalization": False}
    assert by_name["Dropout"].regularize_kwargs(0.2)["dropout"] == 0.2
    penalty = by_name["ElasticNet"].regularize_kwargs(1e-2)["kernel_regularizer"]
    assert type(penalty) is keras_reg.regularizers.ElasticNet
    assert penalty.get_config()["l1"] == pytest.approx(1e-3)
    assert penalty.get_config()["l2"] == pytest.approx(1e-2)
    combined = by_name["Combined"].regularize_kwargs(None)
    assert combined["batch_normalization"] is True
    assert combined["dropout"] == 0.5
    assert by_name["Combined"].patience(None) == 5
    assert by_name["EarlyStopping"].patience(10) == 10
    assert by_name["L2"].patience(1e-3) is None
    json.dumps(by_name["Combined"].to_config())


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def _fake_clock(monkeypatch, times):
    ticks = iter(times)
    monkeypatch.setattr(report.time, "perf_counter", lambda: next(ticks))


def test_progress_rewrites_one_live_line_on_a_terminal(monkeypatch):
    # Started at 0 s; 1 of 4 units after 2 s leaves 3 units at 2 s each.
    _fake_clock(monkeypatch, [0.0, 2.0, 3.0])
    stream = _Terminal()
    progress = report.Progress(4, stream=stream)
    progress.update("[1/2] L2 [l2=0.001] seeds 0-1  epoch   1/2", 1)
    progress.update("[1/2] L2 [l2=0.001] seeds 0-1  epoch   2/2", 1)
    progress.finish()
    frames = stream.getvalue().split("\r")[1:]
    assert frames == [
        "[1/2] L2 [l2=0.001] seeds 0-1  epoch   1/2  elapsed   2.0s  ETA   6.0s    ",
        "[1/2] L2 [l2=0.001] seeds 0-1  epoch   2/2  elapsed   3.0s  ETA   3.0s    ",
        "[1/2] L2 [l2=0.001] seeds 0-1  epoch   2/2  elapsed   3.0s  ETA   3.0s\n",
    ]


def test_progress_prints_one_line_per_technique_off_a_terminal(monkeypatch):
    _fake_clock(monkeypatch, [0.0, 1.0, 4.0])
    stream = io.StringIO()
    progress = report.Progress(2, stream=stream)
    progress.update("[1/1] baseline seed 0  epoch   1/2", 1)
    assert stream.getvalue() == ""
    progress.update("[1/1] baseline seed 0  epoch   2/2", 1)
    progress.finish()
    assert stream.getvalue() == (
        "[1/1] baseline seed 0  epoch   2/2  elapsed   4.0s  ETA   0.0s\n"
    )


def test_quiet_progress_writes_nothing(monkeypatch):
    _fake_clock(monkeypatch, [0.0, 1.0])
    stream = _Terminal()
    progress = report.Progress(1, stream=stream, quiet=True)
    progress.update("[1/1] baseline", 1)
    progress.finish()
    assert stream.getvalue() == ""


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

    x = np.random.default_rng(0).normal(size=(30, 3))
    y = np.arange(30) % 2
    npz = {}
    for name, arrays in {
        "good": {"x": x, "y": y},
        "no_x": {"y": y},
        "no_y": {"x": x, "z": y},
        "x_1d": {"x": x[:, 0], "y": y},
        "x_text": {"x": x.astype(str), "y": y},
        "x_complex": {"x": x + 1j, "y": y},
        "x_no_columns": {"x": np.zeros((30, 0)), "y": y},
        "y_2d": {"x": x, "y": y[:, None]},
        "y_short": {"x": x, "y": y[:-1]},
        "x_nan": {"x": np.where(np.eye(30, 3) > 0, np.nan, x), "y": y},
        "x_inf": {"x": np.where(np.eye(30, 3) > 0, np.inf, x), "y": y},
        "y_nan": {"x": x, "y": np.where(y > 0, np.nan, x[:, 0])},
        "few": {"x": x[:19], "y": y[:19]},
    }.items():
        npz[name] = str(tmp / f"{name}.npz")
        np.savez(npz[name], **arrays)
    not_npz = tmp / "text.npz"
    not_npz.write_text("x,y\n1,2\n")
    valid = ", ".join(t.name for t in techniques.TECHNIQUES)
    valid += "; or a set: default, all, sparsity"
    return {
        "missing_file": (
            ["--data", missing, "--target", "y"],
            f"data file {missing!r} does not exist",
        ),
        "directory": (
            ["--data", str(tmp), "--target", "y"],
            f"data file {str(tmp)!r} is a directory, not a CSV file",
        ),
        "binary_not_csv": (
            ["--data", str(binary), "--target", "y"],
            f"{str(binary)!r} is not a CSV file: it is not UTF-8 text",
        ),
        "nul_bytes_not_csv": (
            ["--data", str(nul), "--target", "y"],
            f"{str(nul)!r} is not a CSV file: it contains binary data",
        ),
        "ragged_not_csv": (
            ["--data", str(ragged), "--target", "label"],
            f"{str(ragged)!r} is not a CSV file: line 3 has 2 fields, the header has 3",
        ),
        "one_column_not_csv": (
            ["--data", str(one_column), "--target", "label"],
            f"{str(one_column)!r} is not a CSV file with a header row and at least "
            "two comma-separated columns",
        ),
        "blank_file": (
            ["--data", str(blank), "--target", "y"],
            f"data file {str(blank)!r} is empty",
        ),
        "target_missing": (
            ["--data", good, "--target", "price"],
            f"target column 'price' not found in {good!r}; columns: 'a', 'b', 'c', "
            "'label'",
        ),
        "non_numeric_feature": (
            ["--data", text, "--target", "label"],
            f"{text!r} has non-numeric feature column(s): 'color' (e.g. 'red' at "
            "line 2); encode them as numbers first",
        ),
        "nan_value": (
            ["--data", with_nan, "--target", "label"],
            f"{with_nan!r} has a missing value 'nan' in column 'a' at line 22; fill "
            "or drop incomplete rows first",
        ),
        "empty_value": (
            ["--data", with_empty, "--target", "label"],
            f"{with_empty!r} has an empty value in column 'b' at line 7; fill or "
            "drop incomplete rows first",
        ),
        "fewer_than_20_rows": (
            ["--data", few, "--target", "label"],
            f"{few!r} has 19 data rows; compare needs at least 20",
        ),
        "single_class": (
            ["--data", single, "--target", "label"],
            "target column 'label' has a single class ('cat'); classification "
            "needs at least two",
        ),
        "npz_missing_file": (
            ["--data", str(tmp / "nothing.npz")],
            f"data file {str(tmp / 'nothing.npz')!r} does not exist or is not a file",
        ),
        "npz_not_an_archive": (
            ["--data", str(not_npz)],
            f"{str(not_npz)!r} is not a readable .npz file: ",
        ),
        "npz_without_x": (
            ["--data", npz["no_x"]],
            f"{npz['no_x']!r} has no array named 'x'; arrays: 'y'",
        ),
        "npz_without_y": (
            ["--data", npz["no_y"]],
            f"{npz['no_y']!r} has no array named 'y'; arrays: 'x', 'z'",
        ),
        "npz_x_not_2d": (
            ["--data", npz["x_1d"]],
            f"{npz['x_1d']!r}: x must be a 2D array of real numbers with at least "
            "one column (got float64 (30,))",
        ),
        "npz_x_not_numeric": (
            ["--data", npz["x_text"]],
            f"{npz['x_text']!r}: x must be a 2D array of real numbers with at least "
            "one column (got <U32 (30, 3))",
        ),
        "npz_x_complex": (
            ["--data", npz["x_complex"]],
            f"{npz['x_complex']!r}: x must be a 2D array of real numbers with at "
            "least one column (got complex128 (30, 3))",
        ),
        "npz_x_without_columns": (
            ["--data", npz["x_no_columns"]],
            f"{npz['x_no_columns']!r}: x must be a 2D array of real numbers with "
            "at least one column (got float64 (30, 0))",
        ),
        "npz_y_not_1d": (
            ["--data", npz["y_2d"]],
            f"{npz['y_2d']!r}: y must be 1D with one value per row of x",
        ),
        "npz_y_wrong_length": (
            ["--data", npz["y_short"]],
            f"{npz['y_short']!r}: y must be 1D with one value per row of x",
        ),
        "npz_x_nan": (
            ["--data", npz["x_nan"]],
            f"{npz['x_nan']!r}: x has a value that is NaN or infinite",
        ),
        "npz_x_inf": (
            ["--data", npz["x_inf"]],
            f"{npz['x_inf']!r}: x has a value that is NaN or infinite",
        ),
        "npz_y_nan": (
            ["--data", npz["y_nan"]],
            "target column 'y' has a non-finite value",
        ),
        "npz_fewer_than_20_rows": (
            ["--data", npz["few"]],
            f"{npz['few']!r} has 19 rows; compare needs at least 20",
        ),
        "npz_with_target": (
            ["--data", npz["good"], "--target", "y"],
            "--target is for CSV files; a .npz file holds y",
        ),
        "unknown_technique": (
            ["--techniques", "L2,Lasso"],
            f"unknown technique 'Lasso'; valid: {valid}",
        ),
        "zero_epochs": (
            ["--epochs", "0"],
            "--epochs must be a positive integer (got 0)",
        ),
        "negative_epochs": (
            ["--epochs", "-3"],
            "--epochs must be a positive integer (got -3)",
        ),
        "epochs_not_int": (
            ["--epochs", "ten"],
            "argument --epochs: invalid int value: 'ten'",
        ),
        "zero_batch_size": (
            ["--batch-size", "0"],
            "--batch-size must be a positive integer (got 0)",
        ),
        "zero_seeds": (
            ["--seeds", "0"],
            "--seeds must be an integer in [1, 100] (got 0)",
        ),
        "too_many_seeds": (
            ["--seeds", "101"],
            "--seeds must be an integer in [1, 100] (got 101)",
        ),
        "zero_grid": (["--grid", "0"], "--grid must be an integer in [1, 9] (got 0)"),
        "grid_10": (["--grid", "10"], "--grid must be an integer in [1, 9] (got 10)"),
        "negative_seed": (
            ["--seed", "-1"],
            "--seed must be an integer in [0, 2**20 - seeds] (got -1)",
        ),
        "last_seed_past_2_to_the_20": (
            ["--seed", str(2**20 - 4), "--seeds", "5"],
            f"--seed must be an integer in [0, 2**20 - seeds] (got {2**20 - 4})",
        ),
        "output_is_file": (
            ["--output", str(a_file)],
            f"output path {str(a_file)!r} is a file, not a directory",
        ),
        "output_inside_file": (
            ["--output", str(a_file / "sub")],
            f"output path {str(a_file / 'sub')!r} is inside a file ({str(a_file)!r})",
        ),
        "data_without_target": (
            ["--data", good],
            "--data needs --target COLUMN, the column to predict",
        ),
        "target_without_data": (["--target", "label"], "--target needs --data"),
        "task_without_data": (
            ["--task", "regression"],
            "--task needs --data (the digits task is classification)",
        ),
    }


def _bad_case_ids():
    with tempfile.TemporaryDirectory() as tmp:
        return list(_bad_cases(pathlib.Path(tmp)))


@pytest.mark.parametrize("case", _bad_case_ids())
def test_bad_input_one_line_exit_2_nothing_written(tmp_path, capsys, case):
    argv, message = _bad_cases(tmp_path)[case]
    before = sorted(os.listdir(tmp_path))
    out = tmp_path / "out"
    if "--output" not in argv:
        argv = argv + ["--output", str(out)]
    assert main(["compare", *argv]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    if message.endswith(": "):
        # The rest is NumPy's own reason, which varies between versions.
        assert captured.err.startswith(f"keras-reg compare: error: {message}")
        assert captured.err.count("\n") == 1 and captured.err.endswith("\n")
    else:
        assert captured.err == f"keras-reg compare: error: {message}\n"
    assert sorted(os.listdir(tmp_path)) == before
    assert (tmp_path / "taken").read_text() == "keep me"


def test_npy_array_named_npz_is_one_line_error(tmp_path, capsys):
    # np.load returns a bare array, not an archive, for a .npy file.
    path = tmp_path / "array.npz"
    with open(path, "wb") as f:
        np.save(f, np.zeros((30, 3)))
    argv = ["compare", "--data", str(path), "--output", str(tmp_path / "out")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(
        f"keras-reg compare: error: {str(path)!r} is not a readable .npz file: "
    )
    assert err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_run_compare_reports_bad_data_and_model_as_usage_errors(tmp_path):
    # run_compare's contract, which `main` relies on: every bad input is a
    # UsageError (the data and model modules raise their own errors).
    missing = str(tmp_path / "missing.csv")
    for argv, message in (
        (["--data", missing, "--target", "y"], f"data file {missing!r} does not exist"),
        (["--model", "nowhere.py:build"], "model file 'nowhere.py' does not exist"),
    ):
        args = cli.build_parser().parse_args(
            ["compare", *argv, "--output", str(tmp_path / "out")]
        )
        with pytest.raises(cli.UsageError) as raised:
            cli.run_compare(args, stdout=io.StringIO(), stderr=io.StringIO())
        assert str(raised.value) == message
    assert not (tmp_path / "out").exists()


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


def test_bad_command_prints_one_line_in_a_real_process(tmp_path):
    out = tmp_path / "out"
    result = _run_module(["compare", "--grid", "10", "--output", str(out)])
    assert result.returncode == 2
    assert result.stdout == ""
    assert not out.exists()
    # `python -m keras_reg` imports the package, hence Keras, before any
    # argument is read, and TensorFlow >= 2.19 writes absl log lines at import
    # that TF_CPP_MIN_LOG_LEVEL does not silence (tensorflow/tensorflow#100442).
    # Our own output is exactly the last line; every other line is TF's.
    *imported, ours = result.stderr.splitlines()
    assert ours == (
        "keras-reg compare: error: --grid must be an integer in [1, 9] (got 10)"
    )
    assert result.stderr.endswith("\n")
    for line in imported:
        assert not line.startswith(("keras-reg", "Traceback")), line
    if BACKEND != "tensorflow":
        assert imported == []


def test_help_explains_every_option_with_defaults(capsys):
    assert main(["compare", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    for expected in (
        "--data FILE a CSV file with a header row and numeric feature columns, "
        "or a .npz file with arrays x (rows x features) and y",
        "(default: scikit-learn's digits, no download)",
        "--target COLUMN target column of a CSV --data",
        "--model MODEL mlp (the built-in MLP), cnn (a built-in convolutional "
        "model: the features as a square image, two 3x3 Conv2D with pooling "
        "and a Dense layer; for DropBlock) or FUNCTION(input_shape, "
        "output_size) in FILE.py",
        "(default: mlp)",
        "'default' (the ten without 'opt-in' below), 'all', 'sparsity'",
        "--task {auto,classification,regression}",
        "(default: auto)",
        "--epochs N epoch budget of every technique (default: 30)",
        "--batch-size N batch size (default: 32)",
        "--seed N first seed; the seeds are N, N+1, ... (default: 0)",
        "--seeds N number of seeds per technique (default: 5)",
        "(default: 3, at most 9)",
        "(default: ./keras_reg_compare/)",
        "--quiet print only the table and the verdicts",
        "holds, does not hold or inconclusive",
        "KERAS_BACKEND",
    ):
        assert expected in text
    for technique in techniques.TECHNIQUES:
        opt_in = "" if technique.default_run else "(opt-in) "
        assert f"{technique.name} {opt_in}{technique.description}" in text


def test_help_description_shows_a_single_percent_sign(capsys):
    assert main(["compare", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "means and 95% intervals over the seeds" in text


def test_top_level_without_command_is_an_error(capsys):
    assert main([]) == 2
    assert capsys.readouterr().err == (
        "keras-reg: error: the following arguments are required: COMMAND\n"
    )


def test_output_folder_checks_do_not_create_it(tmp_path):
    target = tmp_path / "a" / "b"
    cli._check_output(str(target))
    assert not (tmp_path / "a").exists()
