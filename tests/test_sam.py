"""Tests for keras_reg.optimizers.SAM."""

import contextlib
import os

import keras
import numpy as np
import pytest

from keras_reg._backends import portable_only
from keras_reg.optimizers import SAM, Proximal
from keras_reg.optimizers import sam as sam_module
from keras_reg.pruning import ConstantSparsity, Pruning
from keras_reg.regularizers import L1
from tests.helpers import (
    assert_config_round_trip,
    assert_json_round_trip,
    run_python,
)

BACKEND = keras.backend.backend()


def _np(x):
    return keras.ops.convert_to_numpy(x)


def _data(n=16, features=4, units=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, features)).astype("float32")
    y = rng.normal(size=(n, units)).astype("float32")
    return x, y


def _initial_kernel(features=4, units=3):
    # Magnitudes spread over [0.01, 0.6] with alternating signs: ASAM's scale
    # |w| + eta differs from weight to weight.
    values = np.linspace(0.01, 0.6, features * units).reshape(features, units)
    signs = np.where(np.arange(features * units).reshape(features, units) % 2, 1, -1)
    return (values * signs).astype("float32")


def _linear_model(kernel, optimizer=None, regularizer=None, **compile_kwargs):
    model = keras.Sequential(
        [
            keras.Input((kernel.shape[0],)),
            keras.layers.Dense(
                kernel.shape[1],
                kernel_initializer=keras.initializers.Constant(kernel),
                bias_initializer=keras.initializers.Constant(0.1),
                kernel_regularizer=regularizer,
            ),
        ]
    )
    if optimizer is not None:
        model.compile(optimizer=optimizer, loss="mse", **compile_kwargs)
    return model


def _fit_steps(model, x, y, steps, **kwargs):
    """`steps` train steps, each on the whole batch (x, y)."""
    model.fit(
        np.tile(x, (steps, 1)),
        np.tile(y, (steps, 1)),
        batch_size=len(x),
        epochs=1,
        shuffle=False,
        verbose=0,
        **kwargs,
    )


# --- NumPy reference ------------------------------------------------------


def _mse_gradients(weights, x, y):
    """Gradients of mean((x @ kernel + bias - y) ** 2) over all entries."""
    kernel, bias = weights
    residual = x.astype(np.float64) @ kernel + bias - y
    scale = 2.0 / residual.size
    return [scale * x.T @ residual, scale * residual.sum(axis=0)]


def _perturbation(weights, grads, rho, adaptive, eta):
    """Foret et al.'s e = rho g / ||g||; ASAM's rho T^2 g / ||T g||."""
    scales = [np.abs(w) + eta if adaptive else np.ones_like(w) for w in weights]
    norm = np.sqrt(
        sum(np.sum((t * g) ** 2) for t, g in zip(scales, grads, strict=True))
    )
    return [
        rho * t * t * g / (norm + 1e-12) for t, g in zip(scales, grads, strict=True)
    ]


class _NumpySGD:
    def __init__(self, learning_rates):
        self.learning_rates = learning_rates
        self.t = 0

    def step(self, weights, grads):
        lr = self.learning_rates(self.t)
        self.t += 1
        return [w - lr * g for w, g in zip(weights, grads, strict=True)]


class _NumpyAdam:
    """Keras's Adam: epsilon added to sqrt(v), bias correction in the rate."""

    def __init__(self, lr, beta_1=0.9, beta_2=0.999, epsilon=1e-7):
        self.lr, self.b1, self.b2, self.eps = lr, beta_1, beta_2, epsilon
        self.t, self.m, self.v = 0, None, None

    def step(self, weights, grads):
        if self.m is None:
            self.m = [np.zeros_like(w) for w in weights]
            self.v = [np.zeros_like(w) for w in weights]
        self.t += 1
        alpha = self.lr * np.sqrt(1 - self.b2**self.t) / (1 - self.b1**self.t)
        new = []
        for i, (w, g) in enumerate(zip(weights, grads, strict=True)):
            self.m[i] = self.m[i] + (g - self.m[i]) * (1 - self.b1)
            self.v[i] = self.v[i] + (g * g - self.v[i]) * (1 - self.b2)
            new.append(w - alpha * self.m[i] / (np.sqrt(self.v[i]) + self.eps))
        return new


