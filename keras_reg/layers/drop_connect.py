"""DropConnect: drops the connections (kernel entries) of a wrapped layer."""

import keras
from keras import ops

from keras_reg._api import register
from keras_reg._validation import check_rate, invalid_argument
from keras_reg.layers._masks import drop
from keras_reg.layers.dropout_family import DropoutFamilyLayer

_LAYER_EXPECTED = (
    "a Keras layer with a `kernel` weight, such as Dense or Conv2D, "
    "not LoRA-enabled or quantized"
)


@register
class DropConnect(DropoutFamilyLayer):
    """Wraps a Dense or convolution layer and drops its kernel connections.

    In training, every call draws a fresh mask over the wrapped layer's
    kernel: each entry is set to 0 with probability `rate` and the entries
    that are kept are scaled by `1 / (1 - rate)`. The wrapped layer then runs
    with that kernel; its bias is not masked. The stored kernel is never
    modified, and gradients reach it through the mask. At inference the
    wrapper is the identity: it calls the wrapped layer unchanged. The mask is
    shared by all samples of a batch, as in Wan et al.'s training procedure.

    The wrapped layer keeps its regularizers and constraints: penalties are
    computed on the stored kernel and constraints are applied to it after
    each optimizer step. Its activity regularizer is added once per training
    call, divided by the batch size as Keras's `Layer.__call__` does. The
    wrapped layer is serialized inside the wrapper's config and its weights
    are saved under the wrapper.

    Masks are drawn as in `keras_reg.layers.Dropout`: reproducible with a
    seed, saved with the model and active inside `keras_reg.mc_predict`.

    Args:
        layer: a Keras layer with a `kernel` weight (Dense, EinsumDense,
            Conv1D/2D/3D, their transposed versions), not LoRA-enabled or
            quantized.
        rate: float in [0, 1]. Fraction of the kernel connections to drop.
        seed: optional non-negative int, the random seed.
        **kwargs: base layer keyword arguments, such as `name`.

    Call arguments:
        inputs: the wrapped layer's inputs.
        training: Python bool: True drops connections, False calls the
            wrapped layer unchanged.

    Example:

    >>> import keras
    >>> import numpy as np
    >>> layer = DropConnect(keras.layers.Dense(3, use_bias=False), 0.5, seed=1)
    >>> x = np.eye(4, dtype="float32")
    >>> y = np.asarray(layer(x, training=True))  # rows: masked kernel rows
    >>> kernel = np.asarray(layer.layer.kernel)
    >>> bool(np.all((y == 0) | np.isclose(y, 2 * kernel)))
    True
    >>> bool(np.allclose(np.asarray(layer(x)), kernel))
    True

    Reference:
        - [Wan et al., 2013](https://proceedings.mlr.press/v28/wan13.html)
    """

    def __init__(self, layer, rate: float, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(layer, keras.layers.Layer):
            raise invalid_argument("layer", _LAYER_EXPECTED, layer)
        self.layer = layer
        self.rate = check_rate("rate", rate)
        self._init_seed(seed, draws=0 < self.rate < 1)
        if layer.built:
            self._check_kernel()
            self.input_spec = layer.input_spec

    def _check_kernel(self):
        kernel = getattr(self.layer, "kernel", None)
        quantized = getattr(self.layer, "quantization_mode", None) is not None
        if not isinstance(kernel, keras.Variable) or quantized:
            raise invalid_argument("layer", _LAYER_EXPECTED, self.layer)
        return kernel

    def build(self, input_shape):
        if not self.layer.built:
            self.layer.build(input_shape)
        self._check_kernel()
        # Checked by the wrapper's own `__call__` too, before a mask is drawn.
        self.input_spec = self.layer.input_spec
        self.built = True

    def call(self, inputs, training=False):
        if not self._is_active(training) or self.rate == 0:
            return self.layer(inputs)
        kernel = self._check_kernel()
        value = kernel.value
        if self.rate == 1:
            masked = ops.zeros_like(value)
        else:
            masked = drop(value, value.shape, self.rate, self._next_state())

        # The wrapped layer runs through its own __call__ with its kernel read
        # as `masked`. Its other variables are mapped to their current values
        # so that, inside an outer stateless scope (JAX training), they still
        # resolve to the traced values.
        variables = self.layer.variables
        mapping = [(v, masked if v is kernel else v.value) for v in variables]
        with keras.StatelessScope(state_mapping=mapping) as scope:
            outputs = self.layer(inputs)
        # State the wrapped layer updated (e.g. its own seed generators) is
        # written back; the kernel never is.
        for variable, old in mapping:
            new = scope.get_current_value(variable)
            if variable is not kernel and new is not old:
                variable.assign(new)
        # Losses added inside the inner scope are not collected; the only one
        # a Dense or convolution adds there is its activity penalty, added
        # here as Keras's `Layer.__call__` adds it: per sample of the batch.
        regularizer = self.layer.activity_regularizer
        if regularizer is not None:
            loss = regularizer(outputs)
            if len(outputs.shape) > 0:
                batch = ops.cast(ops.shape(outputs)[0], loss.dtype)
                loss = ops.divide_no_nan(loss, batch)
            self.add_loss(loss)
        return outputs

    def compute_output_shape(self, input_shape):
        return self.layer.compute_output_shape(input_shape)

    def get_config(self):
        return {
            **super().get_config(),
            "layer": keras.saving.serialize_keras_object(self.layer),
            "rate": self.rate,
            "seed": self.seed,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if isinstance(config.get("layer"), dict):
            config["layer"] = keras.saving.deserialize_keras_object(config["layer"])
        return super().from_config(config)
