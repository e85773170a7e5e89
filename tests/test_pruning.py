"""Tests for keras_reg.pruning.Pruning and strip."""

import contextlib
import doctest
import json
import os
import zipfile

import keras
import numpy as np
import pytest
from helpers import (
    assert_config_round_trip,
    assert_json_round_trip,
    invalid_message,
    run_python,
)

from keras_reg import pruning
from keras_reg._backends import portable_only
from keras_reg.optimizers import SAM, Proximal
from keras_reg.pruning import pruning as pruning_module
from keras_reg.regularizers import L1

BACKEND = keras.backend.backend()


def _np(x):
    return keras.ops.convert_to_numpy(x)


def _mlp(name="net"):
    return keras.Sequential(
        [
            keras.Input((6,)),
            keras.layers.Dense(10, activation="relu", name="a"),
            keras.layers.Dense(8, activation="relu", name="b"),
            keras.layers.Dense(3, name="c"),
        ],
        name=name,
    )


def _kernels(model):
    return [layer.kernel for layer in model.layers]


def _set_distinct_weights(model, seed=0):
    """Normal kernels with distinct magnitudes, so the reference has no ties."""
    rng = np.random.default_rng(seed)
    for kernel in _kernels(model):
        values = rng.normal(size=kernel.shape).astype("float32")
        assert len(np.unique(np.abs(values))) == values.size
        kernel.assign(values)
    return [_np(kernel) for kernel in _kernels(model)]


def _data(n=16, seed=1):
    rng = np.random.default_rng(seed)
    return (
        rng.normal(size=(n, 6)).astype("float32"),
        rng.normal(size=(n, 3)).astype("float32"),
    )


def _one_frozen_step(model, schedule, **kwargs):
    """One step of SGD(0): the weights move only by the masks."""
    model.compile(
        optimizer=pruning.Pruning(keras.optimizers.SGD(0.0), schedule, **kwargs),
        loss="mse",
    )
    x, y = _data()
    model.train_on_batch(x, y)


def _numpy_mask(magnitudes, sparsity):
    """Zeroes the round(sparsity * n) smallest magnitudes."""
    flat = magnitudes.ravel()
    count = int(np.round(np.float32(sparsity) * np.float32(flat.size)))
    mask = np.ones(flat.size, "float32")
    mask[np.argsort(flat, kind="stable")[:count]] = 0.0
    return mask.reshape(magnitudes.shape)


# --- Masks against NumPy -----------------------------------------------------


@pytest.mark.parametrize("sparsity", [0.3, 0.5, 0.9])
def test_layer_mode_zeroes_the_smallest_of_each_kernel(sparsity):
    model = _mlp()
    initial = _set_distinct_weights(model)
    _one_frozen_step(model, pruning.ConstantSparsity(sparsity))
    for kernel, values in zip(_kernels(model), initial, strict=True):
        mask = _numpy_mask(np.abs(values), sparsity)
        np.testing.assert_array_equal(_np(kernel), values * mask)
        np.testing.assert_array_equal(_np(model.optimizer.get_mask(kernel)), mask)
        expected = np.round(np.float32(sparsity) * np.float32(values.size))
        assert np.count_nonzero(_np(kernel) == 0) == expected


def test_masks_come_from_the_weights_before_the_step_update():
    # One SGD step on a linear layer: the mask is chosen on the magnitudes of
    # the initial kernel (as tfmot chooses at the start of a batch), then
    # applied to the updated kernel W1 = W0 - lr * dL/dW (NumPy gradient of
    # the mean squared error).
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(3, name="d")])
    kernel = model.layers[0].kernel
    w0 = _set_distinct_weights(model, seed=5)[0].astype("float64")
    x, y = _data()
    lr = 0.5
    model.compile(
        optimizer=pruning.Pruning(
            keras.optimizers.SGD(lr), pruning.ConstantSparsity(0.5)
        ),
        loss="mse",
    )
    model.train_on_batch(x, y)
    residual = x.astype("float64") @ w0 - y  # the bias starts at zero
    w1 = w0 - lr * 2.0 * x.T.astype("float64") @ residual / residual.size
    mask = _numpy_mask(np.abs(w0), 0.5)
    # The step reorders the magnitudes: choosing after it would differ.
    assert np.any(_numpy_mask(np.abs(w1), 0.5) != mask)
    np.testing.assert_array_equal(_np(model.optimizer.get_mask(kernel)), mask)
    np.testing.assert_allclose(_np(kernel), w1 * mask, rtol=1e-5, atol=1e-6)


