"""Sparsity vs accuracy: proximal sparsity against magnitude pruning, matched.

When "L1 (proximal)" or "Group lasso (proximal)" runs with "Pruning", Pruning
is trained at exactly the sparsities they reached: for each of their
strengths, the fraction of kernel weights exactly 0, mean over the seeds.
Each strength is then paired with Pruning at its sparsity, seed by seed, on
the test split's primary metric (accuracy, or MSE for regression): the
means with 95% intervals, the per-seed difference (technique - Pruning) with
its interval, and the paired t-test's p-value, Holm-adjusted over the rows of
the section (the rule of `verdicts.py`).
"""

import numpy as np

from keras_reg.compare import verdicts

SOURCES = ("L1 (proximal)", "Group lasso (proximal)")
PRUNING = "Pruning"


def _mean_sparsity(runs, value):
    return float(
        np.mean([r["zero_weight_fraction"] for r in runs if r["strength"] == value])
    )


def targets(summaries) -> dict:
    """`{(technique, strength): target sparsity}` for the proximal techniques
    in `summaries`, in their order and grid order."""
    found = {}
    for summary in summaries:
        if summary["name"] in SOURCES:
            for entry in summary["grid"]:
                value = entry["strength"]
                found[(summary["name"], value)] = _mean_sparsity(summary["runs"], value)
    return found


def pruning_values(matched: dict) -> list:
    """The distinct target sparsities, in order; Pruning trains each."""
    # PolynomialDecay's final sparsity must stay below 1.
    return list(dict.fromkeys(min(t, 0.999) for t in matched.values()))


def _metric(run, metric):
    return run["test"][metric]


def section(summaries, matched, task) -> dict | None:
    """The `sparsity_vs_accuracy` entry of results.json, or None."""
    if not matched:
        return None
    metric = "accuracy" if task == "classification" else "mse"
    by_name = {s["name"]: s for s in summaries}
    pruning_runs = by_name[PRUNING]["runs"]
    rows = []
    for (name, value), target in matched.items():
        technique = by_name[name]
        ours = {r["seed"]: r for r in technique["runs"] if r["strength"] == value}
        theirs = {
            r["seed"]: r for r in pruning_runs if r["strength"] == min(target, 0.999)
        }
        seeds = sorted(ours)
        mine = [_metric(ours[s], metric) for s in seeds]
        pruned = [_metric(theirs[s], metric) for s in seeds]
        differences = np.subtract(mine, pruned)
        effect, low, high = verdicts.interval(differences)
        rows.append(
            {
                "technique": name,
                "strength": value,
                "label": next(
                    g["label"] for g in technique["grid"] if g["strength"] == value
                ),
                "target_sparsity": target,
                "sparsity": _summary([ours[s]["zero_weight_fraction"] for s in seeds]),
                "test_metric": _summary(mine),
                "pruning_sparsity": _summary(
                    [theirs[s]["zero_weight_fraction"] for s in seeds]
                ),
                "pruning_test_metric": _summary(pruned),
                "seeds": seeds,
                "differences": [float(d) for d in differences],
                "effect": effect,
                "ci_low": low,
                "ci_high": high,
                "p_value": verdicts.paired_p_value(differences),
            }
        )
    for row, adjusted in zip(
        rows, verdicts.holm([r["p_value"] for r in rows]), strict=True
    ):
        row["p_holm"] = adjusted
    return {
        "metric": metric,
        "difference": "technique - Pruning, per seed, on the test split",
        "correction": "Holm-Bonferroni over the rows",
        "rows": rows,
    }


def _summary(values):
    mean, low, high = verdicts.interval(values)
    return {"mean": mean, "ci_low": low, "ci_high": high}


def format_section(document: dict, n_seeds: int) -> str:
    """The printed section: one row per proximal strength."""
    metric = document["metric"]
    short = "acc" if metric == "accuracy" else "MSE"
    spec = ".3f" if metric == "accuracy" else ".4g"

    def ci(s, fmt=spec):
        return f"{s['mean']:{fmt}} [{s['ci_low']:{fmt}}, {s['ci_high']:{fmt}}]"

    headers = [
        "technique",
        "strength",
        "sparsity",
        f"test {short} (95% CI)",
        "Pruning sparsity",
        f"Pruning test {short}",
        "difference (95% CI)",
        "Holm p",
    ]
    rows = [
        [
            r["technique"],
            r["label"],
            f"{100 * r['sparsity']['mean']:.1f}%",
            ci(r["test_metric"]),
            f"{100 * r['pruning_sparsity']['mean']:.1f}%",
            ci(r["pruning_test_metric"]),
            f"{r['effect']:+.3g} [{r['ci_low']:+.3g}, {r['ci_high']:+.3g}]",
            f"{r['p_holm']:.3g}",
        ]
        for r in document["rows"]
    ]
    widths = [max(len(line[i]) for line in [headers, *rows]) for i in range(8)]

    def render(cells):
        first = cells[0].ljust(widths[0])
        rest = [c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True)]
        return "  ".join([first, *rest]).rstrip()

    title = (
        f"Sparsity vs accuracy: Pruning trained to the sparsity each proximal "
        f"strength reached; difference = technique - Pruning, paired over "
        f"{n_seeds} seeds, Holm over the rows"
    )
    rule = "  ".join("-" * w for w in widths)
    return "\n".join([title, render(headers), rule, *(render(r) for r in rows)])
