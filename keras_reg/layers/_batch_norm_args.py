"""Checks of BatchNormalization's arguments that `_validation` does not cover.

Where Keras validates the same argument, the message keeps the package's one
template and carries Keras's sentence in parentheses.
"""

import math
import numbers
from collections.abc import Mapping

import keras
import numpy as np

from keras_reg._validation import check_int, invalid_argument, is_real

_CLIPPING_KEYS = ("rmax", "rmin", "dmax")
_LISTED_CLIPPING_KEYS = ", ".join(f'"{key}"' for key in _CLIPPING_KEYS)


def check_flag(name, value):
    """Returns a Python bool from a bool, a NumPy bool, or an int 0 or 1.

    Keras stores these arguments as given and tests their truth; anything
    else (None, strings such as "False", 2) is rejected rather than guessed.
    """
    if isinstance(value, np.bool_) or (
        isinstance(value, numbers.Integral) and value in (0, 1)
    ):
        return bool(value)
    raise invalid_argument(name, "a bool, 0 or 1", value)


def check_renorm_clipping(value, renorm):
    """Returns `renorm_clipping`: None or, with renorm, a dict of floats.

    Keras reads (and validates) the argument only when `renorm` is True;
    without renorm it is stored unread, as Keras stores it.
    """
    if not renorm:
        return dict(value) if isinstance(value, Mapping) else value
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise invalid_argument(
            "renorm_clipping",
            f"None or a dict with only the keys {_LISTED_CLIPPING_KEYS}",
            value,
        )
    unknown = [key for key in value if key not in _CLIPPING_KEYS]
    if unknown:
        raise invalid_argument(
            "renorm_clipping",
            f"only the keys {_LISTED_CLIPPING_KEYS} (Received invalid keys for "
            f"`renorm_clipping` argument: {unknown})",
            value,
        )
    # Keras lets NaN through; it turns every output into NaN.
    if not all(is_real(bound) and not math.isnan(bound) for bound in value.values()):
        raise invalid_argument(
            "renorm_clipping",
            "float bounds that are not NaN (infinity means no bound)",
            value,
        )
    clipping = {key: float(bound) for key, bound in value.items()}
    rmax = clipping.get("rmax", math.inf)
    rmin = clipping.get("rmin", -math.inf)
    in_keras = "in the `renorm_clipping` argument)"
    for broken, expected in (
        (rmax < rmin, f"rmax >= rmin (rmax should be greater than rmin {in_keras}"),
        (
            clipping.get("dmax", 0) < 0,
            f"dmax >= 0 (dmax should be non-negative {in_keras}",
        ),
        # Keras accepts these two; they clip the correction r to zero or
        # below (erasing or flipping the normalized values) or to infinity.
        (rmax <= 0, "rmax > 0 (the correction r is clipped to [rmin, rmax])"),
        (rmin == math.inf, "rmin < inf (the correction r is clipped to [rmin, rmax])"),
    ):
        if broken:
            raise invalid_argument("renorm_clipping", expected, value)
    return clipping


def check_synchronized(value):
    synchronized = check_flag("synchronized", value)
    backend = keras.backend.backend()
    # TensorFlow all-reduces across replicas; JAX's distribution API already
    # runs one program over the global batch. Torch has no Keras-level
    # distribution, so a flag there would silently mean local statistics.
    if synchronized and backend not in ("tensorflow", "jax"):
        raise invalid_argument(
            "synchronized",
            f"False on the {backend} backend (Argument synchronized=True is "
            "only supported with the TensorFlow or JAX backend)",
            value,
        )
    return synchronized


def check_axis(axis, input_shape):
    """Returns `axis` as a non-negative index into `input_shape`."""
    rank = len(input_shape)
    if not -rank <= axis < rank:
        raise invalid_argument(
            "axis",
            f"an int in [{-rank}, {rank - 1}] for inputs of rank {rank} "
            f"(Axis {axis} is out of bounds for input shape {tuple(input_shape)})",
            axis,
        )
    return axis % rank


def check_mask(mask, inputs):
    """Raises unless `mask` is None or has one dimension less than `inputs`."""
    if mask is not None and len(mask.shape) != len(inputs.shape) - 1:
        # The template's tail names the mask's shape: a tensor's repr would
        # flood the message.
        raise ValueError(
            "Invalid value received for argument `mask`. Expected a mask "
            f"of rank {len(inputs.shape) - 1} for inputs of shape "
            f"{tuple(inputs.shape)} (The mask provided should be one "
            "dimension less than the inputs). "
            f"Received: mask.shape={tuple(mask.shape)}"
        )


def check_virtual_batch_size(value, *, axis, renorm, synchronized):
    """Returns None or an int >= 1 that combines with the other arguments."""
    if value is None:
        return None
    value = check_int("virtual_batch_size", value, low=1)
    for name, conflicting in (("renorm", renorm), ("synchronized", synchronized)):
        if conflicting:
            raise invalid_argument(
                "virtual_batch_size",
                f"None when {name}=True (ghost batch normalization does not "
                f"combine with {name})",
                value,
            )
    if axis == 0:
        raise invalid_argument(
            "virtual_batch_size",
            "None when axis=0 (virtual batches split the batch axis)",
            value,
        )
    return value
