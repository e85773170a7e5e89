"""Sparsity vs accuracy: proximal sparsity against magnitude pruning, matched.

Pruning is trained at the sparsities the proximal techniques reached, then
paired with them seed by seed on the test metric (docs/compare.md).
"""

import numpy as np

from keras_reg.compare import report, verdicts

SOURCES = ("L1 (proximal)", "Group lasso (proximal)")
PRUNING = "Pruning"
# PolynomialDecay's final sparsity must stay below 1.
_MAX_TARGET = 0.999


def targets(summaries) -> dict:
    """`{(technique, strength): target sparsity}` for the proximal techniques
    in `summaries`, in their order and grid order."""
    found = {}
    for summary in summaries:
        if summary["name"] in SOURCES:
            for value in (g["strength"] for g in summary["grid"]):
                zeros = [
                    r["zero_weight_fraction"]
                    for r in summary["runs"]
                    if r["strength"] == value
                ]
                found[(summary["name"], value)] = float(np.mean(zeros))
    return found


def pruning_values(matched: dict) -> list:
    """The distinct target sparsities, in order; Pruning trains each."""
    return list(dict.fromkeys(min(t, _MAX_TARGET) for t in matched.values()))


def section(summaries, matched, task) -> dict | None:
    """The `sparsity_vs_accuracy` entry of results.json, or None."""
    if not matched:
        return None
    metric = report.primary_metric(task)
    by_name = {s["name"]: s for s in summaries}
    rows = []
    for (name, value), target in matched.items():
        technique = by_name[name]
        ours = {r["seed"]: r for r in technique["runs"] if r["strength"] == value}
        theirs = {
            r["seed"]: r
            for r in by_name[PRUNING]["runs"]
            if r["strength"] == min(target, _MAX_TARGET)
        }
        seeds = sorted(ours)
        mine = [ours[s]["test"][metric] for s in seeds]
        pruned = [theirs[s]["test"][metric] for s in seeds]
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
                "sparsity": report.summary(
                    [ours[s]["zero_weight_fraction"] for s in seeds]
                ),
                "test_metric": report.summary(mine),
                "pruning_sparsity": report.summary(
                    [theirs[s]["zero_weight_fraction"] for s in seeds]
                ),
                "pruning_test_metric": report.summary(pruned),
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


def format_section(document: dict, n_seeds: int) -> str:
    """The printed section: one row per proximal strength."""
    short, spec = ("acc", ".3f") if document["metric"] == "accuracy" else ("MSE", ".4g")

    def ci(s, spec=spec, mean="mean"):  # non-finite values print "nan", as in the table
        low, high = report.fmt(s["ci_low"], spec), report.fmt(s["ci_high"], spec)
        return f"{report.fmt(s[mean], spec)} [{low}, {high}]"

    def percent(s):
        return report.fmt(100 * s["mean"], ".1f") + "%"

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
            percent(r["sparsity"]),
            ci(r["test_metric"]),
            percent(r["pruning_sparsity"]),
            ci(r["pruning_test_metric"]),
            ci(r, "+.3g", mean="effect"),
            report.fmt(r["p_holm"], ".3g"),
        ]
        for r in document["rows"]
    ]
    title = (
        f"Sparsity vs accuracy: Pruning trained to the sparsity each proximal "
        f"strength reached; difference = technique - Pruning, paired over "
        f"{n_seeds} seeds, Holm over the rows"
    )
    return title + "\n" + report.format_rows(headers, rows)
