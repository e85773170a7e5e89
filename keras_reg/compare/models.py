"""The model `keras-reg compare` trains: the built-in MLP or CNN, or the user's.

`--model` is documented in docs/compare.md ("Model."). Every problem with the
file or the model is found before anything is trained or written, and raised
as a one-line `ModelError`.
"""

import importlib.util
import os

import keras

import keras_reg
from keras_reg import _rebuild

HIDDEN_UNITS = (256, 256)


def builtin_model(input_shape, output_size):
    """The default model: a wide two-hidden-layer MLP that overfits digits."""
    layers = [keras.Input(input_shape)]
    layers += [keras.layers.Dense(n, activation="relu") for n in HIDDEN_UNITS]
    activation = "softmax" if output_size > 1 else None
    layers.append(keras.layers.Dense(output_size, activation=activation))
    return keras.Sequential(layers, name="mlp")


def outputs_probabilities(model) -> bool:
    """Whether `model`'s output is a softmax (else logits, for classification)."""
    last = model.layers[-1]
    activation = getattr(last, "activation", None)
    return activation is keras.activations.softmax or type(last).__name__ == "Softmax"


def builtin_cnn(input_shape, output_size):
    """`--model cnn`: the features as a square one-channel image, two 3x3
    convolutions with pooling, and a Dense head."""
    side = int(round(input_shape[0] ** 0.5))
    activation = "softmax" if output_size > 1 else None
    return keras.Sequential(
        [
            keras.Input(input_shape),
            keras.layers.Reshape((side, side, 1)),
            keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Flatten(),
            keras.layers.Dense(output_size, activation=activation),
        ],
        name="cnn",
    )


class ModelError(ValueError):
    """A problem with `--model`, reported to the user in one line."""


def _load_function(spec):
    path, _, name = spec.rpartition(":")
    if not path or not name:
        raise ModelError(f"--model must be FILE.py:FUNCTION (got {spec!r})")
    if not os.path.isfile(path):
        raise ModelError(f"model file {path!r} does not exist")
    module_spec = importlib.util.spec_from_file_location("_keras_reg_user_model", path)
    if module_spec is None:
        raise ModelError(f"model file {path!r} is not a Python file")
    module = importlib.util.module_from_spec(module_spec)
    try:
        module_spec.loader.exec_module(module)
    except Exception as e:  # the user's code: any error is reported in a line
        raise ModelError(f"model file {path!r} raised {_one_line(e)}") from None
    function = getattr(module, name, None)
    if not callable(function):
        raise ModelError(f"model file {path!r} has no function {name!r}")
    return function


def _one_line(error):
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _check(model, spec, output_size):
    where = f"--model {spec}"
    if not isinstance(model, keras.Model):
        raise ModelError(f"{where} returned {type(model).__name__}, not a Keras model")
    if not _rebuild.is_graph_model(model):
        raise ModelError(
            f"{where} returned a subclassed model; compare needs a Sequential or "
            "functional model, whose layers keras_reg.regularize can rewrite"
        )
    if not model.built or not model.inputs:
        raise ModelError(
            f"{where} returned a model without a defined input; start it with "
            "keras.Input(shape=input_shape)"
        )
    if len(model.outputs) != 1 or tuple(model.outputs[0].shape[1:]) != (output_size,):
        shapes = [tuple(o.shape) for o in model.outputs]
        raise ModelError(
            f"{where} must have one output of shape (batch, {output_size}) "
            f"(got {shapes})"
        )
    if not any(_rebuild.has_kernel(layer) for layer in _rebuild.walk(model)):
        raise ModelError(f"{where} has no layer with a kernel to regularize")
    try:
        keras_reg.regularize(
            model, kernel_regularizer="l2", dropout=0.5, batch_normalization=True
        )
    except ValueError as e:
        raise ModelError(f"{where} cannot be rewritten: {_one_line(e)}") from None


BUILTIN = {"mlp": "built-in MLP", "cnn": "built-in CNN"}


def describe(spec):
    """The `model` entry of results.json's settings."""
    return BUILTIN.get(spec or "mlp", spec)


def builder(spec, problem):
    """Returns `build(seed) -> (model, optimizer or None)`, checked once now."""
    input_shape = (problem.n_features,)
    output_size = problem.n_classes or 1
    if spec == "cnn":
        side = int(round(problem.n_features**0.5))
        if side * side != problem.n_features:
            raise ModelError(
                "--model cnn needs a number of features that is a perfect "
                f"square, to read as a square image (got {problem.n_features})"
            )
        function = builtin_cnn
    elif spec is None or spec == "mlp":
        function = builtin_model
    else:
        function = _load_function(spec)
    if spec in BUILTIN:
        spec = None
    cache = {}

    def build(seed):
        if seed not in cache:
            keras.utils.set_random_seed(seed)
            try:
                model = function(input_shape, output_size)
            except Exception as e:  # the user's code
                raise ModelError(f"--model {spec} raised {_one_line(e)}") from None
            if spec is not None:
                _check(model, spec, output_size)
            optimizer = model.optimizer if getattr(model, "compiled", False) else None
            if getattr(optimizer, "global_clipnorm", None) is not None:
                # One norm over all the variables would couple the towers.
                raise ModelError(
                    f"--model {spec} is compiled with global_clipnorm, which clips "
                    "one norm over all of compare's runs trained together; use "
                    "clipnorm"
                )
            cache[seed] = (model, optimizer)
        return cache[seed]

    build(0)
    cache.clear()
    return build
