"""sparsity_report: how many weights are exactly zero, per layer and variable."""

import keras
import numpy as np

from keras_reg.optimizers._wrapper import find_wrapped
from keras_reg.pruning.pruning import Pruning

_COLUMNS = (
    "variable",
    "shape",
    "size",
    "zeros",
    "zero %",
    "L1 norm",
    "L2 norm",
    "penalty",
    "dead units",
)


def _dead_units(values):
    """Indices of units (last axis) whose weights are all exactly zero."""
    if values.ndim < 2:
        return None
    flat = values.reshape(-1, values.shape[-1])
    return [int(unit) for unit in np.flatnonzero(np.all(flat == 0, axis=0))]


def _penalty(variable):
    regularizer = getattr(variable, "regularizer", None)
    if regularizer is None:
        return None
    return float(keras.ops.convert_to_numpy(regularizer(variable)))


def _variable_entry(variable, path, pruning):
    values = keras.ops.convert_to_numpy(variable)
    mask = None if pruning is None else pruning.get_mask(variable)
    pruned = None
    if mask is not None:
        pruned = int(np.count_nonzero(keras.ops.convert_to_numpy(mask) == 0))
    magnitudes = np.abs(values.astype(np.float64))
    size = int(values.size)
    zeros = int(np.count_nonzero(values == 0))
    dead = _dead_units(values)
    return {
        "layer": path.rpartition("/")[0],
        "shape": tuple(int(dim) for dim in values.shape),
        "size": size,
        "zeros": zeros,
        "zero_fraction": zeros / size if size else 0.0,
        "l1_norm": float(magnitudes.sum()),
        "l2_norm": float(np.sqrt(np.square(magnitudes).sum())),
        "penalty": _penalty(variable),
        "units": None if dead is None else int(values.shape[-1]),
        "dead_units": dead,
        "pruned": pruned,
        "pruned_fraction": None if pruned is None else (pruned / size if size else 0.0),
    }


def _total(entries):
    size = sum(entry["size"] for entry in entries)
    zeros = sum(entry["zeros"] for entry in entries)
    pruned = sum(entry["pruned"] or 0 for entry in entries)
    return {
        "size": size,
        "zeros": zeros,
        "zero_fraction": zeros / size if size else 0.0,
        "penalty": sum(entry["penalty"] or 0.0 for entry in entries),
        "pruned": pruned,
        "pruned_fraction": pruned / size if size else 0.0,
    }


def _pruned(entry):
    return "-" if entry["pruned"] is None else f"{100 * entry['pruned_fraction']:.2f}"


def _counts(entry):
    return [
        str(entry["size"]),
        str(entry["zeros"]),
        f"{100 * entry['zero_fraction']:.2f}",
    ]


def _format_table(report, pruned):
    cells = [list(_COLUMNS) + (["pruned %"] if pruned else [])]
    for path, entry in report["variables"].items():
        penalty, dead = entry["penalty"], entry["dead_units"]
        cells.append(
            [
                path,
                "x".join(str(dim) for dim in entry["shape"]) or "scalar",
                *_counts(entry),
                f"{entry['l1_norm']:.4g}",
                f"{entry['l2_norm']:.4g}",
                "-" if penalty is None else f"{penalty:.4g}",
                "-" if dead is None else f"{len(dead)}/{entry['units']}",
                *([_pruned(entry)] if pruned else []),
            ]
        )
    for name in ("kernels", "total"):
        total = report[name]
        penalty = f"{total['penalty']:.4g}"
        cells.append(
            [f"[{name}]", "", *_counts(total), "", "", penalty, ""]
            + ([_pruned(total)] if pruned else [])
        )
    widths = [max(len(cell) for cell in column) for column in zip(*cells, strict=True)]
    lines = [
        "  ".join(
            cell.ljust(width) if column == 0 else cell.rjust(width)
            for column, (cell, width) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in cells
    ]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def sparsity_report(model: keras.Model, print_fn=print) -> dict:
    """Reports exact zeros, norms and penalties of a model's trainable weights.

    One entry per trainable variable, keyed by its path inside the model
    (`"dense/kernel"`):

    - `layer`: the path of the layer that owns it;
    - `shape`, `size`, `zeros` (exactly zero entries), `zero_fraction`;
    - `l1_norm`, `l2_norm`;
    - `penalty`: the value of its regularizer, or `None` without one;
    - `units` and `dead_units`: for variables of rank >= 2 (kernels), the
      number of units (last axis: Dense units, Conv filters) and the indices of
      the units whose weights are all exactly zero; `None` for biases;
    - `pruned` and `pruned_fraction`: for the variables that the model's
      `keras_reg.pruning.Pruning` optimizer masks, the number and fraction of
      entries its mask zeroes; `None` for the others. The table shows a
      `pruned %` column when the model is compiled with `Pruning`.

    `"kernels"` sums size, zeros, penalties and pruned entries over the
    variables of rank >= 2 (what L1, group lasso and pruning sparsify),
    `"total"` over all of them.

    Args:
        model: A built Keras model (or layer).
        print_fn: Function that receives the formatted table, `print` by
            default; `None` prints nothing.

    Returns:
        A dict with keys `"variables"` (path -> entry), `"layers"` (layer
        path -> list of its variable paths), `"kernels"` and `"total"`.

    Example:

    >>> import keras, keras_reg
    >>> model = keras.Sequential(
    ...     [keras.Input((3,)), keras.layers.Dense(2, name="hidden")]
    ... )
    >>> _ = model.layers[0].kernel.assign([[0.0, 1.0], [0.0, 2.0], [0.0, 0.0]])
    >>> report = keras_reg.sparsity_report(model, print_fn=None)
    >>> report["variables"]["hidden/kernel"]["zeros"]
    4
    >>> report["variables"]["hidden/kernel"]["dead_units"]
    [0]
    """
    # Paths relative to the model read "dense/kernel", not
    # "sequential/dense/kernel".
    prefix = f"{model.name}/"
    pruning = find_wrapped(getattr(model, "optimizer", None), Pruning)
    if pruning is not None and not pruning.built:
        pruning = None
    entries = {}
    for variable in model.trainable_variables:
        path = variable.path.removeprefix(prefix)
        entries[path] = _variable_entry(variable, path, pruning)
    layers = {}
    for path, entry in entries.items():
        layers.setdefault(entry["layer"], []).append(path)
    report = {
        "variables": entries,
        "layers": layers,
        "kernels": _total(
            [entry for entry in entries.values() if entry["units"] is not None]
        ),
        "total": _total(list(entries.values())),
    }
    if print_fn is not None:
        print_fn(_format_table(report, pruning is not None))
    return report
