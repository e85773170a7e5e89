"""Proximal L1 against Keras's L1 on the digits MLP: exact zeros, accuracy, speed.

The model is the compare command's default: scikit-learn's digits (300
training images, 300 validation, the rest for test; standardized), a
Dense(512)-ReLU-Dense(512)-ReLU-Dense(10)-softmax MLP with the regularizer on
every kernel, Adam(1e-3), batch size 32. Three runs with the same seed:

- `baseline`: no regularizer;
- `proximal_l1`: `keras_reg.regularizers.L1(l1, proximal=True)` with
  `keras_reg.optimizers.Proximal(Adam)`;
- `keras_l1`: `keras.regularizers.L1(l1)` with plain Adam.

Each reports the fraction of kernel weights that are exactly zero and the test
accuracy. Then the train step is timed (median over interleaved rounds, in
this process) for the proximal run against the same model with Keras's L1 and
plain Adam, and against the unregularized model.

Usage:

    python benchmarks/sparsity.py
    KERAS_BACKEND=jax python benchmarks/sparsity.py --epochs 30 --l1 0.7
    KERAS_BACKEND=torch python benchmarks/sparsity.py --torch-threads 1

Prints one JSON object per line: one per run, one for timing, one summary.
Targets (issue 4): proximal zeros >= 0.90 with accuracy within 1 point of the
baseline, Keras L1 zeros < 0.01, proximal step time <= 1.15x plain.
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

HIDDEN_UNITS = (512, 512)
TRAIN_SIZE = 300
VALIDATION_SIZE = 300


def load_data(seed):
    digits = load_digits()
    x = digits.data.astype("float64")
    y = digits.target.astype("int32")
    rest, test = train_test_split(
        np.arange(len(x)),
        test_size=len(x) - TRAIN_SIZE - VALIDATION_SIZE,
        random_state=seed,
        stratify=y,
    )
    train, _ = train_test_split(
        rest, test_size=VALIDATION_SIZE, random_state=seed, stratify=y[rest]
    )
    mean = x[train].mean(axis=0)
    std = x[train].std(axis=0)
    std[std == 0] = 1.0
    scale = lambda part: ((x[part] - mean) / std).astype("float32")  # noqa: E731
    return scale(train), y[train], scale(test), y[test]


def build(make_regularizer, wrap, seed, learning_rate):
    keras.utils.set_random_seed(seed)
    layers = [keras.Input((64,))]
    for units in HIDDEN_UNITS:
        layers.append(
            keras.layers.Dense(
                units, activation="relu", kernel_regularizer=make_regularizer()
            )
        )
    layers.append(
        keras.layers.Dense(
            10, activation="softmax", kernel_regularizer=make_regularizer()
        )
    )
    model = keras.Sequential(layers)
    optimizer = keras.optimizers.Adam(learning_rate)
    model.compile(
        optimizer=wrap(optimizer) if wrap else optimizer,
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def run(name, model, data, args):
    x_train, y_train, x_test, y_test = data
    start = time.perf_counter()
    model.fit(
        x_train,
        y_train,
        batch_size=args.batch_size,
        epochs=args.epochs,
        verbose=0,
        shuffle=True,
    )
    seconds = time.perf_counter() - start
    report = keras_reg.sparsity_report(model, print_fn=None)
    _, accuracy = model.evaluate(x_test, y_test, verbose=0)
    record = {
        "benchmark": "sparsity",
        "backend": keras.backend.backend(),
        "run": name,
        "l1": None if name == "baseline" else args.l1,
        "epochs": args.epochs,
        "kernel_weights": report["kernels"]["size"],
        "exact_zeros": report["kernels"]["zeros"],
        "zero_fraction": round(report["kernels"]["zero_fraction"], 4),
        "dead_units": sum(
            len(entry["dead_units"] or []) for entry in report["variables"].values()
        ),
        "test_accuracy": round(float(accuracy), 4),
        "fit_seconds": round(seconds, 2),
    }
    print(json.dumps(record), flush=True)
    return record


def time_steps(models, data, args):
    x_train, y_train, _, _ = data
    x = x_train[: args.batch_size]
    y = y_train[: args.batch_size]
    for model in models.values():
        model.train_on_batch(x, y)
    times = {name: [] for name in models}
    names = list(models)
    for round_index in range(args.rounds):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            start = time.perf_counter()
            for _ in range(args.steps):
                logs = models[name].train_on_batch(x, y, return_dict=True)
            float(logs["loss"])
            times[name].append((time.perf_counter() - start) / args.steps * 1e3)
    return {name: statistics.median(values) for name, values in times.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--l1", type=float, default=0.7)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--steps", type=int, default=20)
    _torch_threads.add_argument(parser)
    args = parser.parse_args(argv)
    _torch_threads.apply(args)

    data = load_data(args.seed)
    lr = args.learning_rate
    runs = {
        "baseline": build(lambda: None, None, args.seed, lr),
        "proximal_l1": build(
            lambda: keras_reg.regularizers.L1(args.l1, proximal=True),
            keras_reg.optimizers.Proximal,
            args.seed,
            lr,
        ),
        "keras_l1": build(lambda: keras.regularizers.L1(args.l1), None, args.seed, lr),
    }
    results = {name: run(name, model, data, args) for name, model in runs.items()}

    # Fresh models: the timing must not depend on how sparse training made them.
    timing = time_steps(
        {
            "proximal": build(
                lambda: keras_reg.regularizers.L1(args.l1, proximal=True),
                keras_reg.optimizers.Proximal,
                args.seed,
                lr,
            ),
            "plain_keras_l1": build(
                lambda: keras.regularizers.L1(args.l1), None, args.seed, lr
            ),
            "plain_unregularized": build(lambda: None, None, args.seed, lr),
        },
        data,
        args,
    )
    step = {
        "benchmark": "sparsity_step_time",
        "backend": keras.backend.backend(),
        "rounds": args.rounds,
        "steps_per_round": args.steps,
        "torch_threads": args.torch_threads,
        "proximal_ms": round(timing["proximal"], 3),
        "plain_keras_l1_ms": round(timing["plain_keras_l1"], 3),
        "plain_unregularized_ms": round(timing["plain_unregularized"], 3),
        "ratio_vs_keras_l1": round(timing["proximal"] / timing["plain_keras_l1"], 3),
        "ratio_vs_unregularized": round(
            timing["proximal"] / timing["plain_unregularized"], 3
        ),
    }
    print(json.dumps(step), flush=True)

    accuracy_gap = (
        results["baseline"]["test_accuracy"] - results["proximal_l1"]["test_accuracy"]
    )
    summary = {
        "benchmark": "sparsity_summary",
        "backend": keras.backend.backend(),
        "proximal_zero_fraction": results["proximal_l1"]["zero_fraction"],
        "keras_l1_zero_fraction": results["keras_l1"]["zero_fraction"],
        "accuracy_gap_points": round(100 * accuracy_gap, 2),
        "step_time_ratio": step["ratio_vs_keras_l1"],
        "proximal_zeros_ok": results["proximal_l1"]["zero_fraction"] >= 0.9,
        "accuracy_ok": accuracy_gap <= 0.01,
        "keras_zeros_ok": results["keras_l1"]["zero_fraction"] < 0.01,
        "step_time_ok": step["ratio_vs_keras_l1"] <= 1.15,
    }
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
