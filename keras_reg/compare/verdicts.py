"""The rule that judges each claim: paired differences over seeds, Holm-corrected.

Each claim compares one technique, at its chosen strength, with the baseline
on the same seeds; docs/compare.md ("Verdicts") states the rule in full.
"""

import dataclasses
import math

import numpy as np
from scipy import stats

ALPHA = 0.05
CONFIDENCE = 0.95
HOLDS, DOES_NOT_HOLD, INCONCLUSIVE = "holds", "does not hold", "inconclusive"


@dataclasses.dataclass(frozen=True)
class Claim:
    """A claim: `technique` moves `measure` in `direction` (-1 down, +1 up)."""

    text: str
    technique: str
    measure: str
    direction: int


# How a verdict's text names each measure.
WORDS = {
    "zero_weight_fraction": "fraction of kernel weights exactly 0",
    "zero_unit_fraction": "fraction of units whose kernel weights are all exactly 0",
    "mean_abs_weight": "mean |w|",
    "near_zero_weight_fraction": "fraction of kernel weights with |w| < 1e-3",
    "generalization_gap": "generalization gap (test - train data loss)",
    "epochs_to_threshold": "epochs to the training threshold",
    "test_data_loss": "test data loss",
}
CLAIMS = (
    Claim(
        "L1 drives weights to exactly zero", "L1 (proximal)", "zero_weight_fraction", +1
    ),
    Claim(
        "Group lasso switches off whole units",
        "Group lasso (proximal)",
        "zero_unit_fraction",
        +1,
    ),
    Claim("L2 keeps weights small", "L2", "mean_abs_weight", -1),
    Claim(
        "ElasticNet pulls weights toward zero",
        "ElasticNet",
        "near_zero_weight_fraction",
        +1,
    ),
    Claim("Dropout reduces overfitting", "Dropout", "generalization_gap", -1),
    Claim("DropBlock reduces overfitting", "DropBlock", "generalization_gap", -1),
    Claim(
        "BatchNormalization speeds up convergence",
        "BatchNormalization",
        "epochs_to_threshold",
        -1,
    ),
    Claim("EarlyStopping lowers the test loss", "EarlyStopping", "test_data_loss", -1),
    # Izmailov et al.: averaging reaches a wider optimum that generalizes
    # better; the test loss is the finer measure of it than the accuracy.
    Claim("SWA lowers the test loss", "SWA", "test_data_loss", -1),
    # Foret et al.: a flat neighbourhood generalizes better.
    Claim("SAM lowers the test loss", "SAM", "test_data_loss", -1),
)


def interval(values):
    """Mean and 95% Student-t interval of `values` (the mean twice for n = 1)."""
    values = np.asarray(values, dtype="float64")
    mean = float(values.mean())
    if len(values) < 2:
        return mean, mean, mean
    half = stats.t.ppf(0.5 + CONFIDENCE / 2, len(values) - 1) * values.std(ddof=1)
    half /= math.sqrt(len(values))
    return mean, mean - half, mean + half


def paired_p_value(differences):
    """Two-sided p-value of the paired t-test that the mean difference is 0.

    All differences equal (t undefined): the exact sign-flip test's, 1 if
    they are 0, else 2 ** (1 - n). One seed or a NaN difference: 1.
    """
    d = np.asarray(differences, dtype="float64")
    if len(d) < 2 or not np.all(np.isfinite(d)):
        return 1.0
    if np.all(d == d[0]):
        return 1.0 if d[0] == 0 else 2.0 ** (1 - len(d))
    t = d.mean() / (d.std(ddof=1) / math.sqrt(len(d)))
    return float(2 * stats.t.sf(abs(t), len(d) - 1))


def holm(p_values):
    """Holm-Bonferroni adjusted p-values, in the order given."""
    order = np.argsort(p_values, kind="stable")
    adjusted = [0.0] * len(p_values)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, (len(p_values) - rank) * p_values[index])
        adjusted[index] = min(1.0, running)
    return adjusted


def judge(groups, claims=CLAIMS):
    """One verdict dict per claim whose technique and baseline were trained.

    `groups` maps a technique name to its per-seed numbers at the chosen
    strength: `{"seeds": [...], "runs": [{measure: value, ...}, ...]}`.
    """
    baseline = groups.get("baseline")
    judged = []
    for claim in claims:
        group = groups.get(claim.technique)
        if baseline is None or group is None:
            continue
        ours = [run[claim.measure] for run in group["runs"]]
        theirs = [run[claim.measure] for run in baseline["runs"]]
        differences = np.subtract(ours, theirs)
        judged.append((claim, ours, theirs, differences))
    adjusted = holm([paired_p_value(d) for _, _, _, d in judged])
    return [
        _verdict(claim, ours, theirs, d, p, baseline["seeds"])
        for (claim, ours, theirs, d), p in zip(judged, adjusted, strict=True)
    ]


def _verdict(claim, ours, theirs, differences, p_holm, seeds):
    effect, low, high = interval(differences)
    if p_holm < ALPHA and effect * claim.direction > 0:
        outcome = HOLDS
    elif p_holm < ALPHA and effect * claim.direction < 0:
        outcome = DOES_NOT_HOLD
    else:
        outcome = INCONCLUSIVE
    text = (
        f"{claim.text}: {WORDS[claim.measure]} {np.mean(ours):.4g} vs "
        f"{np.mean(theirs):.4g} (baseline); difference {effect:+.4g} "
        f"[{low:+.4g}, {high:+.4g}] "
        f"(95% CI, {len(seeds)} seeds), Holm p = {p_holm:.3g}: {outcome}"
    )
    return {
        "claim": claim.text,
        "technique": claim.technique,
        "measure": claim.measure,
        "claimed_direction": "up" if claim.direction > 0 else "down",
        "outcome": outcome,
        "effect": effect,
        "ci_low": low,
        "ci_high": high,
        "p_holm": p_holm,
        "differences": [float(d) for d in differences],
        "text": text,
    }
