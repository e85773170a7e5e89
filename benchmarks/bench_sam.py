"""Step time of keras_reg's SAM(Adam) against Keras's Adam.

Trains an MLP (Dense(1024, relu) x 2 -> Dense(10), mse) with `train_on_batch`
under Adam, SAM(Adam) and SAM(Adam, adaptive=True), in the same process. The
variants are interleaved round by round (the order rotates every round); each
reports the median over rounds of the mean step time, and the ratios are also
given as the median of the per-round ratios (`paired_*`), which a load that
drifts between rounds moves less.

A SAM update spans two train steps (an ascent step, then the wrapped
optimizer's step at the perturbed weights), so its floor is two Adam steps:
`update_ratio` is the SAM update time over one Adam step (target <= 2.1, floor
2.0), `step_ratio` a SAM step over an Adam step.

Where the backend has a fast path for the ascent (PyTorch, which runs
`SAM.apply` eagerly in training too), `ascent_ms` times the ascent alone (the
perturbation of every weight, given one batch's gradients),
`ascent_portable_ms` the portable `keras.ops` code in the same rounds, and
`fast_over_portable` their ratio.

Usage (one backend per process):

    KERAS_BACKEND=tensorflow python benchmarks/bench_sam.py
    KERAS_BACKEND=jax python benchmarks/bench_sam.py --rounds 31
    KERAS_BACKEND=torch python benchmarks/bench_sam.py --torch-threads 1

Prints one JSON object per SAM variant.
"""

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import _accelerator  # noqa: E402
import _torch_threads  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_reg  # noqa: E402
from keras_reg._backends import fast_path, portable_only  # noqa: E402

VARIANTS = {
    "adam": lambda: keras.optimizers.Adam(1e-4),
    "sam": lambda: keras_reg.optimizers.SAM(keras.optimizers.Adam(1e-4)),
    "asam": lambda: keras_reg.optimizers.SAM(
        keras.optimizers.Adam(1e-4), rho=0.5, adaptive=True
    ),
}


def _model(optimizer, units, outputs):
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((units,)),
            keras.layers.Dense(units, activation="relu"),
            keras.layers.Dense(units, activation="relu"),
            keras.layers.Dense(outputs),
        ]
    )
    model.compile(optimizer=optimizer, loss="mse")
    return model


def _time_steps(model, x, y, steps):
    start = time.perf_counter()
    for _ in range(steps):
        logs = model.train_on_batch(x, y, return_dict=True)
    # Reading the last loss back waits for asynchronous backends.
    float(logs["loss"])
    return (time.perf_counter() - start) / steps * 1e3


def _ascent_timer(make, args, x, y):
    """A function timing SAM ascents (ms each)."""
    model = _model(make(), args.units, args.outputs)
    _time_steps(model, x, y, 2)
    optimizer = model.optimizer
    variables = model.trainable_variables
    rng = np.random.default_rng(1)
    grads = [
        keras.ops.convert_to_tensor(rng.normal(size=v.shape).astype("float32"))
        for v in variables
    ]

    def run(steps=10):
        start = time.perf_counter()
        for _ in range(steps):
            optimizer._perturbed.assign(0)  # the next apply is an ascent
            optimizer.apply(grads, variables)
        keras.ops.convert_to_numpy(variables[0])  # waits for asynchronous backends
        return (time.perf_counter() - start) / steps * 1e3

    return run


def _ascents(args, x, y):
    """Median ascent times per SAM variant, fast and portable interleaved;
    empty where the backend has no fast path for it."""
    if fast_path("sam") is None:
        return {"sam": {}, "asam": {}}
    result = {}
    for name in ("sam", "asam"):
        run = _ascent_timer(VARIANTS[name], args, x, y)
        fast, portable = [], []
        for _ in range(args.rounds):
            fast.append(run())
            with portable_only():
                portable.append(run())
        result[name] = {
            "ascent_ms": round(statistics.median(fast), 3),
            "ascent_portable_ms": round(statistics.median(portable), 3),
            "fast_over_portable": round(
                statistics.median(p / f for p, f in zip(portable, fast, strict=True)), 3
            ),
        }
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=1024)
    parser.add_argument("--outputs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10, help="even: whole updates")
    parser.add_argument("--rounds", type=int, default=21)
    _torch_threads.add_argument(parser)
    args = parser.parse_args(argv)
    _torch_threads.apply(args)
    steps = args.steps + args.steps % 2

    rng = np.random.default_rng(0)
    x = keras.ops.convert_to_tensor(
        rng.normal(size=(args.batch_size, args.units)).astype("float32")
    )
    y = keras.ops.convert_to_tensor(
        rng.normal(size=(args.batch_size, args.outputs)).astype("float32")
    )
    models = {
        name: _model(make(), args.units, args.outputs)
        for name, make in VARIANTS.items()
    }
    for model in models.values():
        _time_steps(model, x, y, 4)  # builds and compiles the train function

    times = {name: [] for name in models}
    names = list(models)
    for round_index in range(args.rounds):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            times[name].append(_time_steps(models[name], x, y, steps))
    median = {name: statistics.median(values) for name, values in times.items()}
    paired = {
        name: statistics.median(
            t / a for t, a in zip(times[name], times["adam"], strict=True)
        )
        for name in times
    }

    ascents = _ascents(args, x, y)
    adam = median["adam"]
    for name in ("sam", "asam"):
        print(
            json.dumps(
                {
                    "benchmark": "sam_step",
                    "variant": name,
                    "backend": keras.backend.backend(),
                    "device": _accelerator.device_name(),
                    "units": args.units,
                    "batch_size": args.batch_size,
                    "rounds": args.rounds,
                    "steps_per_round": steps,
                    "torch_threads": args.torch_threads,
                    "adam_step_ms": round(adam, 3),
                    "sam_step_ms": round(median[name], 3),
                    "sam_update_ms": round(2 * median[name], 3),
                    "step_ratio": round(median[name] / adam, 3),
                    "update_ratio": round(2 * median[name] / adam, 3),
                    "paired_update_ratio": round(2 * paired[name], 3),
                    **ascents[name],
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
