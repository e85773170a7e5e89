"""Tests of `keras-reg compare --model FILE.py:FUNCTION` (keras_reg/compare/models.py).

The model files are written by the tests; runs use digits with two seeds, one
strength and one or two epochs. Expected numbers come from building the same
function's model here, under the same seed, and evaluating it in NumPy.
"""

import json
import os
import runpy
import textwrap

import keras
import numpy as np
import pytest

from keras_reg.compare import data
from keras_reg.compare.cli import main

MODELS = """
import keras


def sequential(input_shape, output_size):
    return keras.Sequential(
        [
            keras.Input(input_shape),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(output_size, activation="softmax"),
        ]
    )


def functional(input_shape, output_size):
    # A residual block and logits out (no softmax).
    inputs = keras.Input(input_shape)
    h = keras.layers.Dense(32, activation="relu")(inputs)
    h = keras.layers.Add()([h, keras.layers.Dense(32, activation="relu")(h)])
    return keras.Model(inputs, keras.layers.Dense(output_size)(h))


def frozen_functional(input_shape, output_size):
    # Compiled with an optimizer that cannot move a weight.
    model = functional(input_shape, output_size)
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.0), loss="mse")
    return model


def raising(input_shape, output_size):
    raise RuntimeError("no model\\ntoday")


def not_a_model(input_shape, output_size):
    return "a model"


class Subclassed(keras.Model):
    def __init__(self, output_size):
        super().__init__()
        self.dense = keras.layers.Dense(output_size)

    def call(self, x):
        return self.dense(x)


def subclassed(input_shape, output_size):
    model = Subclassed(output_size)
    model(keras.ops.zeros((1, *input_shape)))
    return model


def no_kernel(input_shape, output_size):
    inputs = keras.Input(input_shape)
    h = keras.layers.Reshape((input_shape[0], 1))(inputs)
    h = keras.layers.Cropping1D((0, input_shape[0] - output_size))(h)
    return keras.Model(inputs, keras.layers.Softmax()(keras.layers.Flatten()(h)))


def wrong_output(input_shape, output_size):
    return sequential(input_shape, output_size + 1)


def two_outputs(input_shape, output_size):
    inputs = keras.Input(input_shape)
    outputs = [keras.layers.Dense(output_size)(inputs) for _ in range(2)]
    return keras.Model(inputs, outputs)


def global_clipnorm(input_shape, output_size):
    model = sequential(input_shape, output_size)
    model.compile(optimizer=keras.optimizers.Adam(global_clipnorm=1.0), loss="mse")
    return model


def unbuilt(input_shape, output_size):
    return keras.Sequential([keras.layers.Dense(output_size)])
"""

FAST = ["--epochs", "2", "--seeds", "2", "--grid", "1", "--quiet"]


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("models") / "models.py"
    path.write_text(textwrap.dedent(MODELS))
    return str(path)


def _compare(model_spec, out, *extra):
    return main(["compare", "--model", model_spec, *FAST, *extra, "--output", str(out)])


