"""Times keras_reg's dropout family against the Keras built-ins.

Run once per backend:

    KERAS_BACKEND=jax python benchmarks/bench_dropout.py

Prints one JSON object per case for the current backend. Each case times
keras_reg and its Keras baseline in the same process, interleaved round by
round, and reports the median over the rounds:

- `dropout`, `spatial_dropout_2d`: rate 0.5 on a float32 64x32x32x64 tensor,
  forward and backward (the gradient of `sum(y * g)` with respect to the
  input), compiled the way Keras trains: `tf.function` on TensorFlow,
  `jax.jit` on JAX, eager on PyTorch. The Keras baselines use the same
  arguments (no seed, Keras's fastest path); `keras_seeded_ms` adds Keras
  with `seed=1`, the reproducible setting.
- `drop_connect_dense_1024`: one `train_on_batch` step (SGD, MSE, batch 64,
  1024 inputs) of `DropConnect(Dense(1024), 0.5)` against a plain
  `Dense(1024)`.
- `drop_block_2d`: `DropBlock2D(0.1, block_size=7)` on the same tensor,
  timed like `dropout`, against keras_reg's `SpatialDropout2D(0.1)` (Keras
  has no DropBlock; `spatial_dropout_ms`), target 1.5. Also `fixed_mask_ms`
  (the pass with a precomputed full-size mask), `corner_draw_ms` (the block
  corners drawn alone; JAX and PyTorch) and `floor_ratio` (their sum over
  `spatial_dropout_ms`).

Rate 0.5 draws one random bit per element (see the README's "How masks are
drawn"). `dropout` and `drop_connect_dense_1024` therefore also time rate 0.3,
which draws 16: `rate_0_3_ratio` is keras_reg at rate 0.3 against the same
baseline (Keras's dropout at rate 0.3 for `dropout`).

`spatial_dropout_2d` also reports `floor_ms`: the same pass with a fixed,
precomputed mask, which no implementation drawing a fresh mask can beat.
`drop_connect_dense_1024` reports one too: a Dense layer written as
`x @ (kernel * fixed_mask) + bias`, the cost of masking the kernel and its
gradient with no mask drawn and no wrapper.

Each case runs in a fresh process: a case's large allocations otherwise
change how the next one's buffers page-fault. `BENCH_CASES=dropout,...`
runs only the cases named, in this process.
`device` is "cpu" or the accelerator's name; on a GPU each pass is timed
until the device has run it. `BENCH_PORTABLE=1` also times keras_reg's layer
with every fast path switched off (`keras_reg._backends.portable_only()`),
in the same rounds: `portable_ms`.
On PyTorch, `native_kernels` says whether the optional C kernels (see the
README's "Native kernels", CPU only) served the float32 masks, and
`native_threads` on how many threads they ran (torch's count where built with
OpenMP and sharing torch's runtime, else 1);
`BENCH_TORCH_THREADS=1` runs both sides single-threaded: on a
machine whose cores are shared with other work, intra-op threads stall at
each operation's barrier, which penalizes many short operations.
"""

import json
import os
import statistics
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import _accelerator  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_reg  # noqa: E402

BACKEND = keras.backend.backend()
if BACKEND == "torch" and os.environ.get("BENCH_TORCH_THREADS"):
    import torch

    torch.set_num_threads(int(os.environ["BENCH_TORCH_THREADS"]))
SHAPE = (64, 32, 32, 64)
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "15"))
CALLS_PER_ROUND = 2
PORTABLE = os.environ.get("BENCH_PORTABLE") == "1"
CASES = (
    os.environ.get("BENCH_CASES", "").split(",")
    if os.environ.get("BENCH_CASES")
    else None
)


CASE_NAMES = (
    "dropout",
    "spatial_dropout_2d",
    "drop_connect_dense_1024",
    "drop_block_2d",
)


def _selected(case):
    return CASES is None or case in CASES


