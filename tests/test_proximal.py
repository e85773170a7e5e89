"""Tests for keras_reg.optimizers.Proximal and proximal regularizers."""

import gc
import os

import keras
import numpy as np
import pytest
from sklearn.linear_model import Lasso

from keras_reg._backends import portable_only
from keras_reg.optimizers import SAM, Proximal
from keras_reg.optimizers import proximal as proximal_module
from keras_reg.regularizers import L1, ElasticNet, GroupLasso
from tests.helpers import assert_config_round_trip, assert_json_round_trip

BACKEND = keras.backend.backend()


def _np(x):
    return keras.ops.convert_to_numpy(x)


def _data(n=16, features=4, units=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, features)).astype("float32")
    y = rng.normal(size=(n, units)).astype("float32")
    return x, y


def _initial_kernel(features=4, units=3):
    # Magnitudes spread over [0.01, 0.6] so that, with the thresholds used
    # below, some weights cross zero and none sits near the threshold.
    values = np.linspace(0.01, 0.6, features * units).reshape(features, units)
    signs = np.where(np.arange(features * units).reshape(features, units) % 2, 1, -1)
    return (values * signs).astype("float32")


def _linear_model(kernel, regularizer, optimizer=None, **compile_kwargs):
    model = keras.Sequential(
        [
            keras.Input((kernel.shape[0],)),
            keras.layers.Dense(
                kernel.shape[1],
                kernel_initializer=keras.initializers.Constant(kernel),
                kernel_regularizer=regularizer,
            ),
        ]
    )
    if optimizer is not None:
        model.compile(optimizer=optimizer, loss="mse", **compile_kwargs)
    return model


def _mse_gradients(kernel, bias, x, y):
    """Gradients of mean((x @ kernel + bias - y) ** 2) over all entries."""
    x64, kernel64 = x.astype(np.float64), kernel.astype(np.float64)
    residual = x64 @ kernel64 + bias - y
    scale = 2.0 / residual.size
    return scale * x64.T @ residual, scale * residual.sum(axis=0)


def _numpy_soft_threshold(w, threshold):
    return np.sign(w) * np.maximum(np.abs(w) - threshold, 0.0)


def _numpy_proximal_sgd(kernel, x, y, learning_rates, l1=0.0, l2=0.0, bias=None):
    """Full-batch SGD on mse + l2 * ||w||^2, then soft-threshold by lr * l1."""
    kernel = kernel.astype(np.float64)
    bias = np.zeros(kernel.shape[1]) if bias is None else bias
    for lr in learning_rates:
        grad_kernel, grad_bias = _mse_gradients(kernel, bias, x, y)
        kernel = kernel - lr * (grad_kernel + 2.0 * l2 * kernel)
        bias = bias - lr * grad_bias
        kernel = _numpy_soft_threshold(kernel, lr * l1)
    return kernel, bias


