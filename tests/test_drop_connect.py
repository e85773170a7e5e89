import json

import keras
import numpy as np
import pytest

from keras_reg.layers import DropConnect
from tests.helpers import assert_model_save_round_trip, run_layer_test
from tests.test_dropout import reference_keep

BACKEND = keras.backend.backend()


def _numpy(x):
    return keras.ops.convert_to_numpy(x)


def _dense_drop_connect(**kwargs):
    return DropConnect(keras.layers.Dense(4), **kwargs)


def _conv_drop_connect(**kwargs):
    return DropConnect(keras.layers.Conv2D(3, 2, padding="same"), **kwargs)


@pytest.mark.parametrize("rate", [0.0, 1.0])
def test_rates_that_never_draw_hold_no_seed_state(rate, tmp_path):
    # As Keras's Dropout at rate 0: no generator; the variables are the Dense's.
    layer = _dense_drop_connect(rate=rate, seed=3)
    model = keras.Sequential([keras.Input((5,)), layer])
    assert not hasattr(layer, "seed_generator")
    assert [v.path for v in layer.variables] == [v.path for v in layer.layer.variables]
    x = np.ones((2, 5), "float32")
    expected = np.zeros((2, 4)) if rate == 1 else _numpy(layer.layer(x))
    np.testing.assert_allclose(_numpy(layer(x, training=True)), expected, atol=0)
    assert_model_save_round_trip(model, x, tmp_path)


@pytest.mark.parametrize(
    "factory, input_shape, output_shape",
    [
        (_dense_drop_connect, (2, 5), (2, 4)),
        (_conv_drop_connect, (2, 4, 4, 2), (2, 4, 4, 3)),
    ],
    ids=["Dense", "Conv2D"],
)
def test_layer_battery(factory, input_shape, output_shape, tmp_path):
    layer = run_layer_test(
        factory,
        {"rate": 0.3, "seed": 2},
        input_shape,
        tmp_path,
        expected_output_shape=output_shape,
        expected_num_trainable_weights=2,
        expected_num_non_trainable_weights=0,
    )
    assert isinstance(layer, DropConnect)


def test_mask_is_on_the_kernel_and_shared_by_the_batch():
    rate = 0.5
    layer = DropConnect(keras.layers.Dense(6, use_bias=False), rate, seed=3)
    # Stacked identity blocks: each output row is one row of the kernel.
    x = np.concatenate([np.eye(5, dtype="float32")] * 2)
    y = _numpy(layer(x, training=True))
    kernel = _numpy(layer.layer.kernel)
    keep = reference_keep(kernel.shape, rate, 3, 0)
    expected = np.where(keep, kernel * np.float32(1 / (1 - rate)), 0)
    np.testing.assert_allclose(y[:5], expected, rtol=1e-6, atol=0)
    np.testing.assert_array_equal(y[:5], y[5:])


def _identity_probe(rate, seed):
    """A built DropConnect(Dense(7)) and an identity input: each output row is
    one row of the masked kernel."""
    layer = DropConnect(keras.layers.Dense(7, use_bias=False), rate, seed=seed)
    x = np.eye(5, dtype="float32")
    layer.build(x.shape)
    return layer, x


def _masked_kernel(layer, seed, counter):
    """The documented mask of seed state `(seed, counter)` on the kernel."""
    kernel = _numpy(layer.layer.kernel)
    keep = reference_keep(kernel.shape, layer.rate, seed, counter)
    return np.where(keep, kernel * np.float32(1 / (1 - layer.rate)), 0)


@pytest.mark.parametrize("rate", [0.5, 0.25, 0.3])  # 1-, 2- and 16-bit draws
def test_every_call_draws_the_documented_mask_after_the_first(rate):
    # Assigning a new seed state between calls gives that state's masks.
    layer, x = _identity_probe(rate, seed=3)
    states = [(3, 0), (3, 1), (3, 2), (11, 5), (11, 6), (3, 3), (12, 0), (11, 1)]
    for seed, counter in states:
        layer.seed_generator.state.assign(np.array([seed, counter], "int32"))
        expected = _masked_kernel(layer, seed, counter)
        y = _numpy(layer(x, training=True))
        np.testing.assert_allclose(y, expected, rtol=1e-6, atol=0)


