"""`keras-reg compare`: what each regularization technique does, on real data.

Run ``python -m keras_reg compare`` (or the ``keras-reg compare`` console
script). The modules: `cli` (arguments, checks, orchestration), `data`
(digits or a user's CSV), `techniques` (the table of techniques), `training`
(model, fit, measurements), `verdicts` (the six claims), `report` (table,
results.json schema, results.csv) and `plot` (the figure).
"""

from keras_reg.compare.cli import main

__all__ = ["main"]
