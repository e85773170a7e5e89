"""Batch normalization, a drop-in for `keras.layers.BatchNormalization`."""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from typing import Any

import keras
import numpy as np
from keras import ops

from keras_reg._api import register
from keras_reg._validation import (
    check_float,
    check_int,
    invalid_argument,
    layer_constructor_kwargs,
)
from keras_reg.layers import _batch_norm_fast as fast

_CLIPPING_KEYS = ("rmax", "rmin", "dmax")
_LISTED_CLIPPING_KEYS = ", ".join(f'"{key}"' for key in _CLIPPING_KEYS)


def _check_renorm_clipping(value, renorm):
    """Returns `renorm_clipping`: None or, with renorm, a dict of floats.

    Keras reads (and validates) the argument only when `renorm` is True;
    without renorm it is stored unread, as Keras stores it. Where Keras
    raises, the message carries Keras's sentence in parentheses.
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
    clipping = {}
    for key, bound in value.items():
        is_number = not isinstance(bound, (bool, np.bool_)) and isinstance(
            bound, numbers.Real
        )
        # Keras lets NaN through; it turns every output into NaN.
        if not is_number or math.isnan(bound):
            raise invalid_argument(
                "renorm_clipping",
                "float bounds that are not NaN (infinity means no bound)",
                value,
            )
        clipping[key] = float(bound)
    rmax = clipping.get("rmax")
    rmin = clipping.get("rmin")
    if rmax is not None and rmin is not None and rmax < rmin:
        raise invalid_argument(
            "renorm_clipping",
            "rmax >= rmin (rmax should be greater than rmin in the "
            "`renorm_clipping` argument)",
            value,
        )
    if clipping.get("dmax", 0.0) < 0:
        raise invalid_argument(
            "renorm_clipping",
            "dmax >= 0 (dmax should be non-negative in the `renorm_clipping` argument)",
            value,
        )
    # Keras accepts these too; they clip the correction r to zero or below
    # (erasing or flipping the normalized values) or to infinity.
    if rmax is not None and rmax <= 0:
        raise invalid_argument(
            "renorm_clipping",
            "rmax > 0 (the correction r is clipped to [rmin, rmax])",
            value,
        )
    if rmin is not None and rmin == math.inf:
        raise invalid_argument(
            "renorm_clipping",
            "rmin < inf (the correction r is clipped to [rmin, rmax])",
            value,
        )
    return clipping


def _check_flag(name, value):
    """Returns a Python bool from a bool, a NumPy bool, or an int 0 or 1.

    Keras stores these arguments as given and tests their truth; anything
    else (None, strings such as "False", 2) is rejected rather than guessed.
    """
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, numbers.Integral) and value in (0, 1):
        return bool(value)
    raise invalid_argument(name, "a bool, 0 or 1", value)


def _check_synchronized(value):
    synchronized = _check_flag("synchronized", value)
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


def _clone_initializer(initializer):
    # Calling one seeded initializer object twice would give two weights the
    # same values; a fresh object from its config draws its own.
    if isinstance(initializer, keras.initializers.Initializer):
        return type(initializer).from_config(initializer.get_config())
    return initializer


@register
class BatchNormalization(keras.layers.Layer):
    """Normalizes its inputs with batch statistics, like Keras's layer.

    In training (`training=True` and `layer.trainable`), each channel along
    `axis` is normalized with the mean and variance of the current batch,
    `gamma * (x - mean) / sqrt(variance + epsilon) + beta`, and the moving
    statistics are updated as
    `moving = moving * momentum + batch_statistic * (1 - momentum)`. At
    inference, and whenever `trainable` is False, the moving statistics are
    used instead. The variance is the biased (population) variance, as in
    Keras.

    The layer is a drop-in for `keras.layers.BatchNormalization` (Keras 3):
    the same arguments, defaults, `get_config` keys and weights, created with
    the same names in the same order, so `set_weights` moves trained weights
    between the two. Statistics are computed in float32 (or float64 for
    float64 inputs) whatever the compute dtype, so float16 and bfloat16
    inputs keep finite moving statistics.

    Where the backend offers a faster kernel for the case at hand, the layer
    uses it: for channels-last inputs on TensorFlow, the fused batch norm in
    training and the portable formula compiled by XLA at inference; torch's
    native batch norm for the last axis or axis 1 (no mask, renorm or
    virtual batches in training). The results match the portable `keras.ops`
    path within float32 tolerance; every other case runs the portable path,
    which is also the fastest formulation measured on JAX (two passes, with
    the mean held constant in the variance's gradient).

    Beyond Keras, `virtual_batch_size` gives ghost batch normalization as in
    tf-keras 2, and `synchronized=True` is accepted on JAX as well as
    TensorFlow.

    `isinstance(layer, keras.layers.BatchNormalization)` is False for this
    layer, so code that singles out batch normalization layers (such as
    keeping them frozen while fine-tuning) should test
    `keras_reg.layers.is_batch_normalization(layer)`, which is True for both.

    Args:
        axis: Integer, the features axis to normalize (`1` after a
            `channels_first` convolution). Defaults to `-1`.
        momentum: Float in [0, 1] (an int 0 or 1 is taken as a float),
            momentum of the moving statistics.
        epsilon: Float > 0 added to the variance to avoid dividing by zero.
        center: Bool (or 0 or 1, stored as a bool). If True, add the
            learned offset `beta`.
        scale: Bool (or 0 or 1). If True, multiply by the learned scale
            `gamma`.
        beta_initializer: Initializer for `beta`.
        gamma_initializer: Initializer for `gamma`.
        moving_mean_initializer: Initializer for the moving mean.
        moving_variance_initializer: Initializer for the moving variance.
        beta_regularizer: Optional regularizer for `beta`.
        gamma_regularizer: Optional regularizer for `gamma`.
        beta_constraint: Optional constraint for `beta`.
        gamma_constraint: Optional constraint for `gamma`.
        renorm: Bool (or 0 or 1). If True, use batch renormalization,
            which adds the `moving_stddev`, `renorm_mean` and
            `renorm_stddev` weights. Inference is unchanged.
        renorm_clipping: None or a dict with optional keys `"rmax"`,
            `"rmin"` and `"dmax"` (floats, not NaN, `rmax >= rmin`,
            `rmax > 0`, `dmax >= 0`; `inf` means no bound) clipping the
            renorm correction `r` to `[rmin, rmax]` and `d` to
            `[-dmax, dmax]`; a missing key means no bound. Read only when
            `renorm` is True; otherwise it is kept unread, as Keras does.
        renorm_momentum: Float in [0, 1], momentum of the renorm moving mean
            and standard deviation.
        synchronized: Bool (or 0 or 1). If True, compute the training
            statistics over the global batch of a distributed step. On
            TensorFlow the sums are all-reduced across the replicas of a
            `tf.distribute` strategy (on one replica this equals `False`).
            On JAX, `keras.distribution` runs one program over the global
            batch, so statistics are global whether or not this is set.
            Other backends raise ValueError for True.
        virtual_batch_size: None, or an int >= 1: ghost batch normalization.
            In training, the batch is split into `batch // virtual_batch_size`
            virtual batches, normalized with their own statistics, and the
            moving statistics are updated with the virtual batches' average
            mean and variance. As in tf-keras, virtual batch `j` holds the
            examples `j, j + n, j + 2n, ...` with
            `n = batch // virtual_batch_size`. The batch must be a multiple
            of `virtual_batch_size`. Combines with `mask`; not with `renorm`,
            `synchronized` or `axis=0`. Not a Keras argument: it appears in
            `get_config` only when set.
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: Input tensor of any rank that has `axis`.
        training: Python bool. True uses and updates batch statistics; False
            or None uses the moving statistics.
        mask: Optional boolean tensor with one dimension less than `inputs`,
            covering all but the last input dimension. Masked-out positions
            are left out of the batch statistics in training.

    Example:

    >>> import keras
    >>> import numpy as np
    >>> import keras_reg
    >>> layer = keras_reg.layers.BatchNormalization(momentum=0.9)
    >>> x = np.array([[1.0, 10.0], [3.0, 30.0]], dtype="float32")
    >>> y = keras.ops.convert_to_numpy(layer(x, training=True))
    >>> np.round(y.astype("float64"), 2).tolist()
    [[-1.0, -1.0], [1.0, 1.0]]
    >>> mean = keras.ops.convert_to_numpy(layer.moving_mean)
    >>> np.round(mean.astype("float64"), 2).tolist()
    [0.2, 2.0]

    Reference:
        - [Ioffe and Szegedy, 2015](https://arxiv.org/abs/1502.03167).
        - [Ioffe, 2017](https://arxiv.org/abs/1702.03275) (batch
          renormalization).
        - [Hoffer et al., 2017](https://arxiv.org/abs/1705.08741) (ghost
          batch normalization).
    """

    def __init__(
        self,
        axis: int = -1,
        momentum: float = 0.99,
        epsilon: float = 1e-3,
        center: bool = True,
        scale: bool = True,
        beta_initializer: Any = "zeros",
        gamma_initializer: Any = "ones",
        moving_mean_initializer: Any = "zeros",
        moving_variance_initializer: Any = "ones",
        beta_regularizer: Any = None,
        gamma_regularizer: Any = None,
        beta_constraint: Any = None,
        gamma_constraint: Any = None,
        renorm: bool = False,
        renorm_clipping: dict[str, float] | None = None,
        renorm_momentum: float = 0.99,
        synchronized: bool = False,
        virtual_batch_size: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.axis = check_int("axis", axis)
        self.momentum = check_float("momentum", momentum, low=0.0, high=1.0)
        self.epsilon = check_float("epsilon", epsilon, low=0.0, low_open=True)
        self.center = _check_flag("center", center)
        self.scale = _check_flag("scale", scale)
        self.renorm = _check_flag("renorm", renorm)
        self.renorm_clipping = _check_renorm_clipping(renorm_clipping, self.renorm)
        self.renorm_momentum = check_float(
            "renorm_momentum", renorm_momentum, low=0.0, high=1.0
        )
        self.synchronized = _check_synchronized(synchronized)
        if virtual_batch_size is not None:
            virtual_batch_size = check_int(
                "virtual_batch_size", virtual_batch_size, low=1
            )
            for name, conflicting in (
                ("renorm", self.renorm),
                ("synchronized", self.synchronized),
            ):
                if conflicting:
                    raise invalid_argument(
                        "virtual_batch_size",
                        f"None when {name}=True (ghost batch normalization "
                        f"does not combine with {name})",
                        virtual_batch_size,
                    )
            if self.axis == 0:
                raise invalid_argument(
                    "virtual_batch_size",
                    "None when axis=0 (virtual batches split the batch axis)",
                    virtual_batch_size,
                )
        self.virtual_batch_size = virtual_batch_size

        self.beta_initializer = keras.initializers.get(beta_initializer)
        self.gamma_initializer = keras.initializers.get(gamma_initializer)
        self.moving_mean_initializer = keras.initializers.get(moving_mean_initializer)
        self.moving_variance_initializer = keras.initializers.get(
            moving_variance_initializer
        )
        self.beta_regularizer = keras.regularizers.get(beta_regularizer)
        self.gamma_regularizer = keras.regularizers.get(gamma_regularizer)
        self.beta_constraint = keras.constraints.get(beta_constraint)
        self.gamma_constraint = keras.constraints.get(gamma_constraint)
        self.supports_masking = True

        # Tests turn this off to compare the backend kernels with the
        # portable keras.ops path.
        self._use_fast_path = True
        self.gamma = None
        self.beta = None
        self.moving_mean = None
        self.moving_variance = None

    def _check_axis(self, input_shape):
        """Returns the normalized axis as a non-negative index."""
        rank = len(input_shape)
        if not -rank <= self.axis < rank:
            raise invalid_argument(
                "axis",
                f"an int in [{-rank}, {rank - 1}] for inputs of rank {rank} "
                f"(Axis {self.axis} is out of bounds for input shape "
                f"{tuple(input_shape)})",
                self.axis,
            )
        return self.axis % rank

    def build(self, input_shape):
        axis = self._check_axis(input_shape)
        if input_shape[axis] is None:
            raise ValueError(
                f"The normalized axis {self.axis} must have a known size. "
                f"Received: input_shape={tuple(input_shape)}"
            )
        shape = (input_shape[axis],)
        if self.scale:
            self.gamma = self.add_weight(
                shape=shape,
                name="gamma",
                initializer=self.gamma_initializer,
                regularizer=self.gamma_regularizer,
                constraint=self.gamma_constraint,
                trainable=True,
                autocast=False,
            )
        if self.center:
            self.beta = self.add_weight(
                shape=shape,
                name="beta",
                initializer=self.beta_initializer,
                regularizer=self.beta_regularizer,
                constraint=self.beta_constraint,
                trainable=True,
                autocast=False,
            )
        self.moving_mean = self.add_weight(
            shape=shape,
            name="moving_mean",
            initializer=self.moving_mean_initializer,
            trainable=False,
            autocast=False,
        )
        self.moving_variance = self.add_weight(
            shape=shape,
            name="moving_variance",
            initializer=self.moving_variance_initializer,
            trainable=False,
            autocast=False,
        )
        if self.renorm:
            # Renorm tracks standard deviations; they start at the square
            # root of the variance initializer, as in Keras.
            def stddev_initializer(shape, dtype=None):
                variance = _clone_initializer(self.moving_variance_initializer)
                return ops.sqrt(variance(shape, dtype=dtype))

            self.moving_stddev = self.add_weight(
                shape=shape,
                name="moving_stddev",
                initializer=stddev_initializer,
                trainable=False,
                autocast=False,
            )
            self.renorm_mean = self.add_weight(
                shape=shape,
                name="renorm_mean",
                initializer=_clone_initializer(self.moving_mean_initializer),
                trainable=False,
                autocast=False,
            )
            self.renorm_stddev = self.add_weight(
                shape=shape,
                name="renorm_stddev",
                initializer=stddev_initializer,
                trainable=False,
                autocast=False,
            )
        self.input_spec = keras.layers.InputSpec(
            ndim=len(input_shape), axes={self.axis: input_shape[axis]}
        )

    def compute_output_shape(self, input_shape):
        self._check_axis(input_shape)
        return input_shape

    def call(self, inputs, training=None, mask=None):
        if mask is not None and len(mask.shape) != len(inputs.shape) - 1:
            # The template's tail names the mask's shape: a tensor's repr
            # would flood the message.
            raise ValueError(
                "Invalid value received for argument `mask`. Expected a mask "
                f"of rank {len(inputs.shape) - 1} for inputs of shape "
                f"{tuple(inputs.shape)} (The mask provided should be one "
                "dimension less than the inputs). "
                f"Received: mask.shape={tuple(mask.shape)}"
            )
        # Statistics in float16 overflow for inputs above ~256 (squares pass
        # 65504), so everything below runs in float32, or float64 for float64
        # inputs (keras.backend.result_type would drop those to float32 on
        # some backends).
        input_dtype = keras.backend.standardize_dtype(inputs.dtype)
        compute_dtype = "float64" if input_dtype == "float64" else "float32"
        # No-op casts are skipped: on eager torch the layer's per-call Python
        # overhead is measurable beside small kernels. The conversion still
        # moves a torch tensor to the layer's device (a CPU tensor into a
        # layer on the GPU), as Keras's layer does.
        if input_dtype == compute_dtype:
            x = ops.convert_to_tensor(inputs)
        else:
            x = ops.cast(inputs, compute_dtype)
        read = self._reader(compute_dtype)
        gamma = None if self.gamma is None else read(self.gamma)
        beta = None if self.beta is None else read(self.beta)
        if training and self.trainable:
            outputs = self._train(x, mask, gamma, beta)
        else:
            outputs = self._infer(x, gamma, beta, read, compute_dtype)
        if compute_dtype == self.compute_dtype:
            return outputs
        return ops.cast(outputs, self.compute_dtype)

    def _reader(self, dtype):
        """Returns a function reading a variable's value in `dtype`.

        Decided once per call: on eager torch the layer's Python overhead is
        measurable beside a 1024x512 inference kernel.
        """
        if self.variable_dtype == dtype:
            return _value
        return lambda variable: ops.cast(variable, dtype)

    # Inference -------------------------------------------------------------

    def _infer(self, x, gamma, beta, read, dtype):
        axis = self.axis % len(x.shape)
        mean = read(self.moving_mean)
        variance = read(self.moving_variance)
        if fast.available(self, x, mask=None, training=False, dtype=dtype):
            return fast.infer(self, x, axis, mean, variance, gamma, beta, _normalize)
        shape = _param_shape(len(x.shape), axis, mean.shape[0])
        return _normalize(
            x,
            ops.reshape(mean, shape),
            ops.reshape(variance, shape),
            gamma,
            beta,
            self.epsilon,
            shape,
        )

    # Training --------------------------------------------------------------

    def _train(self, x, mask, gamma, beta):
        rank = len(x.shape)
        axis = self.axis % rank
        if self.virtual_batch_size is not None:
            return self._train_virtual(x, mask, gamma, beta, axis)
        if fast.available(self, x, mask=mask, training=True):
            outputs, mean, variance = fast.train(self, x, axis, gamma, beta)
            self._update_moving_statistics(mean, variance)
            return outputs

        reduction_axes = [i for i in range(rank) if i != axis]
        mean, variance = self._moments(x, mask, reduction_axes)
        channels = x.shape[axis]
        mean = ops.reshape(mean, (channels,))
        variance = ops.reshape(variance, (channels,))
        if self.renorm:
            gamma, beta = self._renorm_transform(mean, variance, gamma, beta)
            self._update_renorm_statistics(mean, variance)
        else:
            self._update_moving_statistics(mean, variance)
        shape = _param_shape(rank, axis, channels)
        return _normalize(
            x,
            ops.reshape(mean, shape),
            ops.reshape(variance, shape),
            gamma,
            beta,
            self.epsilon,
            shape,
        )

    def _train_virtual(self, x, mask, gamma, beta, axis):
        batch = x.shape[0]
        size = self.virtual_batch_size
        if batch is not None and batch % size:
            raise ValueError(
                f"The batch size must be a multiple of virtual_batch_size="
                f"{size}. Received: inputs.shape={tuple(x.shape)}"
            )
        if batch is None:
            x = fast.assert_batch_multiple(x, size)
        rest = tuple(-1 if d is None else d for d in x.shape[1:])
        # tf-keras's layout: [virtual_batch_size, n_virtual, ...], so virtual
        # batch j holds examples j, j + n, j + 2n, ...
        grouped = ops.reshape(x, (size, -1) + rest)
        if mask is not None:
            mask_rest = tuple(-1 if d is None else d for d in mask.shape[1:])
            mask = ops.reshape(mask, (size, -1) + mask_rest)
        work_axis = axis + 1
        reduction_axes = [
            i for i in range(len(grouped.shape)) if i not in (1, work_axis)
        ]
        mean, variance = self._moments(grouped, mask, reduction_axes)
        channels = x.shape[axis]
        # Moving statistics take the virtual batches' average, as tf-keras.
        self._update_moving_statistics(
            ops.reshape(ops.mean(mean, axis=1), (channels,)),
            ops.reshape(ops.mean(variance, axis=1), (channels,)),
        )
        shape = _param_shape(len(grouped.shape), work_axis, channels)
        outputs = _normalize(grouped, mean, variance, gamma, beta, self.epsilon, shape)
        return ops.reshape(outputs, ops.shape(x))

    def _moments(self, x, mask, axes):
        """Returns the biased mean and variance with kept dimensions."""
        if mask is None:
            if self.synchronized:
                synced = fast.synchronized_moments(x, None, axes)
                if synced is not None:
                    return synced
            mean = ops.mean(x, axis=axes, keepdims=True)
            variance = ops.mean(
                ops.square(x - ops.stop_gradient(mean)), axis=axes, keepdims=True
            )
            return mean, variance
        # The mask covers every input dimension but the last, as in Keras.
        keep = ops.broadcast_to(
            ops.expand_dims(ops.cast(mask, "bool"), -1), ops.shape(x)
        )
        if self.synchronized:
            synced = fast.synchronized_moments(x, keep, axes)
            if synced is not None:
                return synced
        count = ops.sum(ops.cast(keep, x.dtype), axis=axes, keepdims=True)
        # A channel with no kept value gets mean 0 and variance 0.
        count = ops.maximum(count, 1.0)
        zeros = ops.zeros_like(x)
        mean = ops.sum(ops.where(keep, x, zeros), axis=axes, keepdims=True) / count
        deviation = ops.where(keep, x - mean, zeros)
        variance = ops.sum(ops.square(deviation), axis=axes, keepdims=True) / count
        return mean, variance

    def _update_moving_statistics(self, mean, variance):
        moving_mean = ops.cast(self.moving_mean, mean.dtype)
        moving_variance = ops.cast(self.moving_variance, mean.dtype)
        self.moving_mean.assign(
            moving_mean * self.momentum + mean * (1.0 - self.momentum)
        )
        self.moving_variance.assign(
            moving_variance * self.momentum + variance * (1.0 - self.momentum)
        )

    def _renorm_transform(self, mean, variance, gamma, beta):
        """Folds the renorm correction `(x * r + d)` into gamma and beta."""
        dtype = mean.dtype
        stddev = ops.sqrt(variance + self.epsilon)
        renorm_mean = ops.cast(self.renorm_mean, dtype)
        # The floor avoids dividing by a near-zero stddev early in training.
        renorm_stddev = ops.maximum(
            ops.cast(self.renorm_stddev, dtype), math.sqrt(self.epsilon)
        )
        r = stddev / renorm_stddev
        d = (mean - renorm_mean) / renorm_stddev
        clipping = self.renorm_clipping
        if "rmin" in clipping:
            r = ops.maximum(r, clipping["rmin"])
        if "rmax" in clipping:
            r = ops.minimum(r, clipping["rmax"])
        if "dmax" in clipping:
            d = ops.clip(d, -clipping["dmax"], clipping["dmax"])
        # r and d are treated as constants in backpropagation (the paper).
        r = ops.stop_gradient(r)
        d = ops.stop_gradient(d)
        if gamma is None:
            new_gamma, new_beta = r, d
        else:
            new_gamma, new_beta = r * gamma, d * gamma
        if beta is not None:
            new_beta = new_beta + beta
        return new_gamma, new_beta

    def _update_renorm_statistics(self, mean, variance):
        dtype = mean.dtype
        stddev = ops.sqrt(variance + self.epsilon)
        renorm_mean = ops.cast(self.renorm_mean, dtype)
        renorm_stddev = ops.cast(self.renorm_stddev, dtype)
        self.renorm_mean.assign(
            renorm_mean * self.renorm_momentum + mean * (1.0 - self.renorm_momentum)
        )
        self.renorm_stddev.assign(
            renorm_stddev * self.renorm_momentum + stddev * (1.0 - self.renorm_momentum)
        )
        moving_mean = ops.cast(self.moving_mean, dtype)
        moving_stddev = ops.cast(self.moving_stddev, dtype)
        self.moving_mean.assign(
            moving_mean * self.momentum + mean * (1.0 - self.momentum)
        )
        new_stddev = moving_stddev * self.momentum + stddev * (1.0 - self.momentum)
        self.moving_stddev.assign(new_stddev)
        # relu: rounding can push stddev**2 - epsilon just below zero.
        self.moving_variance.assign(ops.relu(new_stddev * new_stddev - self.epsilon))

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> BatchNormalization:
        return cls(**layer_constructor_kwargs(config))

    def get_config(self) -> dict[str, Any]:
        config = {
            "axis": self.axis,
            "momentum": self.momentum,
            "epsilon": self.epsilon,
            "center": self.center,
            "scale": self.scale,
            "beta_initializer": keras.initializers.serialize(self.beta_initializer),
            "gamma_initializer": keras.initializers.serialize(self.gamma_initializer),
            "moving_mean_initializer": keras.initializers.serialize(
                self.moving_mean_initializer
            ),
            "moving_variance_initializer": keras.initializers.serialize(
                self.moving_variance_initializer
            ),
            "beta_regularizer": keras.regularizers.serialize(self.beta_regularizer),
            "gamma_regularizer": keras.regularizers.serialize(self.gamma_regularizer),
            "beta_constraint": keras.constraints.serialize(self.beta_constraint),
            "gamma_constraint": keras.constraints.serialize(self.gamma_constraint),
            "synchronized": self.synchronized,
            "renorm": self.renorm,
            "renorm_clipping": (
                dict(self.renorm_clipping)
                if isinstance(self.renorm_clipping, dict)
                else self.renorm_clipping
            ),
            "renorm_momentum": self.renorm_momentum,
        }
        # Only when set, so that default configs stay interchangeable with
        # keras.layers.BatchNormalization's.
        if self.virtual_batch_size is not None:
            config["virtual_batch_size"] = self.virtual_batch_size
        return {**super().get_config(), **config}


def is_batch_normalization(layer: Any) -> bool:
    """Returns True if `layer` is a batch normalization layer.

    True for instances of `keras.layers.BatchNormalization`,
    `keras_reg.layers.BatchNormalization`, Keras's `SyncBatchNormalization`
    where Keras exports one, and subclasses of these; False for anything
    else. keras_reg's layer is not a subclass of Keras's, so
    `isinstance(layer, keras.layers.BatchNormalization)` misses it: the
    fine-tuning idiom that keeps batch normalization frozen while unfreezing
    the rest of a model should test this function instead.

    Args:
        layer: Any object, usually a Keras layer.

    Returns:
        A Python bool.

    Example:

    >>> import keras
    >>> import keras_reg
    >>> model = keras.Sequential([
    ...     keras.Input((4,)),
    ...     keras.layers.Dense(8),
    ...     keras_reg.layers.BatchNormalization(),
    ...     keras.layers.Dense(8),
    ...     keras.layers.BatchNormalization(),
    ...     keras.layers.Dense(1),
    ... ])
    >>> for layer in model.layers:
    ...     layer.trainable = False
    >>> # Unfreeze the top layers, but keep batch normalization frozen.
    >>> for layer in model.layers[-4:]:
    ...     if not keras_reg.layers.is_batch_normalization(layer):
    ...         layer.trainable = True
    >>> [layer.trainable for layer in model.layers]
    [False, False, True, False, True]
    >>> isinstance(model.layers[1], keras.layers.BatchNormalization)
    False
    """
    classes = [keras.layers.BatchNormalization, BatchNormalization]
    # Keras 3.15 does not export it; tf-keras 2 did, and a later Keras may.
    sync = getattr(keras.layers, "SyncBatchNormalization", None)
    if isinstance(sync, type):
        classes.append(sync)
    return isinstance(layer, tuple(classes))


def _value(variable):
    return variable.value


def _param_shape(rank, axis, channels):
    shape = [1] * rank
    shape[axis] = channels
    return tuple(shape)


def _normalize(x, mean, variance, gamma, beta, epsilon, shape):
    """`gamma * (x - mean) / sqrt(variance + epsilon) + beta`.

    `mean` and `variance` broadcast against `x`; `gamma` and `beta` are
    per-channel vectors, reshaped to `shape`.
    """
    inv = ops.rsqrt(variance + epsilon)
    if gamma is not None:
        inv = inv * ops.reshape(gamma, shape)
    shift = -mean * inv
    if beta is not None:
        shift = shift + ops.reshape(beta, shape)
    return x * inv + shift