def test_global_mode_uses_one_threshold_over_all_kernels():
    model = _mlp()
    initial = _set_distinct_weights(model, seed=3)
    _one_frozen_step(model, pruning.ConstantSparsity(0.6), mode="global")
    flat = np.concatenate([np.abs(values).ravel() for values in initial])
    mask = _numpy_mask(flat, 0.6)
    offsets = np.cumsum([0] + [values.size for values in initial])
    fractions = []
    for index, (kernel, values) in enumerate(
        zip(_kernels(model), initial, strict=True)
    ):
        expected = mask[offsets[index] : offsets[index + 1]].reshape(values.shape)
        np.testing.assert_array_equal(_np(kernel), values * expected)
        fractions.append(np.mean(expected == 0))
    # One threshold gives each layer its own sparsity, not 0.6 each.
    assert len(set(fractions)) > 1
    assert sum(np.count_nonzero(_np(k) == 0) for k in _kernels(model)) == round(
        0.6 * flat.size
    )


def test_ties_are_broken_to_the_exact_count():
    model = _mlp()
    for kernel in _kernels(model):
        # Every magnitude is 1 or 2: any threshold alone zeroes too many.
        values = np.where(np.arange(np.prod(kernel.shape)) % 3, 1.0, -2.0)
        kernel.assign(values.reshape(kernel.shape).astype("float32"))
    _one_frozen_step(model, pruning.ConstantSparsity(0.5))
    for kernel in _kernels(model):
        values = _np(kernel)
        assert np.count_nonzero(values == 0) == round(0.5 * values.size)
        # The ones go first: 2/3 of the entries are ones, more than half.
        assert np.all(np.abs(values[values != 0]) >= 1)
        assert np.count_nonzero(np.abs(values) == 2) == np.ceil(values.size / 3)


def test_structured_mode_zeroes_whole_dense_units_and_their_biases():
    model = _mlp()
    initial = _set_distinct_weights(model, seed=4)
    for layer in model.layers:
        layer.bias.assign(np.ones(layer.bias.shape, "float32"))
    _one_frozen_step(
        model, pruning.ConstantSparsity(0.5), mode="structured", layers=["a", "b"]
    )
    for layer, values in zip(model.layers[:2], initial[:2], strict=True):
        units = _numpy_mask(np.linalg.norm(values, axis=0), 0.5)
        np.testing.assert_array_equal(_np(layer.kernel), values * units)
        np.testing.assert_array_equal(_np(layer.bias), units)
        assert np.count_nonzero(units == 0) == layer.units // 2
    np.testing.assert_array_equal(_np(model.layers[2].kernel), initial[2])
    np.testing.assert_array_equal(_np(model.layers[2].bias), np.ones(3))


@pytest.mark.skipif(BACKEND != "torch", reason="the fast path is torch's only")
@pytest.mark.parametrize("mode", ["layer", "structured"])
def test_fast_path_and_portable_path_give_the_same_weights(mode):
    x, y = _data()
    trained = []
    for context in (contextlib.nullcontext, portable_only):
        model = _mlp()
        _set_distinct_weights(model, seed=5)
        schedule = pruning.PolynomialDecay(0.0, 0.6, 0, 4, frequency=2)
        optimizer = pruning.Pruning(keras.optimizers.SGD(0.05), schedule, mode=mode)
        model.compile(optimizer=optimizer, loss="mse")
        with context():
            for _ in range(6):
                model.train_on_batch(x, y)
        trained.append([_np(w) for w in model.weights])
    for fast, portable in zip(*trained, strict=True):
        np.testing.assert_array_equal(fast, portable)
    assert np.mean(trained[0][0] == 0) >= 0.5  # the masks did prune


