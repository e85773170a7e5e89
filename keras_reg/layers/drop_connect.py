"""DropConnect: drops the connections (kernel entries) of a wrapped layer."""

import inspect

import keras
from keras import ops

from keras_reg._api import register
from keras_reg._validation import check_rate, check_seed, invalid_argument
from keras_reg.layers._masks import DropoutFamilyLayer, FirstRoundCache, drop

_LAYER_EXPECTED = (
    "a Keras layer with a `kernel` weight, such as Dense or Conv2D, "
    "not LoRA-enabled or quantized"
)
_DIRECT_CALL_ARGUMENTS = ({"inputs"}, {"inputs", "training"})
_TORCH_MODULE_HOOKS = (
    "_forward_hooks",
    "_forward_pre_hooks",
    "_backward_hooks",
    "_backward_pre_hooks",
)


def _torch_call_does_more(module):
    """Whether `torch.nn.Module.__call__` would do more than `module.forward`.

    Hooks (the module's or global ones), a `module.compile()`d forward, or a
    `torch.jit.trace` recording module scopes; True where unknown.
    """
    import torch
    from torch.nn.modules import module as torch_module

    try:
        hooks = any(getattr(module, name) for name in _TORCH_MODULE_HOOKS) or any(
            getattr(torch_module, f"_global{name}") for name in _TORCH_MODULE_HOOKS
        )
    except AttributeError:  # a torch without these registries
        return True
    compiled = getattr(module, "_compiled_call_impl", None) is not None
    return hooks or compiled or torch.jit.is_tracing()


def _direct_call_parameters(layer):
    """The parameters of `layer.call` where it may run without `__call__`, else None.

    Its class must leave `Layer.__call__`, torch's `forward` and
    `compute_mask` as Keras defines them, and `call` take only `inputs` and
    `training`; the layer must not rematerialize (`keras.RematScope`).
    """
    base, kind = keras.layers.Layer, type(layer)
    parameters = frozenset(inspect.signature(layer.call).parameters)
    if (
        keras.backend.backend() == "torch"
        and parameters in _DIRECT_CALL_ARGUMENTS
        and kind.__call__ is base.__call__
        and kind.forward is base.forward
        and kind.compute_mask is base.compute_mask
        # Set from the RematScope at construction; unknown counts as set.
        and getattr(layer, "_remat_mode", "unknown") is None
    ):
        return parameters
    return None


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
    seed, saved with the model and active inside `keras_reg.mc_predict`. On
    PyTorch, float32 kernels on the CPU are masked by the package's optional
    native kernels where they were built, keeping the mask as one bit per
    kernel entry for the backward pass. On TensorFlow, and on PyTorch
    elsewhere for kernels of more than 2**16 entries, the wrapper keeps the
    first of the mask hash's two rounds, which depends only on the seed,
    between calls: `b / 8` bytes per kernel entry for `b`-bit draws (2 bytes
    at most, 1/8 at rate 0.5) for each of the last two seeds used, for one
    round of hashing per step instead of two.

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
        self.seed = check_seed("seed", seed)
        self._init_seed(self.seed)
        self._first_round = FirstRoundCache()
        # The wrapped `call`'s parameters where it may be called directly.
        self._direct_call_parameters = None
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
        # Checked by the wrapper's own `__call__`, which the direct call relies on.
        self.input_spec = self.layer.input_spec
        self._direct_call_parameters = _direct_call_parameters(self.layer)
        self.built = True

    def _calls_directly(self, inputs):
        """Whether the masked call may skip the wrapped layer's `Layer.__call__`.

        On PyTorch every training step runs in Python, and the wrapped
        layer's own `__call__` (through `torch.nn.Module.__call__`) costs a
        few percent of a `Dense(1024)` step. What it does is already done by
        the wrapper's `__call__` when the two layers share their dtype
        policy (input casting, autocasting, training flag), with the kernel
        built, the input checked against its spec and the activity penalty
        added below. It still runs wherever it would do more: another dtype
        policy; a layer class with its own `__call__`, `forward` or
        `compute_mask`, or a `call` taking arguments other than `inputs` and
        `training` (masks); rematerialization; an input carrying a Keras
        mask; a distribution (which may lay out the outputs); torch hooks, a
        compiled module or a `torch.jit.trace`. TensorFlow and JAX trace the
        step once, so they always take it.
        """
        return (
            self._direct_call_parameters is not None
            and self.layer.dtype_policy.name == self.dtype_policy.name
            and self.layer.autocast == self.autocast
            and getattr(inputs, "_keras_mask", None) is None
            and keras.distribution.distribution() is None
            and not _torch_call_does_more(self.layer)
        )

    def call(self, inputs, training=False):
        if not self._is_active(training) or self.rate == 0:
            return self.layer(inputs)
        kernel = self._check_kernel()
        value = kernel.value
        if self.rate == 1:
            masked = ops.zeros_like(value)
        else:
            shape = tuple(value.shape)
            keys = self._next_keys()
            masked = drop(value, shape, self.rate, keys, cache=self._first_round)

        # The wrapped layer runs (through its own __call__ unless
        # `_calls_directly`) with its kernel read as `masked`. Its other
        # variables are mapped to their current values so that, inside an
        # outer stateless scope (JAX training), they still resolve to the
        # traced values.
        variables = self.layer.variables
        mapping = [(v, masked if v is kernel else v.value) for v in variables]
        direct = self._calls_directly(inputs)
        with keras.StatelessScope(state_mapping=mapping) as scope:
            if not direct:
                outputs = self.layer(inputs)
            elif "training" in self._direct_call_parameters:
                outputs = self.layer.call(inputs, training=training)
            else:
                outputs = self.layer.call(inputs)
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
        config = super().get_config()
        config.update(
            {
                "layer": keras.saving.serialize_keras_object(self.layer),
                "rate": self.rate,
                "seed": self.seed,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if isinstance(config.get("layer"), dict):
            config["layer"] = keras.saving.deserialize_keras_object(config["layer"])
        return super().from_config(config)
