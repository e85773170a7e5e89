"""The techniques that `keras-reg compare` trains, one table entry each.

A technique is data, not code: which kernel regularizer (class and keyword
arguments), whether Dropout and BatchNormalization layers go into the hidden
blocks, whether EarlyStopping watches the fit, and an optional optimizer
wrapper. Every technique shares the same architecture, optimizer, seed and
epoch budget, so a difference in the results comes from the technique alone.

Adding a technique is one `Technique(...)` entry in `TECHNIQUES`; a technique
that needs its optimizer wrapped (a proximal step for L1, say) names a function
that receives the base optimizer and returns the one to train with.
"""

import dataclasses
import re
from typing import Any

import keras

from keras_reg import callbacks as reg_callbacks
from keras_reg import layers as reg_layers
from keras_reg import optimizers as reg_optimizers
from keras_reg import regularizers as reg_regularizers

L1_FACTOR = 1e-4
# The proximal step shrinks each weight by learning_rate * l1 = 7e-4 per step,
# close to Adam's typical 1e-3 step. At 1e-4 the threshold (1e-7) would be far
# below Adam's step and zero nothing; the plain L1 row's factor acts through
# the gradient instead, so the two factors are not on one scale. Measured with
# benchmarks/sparsity.py: 0.7 zeroes about 92% of the kernel weights at the
# baseline's test accuracy; 0.2 zeroes 65%; 1.0 costs 5 points of accuracy.
L1_PROXIMAL_FACTOR = 0.7
L2_FACTOR = 1e-3
DROPOUT_RATE = 0.5
EARLY_STOPPING_PATIENCE = 10


@dataclasses.dataclass(frozen=True)
class Technique:
    """One row of the comparison.

    Args:
        name: the name used by `--techniques`, the table, and results files.
        description: one line for `--help`.
        regularizer: name of a class in `keras_reg.regularizers` applied as
            `kernel_regularizer` to every Dense layer, or None.
        regularizer_kwargs: keyword arguments for that class.
        dropout_rate: rate of the Dropout layer after each hidden block;
            0 means no Dropout layer.
        batch_normalization: whether each hidden block has a
            BatchNormalization layer between its Dense layer and activation.
        early_stopping: whether `keras_reg.callbacks.EarlyStopping` watches
            the validation loss and restores the best weights.
        optimizer_wrapper: name of a class in `keras_reg.optimizers` that wraps
            the base optimizer (called as `Wrapper(optimizer)`), or None.
    """

    name: str
    description: str
    regularizer: str | None = None
    regularizer_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    dropout_rate: float = 0.0
    batch_normalization: bool = False
    early_stopping: bool = False
    optimizer_wrapper: str | None = None

    def make_regularizer(self):
        """Returns a fresh kernel regularizer, or None."""
        if self.regularizer is None:
            return None
        cls = getattr(reg_regularizers, self.regularizer)
        return cls(**self.regularizer_kwargs)

    def make_dropout(self):
        return reg_layers.Dropout(self.dropout_rate)

    def make_batch_normalization(self):
        return reg_layers.BatchNormalization()

    def make_callbacks(self, monitor):
        """Returns the Keras callbacks this technique adds to `fit`."""
        if not self.early_stopping:
            return []
        return [
            reg_callbacks.EarlyStopping(
                monitor=monitor,
                mode="min",
                patience=EARLY_STOPPING_PATIENCE,
                restore_best_weights=True,
            )
        ]

    def wrap_optimizer(self, optimizer: keras.optimizers.Optimizer):
        if self.optimizer_wrapper is None:
            return optimizer
        return getattr(reg_optimizers, self.optimizer_wrapper)(optimizer)

    def to_config(self) -> dict[str, Any]:
        """The JSON-friendly description stored in results.json."""
        return {
            "regularizer": self.regularizer,
            "regularizer_kwargs": dict(self.regularizer_kwargs),
            "dropout_rate": self.dropout_rate,
            "batch_normalization": self.batch_normalization,
            "early_stopping": (
                {
                    "patience": EARLY_STOPPING_PATIENCE,
                    "restore_best_weights": True,
                }
                if self.early_stopping
                else None
            ),
            "optimizer_wrapper": self.optimizer_wrapper,
        }


TECHNIQUES: tuple[Technique, ...] = (
    Technique("baseline", "no regularization"),
    Technique(
        "L1",
        f"L1 kernel penalty, l1={L1_FACTOR:g}",
        regularizer="L1",
        regularizer_kwargs={"l1": L1_FACTOR},
    ),
    Technique(
        "L1 (proximal)",
        f"L1 kernel penalty, l1={L1_PROXIMAL_FACTOR:g}, applied as a proximal "
        "step by keras_reg.optimizers.Proximal(Adam)",
        regularizer="L1",
        regularizer_kwargs={"l1": L1_PROXIMAL_FACTOR, "proximal": True},
        optimizer_wrapper="Proximal",
    ),
    Technique(
        "L2",
        f"L2 kernel penalty, l2={L2_FACTOR:g}",
        regularizer="L2",
        regularizer_kwargs={"l2": L2_FACTOR},
    ),
    Technique(
        "ElasticNet",
        f"L1 and L2 kernel penalties, l1={L1_FACTOR:g}, l2={L2_FACTOR:g}",
        regularizer="ElasticNet",
        regularizer_kwargs={"l1": L1_FACTOR, "l2": L2_FACTOR},
    ),
    Technique(
        "Dropout",
        f"Dropout(rate={DROPOUT_RATE:g}) after each hidden block",
        dropout_rate=DROPOUT_RATE,
    ),
    Technique(
        "BatchNormalization",
        "BatchNormalization before each hidden activation",
        batch_normalization=True,
    ),
    Technique(
        "EarlyStopping",
        f"EarlyStopping(patience={EARLY_STOPPING_PATIENCE}, "
        "restore_best_weights=True) on the validation loss",
        early_stopping=True,
    ),
    Technique(
        "Combined",
        "ElasticNet, Dropout, BatchNormalization and EarlyStopping together",
        regularizer="ElasticNet",
        regularizer_kwargs={"l1": L1_FACTOR, "l2": L2_FACTOR},
        dropout_rate=DROPOUT_RATE,
        batch_normalization=True,
        early_stopping=True,
    ),
)

BY_NAME: dict[str, Technique] = {t.name: t for t in TECHNIQUES}


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
    chosen = []
    for raw in names:
        key = _key(raw)
        if key not in lowered:
            valid = ", ".join(t.name for t in TECHNIQUES)
            raise ValueError(f"unknown technique {raw.strip()!r}; valid: {valid}")
        if lowered[key] not in chosen:
            chosen.append(lowered[key])
    if not chosen:
        valid = ", ".join(t.name for t in TECHNIQUES)
        raise ValueError(f"no technique given; valid: {valid}")
    ordered = [t for t in TECHNIQUES if t in chosen or t.name == "baseline"]
    return ordered


__all__ = ["TECHNIQUES", "Technique", "resolve"]
