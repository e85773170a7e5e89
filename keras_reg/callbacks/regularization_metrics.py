"""RegularizationMetrics: per-epoch sparsity and regularization loss in logs."""

import keras

from keras_reg import _validation
from keras_reg._api import register
from keras_reg.sparsity import sparsity_report


@register
class RegularizationMetrics(keras.callbacks.Callback):
    """Adds `sparsity` and `regularization_loss` to the logs of every epoch.

    At the end of each epoch the callback measures the model's weights, with
    the same numbers as `keras_reg.sparsity_report`, and writes into the epoch
    logs:

    - `sparsity`: the fraction of kernel weights (trainable variables of rank
      >= 2: Dense and Conv kernels) that are exactly zero;
    - `regularization_loss`: the sum of the weight regularizers' penalties at
      the end of the epoch;
    - with `per_layer=True`, also `<layer>/sparsity` and
      `<layer>/regularization_loss` for every layer with a kernel.

    The values show in the progress bar and in `History`. Callbacks run in
    the order of the `callbacks` list, so put `RegularizationMetrics` before
    `CSVLogger` or `TensorBoard` for them to record the values.

    Args:
        per_layer: Bool. Whether to add per-layer values too. Defaults to
            `False`.

    Example:

    >>> import keras, numpy as np, keras_reg
    >>> model = keras.Sequential([
    ...     keras.Input((4,)),
    ...     keras.layers.Dense(
    ...         2, kernel_regularizer=keras_reg.regularizers.L1(0.01), name="hidden"
    ...     ),
    ... ])
    >>> model.compile(optimizer="sgd", loss="mse")
    >>> history = model.fit(
    ...     np.ones((8, 4)), np.ones((8, 2)), epochs=2, verbose=0,
    ...     callbacks=[keras_reg.callbacks.RegularizationMetrics(per_layer=True)],
    ... )
    >>> [key for key in sorted(history.history) if key.endswith("sparsity")]
    ['hidden/sparsity', 'sparsity']

    Reference:
        Hoefler et al., [Sparsity in Deep Learning](https://arxiv.org/abs/2102.00554),
        2021.
    """

    def __init__(self, per_layer: bool = False):
        super().__init__()
        self.per_layer = _validation.check_bool("per_layer", per_layer)

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs.update(self.metrics())

    def metrics(self) -> dict:
        """Returns the values the callback adds to the logs, for the model now."""
        report = sparsity_report(self.model, print_fn=None)
        values = {
            "sparsity": report["kernels"]["zero_fraction"],
            "regularization_loss": report["total"]["penalty"],
        }
        if self.per_layer:
            for layer, paths in report["layers"].items():
                entries = [report["variables"][path] for path in paths]
                kernels = [entry for entry in entries if entry["units"] is not None]
                if not kernels:
                    continue
                size = sum(entry["size"] for entry in kernels)
                zeros = sum(entry["zeros"] for entry in kernels)
                values[f"{layer}/sparsity"] = zeros / size if size else 0.0
                values[f"{layer}/regularization_loss"] = sum(
                    entry["penalty"] or 0.0 for entry in entries
                )
        return values

    def get_config(self) -> dict:
        return {"per_layer": self.per_layer}

    @classmethod
    def from_config(cls, config):
        return cls(**config)