def test_structured_mode_zeroes_whole_conv_filters():
    model = keras.Sequential(
        [
            keras.Input((5, 5, 3)),
            keras.layers.Conv2D(8, 3, name="conv"),
            keras.layers.GlobalAveragePooling2D(),
        ]
    )
    rng = np.random.default_rng(5)
    values = rng.normal(size=(3, 3, 3, 8)).astype("float32")
    model.layers[0].kernel.assign(values)
    model.compile(
        optimizer=pruning.Pruning(
            keras.optimizers.SGD(0.0),
            pruning.ConstantSparsity(0.75),
            mode="structured",
        ),
        loss="mse",
    )
    model.train_on_batch(rng.normal(size=(4, 5, 5, 3)), np.zeros((4, 8)))
    filters = _numpy_mask(
        np.sqrt(np.sum(values.astype(np.float64) ** 2, (0, 1, 2))), 0.75
    )
    np.testing.assert_array_equal(_np(model.layers[0].kernel), values * filters)
    assert sorted(np.flatnonzero(filters)) == sorted(
        np.argsort(np.linalg.norm(values.reshape(-1, 8), axis=0))[-2:]
    )


# --- Training ----------------------------------------------------------------


@pytest.mark.parametrize(
    "jit_compile, steps_per_execution", [(False, 1), (True, 1), ("auto", 3)]
)
def test_pruned_weights_stay_zero_and_follow_the_schedule(
    jit_compile, steps_per_execution
):
    if BACKEND == "torch" and (jit_compile is True or steps_per_execution > 1):
        pytest.skip("torch compiles nothing and runs one step per execution")
    if BACKEND == "jax" and jit_compile is False:
        pytest.skip("JAX runs op by op without jit: slow, and not how it trains")
    model = _mlp()
    schedule = pruning.PolynomialDecay(0.0, 0.8, begin_step=2, end_step=14, frequency=3)
    model.compile(
        optimizer=pruning.Pruning(keras.optimizers.Adam(0.05), schedule),
        loss="mse",
        jit_compile=jit_compile,
        steps_per_execution=steps_per_execution,
    )
    x, y = _data(n=8 * 24)
    sizes = [int(np.prod(kernel.shape)) for kernel in _kernels(model)]
    zeros_before = [np.zeros(size, bool) for size in sizes]
    # Each fit runs 3 steps (batches of 8): one update each, at its end.
    batch = 8
    last_update = None
    for first in range(0, 24, 3):
        chunk = slice(first * batch, (first + 3) * batch)
        model.fit(x[chunk], y[chunk], batch_size=batch, epochs=1, verbose=0)
        for step in range(first, first + 3):
            if bool(_np(schedule.should_update(step))):
                last_update = step
        target = (
            0.0 if last_update is None else float(_np(schedule.sparsity(last_update)))
        )
        for index, kernel in enumerate(_kernels(model)):
            zeros = _np(kernel).ravel() == 0
            expected = np.round(np.float32(target) * np.float32(sizes[index]))
            assert np.count_nonzero(zeros) == expected, (first, index)
            # While the sparsity grows a pruned weight stays pruned.
            assert np.all(zeros[zeros_before[index]])
            zeros_before[index] = zeros
    assert int(_np(model.optimizer.iterations)) == 24
    assert last_update == 14


def test_composes_with_proximal():
    model = keras.Sequential(
        [
            keras.Input((6,)),
            keras.layers.Dense(12, kernel_regularizer=L1(0.01, proximal=True)),
            keras.layers.Dense(3),
        ]
    )
    optimizer = pruning.Pruning(
        Proximal(keras.optimizers.SGD(0.1)), pruning.ConstantSparsity(0.5, frequency=2)
    )
    model.compile(optimizer=optimizer, loss="mse")
    x, y = _data(n=32)
    model.fit(x, y, batch_size=8, epochs=2, verbose=0)
    for kernel in _kernels(model):
        mask = _np(optimizer.get_mask(kernel))
        assert np.all(_np(kernel)[mask == 0] == 0)
        assert np.count_nonzero(mask == 0) == kernel.shape[0] * kernel.shape[1] // 2


def test_mixed_precision_loss_scaling_keeps_the_masks():
    keras.config.set_dtype_policy("mixed_float16")
    try:
        model = _mlp()
        model.compile(
            optimizer=pruning.Pruning("sgd", pruning.ConstantSparsity(0.5)), loss="mse"
        )
        assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
        x, y = _data()
        model.fit(x, y, batch_size=8, epochs=2, verbose=0)
        for kernel in _kernels(model):
            values = _np(kernel)
            assert np.all(np.isfinite(values))
            assert np.count_nonzero(values == 0) == values.size // 2
    finally:
        keras.config.set_dtype_policy("float32")


