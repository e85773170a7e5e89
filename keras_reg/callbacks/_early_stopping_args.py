"""EarlyStopping's argument checks.

Where Keras accepts a value and it means something, it is accepted; values
that can only be a mistake and would silently change training are refused
with the package's error template.
"""

import math
import numbers

import numpy as np

from keras_reg import _validation


def _number(name, value, expected, is_valid):
    if not _validation.is_real(value) or not is_valid(value):
        raise _validation.invalid_argument(name, expected, value)
    return int(value) if isinstance(value, numbers.Integral) else float(value)


def patience(value):
    # Keras compares `wait >= patience`: a float works (2.5 waits 3 epochs)
    # and `math.inf` never stops. NaN never stops either, and a negative
    # count stops at the first epoch without improvement, like 0: neither
    # can be what was meant.
    return _number("patience", value, "an int or float >= 0", lambda v: v >= 0)


def verbose(value):
    # Keras only asks `verbose > 0`; `verbose=True` is common.
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    return _number("verbose", value, "a bool or a number", lambda v: True)


def baseline(value):
    # An infinite baseline means something (always or never beaten); NaN
    # is never beaten, so training would always stop after `patience`.
    if value is None:
        return None
    if not _validation.is_real(value) or math.isnan(value):
        raise _validation.invalid_argument(
            "baseline", "None or a float that is not NaN", value
        )
    return float(value)


def flag(name, value):
    # Keras only asks whether the value is truthy. A string is refused:
    # "False" is truthy.
    if value is None or isinstance(value, (bool, np.bool_)):
        return value if value is None else bool(value)
    if isinstance(value, numbers.Integral) and value in (0, 1):
        return int(value)
    raise _validation.invalid_argument(name, "a bool", value)


def start_from_epoch(value):
    # Keras compares `epoch < start_from_epoch`: a negative value is no
    # warm-up, like 0. NaN would silently skip the warm-up and infinity
    # would never monitor at all.
    return _number("start_from_epoch", value, "a finite int or float", math.isfinite)


def checkpoint_path(value):
    if value is not None and (
        not isinstance(value, str)
        or not value.endswith(".weights.h5")
        or value == ".weights.h5"
    ):
        raise _validation.invalid_argument(
            "checkpoint_path", 'None or a path ending in ".weights.h5"', value
        )
    return value
