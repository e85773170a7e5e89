"""Tests for keras_reg.pruning's schedules: ConstantSparsity, PolynomialDecay."""

import doctest
import math

import keras
import numpy as np
import pytest
from helpers import assert_config_round_trip, assert_json_round_trip, invalid_message

from keras_reg import pruning
from keras_reg.pruning import schedules as schedules_module

STEPS = np.arange(0, 260)


def _evaluate(schedule, steps=STEPS):
    pairs = [schedule(keras.ops.convert_to_tensor(int(step))) for step in steps]
    updates = np.array([bool(keras.ops.convert_to_numpy(u)) for u, _ in pairs])
    values = np.array([float(keras.ops.convert_to_numpy(s)) for _, s in pairs])
    return updates, values


def _numpy_updates(steps, begin, end, frequency):
    in_range = (steps >= begin) & ((steps <= end) | (end == -1))
    return in_range & ((steps - begin) % frequency == 0)


@pytest.mark.parametrize(
    "begin, end, frequency", [(0, -1, 100), (10, -1, 7), (5, 200, 30), (3, 3, 1)]
)
def test_constant_sparsity_updates_every_frequency_steps_in_range(
    begin, end, frequency
):
    schedule = pruning.ConstantSparsity(0.75, begin, end, frequency)
    updates, values = _evaluate(schedule)
    np.testing.assert_array_equal(updates, _numpy_updates(STEPS, begin, end, frequency))
    np.testing.assert_array_equal(values, np.float32(0.75))


@pytest.mark.parametrize(
    "initial, final, begin, end, power, frequency",
    [
        (0.0, 0.9, 0, 200, 3, 10),
        (0.2, 0.8, 50, 150, 1, 25),
        (0.5, 0.1, 10, 100, 2.5, 1),
    ],
)
def test_polynomial_decay_matches_numpy_formula(
    initial, final, begin, end, power, frequency
):
    schedule = pruning.PolynomialDecay(initial, final, begin, end, power, frequency)
    updates, values = _evaluate(schedule)
    progress = np.clip((STEPS - begin) / (end - begin), 0.0, 1.0)
    expected = final + (initial - final) * (1.0 - progress) ** power
    # float32 arithmetic on values in [0, 1]: a few ulps of 1.
    np.testing.assert_allclose(values, expected, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(updates, _numpy_updates(STEPS, begin, end, frequency))
    assert values[begin] == pytest.approx(initial, abs=1e-6)
    assert values[-1] == pytest.approx(final, abs=1e-6)


def test_polynomial_decay_default_power_is_three_and_frequency_one_hundred():
    schedule = pruning.PolynomialDecay(0.0, 0.8, 0, 100)
    assert (schedule.power, schedule.frequency) == (3.0, 100)
    assert float(keras.ops.convert_to_numpy(schedule.sparsity(50))) == pytest.approx(
        0.8 - 0.8 * 0.5**3
    )


def test_schedules_run_inside_compiled_functions():
    # The schedule sees a symbolic step in TensorFlow's and JAX's train steps.
    schedule = pruning.PolynomialDecay(0.0, 0.5, 0, 10, frequency=5)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        compiled = tf.function(schedule, jit_compile=True)
    elif keras.backend.backend() == "jax":
        import jax

        compiled = jax.jit(schedule)
    else:
        compiled = schedule
    update, sparsity = compiled(keras.ops.convert_to_tensor(5))
    assert bool(keras.ops.convert_to_numpy(update))
    assert float(keras.ops.convert_to_numpy(sparsity)) == pytest.approx(0.4375)


def test_config_and_json_round_trips():
    for schedule in (
        pruning.ConstantSparsity(0.5, begin_step=3, end_step=30, frequency=4),
        pruning.PolynomialDecay(0.1, 0.9, 10, 110, power=2, frequency=5),
    ):
        assert_config_round_trip(schedule)
        assert_json_round_trip(schedule)
    assert pruning.ConstantSparsity(0.5).get_config() == {
        "target_sparsity": 0.5,
        "begin_step": 0,
        "end_step": -1,
        "frequency": 100,
    }
    assert pruning.PolynomialDecay(0.0, 0.9, 0, 10).get_config() == {
        "initial_sparsity": 0.0,
        "final_sparsity": 0.9,
        "begin_step": 0,
        "end_step": 10,
        "power": 3.0,
        "frequency": 100,
    }


def _raises(factory, name, expected, value):
    with pytest.raises(ValueError) as info:
        factory()
    assert str(info.value) == invalid_message(name, expected, value)


@pytest.mark.parametrize("value", [1.0, -0.1, True, math.nan, "0.5", None])
def test_invalid_sparsity_raises(value):
    expected = "a float in [0, 1)"
    _raises(lambda: pruning.ConstantSparsity(value), "target_sparsity", expected, value)
    _raises(
        lambda: pruning.PolynomialDecay(value, 0.5, 0, 10),
        "initial_sparsity",
        expected,
        value,
    )
    _raises(
        lambda: pruning.PolynomialDecay(0.0, value, 0, 10),
        "final_sparsity",
        expected,
        value,
    )


def test_invalid_steps_raise():
    _raises(
        lambda: pruning.ConstantSparsity(0.5, begin_step=-1),
        "begin_step",
        "an int >= 0",
        -1,
    )
    _raises(
        lambda: pruning.ConstantSparsity(0.5, begin_step=True),
        "begin_step",
        "an int >= 0",
        True,
    )
    _raises(
        lambda: pruning.ConstantSparsity(0.5, begin_step=5, end_step=4),
        "end_step",
        "-1 or an int >= begin_step (5)",
        4,
    )
    _raises(
        lambda: pruning.ConstantSparsity(0.5, end_step=-1.0),
        "end_step",
        "-1 or an int >= begin_step (0)",
        -1.0,
    )
    _raises(
        lambda: pruning.ConstantSparsity(0.5, frequency=0),
        "frequency",
        "an int >= 1",
        0,
    )
    _raises(
        lambda: pruning.PolynomialDecay(0.0, 0.5, 5, 5),
        "end_step",
        "an int > begin_step (5)",
        5,
    )
    _raises(
        lambda: pruning.PolynomialDecay(0.0, 0.5, 0, -1),
        "end_step",
        "an int > begin_step (0)",
        -1,
    )
    _raises(
        lambda: pruning.PolynomialDecay(0.0, 0.5, 0, 10, power=0),
        "power",
        "a float > 0",
        0,
    )
    _raises(
        lambda: pruning.PolynomialDecay(0.0, 0.5, 0, 10, power=math.inf),
        "power",
        "a float > 0",
        math.inf,
    )


def test_module_docstring_examples_run():
    failures, _ = doctest.testmod(schedules_module, verbose=False)
    assert failures == 0