def _forward_backward(layer, x, g):
    """Returns a no-argument function running one forward+backward pass."""
    if BACKEND == "tensorflow":
        import tensorflow as tf

        @tf.function
        def step(x):
            with tf.GradientTape() as tape:
                tape.watch(x)
                loss = tf.reduce_sum(layer(x, training=True) * g)
            return tf.reduce_sum(tape.gradient(loss, x))

        x = tf.constant(x)
        return lambda: step(x).numpy()
    if BACKEND == "jax":
        import jax

        def loss(x, state):
            y, state = layer.stateless_call([], state, x, training=True)
            return jax.numpy.sum(y * g), state

        grad = jax.jit(jax.grad(loss, has_aux=True))
        x = jax.numpy.asarray(x)
        holder = {"state": [v.value for v in layer.non_trainable_variables]}

        def run():
            dx, holder["state"] = grad(x, holder["state"])
            dx.block_until_ready()

        return run
    import torch

    # On Keras's device (a GPU where present), where CUDA queues the work:
    # each pass is timed until the device has run it.
    x = keras.ops.convert_to_tensor(x).requires_grad_(True)
    g = keras.ops.convert_to_tensor(g)
    sync = torch.cuda.synchronize if x.is_cuda else (lambda: None)

    def run():
        x.grad = None
        (layer(x, training=True) * g).sum().backward()
        sync()

    return run


def _train_step(layer, x, y):
    model = keras.Sequential([keras.Input(x.shape[1:]), layer])
    model.compile(optimizer="sgd", loss="mse")
    return lambda: model.train_on_batch(x, y)


def _time(functions):
    """Median milliseconds per call of each function, interleaved rounds."""
    for function in functions.values():
        function()
        function()
    times = {name: [] for name in functions}
    for _ in range(ROUNDS):
        for name, function in functions.items():
            start = time.perf_counter()
            for _ in range(CALLS_PER_ROUND):
                function()
            times[name].append((time.perf_counter() - start) / CALLS_PER_ROUND)
    return {name: 1e3 * statistics.median(values) for name, values in times.items()}


def _torch_threads():
    if BACKEND != "torch":
        return None
    import torch

    return torch.get_num_threads()


def _torch_masks():
    """The PyTorch fast path module for masks (on other backends, None)."""
    if BACKEND != "torch":
        return None
    from keras_reg._backends import fast_path

    return fast_path("masks")


def _native_kernels():
    if BACKEND != "torch":
        return None
    # They serve CPU tensors only.
    on_cpu = keras.ops.convert_to_tensor(0.0).device.type == "cpu"
    return _torch_masks().native is not None and on_cpu


def _native_threads():
    """Threads the C kernels run on (1 unless they share torch's OpenMP pool)."""
    if not _native_kernels():
        return None
    return _torch_masks().native_threads()


def _portable(function):
    """`function` with every fast path switched off."""
    from keras_reg._backends import portable_only

    def run():
        with portable_only():
            function()

    return run


def _report(case, ms, baseline, target, baseline_label="keras", **extra):
    line = {
        "backend": BACKEND,
        "device": _accelerator.device_name(),
        "case": case,
        f"{baseline_label}_ms": round(ms[baseline], 2),
        "keras_reg_ms": round(ms["keras_reg"], 2),
        "ratio": round(ms["keras_reg"] / ms[baseline], 3),
        "target_ratio": target,
        "rounds": ROUNDS,
        # Other work on the machine skews both timings; recorded for context.
        "load_average_1min": round(os.getloadavg()[0], 2),
        "torch_threads": _torch_threads(),
        # PyTorch: whether the optional C kernels drew and applied the masks.
        "native_kernels": _native_kernels(),
        "native_threads": _native_threads(),
        **extra,
    }
    print(json.dumps(line), flush=True)


