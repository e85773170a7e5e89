"""Tests for keras_reg.regularizers: L1, L2, ElasticNet (L1L2), GroupLasso."""

import importlib
import json
import math
import os
import re
import zipfile

import keras
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keras_reg import regularizers
from keras_reg._backends import portable_only
from keras_reg.regularizers import L1, L1L2, L2, ElasticNet, GroupLasso, group_penalty
from keras_reg.regularizers import penalties as penalties_module
from tests.helpers import (
    assert_config_round_trip,
    assert_json_round_trip,
    assert_model_save_round_trip,
)

SMALL_SETTINGS = settings(max_examples=25, deadline=None)


def _np(x):
    return keras.ops.convert_to_numpy(x)


def _weights(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def _numpy_penalty(w, l1=0.0, l2=0.0):
    w = w.astype(np.float64)
    return l1 * np.abs(w).sum() + l2 * np.square(w).sum()


def _numpy_group_lasso(w, factor, axes):
    w = w.astype(np.float64)
    norms = np.sqrt(np.square(w).sum(axis=axes))
    group_size = np.prod([w.shape[a] for a in axes])
    return factor * np.sqrt(group_size) * norms.sum()


# --- Penalty values -------------------------------------------------------


@pytest.mark.parametrize(
    "regularizer, l1, l2",
    [
        (L1(0.3), 0.3, 0.0),
        (L2(0.2), 0.0, 0.2),
        (ElasticNet(l1=0.1, l2=0.05), 0.1, 0.05),
        (ElasticNet(l1=0.1), 0.1, 0.0),
        (ElasticNet(l2=0.1), 0.0, 0.1),
        (L1(0.3, proximal=True), 0.3, 0.0),
        (ElasticNet(0.1, 0.05, proximal=True), 0.1, 0.05),
    ],
)
def test_penalty_matches_numpy_reference(regularizer, l1, l2):
    w = _weights((7, 5))
    value = regularizer(w)
    assert tuple(value.shape) == ()
    np.testing.assert_allclose(_np(value), _numpy_penalty(w, l1, l2), rtol=1e-6)


@pytest.mark.parametrize(
    "ours, theirs",
    [
        (L1(0.3), keras.regularizers.L1(0.3)),
        (L2(0.2), keras.regularizers.L2(0.2)),
        (L1L2(l1=0.1, l2=0.05), keras.regularizers.L1L2(l1=0.1, l2=0.05)),
        (L1L2(), keras.regularizers.L1L2()),
    ],
)
def test_penalty_matches_keras_regularizer(ours, theirs):
    for shape in [(3,), (4, 6), (2, 3, 4, 5)]:
        w = keras.Variable(_weights(shape, seed=len(shape)))
        np.testing.assert_allclose(_np(ours(w)), _np(theirs(w)), rtol=1e-6)


@SMALL_SETTINGS
@given(
    shape=st.lists(st.integers(1, 6), min_size=1, max_size=4),
    l1=st.floats(0.0, 10.0),
    l2=st.floats(0.0, 10.0),
    seed=st.integers(0, 2**16),
)
def test_penalties_match_numpy_for_random_shapes_and_factors(shape, l1, l2, seed):
    w = _weights(tuple(shape), seed)
    np.testing.assert_allclose(
        _np(ElasticNet(l1, l2)(w)), _numpy_penalty(w, l1, l2), rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(
        _np(L1(l1)(w)), _numpy_penalty(w, l1=l1), rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(
        _np(L2(l2)(w)), _numpy_penalty(w, l2=l2), rtol=1e-5, atol=1e-6
    )


@SMALL_SETTINGS
@given(
    shape=st.lists(st.integers(1, 5), min_size=2, max_size=4),
    factor=st.floats(0.0, 5.0),
    data=st.data(),
)
def test_group_lasso_matches_numpy_for_random_shapes_and_axes(shape, factor, data):
    rank = len(shape)
    axes = data.draw(
        st.lists(st.integers(0, rank - 1), min_size=1, max_size=rank, unique=True)
    )
    w = _weights(tuple(shape), seed=rank)
    axis = axes[0] if len(axes) == 1 else tuple(axes)
    value = GroupLasso(factor, axis=axis)(w)
    np.testing.assert_allclose(
        _np(value), _numpy_group_lasso(w, factor, tuple(axes)), rtol=1e-5, atol=1e-6
    )


def test_group_lasso_negative_axis_counts_from_the_end():
    w = _weights((3, 3, 4, 6))
    np.testing.assert_allclose(
        _np(GroupLasso(0.1, axis=(-4, -3, -2))(w)),
        _numpy_group_lasso(w, 0.1, (0, 1, 2)),
        rtol=1e-6,
    )


def test_group_lasso_rejects_axis_outside_the_weight_rank():
    with pytest.raises(ValueError) as info:
        GroupLasso(0.1, axis=2)(np.ones((3, 4), "float32"))
    assert str(info.value) == (
        "GroupLasso with axis=2 cannot group a weight of shape (3, 4) (rank 2)."
    )


def test_group_lasso_gradient_is_finite_for_an_all_zero_group():
    # d||w||/dw = w/||w|| is 0/0 for a zero group; the safe norm returns 0.
    w = np.zeros((4, 3), "float32")
    w[:, 0] = [3.0, 4.0, 0.0, 0.0]
    model = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(
                3,
                use_bias=False,
                kernel_regularizer=GroupLasso(1.0, axis=0),
                kernel_initializer=keras.initializers.Constant(w),
            ),
        ]
    )
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    model.fit(np.zeros((2, 4)), np.zeros((2, 3)), epochs=1, verbose=0)
    kernel = _np(model.layers[0].kernel)
    assert np.all(np.isfinite(kernel))
    # The zero groups stay zero; the live group moves by lr * factor * 2 * w/5.
    np.testing.assert_array_equal(kernel[:, 1:], 0.0)
    np.testing.assert_allclose(
        kernel[:, 0], w[:, 0] - 0.1 * 1.0 * 2.0 * w[:, 0] / 5.0, rtol=1e-6
    )


@pytest.mark.skipif(
    keras.backend.backend() != "torch", reason="the fast path is torch's only"
)
def test_torch_fast_path_matches_the_portable_path():
    import torch

    def value_and_grad(regularizer, shape):
        w = torch.tensor(_weights(shape, len(shape)), requires_grad=True)
        value = regularizer(w)
        (grad,) = torch.autograd.grad(value, w)
        return value.detach().numpy(), grad.numpy()

    regularizers_to_check = [
        ElasticNet(l1=0.03, l2=0.02),
        ElasticNet(l2=0.02),
        ElasticNet(l1=0.03),
        L2(0.02),
        L1(0.03),
    ]
    shapes = [(5,), (7, 3), (2, 3, 4, 5)]
    fast = [value_and_grad(r, s) for r in regularizers_to_check for s in shapes]
    with portable_only():
        portable = [value_and_grad(r, s) for r in regularizers_to_check for s in shapes]
    for (fast_value, fast_grad), (value, grad) in zip(fast, portable, strict=True):
        np.testing.assert_allclose(fast_value, value, rtol=1e-6)
        np.testing.assert_allclose(fast_grad, grad, rtol=1e-6, atol=1e-7)


def _gradient(regularizer, values):
    """The penalty's gradient on each backend's own autodiff (None if the
    penalty does not depend on the weights)."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        w = tf.Variable(values)
        with tf.GradientTape() as tape:
            value = regularizer(w)
        grad = tape.gradient(value, w)
        return None if grad is None else grad.numpy()
    if backend == "torch":
        import torch

        w = torch.tensor(values, requires_grad=True)
        value = regularizer(w)
        if not value.requires_grad:
            return None
        (grad,) = torch.autograd.grad(value, w)
        return grad.numpy()
    import jax

    return np.asarray(jax.grad(lambda w: regularizer(w))(values))


@pytest.mark.parametrize("name", ["L1", "L2"])
def test_a_zero_factor_has_a_zero_gradient_as_in_keras(name):
    # Keras's L1(0) and L2(0) compute 0 * sum(...): a zero gradient, which a
    # custom loop or torch's backward on the penalty alone relies on.
    values = _weights((3, 2))
    ours = _gradient(getattr(regularizers, name)(0.0), values)
    theirs = _gradient(getattr(keras.regularizers, name)(0.0), values)
    assert theirs is not None and ours is not None
    np.testing.assert_array_equal(ours, theirs)
    np.testing.assert_array_equal(ours, np.zeros_like(values))


def test_zero_factors_give_a_zero_scalar():
    value = ElasticNet()(_weights((3, 2)))
    assert tuple(value.shape) == ()
    assert float(_np(value)) == 0.0


@pytest.mark.skipif(
    keras.backend.backend() == "jax",
    reason="JAX truncates float64 to float32 unless jax_enable_x64 is set",
)
def test_penalty_keeps_float64_weights_in_float64():
    w = np.array([1e-9, 1.0], dtype="float64")
    value = L1(1.0)(keras.ops.convert_to_tensor(w, dtype="float64"))
    assert keras.backend.standardize_dtype(value.dtype) == "float64"


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_weights_give_a_finite_float32_penalty(dtype):
    # 300**2 * 4096 = 3.7e8 overflows float16 (max 65504); float32 holds it.
    w = keras.ops.convert_to_tensor(np.full((64, 64), 300.0), dtype=dtype)
    for regularizer in (L2(0.01), ElasticNet(0.01, 0.01), L1(0.01), GroupLasso(0.01)):
        value = regularizer(w)
        assert keras.backend.standardize_dtype(value.dtype) == "float32"
        assert np.isfinite(_np(value))
    np.testing.assert_allclose(_np(L2(0.01)(w)), 0.01 * 300.0**2 * 4096, rtol=1e-6)


def test_mixed_precision_model_has_finite_float32_penalties():
    keras.config.set_dtype_policy("mixed_float16")
    try:
        layer = keras.layers.Dense(
            8,
            kernel_regularizer=ElasticNet(0.01, 0.01),
            bias_regularizer=L2(0.01),
            kernel_initializer=keras.initializers.Constant(300.0),
        )
        model = keras.Sequential([keras.Input((512,)), layer])
        penalties = model.losses
        for penalty in penalties:
            assert keras.backend.standardize_dtype(penalty.dtype) == "float32"
            assert np.isfinite(_np(penalty))
        model.compile(optimizer="sgd", loss="mse")
        history = model.fit(np.zeros((4, 512)), np.zeros((4, 8)), epochs=1, verbose=0)
        assert np.isfinite(history.history["loss"][0])
    finally:
        keras.config.set_dtype_policy("float32")


# --- Training equivalence with Keras --------------------------------------


def _train(kernel_regularizer, bias_regularizer):
    keras.utils.set_random_seed(7)
    model = keras.Sequential(
        [
            keras.Input((6,)),
            keras.layers.Dense(
                4,
                activation="tanh",
                kernel_regularizer=kernel_regularizer,
                bias_regularizer=bias_regularizer,
            ),
            keras.layers.Dense(1),
        ]
    )
    model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9), loss="mse")
    rng = np.random.default_rng(3)
    x = rng.normal(size=(32, 6)).astype("float32")
    y = rng.normal(size=(32, 1)).astype("float32")
    history = model.fit(x, y, batch_size=8, epochs=3, verbose=0, shuffle=False)
    return [_np(w) for w in model.weights], history.history["loss"]


@pytest.mark.parametrize(
    "ours, theirs",
    [
        (
            lambda: (L1(0.05), L1(0.02)),
            lambda: (keras.regularizers.L1(0.05), keras.regularizers.L1(0.02)),
        ),
        (
            lambda: (L2(0.05), L2(0.02)),
            lambda: (keras.regularizers.L2(0.05), keras.regularizers.L2(0.02)),
        ),
        (
            lambda: (L1L2(0.05, 0.03), ElasticNet(l2=0.02)),
            lambda: (
                keras.regularizers.L1L2(0.05, 0.03),
                keras.regularizers.L1L2(l2=0.02),
            ),
        ),
    ],
    ids=["L1", "L2", "L1L2"],
)
def test_training_matches_keras_regularizers(ours, theirs):
    our_weights, our_loss = _train(*ours())
    their_weights, their_loss = _train(*theirs())
    np.testing.assert_allclose(our_loss, their_loss, rtol=1e-5)
    for mine, reference in zip(our_weights, their_weights, strict=True):
        np.testing.assert_allclose(mine, reference, rtol=1e-5, atol=1e-6)


# --- Arguments, defaults, configs -----------------------------------------


def test_defaults_and_none_match_keras():
    assert L1().l1 == L1(None).l1 == 0.01
    assert L2().l2 == L2(None).l2 == 0.01
    assert (ElasticNet().l1, ElasticNet().l2) == (0.0, 0.0)
    assert (ElasticNet(None, None).l1, ElasticNet(None, None).l2) == (0.0, 0.0)
    assert L1().proximal is False and ElasticNet().proximal is False
    assert GroupLasso().get_config() == {"factor": 0.01, "axis": 0, "proximal": False}


def test_l1l2_is_elastic_net_with_keras_arguments_and_config_keys():
    assert L1L2 is ElasticNet
    ours = L1L2(l1=0.25, l2=0.5).get_config()
    theirs = keras.regularizers.L1L2(l1=0.25, l2=0.5).get_config()
    assert ours == theirs == {"l1": 0.25, "l2": 0.5}


@pytest.mark.parametrize(
    "ours, keras_cls",
    [
        (L1(0.25), keras.regularizers.L1),
        (L2(0.25), keras.regularizers.L2),
        (ElasticNet(0.25, 0.5), keras.regularizers.L1L2),
    ],
)
def test_non_proximal_configs_are_interchangeable_with_keras(ours, keras_cls):
    config = ours.get_config()
    assert config == keras_cls(**config).get_config()
    assert keras_cls.from_config(config).get_config() == config
    assert type(ours).from_config(keras_cls(**config).get_config()).get_config() == (
        config
    )


def test_proximal_config_adds_the_key_only_when_true():
    assert L1(0.1, proximal=True).get_config() == {"l1": 0.1, "proximal": True}
    assert ElasticNet(0.1, 0.2, proximal=True).get_config() == {
        "l1": 0.1,
        "l2": 0.2,
        "proximal": True,
    }
    assert "proximal" not in L1(0.1, proximal=False).get_config()
    # A Keras L1 refuses a proximal config instead of dropping the L1 step.
    with pytest.raises(TypeError):
        keras.regularizers.L1.from_config(L1(0.1, proximal=True).get_config())


def test_factors_and_configs_hold_plain_python_values():
    for regularizer in [
        L1(3),
        L2(np.float32(0.5)),
        ElasticNet(1, 2),
        GroupLasso(2, axis=[0, 1]),
    ]:
        config = regularizer.get_config()
        for key in ("l1", "l2", "factor"):
            if key in config:
                assert type(config[key]) is float
                assert type(getattr(regularizer, key)) is float
        json.dumps(config)
        if "axis" in config:
            assert config["axis"] == (0, 1)


def test_config_and_json_round_trips():
    w = _weights((3, 3, 2, 4))
    for regularizer in [
        L1(0.3),
        L1(0.3, proximal=True),
        L2(0.2),
        ElasticNet(0.1, 0.2),
        ElasticNet(0.1, 0.2, proximal=True),
        GroupLasso(0.1, axis=(0, 1, 2), proximal=True),
    ]:
        assert_config_round_trip(regularizer)
        restored = assert_json_round_trip(regularizer)
        np.testing.assert_allclose(_np(restored(w)), _np(regularizer(w)), rtol=0)


def test_classes_are_registered_keras_regularizers():
    for cls in (L1, L2, ElasticNet, GroupLasso):
        assert issubclass(cls, keras.regularizers.Regularizer)
        assert keras.saving.get_registered_name(cls) == f"keras_reg>{cls.__name__}"


def _message(name, expected, value):
    return (
        f"Invalid value received for argument `{name}`. Expected {expected}. "
        f"Received: {name}={value!r}"
    )


FACTOR_ARGUMENTS = [
    (lambda v: L1(v), "l1"),
    (lambda v: L2(v), "l2"),
    (lambda v: ElasticNet(l1=v), "l1"),
    (lambda v: ElasticNet(l2=v), "l2"),
    (lambda v: L1L2(l2=v), "l2"),
    (lambda v: GroupLasso(factor=v), "factor"),
]


def test_invalid_factor_raises_with_the_package_message():
    for factory, name in FACTOR_ARGUMENTS:
        for value in [-0.1, -1, math.nan, math.inf, -math.inf, True, False, "0.1"]:
            with pytest.raises(ValueError) as info:
                factory(value)
            assert str(info.value) == _message(name, "a non-negative float", value)


def test_invalid_proximal_raises():
    for cls in (L1, ElasticNet, GroupLasso):
        for value in (1, "yes", None):
            with pytest.raises(ValueError) as info:
                cls(proximal=value)
            assert str(info.value) == _message("proximal", "a bool", value)


def test_invalid_group_lasso_axis_raises():
    for axis in [1.0, True, (), (0, 0), (0, "1"), "0", None]:
        with pytest.raises(ValueError) as info:
            GroupLasso(axis=axis)
        assert str(info.value) == _message(
            "axis", "an int or a non-empty tuple of distinct ints", axis
        )


def test_from_config_validates():
    cases = [
        (L1, {"l1": -1.0}, "l1", -1.0),
        (L2, {"l2": "big"}, "l2", "big"),
        (ElasticNet, {"l1": 0.1, "l2": math.nan}, "l2", math.nan),
        (GroupLasso, {"factor": 0.1, "axis": 0, "proximal": "no"}, "proximal", "no"),
    ]
    for cls, config, name, value in cases:
        with pytest.raises(ValueError) as info:
            cls.from_config(config)
        expected = {"proximal": "a bool"}.get(name, "a non-negative float")
        assert str(info.value) == _message(name, expected, value)


# --- Saving ---------------------------------------------------------------


def _regularized_model():
    return keras.Sequential(
        [
            keras.Input((5,)),
            keras.layers.Dense(
                4, kernel_regularizer=L1(0.01), bias_regularizer=L2(0.02)
            ),
            keras.layers.Dense(
                3,
                kernel_regularizer=L1L2(0.01, 0.02),
                activity_regularizer=L2(0.001),
            ),
            keras.layers.Dense(2, kernel_regularizer=GroupLasso(0.01, axis=1)),
        ]
    )


def test_model_with_regularizers_saves_and_loads(tmp_path):
    model = _regularized_model()
    model.compile(optimizer="sgd", loss="mse")
    x = _weights((6, 5))
    model.fit(x, np.zeros((6, 2)), epochs=1, verbose=0)
    restored = assert_model_save_round_trip(model, x, tmp_path)
    for original, loaded in zip(model.layers, restored.layers, strict=True):
        for attr in ("kernel_regularizer", "bias_regularizer", "activity_regularizer"):
            mine, theirs = getattr(original, attr), getattr(loaded, attr)
            assert type(mine) is type(theirs)
            if mine is not None:
                assert mine.get_config() == theirs.get_config()
    for original, loaded in zip(model.weights, restored.weights, strict=True):
        if original.regularizer is not None:
            np.testing.assert_allclose(
                _np(loaded.regularizer(loaded)),
                _np(original.regularizer(original)),
                rtol=1e-6,
            )


def test_recorded_modules_old_and_new_hold_the_classes():
    # Files written before the package split record "keras_reg.regularizers";
    # files written since record the submodule. Both name the class.
    for cls in (L1, L2, ElasticNet, GroupLasso):
        module = keras.saving.serialize_keras_object(cls())["module"]
        assert module.startswith("keras_reg.regularizers.")
        for name in (module, "keras_reg.regularizers"):
            assert getattr(importlib.import_module(name), cls.__name__) is cls


def _saved_with_edited_config(model, tmp_path, edit):
    """Saves `model` and returns the path of a copy whose config.json is edited."""
    path = os.path.join(str(tmp_path), "model.keras")
    model.save(path)
    edited = os.path.join(str(tmp_path), "edited.keras")
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(edited, "w") as target:
        for item in source.infolist():
            data = source.read(item.filename)
            if item.filename == "config.json":
                data = edit(data.decode()).encode()
            target.writestr(item, data)
    return edited


def test_keras_file_written_before_the_package_split_loads(tmp_path):
    def as_before_the_split(text):
        for module in ("penalties", "group_penalty"):
            new = f'"module": "keras_reg.regularizers.{module}"'
            assert new in text
            text = text.replace(new, '"module": "keras_reg.regularizers"')
        return text

    model = _regularized_model()
    x = _weights((6, 5))
    old = _saved_with_edited_config(model, tmp_path, as_before_the_split)
    restored = keras.saving.load_model(old, safe_mode=True)
    for original, loaded in zip(model.layers, restored.layers, strict=True):
        for attr in ("kernel_regularizer", "bias_regularizer", "activity_regularizer"):
            mine, theirs = getattr(original, attr), getattr(loaded, attr)
            assert type(mine) is type(theirs)
    np.testing.assert_array_equal(
        _np(restored.predict(x, verbose=0)), _np(model.predict(x, verbose=0))
    )


def test_edited_keras_file_with_invalid_factor_fails_to_load(tmp_path):
    def with_negative_l1(text):
        assert '"l1": 0.01' in text
        return text.replace('"l1": 0.01', '"l1": -0.5', 1)

    edited = _saved_with_edited_config(_regularized_model(), tmp_path, with_negative_l1)
    # Keras re-raises errors from nested from_config calls as TypeError; our
    # ValueError is in the chain with its exact message.
    with pytest.raises((ValueError, TypeError)) as info:
        keras.saving.load_model(edited, safe_mode=True)
    error, messages = info.value, []
    while error is not None:
        messages.append((type(error), str(error)))
        error = error.__cause__ or error.__context__
    assert (ValueError, _message("l1", "a non-negative float", -0.5)) in messages


@pytest.mark.parametrize(
    "module",
    [regularizers, penalties_module, group_penalty],
    ids=lambda module: module.__name__,
)
def test_module_docstring_examples_run(module):
    import doctest

    failures, tried = doctest.testmod(module, verbose=False)
    assert failures == 0 and tried > 0


# `from keras import regularizers` -> `from keras_reg import regularizers`.


def test_module_offers_every_public_name_of_keras_regularizers():
    keras_names = {name for name in dir(keras.regularizers) if not name.startswith("_")}
    missing = keras_names - set(regularizers.__all__)
    assert not missing
    for name in keras_names:
        assert hasattr(regularizers, name), name


def test_lower_case_aliases_are_the_classes_as_in_keras():
    assert regularizers.l1 is L1
    assert regularizers.l2 is L2
    assert regularizers.l1_l2 is ElasticNet
    assert keras.regularizers.l1 is keras.regularizers.L1
    assert keras.regularizers.l1_l2 is keras.regularizers.L1L2
    assert regularizers.Regularizer is keras.regularizers.Regularizer
    assert issubclass(L1, regularizers.Regularizer)


# Names `keras.regularizers.get` resolves, and the Keras class each gives.
_KERAS_NAMES = ["l1", "L1", "l2", "L2", "L1L2", "l1l2"]


@pytest.mark.parametrize("name", _KERAS_NAMES)
def test_get_by_name_gives_our_class_with_keras_defaults(name):
    ours, theirs = regularizers.get(name), keras.regularizers.get(name)
    assert type(ours) in (L1, L2, ElasticNet)
    assert {k: float(v) for k, v in ours.get_config().items()} == pytest.approx(
        {k: float(v) for k, v in theirs.get_config().items()}
    )


def test_get_passes_through_what_keras_passes_through():
    def penalty(x):
        return keras.ops.sum(x)

    instance = L2(0.3)
    assert regularizers.get(None) is None is keras.regularizers.get(None)
    assert regularizers.get(instance) is instance
    assert regularizers.get(penalty) is penalty is keras.regularizers.get(penalty)
    assert isinstance(regularizers.get(L1), L1)
    assert isinstance(
        regularizers.get("orthogonal_regularizer"),
        type(keras.regularizers.get("orthogonal_regularizer")),
    )


@pytest.mark.parametrize("identifier", [5, "no_such_regularizer"])
def test_get_refuses_what_keras_refuses_with_keras_message(identifier):
    for get in (regularizers.get, keras.regularizers.get):
        with pytest.raises(ValueError) as info:
            get(identifier)
        assert str(info.value) == (
            f"Could not interpret regularizer identifier: {identifier}"
        )


def test_get_also_takes_the_l1_l2_name_keras_documents():
    # Keras's docstring offers Dense(kernel_regularizer="l1_l2"), which its
    # `get` refuses; ours takes it.
    assert isinstance(regularizers.get("l1_l2"), ElasticNet)


def test_serialize_deserialize_round_trip_through_json():
    original = ElasticNet(l1=0.25, l2=0.5)
    config = json.loads(json.dumps(regularizers.serialize(original)))
    assert config["registered_name"] == "keras_reg>ElasticNet"
    restored = regularizers.deserialize(config)
    assert type(restored) is ElasticNet
    assert restored.get_config() == original.get_config()
    assert isinstance(regularizers.get(config), ElasticNet)


def test_deserialize_turns_keras_configs_into_ours():
    config = keras.regularizers.serialize(keras.regularizers.L2(0.5))
    restored = regularizers.deserialize(config)
    assert type(restored) is L2
    assert restored.l2 == 0.5


@pytest.mark.parametrize("cls", [L1, L2, ElasticNet])
@pytest.mark.parametrize("value", [-1, float("nan"), float("inf"), "0.1", [0.1]])
def test_bad_factor_carries_keras_phrase_in_our_template(cls, value):
    name = "l2" if cls is L2 else "l1"
    theirs_cls = {L1: keras.regularizers.L1, L2: keras.regularizers.L2}.get(
        cls, keras.regularizers.L1L2
    )
    theirs = str(pytest.raises(ValueError, theirs_cls, **{name: value}).value)
    ours = str(pytest.raises(ValueError, cls, **{name: value}).value)
    # Keras writes "expected" in lower case; our template capitalizes it.
    phrase = "(?i)expected a non-negative float"
    assert re.search(phrase, theirs) and re.search(phrase, ours)
    assert ours.endswith(f"Received: {name}={value!r}")
