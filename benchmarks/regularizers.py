"""Penalty cost of keras_reg's L1, L2 and ElasticNet against Keras's own.

Measures the train step of one Dense(1024 -> 1024) layer (SGD, mse) without a
regularizer and with each kernel regularizer, Keras's and keras_reg's, in the
same process. Variants are interleaved round by round (the order rotates every
round) and each reports the median over rounds of the mean step time; the
penalty cost is the step time minus the unregularized step time.

Usage (one backend per process):

    KERAS_BACKEND=torch python benchmarks/regularizers.py
    KERAS_BACKEND=tensorflow python benchmarks/regularizers.py --rounds 30
    KERAS_BACKEND=torch python benchmarks/regularizers.py --torch-threads 1

Prints one JSON object per line: one per regularizer pair, then a summary.
"""

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import _torch_threads  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_reg  # noqa: E402

FACTOR = 0.01
PAIRS = {
    "L1": (lambda: keras.regularizers.L1(FACTOR), lambda: keras_reg.L1(FACTOR)),
    "L2": (lambda: keras.regularizers.L2(FACTOR), lambda: keras_reg.L2(FACTOR)),
    "L1L2": (
        lambda: keras.regularizers.L1L2(FACTOR, FACTOR),
        lambda: keras_reg.ElasticNet(FACTOR, FACTOR),
    ),
}


def _model(regularizer, units):
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((units,)),
            keras.layers.Dense(units, kernel_regularizer=regularizer),
        ]
    )
    model.compile(optimizer=keras.optimizers.SGD(1e-4), loss="mse")
    return model


def _time_steps(model, x, y, steps):
    start = time.perf_counter()
    for _ in range(steps):
        logs = model.train_on_batch(x, y, return_dict=True)
    # The last loss is read back so that asynchronous backends finish.
    float(logs["loss"])
    return (time.perf_counter() - start) / steps * 1e3


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=21)
    _torch_threads.add_argument(parser)
    args = parser.parse_args(argv)
    _torch_threads.apply(args)

    rng = np.random.default_rng(0)
    x = rng.normal(size=(args.batch_size, args.units)).astype("float32")
    y = rng.normal(size=(args.batch_size, args.units)).astype("float32")
    variants = {"none": _model(None, args.units)}
    for name, (theirs, ours) in PAIRS.items():
        variants[f"keras:{name}"] = _model(theirs(), args.units)
        variants[f"keras_reg:{name}"] = _model(ours(), args.units)
    for model in variants.values():
        _time_steps(model, x, y, 3)  # builds and compiles the train function

    times = {name: [] for name in variants}
    names = list(variants)
    for round_index in range(args.rounds):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            times[name].append(_time_steps(variants[name], x, y, args.steps))
    median = {name: statistics.median(values) for name, values in times.items()}

    backend = keras.backend.backend()
    summary = {"backend": backend, "none_ms": round(median["none"], 3)}
    for name in PAIRS:
        keras_added = median[f"keras:{name}"] - median["none"]
        ours_added = median[f"keras_reg:{name}"] - median["none"]
        record = {
            "benchmark": "penalty_cost",
            "backend": backend,
            "regularizer": name,
            "units": args.units,
            "batch_size": args.batch_size,
            "rounds": args.rounds,
            "steps_per_round": args.steps,
            "torch_threads": args.torch_threads,
            "none_ms": round(median["none"], 3),
            "keras_ms": round(median[f"keras:{name}"], 3),
            "keras_reg_ms": round(median[f"keras_reg:{name}"], 3),
            "keras_added_ms": round(keras_added, 3),
            "keras_reg_added_ms": round(ours_added, 3),
            "added_ratio": round(ours_added / keras_added, 3)
            if keras_added > 0
            else None,
        }
        print(json.dumps(record), flush=True)
        summary[f"{name}_added_ratio"] = record["added_ratio"]
    print(json.dumps({"benchmark": "penalty_cost_summary", **summary}), flush=True)


if __name__ == "__main__":
    main()
