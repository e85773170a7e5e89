"""keras_reg's own layer test helper (Keras's `run_layer_test` is private).

`run_layer_test` checks, in one call, what every keras_reg layer must do:
config round trip, JSON serialization round trip, symbolic call, eager call,
one training step inside `model.fit`, and a `.keras` save/load round trip with
`safe_mode=True` and no `custom_objects`.
"""

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def assert_config_round_trip(obj):
    """from_config(get_config()) rebuilds an object with the same config."""
    config = obj.get_config()
    clone = type(obj).from_config(config)
    assert type(clone) is type(obj)
    assert clone.get_config() == config
    return clone


def assert_json_round_trip(obj):
    """serialize -> JSON text -> deserialize gives the same class and config."""
    serialized = keras.saving.serialize_keras_object(obj)
    text = json.dumps(serialized)
    assert serialized["module"] is not None
    restored = keras.saving.deserialize_keras_object(json.loads(text))
    assert type(restored) is type(obj)
    assert restored.get_config() == obj.get_config()
    return restored


def _random_input(shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=shape).astype(dtype)


def run_layer_test(
    layer_cls,
    init_kwargs,
    input_shape,
    tmp_path,
    *,
    input_dtype="float32",
    expected_output_shape=None,
    expected_num_trainable_weights=None,
    expected_num_non_trainable_weights=None,
    run_training_step=True,
    run_save_test=True,
):
    """Runs the standard battery of layer checks and returns the layer.

    `input_shape` includes the batch dimension. `tmp_path` is pytest's
    temporary folder, used for the `.keras` file.
    """
    expected_output_shape = expected_output_shape or tuple(input_shape)

    layer = layer_cls(**init_kwargs)
    assert_config_round_trip(layer)
    assert_json_round_trip(layer)

    # Symbolic call: the functional API infers the output shape.
    symbolic_layer = layer_cls(**init_kwargs)
    inputs = keras.Input(batch_shape=input_shape, dtype=input_dtype)
    outputs = symbolic_layer(inputs)
    assert tuple(outputs.shape) == tuple(expected_output_shape)

    # Eager call, training and inference.
    eager_layer = layer_cls(**init_kwargs)
    x = _random_input(input_shape, input_dtype)
    for training in (False, True):
        y = eager_layer(x, training=training)
        assert tuple(y.shape) == tuple(expected_output_shape)
        assert np.all(np.isfinite(keras.ops.convert_to_numpy(y)))
    if expected_num_trainable_weights is not None:
        assert len(eager_layer.trainable_weights) == expected_num_trainable_weights
    if expected_num_non_trainable_weights is not None:
        assert (
            len(eager_layer.non_trainable_weights) == expected_num_non_trainable_weights
        )

    model = None
    if run_training_step or run_save_test:
        model = keras.Sequential(
            [
                keras.Input(batch_shape=(None,) + tuple(input_shape[1:])),
                layer_cls(**init_kwargs),
            ]
        )
    if run_training_step:
        model.compile(optimizer="sgd", loss="mse")
        target = _random_input(
            (input_shape[0],) + tuple(expected_output_shape[1:]), "float32", 1
        )
        history = model.fit(x, target, batch_size=input_shape[0], epochs=1, verbose=0)
        assert np.isfinite(history.history["loss"][0])
    if run_save_test:
        assert_model_save_round_trip(model, x, tmp_path)
    return layer


def assert_model_save_round_trip(model, x, tmp_path):
    """Saves `model` to `.keras`, reloads it safely, compares predictions."""
    path = os.path.join(str(tmp_path), "model.keras")
    model.save(path)
    restored = keras.saving.load_model(path, safe_mode=True)
    for original, loaded in zip(model.layers, restored.layers, strict=True):
        assert type(original) is type(loaded)
    np.testing.assert_allclose(
        model.predict(x, verbose=0), restored.predict(x, verbose=0), rtol=0, atol=0
    )
    return restored


def run_python(code, *, env=None, timeout=300, cwd=REPO_ROOT):
    """Runs `code` in a fresh Python process, importing keras_reg from this tree."""
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = REPO_ROOT + os.pathsep + full_env.get("PYTHONPATH", "")
    full_env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if env:
        full_env.update(env)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def invalid_message(name, expected, value):
    """The package's one error template, as `_validation.invalid_argument` writes it."""
    return (
        f"Invalid value received for argument `{name}`. Expected {expected}. "
        f"Received: {name}={value!r}"
    )


def raised_message(factory):
    """Calls `factory()` and returns the message of the ValueError it raises."""
    try:
        factory()
    except ValueError as error:
        return str(error)
    raise AssertionError(f"{factory} did not raise ValueError")


def assert_same_public_state(ours, theirs, attributes):
    """Both layers have the same config (but the name) and the same attributes."""
    our_config, their_config = ours.get_config(), theirs.get_config()
    our_config.pop("name")
    their_config.pop("name")
    assert our_config == their_config
    for attribute in attributes:
        assert hasattr(ours, attribute) == hasattr(theirs, attribute), attribute
        if hasattr(theirs, attribute):
            mine, keras_value = getattr(ours, attribute), getattr(theirs, attribute)
            # InputSpec has no __eq__; its repr lists every field.
            assert mine == keras_value or repr(mine) == repr(keras_value), attribute
    assert len(ours.variables) == len(theirs.variables)
    assert len(ours.weights) == len(theirs.weights)
    assert hasattr(ours, "seed_generator") == hasattr(theirs, "seed_generator")


def assert_build_rule_like_keras(ours_cls, theirs_cls, args, x):
    """Keras's rule: built at construction unless a subclass overrides `build`."""
    for base in (ours_cls, theirs_cls):
        assert base(*args).built

        class WithBuild(base):
            def build(self, input_shape):
                self.scale = self.add_weight(
                    shape=(input_shape[-1],), initializer="ones", name="scale"
                )

            def call(self, inputs, training=False):
                return super().call(inputs, training=training) * self.scale

        layer = WithBuild(*args)
        assert not layer.built, base
        layer(x)
        assert layer.built
        assert [tuple(w.shape) for w in layer.weights] == [(x.shape[-1],)]


def assert_weights_files_interchangeable(ours, theirs, x, tmp_path):
    """`.weights.h5` files move between two models in both directions.

    `ours` and `theirs` build layers (called with no argument) placed between
    the same Dense layers; predictions after loading equal the source's.
    """

    def model(make_layer, seed):
        keras.utils.set_random_seed(seed)
        return keras.Sequential(
            [
                keras.Input(x.shape[1:]),
                keras.layers.Dense(6),
                make_layer(),
                keras.layers.Dense(3),
            ]
        )

    for index, (source, target) in enumerate(
        [(model(ours, 1), model(theirs, 2)), (model(theirs, 3), model(ours, 4))]
    ):
        path = os.path.join(str(tmp_path), f"direction{index}.weights.h5")
        source.save_weights(path)
        target.load_weights(path)
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(source(x)), keras.ops.convert_to_numpy(target(x))
        )