def _assert_same_weights_and_zeros(model, kernel, bias):
    ours = _np(model.layers[0].kernel)
    np.testing.assert_allclose(ours, kernel, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(ours == 0, kernel == 0)
    np.testing.assert_allclose(_np(model.layers[0].bias), bias, rtol=1e-5, atol=1e-6)


# --- One step against NumPy -----------------------------------------------


@pytest.mark.parametrize(
    "regularizer, l1, l2",
    [
        (L1(0.5, proximal=True), 0.5, 0.0),
        (ElasticNet(l1=0.5, l2=0.3, proximal=True), 0.5, 0.3),
    ],
    ids=["L1", "ElasticNet"],
)
def test_one_sgd_step_soft_thresholds_like_numpy(regularizer, l1, l2):
    kernel = _initial_kernel()
    x, y = _data()
    model = _linear_model(kernel, regularizer, Proximal(keras.optimizers.SGD(0.2)))
    model.fit(x, y, batch_size=len(x), epochs=1, verbose=0, shuffle=False)
    expected_kernel, expected_bias = _numpy_proximal_sgd(kernel, x, y, [0.2], l1, l2)
    assert 0 < np.count_nonzero(expected_kernel == 0) < kernel.size
    _assert_same_weights_and_zeros(model, expected_kernel, expected_bias)


def test_one_sgd_step_block_soft_thresholds_group_lasso_like_numpy():
    kernel = _initial_kernel(features=4, units=3)
    kernel[:, 0] *= 0.1  # a weak unit whose whole column will be zeroed
    x, y = _data(seed=2)
    lr, factor = 0.1, 0.3
    model = _linear_model(
        kernel,
        GroupLasso(factor, axis=0, proximal=True),
        Proximal(keras.optimizers.SGD(lr)),
    )
    model.fit(x, y, batch_size=len(x), epochs=1, verbose=0, shuffle=False)

    grad_kernel, grad_bias = _mse_gradients(kernel, 0.0, x, y)
    stepped = kernel.astype(np.float64) - lr * grad_kernel
    norms = np.linalg.norm(stepped, axis=0)
    # Each group (column) holds 4 weights: threshold lr * factor * sqrt(4).
    shrink = np.maximum(1.0 - lr * factor * np.sqrt(4.0) / norms, 0.0)
    expected_kernel = stepped * shrink
    assert shrink[0] == 0.0 and np.all(shrink[1:] > 0.1)
    _assert_same_weights_and_zeros(model, expected_kernel, -lr * grad_bias)


def test_group_lasso_proximal_step_zeroes_whole_conv_filters():
    rng = np.random.default_rng(0)
    kernel = rng.normal(size=(3, 3, 2, 4)).astype("float32")
    kernel[..., 1] *= 0.01
    regularizer = GroupLasso(0.05, axis=(0, 1, 2), proximal=True)
    result = _np(regularizer.proximal_step(kernel, 0.5))
    norms = np.sqrt(np.square(kernel.astype(np.float64)).sum(axis=(0, 1, 2)))
    shrink = np.maximum(1.0 - 0.5 * 0.05 * np.sqrt(18.0) / norms, 0.0)
    np.testing.assert_allclose(result, kernel * shrink, rtol=1e-6)
    np.testing.assert_array_equal(result[..., 1], 0.0)
    assert np.all(result[..., [0, 2, 3]] != 0)


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
@pytest.mark.parametrize("learning_rate", [0.0, 0.5])
def test_group_lasso_keeps_an_all_zero_group_zero_in_every_dtype(dtype, learning_rate):
    # A zero learning rate (a warm-up from 0) makes the threshold 0 as well:
    # the all-zero group's 0 / 0 must not become NaN (float16 has no tiny
    # positive number to divide by instead).
    kernel = np.array([[0.0, 1.0], [0.0, -2.0]], "float32")
    x = keras.ops.cast(kernel, dtype)
    result = _np(
        keras.ops.cast(GroupLasso(0.1).proximal_step(x, learning_rate), "float32")
    )
    threshold = learning_rate * 0.1 * np.sqrt(2.0)
    expected = kernel * np.array([0.0, 1.0 - threshold / np.sqrt(5.0)])
    np.testing.assert_allclose(result, expected, rtol=1e-2)
    assert np.all(result[:, 0] == 0.0)


@pytest.mark.skipif(BACKEND != "torch", reason="the fast path is torch's only")
def test_torch_soft_threshold_matches_the_portable_path():
    rng = np.random.default_rng(0)
    x = rng.normal(scale=0.01, size=(64, 32)).astype("float32")
    steps = []
    for regularizer in (L1(0.7, proximal=True), ElasticNet(0.7, 0.1, True)):
        steps.append(_np(regularizer.proximal_step(x, np.float32(0.01))))
    with portable_only():
        for index, regularizer in enumerate(
            (L1(0.7, proximal=True), ElasticNet(0.7, 0.1, True))
        ):
            portable = _np(regularizer.proximal_step(x, np.float32(0.01)))
            np.testing.assert_array_equal(steps[index], portable)
            assert 0 < np.count_nonzero(portable == 0) < portable.size


def test_reported_loss_includes_the_l1_value():
    kernel = _initial_kernel()
    x, y = _data()
    model = _linear_model(
        kernel, L1(0.5, proximal=True), Proximal(keras.optimizers.SGD(0.2))
    )
    history = model.fit(x, y, batch_size=len(x), epochs=1, verbose=0)
    mse = np.mean(np.square(x.astype(np.float64) @ kernel - y))
    expected = mse + 0.5 * np.abs(kernel.astype(np.float64)).sum()
    np.testing.assert_allclose(history.history["loss"][0], expected, rtol=1e-5)


def test_only_variables_with_proximal_regularizers_are_thresholded():
    x, y = _data()
    kernel = _initial_kernel(4, 3)
    second = _initial_kernel(3, 3)[::-1].copy()

    def one_step(first_regularizer, optimizer):
        model = keras.Sequential(
            [
                keras.Input((4,)),
                keras.layers.Dense(
                    3,
                    kernel_initializer=keras.initializers.Constant(kernel),
                    kernel_regularizer=first_regularizer,
                ),
                keras.layers.Dense(
                    3,
                    kernel_initializer=keras.initializers.Constant(second),
                    kernel_regularizer=L1(0.1),
                ),
            ]
        )
        model.compile(optimizer=optimizer, loss="mse")
        model.fit(x, y, batch_size=len(x), epochs=1, verbose=0)
        return [_np(w) for w in model.weights]

    # One step starts from the same weights, and the proximal L1 adds no
    # gradient: the only difference is the threshold on the first kernel.
    proximal = one_step(L1(0.5, proximal=True), Proximal(keras.optimizers.SGD(0.2)))
    plain = one_step(None, keras.optimizers.SGD(0.2))
    np.testing.assert_allclose(
        proximal[0], _numpy_soft_threshold(plain[0], 0.2 * 0.5), atol=1e-7
    )
    assert np.count_nonzero(proximal[0] == 0) > 0
    for mine, reference in zip(proximal[1:], plain[1:], strict=True):
        # XLA may fuse the two graphs differently: allow float32 rounding.
        np.testing.assert_allclose(mine, reference, rtol=1e-6, atol=1e-8)


# --- Schedules, jit_compile, steps_per_execution --------------------------


@pytest.mark.parametrize(
    "jit_compile, steps_per_execution",
    [
        (False, 1),
        pytest.param(
            True,
            1,
            marks=pytest.mark.skipif(
                BACKEND == "torch",
                reason="jit_compile=True on torch means torch.compile, which "
                "took 80 s for this test on a 2-core CPU (it passes)",
            ),
        ),
        pytest.param(
            False,
            3,
            marks=pytest.mark.skipif(
                BACKEND == "torch",
                reason="Keras's torch trainer requires steps_per_execution=1",
            ),
        ),
    ],
)
def test_schedule_uses_the_current_learning_rate(jit_compile, steps_per_execution):
    kernel = _initial_kernel()
    x, y = _data()
    schedule = keras.optimizers.schedules.ExponentialDecay(
        0.3, decay_steps=1, decay_rate=0.5
    )
    model = _linear_model(
        kernel,
        L1(0.4, proximal=True),
        Proximal(keras.optimizers.SGD(schedule)),
        jit_compile=jit_compile,
        steps_per_execution=steps_per_execution,
    )
    # Six identical full batches: six steps with lr 0.3 * 0.5**t.
    model.fit(
        np.tile(x, (6, 1)),
        np.tile(y, (6, 1)),
        batch_size=len(x),
        epochs=1,
        verbose=0,
        shuffle=False,
    )
    rates = [0.3 * 0.5**step for step in range(6)]
    expected_kernel, expected_bias = _numpy_proximal_sgd(kernel, x, y, rates, l1=0.4)
    assert 0 < np.count_nonzero(expected_kernel == 0) < kernel.size
    _assert_same_weights_and_zeros(model, expected_kernel, expected_bias)
    assert int(_np(model.optimizer.iterations)) == 6


# --- Lasso equivalence ----------------------------------------------------


def test_converges_to_sklearn_lasso_with_the_same_zero_pattern():
    # sklearn's Lasso minimizes (1/(2n)) ||y - Xw - b||^2 + alpha ||w||_1.
    # Keras's mse loss plus L1 is (1/n) ||y - Xw - b||^2 + l1 ||w||_1, which is
    # twice sklearn's objective when l1 = 2 * alpha: same minimizer.
    # Full-batch SGD followed by soft-thresholding is ISTA, which converges
    # to that minimizer when lr < 1/L, L = 2 * max eigenvalue of X^T X / n.
    rng = np.random.default_rng(0)
    n, p = 200, 8
    x = rng.normal(size=(n, p))
    true_w = np.array([2.0, -1.5, 0.0, 0.0, 1.0, 0.0, 0.0, 0.5])
    y = x @ true_w + 0.7 + 0.3 * rng.normal(size=n)
    alpha = 0.2
    lasso = Lasso(alpha=alpha, tol=1e-12, max_iter=100_000).fit(x, y)
    assert 0 < np.count_nonzero(lasso.coef_ == 0) < p

    lipschitz = 2.0 * np.linalg.eigvalsh(x.T @ x / n).max()
    lr = 0.9 / lipschitz
    model = keras.Sequential(
        [
            keras.Input((p,)),
            keras.layers.Dense(
                1, kernel_initializer="zeros", kernel_regularizer=L1(2 * alpha, True)
            ),
        ]
    )
    model.compile(optimizer=Proximal(keras.optimizers.SGD(lr)), loss="mse")
    # 400 identical full batches per epoch: 800 ISTA steps. The problem is
    # strongly convex (X has full column rank), so ISTA converges linearly.
    model.fit(
        np.tile(x, (400, 1)).astype("float32"),
        np.tile(y[:, None], (400, 1)).astype("float32"),
        batch_size=n,
        epochs=2,
        verbose=0,
        shuffle=False,
    )
    coef = _np(model.layers[0].kernel)[:, 0]
    np.testing.assert_allclose(coef, lasso.coef_, atol=2e-4)
    np.testing.assert_array_equal(coef == 0, lasso.coef_ == 0)
    np.testing.assert_allclose(
        _np(model.layers[0].bias)[0], lasso.intercept_, atol=2e-4
    )


# --- Error without the wrapper --------------------------------------------


def _expected_missing_wrapper_message(regularizer):
    return (
        f"{regularizer!r} applies its L1 part as a proximal step after each "
        "optimizer update, and only `keras_reg.optimizers.Proximal` does that. "
        "Without it the L1 part would silently have no effect. Wrap the "
        "optimizer: `model.compile(optimizer=keras_reg.optimizers.Proximal("
        '"sgd"), ...)`. In a custom training loop, and in `fit` under '
        "mixed_float16 on TensorFlow without a distribution strategy, call "
        "`optimizer.build(model.trainable_variables)` before computing "
        "gradients."
    )


@pytest.mark.parametrize(
    "regularizer",
    [
        L1(0.1, proximal=True),
        ElasticNet(0.1, 0.1, proximal=True),
        GroupLasso(0.1, axis=1, proximal=True),
    ],
    ids=["L1", "ElasticNet", "GroupLasso"],
)
def test_fit_without_the_wrapper_raises_at_the_first_step(regularizer):
    x, y = _data()
    model = _linear_model(_initial_kernel(), regularizer, "sgd")
    kernel_before = _np(model.layers[0].kernel)
    with pytest.raises(ValueError) as info:
        model.fit(x, y, epochs=1, verbose=0)
    assert str(info.value) == _expected_missing_wrapper_message(regularizer)
    if BACKEND != "jax":
        # JAX's trainer leaves model variables detached after a failed fit.
        np.testing.assert_array_equal(_np(model.layers[0].kernel), kernel_before)


def test_recompiling_with_a_plain_optimizer_raises():
    x, y = _data()
    regularizer = L1(0.1, proximal=True)
    model = _linear_model(_initial_kernel(), regularizer, Proximal("sgd"))
    model.fit(x, y, epochs=1, verbose=0)
    # The Proximal optimizer claimed the regularizer; the model that trains
    # now uses plain SGD, and that is what counts.
    model.compile(optimizer="sgd", loss="mse")
    with pytest.raises(ValueError) as info:
        model.fit(x, y, epochs=1, verbose=0)
    assert str(info.value) == _expected_missing_wrapper_message(regularizer)


def test_a_wrapper_whose_build_failed_vouches_for_nothing():
    x, y = _data()
    regularizer = L1(0.1, proximal=True)
    # SAM refuses to be wrapped by Proximal: this Proximal is never built.
    failed = Proximal(SAM("sgd"))
    model = _linear_model(_initial_kernel(), regularizer, failed)
    with pytest.raises(ValueError, match="SAM must wrap the Proximal"):
        model.fit(x, y, epochs=1, verbose=0)
    model.compile(optimizer="sgd", loss="mse")
    with pytest.raises(ValueError) as info:
        model.fit(x, y, epochs=1, verbose=0)
    assert str(info.value) == _expected_missing_wrapper_message(regularizer)


@pytest.mark.parametrize("built_by_hand", [True, False])
def test_a_step_that_raised_before_its_update_vouches_for_nothing(built_by_hand):
    # The inner optimizer raises in its update: the Proximal's step began
    # (scale_loss) and never finished (apply). Built before or within the
    # failed step, it must not vouch for the next model's plain SGD.
    class Failing(keras.optimizers.SGD):
        def apply(self, grads, trainable_variables=None):
            raise RuntimeError("update failed")

    x, y = _data()
    regularizer = L1(0.1, proximal=True)
    wrapper = Proximal(Failing())
    model = _linear_model(_initial_kernel(), regularizer, wrapper)
    if built_by_hand:
        wrapper.build(model.trainable_variables)
    with pytest.raises(RuntimeError, match="update failed"):
        model.fit(x, y, epochs=1, verbose=0)
    # A new model (JAX's trainer leaves the failed one's variables detached)
    # with the same regularizer.
    model = _linear_model(_initial_kernel(), regularizer, "sgd")
    with pytest.raises(ValueError) as info:
        model.fit(x, y, epochs=1, verbose=0)
    assert str(info.value) == _expected_missing_wrapper_message(regularizer)


def test_evaluate_and_predict_without_the_wrapper_work():
    x, y = _data()
    kernel = _initial_kernel()
    model = _linear_model(kernel, L1(0.5, proximal=True), "sgd")
    loss = model.evaluate(x, y, verbose=0)
    mse = np.mean(np.square(x.astype(np.float64) @ kernel - y))
    np.testing.assert_allclose(loss, mse + 0.5 * np.abs(kernel).sum(), rtol=1e-5)
    assert model.predict(x, verbose=0).shape == (16, 3)


def test_fitting_again_with_the_same_wrapper_works():
    # The second fit has a new batch shape: TensorFlow and JAX trace the step
    # again, and torch takes every step's gradient anew.
    kernel = _initial_kernel()
    x, y = _data()
    model = _linear_model(kernel, L1(0.5, True), Proximal(keras.optimizers.SGD(0.2)))
    model.fit(x, y, batch_size=len(x), epochs=1, verbose=0, shuffle=False)
    model.fit(x[:8], y[:8], batch_size=8, epochs=1, verbose=0, shuffle=False)
    first_kernel, first_bias = _numpy_proximal_sgd(kernel, x, y, [0.2], l1=0.5)
    expected_kernel, expected_bias = _numpy_proximal_sgd(
        first_kernel, x[:8], y[:8], [0.2], l1=0.5, bias=first_bias
    )
    _assert_same_weights_and_zeros(model, expected_kernel, expected_bias)


def test_recompiling_with_the_same_wrapper_works():
    x, y = _data()
    model = _linear_model(_initial_kernel(), L1(0.1, True), Proximal("sgd"))
    model.fit(x, y, epochs=1, verbose=0)
    model.compile(optimizer=model.optimizer, loss="mae")
    model.fit(x, y, epochs=1, verbose=0)


def test_the_wrapper_vouches_from_build_then_within_the_steps_fit_drives():
    regularizer = L1(0.1, proximal=True)
    layer = keras.layers.Dense(3, kernel_regularizer=regularizer)
    layer.build((None, 4))
    variables = layer.trainable_variables
    grads = [keras.ops.zeros(v.shape) for v in variables]
    optimizer = Proximal("sgd")
    assert not proximal_module.vouched_for(regularizer)
    optimizer.build(variables)
    assert proximal_module.vouched_for(regularizer)  # a custom loop's steps
    optimizer.scale_loss(1.0)  # what fit calls before each gradient
    assert proximal_module.vouched_for(regularizer)
    optimizer.apply(grads, variables)
    assert not proximal_module.vouched_for(regularizer)  # between fit's steps
    optimizer.build(variables)
    assert proximal_module.vouched_for(regularizer)
    # Claims never keep an optimizer alive.
    del optimizer
    gc.collect()
    assert not proximal_module.vouched_for(regularizer)


def _custom_loop_step(model, optimizer, x, y):
    """One step of the custom training loop of each backend's Keras guide."""

    def loss_fn(y_pred, losses):
        squares = keras.ops.square(keras.ops.subtract(y_pred, y))
        return keras.ops.add(keras.ops.mean(squares), keras.ops.sum(losses))

    variables = model.trainable_variables
    if BACKEND == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            loss = loss_fn(model(x, training=True), model.losses)
        grads = tape.gradient(loss, variables)
    elif BACKEND == "torch":
        model.zero_grad()
        loss_fn(model(x, training=True), model.losses).backward()
        grads = [variable.value.grad for variable in variables]
    else:
        import jax

        def stateless_loss(trainable):
            y_pred, _, losses = model.stateless_call(
                trainable,
                [v.value for v in model.non_trainable_variables],
                x,
                return_losses=True,
            )
            return loss_fn(y_pred, losses)

        grads = jax.grad(stateless_loss)([v.value for v in variables])
    optimizer.apply(grads, variables)


def test_custom_loop_with_the_wrapper_built_first_matches_numpy():
    kernel = _initial_kernel()
    x, y = _data()
    model = _linear_model(kernel, L1(0.5, proximal=True))
    optimizer = Proximal(keras.optimizers.SGD(0.2))
    optimizer.build(model.trainable_variables)
    _custom_loop_step(model, optimizer, x, y)
    expected_kernel, expected_bias = _numpy_proximal_sgd(kernel, x, y, [0.2], 0.5)
    _assert_same_weights_and_zeros(model, expected_kernel, expected_bias)


@pytest.mark.parametrize("optimizer", ["plain", "unbuilt wrapper"])
def test_custom_loop_without_a_built_wrapper_raises(optimizer):
    x, y = _data()
    regularizer = ElasticNet(0.1, 0.1, proximal=True)
    model = _linear_model(_initial_kernel(), regularizer)
    kernel_before = _np(model.layers[0].kernel)
    optimizer = Proximal("sgd") if optimizer == "unbuilt wrapper" else "sgd"
    with pytest.raises(ValueError) as info:
        _custom_loop_step(model, keras.optimizers.get(optimizer), x, y)
    assert str(info.value) == _expected_missing_wrapper_message(regularizer)
    np.testing.assert_array_equal(_np(model.layers[0].kernel), kernel_before)


def test_custom_loop_after_fit_builds_the_wrapper_again():
    # fit made the claims per step; `build`, as the message says, makes them
    # standing again.
    x, y = _data()
    regularizer = L1(0.1, proximal=True)
    model = _linear_model(_initial_kernel(), regularizer, Proximal("sgd"))
    model.fit(x, y, epochs=1, verbose=0)
    with pytest.raises(ValueError) as info:
        _custom_loop_step(model, model.optimizer, x, y)
    assert str(info.value) == _expected_missing_wrapper_message(regularizer)
    model.optimizer.build(model.trainable_variables)
    _custom_loop_step(model, model.optimizer, x, y)


def test_mixed_precision_loss_scaling_keeps_the_wrapper():
    # compile() wraps the optimizer in a LossScaleOptimizer under
    # mixed_float16; the proximal step must still run.
    keras.config.set_dtype_policy("mixed_float16")
    try:
        x, y = _data()
        model = _linear_model(
            _initial_kernel(), L1(0.5, proximal=True), Proximal("sgd")
        )
        assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
        if BACKEND == "tensorflow":
            # TensorFlow's fit without a distribution strategy builds the
            # optimizer after the first gradient, and the LossScaleOptimizer
            # scales the loss itself: nothing vouches for the L1 part yet.
            kernel_before = _np(model.layers[0].kernel)
            with pytest.raises(ValueError) as info:
                model.fit(x, y, batch_size=len(x), epochs=2, verbose=0)
            assert str(info.value) == _expected_missing_wrapper_message(
                model.layers[0].kernel_regularizer
            )
            np.testing.assert_array_equal(_np(model.layers[0].kernel), kernel_before)
            model.optimizer.build(model.trainable_variables)
        model.fit(x, y, batch_size=len(x), epochs=2, verbose=0)
        kernel = _np(model.layers[0].kernel)
        assert np.all(np.isfinite(kernel)) and np.count_nonzero(kernel == 0) > 0
    finally:
        keras.config.set_dtype_policy("float32")


# --- Saving ---------------------------------------------------------------


def test_model_with_the_wrapper_saves_and_resumes_identically(tmp_path):
    x, y = _data()
    model = _linear_model(
        _initial_kernel(),
        L1(0.05, proximal=True),
        Proximal(keras.optimizers.Adam(0.05)),
    )
    model.fit(x, y, batch_size=8, epochs=2, verbose=0, shuffle=False)
    path = os.path.join(str(tmp_path), "proximal.keras")
    model.save(path)
    restored = keras.saving.load_model(path, safe_mode=True)
    assert type(restored.optimizer) is Proximal
    assert isinstance(restored.optimizer.inner_optimizer, keras.optimizers.Adam)
    assert restored.layers[0].kernel_regularizer.get_config() == {
        "l1": 0.05,
        "proximal": True,
    }
    assert len(restored.optimizer.variables) == len(model.optimizer.variables)
    for mine, loaded in zip(
        model.optimizer.variables, restored.optimizer.variables, strict=True
    ):
        np.testing.assert_array_equal(_np(loaded), _np(mine))
    assert int(_np(restored.optimizer.iterations)) == 4
    for trained in (model, restored):
        trained.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False)
    for mine, loaded in zip(model.weights, restored.weights, strict=True):
        np.testing.assert_allclose(_np(loaded), _np(mine), rtol=1e-6, atol=1e-7)