def _numpy_sam(x, y, updates, inner, rho, adaptive, eta=0.01, l1=0.0, lr=0.0):
    """Full-batch SAM: the inner step at w with the gradient at w + e.

    With l1 > 0, soft-thresholds the kernel by lr * l1 after each update.
    """
    weights = [_initial_kernel().astype(np.float64), np.full(3, 0.1)]
    for _ in range(updates):
        e = _perturbation(weights, _mse_gradients(weights, x, y), rho, adaptive, eta)
        perturbed = [w + d for w, d in zip(weights, e, strict=True)]
        weights = inner.step(weights, _mse_gradients(perturbed, x, y))
        kernel = weights[0]
        weights[0] = np.sign(kernel) * np.maximum(np.abs(kernel) - lr * l1, 0.0)
    return weights


def _assert_weights(model, expected, rtol=1e-5, atol=1e-6):
    kernel, bias = (_np(w) for w in model.layers[0].weights)
    np.testing.assert_allclose(kernel, expected[0], rtol=rtol, atol=atol)
    np.testing.assert_allclose(bias, expected[1], rtol=rtol, atol=atol)


CASES = {
    "sgd": (lambda: keras.optimizers.SGD(0.1), lambda: _NumpySGD(lambda t: 0.1)),
    "adam": (lambda: keras.optimizers.Adam(0.02), lambda: _NumpyAdam(0.02)),
    # The schedule sees the wrapped optimizer's iterations: one per update.
    "sgd_schedule": (
        lambda: keras.optimizers.SGD(
            keras.optimizers.schedules.ExponentialDecay(0.2, 1, 0.7)
        ),
        lambda: _NumpySGD(lambda t: 0.2 * 0.7**t),
    ),
}


@pytest.mark.parametrize("adaptive", [False, True], ids=["SAM", "ASAM"])
@pytest.mark.parametrize("inner", sorted(CASES))
def test_fit_on_a_full_batch_matches_numpy_sam(inner, adaptive):
    keras_optimizer, numpy_optimizer = CASES[inner]
    rho = 0.5 if adaptive else 0.1
    x, y = _data()
    optimizer = SAM(keras_optimizer(), rho=rho, adaptive=adaptive)
    model = _linear_model(_initial_kernel(), optimizer)
    _fit_steps(model, x, y, 8)
    expected = _numpy_sam(x, y, 4, numpy_optimizer(), rho, adaptive)
    _assert_weights(model, expected)
    assert int(_np(optimizer.iterations)) == 8
    assert int(_np(optimizer.inner_optimizer.iterations)) == 4


def test_xla_steps_per_execution_and_epochs_split_the_pairs_alike():
    x, y = _data()
    # torch's trainer runs one step per execution (and compiles with dynamo).
    model = _linear_model(
        _initial_kernel(),
        SAM(keras.optimizers.SGD(0.1)),
        steps_per_execution=1 if BACKEND == "torch" else 3,
        jit_compile=BACKEND != "torch",
    )
    _fit_steps(model, x, y, 6)
    # One step per epoch: each SAM update spans two epochs.
    model.fit(x, y, batch_size=len(x), epochs=4, verbose=0)
    _assert_weights(model, _numpy_sam(x, y, 5, _NumpySGD(lambda t: 0.1), 0.05, False))


def test_the_ascent_step_moves_by_rho_along_the_gradient():
    x, y = _data()
    model = _linear_model(_initial_kernel())
    optimizer = SAM(keras.optimizers.SGD(0.1), rho=0.3)
    weights = [_initial_kernel().astype(np.float64), np.full(3, 0.1)]
    grads = _mse_gradients(weights, x, y)
    optimizer.apply([g.astype("float32") for g in grads], model.trainable_variables)
    e = _perturbation(weights, grads, 0.3, False, 0.0)
    _assert_weights(model, [w + d for w, d in zip(weights, e, strict=True)])
    norm = np.sqrt(sum(np.sum(d**2) for d in e))
    np.testing.assert_allclose(norm, 0.3, rtol=1e-9)
    assert int(_np(optimizer.iterations)) == 1
    assert int(_np(optimizer.inner_optimizer.iterations)) == 0


