"""What a technique does to one seed's model and optimizer.

`add_technique` adds its layers and penalties with `keras_reg.regularize`;
`make_optimizer` wraps the run's optimizer as it needs (Proximal, SAM with one
norm group per tower, Pruning with `pruning_schedule`).
"""

import keras

import keras_reg
from keras_reg import _rebuild

LEARNING_RATE = 1e-3


# Pruning reaches its target at this fraction of the training steps.
PRUNING_END = 2 / 3


def pruning_schedule(target, epochs, steps):
    """From 0 to `target` over the first `PRUNING_END` of the steps, masks
    recomputed once an epoch; the last recomputation reaches `target`."""
    if epochs == 1:
        return keras_reg.pruning.ConstantSparsity(target, frequency=steps)
    # A multiple of the frequency, before the last step.
    end = steps * min(max(1, round(PRUNING_END * epochs)), epochs - 1)
    return keras_reg.pruning.PolynomialDecay(0.0, target, 0, end, frequency=steps)


def make_optimizer(base, technique, value=None, towers=(), schedule=None):
    """A fresh optimizer from `base`'s config, wrapped as `technique` needs:
    Proximal, then SAM (one norm group per tower) or Pruning."""
    if isinstance(base, keras.optimizers.LossScaleOptimizer):
        # Under mixed_float16, compile wraps the technique's optimizer again,
        # outside: a loss scale inside Proximal or SAM would be refused.
        base = base.inner_optimizer
    if base is None:
        optimizer = keras.optimizers.Adam(learning_rate=LEARNING_RATE)
    else:
        optimizer = keras.optimizers.deserialize(keras.optimizers.serialize(base))
    if technique.proximal:
        optimizer = keras_reg.optimizers.Proximal(optimizer)
    if technique.optimizer == "SAM":
        optimizer = keras_reg.optimizers.SAM(optimizer, rho=value)
        # Before the first step: one gradient norm per tower, so towers stay
        # apart.
        optimizer.set_norm_groups([tower.trainable_variables for tower in towers])
    elif technique.optimizer == "Pruning":
        optimizer = keras_reg.pruning.Pruning(optimizer, schedule, mode="layer")
    return optimizer


def _kernel_rank(layer):
    kernel = getattr(layer, "kernel", None)
    return None if kernel is None else len(kernel.shape)


def add_technique(base, technique, value, seed):
    """`base` with `technique` at strength `value` added by
    `keras_reg.regularize`; its inserted dropout layers count from `seed`."""
    kwargs = technique.regularize_kwargs(value)
    regularizer = kwargs.get("kernel_regularizer")
    if not isinstance(regularizer, keras_reg.regularizers.GroupLasso):
        return keras_reg.regularize(base, seed=seed, **kwargs)
    # One group per unit (filter): the norm over all axes but the last, so
    # one regularize call per kernel rank. The output layer keeps its units
    # (a zero group there would silence a class).
    model = base
    final = _rebuild.final_layer_ids(base)
    ranks = sorted(
        {
            rank
            for layer in _rebuild.walk(base)
            if id(layer) not in final and (rank := _kernel_rank(layer)) is not None
        }
    )
    for rank in ranks:
        grouped = keras_reg.regularizers.GroupLasso(
            regularizer.factor, axis=tuple(range(rank - 1)), proximal=True
        )
        final = _rebuild.final_layer_ids(model)
        model = keras_reg.regularize(
            model,
            kernel_regularizer=grouped,
            layers=lambda layer, rank=rank, final=final: (
                id(layer) not in final and _kernel_rank(layer) == rank
            ),
        )
    return model
