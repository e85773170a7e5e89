"""Checks the six claims about regularization against this run's baseline.

Each claim is judged with the numbers of one run and says "holds" or "does not
hold" with those numbers; there is no benefit of the doubt. The rules:

- L1 drives weights to exactly zero: the fraction of the "L1 (proximal)"
  technique's kernel weights that are exactly 0.0 exceeds the baseline's by at
  least `SPARSITY_MARGIN`. (Weights within 1e-3 of zero are shown for context,
  never counted.) The claim is about the L1 penalty's minimizer; a plain
  optimizer follows its subgradient and only makes weights oscillate around
  zero, so the claim is judged on the technique that applies L1 as a proximal
  step, and on nothing else: without that row there is no L1 verdict.
- L2 keeps weights small: L2's mean |w| over kernel weights is below the
  baseline's.
- ElasticNet does both: both of the above, for ElasticNet.
- Dropout reduces overfitting: Dropout's generalization gap is below the
  baseline's.
- BatchNormalization speeds up convergence: it reaches the training threshold
  in fewer epochs than the baseline (or reaches it when the baseline does not).
- EarlyStopping stops at the point of best generalization: the validation data
  loss of the model that fit returned (after restoring) equals the minimum over
  the run, within `LOSS_TOLERANCE` (float32 summation order only).

A claim is judged only when its technique was trained.
"""

import dataclasses

SPARSITY_MARGIN = 0.01
LOSS_TOLERANCE = 1e-3


@dataclasses.dataclass(frozen=True)
class Verdict:
    claim: str
    technique: str
    holds: bool
    text: str
    numbers: dict

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


def _pct(x):
    return f"{100 * x:.1f}%"


def _status(holds):
    return "holds" if holds else "does not hold"


def _sparse(result, baseline):
    return (
        result["zero_weight_fraction"]
        >= baseline["zero_weight_fraction"] + SPARSITY_MARGIN
    )


def _small(result, baseline):
    return result["mean_abs_weight"] < baseline["mean_abs_weight"]


def _sparsity_numbers(result, baseline):
    return (
        f"{_pct(result['zero_weight_fraction'])} of kernel weights exactly 0 vs "
        f"{_pct(baseline['zero_weight_fraction'])} (baseline); "
        f"|w| < 1e-3: {_pct(result['near_zero_weight_fraction'])} vs "
        f"{_pct(baseline['near_zero_weight_fraction'])}"
    )


def _size_numbers(result, baseline):
    return (
        f"mean |w| {result['mean_abs_weight']:.4f} vs "
        f"{baseline['mean_abs_weight']:.4f} (baseline)"
    )


def _l1(result, baseline, task):
    holds = _sparse(result, baseline)
    claim = "L1 drives weights to exactly zero"
    return (
        claim,
        holds,
        f"with {result['name']}, {_sparsity_numbers(result, baseline)}",
        {
            "zero_weight_fraction": result["zero_weight_fraction"],
            "baseline_zero_weight_fraction": baseline["zero_weight_fraction"],
            "near_zero_weight_fraction": result["near_zero_weight_fraction"],
            "baseline_near_zero_weight_fraction": baseline["near_zero_weight_fraction"],
        },
    )


def _l2(result, baseline, task):
    holds = _small(result, baseline)
    return (
        "L2 keeps weights small",
        holds,
        _size_numbers(result, baseline),
        {
            "mean_abs_weight": result["mean_abs_weight"],
            "baseline_mean_abs_weight": baseline["mean_abs_weight"],
        },
    )


def _elastic_net(result, baseline, task):
    holds = _sparse(result, baseline) and _small(result, baseline)
    text = f"{_sparsity_numbers(result, baseline)}; {_size_numbers(result, baseline)}"
    return (
        "ElasticNet drives weights to zero and keeps them small",
        holds,
        text,
        {
            "zero_weight_fraction": result["zero_weight_fraction"],
            "baseline_zero_weight_fraction": baseline["zero_weight_fraction"],
            "mean_abs_weight": result["mean_abs_weight"],
            "baseline_mean_abs_weight": baseline["mean_abs_weight"],
        },
    )


def _gap_words(task):
    if task == "classification":
        return "generalization gap (train - validation accuracy)"
    return "generalization gap (validation - train MSE)"


def _dropout(result, baseline, task):
    gap, base = result["generalization_gap"], baseline["generalization_gap"]
    text = f"{_gap_words(task)} {gap:.4f} vs {base:.4f} (baseline)"
    return (
        "Dropout reduces overfitting",
        gap < base,
        text,
        {
            "generalization_gap": gap,
            "baseline_generalization_gap": base,
        },
    )


def _threshold_words(task):
    return (
        "training accuracy >= 0.95"
        if task == "classification"
        else "training R^2 >= 0.9"
    )


def _batch_normalization(result, baseline, task):
    mine, base = result["epochs_to_threshold"], baseline["epochs_to_threshold"]
    if mine is None:
        holds = False
    else:
        holds = base is None or mine < base

    def show(n):
        return "never" if n is None else f"{n} epochs"

    text = f"{_threshold_words(task)} after {show(mine)} vs {show(base)} (baseline)"
    return (
        "BatchNormalization speeds up convergence",
        holds,
        text,
        {
            "epochs_to_threshold": mine,
            "baseline_epochs_to_threshold": base,
        },
    )


def _early_stopping(result, baseline, task):
    losses = result["history"]["val_data_loss"]
    minimum = min(losses)
    best = losses.index(minimum) + 1
    restored = result["final_val_data_loss"]
    holds = restored <= minimum * (1 + LOSS_TOLERANCE) + 1e-12
    text = (
        f"restored epoch {result['best_epoch']} has validation loss {restored:.4f} "
        f"vs run minimum {minimum:.4f} (epoch {best}); ran "
        f"{result['epochs_run']} epochs"
    )
    return (
        "EarlyStopping stops at the point of best generalization",
        holds,
        text,
        {
            "restored_epoch": result["best_epoch"],
            "restored_val_loss": restored,
            "min_val_loss": minimum,
            "min_val_loss_epoch": best,
            "epochs_run": result["epochs_run"],
        },
    )


# The technique each claim is about, and its judge; one entry per claim.
CLAIMS = (
    ("L1 (proximal)", _l1),
    ("L2", _l2),
    ("ElasticNet", _elastic_net),
    ("Dropout", _dropout),
    ("BatchNormalization", _batch_normalization),
    ("EarlyStopping", _early_stopping),
)


def judge(results: list[dict], task: str, claims=CLAIMS) -> list[Verdict]:
    """Returns one Verdict per claim whose technique is in `results`."""
    by_name = {r["name"]: r for r in results}
    baseline = by_name.get("baseline")
    verdicts = []
    if baseline is None:
        return verdicts
    for technique, check in claims:
        if technique not in by_name:
            continue
        claim, holds, numbers_text, numbers = check(by_name[technique], baseline, task)
        text = f"{claim}: {numbers_text}: {_status(holds)}"
        verdicts.append(Verdict(claim, technique, bool(holds), text, numbers))
    return verdicts