def test_a_zero_gradient_perturbs_nothing_and_stays_finite():
    model = _linear_model(_initial_kernel())
    variables = model.trainable_variables
    zeros = [keras.ops.zeros(v.shape) for v in variables]
    for adaptive in (False, True):
        optimizer = SAM(keras.optimizers.SGD(0.1), adaptive=adaptive)
        for _ in range(2):  # ascent, then descent
            optimizer.apply(zeros, variables)
            _assert_weights(
                model, [_initial_kernel(), np.full(3, 0.1, "float32")], 0, 0
            )


def test_fit_ending_after_an_ascent_step_restores_the_weights():
    x, y = _data()
    optimizer = SAM(keras.optimizers.SGD(0.1))
    model = _linear_model(_initial_kernel(), optimizer)
    _fit_steps(model, x, y, 3)
    # The third step's perturbation is undone; the next fit starts a pair.
    _assert_weights(model, _numpy_sam(x, y, 1, _NumpySGD(lambda t: 0.1), 0.05, False))
    _fit_steps(model, x, y, 2)
    _assert_weights(model, _numpy_sam(x, y, 2, _NumpySGD(lambda t: 0.1), 0.05, False))
    assert int(_np(optimizer.iterations)) == 5


# --- Composition with Proximal --------------------------------------------


def test_sam_around_proximal_matches_numpy_and_zeroes_weights():
    x, y = _data()
    optimizer = SAM(Proximal(keras.optimizers.SGD(0.2)), rho=0.1)
    model = _linear_model(_initial_kernel(), optimizer, L1(0.3, proximal=True))
    _fit_steps(model, x, y, 6)
    expected = _numpy_sam(x, y, 3, _NumpySGD(lambda t: 0.2), 0.1, False, l1=0.3, lr=0.2)
    _assert_weights(model, expected)
    kernel = _np(model.layers[0].kernel)
    assert np.count_nonzero(expected[0] == 0) > 0
    np.testing.assert_array_equal(kernel == 0, expected[0] == 0)


def test_proximal_around_sam_raises():
    x, y = _data()
    optimizer = Proximal(SAM(keras.optimizers.SGD(0.2)))
    model = _linear_model(_initial_kernel(), optimizer, L1(0.3, proximal=True))
    with pytest.raises(ValueError) as info:
        model.fit(x, y, verbose=0)
    assert str(info.value) == (
        "SAM must wrap the Proximal optimizer that applies proximal "
        "regularizers, not the reverse: use "
        "`SAM(keras_reg.optimizers.Proximal(optimizer))`. Received: "
        f"SAM({optimizer.inner_optimizer.inner_optimizer!r})"
    )


def test_sam_finds_proximal_through_another_wrapper():
    x, y = _data()
    schedule = ConstantSparsity(0.25, frequency=1)
    optimizer = SAM(Pruning(Proximal(keras.optimizers.SGD(0.2)), schedule), rho=0.1)
    model = _linear_model(_initial_kernel(), optimizer, L1(0.3, proximal=True))
    _fit_steps(model, x, y, 4)  # no "SAM must wrap the Proximal" error
    # At least the pruned quarter of the 12 kernel weights is exactly 0.
    assert np.count_nonzero(_np(model.layers[0].kernel) == 0) >= 3


# --- Norm groups (compare's towers) ---------------------------------------


def _two_branch_model(optimizer):
    """Two Dense branches, one per input and output: the sum of the two
    losses gives each branch its own gradient."""
    inputs = [keras.Input((4,)), keras.Input((4,))]
    outputs = [_linear_model(_initial_kernel()).layers[0](i) for i in inputs[:1]]
    outputs.append(_linear_model(_initial_kernel()).layers[0](inputs[1]))
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=optimizer, loss=["mse", "mse"])
    return model


