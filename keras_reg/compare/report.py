"""Choosing strengths, the table, results.json and results.csv of `keras-reg compare`.

docs/compare.md ("Files") specifies results.json (`SCHEMA_VERSION`) and
results.csv field by field.
"""

import csv
import json
import math
import sys
import time

import numpy as np

from keras_reg.compare import verdicts

SCHEMA_VERSION = 2
# docs/compare.md lists the measures, in this order (results.csv's columns).
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


def fmt(value, spec):
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
                fmt(s["train_metric"], spec),
                fmt(s["validation_metric"], spec),
                f"{fmt(test['mean'], spec)} [{fmt(test['ci_low'], spec)}, "
                f"{fmt(test['ci_high'], spec)}]",
                fmt(s["generalization_gap"], "+.3f"),
                f"{100 * s['zero_weight_fraction']:.1f}%",
                fmt(s["mean_abs_weight"], ".4f"),
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
