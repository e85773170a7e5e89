"""Pruning, an optimizer wrapper that zeroes the smallest kernel weights; strip."""

import re

import keras
from keras import ops

from keras_reg import _validation
from keras_reg._api import register
from keras_reg._backends import fast_path
from keras_reg._rebuild import KERNEL_NAMES
from keras_reg.optimizers import _wrapper
from keras_reg.optimizers._wrapper import WrappingOptimizer, find_wrapped
from keras_reg.optimizers.sam import SAM
from keras_reg.pruning.schedules import PruningSchedule

_MODES = ("layer", "global", "structured")
# Non-negative float32 values sort like their bits read as int32, whose high
# and low 16 bits are two radix digits: the high one is below 2**15.
_DIGIT = 2**16


def _histogram(values, size):
    """How many of the ints `values` (all in [0, size)) equal each of them."""
    # Under XLA, bincount's length must be static; torch's is the fastest.
    if keras.backend.backend() == "torch":
        return ops.bincount(values, minlength=size)
    return ops.segment_sum(ops.ones_like(values), values, num_segments=size)


def _keep_largest(scores, count):
    """Masks dropping the `count` smallest of the 1-D `scores` taken together.

    Exact with ties: the `count`-th smallest value is found digit by digit
    from two histograms of its bits (cheaper than a sort); ties at it drop
    in flat order.
    """
    bits = [ops.view(ops.cast(score, "float32"), "int32") for score in scores]
    high = [b // _DIGIT for b in bits]
    below = ops.cumsum(sum(_histogram(h, _DIGIT // 2) for h in high))
    top = ops.sum(ops.cast(below < count, "int32"))
    rest = count - ops.max(ops.where(below < count, below, 0))
    # Values outside the top bin count in an extra last bin, left out.
    low = [
        ops.where(h == top, b - top * _DIGIT, _DIGIT)
        for b, h in zip(bits, high, strict=True)
    ]
    below = ops.cumsum(sum(_histogram(v, _DIGIT + 1) for v in low))[:_DIGIT]
    threshold = top * _DIGIT + ops.sum(ops.cast(below < rest, "int32"))
    ties = count - sum(ops.sum(ops.cast(b < threshold, "int32")) for b in bits)
    tied = [ops.equal(b, threshold) for b in bits]

    def first_ties():  # only when some ties at the threshold stay: a cumsum
        seen, late = 0, []
        for tie in tied:
            tie = ops.cast(tie, "int32")
            late.append(ops.logical_and(tie > 0, ops.cumsum(tie) + seen > ties))
            seen = seen + ops.sum(tie)
        return late

    stay = sum(ops.sum(ops.cast(tie, "int32")) for tie in tied) > ties
    late = ops.cond(stay, first_ties, lambda: [ops.zeros_like(t) for t in tied])
    return [ops.logical_or(b > threshold, t) for b, t in zip(bits, late, strict=True)]


@register
class Pruning(WrappingOptimizer):
    """Wraps an optimizer and prunes the smallest kernel weights to exactly zero.

    After each update of the wrapped optimizer, inside the compiled train
    step, every selected kernel (variables named `kernel`,
    `depthwise_kernel` or `pointwise_kernel`) is multiplied by its 0/1 mask,
    so pruned weights stay exactly zero. At the steps the `schedule` names,
    the masks are first recomputed from the magnitudes before the update
    (as tensorflow-model-optimization does at a batch's start). The masks are
    optimizer variables, saved in `.keras` files; `strip(model)` returns the
    pruned model as plain Keras. docs/pruning.md tells more.

    Args:
        optimizer: A `keras.optimizers.Optimizer` instance or a name such as
            `"adam"`. Gradient accumulation is not supported.
        schedule: A `keras_reg.pruning.PruningSchedule` (`ConstantSparsity`,
            `PolynomialDecay`).
        mode: `"layer"` (default) drops the smallest `|w|` of each kernel,
            `"global"` the smallest over all selected kernels (one
            threshold), `"structured"` the units of each kernel (last axis:
            Dense units, Conv filters) of smallest L2 norm, with their biases.
        layers: None (every kernel), a regular expression matching whole
            layer names, or a list of layer names; a kernel is selected when
            its layer, or a layer or model around it, matches.
        name: String. The name of this optimizer. Defaults to `"pruning"`.

    Example:

    >>> import keras, numpy as np
    >>> from keras_reg import pruning
    >>> model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)])
    >>> schedule = pruning.ConstantSparsity(0.75, frequency=5)
    >>> model.compile(pruning.Pruning("sgd", schedule), loss="mse")
    >>> x = np.random.default_rng(0).normal(size=(32, 8))
    >>> _ = model.fit(x, x[:, :4], epochs=2, verbose=0)
    >>> int(np.sum(model.layers[0].kernel.numpy() == 0))  # 75% of 32
    24

    Reference:
        Zhu and Gupta, [To prune, or not to prune](
        https://arxiv.org/abs/1710.01878), 2017.
    """

    _NESTED = ("optimizer", "schedule")

    def __init__(
        self,
        optimizer: "keras.optimizers.Optimizer | str",
        schedule: PruningSchedule,
        mode: str = "layer",
        layers: "str | list[str] | None" = None,
        name: str | None = None,
        **kwargs,
    ):
        super().__init__(optimizer, name, **kwargs)
        if not isinstance(schedule, PruningSchedule):
            expected = "a keras_reg.pruning.PruningSchedule"
            raise _validation.invalid_argument("schedule", expected, schedule)
        if mode not in _MODES:
            expected = "one of 'layer', 'global', 'structured'"
            raise _validation.invalid_argument("mode", expected, mode)
        self.schedule, self.mode = schedule, mode
        self.layers = _check_layers(layers)
        self._built_with.pairs, self._masks = (), []

    def _refusal(self, optimizer):
        if find_wrapped(optimizer, Pruning):
            return _wrapper.EXPECTED
        if find_wrapped(optimizer, SAM):
            # Masks would be ranked at SAM's perturbed weights, at its steps.
            return "an optimizer that wraps no SAM (use SAM(Pruning(...)))"
        return None

    def _selects(self, variable):
        names = variable.path.split("/")[:-1]
        if isinstance(self.layers, str):
            return any(re.fullmatch(self.layers, name) for name in names)
        return self.layers is None or any(name in self.layers for name in names)

    def build(self, var_list):
        super().build(var_list)
        kernels = [
            v
            for v in var_list
            if v.name in KERNEL_NAMES and len(v.shape) >= 2 and self._selects(v)
        ]
        named = {name for v in kernels for name in v.path.split("/")}
        if isinstance(self.layers, tuple) and (missing := set(self.layers) - named):
            missing = ", ".join(sorted(missing))
            expected = f"names of layers with a kernel (none found for {missing})"
            raise _validation.invalid_argument("layers", expected, list(self.layers))
        if not kernels:
            expected = "a selection that matches at least one kernel"
            raise _validation.invalid_argument("layers", expected, self.layers)
        structured = self.mode == "structured"
        by_path, pairs, bias_pairs = {v.path: v for v in var_list}, [], []
        for kernel in kernels:
            shape = kernel.shape[-1:] if structured else kernel.shape
            name = f"{kernel.path.replace('/', '_')}_mask"
            mask = self.add_variable(shape, "ones", kernel.dtype, name=name)
            self._masks.append(mask)
            pairs.append((kernel, mask))
            bias = by_path.get(kernel.path.rpartition("/")[0] + "/bias")
            if structured and bias is not None and bias.shape == shape:
                bias_pairs.append((bias, mask))
        # The kernels' pairs first, in the order of `self._masks`.
        self._built_with.pairs = tuple(pairs + bias_pairs)

    def get_mask(self, variable):
        """The 0/1 mask (a tensor of its shape) applied to `variable`, or None."""
        for target, mask in self._built_with.pairs:
            if variable is target:
                return ops.broadcast_to(mask, variable.shape)
        return None

    def _new_masks(self, step):
        sparsity = ops.cast(self.schedule.sparsity(step), "float32")
        scores = []
        for kernel, mask in self._built_with.pairs[: len(self._masks)]:
            pruned = ops.cast(kernel * mask, "float32")
            if self.mode == "structured":
                axes = tuple(range(len(kernel.shape) - 1))
                scores.append(ops.sum(ops.square(pruned), axis=axes))
            else:
                scores.append(ops.reshape(ops.abs(pruned), (-1,)))
        groups = [scores] if self.mode == "global" else [[score] for score in scores]
        kept = []
        for group in groups:
            size = sum(int(score.shape[0]) for score in group)
            kept += _keep_largest(group, ops.cast(ops.round(sparsity * size), "int32"))
        return [
            ops.cast(ops.reshape(keep, mask.shape), mask.dtype)
            for keep, mask in zip(kept, self._masks, strict=True)
        ]

    def apply(self, grads, trainable_variables=None):
        variables = self._built_variables(trainable_variables)
        step = ops.cast(self.iterations, "int32")
        update = self.schedule.should_update(step)

        def assign_masks(masks):
            for variable, mask in zip(self._masks, masks, strict=True):
                self.assign(variable, mask)

        backend = keras.backend.backend()
        if backend == "jax":
            # A stateless step: the masks must leave `cond` as its outputs.
            current = [ops.convert_to_tensor(mask) for mask in self._masks]
            masks = ops.cond(update, lambda: self._new_masks(step), lambda: current)
            assign_masks(masks)
        elif backend == "torch":  # eager: a plain branch
            if update:
                assign_masks(self._new_masks(step))
        else:
            # Assigned inside the branch: no copy at the steps that keep them.
            ops.cond(update, lambda: assign_masks(self._new_masks(step)), lambda: None)
        # The masks come from the weights before this step's update, as
        # tfmot's do (at the start of a batch): compiled, the update and the
        # masking then fuse into one pass over each kernel.
        self.inner_optimizer.apply(grads, variables)
        pairs = self._built_with.pairs
        fast = fast_path("pruning")
        if fast is not None:
            fast.apply_masks(pairs)
            return
        for variable, mask in pairs:
            self.assign(variable, variable * mask)

    def finalize_variable_values(self, var_list):
        # The inner optimizer's EMA (use_ema=True) writes its averages over
        # the weights at the end of fit: the masks hold there too.
        super().finalize_variable_values(var_list)
        if self.built:
            for variable, mask in self._built_with.pairs:
                variable.assign(variable * mask)

    def get_config(self) -> dict:
        layers = self.layers
        return super().get_config() | {
            "schedule": keras.saving.serialize_keras_object(self.schedule),
            "mode": self.mode,
            "layers": list(layers) if isinstance(layers, tuple) else layers,
        }


def _check_layers(layers):
    if layers is None:
        return None
    if isinstance(layers, str):
        try:
            return re.compile(layers).pattern
        except re.error:
            pass
    elif isinstance(layers, list | tuple) and layers:
        if all(isinstance(name, str) for name in layers):
            return tuple(layers)
    expected = "None, a regular expression or a non-empty list of layer names"
    raise _validation.invalid_argument("layers", expected, layers)


def strip(model: keras.Model) -> keras.Model:
    """Returns an uncompiled copy of a pruned model, pruned weights exactly zero.

    The copy holds the weights times the masks of the model's `Pruning`
    optimizer; made of Keras layers, it loads without keras_reg.

    Args:
        model: A model compiled with a built (trained or loaded) `Pruning`.

    Returns:
        A new, uncompiled model of the same class.

    Example:

    >>> import keras, numpy as np
    >>> from keras_reg import pruning
    >>> model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)])
    >>> optimizer = pruning.Pruning("sgd", pruning.ConstantSparsity(0.5))
    >>> model.compile(optimizer, loss="mse")
    >>> _ = model.fit(np.ones((4, 8)), np.ones((4, 4)), verbose=0)
    >>> plain = pruning.strip(model)
    >>> plain.compiled, int(np.sum(plain.layers[0].kernel.numpy() == 0))
    (False, 16)

    Reference:
        tensorflow-model-optimization's `tfmot.sparsity.keras.strip_pruning`.
    """
    pruning = find_wrapped(getattr(model, "optimizer", None), Pruning)
    if pruning is None or not pruning.built or not model.built:
        expected = (
            "a built model compiled with a built keras_reg.pruning.Pruning "
            "optimizer (train it or load it first)"
        )
        raise _validation.invalid_argument("model", expected, model)
    masks = [pruning.get_mask(variable) for variable in model.weights]
    values = [
        ops.convert_to_numpy(variable if mask is None else variable * mask)
        for variable, mask in zip(model.weights, masks, strict=True)
    ]
    # Not `clone_model`, which would compile the copy with a new Pruning.
    copy = type(model).from_config(model.get_config())
    copy.set_weights(values)
    return copy
