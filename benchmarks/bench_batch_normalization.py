"""keras_reg's BatchNormalization against Keras's, on the current backend.

Run as ``KERAS_BACKEND=<backend> python benchmarks/bench_batch_normalization.py``.
Prints one JSON object per case (shape x mode). The layers are timed in the
same process, interleaved round by round; each sample repeats a step until it
lasts about ``--sample-ms``, and the median of the rounds is reported, so the
ratio survives a noisy machine better than either time.

Modes: ``train`` is forward + backward (gradients for the input, gamma and
beta) + moving-statistics update; ``infer`` is a forward pass with the moving
statistics. Each step is compiled the way Keras runs it: ``tf.function`` on
TensorFlow, ``jax.jit`` on JAX, eager on torch.

``portable_*`` time keras_reg's layer with every backend fast path switched
off (``keras_reg._backends.portable_only``): ``portable_ratio`` is that
portable path against Keras, ``fast_path_speedup`` the portable time over
keras_reg's default one (about 1 where the backend has no fast path for the
case, as on JAX).

``*_gbps`` is the input tensor's size divided by the time, beside the same
figure for a NumPy copy of the tensor, a proxy for the memory-bandwidth limit.
On a GPU, ``device_copy_gbps`` is that figure for ``x + 1`` on the device
(one read and one write of the tensor, as a copy); it is null on CPU.
"""

import argparse
import json
import math
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import _accelerator  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_reg  # noqa: E402
from keras_reg._backends import portable_only  # noqa: E402

SHAPES = [(64, 32, 32, 64), (1024, 512)]
MODES = ["train", "infer"]


def make_layer(layer_class, shape):
    layer = layer_class(momentum=0.9)
    layer.build(shape)
    return layer


def tensorflow_steps(layer, x, upstream):
    import tensorflow as tf

    x = tf.constant(x)
    upstream = tf.constant(upstream)

    @tf.function
    def train():
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(layer(x, training=True) * upstream)
        return tape.gradient(loss, [x] + layer.trainable_variables)

    @tf.function
    def infer():
        return layer(x, training=False)

    # A tf.function call on CPU returns after it has run; accelerators queue
    # work, so there the step waits for the devices (no host copy, which
    # would add the same constant to both layers' times).
    sync = (
        tf.experimental.sync_devices if tf.config.list_logical_devices("GPU") else None
    )

    def run(step):
        def fn():
            outputs = step()
            if sync is not None:
                sync()
            return outputs

        return fn

    return {"train": run(train), "infer": run(infer)}


def jax_steps(layer, x, upstream):
    import jax

    trainable = [v.value for v in layer.trainable_variables]
    state = [v.value for v in layer.non_trainable_variables]
    x = jax.numpy.asarray(x)
    upstream = jax.numpy.asarray(upstream)

    def loss(trainable, state, x):
        y, new_state = layer.stateless_call(trainable, state, x, training=True)
        return jax.numpy.sum(y * upstream), new_state

    @jax.jit
    def train(trainable, state, x):
        grads, new_state = jax.grad(loss, argnums=(0, 2), has_aux=True)(
            trainable, state, x
        )
        return grads, new_state

    @jax.jit
    def infer(trainable, state, x):
        return layer.stateless_call(trainable, state, x, training=False)[0]

    return {
        "train": lambda: jax.block_until_ready(train(trainable, state, x)),
        "infer": lambda: jax.block_until_ready(infer(trainable, state, x)),
    }


def torch_steps(layer, x, upstream):
    import torch

    # On the device Keras puts the layer's variables on (a GPU where present).
    x = keras.ops.convert_to_tensor(x)
    upstream = keras.ops.convert_to_tensor(upstream)
    # CUDA queues work: a step is timed until the device has run it.
    sync = torch.cuda.synchronize if x.is_cuda else (lambda: None)

    def train():
        inputs = x.detach().requires_grad_(True)
        y = layer(inputs, training=True)
        (y * upstream).sum().backward()
        for variable in layer.trainable_variables:
            variable.value.grad = None
        sync()
        return inputs.grad

    def infer():
        with torch.no_grad():
            y = layer(x, training=False)
        sync()
        return y

    return {"train": train, "infer": infer}


STEPS = {"tensorflow": tensorflow_steps, "jax": jax_steps, "torch": torch_steps}


def portable(step):
    """`step` with every fast path off; compiled steps trace on first call."""

    def fn():
        with portable_only():
            return step()

    return fn


