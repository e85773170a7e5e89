"""BatchNormalization beyond Keras 3: backend kernels, ghost batch norm,
synchronized statistics across devices."""

import json
import re

import keras
import numpy as np
import pytest

from keras_reg.layers import BatchNormalization
from keras_reg.layers import _batch_norm_fast as fast
from tests.helpers import assert_config_round_trip, run_layer_test, run_python
from tests.test_batch_normalization import (
    _gradients,
    random_weights,
    reference_train,
    to_numpy,
)

BACKEND = keras.backend.backend()
HAS_KERNEL = BACKEND in ("tensorflow", "torch")


# Backend kernels ----------------------------------------------------------------


def _uses_kernel(layer, shape, training=True, mask=None):
    x = keras.ops.convert_to_tensor(np.zeros(shape, "float32"))
    return fast.available(layer, x, mask=mask, training=training)


def test_kernel_is_chosen_only_where_valid():
    last = BatchNormalization()
    assert _uses_kernel(last, (4, 8, 8, 3)) is HAS_KERNEL
    assert _uses_kernel(last, (4, 3)) is HAS_KERNEL
    assert _uses_kernel(last, (4, 8, 3), training=False) is HAS_KERNEL
    # Channels first: torch's native layout; TensorFlow's CPU NCHW kernel
    # measured slower than the portable path.
    first = BatchNormalization(axis=1)
    assert _uses_kernel(first, (4, 3, 8, 8)) is (BACKEND == "torch")
    # Never valid: masks, renorm and synchronized training, a middle axis,
    # a single value per channel, an epsilon the fused kernel would raise.
    assert not _uses_kernel(last, (4, 3), mask=np.ones((4,), bool))
    assert not _uses_kernel(BatchNormalization(renorm=True), (4, 3))
    assert not _uses_kernel(BatchNormalization(axis=2), (4, 3, 5, 6))
    assert not _uses_kernel(last, (1, 3))
    if BACKEND == "tensorflow":
        # The fused training kernel would raise this epsilon; inference runs
        # the portable formula compiled by XLA, which takes any epsilon.
        assert not _uses_kernel(BatchNormalization(epsilon=1e-6), (4, 3))
        small = BatchNormalization(epsilon=1e-6)
        assert _uses_kernel(small, (4, 3), training=False)
    # Renorm inference is plain inference.
    renorm = BatchNormalization(renorm=True)
    assert _uses_kernel(renorm, (4, 3), training=False) is HAS_KERNEL


KERNEL_CASES = [
    ((16, 5), -1, {}),
    ((4, 6, 5), -1, {}),
    ((4, 6, 6, 5), -1, {}),
    ((2, 3, 4, 4, 5), -1, {"center": False}),
    ((4, 5, 6, 6), 1, {"scale": False}),
    ((4, 5, 7), 1, {"epsilon": 0.1}),
    ((2, 5), -1, {"center": False, "scale": False}),
    ((8, 4), -1, {"epsilon": 1e-7}),
]


def _torch_cuda():
    if BACKEND != "torch":
        return False
    import torch

    return torch.cuda.is_available()


@pytest.mark.skipif(not _torch_cuda(), reason="a CPU tensor into a layer on a GPU")
@pytest.mark.parametrize("fast_path", [True, False])
def test_cpu_input_moves_to_the_layers_gpu_as_in_keras(fast_path):
    import torch

    x = np.random.default_rng(3).normal(2.0, 3.0, (8, 4, 4, 5)).astype("float32")
    ours = BatchNormalization(momentum=0.5)
    ours.build(x.shape)
    ours._use_fast_path = fast_path
    theirs = keras.layers.BatchNormalization(momentum=0.5)
    theirs.build(x.shape)
    for training in (True, False):
        y = ours(torch.tensor(x), training=training)
        expected = theirs(torch.tensor(x), training=training)
        assert y.device == expected.device and y.is_cuda
        np.testing.assert_allclose(to_numpy(y), to_numpy(expected), atol=1e-5)
    np.testing.assert_allclose(
        to_numpy(ours.moving_variance), to_numpy(theirs.moving_variance), rtol=1e-5
    )


