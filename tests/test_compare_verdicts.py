"""Tests of keras_reg/compare/verdicts.py: intervals, paired tests, Holm, the rule.

References are independent: `scipy.stats.t.interval`, `scipy.stats.ttest_rel`
and a Holm-Bonferroni written here from its textbook definition.
"""

import numpy as np
import pytest
from scipy import stats

from keras_reg.compare import verdicts

CLAIM_BY_TECHNIQUE = {claim.technique: claim for claim in verdicts.CLAIMS}


def holm_reference(p_values):
    """Holm's step-down adjustment, from its definition.

    With the m p-values sorted ascending, p_(1) <= ... <= p_(m), the adjusted
    p_(i) is min(1, max over j <= i of (m - j + 1) * p_(j)); ties keep the
    given order.
    """
    m = len(p_values)
    ranked = sorted(range(m), key=lambda i: (p_values[i], i))
    adjusted = [None] * m
    for i, index in enumerate(ranked):
        scaled = [(m - j) * p_values[ranked[j]] for j in range(i + 1)]
        adjusted[index] = min(1.0, max(scaled))
    return adjusted


def t_interval_reference(values):
    values = np.asarray(values, dtype="float64")
    low, high = stats.t.interval(
        0.95, len(values) - 1, loc=values.mean(), scale=stats.sem(values)
    )
    return values.mean(), low, high


# --- interval ---


@pytest.mark.parametrize("n", [2, 3, 5, 10])
def test_interval_is_student_t_95_percent(n):
    values = np.random.default_rng(n).normal(3.0, 2.0, size=n)
    np.testing.assert_allclose(
        verdicts.interval(values), t_interval_reference(values), rtol=1e-12
    )


def test_interval_of_one_value_is_that_value_three_times():
    assert verdicts.interval([0.25]) == (0.25, 0.25, 0.25)


def test_interval_of_equal_values_has_zero_width():
    assert verdicts.interval([2.0, 2.0, 2.0]) == (2.0, 2.0, 2.0)


# --- paired p-value ---


@pytest.mark.parametrize("seed", range(6))
def test_paired_p_value_matches_scipy_ttest_rel(seed):
    rng = np.random.default_rng(seed)
    n = 2 + seed
    theirs = rng.normal(size=n)
    ours = theirs + rng.normal(0.3 * seed, 1.0, size=n)
    expected = stats.ttest_rel(ours, theirs).pvalue
    assert verdicts.paired_p_value(ours - theirs) == pytest.approx(expected, rel=1e-9)


def test_paired_p_value_of_exact_zero_differences_is_one():
    # Identical runs: nothing to detect, whatever scipy's 0/0 gives.
    assert verdicts.paired_p_value([0.0, 0.0, 0.0, 0.0, 0.0]) == 1.0


@pytest.mark.parametrize("n", [2, 3, 5])
def test_paired_p_value_of_equal_nonzero_differences_is_the_sign_flip_tests(n):
    # t is undefined without spread. The exact sign-flip test: of the 2**n
    # sign patterns of n equal differences, the two with all signs equal are
    # as extreme as the one observed, so p = 2 / 2**n.
    assert verdicts.paired_p_value([-0.5] * n) == 2 / 2**n


def test_paired_p_value_with_a_nan_difference_is_one():
    # A diverged run: nothing can be concluded from it.
    assert verdicts.paired_p_value([0.1, float("nan"), 0.2]) == 1.0


def test_paired_p_value_of_one_seed_is_one():
    assert verdicts.paired_p_value([3.0]) == 1.0


# --- Holm-Bonferroni ---