def device_copy(backend, x):
    """`x + 1` on the accelerator, waited for; None where there is none.

    It reads and writes the tensor once, as a copy does: the bandwidth proxy
    on a GPU, where the NumPy copy measures the host's memory instead.
    """
    if backend == "tensorflow":
        import tensorflow as tf

        if not tf.config.list_logical_devices("GPU"):
            return None
        x = tf.constant(x)
        add = tf.function(lambda: x + 1.0)
        return lambda: (add(), tf.experimental.sync_devices())
    if backend == "jax":
        import jax

        if jax.default_backend() == "cpu":
            return None
        x = jax.numpy.asarray(x)
        add = jax.jit(lambda a: a + 1.0)
        return lambda: add(x).block_until_ready()
    import torch

    if not torch.cuda.is_available():
        return None
    x = keras.ops.convert_to_tensor(x)
    out = torch.empty_like(x)
    return lambda: (torch.add(x, 1.0, out=out), torch.cuda.synchronize())


def set_threads(backend, threads):
    if backend == "torch":
        import torch

        torch.set_num_threads(threads)
    elif backend == "tensorflow":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)


def time_per_call(fn, number):
    start = time.perf_counter()
    for _ in range(number):
        fn()
    return (time.perf_counter() - start) / number


def calls_per_sample(candidates, minimum_seconds):
    """Repetitions that make every sample last at least `minimum_seconds`.

    Sub-millisecond steps are otherwise timed at the resolution of scheduler
    noise; every candidate passed gets the same count.
    """
    fastest = min(time_per_call(fn, 1) for fn in candidates.values())
    return max(1, math.ceil(minimum_seconds / max(fastest, 1e-6)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument(
        "--sample-ms",
        type=float,
        default=10.0,
        help="each timed sample repeats a step until it lasts about this long",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="intra-op threads for torch and TensorFlow (default: theirs). On a "
        "machine shared with other jobs, 1 avoids measuring thread contention.",
    )
    args = parser.parse_args()
    backend = keras.backend.backend()
    device = _accelerator.device_name()
    if args.threads is not None:
        set_threads(backend, args.threads)
    rng = np.random.default_rng(0)
    for shape in SHAPES:
        x = rng.normal(1.0, 2.0, shape).astype("float32")
        upstream = rng.normal(size=shape).astype("float32")
        copy_target = np.empty_like(x)
        copy_on_device = device_copy(backend, x)
        steps = {
            "keras": STEPS[backend](
                make_layer(keras.layers.BatchNormalization, shape), x, upstream
            ),
            "keras_reg": STEPS[backend](
                make_layer(keras_reg.layers.BatchNormalization, shape), x, upstream
            ),
            "portable": STEPS[backend](
                make_layer(keras_reg.layers.BatchNormalization, shape), x, upstream
            ),
        }
        for mode in MODES:
            candidates = {
                "keras": steps["keras"][mode],
                "keras_reg": steps["keras_reg"][mode],
                "portable": portable(steps["portable"][mode]),
                "numpy_copy": lambda dst=copy_target, src=x: np.copyto(dst, src),
            }
            if copy_on_device is not None:
                candidates["device_copy"] = copy_on_device
            for fn in candidates.values():
                for _ in range(args.warmup):
                    fn()
            # The layers share a count; each copy gets its own, since on a
            # GPU the host copy is far slower than the device's.
            layers = ("keras", "keras_reg", "portable")
            number = calls_per_sample(
                {name: candidates[name] for name in layers}, args.sample_ms / 1e3
            )
            numbers = {
                name: (
                    number
                    if name in layers
                    else calls_per_sample({name: fn}, args.sample_ms / 1e3)
                )
                for name, fn in candidates.items()
            }
            times = {name: [] for name in candidates}
            for _ in range(args.rounds):
                for name, fn in candidates.items():
                    times[name].append(time_per_call(fn, numbers[name]))
            median = {name: statistics.median(t) for name, t in times.items()}
            gigabytes = x.nbytes / 1e9
            print(
                json.dumps(
                    {
                        "backend": backend,
                        "device": device,
                        "mode": mode,
                        "shape": list(shape),
                        "rounds": args.rounds,
                        "threads": args.threads,
                        "calls_per_sample": number,
                        "keras_ms": round(median["keras"] * 1e3, 3),
                        "keras_reg_ms": round(median["keras_reg"] * 1e3, 3),
                        "ratio": round(median["keras_reg"] / median["keras"], 3),
                        "portable_ms": round(median["portable"] * 1e3, 3),
                        "portable_ratio": round(
                            median["portable"] / median["keras"], 3
                        ),
                        "fast_path_speedup": round(
                            median["portable"] / median["keras_reg"], 3
                        ),
                        "keras_gbps": round(gigabytes / median["keras"], 2),
                        "keras_reg_gbps": round(gigabytes / median["keras_reg"], 2),
                        "numpy_copy_gbps": round(gigabytes / median["numpy_copy"], 2),
                        "device_copy_gbps": (
                            round(gigabytes / median["device_copy"], 2)
                            if "device_copy" in median
                            else None
                        ),
                    }
                ),
                flush=True,
            )


if __name__ == "__main__":
    main()