@pytest.mark.skipif(not HAS_KERNEL, reason="JAX runs the portable path")
@pytest.mark.parametrize("shape, axis, kwargs", KERNEL_CASES)
def test_kernel_matches_portable_path(shape, axis, kwargs):
    rng = np.random.default_rng(20)
    x = rng.normal(3.0, 2.0, shape).astype("float32")
    upstream = rng.normal(size=shape).astype("float32")
    results = []
    for use_kernel in (True, False):
        layer = BatchNormalization(axis=axis, momentum=0.6, **kwargs)
        layer.build(shape)
        layer._use_fast_path = use_kernel
        outputs = [to_numpy(layer(x, training=True)) for _ in range(2)]
        outputs.append(to_numpy(layer(x, training=False)))
        grads = _gradients(layer, x, upstream)
        inference_grads = _gradients(layer, x, upstream, training=False)
        grads.update({f"inference {k}": v for k, v in inference_grads.items()})
        results.append((outputs, grads, layer.get_weights()))
    (fast_out, fast_grads, fast_weights), (ref_out, ref_grads, ref_weights) = results
    for a, b in zip(fast_out, ref_out, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)
    assert fast_grads.keys() == ref_grads.keys()
    for name in ref_grads:
        scale = max(1.0, np.abs(ref_grads[name]).max())
        np.testing.assert_allclose(
            fast_grads[name], ref_grads[name], atol=2e-5 * scale, err_msg=name
        )
    for a, b in zip(fast_weights, ref_weights, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.skipif(BACKEND != "tensorflow", reason="TensorFlow's routes only")
@pytest.mark.parametrize(
    "signature, route",
    [
        (None, "fused"),  # eager: an XLA call would retrace for every shape
        ((7, 3, 5), "xla"),
        ((None, 3, 5), "xla"),  # only the batch size varies
        ((None, None, 5), "fused"),  # a new length would compile each time
    ],
)
def test_tensorflow_inference_routes_match_the_portable_path(
    signature, route, monkeypatch
):
    import tensorflow as tf

    used = []
    fused = fast._tf_fused

    def spy(*args, **kwargs):
        used.append("fused")
        return fused(*args, **kwargs)

    monkeypatch.setattr(fast, "_tf_fused", spy)
    rng = np.random.default_rng(23)
    x = rng.normal(1.0, 2.0, (7, 3, 5)).astype("float32")
    upstream = rng.normal(size=x.shape).astype("float32")
    # gamma, beta, moving mean, moving variance
    weights = [rng.normal(size=5).astype("float32") for _ in range(3)]
    weights.append(rng.uniform(0.5, 2.0, 5).astype("float32"))
    results = []
    for use_kernel in (True, False):
        layer = BatchNormalization(momentum=0.5)
        layer.build(x.shape)
        layer.set_weights(weights)
        layer._use_fast_path = use_kernel

        def step(x, layer=layer):
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = layer(x, training=False)
                loss = tf.reduce_sum(y * upstream)
            return y, tape.gradient(loss, [x] + layer.trainable_variables)

        if signature is not None:
            step = tf.function(
                step, input_signature=[tf.TensorSpec(signature, tf.float32)]
            )
        y, grads = step(tf.constant(x))
        results.append([to_numpy(y)] + [to_numpy(g) for g in grads])
        if use_kernel:
            assert used == (["fused"] if route == "fused" else [])
    for a, b in zip(*results, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(BACKEND != "tensorflow", reason="TensorFlow graphs only")
@pytest.mark.parametrize("batch", [1, 5])
def test_fused_kernel_with_batch_size_unknown_while_tracing(batch):
    import tensorflow as tf

    rng = np.random.default_rng(21)
    x = rng.normal(2.0, 1.0, (batch, 4)).astype("float32")
    results = []
    for use_kernel in (True, False):
        layer = BatchNormalization(momentum=0.5)
        layer.build((None, 4))
        layer._use_fast_path = use_kernel
        step = tf.function(
            lambda x, layer=layer: layer(x, training=True),
            input_signature=[tf.TensorSpec((None, 4), tf.float32)],
        )
        results.append((to_numpy(step(x)), layer.get_weights()))
    np.testing.assert_allclose(results[0][0], results[1][0], atol=1e-5)
    for a, b in zip(results[0][1], results[1][1], strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)


@pytest.mark.skipif(BACKEND != "tensorflow", reason="XLA through TensorFlow")
def test_fused_kernel_trains_under_xla():
    rng = np.random.default_rng(22)
    x = rng.normal(size=(16, 4, 4, 3)).astype("float32")
    states = []
    for use_kernel in (True, False):
        keras.utils.set_random_seed(0)
        layer = BatchNormalization(momentum=0.5)
        layer._use_fast_path = use_kernel
        model = keras.Sequential([keras.Input((4, 4, 3)), layer])
        model.compile("sgd", "mse", jit_compile=True)
        model.fit(x, x * 2.0, batch_size=8, epochs=1, shuffle=False, verbose=0)
        states.append(model.get_weights())
    for a, b in zip(*states, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


# Ghost batch normalization ---------------------------------------------------


def reference_ghost(
    x,
    size,
    axis,
    gamma,
    beta,
    moving_mean,
    moving_variance,
    momentum,
    epsilon,
    mask=None,
):
    """Ghost batch norm in NumPy, with tf-keras's grouping.

    Virtual batch j holds rows j, j + n, j + 2n, ... (n = batch // size); the
    moving statistics move toward the virtual batches' average statistics.
    """
    n = x.shape[0] // size
    y = np.empty(x.shape, "float64")
    means, variances = [], []
    for j in range(n):
        rows = slice(j, None, n)
        sub_mask = None if mask is None else mask[rows]
        out, mean, variance = reference_train(
            x[rows],
            axis,
            gamma,
            beta,
            np.zeros_like(gamma),
            np.zeros_like(gamma),
            0.0,
            epsilon,
            sub_mask,
        )
        y[rows] = out
        means.append(mean)
        variances.append(variance)
    new_mean = moving_mean * momentum + np.mean(means, axis=0) * (1 - momentum)
    new_variance = moving_variance * momentum + np.mean(variances, axis=0) * (
        1 - momentum
    )
    return y, new_mean, new_variance


@pytest.mark.parametrize(
    "shape, axis, size, use_mask",
    [
        ((8, 3), -1, 2, False),
        ((12, 3), -1, 4, False),
        ((6, 4, 3), -1, 3, True),
        ((8, 3, 4), 1, 2, False),
        ((4, 3, 3, 2), -1, 2, True),
        ((6, 2), -1, 6, False),
    ],
)
def test_ghost_batch_norm_matches_numpy(shape, axis, size, use_mask):
    rng = np.random.default_rng(23)
    x = rng.normal(1.0, 2.0, shape).astype("float32")
    # Shift half of the rows so that virtual batches differ from the batch.
    x[: shape[0] // 2] += 3.0
    mask = None
    if use_mask:
        mask = rng.random(shape[:-1]) < 0.7
        mask[:, 0] = True
    layer = BatchNormalization(axis=axis, momentum=0.7, virtual_batch_size=size)
    layer.build(shape)
    weights = random_weights(shape[axis], rng)
    layer.set_weights(weights)
    y = layer(x, training=True, mask=mask)
    expected, mean, variance = reference_ghost(
        x, size, axis, *weights, momentum=0.7, epsilon=1e-3, mask=mask
    )
    np.testing.assert_allclose(to_numpy(y), expected, atol=3e-5)
    np.testing.assert_allclose(to_numpy(layer.moving_mean), mean, atol=1e-5)
    np.testing.assert_allclose(to_numpy(layer.moving_variance), variance, atol=1e-5)


def test_ghost_batch_norm_inference_is_unchanged():
    rng = np.random.default_rng(24)
    x = rng.normal(size=(6, 3)).astype("float32")
    weights = random_weights(3, rng)
    outputs = []
    for size in (None, 2):
        layer = BatchNormalization(virtual_batch_size=size)
        layer.build(x.shape)
        layer.set_weights(weights)
        outputs.append(to_numpy(layer(x, training=False)))
    np.testing.assert_array_equal(outputs[0], outputs[1])


def test_ghost_batch_with_whole_batch_equals_plain_batch_norm():
    rng = np.random.default_rng(25)
    x = rng.normal(size=(8, 4, 3)).astype("float32")
    results = []
    for size in (None, 8):
        layer = BatchNormalization(virtual_batch_size=size, momentum=0.5)
        results.append((to_numpy(layer(x, training=True)), layer.get_weights()))
    np.testing.assert_allclose(results[0][0], results[1][0], atol=1e-5)
    for a, b in zip(results[0][1], results[1][1], strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)


@pytest.fixture
def plain_call_errors():
    """Keras otherwise wraps errors raised in `call` with argument details."""
    keras.config.disable_traceback_filtering()
    yield
    keras.config.enable_traceback_filtering()


def test_ghost_batch_not_a_multiple_raises(plain_call_errors):
    message = (
        "The batch size must be a multiple of virtual_batch_size=4. "
        "Received: inputs.shape=(6, 3)"
    )
    layer = BatchNormalization(virtual_batch_size=4)
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        layer(np.zeros((6, 3), "float32"), training=True)
    # Inference does not split the batch.
    layer(np.zeros((6, 3), "float32"), training=False)


@pytest.mark.skipif(BACKEND != "tensorflow", reason="TensorFlow graphs only")
def test_ghost_batch_not_a_multiple_raises_at_run_time_in_graphs():
    import tensorflow as tf

    layer = BatchNormalization(virtual_batch_size=4)
    layer.build((None, 3))
    step = tf.function(
        lambda x: layer(x, training=True),
        input_signature=[tf.TensorSpec((None, 3), tf.float32)],
    )
    step(np.zeros((8, 3), "float32"))
    message = "The batch size must be a multiple of virtual_batch_size=4."
    with pytest.raises(tf.errors.InvalidArgumentError, match=re.escape(message)):
        step(np.zeros((6, 3), "float32"))


@pytest.mark.parametrize(
    "kwargs, condition",
    [
        (
            {"renorm": True},
            "when renorm=True (ghost batch normalization does not combine with renorm)",
        ),
        ({"axis": 0}, "when axis=0 (virtual batches split the batch axis)"),
    ],
)
def test_ghost_batch_rejects_arguments_it_does_not_combine_with(kwargs, condition):
    message = (
        f"Invalid value received for argument `virtual_batch_size`. Expected "
        f"None {condition}. Received: virtual_batch_size=2"
    )
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        BatchNormalization(virtual_batch_size=2, **kwargs)


@pytest.mark.skipif(BACKEND == "torch", reason="synchronized raises on torch")
def test_ghost_batch_rejects_synchronized():
    message = (
        "Invalid value received for argument `virtual_batch_size`. Expected "
        "None when synchronized=True (ghost batch normalization does not "
        "combine with synchronized). Received: virtual_batch_size=2"
    )
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        BatchNormalization(virtual_batch_size=2, synchronized=True)


def test_ghost_batch_config_round_trips_and_stays_keras_compatible(tmp_path):
    assert "virtual_batch_size" not in BatchNormalization().get_config()
    layer = BatchNormalization(virtual_batch_size=4)
    assert layer.get_config()["virtual_batch_size"] == 4
    assert assert_config_round_trip(layer).virtual_batch_size == 4
    run_layer_test(
        BatchNormalization,
        {"virtual_batch_size": 2},
        (4, 3, 2),
        tmp_path,
        expected_num_trainable_weights=2,
        expected_num_non_trainable_weights=2,
    )


# Synchronized statistics across devices ------------------------------------------

_GLOBAL_BATCH = """
import json
import numpy as np
rng = np.random.default_rng(0)
# The two device halves differ in mean, so the average of per-device
# variances (about 2.5) is far from the global variance (about 9).
x = np.concatenate(
    [rng.normal(0, 1, (8, 3)), rng.normal(5, 2, (8, 3))]
).astype("float32")
"""


def _fit_and_report(setup):
    return (
        _GLOBAL_BATCH
        + setup
        + """
import keras
import keras_reg
results = {}
for synchronized in (True, False):
    with scope():
        layer = keras_reg.layers.BatchNormalization(
            synchronized=synchronized, momentum=0.0
        )
        model = keras.Sequential([keras.Input((3,)), layer])
        model.compile("sgd", "mse")
    model.fit(x, np.zeros_like(x), batch_size=16, epochs=1, shuffle=False,
              verbose=0)
    results[str(synchronized)] = [
        np.asarray(layer.moving_mean).tolist(),
        np.asarray(layer.moving_variance).tolist(),
    ]
print(json.dumps(results))
"""
    )


def _global_statistics():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 1, (8, 3)), rng.normal(5, 2, (8, 3))]).astype(
        "float32"
    )
    return x.mean(axis=0), x.var(axis=0)


# These run their own backend in a subprocess, whatever the session's backend;
# once is enough, in the default (TensorFlow) session.
once = pytest.mark.skipif(
    BACKEND != "tensorflow", reason="subprocess test, run in the TensorFlow session"
)


@once
def test_synchronized_on_jax_uses_global_batch_of_two_devices():
    setup = """
import contextlib
import jax
import keras
assert len(jax.devices()) == 2, jax.devices()
keras.distribution.set_distribution(
    keras.distribution.DataParallel(devices=jax.devices())
)
scope = contextlib.nullcontext
"""
    result = run_python(
        _fit_and_report(setup),
        env={
            "KERAS_BACKEND": "jax",
            "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
        },
    )
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads(result.stdout.strip().splitlines()[-1])
    mean, variance = _global_statistics()
    # keras.distribution runs one program over the global batch, so the
    # statistics are global with or without the flag.
    for synchronized in ("True", "False"):
        np.testing.assert_allclose(results[synchronized][0], mean, rtol=1e-5)
        np.testing.assert_allclose(results[synchronized][1], variance, rtol=1e-5)


@once
def test_synchronized_on_tensorflow_all_reduces_across_two_replicas():
    setup = """
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration()] * 2
)
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
scope = strategy.scope
"""
    result = run_python(_fit_and_report(setup), env={"KERAS_BACKEND": "tensorflow"})
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads(result.stdout.strip().splitlines()[-1])
    mean, variance = _global_statistics()
    np.testing.assert_allclose(results["True"][0], mean, rtol=1e-5)
    np.testing.assert_allclose(results["True"][1], variance, rtol=1e-5)
    # Unsynchronized replicas each see 8 rows: local statistics, as Keras.
    assert not np.allclose(results["False"][1], variance, rtol=0.1)