@pytest.mark.skipif(BACKEND != "tensorflow", reason="TensorFlow graphs only")
@pytest.mark.parametrize("rate", [0.5, 0.25, 0.3])  # 1-, 2- and 16-bit draws
def test_traced_graph_follows_a_seed_assigned_after_tracing(rate):
    # The graph captures the first hash round of the seed it was traced with;
    # a seed assigned later must still give its own masks.
    import tensorflow as tf

    layer, x = _identity_probe(rate, seed=3)
    step = tf.function(lambda x: layer(x, training=True))
    for seed, counter in [(3, 0), (11, 5), (3, 9), (11, 6)]:
        layer.seed_generator.state.assign(np.array([seed, counter], "int32"))
        expected = _masked_kernel(layer, seed, counter)
        np.testing.assert_allclose(_numpy(step(x)), expected, rtol=1e-6, atol=0)
    assert step.experimental_get_tracing_count() == 1


@pytest.mark.skipif(BACKEND != "tensorflow", reason="TensorFlow graphs only")
def test_stateless_call_traced_in_a_graph_draws_the_documented_mask():
    # Inside a StatelessScope the seed variable reads as the traced state, so
    # no first hash round can be captured when the graph is traced.
    import tensorflow as tf

    layer, x = _identity_probe(0.5, seed=3)
    step = tf.function(
        lambda trainable, state, x: layer.stateless_call(
            trainable, state, x, training=True
        )
    )
    trainable = [v.value for v in layer.trainable_variables]
    state = [tf.constant([11, 4], tf.int32)]
    y, new_state = step(trainable, state, x)
    expected = _masked_kernel(layer, 11, 4)
    np.testing.assert_allclose(_numpy(y), expected, rtol=1e-6, atol=0)
    np.testing.assert_array_equal(_numpy(new_state[0]), [11, 5])


def test_fresh_mask_each_call_and_stored_kernel_unchanged():
    layer = DropConnect(keras.layers.Dense(8), 0.5, seed=4)
    x = np.ones((2, 8), dtype="float32")
    layer.build(x.shape)
    before = _numpy(layer.layer.kernel).copy()
    first = _numpy(layer(x, training=True))
    second = _numpy(layer(x, training=True))
    assert not np.array_equal(first, second)
    np.testing.assert_array_equal(_numpy(layer.layer.kernel), before)


def test_identity_wrapper_at_inference():
    dense = keras.layers.Dense(3)
    layer = DropConnect(dense, 0.9, seed=1)
    x = np.random.default_rng(0).normal(size=(4, 5)).astype("float32")
    np.testing.assert_array_equal(_numpy(layer(x)), _numpy(dense(x)))


def test_gradient_reaches_the_stored_kernel_through_the_mask():
    rate, units, lr = 0.25, 3, 0.5
    layer = DropConnect(keras.layers.Dense(units, use_bias=False), rate, seed=5)
    model = keras.Sequential([keras.Input((4,)), layer])
    model.compile(optimizer=keras.optimizers.SGD(lr), loss="mean_absolute_error")
    before = _numpy(layer.layer.kernel).copy()
    x = np.ones((2, 4), dtype="float32")
    model.fit(x, np.full((2, units), -1e3), batch_size=2, epochs=1, verbose=0)
    # MAE with targets far below the outputs: dL/dy = 1 / (batch * units),
    # so dL/dK = sum_b x_b * mask / (1 - rate) / (batch * units).
    keep = reference_keep(before.shape, rate, 5, 0)
    expected = before - lr * keep / (1 - rate) / units
    np.testing.assert_allclose(_numpy(layer.layer.kernel), expected, rtol=1e-5)


