"""SAM: sharpness-aware minimization around any Keras optimizer."""

import keras
from keras import ops

from keras_reg import _validation
from keras_reg._api import register
from keras_reg._backends import fast_path
from keras_reg.optimizers import _wrapper, proximal
from keras_reg.optimizers._wrapper import WrappingOptimizer
from keras_reg.optimizers.proximal import Proximal


@register
class SAM(WrappingOptimizer):
    """Sharpness-aware minimization: steps from the worst point in a small ball.

    SAM seeks weights whose whole neighbourhood has a low loss: each update
    climbs to `w + e`, `e = rho * g / ||g||` (`g` the gradient at `w`, the
    norm over all trainable variables), then applies the wrapped optimizer at
    `w` with the gradient at `w + e`. ASAM (`adaptive=True`) scales the ball
    by the weights: `e = rho * T**2 g / ||T g||`, `T = |w| + eta`.

    An update spans two train steps: an ascent step moves to `w + e`, the
    next restores `w` and applies the wrapped optimizer with its own batch's
    gradient. An epoch makes half as many updates as steps; give it an even
    number of steps, or an epoch ending after an ascent step is validated at
    `w + e` (`fit` restores `w` at its end). `iterations` counts train steps,
    the wrapped optimizer's `iterations` its updates; `learning_rate` is the
    wrapped optimizer's. Use `SAM(Proximal(...))` with proximal regularizers;
    docs/sam.md has the details (saving, mixed precision, distribution).

    Args:
        optimizer: A `keras.optimizers.Optimizer` instance or a name such as
            `"sgd"` or `"adam"`, which makes the updates; not a `SAM` or
            `LossScaleOptimizer`, no `gradient_accumulation_steps`.
        rho: Float > 0. The radius of the neighbourhood. Defaults to `0.05`
            (Foret et al.; ASAM uses larger values, such as `0.5`).
        adaptive: Bool. Whether to use ASAM. Defaults to `False`.
        eta: Float >= 0. ASAM's offset in `T`, which keeps zero weights
            perturbable. Defaults to `0.01`, as in Kwon et al.
        name: String. The name of this optimizer. Defaults to `"sam"`.

    Example:

    >>> import keras, numpy as np, keras_reg
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    >>> sam = keras_reg.optimizers.SAM(keras.optimizers.Adam(0.01), rho=0.05)
    >>> model.compile(optimizer=sam, loss="mse")
    >>> x = np.random.default_rng(0).normal(size=(64, 4))
    >>> y = x.sum(axis=1, keepdims=True)
    >>> _ = model.fit(x, y, batch_size=16, epochs=5, verbose=0)  # 4 steps each
    >>> int(sam.iterations.numpy()), int(sam.inner_optimizer.iterations.numpy())
    (20, 10)

    Reference:
        Foret et al., [Sharpness-Aware Minimization for Efficiently Improving
        Generalization](https://arxiv.org/abs/2010.01412), ICLR 2021; Kwon et
        al., [ASAM](https://arxiv.org/abs/2102.11600), ICML 2021.
    """

    def __init__(
        self,
        optimizer: "keras.optimizers.Optimizer | str",
        rho: float = 0.05,
        adaptive: bool = False,
        eta: float = 0.01,
        name: str | None = None,
        **kwargs,
    ):
        super().__init__(optimizer, name, **kwargs)
        self.rho = _validation.check_float("rho", rho, low=0, low_open=True)
        self.adaptive = _validation.check_bool("adaptive", adaptive)
        self.eta = _validation.check_float("eta", eta, low=0)
        self._norm_groups = {}

    def set_norm_groups(self, groups):
        """Gives each group of variables its own perturbation norm.

        For independent models trained as parts of one model (as `keras_reg
        compare` trains its runs): `groups` is a list of lists of variables,
        one per part, each perturbed as if trained alone. Variables in no
        group share one norm. Call it before the first step; it is not part
        of the config.
        """
        # Kept as ids, out of Keras's tracking of the optimizer's variables.
        self._norm_groups = {id(v): i for i, group in enumerate(groups) for v in group}

    def build(self, var_list):
        proximal_optimizer = _wrapper.find_wrapped(self.inner_optimizer, Proximal)
        if proximal_optimizer is None and any(
            proximal._proximal_regularizer(v) is not None for v in var_list
        ):
            raise ValueError(
                "SAM must wrap the Proximal optimizer that applies proximal "
                "regularizers, not the reverse: use `SAM(keras_reg.optimizers."
                f"Proximal(optimizer))`. Received: SAM({self.inner_optimizer!r})"
            )
        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            if tf.distribute.get_strategy().num_replicas_in_sync > 1:
                raise ValueError(
                    "SAM does not support tf.distribute strategies with more "
                    "than one replica. Train on one device, or with "
                    "keras.distribution on JAX."
                )
        super().build(var_list)
        self._anchors = [
            self.add_variable_from_reference(v, name="sam_anchor") for v in var_list
        ]
        self._perturbed = self.add_variable((), dtype="int32", name="sam_perturbed")

    @property
    def iterations(self):  # its own: train steps, twice the updates
        return keras.optimizers.Optimizer.iterations.fget(self)

    def apply(self, grads, trainable_variables=None):
        variables = self._built_variables(trainable_variables)
        grads = list(grads)

        def ascend():
            # The loss scale factor, if any, cancels out of e.
            pairs = [
                (ops.convert_to_tensor(g), v)
                for g, v in zip(grads, variables, strict=True)
                if g is not None and not getattr(v, "overwrite_with_gradient", False)
            ]
            groups = [self._norm_groups.get(id(v), -1) for _, v in pairs]
            for variable, anchor in zip(variables, self._anchors, strict=True):
                self.assign(anchor, variable.value)
            self.assign(self._perturbed, 1)
            fast = fast_path("sam")
            if fast is not None:
                fast.ascend(pairs, groups, self.rho, self.adaptive, self.eta)
                return
            scaled = directions = [g for g, _ in pairs]
            if self.adaptive:  # T g and T^2 g with T = |w| + eta
                scales = [ops.add(ops.abs(v.value), self.eta) for _, v in pairs]
                scaled = [g * t for g, t in zip(scaled, scales, strict=True)]
                directions = [x * t for x, t in zip(scaled, scales, strict=True)]
            squares = {}
            for group, x in zip(groups, scaled, strict=True):
                square = ops.sum(ops.square(ops.cast(x, "float32")))
                squares[group] = squares.get(group, 0.0) + square
            # 1e-12: a zero gradient perturbs nothing.
            factors = {
                group: ops.divide(self.rho, ops.add(ops.sqrt(square), 1e-12))
                for group, square in squares.items()
            }
            for group, (_, variable), e in zip(groups, pairs, directions, strict=True):
                self.assign_add(variable, ops.cast(factors[group], e.dtype) * e)

        def descend():
            for variable, anchor in zip(variables, self._anchors, strict=True):
                self.assign(variable, anchor.value)
            self.inner_optimizer.apply(grads, variables)
            self.assign(self._perturbed, 0)

        perturbed = ops.equal(self._perturbed, 1)
        if keras.backend.backend() == "jax":
            state = list(variables) + self.variables
            values = [v.value for v in state]
            values = _run_if(ops.logical_not(perturbed), ascend, state, values)
            values = _run_if(perturbed, descend, state, values)
            for variable, value in zip(state, values, strict=True):
                variable.assign(value)
        else:
            ops.cond(perturbed, descend, ascend)
        self.iterations.assign_add(1)

    def finalize_variable_values(self, var_list):
        # A fit that ends after an ascent step leaves the weights at w + e.
        if self.built and bool(ops.convert_to_numpy(self._perturbed)):
            variables = self._built_with.variables
            for variable, anchor in zip(variables, self._anchors, strict=True):
                variable.assign(ops.copy(anchor.value))  # JAX: its own buffer
            self._perturbed.assign(0)
        super().finalize_variable_values(var_list)

    def get_config(self) -> dict:
        return super().get_config() | {
            "rho": self.rho,
            "adaptive": self.adaptive,
            "eta": self.eta,
        }


def _run_if(pred, step, state, values):
    """JAX: the `values` of `state` after `step` if `pred`, else `values`.

    A while loop of at most one trip leaves in place what `step` does not
    change; a cond would copy it (the wrapped optimizer's state, each ascent).
    """

    def body(run, values):
        with keras.StatelessScope(list(zip(state, values, strict=True))) as scope:
            step()
        return ops.zeros_like(run), [scope.get_current_value(v) for v in state]

    run = ops.cast(pred, "int32")
    return ops.while_loop(lambda run, _: run > 0, body, (run, values))[1]
