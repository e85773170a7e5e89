"""The techniques that `keras-reg compare` trains, one table entry each.

A technique is data: a kernel regularizer, Dropout and BatchNormalization
added to the model by `keras_reg.regularize`, an optional EarlyStopping, an
optional optimizer wrapper, and, for a technique with a strength, the grid of
strengths to try (chosen on validation data). Every technique shares the
model, optimizer, seeds and epoch budget, so a difference in the results
comes from the technique alone.
"""

import dataclasses
import re

import numpy as np

from keras_reg import regularizers as reg_regularizers

# The strength grids (`--grid N` values, geometric for factors, linear for a
# rate, rounded for a patience); `--grid 1` takes the default. The proximal L1
# step shrinks each weight by learning_rate * l1 per step: 0.1-1.0 spans "some"
# to "most" kernel weights at 0 on digits (benchmarks/sparsity.py), where a
# subgradient L1 factor acts through the gradient, on another scale.
L1_GRID, L1_DEFAULT = (1e-5, 1e-3), 1e-4
L1_PROXIMAL_GRID, L1_PROXIMAL_DEFAULT = (0.1, 1.0), 0.3
L2_GRID, L2_DEFAULT = (1e-4, 1e-2), 1e-3
DROPOUT_GRID, DROPOUT_DEFAULT = (0.2, 0.5), 0.5
PATIENCE_GRID, PATIENCE_DEFAULT = (3, 10), 5


@dataclasses.dataclass(frozen=True)
class Technique:
    """One row of the comparison.

    Args:
        name: the name used by `--techniques`, the table, and results files.
        description: one line for `--help`.
        strength: what the grid varies: "l1", "l2", "l1_l2" (ElasticNet's two
            factors together, l1 = l2 / 10), "rate" (Dropout), "patience"
            (EarlyStopping), or None for a technique without a strength.
        grid: the lowest and highest strength, and `default` the one for
            `--grid 1`.
        regularizer: name of a class in `keras_reg.regularizers` put on every
            kernel, or None; `proximal` makes it a proximal L1.
        batch_normalization: whether a BatchNormalization follows each hidden
            layer.
        dropout: a fixed Dropout rate after each hidden layer, or None.
        early_stopping: whether EarlyStopping (restoring the best weights)
            watches the validation loss; it changes no training step, so
            its runs share the baseline's training.
    """

    name: str
    description: str
    strength: str | None = None
    grid: tuple = ()
    default: float | None = None
    regularizer: str | None = None
    proximal: bool = False
    batch_normalization: bool = False
    dropout: float | None = None
    early_stopping: bool = False

    def values(self, n: int) -> list:
        """The strengths to try: `n` values over the grid, or the default."""
        if self.strength is None:
            return [None]
        if n == 1:
            return [self.default]
        low, high = self.grid
        if self.strength == "rate":
            return [round(float(v), 4) for v in np.linspace(low, high, n)]
        if self.strength == "patience":
            return sorted({int(round(v)) for v in np.geomspace(low, high, n)})
        return [float(f"{v:.3g}") for v in np.geomspace(low, high, n)]

    def regularize_kwargs(self, value) -> dict:
        """The arguments of `keras_reg.regularize` at strength `value`."""
        kwargs = {"batch_normalization": self.batch_normalization}
        rate = value if self.strength == "rate" else self.dropout
        if rate:
            kwargs["dropout"] = rate
        if self.regularizer is not None:
            if self.regularizer == "ElasticNet":
                l2 = L2_DEFAULT if value is None else value
                factors = {"l1": l2 / 10, "l2": l2}
            else:
                factors = {self.strength: value}
            if self.proximal:
                factors["proximal"] = True
            cls = getattr(reg_regularizers, self.regularizer)
            kwargs["kernel_regularizer"] = cls(**factors)
        return kwargs

    def values_of(self, runs) -> list:
        """The strengths present in `runs`, in grid order."""
        return list(dict.fromkeys(run["strength"] for run in runs))

    def label(self, value) -> str:
        """The strength as the table shows it (`l2=0.001`), or ""."""
        if self.strength is None:
            return ""
        if self.strength == "l1_l2":
            return f"l1={value / 10:.3g}, l2={value:.3g}"
        return f"{self.strength}={value:g}"

    def patience(self, value):
        """EarlyStopping's patience at strength `value`, or None without it."""
        if not self.early_stopping:
            return None
        return value if self.strength == "patience" else PATIENCE_DEFAULT

    def to_config(self) -> dict:
        return {
            key: getattr(self, key)
            for key in (
                "strength",
                "regularizer",
                "proximal",
                "batch_normalization",
                "dropout",
                "early_stopping",
            )
        }


TECHNIQUES: tuple[Technique, ...] = (
    Technique("baseline", "no regularization"),
    Technique(
        "L1",
        "L1 kernel penalty (subgradient)",
        "l1",
        L1_GRID,
        L1_DEFAULT,
        regularizer="L1",
    ),
    Technique(
        "L1 (proximal)",
        "L1 kernel penalty applied as a proximal step by keras_reg.optimizers.Proximal",
        "l1",
        L1_PROXIMAL_GRID,
        L1_PROXIMAL_DEFAULT,
        regularizer="L1",
        proximal=True,
    ),
    Technique("L2", "L2 kernel penalty", "l2", L2_GRID, L2_DEFAULT, regularizer="L2"),
    Technique(
        "ElasticNet",
        "L1 and L2 kernel penalties, l1 = l2 / 10",
        "l1_l2",
        L2_GRID,
        L2_DEFAULT,
        regularizer="ElasticNet",
    ),
    Technique(
        "Dropout",
        "Dropout after each hidden layer",
        "rate",
        DROPOUT_GRID,
        DROPOUT_DEFAULT,
    ),
    Technique(
        "BatchNormalization",
        "BatchNormalization after each hidden layer",
        batch_normalization=True,
    ),
    Technique(
        "EarlyStopping",
        "EarlyStopping on the validation loss, restoring the best weights",
        "patience",
        PATIENCE_GRID,
        PATIENCE_DEFAULT,
        early_stopping=True,
    ),
    Technique(
        "Combined",
        "ElasticNet (l2=0.001), Dropout 0.5, BatchNormalization and "
        "EarlyStopping (patience 5) together",
        regularizer="ElasticNet",
        batch_normalization=True,
        dropout=DROPOUT_DEFAULT,
        early_stopping=True,
    ),
)


def _key(name):
    return re.sub(r"[^a-z0-9]", "", name.lower())


def resolve(names: list[str]) -> list[Technique]:
    """Returns the techniques for `names`, in table order, baseline first.

    Names match ignoring case, spaces and punctuation ("l1proximal" is
    "L1 (proximal)"). The verdicts compare each technique with the baseline,
    so the baseline is always trained. Raises ValueError naming an unknown
    technique and listing the valid ones.
    """
    lowered = {_key(t.name): t for t in TECHNIQUES}
    valid = ", ".join(t.name for t in TECHNIQUES)
    chosen = []
    for raw in names:
        if _key(raw) not in lowered:
            raise ValueError(f"unknown technique {raw.strip()!r}; valid: {valid}")
        chosen.append(lowered[_key(raw)])
    if not chosen:
        raise ValueError(f"no technique given; valid: {valid}")
    return [t for t in TECHNIQUES if t in chosen or t.name == "baseline"]


__all__ = ["TECHNIQUES", "Technique", "resolve"]