def test_config_and_json_round_trips():
    optimizer = Proximal(keras.optimizers.Adam(0.01, beta_1=0.8), name="prox")
    assert optimizer.get_config()["name"] == "prox"
    for clone in (
        assert_config_round_trip(optimizer),
        assert_json_round_trip(optimizer),
    ):
        assert isinstance(clone.inner_optimizer, keras.optimizers.Adam)
        assert clone.inner_optimizer.beta_1 == 0.8
    assert keras.saving.get_registered_name(Proximal) == "keras_reg>Proximal"


# --- Arguments and delegation ---------------------------------------------


def test_optimizer_name_string_is_resolved():
    optimizer = Proximal("adam")
    assert isinstance(optimizer.inner_optimizer, keras.optimizers.Adam)
    assert isinstance(optimizer, keras.optimizers.Optimizer)


def test_learning_rate_and_iterations_are_the_inner_optimizers():
    inner = keras.optimizers.SGD(0.25)
    optimizer = Proximal(inner)
    np.testing.assert_allclose(_np(optimizer.learning_rate), 0.25)
    optimizer.learning_rate = 0.5
    np.testing.assert_allclose(_np(inner.learning_rate), 0.5)
    assert optimizer.iterations is inner.iterations


def _message(name, expected, value):
    return (
        f"Invalid value received for argument `{name}`. Expected {expected}. "
        f"Received: {name}={value!r}"
    )


