"""mc_predict: Monte Carlo dropout predictions with BatchNormalization frozen."""

import random
import threading

import keras
import numpy as np
from keras import ops

from keras_reg._validation import check_int, invalid_argument
from keras_reg.layers import _masks

# Keras's random layers act only when called with training=True, which
# mc_predict never does: inside it they would silently be the identity.
_KERAS_RANDOM_LAYERS = (
    keras.layers.Dropout,
    keras.layers.GaussianDropout,
    keras.layers.GaussianNoise,
    keras.layers.AlphaDropout,
)


# `mc_predict` switches the dropout family on while the model runs with
# training=False, so BatchNormalization stays in inference.
_mc_state = threading.local()


def mc_context():
    """Returns the active Monte Carlo context, or None."""
    return getattr(_mc_state, "context", None)


class MCContext:
    """Hands out seed states for each dropout-family call of a Monte Carlo pass.

    Call `c` (counted from 0 within a forward pass) of pass `p` uses the state
    `(fmix32(fmix32(seed) + c), p)`, so a pass's masks depend only on `seed`,
    `p` and the order in which the model calls its layers.
    """

    def __init__(self, seed):
        self.base = _masks.fmix32(ops.convert_to_tensor(seed, "int32"))
        self.pass_index = 0
        self.call_index = 0
        self.layers_seen = 0

    def start_pass(self, pass_index):
        self.pass_index = pass_index
        self.call_index = 0

    def next_state(self):
        # int32 additions wrap, as the 32-bit hash's do.
        seed = _masks.fmix32(ops.add(self.base, self.call_index))
        self.call_index += 1
        return ops.stack([seed, ops.convert_to_tensor(self.pass_index, "int32")])

    def __enter__(self):
        if mc_context() is not None:
            raise RuntimeError("mc_predict cannot be nested.")
        _mc_state.context = self
        return self

    def __exit__(self, *exc_info):
        _mc_state.context = None


def _sublayers(value):
    if isinstance(value, keras.layers.Layer):
        yield value
    elif isinstance(value, (list, tuple, dict)):
        for item in value.values() if isinstance(value, dict) else value:
            yield from _sublayers(item)


def _walk(layer, seen):
    """Yields `layer` and every layer reachable from its attributes."""
    if id(layer) in seen:
        return
    seen.add(id(layer))
    yield layer
    for value in vars(layer).values():
        for sublayer in _sublayers(value):
            yield from _walk(sublayer, seen)


def _num_rows(x):
    leaves = keras.tree.flatten(x)
    if not leaves:
        raise invalid_argument("x", "an array or a structure of arrays", x)
    return int(np.shape(leaves[0])[0])