def test_holm_on_a_hand_computed_example():
    # Sorted: 0.005 x 4 = 0.02, 0.01 x 3 = 0.03, 0.03 x 2 = 0.06, 0.04 x 1 =
    # 0.04 -> 0.06 (never below an earlier step).
    adjusted = verdicts.holm([0.01, 0.04, 0.03, 0.005])
    np.testing.assert_allclose(adjusted, [0.03, 0.06, 0.06, 0.02], rtol=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_holm_matches_the_definition(seed):
    rng = np.random.default_rng(seed)
    p = list(rng.uniform(0, 0.2, size=1 + seed))
    p[0] = p[-1]  # a tie
    np.testing.assert_allclose(verdicts.holm(p), holm_reference(p), rtol=1e-12)


def test_holm_caps_at_one_and_keeps_a_single_p_value():
    assert verdicts.holm([0.6, 0.7]) == [1.0, 1.0]
    assert verdicts.holm([0.03]) == [0.03]


# --- judge: the rule ---


def _groups(seeds, baseline, **techniques):
    """`judge`'s input: per-seed values of each claim's measure."""
    groups = {
        "baseline": {
            "seeds": seeds,
            "runs": [
                {claim.measure: value for claim in verdicts.CLAIMS}
                for value in baseline
            ],
        }
    }
    for name, values in techniques.items():
        measure = CLAIM_BY_TECHNIQUE[name].measure
        groups[name] = {
            "seeds": seeds,
            "runs": [{measure: value} for value in values],
        }
    return groups


def test_verdict_text_and_fields_for_constant_differences():
    # Three equal differences: sign-flip p = 2 / 2**3 = 0.25.
    groups = _groups([0, 1, 2], [2.0, 3.0, 4.0], L2=[1.0, 2.0, 3.0])
    (verdict,) = verdicts.judge(groups)
    assert verdict == {
        "claim": "L2 keeps weights small",
        "technique": "L2",
        "measure": "mean_abs_weight",
        "claimed_direction": "down",
        "outcome": "inconclusive",
        "effect": -1.0,
        "ci_low": -1.0,
        "ci_high": -1.0,
        "p_holm": 0.25,
        "differences": [-1.0, -1.0, -1.0],
        "text": "L2 keeps weights small: mean |w| 2 vs 3 (baseline); difference -1 "
        "[-1, -1] (95% CI, 3 seeds), Holm p = 0.25: inconclusive",
    }


def test_seven_equal_differences_decide_a_claim():
    # 2 / 2**7 = 0.016 < 0.05; with six seeds 0.031, with five 0.0625.
    (verdict,) = verdicts.judge(_groups(list(range(7)), [1.0] * 7, L2=[0.5] * 7))
    assert verdict["p_holm"] == 2 / 2**7
    assert verdict["outcome"] == "holds"
    (verdict,) = verdicts.judge(_groups(list(range(5)), [1.0] * 5, L2=[0.5] * 5))
    assert verdict["outcome"] == "inconclusive"


def test_effect_interval_and_p_value_match_references():
    rng = np.random.default_rng(7)
    baseline = rng.normal(0.1, 0.02, size=5)
    dropout = baseline - 0.01 + rng.normal(0, 0.01, size=5)
    l2 = baseline + rng.normal(0, 0.01, size=5)
    groups = _groups(list(range(5)), baseline, L2=l2, Dropout=dropout)
    judged = verdicts.judge(groups)
    assert [v["technique"] for v in judged] == ["L2", "Dropout"]
    raw = [stats.ttest_rel(ours, baseline).pvalue for ours in (l2, dropout)]
    for verdict, ours, p in zip(
        judged, (l2, dropout), holm_reference(raw), strict=True
    ):
        np.testing.assert_allclose(verdict["differences"], ours - baseline, rtol=0)
        np.testing.assert_allclose(
            (verdict["effect"], verdict["ci_low"], verdict["ci_high"]),
            t_interval_reference(ours - baseline),
            rtol=1e-12,
        )
        assert verdict["p_holm"] == pytest.approx(p, rel=1e-9)


# Differences with mean `shift` and sample sd 0.79: t = shift / 0.354 on 4
# degrees of freedom.
_SPREAD = np.array([-1.0, -0.5, 0.0, 0.5, 1.0])


@pytest.mark.parametrize(
    "technique, shift, expected",
    [
        # t = -8.5, p = 0.001: goes the claimed way (down).
        ("L2", -3.0, "holds"),
        # Same size, the other way.
        ("L2", +3.0, "does not hold"),
        # L1's claim is "up": a rise in the zero fraction holds.
        ("L1 (proximal)", +3.0, "holds"),
        ("L1 (proximal)", -3.0, "does not hold"),
        # t = 0.28, p = 0.79.
        ("Dropout", 0.1, "inconclusive"),
    ],
)
def test_outcome_follows_the_claimed_direction(technique, shift, expected):
    baseline = np.linspace(1.0, 2.0, 5)
    groups = _groups(
        list(range(5)), baseline, **{technique: baseline + _SPREAD + shift}
    )
    (verdict,) = verdicts.judge(groups)
    assert verdict["outcome"] == expected
    assert verdict["text"].endswith(f": {expected}")


def test_holm_turns_two_marginal_claims_inconclusive():
    # Shift 1.16: t = 3.28 on 4 degrees of freedom, p = 0.030 < 0.05, so
    # either claim alone holds; judged together, Holm doubles the smaller
    # p-value to about 0.06 > 0.05.
    baseline = np.linspace(1.0, 2.0, 5)
    shifted = baseline + _SPREAD - 1.16
    raw = stats.ttest_rel(shifted, baseline).pvalue
    assert 0.025 < raw < 0.05
    alone = verdicts.judge(_groups(list(range(5)), baseline, L2=shifted))
    assert [v["outcome"] for v in alone] == ["holds"]
    together = verdicts.judge(
        _groups(list(range(5)), baseline, L2=shifted, Dropout=shifted)
    )
    assert [v["outcome"] for v in together] == ["inconclusive", "inconclusive"]
    assert [v["p_holm"] for v in together] == pytest.approx([2 * raw, 2 * raw])


def test_identical_runs_are_inconclusive_with_p_one():
    baseline = [0.3, 0.1, 0.2]
    (verdict,) = verdicts.judge(_groups([0, 1, 2], baseline, Dropout=baseline))
    assert verdict["outcome"] == "inconclusive"
    assert verdict["differences"] == [0.0, 0.0, 0.0]
    assert verdict["p_holm"] == 1.0


def test_one_seed_is_always_inconclusive():
    judged = verdicts.judge(_groups([4], [1.0], L2=[0.001], Dropout=[5.0]))
    assert [v["outcome"] for v in judged] == ["inconclusive", "inconclusive"]


def test_claims_follow_table_order_and_need_their_technique_and_baseline():
    seeds = [0, 1]
    everything = {claim.technique: [0.0, 1.0] for claim in verdicts.CLAIMS}
    judged = verdicts.judge(_groups(seeds, [0.0, 1.0], **everything))
    assert [v["claim"] for v in judged] == [
        "L1 drives weights to exactly zero",
        "Group lasso switches off whole units",
        "L2 keeps weights small",
        "ElasticNet pulls weights toward zero",
        "Dropout reduces overfitting",
        "DropBlock reduces overfitting",
        "BatchNormalization speeds up convergence",
        "EarlyStopping lowers the test loss",
        "SWA lowers the test loss",
        "SAM lowers the test loss",
    ]
    # Plain L1 has no claim (it is judged on the proximal row).
    groups = _groups(seeds, [0.0, 1.0], Dropout=[0.0, 1.0])
    groups["L1"] = {"seeds": seeds, "runs": [{"zero_weight_fraction": 0.5}] * 2}
    assert [v["technique"] for v in verdicts.judge(groups)] == ["Dropout"]
    without_baseline = _groups(seeds, [0.0, 1.0], L2=[0.0, 1.0])
    del without_baseline["baseline"]
    assert verdicts.judge(without_baseline) == []
