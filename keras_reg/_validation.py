"""Argument validation with one error template for the whole package.

Every invalid constructor argument raises::

    ValueError: Invalid value received for argument `rate`. Expected a float
    in [0, 1]. Received: rate=1.5

The checks reject what Keras lets through: `bool` where a number is expected,
NaN and infinities, and unknown choices. They return plain Python values so
that attributes and configs stay JSON-friendly.
"""

import math
import numbers


def invalid_argument(name, expected, value):
    """Returns the package's ValueError for argument `name`."""
    return ValueError(
        f"Invalid value received for argument `{name}`. Expected {expected}. "
        f"Received: {name}={value!r}"
    )


def _is_bool(value):
    return isinstance(value, bool) or type(value).__name__ == "bool_"


def is_real(value):
    return isinstance(value, numbers.Real) and not _is_bool(value)


def is_integral(value):
    return isinstance(value, numbers.Integral) and not _is_bool(value)


def _expected(kind, low, high, low_open, high_open):
    if low is None and high is None:
        return "a finite float" if kind == "a float" else kind
    if high is None:
        return f"{kind} {'>' if low_open else '>='} {low:g}"
    if low is None:
        return f"{kind} {'<' if high_open else '<='} {high:g}"
    left = "(" if low_open else "["
    right = ")" if high_open else "]"
    return f"{kind} in {left}{low:g}, {high:g}{right}"


def check_float(
    name,
    value,
    *,
    low=None,
    high=None,
    low_open=False,
    high_open=False,
    expected=None,
):
    """Returns `value` as a finite Python float inside the given bounds.

    `expected` replaces the message's "Expected ..." phrase, so that where
    Keras validates the same argument the message carries Keras's words.
    """
    expected = expected or _expected("a float", low, high, low_open, high_open)
    if not is_real(value):
        raise invalid_argument(name, expected, value)
    result = float(value)
    if not math.isfinite(result):
        raise invalid_argument(name, expected, value)
    if low is not None and (result < low or (low_open and result == low)):
        raise invalid_argument(name, expected, value)
    if high is not None and (result > high or (high_open and result == high)):
        raise invalid_argument(name, expected, value)
    return result


def check_int(name, value, *, low=None, high=None, expected=None):
    """Returns `value` as a Python int inside the given bounds."""
    expected = expected or _expected("an int", low, high, False, False)
    if not is_integral(value):
        raise invalid_argument(name, expected, value)
    result = int(value)
    if (low is not None and result < low) or (high is not None and result > high):
        raise invalid_argument(name, expected, value)
    return result


def check_bool(name, value):
    """Returns `value` as a Python bool; only real booleans are accepted."""
    if _is_bool(value):
        return bool(value)
    raise invalid_argument(name, "a bool", value)


def check_str(name, value):
    """Returns `value`, a non-empty string."""
    if not isinstance(value, str) or not value:
        raise invalid_argument(name, "a non-empty string", value)
    return value


def check_rate(name, value):
    """Returns a drop rate in [0, 1], with Keras's Dropout wording."""
    return check_float(
        name, value, low=0, high=1, expected="a float value between 0 and 1"
    )


def check_seed(name, value):
    """Returns a seed: None or a non-negative Python int."""
    if value is None:
        return None
    return check_int(name, value, low=0)


def check_optional_float(name, value, **bounds):
    """Like `check_float`, but None passes through."""
    if value is None:
        return None
    return check_float(name, value, **bounds)


def layer_constructor_kwargs(config):
    """Returns a layer config as constructor arguments, its dtype policy rebuilt.

    Keras's base `Layer.from_config` turns every constructor error into a
    TypeError; keras_reg layers call their constructor directly with these
    arguments so that an invalid stored argument stays this module's
    ValueError.
    """
    import keras

    config = dict(config)
    if isinstance(config.get("dtype"), dict):
        policy = keras.dtype_policies.deserialize(config["dtype"])
        if policy.quantization_mode is None:
            policy = policy.name
        config["dtype"] = policy
    return config
