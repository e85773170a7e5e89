"""StochasticDepth: drops a residual branch per sample (drop path)."""

from keras import ops

from keras_reg._api import register
from keras_reg._validation import check_rate
from keras_reg.layers._masks import drop
from keras_reg.layers.dropout_family import DropoutFamilyLayer


@register
class StochasticDepth(DropoutFamilyLayer):
    """Adds a residual branch to its shortcut, dropping the branch per sample.

    Called on `[shortcut, residual]`, the layer returns `shortcut + residual`.
    In training, the residual of each sample is dropped with probability
    `rate` and, when kept, scaled by `1 / (1 - rate)`, so that the expected
    output equals `shortcut + residual`, the output at inference. A network
    whose blocks end in this layer trains as an ensemble of shallower networks
    and is evaluated at full depth.

    Masks are drawn as in `keras_reg.layers.Dropout`, with one draw per
    sample: reproducible with a seed, saved with the model and active inside
    `keras_reg.mc_predict`.

    Args:
        rate: float in [0, 1]. Probability of dropping the residual branch.
        seed: optional non-negative int, the random seed.
        **kwargs: base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: list or tuple `[shortcut, residual]` of two tensors of the
            same shape, the first dimension being the batch.
        training: Python bool: True drops residuals, False adds them.

    Example:

    >>> import numpy as np
    >>> shortcut, residual = np.zeros((4, 3)), np.ones((4, 3))
    >>> layer = StochasticDepth(0.5, seed=1)
    >>> y = np.asarray(layer([shortcut, residual], training=True))
    >>> sorted(set(y.max(axis=1).tolist())) in ([0.0, 2.0], [0.0], [2.0])
    True
    >>> np.asarray(layer([shortcut, residual])).tolist()[0]
    [1.0, 1.0, 1.0]

    Reference:
        - [Huang et al., 2016](https://arxiv.org/abs/1603.09382)
    """

    def __init__(self, rate: float = 0.1, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.rate = check_rate("rate", rate)
        self._init_seed(seed, draws=0 < self.rate < 1)
        self._mark_built()

    def _check_inputs(self, shapes):
        pair = (
            isinstance(shapes, (list, tuple))
            and len(shapes) == 2
            and all(isinstance(shape, (list, tuple)) for shape in shapes)
        )
        if not pair or tuple(shapes[0]) != tuple(shapes[1]):
            raise ValueError(
                "StochasticDepth expects a list [shortcut, residual] of two "
                f"tensors of the same shape. Received inputs of shape {shapes}"
            )

    def call(self, inputs, training=False):
        if isinstance(inputs, (list, tuple)):
            self._check_inputs([tuple(x.shape) for x in inputs])
        else:
            self._check_inputs(tuple(inputs.shape))
        shortcut, residual = inputs
        if self._is_active(training) and self.rate > 0:
            if self.rate == 1:
                return shortcut + ops.zeros_like(residual)
            shape = ops.shape(residual)
            noise_shape = (shape[0],) + (1,) * (len(shape) - 1)
            residual = drop(residual, noise_shape, self.rate, self._next_state())
        return ops.add(shortcut, residual)

    def compute_output_shape(self, input_shape):
        self._check_inputs(input_shape)
        return tuple(input_shape[0])

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}