def mc_predict(
    model: keras.layers.Layer,
    x,
    samples: int = 30,
    batch_size: int | None = None,
    seed: int | None = None,
):
    """Predicts with dropout active and returns the mean and std over samples.

    Monte Carlo dropout: `model` runs `samples` times on each batch of at
    most `batch_size` rows, called with `training=False` so that every
    BatchNormalization (Keras's and keras_reg's) uses its moving statistics,
    while keras_reg's dropout-family layers (`Dropout`,
    `SpatialDropout1D/2D/3D`, `DropBlock2D`, `StochasticDepth`,
    `DropConnect`) draw fresh masks. The spread of the predictions estimates
    the model's uncertainty. Nothing in the model changes: no weight,
    statistic or seed state. Only running sums are kept across samples.

    Keras's own random layers (`Dropout`, the spatial dropouts,
    `GaussianDropout`, `GaussianNoise`, `AlphaDropout`) act only with
    `training=True`: a model containing any of them raises a ValueError that
    names them, and so does a model with no keras_reg dropout-family layer.

    With a `seed`, the same seed, data, `batch_size` and model give the same
    masks in any process, on any backend, and after a `.keras` save and load.
    Without one, a seed is drawn from Python's `random` module, which
    `keras.utils.set_random_seed` seeds. The model is called eagerly.

    Args:
        model: a Keras model (or layer) containing keras_reg dropout-family
            layers.
        x: input data: an array, or a list or dict of arrays for a model with
            several inputs, with samples along the first axis.
        samples: int >= 1. Number of stochastic forward passes per batch.
        batch_size: optional int >= 1. Rows per model call; default 32.
        seed: optional int in [0, 2**31).

    Returns:
        `(mean, std)`: NumPy arrays shaped like the model's output (or
        structures of arrays, for several outputs). `std` is the population
        standard deviation over the samples (0 when `samples=1`).

    Example:

    >>> import keras, numpy as np, keras_reg
    >>> model = keras.Sequential(
    ...     [keras.Input((4,)), keras_reg.layers.Dropout(0.5), keras.layers.Dense(1)]
    ... )
    >>> x = np.ones((10, 4), dtype="float32")
    >>> mean, std = keras_reg.mc_predict(model, x, samples=20, seed=0)
    >>> mean.shape, std.shape
    ((10, 1), (10, 1))

    Reference:
        - [Gal and Ghahramani, 2016](https://arxiv.org/abs/1506.02142)
    """
    if not isinstance(model, keras.layers.Layer):
        raise invalid_argument("model", "a Keras model or layer", model)
    samples = check_int("samples", samples, low=1)
    batch_size = (
        32 if batch_size is None else check_int("batch_size", batch_size, low=1)
    )
    if seed is not None:  # an int32 on every backend
        expected = "an int in [0, 2**31)"
        seed = check_int("seed", seed, low=0, high=2**31 - 1, expected=expected)
    keras_random = [
        f"{layer.name} ({type(layer).__name__})"
        for layer in _walk(model, set())
        if isinstance(layer, _KERAS_RANDOM_LAYERS)
    ]
    if keras_random:
        raise ValueError(
            "mc_predict runs the model with training=False, where Keras's own "
            "random layers do nothing. Replace them with keras_reg's layers. "
            f"Received a model with: {', '.join(keras_random)}"
        )
    if seed is None:
        seed = random.randint(0, 2**31 - 1)

    rows = _num_rows(x)
    means, stds = [], []
    context = MCContext(seed)
    with context:
        for batch_index, start in enumerate(range(0, rows, batch_size)):
            batch = keras.tree.map_structure(
                lambda a, start=start: a[start : start + batch_size], x
            )
            # Sums of differences from the first sample: exact zeros (std 0)
            # when every sample is equal, and no cancellation when the spread
            # is small compared with the mean.
            first = total = total_sq = None
            for sample in range(samples):
                context.start_pass(batch_index * samples + sample)
                outputs = model(batch, training=False)
                if context.layers_seen == 0:
                    raise ValueError(
                        "mc_predict needs a model with keras_reg dropout-family "
                        "layers (Dropout, SpatialDropout1D/2D/3D, DropBlock2D, "
                        "StochasticDepth, DropConnect). Received a model with "
                        f"none: {model.name}"
                    )
                outputs = keras.tree.map_structure(
                    lambda y: keras.ops.convert_to_numpy(y).astype(np.float64),
                    outputs,
                )
                if first is None:
                    first = outputs
                    total = total_sq = keras.tree.map_structure(np.zeros_like, outputs)
                diff = keras.tree.map_structure(np.subtract, outputs, first)
                total = keras.tree.map_structure(np.add, total, diff)
                total_sq = keras.tree.map_structure(
                    lambda s, d: s + np.square(d), total_sq, diff
                )
            mean = keras.tree.map_structure(lambda f, s: f + s / samples, first, total)
            std = keras.tree.map_structure(
                lambda s, s2: np.sqrt(
                    np.maximum(s2 / samples - np.square(s / samples), 0.0)
                ),
                total,
                total_sq,
            )
            means.append(mean)
            stds.append(std)

    def concatenate(*parts):
        return np.concatenate(parts, axis=0).astype(np.float32)

    return (
        keras.tree.map_structure(concatenate, *means),
        keras.tree.map_structure(concatenate, *stds),
    )