class _FixedMask(keras.layers.Layer):
    """The floor of spatial dropout: multiplies by a precomputed mask (of the
    full shape with `full=True`: the floor of DropBlock's masked pass)."""

    def __init__(self, shape, full=False):
        super().__init__(name="fixed_mask")
        rng = np.random.default_rng(1)
        mask_shape = shape if full else (shape[0], 1, 1, shape[-1])
        keep = rng.random(mask_shape) >= 0.5
        self.multiplier = keras.ops.convert_to_tensor(2.0 * keep, "float32")
        self.built = True

    def call(self, inputs, training=False):
        return inputs * self.multiplier


class _FixedMaskDense(keras.layers.Layer):
    """The floor of DropConnect(Dense(1024)): a fixed, precomputed kernel mask.

    A Dense layer written directly as `x @ (kernel * multiplier) + bias`, with
    no mask drawn and no wrapper: the cost any DropConnect pays for masking
    the kernel in the forward pass and the kernel gradient in the backward
    pass.
    """

    def __init__(self, units):
        super().__init__(name="fixed_mask_dense")
        self.units = units

    def build(self, input_shape):
        self.kernel = self.add_weight(
            shape=(input_shape[-1], self.units), initializer="glorot_uniform"
        )
        self.bias = self.add_weight(shape=(self.units,), initializer="zeros")
        rng = np.random.default_rng(2)
        keep = rng.random((input_shape[-1], self.units)) >= 0.5
        self.multiplier = keras.ops.convert_to_tensor(2.0 * keep, "float32")

    def call(self, inputs):
        kernel = self.kernel * self.multiplier
        return keras.ops.matmul(inputs, kernel) + self.bias


def _corner_draw():
    """Draws DropBlock2D(0.1, 7)'s corners for SHAPE and nothing else, as the
    layer's route on this backend does (compiled on JAX, the C kernels on
    PyTorch), or None elsewhere (TensorFlow's compiled draw would time its
    copy out of XLA as well)."""
    from keras_reg.layers import _masks
    from keras_reg.layers.drop_block import block_plan

    threshold = block_plan(SHAPE[1], SHAPE[2], 7, 0.1)[2]
    corners = (SHAPE[0], SHAPE[1] - 6, SHAPE[2] - 6, SHAPE[3])
    state = np.array([1, 2], "int32")
    if BACKEND == "jax":
        import jax

        draw = jax.jit(lambda state: _masks.keep(corners, threshold, state))
        return lambda: draw(state).block_until_ready()
    if _native_kernels():
        from keras_reg._backends import torch_drop_block

        n = int(np.prod(corners))
        return lambda: torch_drop_block._dropped_corners(n, threshold, 1, 2)
    return None


def _drop_block(x, g):
    """DropBlock2D(0.1, block_size=7) against keras_reg's SpatialDropout2D(0.1).

    Keras has no DropBlock: the baseline is the cheapest structured dropout,
    timed the same way (forward and backward, `dropout`'s compilation).
    `fixed_mask_ms` is the same pass multiplying by a precomputed full-size
    mask, and `corner_draw_ms` drawing the block corners alone (2.77M 16-bit
    draws): `floor_ratio`, their sum over SpatialDropout2D's time, is what
    any implementation drawing these corners and applying a full-size mask
    pays, short of overlapping the two.
    """
    layers = keras_reg.layers
    functions = {
        "keras_reg": _forward_backward(layers.DropBlock2D(0.1, 7), x, g),
        "spatial_dropout": _forward_backward(layers.SpatialDropout2D(0.1), x, g),
        "fixed_mask": _forward_backward(_FixedMask(SHAPE, full=True), x, g),
    }
    draw = _corner_draw()
    if draw is not None:
        functions["corner_draw"] = draw
    if PORTABLE:
        portable = _forward_backward(layers.DropBlock2D(0.1, 7), x, g)
        functions["portable"] = _portable(portable)
    ms = _time(functions)
    extra = {"portable_ms": round(ms["portable"], 2)} if PORTABLE else {}
    extra["fixed_mask_ms"] = round(ms["fixed_mask"], 2)
    if draw is not None:
        extra["corner_draw_ms"] = round(ms["corner_draw"], 2)
        floor = ms["fixed_mask"] + ms["corner_draw"]
        extra["floor_ratio"] = round(floor / ms["spatial_dropout"], 3)
    _report(
        "drop_block_2d",
        ms,
        "spatial_dropout",
        1.5,
        baseline_label="spatial_dropout",
        shape=list(SHAPE),
        block_size=7,
        rate=0.1,
        **extra,
    )


