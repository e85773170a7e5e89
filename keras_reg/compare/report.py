"""Choosing strengths, the table, results.json and results.csv of `keras-reg compare`.

results.json schema (``schema_version`` 2)
------------------------------------------
A JSON object; fractions are in [0, 1], epochs count from 1, times are
seconds, and a number that is not finite (a diverged run) is written as null::

    {
      "schema_version": 2,                  # bumped on any incompatible change
      "keras_reg_version": str, "keras_version": str, "backend": str,
      "settings": {"epochs": int, "batch_size": int, "seeds": [int, ...],
                   "grid": int, "model": "built-in MLP" or "FILE.py:FUNCTION",
                   "hidden_units": [int, ...] or null},
      "data": {"source": "digits" or an absolute path, "target": str or null,
               "task": "classification" | "regression", "n_features": int,
               "n_classes": int or null, "class_names": [str] or null,
               "n_train": int, "n_validation": int, "n_test": int},
      "threshold": {"metric": "accuracy" | "r2", "value": float},
      "statistics": {"interval": str, "test": str, "correction": str,
                     "alpha": 0.05, "selection": str},
      "techniques": [                       # baseline first, then table order
        {"name": str, "description": str, "config": {...},
         "grid": [{"strength": number or null, "label": str,
                   "validation_mean": float}],   # the selection metric
         "chosen_strength": number or null, "chosen_label": str,
         "summary": {MEASURE: {"mean": float, "ci_low": float,
                               "ci_high": float}},  # chosen strength, over seeds
         "runs": [                          # every strength x seed
           {"strength": number or null, "seed": int,
            "train" | "validation" | "test":
                classification: {"accuracy": float, "data_loss": float}
                regression: {"mse": float, "mae": float,  # target's units
                             "data_loss": float},         # standardized
            "test_data_loss": float,
            "generalization_gap": float,    # test - train data loss:
                                            # > 0 overfits
            "epochs_run": int, "best_epoch": int,
            "epochs_to_threshold": int or null,    # null: never reached
            "zero_weight_fraction": float,  # kernel weights exactly 0.0
            "zero_unit_fraction": float,    # units (last kernel axis) all 0.0
            "near_zero_weight_fraction": float,    # |w| < 1e-3
            "mean_abs_weight": float, "n_kernel_weights": int,
            "history": {"val_data_loss": [float], "train_metric": [float],
                        "val_metric": [float]}}],    # one value per epoch
         "wall_time_s": float}],
      "verdicts": [{"claim": str, "technique": str, "measure": str,
                    "claimed_direction": "up" | "down",
                    "outcome": "holds" | "does not hold" | "inconclusive",
                    "effect": float, "ci_low": float, "ci_high": float,
                    "p_holm": float, "differences": [float], "text": str}],
      "sparsity_vs_accuracy": null or {     # when Pruning runs with a
                                            # proximal technique
        "metric": "accuracy" | "mse", "difference": str, "correction": str,
        "rows": [{"technique": str, "strength": number, "label": str,
                  "target_sparsity": float,  # Pruning's target: the mean
                                             # sparsity reached
                  "sparsity" | "test_metric" | "pruning_sparsity"
                  | "pruning_test_metric": {"mean", "ci_low", "ci_high"},
                  "seeds": [int], "differences": [float],  # technique -
                                                           # Pruning
                  "effect": float, "ci_low": float, "ci_high": float,
                  "p_value": float, "p_holm": float}]},
      "notes": [str],                       # e.g. a technique skipped
      "total_wall_time_s": float
    }

Schema 2 gained keys only (compare 2.1): `zero_unit_fraction`,
`sparsity_vs_accuracy` and `notes`.

MEASURE is one of `MEASURES`. For the statistics a run that never reaches
the training threshold counts `epochs + 1` epochs to it. results.csv has one
row per technique with the columns of `CSV_COLUMNS`.
"""

import csv
import json
import math
import sys
import time

import numpy as np

from keras_reg.compare import verdicts

SCHEMA_VERSION = 2
MEASURES = (
    "train_metric",
    "validation_metric",
    "test_metric",
    "test_data_loss",
    "generalization_gap",
    "zero_weight_fraction",
    "near_zero_weight_fraction",
    "mean_abs_weight",
    "epochs_to_threshold",
    "epochs_run",
    "zero_unit_fraction",
)
CSV_COLUMNS = (
    "technique",
    "chosen_strength",
    "metric",
    *(f"{m}_{s}" for m in MEASURES for s in ("mean", "ci_low", "ci_high")),
    "wall_time_s",
)


def primary_metric(task: str) -> str:
    return "accuracy" if task == "classification" else "mse"


def numbers(run: dict, task: str, epochs: int) -> dict:
    """The measures of one run, as plain numbers."""
    metric = primary_metric(task)
    reached = run["epochs_to_threshold"]
    return {
        "train_metric": run["train"][metric],
        "validation_metric": run["validation"][metric],
        "test_metric": run["test"][metric],
        **{m: run[m] for m in MEASURES[3:] if m != "epochs_to_threshold"},
        "epochs_to_threshold": epochs + 1 if reached is None else reached,
    }