def test_wrapped_regularizer_applies_to_the_stored_kernel():
    dense = keras.layers.Dense(3, kernel_regularizer=keras.regularizers.L2(0.1))
    model = keras.Sequential([keras.Input((4,)), DropConnect(dense, 0.5, seed=1)])
    model(np.ones((2, 4)), training=True)
    kernel = _numpy(dense.kernel)
    assert len(model.losses) == 1
    np.testing.assert_allclose(
        float(_numpy(model.losses[0])), 0.1 * np.sum(kernel**2), rtol=1e-5
    )


@pytest.mark.parametrize("batch", [1, 4])
def test_wrapped_activity_regularizer_counts_once_per_sample_as_in_keras(batch):
    dense = keras.layers.Dense(
        3, use_bias=False, activity_regularizer=keras.regularizers.L1(1.0)
    )
    layer = DropConnect(dense, 0.5, seed=2)
    # Rows of the identity give the masked kernel's rows as the output.
    x = np.eye(4, dtype="float32")[:batch]
    y = _numpy(layer(x, training=True))
    assert len(layer.losses) == 1
    # Oracle: Keras's own Dense, with the masked kernel as its kernel, records
    # the penalty of the same output (Keras divides it by the batch size).
    oracle = keras.layers.Dense(
        3, use_bias=False, activity_regularizer=keras.regularizers.L1(1.0)
    )
    oracle.build((None, 4))
    masked = np.zeros((4, 3), "float32")
    masked[:batch] = y
    oracle.kernel.assign(masked)
    np.testing.assert_allclose(_numpy(oracle(x)), y)
    np.testing.assert_allclose(
        float(_numpy(layer.losses[0])), float(_numpy(oracle.losses[0])), rtol=1e-6
    )
    np.testing.assert_allclose(
        float(_numpy(layer.losses[0])), np.abs(y).sum() / batch, rtol=1e-6
    )


class _TrainingScaled(keras.layers.Dense):
    """A Dense layer whose `call` reads `training`: doubled in training."""

    def call(self, inputs, training=None):
        outputs = super().call(inputs)
        return outputs * 2 if training else outputs


class _MaskedDense(keras.layers.Dense):
    """A Dense layer whose `call` takes a Keras mask."""

    def call(self, inputs, mask=None):
        return super().call(inputs)


_WRAPPED = {
    "Dense": (lambda: keras.layers.Dense(5, activation="tanh"), (3, 6)),
    "Dense_activity": (
        lambda: keras.layers.Dense(
            5, activity_regularizer=keras.regularizers.L2(0.1), use_bias=False
        ),
        (3, 6),
    ),
    "EinsumDense": (
        lambda: keras.layers.EinsumDense("ab,bc->ac", (5,), bias_axes="c"),
        (3, 6),
    ),
    "Conv2D": (lambda: keras.layers.Conv2D(3, 2, padding="same"), (2, 4, 4, 2)),
    "Conv1DTranspose": (lambda: keras.layers.Conv1DTranspose(3, 2), (2, 5, 2)),
    "Dense_training": (lambda: _TrainingScaled(5), (3, 6)),
    "Dense_masked_call": (lambda: _MaskedDense(5), (3, 6)),
    "Dense_mixed_float16": (
        lambda: keras.layers.Dense(5, dtype="mixed_float16"),
        (3, 6),
    ),
    "Dense_autocast_off": (lambda: keras.layers.Dense(5, autocast=False), (3, 6)),
    "Dense_rematerialized": (lambda: _rematerialized_dense(5), (3, 6)),
}


def _rematerialized_dense(units):
    with keras.RematScope(mode="activations"):
        return keras.layers.Dense(units, activation="relu")


def _gradients(outputs, upstream, sources):
    """d sum(outputs * upstream) / d sources, on PyTorch's autograd."""
    import torch

    loss = (outputs.float() * torch.from_numpy(upstream)).sum()
    return [_numpy(g) for g in torch.autograd.grad(loss, sources)]


