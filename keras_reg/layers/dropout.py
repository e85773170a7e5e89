"""Dropout: a drop-in replacement for `keras.layers.Dropout`."""

from keras import ops

from keras_reg._api import register
from keras_reg._validation import check_rate, invalid_argument, is_integral
from keras_reg.layers.dropout_family import DropoutFamilyLayer


def check_noise_shape(noise_shape):
    """Returns `noise_shape` as a tuple of positive ints and Nones, or None.

    Each rejection carries the "Expected ..." phrase of Keras's own check.
    """
    if noise_shape is None:
        return None
    if isinstance(noise_shape, (str, bytes)):
        raise invalid_argument(
            "noise_shape", "a tuple or list of integers", noise_shape
        )
    try:
        entries = tuple(noise_shape)
    except TypeError:
        raise invalid_argument(
            "noise_shape",
            "an iterable of integers (e.g., a tuple or list)",
            noise_shape,
        ) from None
    if not all(entry is None or is_integral(entry) for entry in entries):
        raise invalid_argument(
            "noise_shape", "all elements to be integers or None", noise_shape
        )
    if any(entry is not None and entry <= 0 for entry in entries):
        raise invalid_argument(
            "noise_shape",
            "all dimensions to be positive integers or None",
            noise_shape,
        )
    return tuple(None if entry is None else int(entry) for entry in entries)


@register
class Dropout(DropoutFamilyLayer):
    """Applies dropout to the input: a drop-in for `keras.layers.Dropout`.

    In training, each unit is set to 0 with probability `rate` and the units
    that are kept are scaled by `1 / (1 - rate)`, so that the expected sum of
    the outputs equals the sum of the inputs. At inference the layer is the
    identity. `rate=1` drops everything and returns zeros.

    The effective drop probability is `round(rate * 2**16) / 2**16`, within
    `2**-17` of `rate` (docs/internals.md tells how masks are drawn). With a
    `seed`, two fresh processes draw the same masks on any backend, and the
    random state is saved in `.keras` files: a reloaded model continues the
    sequence of masks where the saved one stopped.

    Inside `keras_reg.mc_predict`, the layer drops units even though the
    model runs with `training=False`.

    Args:
        rate: float in [0, 1]. Fraction of the input units to drop.
        noise_shape: optional tuple of positive ints or None: the shape of
            the binary mask that multiplies the input, broadcast over
            dimensions of size 1 and, when it has fewer entries than the input
            has dimensions, over the leading ones (as in NumPy). None entries
            take the input's size. For inputs `(batch, timesteps, features)`,
            `noise_shape=(None, 1, None)` drops the same features at every
            timestep.
        seed: optional non-negative int, the random seed.
        **kwargs: base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: input tensor, of any rank.
        training: Python bool: True drops units, False returns the input.

    Example:

    >>> import numpy as np
    >>> layer = Dropout(0.5, seed=1)
    >>> x = np.ones((2, 4), dtype="float32")
    >>> y = np.asarray(layer(x, training=True))
    >>> sorted(set(y.ravel().tolist())) in ([0.0, 2.0], [0.0], [2.0])
    True
    >>> bool(np.all(np.asarray(layer(x)) == x))
    True

    Reference:
        - [Srivastava et al., 2014](https://jmlr.org/papers/v15/srivastava14a.html)
    """

    def __init__(
        self,
        rate: float,
        noise_shape: tuple[int | None, ...] | None = None,
        seed: int | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.rate = check_rate("rate", rate)
        self.noise_shape = check_noise_shape(noise_shape)
        self._init_seed(seed, draws=self.rate > 0)
        self.supports_masking = True
        self._mark_built()

    def _noise_shape(self, inputs):
        """`noise_shape`, None entries filled from the input's shape at the same
        index (as Keras does) and leading 1s added: it broadcasts from the right."""
        input_shape = tuple(ops.shape(inputs))
        if self.noise_shape is None:
            return input_shape
        extra = len(input_shape) - len(self.noise_shape)
        if extra >= 0:
            shape = (1,) * extra + tuple(
                dim if entry is None else entry
                for entry, dim in zip(self.noise_shape, input_shape, strict=False)
            )
            if not any(
                isinstance(entry, int)
                and isinstance(dim, int)
                and entry not in (1, dim)
                for entry, dim in zip(shape, input_shape, strict=True)
            ):
                return shape
        raise ValueError(
            "`noise_shape` must broadcast to the input's shape, entry by entry "
            f"from the right. Received: noise_shape={self.noise_shape} for an "
            f"input of shape {tuple(inputs.shape)}"
        )

    def get_config(self):
        return {
            **super().get_config(),
            "rate": self.rate,
            "seed": self.seed,
            "noise_shape": self.noise_shape,
        }