def test_invalid_optimizer_raises():
    expected = "a keras.optimizers.Optimizer instance or an optimizer name"
    for value in ("no_such_optimizer", 0.1, None):
        with pytest.raises(ValueError) as info:
            Proximal(value)
        assert str(info.value) == _message("optimizer", expected, value)
    # A LossScaleOptimizer inside skips overflowing steps that the
    # soft-thresholding would still take.
    for value in (
        Proximal("sgd"),
        keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(0.1)),
    ):
        with pytest.raises(ValueError) as info:
            Proximal(value)
        assert str(info.value) == _message(
            "optimizer",
            "an optimizer other than Proximal and LossScaleOptimizer",
            value,
        )
    accumulating = keras.optimizers.SGD(gradient_accumulation_steps=2)
    with pytest.raises(ValueError) as info:
        Proximal(accumulating)
    assert str(info.value) == _message(
        "optimizer", "an optimizer without gradient_accumulation_steps", accumulating
    )
    with pytest.raises(ValueError) as info:
        Proximal("sgd", clipnorm=1.0)
    assert str(info.value) == (
        "Proximal takes no base optimizer arguments; set them on the wrapped "
        "optimizer. Received: ['clipnorm']"
    )


def test_module_docstring_examples_run():
    import doctest

    failures, _ = doctest.testmod(proximal_module, verbose=False)
    assert failures == 0