def main():
    if CASES is None:
        for case in CASE_NAMES:
            env = dict(os.environ, BENCH_CASES=case)
            subprocess.run(
                [sys.executable, os.path.abspath(__file__)], env=env, check=True
            )
        return
    rng = np.random.default_rng(0)
    x = rng.normal(size=SHAPE).astype("float32")
    g = rng.normal(size=SHAPE).astype("float32")
    target = 1.0 if BACKEND == "tensorflow" else 0.6

    for case, ours, theirs in (
        ("dropout", keras_reg.layers.Dropout, keras.layers.Dropout),
        (
            "spatial_dropout_2d",
            keras_reg.layers.SpatialDropout2D,
            keras.layers.SpatialDropout2D,
        ),
    ):
        if not _selected(case):
            continue
        functions = {
            "keras_reg": _forward_backward(ours(0.5), x, g),
            "keras": _forward_backward(theirs(0.5), x, g),
            "keras_seeded": _forward_backward(theirs(0.5, seed=1), x, g),
        }
        if PORTABLE:
            functions["portable"] = _portable(_forward_backward(ours(0.5), x, g))
        if case == "spatial_dropout_2d":
            functions["floor"] = _forward_backward(_FixedMask(SHAPE), x, g)
        else:
            functions["keras_reg_0_3"] = _forward_backward(ours(0.3), x, g)
            functions["keras_0_3"] = _forward_backward(theirs(0.3), x, g)
        ms = _time(functions)
        extra = {"keras_seeded_ms": round(ms["keras_seeded"], 2)}
        if PORTABLE:
            extra["portable_ms"] = round(ms["portable"], 2)
        if "keras_reg_0_3" in ms:
            extra["rate_0_3_ratio"] = round(ms["keras_reg_0_3"] / ms["keras_0_3"], 3)
        if "floor" in ms:
            extra["floor_ms"] = round(ms["floor"], 2)
            extra["floor_ratio"] = round(ms["floor"] / ms["keras"], 3)
        _report(case, ms, "keras", target, shape=list(SHAPE), **extra)

    if _selected("drop_block_2d"):
        _drop_block(x, g)

    if not _selected("drop_connect_dense_1024"):
        return
    inputs = rng.normal(size=(64, 1024)).astype("float32")
    targets = rng.normal(size=(64, 1024)).astype("float32")

    def drop_connect(rate):
        layer = keras_reg.layers.DropConnect(keras.layers.Dense(1024), rate)
        return _train_step(layer, inputs, targets)

    functions = {
        "keras_reg": drop_connect(0.5),
        "keras": _train_step(keras.layers.Dense(1024), inputs, targets),
        "keras_reg_0_3": drop_connect(0.3),
        "floor": _train_step(_FixedMaskDense(1024), inputs, targets),
    }
    if PORTABLE:
        functions["portable"] = _portable(drop_connect(0.5))
    ms = _time(functions)
    extra = {"portable_ms": round(ms["portable"], 2)} if PORTABLE else {}
    _report(
        "drop_connect_dense_1024",
        ms,
        "keras",
        1.3,
        batch=64,
        rate_0_3_ratio=round(ms["keras_reg_0_3"] / ms["keras"], 3),
        floor_ms=round(ms["floor"], 2),
        floor_ratio=round(ms["floor"] / ms["keras"], 3),
        **extra,
    )


if __name__ == "__main__":
    main()
