"""Magnitude pruning: the `Pruning` optimizer wrapper, its schedules, `strip`.

`Pruning(optimizer, schedule)` keeps 0/1 masks for the selected kernels as
optimizer variables and applies them inside the compiled train step, so no
layer is wrapped; `strip(model)` returns the pruned model as plain Keras. See
docs/pruning.md.
"""

from keras_reg.pruning.pruning import Pruning, strip
from keras_reg.pruning.schedules import (
    ConstantSparsity,
    PolynomialDecay,
    PruningSchedule,
)

__all__ = [
    "ConstantSparsity",
    "PolynomialDecay",
    "Pruning",
    "PruningSchedule",
    "strip",
]
