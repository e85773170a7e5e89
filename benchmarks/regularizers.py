"""Penalty cost of keras_reg's L1, L2 and ElasticNet against Keras's own.

Measures the train step of one Dense(1024 -> 1024) layer (SGD, mse) without a
regularizer and with each kernel regularizer, Keras's and keras_reg's, in the
same process. Variants are interleaved round by round (the order rotates every
round) and each reports the median over rounds of the mean step time; the
penalty cost is the step time minus the unregularized step time.

Where the backend has a fast path for the penalties (torch), keras_reg's
variants also run under `keras_reg._backends.portable_only()`, and one more
case times proximal L1 (`L1(proximal=True)` with `Proximal(SGD)`, whose
soft-thresholding step is on the fast path) both ways: `fast_over_portable`
is the fast path's added cost over the portable path's.

Usage (one backend per process):

    KERAS_BACKEND=torch python benchmarks/regularizers.py
    KERAS_BACKEND=tensorflow python benchmarks/regularizers.py --rounds 30
    KERAS_BACKEND=torch python benchmarks/regularizers.py --torch-threads 1

Prints one JSON object per line: one per regularizer pair, then a summary.
"""

import argparse
import contextlib
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
from keras_reg._backends import fast_path, portable_only  # noqa: E402

FACTOR = 0.01
PAIRS = {
    "L1": (lambda: keras.regularizers.L1(FACTOR), lambda: keras_reg.L1(FACTOR)),
    "L2": (lambda: keras.regularizers.L2(FACTOR), lambda: keras_reg.L2(FACTOR)),
    "L1L2": (
        lambda: keras.regularizers.L1L2(FACTOR, FACTOR),
        lambda: keras_reg.ElasticNet(FACTOR, FACTOR),
    ),
}


def _model(regularizer, units, wrap=None):
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((units,)),
            keras.layers.Dense(units, kernel_regularizer=regularizer),
        ]
    )
    optimizer = keras.optimizers.SGD(1e-4)
    model.compile(optimizer=wrap(optimizer) if wrap else optimizer, loss="mse")
    return model


def _time_steps(variant, x, y, steps):
    model, portable = variant
    with portable_only() if portable else contextlib.nullcontext():
        start = time.perf_counter()
        for _ in range(steps):
            logs = model.train_on_batch(x, y, return_dict=True)
        # The last loss is read back so that asynchronous backends finish.
        float(logs["loss"])
    return (time.perf_counter() - start) / steps * 1e3


def _ratio(numerator, denominator):
    return round(numerator / denominator, 3) if denominator > 0 else None


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
    # The portable variants only differ where the backend has a fast path.
    has_fast_path = fast_path("regularizers") is not None
    variants = {"none": (_model(None, args.units), False)}
    for name, (theirs, ours) in PAIRS.items():
        variants[f"keras:{name}"] = (_model(theirs(), args.units), False)
        variants[f"keras_reg:{name}"] = (_model(ours(), args.units), False)
        if has_fast_path:
            variants[f"portable:{name}"] = (_model(ours(), args.units), True)
    if has_fast_path:
        for portable in (False, True):
            model = _model(
                keras_reg.L1(FACTOR, proximal=True),
                args.units,
                wrap=keras_reg.optimizers.Proximal,
            )
            key = "portable" if portable else "keras_reg"
            variants[f"{key}:L1proximal"] = (model, portable)
    for variant in variants.values():
        _time_steps(variant, x, y, 3)  # builds and compiles the train function

    times = {name: [] for name in variants}
    names = list(variants)
    for round_index in range(args.rounds):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            times[name].append(_time_steps(variants[name], x, y, args.steps))
    median = {name: statistics.median(values) for name, values in times.items()}

    backend = keras.backend.backend()
    setup = {
        "backend": backend,
        "units": args.units,
        "batch_size": args.batch_size,
        "rounds": args.rounds,
        "steps_per_round": args.steps,
        "torch_threads": args.torch_threads,
        "none_ms": round(median["none"], 3),
    }
    summary = {"backend": backend, "none_ms": setup["none_ms"]}
    for name in PAIRS:
        keras_added = median[f"keras:{name}"] - median["none"]
        ours_added = median[f"keras_reg:{name}"] - median["none"]
        record = {
            "benchmark": "penalty_cost",
            "regularizer": name,
            **setup,
            "keras_ms": round(median[f"keras:{name}"], 3),
            "keras_reg_ms": round(median[f"keras_reg:{name}"], 3),
            "keras_added_ms": round(keras_added, 3),
            "keras_reg_added_ms": round(ours_added, 3),
            "added_ratio": _ratio(ours_added, keras_added),
        }
        if has_fast_path:
            portable_added = median[f"portable:{name}"] - median["none"]
            record["keras_reg_portable_ms"] = round(median[f"portable:{name}"], 3)
            record["fast_over_portable"] = _ratio(ours_added, portable_added)
            summary[f"{name}_fast_over_portable"] = record["fast_over_portable"]
        print(json.dumps(record), flush=True)
        summary[f"{name}_added_ratio"] = record["added_ratio"]
    if has_fast_path:
        fast_added = median["keras_reg:L1proximal"] - median["none"]
        portable_added = median["portable:L1proximal"] - median["none"]
        record = {
            "benchmark": "proximal_step_cost",
            "regularizer": "L1(proximal=True) with Proximal(SGD)",
            **setup,
            "keras_reg_ms": round(median["keras_reg:L1proximal"], 3),
            "keras_reg_portable_ms": round(median["portable:L1proximal"], 3),
            "fast_over_portable": _ratio(fast_added, portable_added),
        }
        print(json.dumps(record), flush=True)
        summary["L1proximal_fast_over_portable"] = record["fast_over_portable"]
    print(json.dumps({"benchmark": "penalty_cost_summary", **summary}), flush=True)


if __name__ == "__main__":
    main()