@pytest.mark.parametrize("grouped", [True, False])
def test_norm_groups_perturb_each_group_as_if_trained_alone(grouped):
    (x1, y1), (x2, y2) = _data(seed=1), _data(seed=2)
    optimizer = SAM(keras.optimizers.SGD(0.2), rho=0.1)
    model = _two_branch_model(optimizer)
    branches = [layer for layer in model.layers if layer.weights]
    if grouped:
        optimizer.set_norm_groups([b.trainable_variables for b in branches])
    for _ in range(6):
        model.train_on_batch([x1, x2], [y1, y2])
    for branch, (x, y) in zip(branches, [(x1, y1), (x2, y2)], strict=True):
        alone = _numpy_sam(x, y, 3, _NumpySGD(lambda t: 0.2), 0.1, False)
        kernel = _np(branch.kernel)
        if grouped:
            np.testing.assert_allclose(kernel, alone[0], rtol=1e-5, atol=1e-6)
        else:  # one norm over both branches: each moves by less than rho
            assert not np.allclose(kernel, alone[0], rtol=1e-5, atol=1e-6)
    # Kept as ids: the model's variables do not become optimizer state.
    model_ids = {id(v) for v in model.trainable_variables}
    assert not model_ids & {id(v) for v in optimizer.variables}


@pytest.mark.skipif(BACKEND != "torch", reason="the fast path is torch's only")
@pytest.mark.parametrize("adaptive", [False, True], ids=["SAM", "ASAM"])
def test_fast_path_and_portable_path_give_the_same_weights(adaptive):
    # Two norm groups, one of them with a zero gradient at the first step
    # (its target equals its output): the paths differ only in the order
    # of the squared norms' sums, hence the float32 tolerance.
    (x1, y1), (x2, _) = _data(seed=1), _data(seed=2)
    trained = []
    for context in (contextlib.nullcontext, portable_only):
        optimizer = SAM(keras.optimizers.Adam(0.05), rho=0.3, adaptive=adaptive)
        model = _two_branch_model(optimizer)
        branches = [layer for layer in model.layers if layer.weights]
        optimizer.set_norm_groups([b.trainable_variables for b in branches[:1]])
        y2 = _np(branches[1](x2))
        with context():
            for _ in range(6):
                model.train_on_batch([x1, x2], [y1, y2])
        trained.append([_np(w) for w in model.weights])
    for fast, portable in zip(*trained, strict=True):
        np.testing.assert_allclose(fast, portable, rtol=1e-6, atol=1e-7)
    assert not np.allclose(trained[0][0], _initial_kernel())  # it trained


# --- Mixed precision ------------------------------------------------------


def test_mixed_float16_trains_under_loss_scaling():
    keras.config.set_dtype_policy("mixed_float16")
    try:
        x, y = _data()
        optimizer = SAM(keras.optimizers.SGD(0.1))
        model = _linear_model(_initial_kernel(), optimizer)
        assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
        _fit_steps(model, x, y, 8)
        # float16 keeps 11 significant bits (relative rounding 4.9e-4); the
        # gradients carry that relative error (they are below 2 here) into 8
        # steps scaled by lr 0.1 or rho 0.05: under 1e-3 (5e-5 observed).
        expected = _numpy_sam(x, y, 4, _NumpySGD(lambda t: 0.1), 0.05, False)
        _assert_weights(model, expected, rtol=0, atol=1e-3)
        assert int(_np(optimizer.inner_optimizer.iterations)) == 4
    finally:
        keras.config.set_dtype_policy("float32")


def _apply(optimizer, grads, variables):
    """`optimizer.apply`; on JAX statelessly, as `fit` does (Keras's
    LossScaleOptimizer.apply itself fails outside a compiled step there)."""
    if BACKEND != "jax":
        optimizer.apply(grads, variables)
        return
    trainable, state = optimizer.stateless_apply(
        [v.value for v in optimizer.variables], grads, [v.value for v in variables]
    )
    pairs = zip(variables + optimizer.variables, trainable + state, strict=True)
    for variable, value in pairs:
        variable.assign(value)


