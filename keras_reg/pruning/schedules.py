"""Pruning schedules: the target sparsity and when to recompute masks, per step."""

from keras import ops

from keras_reg import _validation
from keras_reg._api import register

_STEPS = ("begin_step", "end_step", "frequency")


def _sparsity(name, value):
    return _validation.check_float(name, value, low=0, high=1, high_open=True)


@register
class PruningSchedule:
    """Base class of pruning schedules: when to recompute masks, and to what.

    Masks are recomputed at the steps `begin_step + i * frequency` up to
    `end_step` included (forever when it is -1); a step is the optimizer's
    iteration count before the update. Subclasses implement `sparsity(step)`
    (the fraction of weights to zero) and `get_config`, and are registered.

    Args:
        begin_step: Int >= 0, the first step that recomputes the masks.
        end_step: Int >= begin_step, the last one, or -1.
        frequency: Int >= 1, the number of steps between recomputations.

    Example:

    >>> from keras_reg import pruning
    >>> schedule = pruning.ConstantSparsity(0.5, frequency=10)
    >>> [bool(schedule.should_update(step)) for step in (0, 5, 10)]
    [True, False, True]

    Reference:
        tensorflow-model-optimization's `tfmot.sparsity.keras.PruningSchedule`.
    """

    _CONFIG = _STEPS

    def __init__(self, begin_step: int = 0, end_step: int = -1, frequency: int = 100):
        self.begin_step = _validation.check_int("begin_step", begin_step, low=0)
        if not (_validation.is_integral(end_step) and end_step == -1):
            expected = f"-1 or an int >= begin_step ({self.begin_step})"
            end_step = _validation.check_int(
                "end_step", end_step, low=self.begin_step, expected=expected
            )
        self.end_step = end_step
        self.frequency = _validation.check_int("frequency", frequency, low=1)

    def sparsity(self, step):
        """The target sparsity at `step`, a float tensor."""
        raise NotImplementedError

    def should_update(self, step):
        """Whether the masks are recomputed at `step`, a boolean tensor."""
        step = ops.cast(step, "int32")
        # Operators on the backend's tensors: fewer dispatches than ops.*.
        offset = step - self.begin_step
        update = (offset >= 0) & (offset % self.frequency == 0)
        return update if self.end_step == -1 else update & (step <= self.end_step)

    def __call__(self, step):
        """`(should_update(step), sparsity(step))`, as tfmot's schedules."""
        return self.should_update(step), self.sparsity(ops.cast(step, "int32"))

    def get_config(self) -> dict:
        return {name: getattr(self, name) for name in self._CONFIG}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


@register
class ConstantSparsity(PruningSchedule):
    """Prunes to a constant sparsity, every `frequency` steps from `begin_step`.

    The masks zero `target_sparsity` of the weights at once from `begin_step`
    on, like tensorflow-model-optimization's `ConstantSparsity`.

    Args:
        target_sparsity: Float in [0, 1), the fraction of weights to zero.
        begin_step: Int >= 0, the first step that recomputes the masks.
        end_step: Int >= begin_step, the last one, or -1 (never stop).
        frequency: Int >= 1, the number of steps between recomputations.

    Example:

    >>> from keras_reg import pruning
    >>> update, sparsity = pruning.ConstantSparsity(0.8, begin_step=100)(100)
    >>> bool(update), round(float(sparsity), 4)
    (True, 0.8)

    Reference:
        Zhu and Gupta, [To prune, or not to prune](
        https://arxiv.org/abs/1710.01878), 2017.
    """

    _CONFIG = ("target_sparsity", *_STEPS)

    def __init__(
        self,
        target_sparsity: float,
        begin_step: int = 0,
        end_step: int = -1,
        frequency: int = 100,
    ):
        super().__init__(begin_step, end_step, frequency)
        self.target_sparsity = _sparsity("target_sparsity", target_sparsity)

    def sparsity(self, step):
        return ops.convert_to_tensor(self.target_sparsity, "float32")


@register
class PolynomialDecay(PruningSchedule):
    """Raises the sparsity from `initial_sparsity` to `final_sparsity` polynomially.

    Gradual pruning, like tensorflow-model-optimization's `PolynomialDecay`:
    with `p = clip((step - begin_step) / (end_step - begin_step), 0, 1)`, the
    sparsity is `final + (initial - final) * (1 - p) ** power`.

    Args:
        initial_sparsity: Float in [0, 1), the sparsity at `begin_step`.
        final_sparsity: Float in [0, 1), the sparsity from `end_step` on.
        begin_step: Int >= 0, the first step that recomputes the masks.
        end_step: Int > begin_step, the step that reaches `final_sparsity`.
        power: Float > 0, the exponent of the decay; 3 by default.
        frequency: Int >= 1, the number of steps between recomputations.

    Example:

    >>> from keras_reg import pruning
    >>> schedule = pruning.PolynomialDecay(0.0, 0.8, 0, 100)
    >>> [round(float(schedule.sparsity(step)), 4) for step in (0, 50, 100, 200)]
    [0.0, 0.7, 0.8, 0.8]

    Reference:
        Zhu and Gupta, [To prune, or not to prune](
        https://arxiv.org/abs/1710.01878), 2017.
    """

    _CONFIG = ("initial_sparsity", "final_sparsity", "power", *_STEPS)

    def __init__(
        self,
        initial_sparsity: float,
        final_sparsity: float,
        begin_step: int,
        end_step: int,
        power: float = 3,
        frequency: int = 100,
    ):
        super().__init__(begin_step, frequency=frequency)
        expected = f"an int > begin_step ({self.begin_step})"
        self.end_step = _validation.check_int(
            "end_step", end_step, low=self.begin_step + 1, expected=expected
        )
        self.initial_sparsity = _sparsity("initial_sparsity", initial_sparsity)
        self.final_sparsity = _sparsity("final_sparsity", final_sparsity)
        self.power = _validation.check_float("power", power, low=0, low_open=True)

    def sparsity(self, step):
        progress = ops.cast(step - self.begin_step, "float32") / (
            self.end_step - self.begin_step
        )
        remaining = ops.power(1.0 - ops.clip(progress, 0.0, 1.0), self.power)
        scale = self.initial_sparsity - self.final_sparsity
        return self.final_sparsity + scale * remaining
