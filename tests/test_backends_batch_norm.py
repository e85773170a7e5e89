"""Tests for BatchNormalization's backend fast paths (`keras_reg._backends`).

`tensorflow_batch_norm` and `torch_batch_norm` must give the numbers of the
portable `keras.ops` path, which `portable_only()` forces; JAX has no fast
path.
"""

import importlib

import keras
import numpy as np
import pytest

from keras_reg._backends import fast_path, portable_only
from keras_reg.layers import BatchNormalization
from tests.test_batch_normalization import _gradients, to_numpy

BACKEND = keras.backend.backend()
HAS_FAST_PATH = BACKEND in ("tensorflow", "torch")
needs_fast_path = pytest.mark.skipif(not HAS_FAST_PATH, reason="no fast path")


def _takes_fast_path(monkeypatch, layer, shape, training=True, mask=None):
    """Whether `layer` returns its backend fast path's result for this call.

    On TensorFlow the call runs inside a `tf.function`, as in `fit`.
    """
    module = importlib.import_module(f"keras_reg._backends.{BACKEND}_batch_norm")
    job = "train" if training else "infer"
    original = getattr(module, job)
    taken = []

    def spy(*args):
        result = original(*args)
        taken.append(result is not None)
        return result

    x = np.zeros(shape, "float32")
    layer.build(shape)
    with monkeypatch.context() as patch:
        patch.setattr(module, job, spy)
        if BACKEND == "tensorflow":
            import tensorflow as tf

            tf.function(lambda x: layer(x, training=training, mask=mask))(x)
        else:
            layer(x, training=training, mask=mask)
    return taken == [True]


def test_fast_path_module_per_backend():
    module = fast_path("batch_norm")
    if HAS_FAST_PATH:
        assert module.__name__ == f"keras_reg._backends.{BACKEND}_batch_norm"
    else:
        assert module is None
    with portable_only():
        assert fast_path("batch_norm") is None


@needs_fast_path
def test_fast_path_is_taken_only_where_valid(monkeypatch):
    def takes(layer, shape, **kwargs):
        return _takes_fast_path(monkeypatch, layer, shape, **kwargs)

    for training in (True, False):
        assert takes(BatchNormalization(), (4, 8, 8, 3), training=training)
        assert takes(BatchNormalization(), (4, 3), training=training)
        # Channels first: torch's native layout; TensorFlow's CPU NCHW kernel
        # measured slower than the portable path.
        first = BatchNormalization(axis=1)
        assert takes(first, (4, 3, 8, 8), training=training) is (BACKEND == "torch")
        assert not takes(BatchNormalization(axis=2), (4, 3, 5, 6), training=training)
        with portable_only():
            assert not takes(BatchNormalization(), (4, 3), training=training)
    # Never in training: masks, renorm, a single value per channel, an
    # epsilon the fused TensorFlow kernel would raise.
    assert not takes(BatchNormalization(), (4, 3), mask=np.ones((4,), bool))
    assert not takes(BatchNormalization(renorm=True), (4, 3))
    assert not takes(BatchNormalization(), (1, 3))
    assert takes(BatchNormalization(epsilon=1e-6), (4, 3)) is (BACKEND == "torch")
    # Inference takes any epsilon, and renorm inference is plain inference.
    assert takes(BatchNormalization(epsilon=1e-6), (4, 3), training=False)
    assert takes(BatchNormalization(renorm=True), (4, 3), training=False)


@pytest.mark.skipif(BACKEND != "tensorflow", reason="TensorFlow only")
def test_synchronized_training_runs_the_portable_path(monkeypatch):
    layer = BatchNormalization(synchronized=True)
    assert not _takes_fast_path(monkeypatch, layer, (4, 3))


FAST_PATH_CASES = [
    ((16, 5), -1, {}),
    ((4, 6, 5), -1, {}),
    ((4, 6, 6, 5), -1, {}),
    ((2, 3, 4, 4, 5), -1, {"center": False}),
    ((4, 5, 6, 6), 1, {"scale": False}),
    ((4, 5, 7), 1, {"epsilon": 0.1}),
    ((2, 5), -1, {"center": False, "scale": False}),
    ((8, 4), -1, {"epsilon": 1e-7}),
]


@needs_fast_path
@pytest.mark.parametrize("shape, axis, kwargs", FAST_PATH_CASES)
def test_fast_path_matches_portable_path(shape, axis, kwargs):
    rng = np.random.default_rng(20)
    x = rng.normal(3.0, 2.0, shape).astype("float32")
    upstream = rng.normal(size=shape).astype("float32")

    def run():
        layer = BatchNormalization(axis=axis, momentum=0.6, **kwargs)
        layer.build(shape)
        outputs = [to_numpy(layer(x, training=True)) for _ in range(2)]
        outputs.append(to_numpy(layer(x, training=False)))
        grads = _gradients(layer, x, upstream)
        inference_grads = _gradients(layer, x, upstream, training=False)
        grads.update({f"inference {k}": v for k, v in inference_grads.items()})
        return outputs, grads, layer.get_weights()

    fast_out, fast_grads, fast_weights = run()
    with portable_only():
        ref_out, ref_grads, ref_weights = run()
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