def test_a_step_skipped_for_overflow_leaves_the_pair_where_it_was():
    model = _linear_model(_initial_kernel())
    variables = model.trainable_variables
    sam = SAM(keras.optimizers.SGD(0.1))
    optimizer = keras.optimizers.LossScaleOptimizer(sam)
    optimizer.build(variables)
    overflow = [keras.ops.full(v.shape, float("inf")) for v in variables]
    ones = [keras.ops.ones(v.shape) for v in variables]
    before = [_initial_kernel(), np.full(3, 0.1, "float32")]
    _apply(optimizer, overflow, variables)
    _assert_weights(model, before, 0, 0)
    assert int(_np(sam.iterations)) == 0
    _apply(optimizer, ones, variables)  # the ascent step, not the descent step
    assert int(_np(sam.iterations)) == 1
    assert int(_np(sam.inner_optimizer.iterations)) == 0
    e = 0.05 / np.sqrt(15)  # rho * g / ||g||, 15 gradient entries of 1
    _assert_weights(model, [w + e for w in before])


# --- Distribution ---------------------------------------------------------


@pytest.mark.skipif(BACKEND != "jax", reason="keras.distribution on JAX")
def test_jax_data_parallel_matches_one_device():
    result = run_python(
        """
        import json
        import keras
        import numpy as np
        import keras_reg

        x = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
        y = x.sum(axis=1, keepdims=True)

        def train():
            model = keras.Sequential([
                keras.Input((4,)), keras.layers.Dense(1, kernel_initializer="ones")
            ])
            optimizer = keras_reg.optimizers.SAM(keras.optimizers.Adam(0.1))
            model.compile(optimizer=optimizer, loss="mse")
            model.fit(x, y, batch_size=32, epochs=3, verbose=0, shuffle=False)
            return model.get_weights()[0]

        keras.distribution.set_distribution(keras.distribution.DataParallel())
        distributed = train()
        keras.distribution.set_distribution(None)
        print(json.dumps(float(np.abs(distributed - train()).max())))
        """,
        env={
            "KERAS_BACKEND": "jax",
            "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
        },
    )
    assert result.returncode == 0, result.stderr[-3000:]
    # Each device's half-batch gradients are summed in a different order.
    assert float(result.stdout.strip().splitlines()[-1]) < 1e-6


