"""The figure of `keras-reg compare`: loss curves and generalization gaps.

One PNG of fixed size (`FIGURE_SIZE_PX`): small multiples of the training and
validation data loss per technique (shared log-scale y axis, the best epoch
marked), and below them a bar chart of each technique's generalization gap.
Drawn on a bare `matplotlib.figure.Figure`, which renders with Agg and leaves
pyplot's global state alone.
"""

import math

from matplotlib.figure import Figure

DPI = 100
FIGURE_SIZE_PX = (1400, 900)


def _gap_label(task):
    if task == "classification":
        return "train - validation accuracy"
    return "validation - train MSE"


def _loss_label(task):
    if task == "classification":
        return "cross-entropy"
    return "MSE (standardized target)"


def _positive(values):
    return [v if (math.isfinite(v) and v > 0) else float("nan") for v in values]


def plot_results(path: str, results: list[dict], task: str, title: str) -> None:
    """Writes the figure for `results` (entries of results.json) to `path`."""
    width, height = FIGURE_SIZE_PX
    fig = Figure(figsize=(width / DPI, height / DPI), dpi=DPI)
    n = len(results)
    rows = 1 if n <= 4 else 2
    cols = math.ceil(n / rows)
    grid = fig.add_gridspec(rows + 1, cols, height_ratios=[1] * rows + [1.1])
    first = None
    for i, result in enumerate(results):
        ax = fig.add_subplot(grid[i // cols, i % cols], sharey=first, sharex=first)
        first = first or ax
        history = result["history"]
        epochs = range(1, len(history["data_loss"]) + 1)
        ax.plot(epochs, _positive(history["data_loss"]), label="training")
        ax.plot(
            epochs,
            _positive(history["val_data_loss"]),
            label="validation",
            linestyle="--",
        )
        ax.axvline(
            result["best_epoch"],
            color="grey",
            linestyle=":",
            label="best epoch",
        )
        ax.set_yscale("log")
        ax.set_title(result["name"], fontsize=10)
        ax.set_xlabel("epoch", fontsize=8)
        if i % cols == 0:
            ax.set_ylabel(f"loss ({_loss_label(task)})", fontsize=8)
        ax.tick_params(labelsize=7)
        if i == 0:
            ax.legend(fontsize=7)
    bars = fig.add_subplot(grid[rows, :])
    names = [r["name"] for r in results]
    gaps = [r["generalization_gap"] for r in results]
    colors = ["tab:grey" if name == "baseline" else "tab:blue" for name in names]
    bars.bar(names, gaps, color=colors)
    for name, gap in zip(names, gaps, strict=True):
        if math.isfinite(gap):
            bars.annotate(
                f"{gap:+.3f}",
                (name, gap),
                ha="center",
                va="bottom" if gap >= 0 else "top",
                fontsize=8,
            )
    bars.axhline(0, color="black", linewidth=0.8)
    finite = [g for g in gaps if math.isfinite(g)] or [0.0]
    # Headroom so the value labels stay inside the axes.
    low, high = min(0.0, *finite), max(0.0, *finite)
    pad = 0.15 * ((high - low) or 1.0)
    bars.set_ylim(low - (pad if low < 0 else 0), high + pad)
    bars.set_title(f"Generalization gap ({_gap_label(task)}); lower overfits less")
    bars.set_xlabel("technique")
    bars.set_ylabel("gap")
    bars.tick_params(labelsize=8)
    fig.suptitle(title)
    fig.subplots_adjust(
        left=0.06, right=0.98, top=0.91, bottom=0.07, hspace=0.6, wspace=0.25
    )
    fig.savefig(path, dpi=DPI)
