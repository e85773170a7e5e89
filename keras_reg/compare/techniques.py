"""The techniques that `keras-reg compare` trains, one table entry each.

A technique is data: what it adds to the model (through
`keras_reg.regularize`), to the optimizer and to training, and the grid of
strengths to try.
"""

import dataclasses
import re

import numpy as np

from keras_reg import layers as reg_layers
from keras_reg import regularizers as reg_regularizers

# The strength grids (`--grid N` values, geometric for factors, linear for a
# rate or a sparsity, rounded for a patience) are with each technique below;
# `--grid 1` takes the default. These defaults also make up "Combined".
L2_DEFAULT = 1e-3
DROPOUT_DEFAULT = 0.5
PATIENCE_DEFAULT = 5
DROP_BLOCK_SIZE = 3
# SWA averages the weights of the last quarter of the epochs (no grid).
SWA_START = 0.75


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
        dropout_layer: "DropBlock2D": the dropout layer the "rate" strength
            goes to, after the layers with 4-D (image) outputs only.
        optimizer: "SAM" (strength "rho") or "Pruning" (strength
            "sparsity") wraps the run's optimizer.
        swa: whether StochasticWeightAveraging averages the weights of the
            epochs from `SWA_START` of the budget; it changes no training
            step either.
        default_run: whether it runs without `--techniques`.
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
    dropout_layer: str | None = None
    optimizer: str | None = None
    swa: bool = False
    default_run: bool = True

    def values(self, n: int) -> list:
        """The strengths to try: `n` values over the grid, or the default."""
        if self.strength is None:
            return [None]
        if n == 1:
            return [self.default]
        low, high = self.grid
        if self.strength in ("rate", "sparsity"):
            return [round(float(v), 4) for v in np.linspace(low, high, n)]
        if self.strength == "patience":
            return sorted({int(round(v)) for v in np.geomspace(low, high, n)})
        return [float(f"{v:.3g}") for v in np.geomspace(low, high, n)]

    def regularize_kwargs(self, value) -> dict:
        """The arguments of `keras_reg.regularize` at strength `value`."""
        kwargs = {"batch_normalization": self.batch_normalization}
        rate = value if self.strength == "rate" else self.dropout
        if rate and self.dropout_layer is not None:
            kwargs["dropout"] = getattr(reg_layers, self.dropout_layer)(
                rate, block_size=DROP_BLOCK_SIZE
            )
        elif rate:
            kwargs["dropout"] = rate
        if self.regularizer is not None:
            if self.regularizer == "ElasticNet":
                l2 = L2_DEFAULT if value is None else value
                factors = {"l1": l2 / 10, "l2": l2}
            elif self.regularizer == "GroupLasso":
                # Dense kernels: one group per unit; `apply` regroups the
                # kernels of other ranks (Conv2D: one per filter).
                factors = {"factor": value, "axis": 0}
            else:
                factors = {self.strength: value}
            if self.proximal:
                factors["proximal"] = True
            cls = getattr(reg_regularizers, self.regularizer)
            kwargs["kernel_regularizer"] = cls(**factors)
        return kwargs

    def label(self, value) -> str:
        """The strength as the table shows it (`l2=0.001`), or ""."""
        if self.strength is None:
            return ""
        if self.strength == "l1_l2":
            return f"l1={value / 10:.3g}, l2={value:.3g}"
        if self.strength == "sparsity":  # matched ones have many digits
            return f"sparsity={value:.4g}"
        return f"{self.strength}={value:g}"

    def patience(self, value):
        """EarlyStopping's patience at strength `value`, or None without it."""
        if not self.early_stopping:
            return None
        return value if self.strength == "patience" else PATIENCE_DEFAULT

    def to_config(self) -> dict:
        """The technique's fields for results.json, less its name and grid."""
        skip = ("name", "description", "grid", "default", "default_run")
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in skip}

    def swa_start(self, epochs: int) -> int:
        """SWA's first averaged epoch (0-based) for an epoch budget."""
        return min(epochs - 1, int(SWA_START * epochs))


