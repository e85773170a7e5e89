"""The table, results.json and results.csv of `keras-reg compare`.

results.json schema (``schema_version`` 1)
------------------------------------------
A JSON object; fractions are in [0, 1], epochs count from 1, times are seconds,
and a number that is not finite (a diverged run) is written as null::

    {
      "schema_version": 1,                  # bumped on any incompatible change
      "keras_reg_version": "0.1.0",
      "keras_version": "3.15.1",
      "backend": "tensorflow",              # KERAS_BACKEND of the run
      "settings": {"epochs": int, "batch_size": int, "seed": int,
                   "hidden_units": [int, ...], "optimizer": "adam",
                   "learning_rate": float},
      "data": {"source": "digits" or an absolute CSV path,
               "target": str or null, "task": "classification" | "regression",
               "n_features": int, "n_classes": int or null,
               "class_names": [str, ...] or null,
               "n_train": int, "n_validation": int, "n_test": int},
      "threshold": {"metric": "accuracy" | "r2", "value": float},
      "techniques": [                       # baseline first, then table order
        {"name": str, "description": str,
         "config": {"regularizer": str or null, "regularizer_kwargs": {...},
                    "dropout_rate": float, "batch_normalization": bool,
                    "early_stopping": {"patience": int,
                                       "restore_best_weights": bool} or null,
                    "optimizer_wrapper": str or null},
         "train" | "validation" | "test":
             classification: {"accuracy": float, "cross_entropy": float}
             regression:     {"mse": float, "mae": float}  # target's units
         "generalization_gap": float,       # train - val accuracy, or
                                            # val - train MSE: > 0 overfits
         "epochs_run": int, "best_epoch": int,   # restored epoch with
         "stopped_early": bool,                  # EarlyStopping, else the
                                                 # epoch of least val loss
         "final_val_data_loss": float,      # of the returned model
         "zero_weight_fraction": float,     # kernel weights exactly 0.0
         "near_zero_weight_fraction": float,  # |w| < 1e-3
         "mean_abs_weight": float, "n_kernel_weights": int,
         "epochs_to_threshold": int or null,  # null: never reached
         "history": {"loss": [float], "val_loss": [float],
                     "data_loss": [float], "val_data_loss": [float],
                     ... one list per Keras metric, one value per epoch},
         "wall_time_s": float}
      ],
      "verdicts": [{"claim": str, "technique": str, "holds": bool,
                    "text": str, "numbers": {str: number or null}}],
      "total_wall_time_s": float
    }

``loss`` is Keras's training objective (it includes weight penalties);
``data_loss`` is the cross-entropy (classification) or MSE on the standardized
target (regression) without penalties, the quantity the curves show and
EarlyStopping monitors. Everything except the ``*wall_time_s`` fields is the
same for the same seed on the TensorFlow backend.

results.csv has one row per technique with the columns of `CSV_COLUMNS`.
"""

import csv
import json
import math

SCHEMA_VERSION = 1

CSV_COLUMNS = (
    "technique",
    "train_metric",
    "validation_metric",
    "test_metric",
    "metric",
    "generalization_gap",
    "epochs_run",
    "best_epoch",
    "zero_weight_fraction",
    "mean_abs_weight",
    "epochs_to_threshold",
    "wall_time_s",
)


def primary_metric(task: str) -> str:
    return "accuracy" if task == "classification" else "mse"


def _fmt(value, spec):
    if value is None:
        return "-"
    if isinstance(value, float) and not math.isfinite(value):
        return "nan"
    return format(value, spec)


def format_table(results: list[dict], task: str) -> str:
    """The console table, one row per technique."""
    metric = primary_metric(task)
    short = "acc" if metric == "accuracy" else "MSE"
    metric_spec = ".3f" if metric == "accuracy" else ".4g"
    threshold = "ep->95%" if metric == "accuracy" else "ep->R2.9"
    headers = [
        "technique",
        f"train {short}",
        f"val {short}",
        f"test {short}",
        "gap",
        "epochs (best)",
        "zero w",
        "mean |w|",
        threshold,
        "time",
    ]
    rows = []
    for r in results:
        rows.append(
            [
                r["name"],
                _fmt(r["train"][metric], metric_spec),
                _fmt(r["validation"][metric], metric_spec),
                _fmt(r["test"][metric], metric_spec),
                _fmt(r["generalization_gap"], "+.3f" if short == "acc" else "+.4g"),
                f"{r['epochs_run']} ({r['best_epoch']})",
                f"{100 * r['zero_weight_fraction']:.1f}%",
                _fmt(r["mean_abs_weight"], ".4f"),
                _fmt(r["epochs_to_threshold"], "d"),
                f"{r['wall_time_s']:.1f}s",
            ]
        )
    widths = [
        max(len(str(line[i])) for line in [headers, *rows]) for i in range(len(headers))
    ]

    def render(cells):
        first = cells[0].ljust(widths[0])
        rest = [c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True)]
        return "  ".join([first, *rest]).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([render(headers), rule, *(render(row) for row in rows)])


def _json_safe(value):
    # A diverged run yields NaN or inf, which strict JSON cannot hold.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def write_json(path: str, document: dict) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(_json_safe(document), f, indent=2, allow_nan=False)
        f.write("\n")


def write_csv(path: str, results: list[dict], task: str) -> None:
    metric = primary_metric(task)
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(CSV_COLUMNS)
        for r in results:
            writer.writerow(
                [
                    r["name"],
                    repr(r["train"][metric]),
                    repr(r["validation"][metric]),
                    repr(r["test"][metric]),
                    metric,
                    repr(r["generalization_gap"]),
                    r["epochs_run"],
                    r["best_epoch"],
                    repr(r["zero_weight_fraction"]),
                    repr(r["mean_abs_weight"]),
                    ""
                    if r["epochs_to_threshold"] is None
                    else r["epochs_to_threshold"],
                    f"{r['wall_time_s']:.3f}",
                ]
            )
