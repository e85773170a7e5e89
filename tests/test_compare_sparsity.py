"""Tests of compare's DropBlock, SAM, SWA, group lasso and pruning rows, and of
the sparsity-vs-accuracy section (keras_reg/compare/sparsity.py).

References are computed here: a tower against the same model trained alone
on the same batches, SWA against the NumPy mean of per-epoch snapshots, the
pruning targets against the reached sparsities read from results.json.
"""

import io
import json
import types

import keras
import numpy as np
import pytest

import keras_reg
from keras_reg.compare import (
    apply,
    cli,
    data,
    models,
    report,
    sparsity,
    training,
    verdicts,
)
from keras_reg.compare import techniques as techniques_lib

BACKEND = keras.backend.backend()
SEEDS = (3, 4)
# TensorFlow sums the towers' gradients in another order than one model
# alone: about 1e-7 of float rounding per step (docs/compare.md).
TOLERANCE = {"rtol": 1e-4, "atol": 1e-5}


def _technique(name):
    return next(t for t in techniques_lib.TECHNIQUES if t.name == name)


def _tiny_build(seed):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.Input((64,)),
            keras.layers.Dense(8, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    return model, None


@pytest.fixture(scope="module")
def digits():
    problem = data.load_digits_problem()
    return problem, {seed: problem.split(seed) for seed in SEEDS}


def _batches(split, seed, epochs, batch=32):
    """The batches Group.fit feeds one seed's tower, in order."""
    n = len(split.y_train)
    steps = n // batch
    rng = np.random.default_rng([seed, 2026])
    for _ in range(epochs):
        order = rng.permutation(n)[: steps * batch]
        for start in range(0, steps * batch, batch):
            rows = order[start : start + batch]
            yield split.x_train[rows], split.y_train[rows]


def _run(argv):
    out, err = io.StringIO(), io.StringIO()
    args = cli.build_parser().parse_args(["compare", *argv])
    assert cli.run_compare(args, stdout=out, stderr=err) == 0
    return out.getvalue()


# --- SAM ---


def test_sam_tower_trains_exactly_like_sam_alone_with_each_batch_twice(digits):
    problem, splits = digits
    settings = training.Settings(1, 32, SEEDS, 1)
    group = training.Group(_technique("SAM"), problem, splits, settings, _tiny_build)
    group.fit()
    sam = group.model.optimizer
    steps = 300 // 32
    # Each batch twice: one SAM update (ascent + descent) per batch.
    assert int(keras.ops.convert_to_numpy(sam.iterations)) == 2 * steps
    inner = sam.inner_optimizer.iterations
    assert int(keras.ops.convert_to_numpy(inner)) == steps
    for value, seed, tower in group.towers:
        alone = keras_reg.regularize(_tiny_build(seed)[0])
        alone.compile(
            optimizer=keras_reg.optimizers.SAM(
                keras.optimizers.Adam(apply.LEARNING_RATE), rho=value
            ),
            loss="sparse_categorical_crossentropy",
        )
        for x, y in _batches(splits[seed], seed, 1):
            alone.train_on_batch(x, y)
            alone.train_on_batch(x, y)
        for ours, theirs in zip(tower.get_weights(), alone.get_weights(), strict=True):
            np.testing.assert_allclose(ours, theirs, **TOLERANCE)


def test_sam_gets_one_norm_group_per_tower(digits, monkeypatch):
    problem, splits = digits
    given = []
    set_norm_groups = keras_reg.optimizers.SAM.set_norm_groups

    def spy(self, groups):
        given.append(groups)
        return set_norm_groups(self, groups)

    monkeypatch.setattr(keras_reg.optimizers.SAM, "set_norm_groups", spy)
    settings = training.Settings(1, 32, SEEDS, 2)
    sam = _technique("SAM")
    group = training.Group(sam, problem, splits, settings, _tiny_build, [0.05])
    assert len(given) == 1
    assert [[id(v) for v in g] for g in given[0]] == [
        [id(v) for v in tower.trainable_variables] for _, _, tower in group.towers
    ]


def test_each_sam_strength_trains_with_its_own_rho(digits, monkeypatch):
    problem, splits = digits
    rhos = []
    set_norm_groups = keras_reg.optimizers.SAM.set_norm_groups

    def spy(self, groups):
        rhos.append((self.rho, len(groups)))
        return set_norm_groups(self, groups)

    monkeypatch.setattr(keras_reg.optimizers.SAM, "set_norm_groups", spy)
    settings = training.Settings(1, 32, SEEDS, 2)
    sam = _technique("SAM")
    progress = report.Progress(1, stream=io.StringIO(), quiet=True)
    runs, _ = training.train_technique(
        sam, problem, splits, settings, _tiny_build, progress, ""
    )
    values = sam.values(2)
    assert rhos == [(value, len(SEEDS)) for value in values]
    assert [(r["strength"], r["seed"]) for r in runs] == [
        (v, s) for v in values for s in SEEDS
    ]
    with pytest.raises(ValueError, match="one Group per strength"):
        training.Group(sam, problem, splits, settings, _tiny_build)


@pytest.mark.parametrize("name", ["L1 (proximal)", "SAM", "Pruning"])
def test_a_loss_scaled_models_optimizer_is_wrapped_from_its_inner_optimizer(name):
    # A --model compiled under mixed_float16 holds a LossScaleOptimizer:
    # Proximal and SAM refuse one inside them, and compile wraps the
    # technique's optimizer in a new one, outside.
    base = keras.optimizers.LossScaleOptimizer(keras.optimizers.Adam(0.003))
    schedule = keras_reg.pruning.ConstantSparsity(0.5)
    optimizer = apply.make_optimizer(base, _technique(name), 0.05, schedule=schedule)
    while hasattr(optimizer, "inner_optimizer"):
        assert not isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
        optimizer = optimizer.inner_optimizer
    assert isinstance(optimizer, keras.optimizers.Adam)
    assert float(optimizer.learning_rate) == pytest.approx(0.003)


# --- SWA ---


@pytest.mark.parametrize("rides", [True, False], ids=["on_baseline", "alone"])
def test_swa_weights_are_the_mean_of_the_epochs_from_start_epoch(digits, rides):
    problem, splits = digits
    epochs = 8
    swa = _technique("SWA")
    start = swa.swa_start(epochs)
    assert start == 6  # 75% of 8 epochs, 0-based
    settings = training.Settings(epochs, 32, SEEDS, 1)
    if rides:  # as the command trains it: on the baseline's towers
        group = training.Group(
            _technique("baseline"), problem, splits, settings, _tiny_build, swa=swa
        )
    else:
        group = training.Group(swa, problem, splits, settings, _tiny_build)
    snapshots = {index: [] for index in range(len(group.towers))}

    def on_epoch(epoch):
        for index, (_, _, tower) in enumerate(group.towers):
            snapshots[index].append([w.astype("float64") for w in tower.get_weights()])

    group.fit(on_epoch)
    if rides:
        # The baseline's numbers come first, from its final weights.
        for index, (_, _, tower) in enumerate(group.towers):
            for weight, final in zip(
                tower.get_weights(), snapshots[index][-1], strict=True
            ):
                np.testing.assert_array_equal(weight, final)
        baseline = group.results()
        averaged = group.swa_results()
        assert [r["seed"] for r in averaged] == [r["seed"] for r in baseline]
    for index, (_, _, tower) in enumerate(group.towers):
        kept = snapshots[index][start:]
        for k, weight in enumerate(tower.get_weights()):
            expected = np.mean([snapshot[k] for snapshot in kept], axis=0)
            np.testing.assert_allclose(weight, expected, rtol=1e-6, atol=1e-7)


def _batch_norm_build(seed):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.Input((64,)),
            keras.layers.Dense(8),
            keras.layers.BatchNormalization(),
            keras.layers.Activation("relu"),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    return model, None


def test_swa_gives_a_models_batch_normalization_its_averaged_weights_statistics(
    digits,
):
    # A --model with BatchNormalization, SWA riding on the baseline: after
    # the average is swapped in, each tower's moving mean and variance are
    # the mean and biased variance of its first Dense's outputs (averaged
    # weights) over its own seed's training inputs, computed here in NumPy.
    problem, splits = digits
    settings = training.Settings(4, 32, SEEDS, 1)
    group = training.Group(
        _technique("baseline"),
        problem,
        splits,
        settings,
        _batch_norm_build,
        swa=_technique("SWA"),
    )
    group.fit()
    group.results()
    group.swa_results()
    for _, seed, tower in group.towers:
        dense, norm = (layer for layer in tower.layers[:2])
        kernel, bias = (w.astype("float64") for w in dense.get_weights())
        h = splits[seed].x_train.astype("float64") @ kernel + bias
        mean = keras.ops.convert_to_numpy(norm.moving_mean)
        variance = keras.ops.convert_to_numpy(norm.moving_variance)
        np.testing.assert_allclose(mean, h.mean(axis=0), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(variance, h.var(axis=0), rtol=1e-4, atol=1e-5)


# --- pruning schedule ---


@pytest.mark.parametrize(
    "epochs, steps, end", [(30, 9, 180), (10, 9, 63), (2, 9, 9), (3, 4, 8)]
)
def test_pruning_reaches_its_target_at_two_thirds_of_the_steps(epochs, steps, end):
    schedule = apply.pruning_schedule(0.8, epochs, steps)
    assert (schedule.end_step, schedule.frequency) == (end, steps)
    # The last recomputation falls on a step that runs, at the target.
    assert end <= epochs * steps - 1
    assert bool(schedule.should_update(end))
    assert float(schedule.sparsity(end)) == pytest.approx(0.8)


# --- matched sparsity, through the command ---


@pytest.fixture(scope="module")
def sparsity_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sparsity")
    argv = ["--techniques", "sparsity", "--epochs", "2", "--seeds", "2"]
    argv += ["--seed", "3", "--grid", "2", "--output", str(folder), "--quiet"]
    stdout = _run(argv)
    with open(folder / "results.json", encoding="utf-8") as f:
        return stdout, json.load(f)


def _by_name(doc):
    return {t["name"]: t for t in doc["techniques"]}


def test_pruning_targets_are_the_sparsities_the_proximal_runs_reached(sparsity_run):
    _, doc = sparsity_run
    techniques = _by_name(doc)
    reached = []
    for name in sparsity.SOURCES:
        for entry in techniques[name]["grid"]:
            runs = techniques[name]["runs"]
            zeros = [
                r["zero_weight_fraction"]
                for r in runs
                if r["strength"] == entry["strength"]
            ]
            reached.append(float(np.mean(zeros)))
    pruning = [g["strength"] for g in techniques["Pruning"]["grid"]]
    assert pruning == list(dict.fromkeys(reached))
    rows = doc["sparsity_vs_accuracy"]["rows"]
    assert [r["target_sparsity"] for r in rows] == reached


def test_pruned_zero_fraction_is_the_target_within_one_weight_per_layer(sparsity_run):
    _, doc = sparsity_run
    layers = 3  # the MLP's three kernels, each pruned to round(target * size)
    for run in _by_name(doc)["Pruning"]["runs"]:
        n = run["n_kernel_weights"]
        measured = run["zero_weight_fraction"] * n
        assert abs(measured - run["strength"] * n) <= layers


def test_sparsity_section_pairs_each_strength_with_pruning(sparsity_run):
    stdout, doc = sparsity_run
    section = doc["sparsity_vs_accuracy"]
    assert section["metric"] == "accuracy"
    pruning = _by_name(doc)["Pruning"]["runs"]
    for row in section["rows"]:
        source = _by_name(doc)[row["technique"]]["runs"]
        ours = [
            r["test"]["accuracy"] for r in source if r["strength"] == row["strength"]
        ]
        theirs = [
            r["test"]["accuracy"]
            for r in pruning
            if r["strength"] == row["target_sparsity"]
        ]
        np.testing.assert_allclose(row["differences"], np.subtract(ours, theirs))
        assert row["test_metric"]["mean"] == pytest.approx(np.mean(ours))
        assert row["p_value"] == verdicts.paired_p_value(row["differences"])
    assert [r["p_holm"] for r in section["rows"]] == verdicts.holm(
        [r["p_value"] for r in section["rows"]]
    )
    assert "Sparsity vs accuracy: Pruning trained to the sparsity" in stdout
    for row in section["rows"]:
        assert any(
            line.startswith(row["technique"]) and row["label"] in line
            for line in stdout.splitlines()
        )


def test_group_lasso_groups_units_and_spares_the_output_layer():
    model = keras.Sequential(
        [
            keras.Input((6, 6, 1)),
            keras.layers.Conv2D(4, 3, name="conv"),
            keras.layers.Flatten(),
            keras.layers.Dense(5, name="hidden"),
            keras.layers.Dense(3, name="output"),
        ]
    )
    tower = apply.add_technique(
        model, _technique("Group lasso (proximal)"), 0.3, seed=0
    )
    axes = {
        layer.name: getattr(getattr(layer, "kernel_regularizer", None), "axis", None)
        for layer in tower.layers
    }
    assert axes == {"conv": (0, 1, 2), "flatten": None, "hidden": (0,), "output": None}


# --- DropBlock and --model cnn ---


def test_dropblock_is_skipped_on_the_mlp_with_a_note(tmp_path):
    argv = ["--techniques", "DropBlock", "--epochs", "1", "--seeds", "2"]
    stdout = _run([*argv, "--grid", "1", "--output", str(tmp_path), "--quiet"])
    with open(tmp_path / "results.json", encoding="utf-8") as f:
        doc = json.load(f)
    note = (
        "DropBlock skipped: the model has no hidden layer with an image (4-D) "
        "output for DropBlock2D to follow; use --model cnn or a convolutional "
        "--model."
    )
    assert doc["notes"] == [note]
    assert f"Note: {note}" in stdout.splitlines()
    assert [t["name"] for t in doc["techniques"]] == ["baseline"]
    assert doc["verdicts"] == []


def test_dropblock_runs_after_the_convolutions_of_the_cnn(tmp_path):
    argv = ["--model", "cnn", "--techniques", "DropBlock", "--epochs", "1"]
    argv += ["--seeds", "2", "--grid", "1", "--output", str(tmp_path), "--quiet"]
    stdout = _run(argv)
    with open(tmp_path / "results.json", encoding="utf-8") as f:
        doc = json.load(f)
    assert doc["notes"] == []
    assert doc["settings"]["model"] == "built-in CNN"
    assert [t["name"] for t in doc["techniques"]] == ["baseline", "DropBlock"]
    assert [v["claim"] for v in doc["verdicts"]] == ["DropBlock reduces overfitting"]
    assert "DropBlock reduces overfitting: generalization gap" in stdout
    base, _ = models.builder("cnn", data.load_digits_problem())(0)
    tower = apply.add_technique(base, _technique("DropBlock"), 0.1, seed=7)
    blocks = [
        layer
        for layer in tower.layers
        if isinstance(layer, keras_reg.layers.DropBlock2D)
    ]
    convolutions = [layer for layer in base.layers if "Conv2D" in type(layer).__name__]
    # One copy after each convolution, the next seed each.
    assert [(b.name, b.rate, b.block_size, b.seed) for b in blocks] == [
        (f"{c.name}_drop_block2d", 0.1, 3, seed)
        for c, seed in zip(convolutions, (7, 8), strict=True)
    ]


def test_cnn_needs_a_square_number_of_features():
    problem = types.SimpleNamespace(n_features=10, n_classes=3)
    with pytest.raises(models.ModelError) as info:
        models.builder("cnn", problem)
    assert str(info.value) == (
        "--model cnn needs a number of features that is a perfect square, to "
        "read as a square image (got 10)"
    )


# --- the new claims ---


def test_new_claims_and_their_verdict_texts():
    claims = {c.technique: c for c in verdicts.CLAIMS}
    assert {
        name: (claims[name].text, claims[name].measure, claims[name].direction)
        for name in ("Group lasso (proximal)", "DropBlock", "SWA", "SAM")
    } == {
        "Group lasso (proximal)": (
            "Group lasso switches off whole units",
            "zero_unit_fraction",
            +1,
        ),
        "DropBlock": ("DropBlock reduces overfitting", "generalization_gap", -1),
        "SWA": ("SWA lowers the test loss", "test_data_loss", -1),
        "SAM": ("SAM lowers the test loss", "test_data_loss", -1),
    }
    groups = {
        "baseline": {
            "seeds": [0, 1, 2],
            "runs": [{"test_data_loss": v} for v in (3, 4, 5)],
        },
        "SWA": {"seeds": [0, 1, 2], "runs": [{"test_data_loss": v} for v in (2, 3, 3)]},
        "SAM": {"seeds": [0, 1, 2], "runs": [{"test_data_loss": v} for v in (3, 4, 5)]},
    }
    judged = verdicts.judge(groups)
    assert [v["claim"] for v in judged] == [
        "SWA lowers the test loss",
        "SAM lowers the test loss",
    ]
    # SWA: differences -1, -1, -2: t = -4/3 / (0.577 / sqrt(3)) = -4,
    # two-sided p = 0.0572 with 2 degrees of freedom; Holm over 2 claims
    # doubles it (SAM's p is 1).
    swa = judged[0]
    assert swa["p_holm"] == pytest.approx(2 * 0.05719, rel=1e-3)
    assert swa["text"].startswith(
        "SWA lowers the test loss: test data loss 2.667 vs 4 (baseline); "
        "difference -1.333 ["
    )
    assert swa["text"].endswith("(95% CI, 3 seeds), Holm p = 0.114: inconclusive")


def test_sparsity_section_prints_non_finite_values_as_nan_like_the_table():
    # A diverged regression run: its mean MSE is inf and the difference nan.
    inf, nan = float("inf"), float("nan")
    row = {
        "technique": "L1 (proximal)",
        "label": "1e-3",
        "sparsity": {"mean": 0.5},
        "test_metric": {"mean": inf, "ci_low": 1.0, "ci_high": inf},
        "pruning_sparsity": {"mean": nan},
        "pruning_test_metric": {"mean": 2.0, "ci_low": 1.5, "ci_high": 2.5},
        "effect": nan,
        "ci_low": nan,
        "ci_high": nan,
        "p_holm": nan,
    }
    text = sparsity.format_section({"metric": "mse", "rows": [row]}, n_seeds=3)
    cells = text.splitlines()[-1]
    assert "inf" not in text
    assert cells.split()[3:] == (
        "50.0% nan [1, nan] nan% 2 [1.5, 2.5] nan [nan, nan] nan".split()
    )
