"""SpatialDropout1D/2D/3D: drop-in replacements for Keras's spatial dropout."""

import keras
from keras import ops

from keras_reg._api import register
from keras_reg._validation import check_rate
from keras_reg.layers.dropout_family import DropoutFamilyLayer, check_data_format


class _SpatialDropout(DropoutFamilyLayer):
    """Shared implementation: one mask entry per sample and channel."""

    _rank = None

    def __init__(
        self,
        rate: float,
        data_format: str | None = None,
        seed: int | None = None,
        name: str | None = None,
        dtype=None,
    ):
        super().__init__(name=name, dtype=dtype)
        self.rate = check_rate("rate", rate)
        if self._rank != 3:
            # Keras's SpatialDropout1D has no `data_format`: always channels last.
            self.data_format = check_data_format(data_format)
        self._init_seed(seed, draws=self.rate > 0)
        self.noise_shape = None
        self.supports_masking = True
        self.input_spec = keras.layers.InputSpec(ndim=self._rank)
        self._mark_built()

    def _noise_shape(self, inputs):
        shape = ops.shape(inputs)
        spatial = (1,) * (self._rank - 2)
        if getattr(self, "data_format", None) == "channels_first":
            return (shape[0], shape[1]) + spatial
        return (shape[0],) + spatial + (shape[-1],)

    def get_config(self):
        # Keras's spatial dropout layers store exactly these keys.
        config = {
            "rate": self.rate,
            "seed": self.seed,
            "name": self.name,
            "dtype": self.dtype_policy.name,
        }
        if self._rank != 3:
            config["data_format"] = self.data_format
        return config


@register
class SpatialDropout1D(_SpatialDropout):
    """Drops whole 1D feature maps: a drop-in for `keras.layers.SpatialDropout1D`.

    In training, each channel of each sample is set to 0 at every timestep
    with probability `rate`, and the channels that are kept are scaled by
    `1 / (1 - rate)`. When neighbouring timesteps are strongly correlated,
    element-wise dropout barely regularizes; dropping whole channels does. At
    inference the layer is the identity. Masks are drawn as in
    `keras_reg.layers.Dropout`: reproducible with a seed, saved with the model
    and active inside `keras_reg.mc_predict`.

    Args:
        rate: float in [0, 1]. Fraction of the channels to drop.
        seed: optional non-negative int, the random seed.
        name: optional layer name.
        dtype: optional dtype or dtype policy.

    Call arguments:
        inputs: 3D tensor `(samples, timesteps, channels)`.
        training: Python bool: True drops channels, False returns the input.

    Example:

    >>> import numpy as np
    >>> y = SpatialDropout1D(0.5, seed=1)(np.ones((2, 3, 4)), training=True)
    >>> bool(np.all(np.ptp(np.asarray(y), axis=1) == 0))
    True

    Reference:
        - [Tompson et al., 2015](https://arxiv.org/abs/1411.4280)
    """

    _rank = 3

    def __init__(
        self,
        rate: float,
        seed: int | None = None,
        name: str | None = None,
        dtype=None,
    ):
        super().__init__(rate, seed=seed, name=name, dtype=dtype)


@register
class SpatialDropout2D(_SpatialDropout):
    """Drops whole 2D feature maps: a drop-in for `keras.layers.SpatialDropout2D`.

    `SpatialDropout1D` for images: in training a channel is dropped at every
    pixel at once, and the identity at inference.

    Args:
        rate: float in [0, 1]. Fraction of the channels to drop.
        data_format: `"channels_last"` (inputs `(samples, rows, cols,
            channels)`) or `"channels_first"` (inputs `(samples, channels,
            rows, cols)`). None uses `keras.config.image_data_format()`.
        seed: optional non-negative int, the random seed.
        name: optional layer name.
        dtype: optional dtype or dtype policy.

    Call arguments:
        inputs: 4D tensor.
        training: Python bool: True drops channels, False returns the input.

    Example:

    >>> import numpy as np
    >>> y = SpatialDropout2D(0.5, seed=1)(np.ones((2, 3, 3, 4)), training=True)
    >>> bool(np.all(np.ptp(np.asarray(y), axis=(1, 2)) == 0))
    True

    Reference:
        - [Tompson et al., 2015](https://arxiv.org/abs/1411.4280)
    """

    _rank = 4


@register
class SpatialDropout3D(_SpatialDropout):
    """Drops whole 3D feature maps: a drop-in for `keras.layers.SpatialDropout3D`.

    `SpatialDropout2D` with a third spatial dimension.

    Args:
        rate: float in [0, 1]. Fraction of the channels to drop.
        data_format: as in `SpatialDropout2D`, with three spatial dimensions.
        seed: optional non-negative int, the random seed.
        name: optional layer name.
        dtype: optional dtype or dtype policy.

    Call arguments:
        inputs: 5D tensor.
        training: Python bool, as in `SpatialDropout2D`.

    Example:

    >>> import numpy as np
    >>> x = np.ones((2, 2, 2, 2, 4))
    >>> y = SpatialDropout3D(0.5, seed=1)(x, training=True)
    >>> bool(np.all(np.ptp(np.asarray(y), axis=(1, 2, 3)) == 0))
    True

    Reference:
        - [Tompson et al., 2015](https://arxiv.org/abs/1411.4280)
    """

    _rank = 5