@pytest.mark.parametrize("wrapped", sorted(_WRAPPED))
def test_training_call_is_the_wrapped_layer_with_the_masked_kernel(wrapped):
    # Oracle: the same wrapped layer, called by Keras with the documented
    # masked kernel as its kernel: same outputs, losses and, on PyTorch,
    # input and kernel gradients (the kernel's through the mask).
    factory, shape = _WRAPPED[wrapped]
    rng = np.random.default_rng(3)
    x = rng.normal(size=shape).astype("float32")
    policy = factory().dtype_policy.name
    layer = DropConnect(factory(), 0.4, seed=5, dtype=policy)
    layer.build(shape)
    oracle = factory()
    oracle.build(shape)
    weights = [rng.normal(size=w.shape).astype("f4") for w in layer.layer.weights]
    layer.layer.set_weights(weights)
    oracle.set_weights(weights)
    keep = reference_keep(layer.layer.kernel.shape, 0.4, 5, 0)
    # Under a mixed policy the kernel is read, and masked, in the compute dtype.
    dtype = layer.layer.compute_dtype
    multiplier = (keep * np.float32(1 / 0.6)).astype(dtype)

    def masked(kernel):
        return (kernel.astype(dtype) * multiplier).astype("float32")

    oracle.kernel.assign(masked(_numpy(layer.layer.kernel)))
    if BACKEND == "torch":
        import torch

        x = torch.from_numpy(x).requires_grad_(True)
    outputs, expected = layer(x, training=True), oracle(x, training=True)
    np.testing.assert_array_equal(_numpy(outputs), _numpy(expected))
    assert len(layer.losses) == len(oracle.losses) == ("activity" in wrapped)
    for loss, oracle_loss in zip(layer.losses, oracle.losses, strict=True):
        assert float(_numpy(loss)) == float(_numpy(oracle_loss))
    if BACKEND == "torch":
        upstream = rng.normal(size=tuple(outputs.shape)).astype("float32")
        kernel = layer.layer.kernel.value
        grads = _gradients(outputs, upstream, [x, kernel])
        oracle_grads = _gradients(expected, upstream, [x, oracle.kernel.value])
        np.testing.assert_array_equal(grads[0], oracle_grads[0])
        np.testing.assert_array_equal(grads[1], masked(oracle_grads[1]))


@pytest.mark.skipif(BACKEND != "torch", reason="torch's module hooks")
def test_torch_hooks_on_the_wrapped_layer_run_in_training():
    import torch

    layer = DropConnect(keras.layers.Dense(3), 0.5, seed=1)
    x = np.ones((2, 4), "float32")
    layer.build(x.shape)
    seen = []
    for register in (
        layer.layer.register_forward_hook,
        torch.nn.modules.module.register_module_forward_hook,
    ):
        handle = register(lambda module, *args: seen.append(module))
        try:
            layer(x, training=True)
        finally:
            handle.remove()
        assert layer.layer in seen
        seen.clear()


@pytest.mark.parametrize("training", [True, False])
def test_inputs_are_checked_against_the_wrapped_layers_input_spec(training):
    dense = keras.layers.Dense(3)
    layer = DropConnect(dense, 0.5, seed=1)
    layer(np.ones((2, 4), "float32"), training=training)
    with pytest.raises(ValueError) as wrapper_error:
        layer(np.ones((2, 5), "float32"), training=training)
    with pytest.raises(ValueError) as keras_error:
        dense(np.ones((2, 5), "float32"))
    # Keras's message for the wrapped layer's spec (raised by whichever
    # __call__ checks it first: the wrapper's, or the inner one's).
    expected = str(keras_error.value)
    assert "is incompatible with the layer" in expected
    assert expected.split("layer:")[-1] in str(wrapper_error.value)


def test_quantized_wrapped_layer_is_refused_when_called():
    dense = keras.layers.Dense(3)
    dense.build((2, 4))
    layer = DropConnect(dense, 0.5, seed=1)
    dense.quantize("int8")
    with pytest.raises(ValueError) as info:
        layer(np.ones((2, 4), "float32"), training=True)
    assert str(info.value) == _message("layer", _LAYER_EXPECTED, dense)


