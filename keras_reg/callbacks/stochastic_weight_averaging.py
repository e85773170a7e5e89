"""Stochastic Weight Averaging: the running mean of the weights along training."""

import math

import keras
import numpy as np

from keras_reg import _validation
from keras_reg._api import register
from keras_reg.callbacks import _early_stopping_args as _args
from keras_reg.callbacks import _messages
from keras_reg.callbacks._snapshot import host_view, restore_into
from keras_reg.layers import is_batch_normalization
from keras_reg.mc_dropout import _walk

_MISSING_DATA = (
    "StochasticWeightAveraging(update_bn=True) needs `data` to recompute the "
    "statistics of the model's BatchNormalization layers ({names}) for the "
    "averaged weights: pass data= (the training inputs) or update_bn=False."
)


@register
class StochasticWeightAveraging(keras.callbacks.Callback):
    """Swaps the average of the weights along training into the model.

    From epoch `start_epoch` (0-based, as Keras's callbacks count), every
    `frequency` epochs, the trainable weights at the epoch's end are added
    to a running average, kept in float64 on the host (saved files gain no
    variable). At the end of `fit` the average replaces the trainable
    weights; other non-trainable state keeps its final value. If no epoch
    was averaged, the model is left as it is. Each `fit` starts anew.

    With `update_bn=True`, each trainable batch normalization layer (Keras's
    or keras_reg's, nested ones included) then gets as moving statistics the
    mean and biased variance of its inputs pooled over one pass of `data`,
    the model called in training mode. Frozen layers keep theirs. A model
    with such layers and no `data` raises ValueError when `fit` starts.

    With EarlyStopping(restore_best_weights=True), the callback listed later
    in `callbacks` acts last and wins (docs/stochastic_weight_averaging.md).

    Args:
        start_epoch: Int >= 0, the first epoch (0-based) averaged.
        frequency: Int >= 1, average every `frequency` epochs from
            `start_epoch`. Defaults to `1`.
        update_bn: Bool, whether to recompute BatchNormalization statistics
            for the averaged weights. Defaults to `True`.
        data: The inputs for that pass (not in `get_config`): an array, a
            tensor, a dict of them or a tuple `(x, y, ...)` of those, batched
            by `batch_size`; or batches (a `tf.data.Dataset`, a
            `keras.utils.PyDataset`, a list, ...) of such. Only `x` is used.
            Defaults to `None`.
        batch_size: Int >= 1, the batch size for array `data`. Defaults to
            `32`, as in `fit`.
        verbose: `0` is silent, `1` (or `True`) says what was swapped in.
            Defaults to `0`.

    Example:

    >>> import keras, numpy as np
    >>> import keras_reg
    >>> x = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
    >>> y = x.sum(axis=1, keepdims=True)
    >>> model = keras.Sequential([keras.Input((4,)),
    ...     keras.layers.BatchNormalization(), keras.layers.Dense(1)])
    >>> model.compile(optimizer="sgd", loss="mse")
    >>> swa = keras_reg.callbacks.StochasticWeightAveraging(2, data=x)
    >>> history = model.fit(x, y, epochs=5, verbose=0, callbacks=[swa])
    >>> swa.n_averaged
    3

    Reference:
        Izmailov et al., [Averaging Weights Leads to Wider Optima and Better
        Generalization](https://arxiv.org/abs/1803.05407), UAI 2018.
    """

    n_averaged = 0  # until `fit` starts, which resets the average

    def __init__(
        self,
        start_epoch: int,
        frequency: int = 1,
        update_bn: bool = True,
        data=None,
        batch_size: int = 32,
        verbose: int | bool = 0,
    ):
        super().__init__()
        self.start_epoch = _validation.check_int("start_epoch", start_epoch, low=0)
        self.frequency = _validation.check_int("frequency", frequency, low=1)
        self.update_bn = _validation.check_bool("update_bn", update_bn)
        usable = (hasattr(data, a) for a in ("shape", "__iter__", "num_batches"))
        if data is not None and (isinstance(data, (str, bytes)) or not any(usable)):
            raise _validation.invalid_argument(
                "data", "None, arrays or an iterable of batches", data
            )
        self.data = data
        self.batch_size = _validation.check_int("batch_size", batch_size, low=1)
        self.verbose = _args.verbose(verbose)

    def get_config(self) -> dict:
        names = "start_epoch frequency update_bn batch_size verbose".split()
        return {name: getattr(self, name) for name in names}

    @classmethod
    def from_config(cls, config: dict) -> "StochasticWeightAveraging":
        return cls(**config)

    def averaged_weights(self) -> list | None:
        """The average of the trainable weights so far, in the order of
        `model.trainable_variables` and their dtypes; None before any."""
        if not self.n_averaged:
            return None
        return [
            (total / self.n_averaged).astype(dtype)
            for total, dtype in zip(self._sums, self._dtypes, strict=True)
        ]

    def on_train_begin(self, logs=None):
        self.n_averaged, self._sums = 0, None
        if self.update_bn:
            self._layers_to_update()

    def on_epoch_end(self, epoch, logs=None):
        if epoch < self.start_epoch or (epoch - self.start_epoch) % self.frequency:
            return
        # Read through `self.model` every time: on JAX that syncs the state.
        variables = list(self.model.trainable_variables)
        if self._sums is None:
            self._variables = variables
            views = [host_view(v) for v in variables]
            self._dtypes = [view.dtype for view in views]
            self._sums = [np.array(view, dtype=np.float64) for view in views]
        else:
            for total, variable in zip(self._sums, variables, strict=True):
                np.add(total, host_view(variable), out=total)
        self.n_averaged += 1

    def on_train_end(self, logs=None):
        if not self.n_averaged:
            self._say(
                f"no epoch reached start_epoch={self.start_epoch} (0-based); "
                "the model is unchanged."
            )
            return
        averages = self.averaged_weights()
        for variable, average in zip(self._variables, averages, strict=True):
            restore_into(variable, average)
        self._say(f"swapped in the average of {self.n_averaged} epochs.")
        layers = self._layers_to_update() if self.update_bn else None
        if not layers:
            return
        examples = _recompute_statistics(self.model, layers, self._batches())
        plural = "s" if len(layers) > 1 else ""
        self._say(
            f"recomputed the statistics of {len(layers)} BatchNormalization "
            f"layer{plural} over {examples} examples."
        )

    def _layers_to_update(self):
        """The trainable batch normalization layers; raises if `data` lacks."""
        layers = [
            layer
            for layer in _walk(self.model, set())
            if is_batch_normalization(layer) and layer.trainable
        ]
        if layers and self.data is None:
            names = ", ".join(layer.name for layer in layers)
            raise ValueError(_MISSING_DATA.format(names=names))
        return layers

    def _say(self, message):
        if self.verbose > 0:
            _messages.print_message(f"StochasticWeightAveraging: {message}")

    def _batches(self):
        """Yields the inputs `x` of each batch of `data`."""
        data = self.data
        if isinstance(data, (tuple, dict)) or hasattr(data, "shape"):
            x = keras.utils.unpack_x_y_sample_weight(data)[0]
            rows = _rows(x)
            for start in range(0, rows, self.batch_size):
                end = start + self.batch_size
                yield keras.tree.map_structure(lambda a, s=start, e=end: a[s:e], x)
            return
        if isinstance(data, keras.utils.PyDataset):
            data = map(data.__getitem__, range(data.num_batches))
        for batch in data:
            x = keras.utils.unpack_x_y_sample_weight(batch)[0]
            yield keras.tree.map_structure(_to_backend, x)


