"""Random keep-masks for the dropout family: the specification, and its
portable implementation on `keras.ops`.

Masks are drawn with a counter-based hash instead of a float per element.
Each element gets a `b`-bit draw, compared with an integer threshold. The
threshold is `t = round(rate * 2**16)`, so the effective rate is within
`2**-17` of the requested one, and `b` is the fewest bits that represent it
exactly: the smallest of 1, 2, 4, 8 and 16 for which `t` is a multiple of
`2**(16 - b)` (1 bit at rate 0.5, 2 at 0.25 and 0.75, 16 for most rates).
Element `j` is dropped when its draw is below `t / 2**(16 - b)`.

For a mask of `n` elements, `ceil(n * b / 32)` 32-bit words are hashed, and
word `i` gives `32 / b` draws, lowest bits first: draw `m` of word `i` (both
counted from 0) is bits `b * m` to `b * m + b - 1`, and belongs to element
`i * 32 / b + m`. Word `i` (counting from 1 in the hash) is

    fmix32(fmix32((i * 0x9E3779B9) ^ k1) ^ k2)

where `fmix32` is the MurmurHash3 finalizer and `(k1, k2)` is derived from a
seed state `(seed, counter)` (a `keras.random.SeedGenerator`'s, or one that
`mc_predict` hands out) as `(fmix32(seed ^ 0x5BD1E995), fmix32(counter ^
0x27D4EB2F))`. All arithmetic is 32-bit and wraps, so the same state gives
bit-identical masks on every backend.

`drop` is the one entry point. It asks `keras_reg._backends` for the
backend's fast path (`<backend>_masks`), which returns the same numbers or
None where it does not apply (JAX has none: under `jax.jit`, which compiles
every Keras training step, the portable path is as fast); `tests/test_masks.py`
checks both against an independent NumPy implementation.
"""

import keras
import numpy as np
from keras import ops

from keras_reg._backends import fast_path

RANDOM_BITS = 16


def signed(value):
    """Returns the int32 whose bits are the 32-bit unsigned `value`."""
    return int(np.uint32(value & 0xFFFFFFFF).view(np.int32))


GOLDEN = 0x9E3779B9
FMIX = (0x85EBCA6B, 0xC2B2AE35)
SALTS = (0x5BD1E995, 0x27D4EB2F)  # for the seed and the counter


def drop_threshold(rate):
    """Returns the integer threshold: a 16-bit draw below it is dropped."""
    return int(round(rate * (1 << RANDOM_BITS)))


def draw_layout(threshold):
    """Returns `(bits, per_word, bits_threshold)` for a 16-bit `threshold`.

    `bits` is the fewest of 1, 2, 4, 8, 16 that represent `threshold / 2**16`
    exactly, `per_word` the draws per 32-bit hash word, and `bits_threshold`
    the threshold in `bits`-bit draws: a draw below it is dropped.
    """
    bits = 1
    while bits < RANDOM_BITS and threshold % (1 << (RANDOM_BITS - bits)):
        bits *= 2
    return bits, 32 // bits, threshold >> (RANDOM_BITS - bits)


def _shift_right(x, bits):
    # keras.ops.right_shift is arithmetic on int32: masking the sign-extended
    # bits makes it the logical shift that fmix32 is defined with.
    return ops.bitwise_and(ops.right_shift(x, bits), (1 << (32 - bits)) - 1)


def fmix32(h):
    """The MurmurHash3 finalizer on int32 tensors (wrapping arithmetic)."""
    h = ops.bitwise_xor(h, _shift_right(h, 16))
    h = ops.multiply(h, signed(FMIX[0]))
    h = ops.bitwise_xor(h, _shift_right(h, 13))
    h = ops.multiply(h, signed(FMIX[1]))
    return ops.bitwise_xor(h, _shift_right(h, 16))


def keys_from_state(state):
    """Returns the int32 keys `(k1, k2)` of a seed state `(seed, counter)`."""
    salts = np.array([signed(salt) for salt in SALTS], "int32")
    keys = fmix32(ops.bitwise_xor(ops.cast(state, "int32"), salts))
    return keys[0], keys[1]


def keep(shape, threshold, state):
    """Returns a boolean tensor of `shape`, True where units are kept.

    `shape` holds ints or, in a TensorFlow graph, scalar tensors.
    """
    bits, per_word, bits_threshold = draw_layout(threshold)
    n = 1
    for dim in shape:
        n = n * dim
    k1, k2 = keys_from_state(state)
    h = ops.arange(1, (n + per_word - 1) // per_word + 1, dtype="int32")
    h = ops.multiply(h, signed(GOLDEN))
    h = fmix32(ops.bitwise_xor(fmix32(ops.bitwise_xor(h, k1)), k2))
    # Draw m of each word, for every m at once; the arithmetic shift's
    # sign-extended bits are masked off with the rest.
    draws = ops.right_shift(ops.expand_dims(h, -1), np.arange(0, 32, bits, "int32"))
    draws = ops.reshape(ops.bitwise_and(draws, (1 << bits) - 1), (-1,))
    return ops.reshape(ops.greater_equal(draws[:n], bits_threshold), shape)


def scale(rate, dtype):
    """`1 / (1 - rate)` as a Python float: exact for float64, else rounded to
    float32, so that every path and backend multiplies by the same number."""
    value = 1.0 / (1.0 - rate)
    return value if dtype == "float64" else float(np.float32(value))


def multiplier(keep, rate, dtype):
    """`keep / (1 - rate)` in `dtype`: `1 / (1 - rate)` where kept, else 0.

    The input is then multiplied by it, not selected from: every backend
    rounds `x * scale` the same way and, as in Keras's TensorFlow dropout, a
    dropped NaN or infinity gives NaN. The multiplier itself is a select, so
    a scale that overflows `dtype` (float16 above rate 0.99998) still gives 0
    where dropped.
    """
    dtype = keras.backend.standardize_dtype(dtype)
    value_dtype = "float64" if dtype == "float64" else "float32"
    value = ops.cast(ops.convert_to_tensor(scale(rate, dtype), value_dtype), dtype)
    return ops.where(keep, value, ops.zeros((), dtype))


def drop(x, shape, rate, state):
    """Returns `x` times a fresh keep-mask of `shape`, survivors scaled.

    `shape` broadcasts against `x`'s shape; `state` is a seed state
    `(seed, counter)`, an int tensor or array of two entries.
    """
    shape = tuple(shape)
    module = fast_path("masks")
    if module is not None:
        y = module.drop(x, shape, rate, state)
        if y is not None:
            return y
    mask = keep(shape, drop_threshold(rate), state)
    return ops.multiply(x, multiplier(mask, rate, x.dtype))