TECHNIQUES: tuple[Technique, ...] = (
    Technique("baseline", "no regularization"),
    Technique(
        "L1",
        "L1 kernel penalty (subgradient)",
        "l1",
        (1e-5, 1e-3),
        1e-4,
        regularizer="L1",
    ),
    Technique(
        "L1 (proximal)",
        "L1 kernel penalty applied as a proximal step by keras_reg.optimizers.Proximal",
        "l1",
        # The proximal step shrinks each weight by learning_rate * l1 a step:
        # 0.1-1.0 spans "some" to "most" kernel weights at 0 on digits
        # (benchmarks/sparsity.py); subgradient L1 acts on another scale.
        (0.1, 1.0),
        0.3,
        regularizer="L1",
        proximal=True,
    ),
    Technique(
        "Group lasso (proximal)",
        "GroupLasso on each kernel's units (filters), applied as a proximal step",
        "factor",
        # Block soft-thresholding shrinks each hidden unit's incoming weights
        # by learning_rate * factor * sqrt(group size) a step. On digits (30
        # epochs) 0.2 zeroes almost no unit, 0.55 about a third, 0.9 nearly
        # all (accuracy 0.1): a sharp transition.
        (0.2, 0.6),
        0.35,
        regularizer="GroupLasso",
        proximal=True,
        default_run=False,
    ),
    Technique(
        "Pruning",
        "magnitude pruning (keras_reg.pruning, per layer, polynomial schedule); "
        "at the sparsities the proximal techniques reached when they run",
        "sparsity",
        (0.5, 0.9),  # when no proximal technique sets the targets
        0.8,
        optimizer="Pruning",
        default_run=False,
    ),
    Technique(
        "L2", "L2 kernel penalty", "l2", (1e-4, 1e-2), L2_DEFAULT, regularizer="L2"
    ),
    Technique(
        "ElasticNet",
        "L1 and L2 kernel penalties, l1 = l2 / 10",
        "l1_l2",
        (1e-4, 1e-2),
        L2_DEFAULT,
        regularizer="ElasticNet",
    ),
    Technique(
        "Dropout",
        "Dropout after each hidden layer",
        "rate",
        (0.2, 0.5),
        DROPOUT_DEFAULT,
    ),
    Technique(
        "DropBlock",
        f"DropBlock2D (blocks of {DROP_BLOCK_SIZE}x{DROP_BLOCK_SIZE}) after each "
        "layer with an image output (convolutional models only)",
        "rate",
        (0.05, 0.2),  # on the 8x8 and 4x4 maps of `--model cnn`
        0.1,
        dropout_layer="DropBlock2D",
        default_run=False,
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
        (3, 10),
        PATIENCE_DEFAULT,
        early_stopping=True,
    ),
    Technique(
        "SWA",
        "StochasticWeightAveraging of the last quarter of the epochs "
        "(averages the baseline's training)",
        swa=True,
    ),
    Technique(
        "SAM",
        "sharpness-aware minimization around the optimizer, each batch twice",
        "rho",
        (0.01, 0.1),  # around Foret et al.'s 0.05
        0.05,
        optimizer="SAM",
        default_run=False,
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


# Named sets for `--techniques`.
PRESETS = {
    "default": tuple(t.name for t in TECHNIQUES if t.default_run),
    "all": tuple(t.name for t in TECHNIQUES),
    "sparsity": ("L1 (proximal)", "Group lasso (proximal)", "Pruning"),
}


def resolve(names: list[str]) -> list[Technique]:
    """Returns the techniques for `names`, in table order, baseline first.

    Names match ignoring case, spaces and punctuation ("l1proximal" is
    "L1 (proximal)"); a preset name (`PRESETS`: default, all, sparsity)
    stands for its techniques. The verdicts compare each technique with the
    baseline, so the baseline is always trained. Raises ValueError naming an
    unknown technique and listing the valid ones.
    """
    lowered = {_key(t.name): t for t in TECHNIQUES}
    valid = ", ".join(t.name for t in TECHNIQUES)
    valid += f"; or a set: {', '.join(PRESETS)}"
    chosen = []
    for raw in names:
        if _key(raw) in PRESETS:
            chosen += [lowered[_key(name)] for name in PRESETS[_key(raw)]]
            continue
        if _key(raw) not in lowered:
            raise ValueError(f"unknown technique {raw.strip()!r}; valid: {valid}")
        chosen.append(lowered[_key(raw)])
    if not chosen:
        raise ValueError(f"no technique given; valid: {valid}")
    return [t for t in TECHNIQUES if t in chosen or t.name == "baseline"]


__all__ = ["PRESETS", "TECHNIQUES", "Technique", "resolve"]