def _read(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _initial_model(model_file, name, seed):
    """The user's model as compare builds it for `seed`, built here."""
    function = runpy.run_path(model_file)[name]
    keras.utils.set_random_seed(seed)
    return function((64,), 10)


def _kernels(model):
    return np.concatenate(
        [
            keras.ops.convert_to_numpy(v).astype("float64").ravel()
            for v in model.weights
            if v.name.endswith("kernel")
        ]
    )


def test_sequential_model_file_trains_with_the_default_optimizer(
    model_file, tmp_path, capsys
):
    spec = f"{model_file}:sequential"
    assert _compare(spec, tmp_path / "out", "--techniques", "L2") == 0
    assert "L2 keeps weights small: " in capsys.readouterr().out
    doc = _read(tmp_path / "out" / "results.json")
    assert doc["settings"]["model"] == spec
    assert doc["settings"]["hidden_units"] is None
    for technique in doc["techniques"]:
        for run in technique["runs"]:
            assert run["n_kernel_weights"] == 64 * 32 + 32 * 10
            initial = _kernels(_initial_model(model_file, "sequential", run["seed"]))
            # Adam moved the weights away from where they started.
            assert run["mean_abs_weight"] != pytest.approx(
                np.mean(np.abs(initial)), rel=1e-4
            )


def test_functional_model_file_takes_every_technique(model_file, tmp_path):
    # Combined adds ElasticNet, Dropout, BatchNormalization and EarlyStopping
    # to the functional graph through keras_reg.regularize.
    spec = f"{model_file}:functional"
    assert _compare(spec, tmp_path / "out", "--techniques", "Combined") == 0
    doc = _read(tmp_path / "out" / "results.json")
    assert [t["name"] for t in doc["techniques"]] == ["baseline", "Combined"]
    for technique in doc["techniques"]:
        for run in technique["runs"]:
            assert run["n_kernel_weights"] == 64 * 32 + 32 * 32 + 32 * 10
            assert np.isfinite(run["validation"]["data_loss"])


def test_compiled_model_trains_with_its_own_optimizer(model_file, tmp_path):
    # The model is compiled with SGD at learning rate 0: if compare used its
    # optimizer, no weight moves, with or without the L2 penalty, and every
    # number is the initial model's. The default Adam would move them.
    spec = f"{model_file}:frozen_functional"
    assert _compare(spec, tmp_path / "out", "--techniques", "L2") == 0
    doc = _read(tmp_path / "out" / "results.json")
    problem = data.load_digits_problem()
    for technique in doc["techniques"]:
        for run in technique["runs"]:
            model = _initial_model(model_file, "frozen_functional", run["seed"])
            kernels = _kernels(model)
            assert run["mean_abs_weight"] == pytest.approx(
                np.mean(np.abs(kernels)), rel=1e-9
            )
            # The output is logits: cross-entropy of their softmax, in NumPy.
            # compare clips the true class's probability to [1e-7, 1 - 1e-7]
            # as Keras's loss on probabilities does (it matters on torch's
            # seed 0, where a row's probability falls below 1e-7).
            split = problem.split(run["seed"])
            logits = keras.ops.convert_to_numpy(model(split.x_val)).astype("float64")
            logits -= logits.max(axis=1, keepdims=True)
            log_p = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
            picked = log_p[np.arange(len(split.y_val)), split.y_val]
            loss = -np.mean(np.clip(picked, np.log(1e-7), np.log1p(-1e-7)))
            assert run["validation"]["data_loss"] == pytest.approx(loss, rel=1e-5)
            accuracy = np.mean(np.argmax(logits, axis=1) == split.y_val)
            assert run["validation"]["accuracy"] == pytest.approx(accuracy)


def _error_cases(model_file, tmp):
    """name -> (--model value, expected message; a prefix where it ends in ': ')."""
    folder = os.path.dirname(model_file)
    missing = os.path.join(folder, "missing.py")
    broken = os.path.join(folder, "broken.py")
    with open(broken, "w") as f:
        f.write('raise ImportError("no module named foo")\n')
    lambda_file = os.path.join(folder, "with_lambda.py")
    with open(lambda_file, "w") as f:
        f.write(
            textwrap.dedent(
                """
                import keras


                def model(input_shape, output_size):
                    inputs = keras.Input(input_shape)
                    h = keras.layers.Lambda(lambda t: 2 * t)(inputs)
                    return keras.Model(inputs, keras.layers.Dense(output_size)(h))
                """
            )
        )

    def spec(name):
        return f"{model_file}:{name}"

    return {
        "missing_file": (
            f"{missing}:model",
            f"model file {missing!r} does not exist",
        ),
        "missing_function": (
            spec("nothing"),
            f"model file {model_file!r} has no function 'nothing'",
        ),
        "not_file_colon_function": (
            model_file,
            f"--model must be FILE.py:FUNCTION (got {model_file!r})",
        ),
        "file_raises_on_import": (
            f"{broken}:model",
            f"model file {broken!r} raised ImportError: no module named foo",
        ),
        "function_raises": (
            spec("raising"),
            f"--model {spec('raising')} raised RuntimeError: no model today",
        ),
        "returns_a_non_model": (
            spec("not_a_model"),
            f"--model {spec('not_a_model')} returned str, not a Keras model",
        ),
        "returns_a_subclassed_model": (
            spec("subclassed"),
            f"--model {spec('subclassed')} returned a subclassed model; compare "
            "needs a Sequential or functional model, whose layers "
            "keras_reg.regularize can rewrite",
        ),
        "model_without_kernels": (
            spec("no_kernel"),
            f"--model {spec('no_kernel')} has no layer with a kernel to regularize",
        ),
        "wrong_output_shape": (
            spec("wrong_output"),
            f"--model {spec('wrong_output')} must have one output of shape "
            "(batch, 10) (got [(None, 11)])",
        ),
        "two_outputs": (
            spec("two_outputs"),
            f"--model {spec('two_outputs')} must have one output of shape "
            "(batch, 10) (got [(None, 10), (None, 10)])",
        ),
        "compiled_with_global_clipnorm": (
            spec("global_clipnorm"),
            f"--model {spec('global_clipnorm')} is compiled with global_clipnorm, "
            "which clips one norm over all of compare's runs trained together; "
            "use clipnorm",
        ),
        "layer_that_cannot_be_rebuilt": (
            f"{lambda_file}:model",
            f"--model {lambda_file}:model cannot be rewritten: ValueError: ",
        ),
    }


ERROR_CASES = [
    "missing_file",
    "missing_function",
    "not_file_colon_function",
    "file_raises_on_import",
    "function_raises",
    "returns_a_non_model",
    "returns_a_subclassed_model",
    "model_without_kernels",
    "wrong_output_shape",
    "two_outputs",
    "compiled_with_global_clipnorm",
    "layer_that_cannot_be_rebuilt",
]


@pytest.mark.parametrize("case", ERROR_CASES)
def test_bad_model_is_one_line_exit_2_nothing_written(
    model_file, tmp_path, capsys, case
):
    spec, message = _error_cases(model_file, tmp_path)[case]
    out = tmp_path / "out"
    assert _compare(spec, out) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    if message.endswith(": "):
        # The rest is Keras's own reason, which may change between releases.
        assert captured.err.startswith(f"keras-reg compare: error: {message}")
        assert captured.err.count("\n") == 1 and captured.err.endswith("\n")
    else:
        assert captured.err == f"keras-reg compare: error: {message}\n"
    assert not out.exists()


def test_error_cases_are_all_tested(model_file, tmp_path):
    assert sorted(_error_cases(model_file, tmp_path)) == sorted(ERROR_CASES)


def test_sequential_without_input_is_one_line_error(model_file, tmp_path, capsys):
    out = tmp_path / "out"
    assert _compare(f"{model_file}:unbuilt", out) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"keras-reg compare: error: --model {model_file}:unbuilt ")
    assert err.count("\n") == 1
    assert not out.exists()
