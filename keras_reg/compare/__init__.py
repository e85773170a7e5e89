"""`keras-reg compare`: what each regularization technique does, on real data.

Run ``python -m keras_reg compare`` (or the ``keras-reg compare`` console
script). The modules: `cli` (arguments, checks, orchestration), `data`
(digits or a user's CSV), `models` (the built-in or the user's model),
`techniques` (the table of techniques), `apply` (a technique's layers,
penalties and optimizer on one seed's model), `training` (towers, fit,
measurements), `verdicts` (the claims), `sparsity` (proximal sparsity against
pruning at the same sparsity), `report` (table, progress line, results.json,
results.csv) and `plot` (the figure).
"""

from keras_reg.compare.cli import main

__all__ = ["main"]