def test_the_masks_hold_after_the_inner_optimizers_ema_is_written_back():
    # use_ema=True: at the end of fit, Keras writes the moving averages over
    # the weights; averages of pruned weights that moved before their mask
    # are not zero.
    model = _mlp()
    _set_distinct_weights(model)
    schedule = pruning.PolynomialDecay(0.0, 0.5, 0, 4, frequency=1)
    model.compile(
        optimizer=pruning.Pruning(keras.optimizers.SGD(0.05, use_ema=True), schedule),
        loss="mse",
    )
    x, y = _data()
    model.fit(x, y, batch_size=4, epochs=2, verbose=0)
    for kernel in _kernels(model):
        values = _np(kernel)
        mask = _np(model.optimizer.get_mask(kernel))
        np.testing.assert_array_equal(values[mask == 0], 0.0)
        assert np.count_nonzero(values == 0) == values.size // 2


@pytest.mark.parametrize("wrapper", ["pruning", "proximal", "sam"])
def test_apply_gradients_returns_the_step_count_as_keras_does(wrapper):
    inner = keras.optimizers.SGD(0.1)
    optimizer = {
        "pruning": lambda: pruning.Pruning(inner, pruning.ConstantSparsity(0.5)),
        "proximal": lambda: Proximal(inner),
        "sam": lambda: SAM(inner),
    }[wrapper]()
    plain = keras.optimizers.SGD(0.1)  # the oracle
    counts = {}
    for name, each in (("wrapper", optimizer), ("keras", plain)):
        model = _mlp()
        each.build(model.trainable_variables)
        each_vars = model.trainable_variables
        grads = [keras.ops.ones(v.shape) for v in each_vars]
        counts[name] = [
            int(_np(each.apply_gradients(zip(grads, each_vars, strict=True))))
            for _ in range(3)
        ]
    assert counts["wrapper"] == counts["keras"] == [1, 2, 3]


# --- Selection ---------------------------------------------------------------


def _pruned_names(model, layers):
    model.compile(
        optimizer=pruning.Pruning("sgd", pruning.ConstantSparsity(0.5), layers=layers),
        loss="mse",
    )
    model.optimizer.build(model.trainable_variables)
    return sorted(
        variable.path
        for variable in model.trainable_variables
        if model.optimizer.get_mask(variable) is not None
    )


def _nested_model():
    inner = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(4, name="c")], name="inner"
    )
    inputs = keras.Input((6,))
    x = keras.layers.Dense(4, name="a")(inputs)
    x = keras.layers.Dense(4, name="b")(x)
    return keras.Model(inputs, inner(x), name="outer")


def test_selects_kernels_by_regex_name_list_or_enclosing_model():
    assert _pruned_names(_nested_model(), None) == [
        "a/kernel",
        "b/kernel",
        "inner/c/kernel",
    ]
    assert _pruned_names(_nested_model(), "a|c") == ["a/kernel", "inner/c/kernel"]
    assert _pruned_names(_nested_model(), ["inner"]) == ["inner/c/kernel"]
    assert _pruned_names(_nested_model(), ("b",)) == ["b/kernel"]


def test_selects_the_projections_of_multi_head_attention():
    inputs = keras.Input((5, 6))
    outputs = keras.layers.MultiHeadAttention(2, 4, name="mha")(inputs, inputs)
    names = _pruned_names(keras.Model(inputs, outputs), ["mha"])
    assert names == [
        f"mha/{part}/kernel" for part in ("attention_output", "key", "query", "value")
    ]


def test_names_without_a_kernel_raise_when_built():
    expected = "names of layers with a kernel (none found for nope)"
    with pytest.raises(ValueError) as info:
        _pruned_names(_nested_model(), ["a", "nope"])
    assert str(info.value) == invalid_message("layers", expected, ["a", "nope"])
    with pytest.raises(ValueError) as info:
        _pruned_names(_nested_model(), "z.*")
    assert str(info.value) == invalid_message(
        "layers", "a selection that matches at least one kernel", "z.*"
    )


# --- Saving and strip --------------------------------------------------------