def _rows(x):
    return int(keras.tree.flatten(x)[0].shape[0])


def _to_backend(leaf):
    # tf.data yields TensorFlow tensors; the other backends take NumPy.
    foreign = type(leaf).__module__.startswith("tensorflow")
    return leaf.numpy() if foreign and keras.backend.backend() != "tensorflow" else leaf


def _statistics(layer):
    names = ("moving_mean", "moving_variance", "moving_stddev")
    return [getattr(layer, name) for name in names[: 2 + bool(layer.renorm)]]


def _moments_function(model, layers):
    """Returns `moments(x)`: each layer's (mean, variance) after a training call."""
    if keras.backend.backend() == "jax":  # compiled: eager JAX runs op by op
        import jax

        variables = model.non_trainable_variables
        where = {id(variable): index for index, variable in enumerate(variables)}
        trainable = [v.value for v in model.trainable_variables]
        state = [v.value for v in variables]
        step = jax.jit(
            lambda state, x: model.stateless_call(trainable, state, x, training=True)[1]
        )

        def moments(x):
            nonlocal state
            state = step(state, x)
            return [
                [state[where[id(v)]] for v in _statistics(layer)[:2]]
                for layer in layers
            ]

        return moments

    def moments(x):
        if keras.backend.backend() == "torch":
            import torch

            with torch.no_grad():
                model(x, training=True)
        else:
            model(x, training=True)
        return [_statistics(layer)[:2] for layer in layers]

    return moments


