"""The figure of `keras-reg compare`: loss curves and generalization gaps.

Drawn on a bare `matplotlib.figure.Figure`, which renders with Agg and leaves
pyplot's global state alone.
"""

import math
import warnings

import numpy as np
from matplotlib.figure import Figure

DPI = 100
FIGURE_SIZE_PX = (1400, 900)


def _positive(values):
    return [v if (math.isfinite(v) and v > 0) else float("nan") for v in values]


def _curves(technique):
    """Validation data loss per epoch of the chosen runs, NaN-padded."""
    chosen = [
        r["history"]["val_data_loss"]
        for r in technique["runs"]
        if r["strength"] == technique["chosen_strength"]
    ]
    length = max(len(c) for c in chosen)
    return np.array([c + [float("nan")] * (length - len(c)) for c in chosen])


def plot_results(path: str, techniques: list[dict], task: str, title: str) -> None:
    """Writes the figure for `techniques` (entries of results.json) to `path`."""
    loss = "cross-entropy" if task == "classification" else "MSE (standardized target)"
    width, height = FIGURE_SIZE_PX
    fig = Figure(figsize=(width / DPI, height / DPI), dpi=DPI)
    n = len(techniques)
    rows = 1 if n <= 4 else 2
    cols = math.ceil(n / rows)
    grid = fig.add_gridspec(rows + 1, cols, height_ratios=[1] * rows + [1.1])
    first = None
    for i, technique in enumerate(techniques):
        ax = fig.add_subplot(grid[i // cols, i % cols], sharey=first, sharex=first)
        first = first or ax
        curves = _curves(technique)
        epochs = np.arange(1, curves.shape[1] + 1)
        with warnings.catch_warnings():
            # Epochs after every seed's EarlyStopping are all NaN.
            warnings.simplefilter("ignore", RuntimeWarning)
            mean = np.nanmean(curves, axis=0)
            low, high = np.nanmin(curves, axis=0), np.nanmax(curves, axis=0)
        ax.plot(epochs, _positive(list(mean)), label="mean over seeds")
        ax.fill_between(epochs, _positive(list(low)), _positive(list(high)), alpha=0.25)
        ax.set_yscale("log")
        label = technique["chosen_label"]
        ax.set_title(technique["name"] + (f" ({label})" if label else ""), fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
        if i % cols == 0:
            ax.set_ylabel(f"val loss ({loss})", fontsize=8)
        ax.tick_params(labelsize=7)
        if i == 0:
            ax.legend(fontsize=7)
    bars = fig.add_subplot(grid[rows, :])
    names = [
        t["name"] + (f"\n{t['chosen_label']}" if t["chosen_label"] else "")
        for t in techniques
    ]
    gaps = [t["summary"]["generalization_gap"] for t in techniques]
    means = [g["mean"] for g in gaps]
    errors = [
        [max(0.0, g["mean"] - g["ci_low"]) for g in gaps],
        [max(0.0, g["ci_high"] - g["mean"]) for g in gaps],
    ]
    colors = ["tab:grey" if t["name"] == "baseline" else "tab:blue" for t in techniques]
    bars.bar(names, means, color=colors, yerr=errors, capsize=3)
    for name, gap in zip(names, means, strict=True):
        if math.isfinite(gap):
            bars.annotate(
                f"{gap:+.3f}",
                (name, gap),
                ha="left",
                va="bottom" if gap >= 0 else "top",
                fontsize=8,
            )
    bars.axhline(0, color="black", linewidth=0.8)
    bars.set_title(
        f"Generalization gap (test - train {loss}), mean and 95% interval over "
        "seeds; lower overfits less"
    )
    bars.set_ylabel("gap")
    bars.tick_params(labelsize=7)
    fig.suptitle(title)
    fig.subplots_adjust(
        left=0.06, right=0.98, top=0.91, bottom=0.1, hspace=0.6, wspace=0.25
    )
    fig.savefig(path, dpi=DPI)
