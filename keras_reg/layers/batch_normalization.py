"""Batch normalization, a drop-in for `keras.layers.BatchNormalization`."""

from __future__ import annotations

import functools
from typing import Any

import keras
from keras import ops

from keras_reg._api import register
from keras_reg._backends import fast_path
from keras_reg._validation import check_float, check_int, layer_constructor_kwargs
from keras_reg.layers._batch_norm_args import (
    check_axis,
    check_flag,
    check_mask,
    check_renorm_clipping,
    check_synchronized,
    check_virtual_batch_size,
)
from keras_reg.layers._batch_norm_stats import (
    along,
    channel_shape,
    ghost_batch_norm,
    moments,
    normalize,
    renorm_transform,
)


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

    Beyond Keras, `virtual_batch_size` gives ghost batch normalization as in
    tf-keras 2, and `synchronized=True` is accepted on JAX as well as
    TensorFlow.

    `isinstance(layer, keras.layers.BatchNormalization)` is False for this
    layer: test `keras_reg.is_batch_normalization(layer)` instead.

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
            statistics over the global batch of a distributed step: across
            the replicas of a `tf.distribute` strategy on TensorFlow. On JAX,
            under `keras.distribution`, they are global whether or not this
            is set. Other backends raise ValueError for True.
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
        self.center = check_flag("center", center)
        self.scale = check_flag("scale", scale)
        self.renorm = check_flag("renorm", renorm)
        self.renorm_clipping = check_renorm_clipping(renorm_clipping, self.renorm)
        self.renorm_momentum = check_float(
            "renorm_momentum", renorm_momentum, low=0.0, high=1.0
        )
        self.synchronized = check_synchronized(synchronized)
        self.virtual_batch_size = check_virtual_batch_size(
            virtual_batch_size,
            axis=self.axis,
            renorm=self.renorm,
            synchronized=self.synchronized,
        )
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
        self.gamma = None
        self.beta = None
        self.moving_mean = None
        self.moving_variance = None

    def build(self, input_shape):
        axis = check_axis(self.axis, input_shape)
        if input_shape[axis] is None:
            raise ValueError(
                f"The normalized axis {self.axis} must have a known size. "
                f"Received: input_shape={tuple(input_shape)}"
            )

        # Keras's weights: the same names, order and options.
        def add(name, initializer, trainable=False, **kwargs):
            return self.add_weight(
                shape=(input_shape[axis],),
                name=name,
                initializer=initializer,
                trainable=trainable,
                autocast=False,
                **kwargs,
            )

        for attribute, wanted in (("gamma", self.scale), ("beta", self.center)):
            if wanted:
                weight = add(
                    attribute,
                    getattr(self, f"{attribute}_initializer"),
                    trainable=True,
                    regularizer=getattr(self, f"{attribute}_regularizer"),
                    constraint=getattr(self, f"{attribute}_constraint"),
                )
                setattr(self, attribute, weight)
        self.moving_mean = add("moving_mean", self.moving_mean_initializer)
        self.moving_variance = add("moving_variance", self.moving_variance_initializer)
        if self.renorm:
            # Renorm tracks standard deviations; they start at the square
            # root of the variance initializer, as in Keras.
            def stddev_initializer(shape, dtype=None):
                variance = _clone_initializer(self.moving_variance_initializer)
                return ops.sqrt(variance(shape, dtype=dtype))

            self.moving_stddev = add("moving_stddev", stddev_initializer)
            self.renorm_mean = add(
                "renorm_mean", _clone_initializer(self.moving_mean_initializer)
            )
            self.renorm_stddev = add("renorm_stddev", stddev_initializer)
        self.input_spec = keras.layers.InputSpec(
            ndim=len(input_shape), axes={self.axis: input_shape[axis]}
        )

    def compute_output_shape(self, input_shape):
        check_axis(self.axis, input_shape)
        return input_shape

    def call(self, inputs, training=None, mask=None):
        check_mask(mask, inputs)
        # Statistics run in float32, or float64 for float64 inputs (which
        # keras.backend.result_type drops to float32 on some backends): in
        # float16 the squares of inputs above ~256 overflow.
        input_dtype = keras.backend.standardize_dtype(inputs.dtype)
        compute_dtype = "float64" if input_dtype == "float64" else "float32"
        # No-op casts are skipped (eager torch overhead); the conversion still
        # moves a torch tensor to the layer's device, as Keras's layer does.
        if input_dtype == compute_dtype:
            x = ops.convert_to_tensor(inputs)
        else:
            x = ops.cast(inputs, compute_dtype)
        # Decided once per call, for the same reason.
        read = _value
        if self.variable_dtype != compute_dtype:
            read = functools.partial(ops.cast, dtype=compute_dtype)
        gamma = None if self.gamma is None else read(self.gamma)
        beta = None if self.beta is None else read(self.beta)
        axis = self.axis % len(x.shape)
        if training and self.trainable:
            outputs, mean, variance = self._train(x, axis, mask, gamma, beta)
            self._update_statistics(mean, variance)
        else:
            mean = read(self.moving_mean)
            variance = read(self.moving_variance)
            outputs = self._infer(x, axis, mean, variance, gamma, beta)
        if compute_dtype == self.compute_dtype:
            return outputs
        return ops.cast(outputs, self.compute_dtype)

    def _infer(self, x, axis, mean, variance, gamma, beta):
        fast = fast_path("batch_norm")
        if fast is not None:
            outputs = fast.infer(x, axis, mean, variance, gamma, beta, self.epsilon)
            if outputs is not None:
                return outputs
        shape = channel_shape(len(x.shape), axis, x.shape[axis])
        mean, variance = along(mean, shape), along(variance, shape)
        return normalize(x, mean, variance, gamma, beta, self.epsilon, shape)

    def _train(self, x, axis, mask, gamma, beta):
        """Returns the outputs and the batch's mean and biased variance."""
        if self.virtual_batch_size is not None:
            size = self.virtual_batch_size
            return ghost_batch_norm(x, mask, axis, size, gamma, beta, self.epsilon)
        fast = fast_path("batch_norm")
        if fast is not None and mask is None and not (self.renorm or self.synchronized):
            result = fast.train(x, axis, gamma, beta, self.epsilon)
            if result is not None:
                return result
        channels = x.shape[axis]
        axes = [i for i in range(len(x.shape)) if i != axis]
        mean, variance = moments(x, mask, axes, self.synchronized)
        channel_mean = ops.reshape(mean, (channels,))
        channel_variance = ops.reshape(variance, (channels,))
        if self.renorm:
            gamma, beta = renorm_transform(
                self, channel_mean, channel_variance, gamma, beta
            )
        shape = channel_shape(len(x.shape), axis, channels)
        outputs = normalize(x, mean, variance, gamma, beta, self.epsilon, shape)
        return outputs, channel_mean, channel_variance

    def _update_statistics(self, mean, variance):
        _move(self.moving_mean, mean, self.momentum)
        if not self.renorm:
            _move(self.moving_variance, variance, self.momentum)
            return
        stddev = ops.sqrt(variance + self.epsilon)
        _move(self.renorm_mean, mean, self.renorm_momentum)
        _move(self.renorm_stddev, stddev, self.renorm_momentum)
        moving_stddev = _move(self.moving_stddev, stddev, self.momentum)
        # relu: rounding can push stddev**2 - epsilon just below zero.
        self.moving_variance.assign(
            ops.relu(moving_stddev * moving_stddev - self.epsilon)
        )

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


def _clone_initializer(initializer):
    # Calling one seeded initializer object twice would give two weights the
    # same values; a fresh object from its config draws its own.
    if isinstance(initializer, keras.initializers.Initializer):
        return type(initializer).from_config(initializer.get_config())
    return initializer


def _value(variable):
    return variable.value


def _move(variable, value, momentum):
    """Moves `variable` toward `value`; returns the new value, in `value`'s dtype."""
    new = ops.cast(variable, value.dtype) * momentum + value * (1.0 - momentum)
    variable.assign(new)
    return new