def _recompute_statistics(model, layers, batches):
    """Sets each layer's moving statistics to its inputs' pooled moments."""
    saved = [
        (v, np.array(host_view(v), copy=True)) for v in model.non_trainable_variables
    ]
    momenta = [(layer.momentum, layer.renorm_momentum) for layer in layers]
    count = 0
    means = [np.zeros(layer.moving_mean.shape) for layer in layers]
    squares = [np.zeros(layer.moving_mean.shape) for layer in layers]
    try:
        for layer in layers:
            layer.momentum, layer.renorm_momentum = 0.0, 1.0
            # Finite starting values: momentum 0 multiplies them by zero.
            for variable in _statistics(layer):
                variable.assign(keras.ops.zeros(variable.shape, variable.dtype))
        moments = _moments_function(model, layers)
        # Ghost batch normalization takes whole virtual batches: the rows
        # past a multiple of every virtual_batch_size are left out.
        multiple = math.lcm(
            *(getattr(layer, "virtual_batch_size", None) or 1 for layer in layers)
        )
        for x in batches:
            rows = _rows(x)
            if rows % multiple:
                rows -= rows % multiple
                x = keras.tree.map_structure(lambda a, n=rows: a[:n], x)
            if not rows:
                continue
            total = count + rows
            for index, pair in enumerate(moments(x)):
                mean, variance = (
                    keras.ops.convert_to_numpy(t).astype(np.float64) for t in pair
                )
                # Chan et al.'s parallel update of the mean and squared deviations.
                delta = mean - means[index]
                means[index] += delta * (rows / total)
                squares[index] += variance * rows
                # Ghost batch normalization normalizes each virtual batch by
                # its own moments: the spread between batches is left out.
                if getattr(layers[index], "virtual_batch_size", None) is None:
                    squares[index] += delta**2 * (count * rows / total)
            count = total
    finally:
        for layer, (momentum, renorm_momentum) in zip(layers, momenta, strict=True):
            layer.momentum, layer.renorm_momentum = momentum, renorm_momentum
        for variable, value in saved:
            restore_into(variable, value)
    if not count:
        raise ValueError(
            "StochasticWeightAveraging: `data` gave no example to recompute the "
            "BatchNormalization statistics from (a generator is used up by "
            "the first fit: pass a list, arrays or a dataset)."
        )
    for layer, mean, squared in zip(layers, means, squares, strict=True):
        variance = squared / count
        values = (mean, variance, np.sqrt(variance + layer.epsilon))
        for variable, value in zip(_statistics(layer), values, strict=False):
            variable.assign(
                value.astype(keras.backend.standardize_dtype(variable.dtype))
            )
    return count