def test_wrapped_constraint_still_applies():
    dense = keras.layers.Dense(4, kernel_constraint=keras.constraints.MaxNorm(0.1))
    model = keras.Sequential([keras.Input((6,)), DropConnect(dense, 0.5, seed=1)])
    model.compile(optimizer=keras.optimizers.SGD(1.0), loss="mse")
    rng = np.random.default_rng(1)
    model.fit(rng.normal(size=(8, 6)), rng.normal(size=(8, 4)) * 10, verbose=0)
    norms = np.linalg.norm(_numpy(dense.kernel), axis=0)
    assert np.all(norms <= 0.1 + 1e-6)


def test_serializes_with_the_wrapped_layer():
    dense = keras.layers.Dense(
        5, activation="relu", kernel_regularizer=keras.regularizers.L2(0.01)
    )
    layer = DropConnect(dense, 0.2, seed=8, name="dc")
    text = json.dumps(keras.saving.serialize_keras_object(layer))
    restored = keras.saving.deserialize_keras_object(json.loads(text))
    assert type(restored) is DropConnect
    assert type(restored.layer) is keras.layers.Dense
    assert restored.layer.get_config() == dense.get_config()
    assert (restored.rate, restored.seed, restored.name) == (0.2, 8, "dc")


def test_save_load_keeps_weights_and_seed_state(tmp_path):
    layer = DropConnect(keras.layers.Dense(6), 0.5, seed=6)
    model = keras.Sequential([keras.Input((5,)), layer])
    x = np.random.default_rng(2).normal(size=(3, 5)).astype("float32")
    model(x, training=True)
    restored = assert_model_save_round_trip(model, x, tmp_path)
    np.testing.assert_array_equal(
        _numpy(restored.layers[0].layer.kernel), _numpy(layer.layer.kernel)
    )
    np.testing.assert_array_equal(
        _numpy(model(x, training=True)), _numpy(restored(x, training=True))
    )


def test_rate_one_leaves_only_the_bias():
    dense = keras.layers.Dense(3, bias_initializer="ones")
    y = _numpy(DropConnect(dense, 1.0)(np.ones((2, 4)), training=True))
    np.testing.assert_array_equal(y, np.ones((2, 3)))


def _message(name, expected, value):
    return (
        f"Invalid value received for argument `{name}`. Expected {expected}. "
        f"Received: {name}={value!r}"
    )


_LAYER_EXPECTED = (
    "a Keras layer with a `kernel` weight, such as Dense or Conv2D, "
    "not LoRA-enabled or quantized"
)


@pytest.mark.parametrize("layer", ["dense", None, keras.layers.Dense])
def test_non_layer_raises(layer):
    with pytest.raises(ValueError) as info:
        DropConnect(layer, 0.5)
    assert str(info.value) == _message("layer", _LAYER_EXPECTED, layer)


def test_layer_without_kernel_raises_at_build():
    norm = keras.layers.LayerNormalization()
    layer = DropConnect(norm, 0.5)
    with pytest.raises(ValueError) as info:
        layer.build((2, 3))
    assert str(info.value) == _message("layer", _LAYER_EXPECTED, norm)


def test_built_layer_without_kernel_raises_at_construction():
    relu = keras.layers.ReLU()  # stateless layers are built at construction
    with pytest.raises(ValueError) as info:
        DropConnect(relu, 0.5)
    assert str(info.value) == _message("layer", _LAYER_EXPECTED, relu)


@pytest.mark.parametrize("rate", [-1.0, 1.5, float("nan"), True, None])
def test_bad_rate_raises(rate):
    with pytest.raises(ValueError) as info:
        DropConnect(keras.layers.Dense(2), rate)
    assert str(info.value) == _message("rate", "a float value between 0 and 1", rate)


@pytest.mark.parametrize("seed", [-2, 3.0, "3"])
def test_bad_seed_raises(seed):
    with pytest.raises(ValueError) as info:
        DropConnect(keras.layers.Dense(2), 0.5, seed=seed)
    assert str(info.value) == _message("seed", "an int >= 0", seed)


def test_from_config_validates_too():
    config = DropConnect(keras.layers.Dense(2), 0.5).get_config()
    config["rate"] = -0.5
    with pytest.raises(ValueError) as info:
        DropConnect.from_config(config)
    assert str(info.value) == _message("rate", "a float value between 0 and 1", -0.5)