def test_masks_persist_across_save_and_load(tmp_path):
    model = _mlp()
    schedule = pruning.PolynomialDecay(0.0, 0.7, 0, 8, frequency=2)
    model.compile(
        optimizer=pruning.Pruning(keras.optimizers.Adam(0.02), schedule, mode="global"),
        loss="mse",
    )
    x, y = _data(n=32)
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False)
    path = os.path.join(str(tmp_path), "pruned.keras")
    model.save(path)
    restored = keras.saving.load_model(path, safe_mode=True)
    assert type(restored.optimizer) is pruning.Pruning
    assert restored.optimizer.get_config() == model.optimizer.get_config()
    for mine, loaded in zip(model.weights, restored.weights, strict=True):
        np.testing.assert_array_equal(
            _np(restored.optimizer.get_mask(loaded)),
            _np(model.optimizer.get_mask(mine)),
        )
    for mine, loaded in zip(
        model.optimizer.variables, restored.optimizer.variables, strict=True
    ):
        np.testing.assert_array_equal(_np(loaded), _np(mine))
    for trained in (model, restored):
        trained.fit(x, y, batch_size=8, epochs=2, verbose=0, shuffle=False)
    for mine, loaded in zip(model.weights, restored.weights, strict=True):
        np.testing.assert_allclose(_np(loaded), _np(mine), rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(_np(loaded) == 0, _np(mine) == 0)


def test_strip_returns_a_plain_model_that_loads_without_keras_reg(tmp_path):
    model = _mlp()
    model.compile(
        optimizer=pruning.Pruning(
            "adam", pruning.ConstantSparsity(0.6, frequency=3), mode="structured"
        ),
        loss="mse",
    )
    x, y = _data(n=32)
    model.fit(x, y, batch_size=8, epochs=2, verbose=0)
    stripped = pruning.strip(model)
    assert not stripped.compiled
    for mine, theirs in zip(model.weights, stripped.weights, strict=True):
        np.testing.assert_array_equal(_np(theirs), _np(mine))
    path = os.path.join(str(tmp_path), "stripped.keras")
    stripped.save(path)
    with zipfile.ZipFile(path) as archive:
        assert "keras_reg" not in archive.read("config.json").decode()
    np.save(tmp_path / "x.npy", x)
    result = run_python(
        f"""
        import sys
        import keras
        import numpy as np

        model = keras.saving.load_model({path!r})
        assert not any(name.startswith("keras_reg") for name in sys.modules)
        x = np.load({str(tmp_path / "x.npy")!r})
        np.save({str(tmp_path / "y.npy")!r}, model.predict(x, verbose=0))
        for index, weight in enumerate(model.get_weights()):
            np.save({str(tmp_path)!r} + f"/w{{index}}.npy", weight)
        print("ok")
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("ok")
    for index, weight in enumerate(model.get_weights()):
        np.testing.assert_array_equal(np.load(tmp_path / f"w{index}.npy"), weight)
    np.testing.assert_array_equal(
        np.load(tmp_path / "y.npy"), model.predict(x, verbose=0)
    )


def test_strip_needs_a_built_pruning_optimizer():
    expected = (
        "a built model compiled with a built keras_reg.pruning.Pruning optimizer "
        "(train it or load it first)"
    )
    for compile_kwargs in (
        None,
        {"optimizer": "adam", "loss": "mse"},
        {
            "optimizer": pruning.Pruning("adam", pruning.ConstantSparsity(0.5)),
            "loss": "mse",
        },
    ):
        model = _mlp()
        if compile_kwargs:
            model.compile(**compile_kwargs)
        with pytest.raises(ValueError) as info:
            pruning.strip(model)
        assert str(info.value) == invalid_message("model", expected, model)


# --- Arguments ---------------------------------------------------------------


def test_config_and_json_round_trips():
    optimizer = pruning.Pruning(
        keras.optimizers.Adam(0.01, beta_1=0.8),
        pruning.PolynomialDecay(0.1, 0.9, 0, 100, frequency=10),
        mode="structured",
        layers=["a", "b"],
        name="pruned",
    )
    assert optimizer.get_config()["layers"] == ["a", "b"]
    for clone in (
        assert_config_round_trip(optimizer),
        assert_json_round_trip(optimizer),
    ):
        assert clone.inner_optimizer.beta_1 == 0.8
        assert clone.schedule.get_config() == optimizer.schedule.get_config()
        assert (clone.mode, clone.layers) == ("structured", ("a", "b"))
    json.dumps(optimizer.get_config())


def test_learning_rate_and_iterations_are_the_inner_optimizers():
    inner = keras.optimizers.SGD(0.25)
    optimizer = pruning.Pruning(inner, pruning.ConstantSparsity(0.5))
    optimizer.learning_rate = 0.5
    np.testing.assert_allclose(_np(inner.learning_rate), 0.5)
    assert optimizer.iterations is inner.iterations


def test_get_mask_is_none_for_variables_it_does_not_prune():
    model = _mlp()
    _one_frozen_step(model, pruning.ConstantSparsity(0.5), layers=["a"])
    assert model.optimizer.get_mask(model.layers[0].bias) is None
    assert model.optimizer.get_mask(model.layers[1].kernel) is None
    assert tuple(model.optimizer.get_mask(model.layers[0].kernel).shape) == (6, 10)


def test_invalid_arguments_raise():
    schedule = pruning.ConstantSparsity(0.5)
    expected = "a keras.optimizers.Optimizer instance or an optimizer name"
    nested = pruning.Pruning("sgd", schedule)
    for value in ("no_such_optimizer", 0.1, None, nested, Proximal(nested)):
        with pytest.raises(ValueError) as info:
            pruning.Pruning(value, schedule)
        assert str(info.value) == invalid_message("optimizer", expected, value)
    accumulating = keras.optimizers.SGD(gradient_accumulation_steps=2)
    with pytest.raises(ValueError) as info:
        pruning.Pruning(accumulating, schedule)
    assert str(info.value) == invalid_message(
        "optimizer", "an optimizer without gradient_accumulation_steps", accumulating
    )
    for value in (0.5, "constant", None):
        with pytest.raises(ValueError) as info:
            pruning.Pruning("sgd", value)
        assert str(info.value) == invalid_message(
            "schedule", "a keras_reg.pruning.PruningSchedule", value
        )
    with pytest.raises(ValueError) as info:
        pruning.Pruning("sgd", schedule, mode="unit")
    assert str(info.value) == invalid_message(
        "mode", "one of 'layer', 'global', 'structured'", "unit"
    )
    for value in ("(", [], ["a", 1], 3, lambda layer: True):
        with pytest.raises(ValueError) as info:
            pruning.Pruning("sgd", schedule, layers=value)
        assert str(info.value) == invalid_message(
            "layers",
            "None, a regular expression or a non-empty list of layer names",
            value,
        )
    with pytest.raises(ValueError) as info:
        pruning.Pruning("sgd", schedule, clipnorm=1.0)
    assert str(info.value) == (
        "Pruning takes no base optimizer arguments; set them on the wrapped "
        "optimizer. Received: ['clipnorm']"
    )


def test_pruning_around_sam_raises():
    sam = SAM(keras.optimizers.SGD(0.1))
    with pytest.raises(ValueError) as info:
        pruning.Pruning(sam, pruning.ConstantSparsity(0.5))
    assert str(info.value) == invalid_message(
        "optimizer", "an optimizer that wraps no SAM (use SAM(Pruning(...)))", sam
    )


def test_module_docstring_examples_run():
    failures, _ = doctest.testmod(pruning_module, verbose=False)
    assert failures == 0


def test_keep_largest_drops_exactly_count_with_ties_zeros_and_denormals():
    rng = np.random.default_rng(7)
    first = np.concatenate(
        [np.zeros(20), np.full(30, 1e-40), np.full(25, 0.5), rng.exponential(size=45)]
    ).astype("float32")
    second = np.concatenate([np.full(15, 0.5), rng.exponential(size=40) * 1e3])
    scores = [rng.permutation(first), rng.permutation(second.astype("float32"))]
    together = np.concatenate(scores)
    for count in (0, 19, 50, 90, 174, 175):
        masks = pruning_module._keep_largest(
            [keras.ops.convert_to_tensor(s) for s in scores],
            keras.ops.convert_to_tensor(count, "int32"),
        )
        kept = np.concatenate([_np(mask) for mask in masks])
        assert np.count_nonzero(~kept) == count
        if 0 < count < together.size:
            assert together[~kept].max() <= together[kept].min()