@pytest.mark.skipif(BACKEND != "tensorflow", reason="tf.distribute")
def test_tf_mirrored_strategy_raises():
    result = run_python(
        """
        import tensorflow as tf

        cpus = tf.config.list_physical_devices("CPU")
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2
        )
        import keras
        import numpy as np
        import keras_reg

        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        with strategy.scope():
            model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
            model.compile(optimizer=keras_reg.optimizers.SAM("sgd"), loss="mse")
        try:
            model.fit(np.ones((8, 4)), np.ones((8, 1)), verbose=0)
        except ValueError as error:
            print(error)
        """,
        env={"KERAS_BACKEND": "tensorflow"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == (
        "SAM does not support tf.distribute strategies with more than one "
        "replica. Train on one device, or with keras.distribution on JAX."
    )


# --- Saving ---------------------------------------------------------------


def test_model_saved_mid_update_resumes_identically(tmp_path):
    x, y = _data()
    model = _linear_model(_initial_kernel(), SAM(keras.optimizers.Adam(0.05)))
    _fit_steps(model, x, y, 4)
    # An ascent step by hand: the file holds w + e, and w to restore.
    weights = [_np(v).astype(np.float64) for v in model.trainable_variables]
    grads = [g.astype("float32") for g in _mse_gradients(weights, x, y)]
    model.optimizer.apply(grads, model.trainable_variables)
    path = os.path.join(str(tmp_path), "sam.keras")
    model.save(path)
    restored = keras.saving.load_model(path, safe_mode=True)
    assert type(restored.optimizer) is SAM
    assert isinstance(restored.optimizer.inner_optimizer, keras.optimizers.Adam)
    assert restored.optimizer.get_config() == model.optimizer.get_config()
    assert len(restored.optimizer.variables) == len(model.optimizer.variables)
    for mine, loaded in zip(
        model.optimizer.variables, restored.optimizer.variables, strict=True
    ):
        np.testing.assert_array_equal(_np(loaded), _np(mine))
    assert int(_np(restored.optimizer.iterations)) == 5
    for trained in (model, restored):
        _fit_steps(trained, x, y, 3)
    for mine, loaded in zip(model.weights, restored.weights, strict=True):
        np.testing.assert_allclose(_np(loaded), _np(mine), rtol=1e-6, atol=1e-7)


def test_config_and_json_round_trips():
    optimizer = SAM(
        keras.optimizers.Adam(0.01, beta_1=0.8), rho=0.5, adaptive=True, eta=0.02
    )
    assert optimizer.get_config()["name"] == "sam"
    for clone in (
        assert_config_round_trip(optimizer),
        assert_json_round_trip(optimizer),
    ):
        assert isinstance(clone.inner_optimizer, keras.optimizers.Adam)
        assert clone.inner_optimizer.beta_1 == 0.8
        assert (clone.rho, clone.adaptive, clone.eta) == (0.5, True, 0.02)
    nested = assert_json_round_trip(SAM(Proximal("sgd"), name="outer"))
    assert isinstance(nested.inner_optimizer, Proximal)
    assert keras.saving.get_registered_name(SAM) == "keras_reg>SAM"


# --- Arguments and delegation ---------------------------------------------


def test_learning_rate_is_the_inner_optimizers():
    inner = keras.optimizers.SGD(0.25)
    optimizer = SAM(inner)
    np.testing.assert_allclose(_np(optimizer.learning_rate), 0.25)
    optimizer.learning_rate = 0.5
    np.testing.assert_allclose(_np(inner.learning_rate), 0.5)
    assert isinstance(SAM("adam").inner_optimizer, keras.optimizers.Adam)


def _message(name, expected, value):
    return (
        f"Invalid value received for argument `{name}`. Expected {expected}. "
        f"Received: {name}={value!r}"
    )


@pytest.mark.parametrize(
    "name, value, expected",
    [
        ("rho", 0.0, "a float > 0"),
        ("rho", -0.1, "a float > 0"),
        ("rho", True, "a float > 0"),
        ("rho", float("nan"), "a float > 0"),
        ("rho", "0.05", "a float > 0"),
        ("adaptive", 1, "a bool"),
        ("eta", -0.01, "a float >= 0"),
        ("eta", float("inf"), "a float >= 0"),
        ("name", "", "a non-empty string"),
    ],
)
def test_invalid_arguments_raise(name, value, expected):
    with pytest.raises(ValueError) as info:
        SAM("sgd", **{name: value})
    assert str(info.value) == _message(name, expected, value)


def test_invalid_optimizer_raises():
    expected = "a keras.optimizers.Optimizer instance or an optimizer name"
    for value in ("no_such_optimizer", 0.1, None):
        with pytest.raises(ValueError) as info:
            SAM(value)
        assert str(info.value) == _message("optimizer", expected, value)
    for value in (SAM("sgd"), keras.optimizers.LossScaleOptimizer(SAM("sgd"))):
        with pytest.raises(ValueError) as info:
            SAM(value)
        assert str(info.value) == _message(
            "optimizer", "an optimizer other than SAM and LossScaleOptimizer", value
        )
    accumulating = keras.optimizers.SGD(gradient_accumulation_steps=2)
    with pytest.raises(ValueError) as info:
        SAM(accumulating)
    assert str(info.value) == _message(
        "optimizer", "an optimizer without gradient_accumulation_steps", accumulating
    )
    with pytest.raises(ValueError) as info:
        SAM("sgd", clipnorm=1.0)
    assert str(info.value) == (
        "SAM takes no base optimizer arguments; set them on the wrapped "
        "optimizer. Received: ['clipnorm']"
    )


def test_module_docstring_examples_run():
    import doctest

    failures, _ = doctest.testmod(sam_module, verbose=False)
    assert failures == 0