def summary(values) -> dict:
    """`{"mean", "ci_low", "ci_high"}` of `values` (`verdicts.interval`)."""
    mean, low, high = verdicts.interval(values)
    return {"mean": mean, "ci_low": low, "ci_high": high}


def summarize(technique, runs, task, epochs, wall) -> dict:
    """Chooses `technique`'s strength on validation data and summarizes it.

    The chosen strength has the best mean validation metric over the seeds
    (highest accuracy, or lowest MSE; the first on a tie). No test number
    takes part.
    """
    sign = 1 if task == "classification" else -1
    metric = primary_metric(task)
    grid = [
        {
            "strength": value,
            "label": technique.label(value),
            "validation_mean": float(
                np.mean(
                    [r["validation"][metric] for r in runs if r["strength"] == value]
                )
            ),
        }
        for value in dict.fromkeys(r["strength"] for r in runs)
    ]
    # A diverged strength (NaN) is never chosen.
    chosen = max(
        grid,
        key=lambda g: (
            sign * g["validation_mean"]
            if math.isfinite(g["validation_mean"])
            else -math.inf
        ),
    )["strength"]
    chosen_numbers = [numbers(r, task, epochs) for r in runs if r["strength"] == chosen]
    return {
        "name": technique.name,
        "description": technique.description,
        "config": technique.to_config(),
        "grid": grid,
        "chosen_strength": chosen,
        "chosen_label": technique.label(chosen),
        "summary": {m: summary([n[m] for n in chosen_numbers]) for m in MEASURES},
        "runs": runs,
        "chosen_numbers": chosen_numbers,
        "wall_time_s": wall,
    }


def _fmt(value, spec):
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "nan" if value is not None else "-"
    return format(value, spec)


def format_table(techniques: list[dict], task: str, epochs: int) -> str:
    """The console table: means over the seeds at the chosen strength."""
    short = "acc" if task == "classification" else "MSE"
    spec = ".3f" if task == "classification" else ".4g"
    headers = [
        "technique",
        "strength",
        f"train {short}",
        f"val {short}",
        f"test {short} (95% CI)",
        "loss gap",
        "zero w",
        "mean |w|",
        "ep->95%" if task == "classification" else "ep->R2.9",
        "epochs",
        "time",
    ]
    rows = []
    for t in techniques:
        s = {k: v["mean"] for k, v in t["summary"].items()}
        test = t["summary"]["test_metric"]
        reached = s["epochs_to_threshold"]
        rows.append(
            [
                t["name"],
                t["chosen_label"] or "-",
                _fmt(s["train_metric"], spec),
                _fmt(s["validation_metric"], spec),
                f"{_fmt(test['mean'], spec)} [{_fmt(test['ci_low'], spec)}, "
                f"{_fmt(test['ci_high'], spec)}]",
                _fmt(s["generalization_gap"], "+.3f"),
                f"{100 * s['zero_weight_fraction']:.1f}%",
                _fmt(s["mean_abs_weight"], ".4f"),
                "never" if reached > epochs else f"{reached:.1f}",
                f"{s['epochs_run']:.1f}",
                f"{t['wall_time_s']:.1f}s",
            ]
        )
    return format_rows(headers, rows)


def format_rows(headers: list[str], rows: list[list[str]]) -> str:
    """Columns as wide as their widest cell: the first left-aligned, the rest
    right-aligned, under a rule."""
    widths = [
        max(len(line[i]) for line in [headers, *rows]) for i in range(len(headers))
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
    if isinstance(value, np.generic):
        return _json_safe(value.item())
    return value


def write_json(path: str, document: dict) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(_json_safe(document), f, indent=2, allow_nan=False)
        f.write("\n")


def write_csv(path: str, techniques: list[dict], task: str) -> None:
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(CSV_COLUMNS)
        for t in techniques:
            cells = [t["name"], t["chosen_label"], primary_metric(task)]
            for measure in MEASURES:
                cells += [repr(float(v)) for v in t["summary"][measure].values()]
            writer.writerow([*cells, f"{t['wall_time_s']:.3f}"])


def seeds_text(seeds) -> str:
    return f"seeds {seeds[0]}-{seeds[-1]}" if len(seeds) > 1 else f"seed {seeds[0]}"


class Progress:
    """One line: technique, strengths, seeds, epoch and an ETA.

    On a terminal the line is rewritten every epoch; elsewhere (a log file,
    a pipe) it is printed once per technique, when it finishes.
    """

    def __init__(self, total_units, stream=None, quiet=False):
        self.total = total_units
        self.done = 0
        self.started = time.perf_counter()
        self.stream = stream if stream is not None else sys.stderr
        self.live = bool(getattr(self.stream, "isatty", lambda: False)())
        self.quiet = quiet
        self.line = ""

    def update(self, prefix, units):
        self.done += units
        elapsed = time.perf_counter() - self.started
        eta = elapsed / self.done * (self.total - self.done)
        self.line = f"{prefix}  elapsed {elapsed:5.1f}s  ETA {eta:5.1f}s"
        if self.live and not self.quiet:
            self.stream.write("\r" + self.line + " " * 4)
            self.stream.flush()

    def finish(self):
        if not self.quiet:
            self.stream.write(("\r" if self.live else "") + self.line + "\n")
            self.stream.flush()
