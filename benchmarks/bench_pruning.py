"""Magnitude pruning: mask overhead on a Dense(1024) step, accuracy at 90% sparsity.

Two parts, in one process per backend:

- `pruning_step_time`: the train step of one Dense(1024 -> 1024) layer (SGD,
  mse, batch 128, as in `regularizers.py`) with plain SGD, with
  `Pruning(SGD, ConstantSparsity(0.9, end_step=0))` (masks computed once, then
  only applied: the cost of every step after pruning ends), and with
  `Pruning(SGD, ConstantSparsity(0.9, frequency=100))` (masks also recomputed
  every 100 steps). Variants are interleaved round by round; a round is 100
  steps, so each round of the recomputing variant holds exactly one
  recomputation. Medians over rounds of the mean step time.
- `pruning_mask_apply` (backends with a fast path: torch): applying one
  mask in place against the portable `assign(w, w * mask)`.
- `pruning_digits`: scikit-learn's digits (70% training, 30% test,
  stratified, standardized), a Dense(256)-ReLU-Dense(256)-ReLU-Dense(10)
  softmax MLP, Adam(1e-3), batch 32. Runs with the same seeds: no
  regularization (`baseline`); `Pruning` with `PolynomialDecay(0, 0.9)` over
  the first 60% of the steps, per layer (`pruning_layer`) and with one global
  threshold (`pruning_global`); proximal L1 on every kernel
  (`keras_reg.regularizers.L1(l1, proximal=True)` with
  `keras_reg.optimizers.Proximal(Adam)`, `proximal_l1`). Each reports the
  fraction of kernel weights exactly zero and the test accuracy; the summary
  averages over seeds.

Usage:

    KERAS_BACKEND=tensorflow python benchmarks/bench_pruning.py
    KERAS_BACKEND=jax python benchmarks/bench_pruning.py --seeds 0 1 2 --l1 0.3
    KERAS_BACKEND=torch python benchmarks/bench_pruning.py --torch-threads 1
    python benchmarks/bench_pruning.py --skip-digits --rounds 5
    KERAS_BACKEND=torch python benchmarks/bench_pruning.py --skip-digits --portable

Targets (benchmark, not test): mask overhead <= 5% of the plain step; pruning
at 90% sparsity within 1 point of the baseline's test accuracy.
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
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

import keras_reg  # noqa: E402
from keras_reg import pruning  # noqa: E402

BACKEND = keras.backend.backend()


def _step_model(units, schedule):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((units,)), keras.layers.Dense(units)])
    optimizer = keras.optimizers.SGD(1e-4)
    if schedule is not None:
        optimizer = pruning.Pruning(optimizer, schedule)
    model.compile(optimizer=optimizer, loss="mse")
    return model


def step_time(args):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(args.batch_size, args.units)).astype("float32")
    y = rng.normal(size=(args.batch_size, args.units)).astype("float32")
    models = {
        "plain": _step_model(args.units, None),
        "masks_only": _step_model(
            args.units, pruning.ConstantSparsity(0.9, end_step=0)
        ),
        "recomputing": _step_model(
            args.units, pruning.ConstantSparsity(0.9, frequency=args.frequency)
        ),
    }
    for model in models.values():
        model.train_on_batch(x, y)  # compiles; step 0 computes the masks
        for _ in range(args.frequency - 1):
            model.train_on_batch(x, y)  # the next round starts at a recomputation
    times = {name: [] for name in models}
    names = list(models)
    for round_index in range(args.rounds):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            start = time.perf_counter()
            for _ in range(args.frequency):
                logs = models[name].train_on_batch(x, y, return_dict=True)
            float(logs["loss"])  # asynchronous backends finish
            times[name].append((time.perf_counter() - start) / args.frequency * 1e3)
    median = {name: statistics.median(values) for name, values in times.items()}
    kernel = keras.ops.convert_to_numpy(models["recomputing"].layers[0].kernel)
    record = {
        "benchmark": "pruning_step_time",
        "backend": BACKEND,
        "units": args.units,
        "batch_size": args.batch_size,
        "frequency": args.frequency,
        "rounds": args.rounds,
        "torch_threads": args.torch_threads,
        "portable": args.portable,
        "kernel_zero_fraction": round(float(np.mean(kernel == 0)), 4),
        **{f"{name}_ms": round(value, 3) for name, value in median.items()},
        "masks_only_overhead": round(median["masks_only"] / median["plain"] - 1, 4),
        "recomputing_overhead": round(median["recomputing"] / median["plain"] - 1, 4),
    }
    print(json.dumps(record), flush=True)
    return record


def mask_apply_time(args):
    """The in-place fast path against the portable `assign(w, w * mask)`,
    on one `units x units` kernel at 90% sparsity, interleaved rounds."""
    fast = keras_reg._backends.fast_path("pruning")
    if fast is None:
        return None
    rng = np.random.default_rng(0)
    shape = (args.units, args.units)
    kernel = keras.Variable(rng.normal(size=shape).astype("float32"))
    mask = keras.Variable((rng.random(shape) > 0.9).astype("float32"))

    def portable():
        kernel.assign(kernel * mask)

    variants = {
        "portable": portable,
        "fast": lambda: fast.apply_masks([(kernel, mask)]),
    }
    times = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, run in variants.items():
            start = time.perf_counter()
            for _ in range(100):
                run()
            times[name].append((time.perf_counter() - start) / 100 * 1e6)
    median = {name: statistics.median(values) for name, values in times.items()}
    record = {
        "benchmark": "pruning_mask_apply",
        "backend": BACKEND,
        "units": args.units,
        "torch_threads": args.torch_threads,
        **{f"{name}_us": round(value, 1) for name, value in median.items()},
        "speedup": round(median["portable"] / median["fast"], 2),
    }
    print(json.dumps(record), flush=True)
    return record


def load_data(seed):
    digits = load_digits()
    x_train, x_test, y_train, y_test = train_test_split(
        digits.data.astype("float64"),
        digits.target.astype("int32"),
        test_size=0.3,
        random_state=seed,
        stratify=digits.target,
    )
    mean, std = x_train.mean(axis=0), x_train.std(axis=0)
    std[std == 0] = 1.0
    scale = lambda x: ((x - mean) / std).astype("float32")  # noqa: E731
    return scale(x_train), y_train, scale(x_test), y_test


def _digits_model(seed, regularizer=None):
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.Input((64,)),
            keras.layers.Dense(256, "relu", kernel_regularizer=regularizer()),
            keras.layers.Dense(256, "relu", kernel_regularizer=regularizer()),
            keras.layers.Dense(10, "softmax", kernel_regularizer=regularizer()),
        ]
    )


def digits_run(name, seed, data, args):
    x_train, y_train, x_test, y_test = data
    steps = args.epochs * -(-len(x_train) // args.batch_size_digits)
    schedule = pruning.PolynomialDecay(
        0.0, args.sparsity, 0, int(0.6 * steps), frequency=args.frequency_digits
    )
    adam = keras.optimizers.Adam(args.learning_rate)
    regularizer = lambda: None  # noqa: E731
    optimizer = adam
    if name == "pruning_layer":
        optimizer = pruning.Pruning(adam, schedule)
    elif name == "pruning_global":
        optimizer = pruning.Pruning(adam, schedule, mode="global")
    elif name == "proximal_l1":
        regularizer = lambda: keras_reg.regularizers.L1(args.l1, proximal=True)  # noqa: E731
        optimizer = keras_reg.optimizers.Proximal(adam)
    model = _digits_model(seed, regularizer)
    model.compile(optimizer, "sparse_categorical_crossentropy", metrics=["accuracy"])
    start = time.perf_counter()
    model.fit(
        x_train,
        y_train,
        batch_size=args.batch_size_digits,
        epochs=args.epochs,
        verbose=0,
    )
    seconds = time.perf_counter() - start
    report = keras_reg.sparsity_report(model, print_fn=None)
    _, accuracy = model.evaluate(x_test, y_test, verbose=0)
    record = {
        "benchmark": "pruning_digits",
        "backend": BACKEND,
        "run": name,
        "seed": seed,
        "epochs": args.epochs,
        "kernel_zero_fraction": round(report["kernels"]["zero_fraction"], 4),
        "test_accuracy": round(float(accuracy), 4),
        "fit_seconds": round(seconds, 2),
    }
    print(json.dumps(record), flush=True)
    return record


def digits(args):
    names = ("baseline", "pruning_layer", "pruning_global", "proximal_l1")
    results = {name: [] for name in names}
    for seed in args.seeds:
        data = load_data(seed)
        for name in names:
            results[name].append(digits_run(name, seed, data, args))

    def mean(name, key):
        return round(statistics.mean(r[key] for r in results[name]), 4)

    summary = {"benchmark": "pruning_digits_summary", "backend": BACKEND}
    for name in names:
        summary[f"{name}_accuracy"] = mean(name, "test_accuracy")
        summary[f"{name}_zero_fraction"] = mean(name, "kernel_zero_fraction")
    for name in names[1:]:
        gap = summary["baseline_accuracy"] - summary[f"{name}_accuracy"]
        summary[f"{name}_gap_points"] = round(100 * gap, 2)
    return summary


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--frequency", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--skip-step-time", action="store_true")
    parser.add_argument("--skip-digits", action="store_true")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--batch-size-digits", type=int, default=32)
    parser.add_argument("--frequency-digits", type=int, default=40)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--sparsity", type=float, default=0.9)
    parser.add_argument("--l1", type=float, default=0.3)
    parser.add_argument(
        "--portable", action="store_true", help="switch the backend fast paths off"
    )
    _torch_threads.add_argument(parser)
    args = parser.parse_args(argv)
    _torch_threads.apply(args)
    if args.portable:
        keras_reg._backends.portable_only().__enter__()

    summary = {"benchmark": "pruning_summary", "backend": BACKEND}
    if not args.skip_step_time:
        step = step_time(args)
        summary["masks_only_overhead"] = step["masks_only_overhead"]
        summary["recomputing_overhead"] = step["recomputing_overhead"]
        summary["overhead_ok"] = step["recomputing_overhead"] <= 0.05
        if (apply := mask_apply_time(args)) is not None:
            summary["fast_path_speedup"] = apply["speedup"]
    if not args.skip_digits:
        result = digits(args)
        print(json.dumps(result), flush=True)
        summary["accuracy_gap_points"] = result["pruning_layer_gap_points"]
        summary["pruned_zero_fraction"] = result["pruning_layer_zero_fraction"]
        summary["accuracy_ok"] = result["pruning_layer_gap_points"] <= 1.0
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
