"""regularize: weight penalties, Dropout and BatchNormalization for a built model."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

import keras

from keras_reg import layers as reg_layers
from keras_reg import regularizers
from keras_reg._rebuild import Rebuilder, has_kernel, is_graph_model, penalized, walk
from keras_reg._validation import check_bool, check_float, check_int, invalid_argument


def _check_rewritable(model):
    if not is_graph_model(model):
        raise invalid_argument(
            "model",
            "a Sequential or functional Keras model (the call() of a "
            "subclassed model cannot be rewritten)",
            model,
        )
    for layer in walk(model):
        if isinstance(layer, keras.Model) and not is_graph_model(layer):
            raise invalid_argument(
                "model",
                "a Sequential or functional Keras model whose nested models "
                "are Sequential or functional too (the call() of the "
                f"subclassed model `{layer.name}` inside it cannot be rewritten)",
                model,
            )


def _check_regularizer(name, identifier):
    if identifier is None:
        return None
    try:
        regularizer = regularizers.get(identifier)
    except (ValueError, TypeError):
        regularizer = None
    if not callable(regularizer):
        raise invalid_argument(
            name, "a regularizer, its name or its config, or None", identifier
        )
    return regularizer


# The layers `dropout` may give as a template: one input, one output.
_DROPOUT_CLASSES = (
    keras.layers.Dropout,  # Keras's SpatialDropout layers subclass it
    keras.layers.GaussianDropout,
    keras.layers.GaussianNoise,
    keras.layers.AlphaDropout,
    reg_layers.Dropout,
    reg_layers.SpatialDropout1D,
    reg_layers.SpatialDropout2D,
    reg_layers.SpatialDropout3D,
    reg_layers.DropBlock2D,
)


def _check_dropout(dropout):
    if dropout is None:
        return None
    if isinstance(dropout, keras.layers.Layer):
        seed = getattr(dropout, "seed", None)
        if isinstance(seed, int) and not 0 <= seed <= 2**30:
            # Its copies count up from it, in every backend's 31 bits.
            raise invalid_argument(
                "dropout",
                "a dropout layer whose seed is None or an int in [0, 2**30]",
                dropout,
            )
        if isinstance(dropout, _DROPOUT_CLASSES):
            return dropout
    elif isinstance(dropout, (bool, int, float)) or hasattr(dropout, "__float__"):
        return check_float("dropout", dropout, low=0, high=1, high_open=True)
    raise invalid_argument(
        "dropout",
        "a float in [0, 1), a dropout layer to copy (Dropout, SpatialDropout1D, "
        "SpatialDropout2D, SpatialDropout3D, DropBlock2D, GaussianDropout, "
        "GaussianNoise or AlphaDropout, from keras_reg.layers or "
        "keras.layers) or None",
        dropout,
    )


def _selector(layers):
    """Returns a predicate `layer -> bool` for the `layers` argument."""
    if layers is None:
        return has_kernel
    if isinstance(layers, str):
        try:
            pattern = re.compile(layers)
        except re.error:
            raise invalid_argument(
                "layers", "a valid regular expression", layers
            ) from None
        return lambda layer: pattern.fullmatch(layer.name) is not None
    if callable(layers) and not isinstance(layers, type):
        return lambda layer: bool(layers(layer))
    if isinstance(layers, Sequence) and all(isinstance(n, str) for n in layers):
        names = set(layers)
        return lambda layer: layer.name in names
    raise invalid_argument(
        "layers",
        "None, a regular expression, a list of layer names or a callable "
        "`layer -> bool`",
        layers,
    )


def _select(model, layers, penalties):
    """Returns the layers selected by `layers`, checked against the model."""
    every = list(walk(model))
    is_selected = _selector(layers)
    selected = [layer for layer in every if is_selected(layer)]
    if (
        isinstance(layers, Sequence)
        and not isinstance(layers, str)
        and (missing := sorted(set(layers) - {layer.name for layer in every}))
    ):
        raise invalid_argument(
            "layers",
            f"names of the model's layers (no layer is named {', '.join(missing)})",
            layers,
        )
    if not selected:
        raise invalid_argument(
            "layers", "a selection that matches at least one layer", layers
        )
    if penalties and not penalized(selected):
        raise invalid_argument(
            "layers",
            "a selection that includes a layer with a kernel (such as Dense or "
            "Conv2D) to receive `kernel_regularizer` and `bias_regularizer`",
            layers,
        )
    return selected


def regularize(
    model: keras.Model,
    *,
    kernel_regularizer: Any = None,
    bias_regularizer: Any = None,
    dropout: float | keras.layers.Layer | None = None,
    batch_normalization: bool = False,
    layers: str | Sequence[str] | Callable[[keras.layers.Layer], bool] | None = None,
    seed: int | None = None,
) -> keras.Model:
    """Returns a copy of a built model with regularization added, weights kept.

    Setting `layer.kernel_regularizer` on a built layer has no effect
    (docs/regularize.md says why). `regularize` rebuilds the architecture
    with the penalties set on the selected layers and Dropout (and optionally
    BatchNormalization) inserted after them, then copies every variable of
    the original into the copy, bit for bit; the input model is left as it
    is. Sequential and functional models are rebuilt, nested ones included;
    subclassed models, at the top or nested, raise a ValueError: their
    `call()` cannot be rewritten. A compiled model's copy is compiled from
    its `get_compile_config()`, with a fresh optimizer state.

    `kernel_regularizer` replaces the regularizer of every kernel of a
    selected layer (Dense, EinsumDense, Conv, MultiHeadAttention, depthwise
    and pointwise kernels, RNN input kernels, and layers wrapped in
    `Bidirectional` or `TimeDistributed`); `bias_regularizer` that of their
    biases. BatchNormalization, then Dropout, follow a selected layer's
    output, except where that output is an output of the whole model. An
    inserted BatchNormalization starts at its default weights: it changes
    what the pretrained layers after it see (docs/regularize.md tells more).

    Args:
        model: A Sequential or functional Keras model, trained or not.
        kernel_regularizer: Optional regularizer for the selected kernels,
            anything `keras_reg.regularizers.get` accepts.
        bias_regularizer: Optional regularizer for their biases.
        dropout: Optional float in [0, 1): the rate of the Dropout inserted
            after each selected layer. Or a dropout layer used as a template
            (`keras_reg.layers.DropBlock2D(0.1, block_size=3)`,
            `SpatialDropout2D`, ...; Keras's dropout layers too): each
            insertion is a copy made from its config, with a unique name, the
            selected layer's dtype policy and the next seed. A template that
            takes inputs of one rank (4-D for the 2D layers) follows only the
            selected layers whose output has that rank; if there is none,
            ValueError.
        batch_normalization: Bool: whether to insert a BatchNormalization
            after each selected layer, on its channels axis.
        layers: Which layers to change, at any depth: None (every layer with
            a kernel), a regular expression matching whole layer names, a
            list of names (each must exist), or a callable `layer -> bool`.
        seed: Optional int in [0, 2**30]; the inserted Dropout layers get the
            seeds `seed`, `seed + 1`, ... in call order. Without it, copies
            of a template with a seed count from the template's seed.

    Returns:
        A new model with the same weights and the added regularization.

    Example:

    >>> import keras, numpy as np, keras_reg
    >>> model = keras.Sequential([
    ...     keras.Input((4,)),
    ...     keras.layers.Dense(8, activation="relu", name="hidden"),
    ...     keras.layers.Dense(1, name="output"),
    ... ])
    >>> regularized = keras_reg.regularize(
    ...     model, kernel_regularizer=keras_reg.L2(0.01), dropout=0.2
    ... )
    >>> [layer.name for layer in regularized.layers]
    ['hidden', 'hidden_dropout', 'output']
    >>> len(regularized.losses)
    2
    >>> all(
    ...     np.array_equal(new, old)
    ...     for new, old in zip(regularized.get_weights(), model.get_weights())
    ... )
    True
    """
    _check_rewritable(model)
    kernel_regularizer = _check_regularizer("kernel_regularizer", kernel_regularizer)
    bias_regularizer = _check_regularizer("bias_regularizer", bias_regularizer)
    dropout = _check_dropout(dropout)
    batch_normalization = check_bool("batch_normalization", batch_normalization)
    # Each inserted Dropout takes the next seed; every backend's seed state
    # holds 31 bits.
    if seed is not None:
        seed = check_int(
            "seed", seed, low=0, high=2**30, expected="an int in [0, 2**30]"
        )
    penalties = kernel_regularizer is not None or bias_regularizer is not None
    selected = _select(model, layers, penalties)
    rebuilder = Rebuilder(
        model,
        selected,
        {
            "kernel_regularizer": kernel_regularizer,
            "bias_regularizer": bias_regularizer,
            "dropout": dropout,
            "batch_normalization": batch_normalization,
            "layers": layers,
            "seed": seed,
        },
    )
    new_model = rebuilder.rebuild(model)
    if rebuilder.template_rank is not None and not rebuilder.dropout_count:
        raise invalid_argument(
            "dropout",
            f"a dropout layer that fits a selected layer's output (it takes "
            f"{rebuilder.template_rank}-D inputs, and no selected layer that "
            f"is not an output of the model has a {rebuilder.template_rank}-D "
            "output)",
            dropout,
        )
    rebuilder.copy_weights()
    return new_model