def _torch_cuda():
    if BACKEND != "torch":
        return False
    import torch

    return torch.cuda.is_available()


@pytest.mark.skipif(not _torch_cuda(), reason="a CPU tensor into a layer on a GPU")
@pytest.mark.parametrize("portable", [False, True])
def test_cpu_input_moves_to_the_layers_gpu_as_in_keras(portable):
    import contextlib

    import torch

    x = np.random.default_rng(3).normal(2.0, 3.0, (8, 4, 4, 5)).astype("float32")
    ours = BatchNormalization(momentum=0.5)
    ours.build(x.shape)
    theirs = keras.layers.BatchNormalization(momentum=0.5)
    theirs.build(x.shape)
    for training in (True, False):
        with portable_only() if portable else contextlib.nullcontext():
            y = ours(torch.tensor(x), training=training)
        expected = theirs(torch.tensor(x), training=training)
        assert y.device == expected.device and y.is_cuda
        np.testing.assert_allclose(to_numpy(y), to_numpy(expected), atol=1e-5)
    np.testing.assert_allclose(
        to_numpy(ours.moving_variance), to_numpy(theirs.moving_variance), rtol=1e-5
    )


# TensorFlow's routes: XLA inference only where it compiles once -----------------


@pytest.mark.skipif(BACKEND != "tensorflow", reason="TensorFlow's routes only")
@pytest.mark.parametrize(
    "signature, fast",
    [
        (None, False),  # eager: an XLA call would retrace for every shape
        ((7, 3, 5), True),
        ((None, 3, 5), True),  # only the batch size varies
        ((None, None, 5), False),  # a new length would compile each time
    ],
)
def test_tensorflow_inference_routes_match_the_portable_path(
    signature, fast, monkeypatch
):
    import tensorflow as tf

    module = fast_path("batch_norm")
    infer = module.infer
    taken = []

    def spy(*args):
        result = infer(*args)
        taken.append(result is not None)
        return result

    monkeypatch.setattr(module, "infer", spy)
    rng = np.random.default_rng(23)
    x = rng.normal(1.0, 2.0, (7, 3, 5)).astype("float32")
    upstream = rng.normal(size=x.shape).astype("float32")
    # gamma, beta, moving mean, moving variance
    weights = [rng.normal(size=5).astype("float32") for _ in range(3)]
    weights.append(rng.uniform(0.5, 2.0, 5).astype("float32"))

    def run():
        layer = BatchNormalization(momentum=0.5)
        layer.build(x.shape)
        layer.set_weights(weights)

        def step(x):
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
        return [to_numpy(y)] + [to_numpy(g) for g in grads]

    results = run()
    assert taken == [fast]
    with portable_only():
        expected = run()
    for a, b in zip(results, expected, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(BACKEND != "tensorflow", reason="TensorFlow graphs only")
@pytest.mark.parametrize("batch", [1, 5])
def test_fused_kernel_with_batch_size_unknown_while_tracing(batch):
    import tensorflow as tf

    rng = np.random.default_rng(21)
    x = rng.normal(2.0, 1.0, (batch, 4)).astype("float32")

    def run():
        layer = BatchNormalization(momentum=0.5)
        layer.build((None, 4))
        step = tf.function(
            lambda x: layer(x, training=True),
            input_signature=[tf.TensorSpec((None, 4), tf.float32)],
        )
        return to_numpy(step(x)), layer.get_weights()

    outputs, weights = run()
    with portable_only():
        expected_outputs, expected_weights = run()
    np.testing.assert_allclose(outputs, expected_outputs, atol=1e-5)
    for a, b in zip(weights, expected_weights, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)


@pytest.mark.skipif(BACKEND != "tensorflow", reason="XLA through TensorFlow")
def test_fused_kernel_trains_under_xla():
    rng = np.random.default_rng(22)
    x = rng.normal(size=(16, 4, 4, 3)).astype("float32")

    def run():
        keras.utils.set_random_seed(0)
        model = keras.Sequential(
            [keras.Input((4, 4, 3)), BatchNormalization(momentum=0.5)]
        )
        model.compile("sgd", "mse", jit_compile=True)
        model.fit(x, x * 2.0, batch_size=8, epochs=1, shuffle=False, verbose=0)
        return model.get_weights()

    weights = run()
    with portable_only():
        expected = run()
    for a, b in zip(weights, expected, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
