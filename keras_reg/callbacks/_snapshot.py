"""A preallocated host copy of a model's weights, refreshed in place."""

import keras
import numpy as np


def host_view(variable, *, fast=True):
    """Returns `variable`'s value as a NumPy array, without a copy if it can."""
    backend = keras.backend.backend() if fast else None
    try:
        if backend == "tensorflow":
            return np.asarray(variable.value.read_value())
        if backend == "jax":
            return np.asarray(variable.value)
        if backend == "torch":
            return variable.value.detach().cpu().numpy()
    except (TypeError, ValueError, RuntimeError, AttributeError):
        pass  # bfloat16 and other dtypes NumPy cannot view
    return keras.ops.convert_to_numpy(variable)


# Restoring in slices of at most this many bytes keeps TensorFlow from
# allocating a whole second copy of each variable.
_RESTORE_CHUNK_BYTES = 4 * 1024 * 1024


def restore_into(variable, buffer, *, fast=True):
    """Writes `buffer` into `variable`, in place where the backend allows."""
    backend = keras.backend.backend() if fast else None
    try:
        if backend == "torch":
            import torch

            with torch.no_grad():
                variable.value.copy_(torch.from_numpy(buffer))
            return
        if backend == "tensorflow" and buffer.ndim >= 1 and buffer.nbytes:
            rows = max(1, _RESTORE_CHUNK_BYTES * buffer.shape[0] // buffer.nbytes)
            if rows < buffer.shape[0]:
                for start in range(0, buffer.shape[0], rows):
                    end = start + rows
                    variable.value[start:end].assign(buffer[start:end])
                return
    except (TypeError, ValueError, RuntimeError, AttributeError):
        pass
    variable.assign(buffer)


class WeightSnapshot:
    """One preallocated NumPy buffer per variable, refreshed in place."""

    def __init__(self, variables, *, fast=True):
        self.fast = fast
        self.buffers = [
            np.empty_like(host_view(variable, fast=fast), order="C")
            for variable in variables
        ]
        self._dtypes = [str(variable.dtype) for variable in variables]

    def matches(self, variables):
        """Whether the buffers fit `variables` (same count, shapes, dtypes)."""
        return len(variables) == len(self.buffers) and all(
            tuple(variable.shape) == buffer.shape and str(variable.dtype) == dtype
            for variable, buffer, dtype in zip(
                variables, self.buffers, self._dtypes, strict=True
            )
        )

    def capture(self, variables):
        for variable, buffer in zip(variables, self.buffers, strict=True):
            np.copyto(buffer, host_view(variable, fast=self.fast))

    def restore(self, variables):
        for variable, buffer in zip(variables, self.buffers, strict=True):
            restore_into(variable, buffer, fast=self.fast)


def keras_variables(model):
    """`model.weights` if its `get_weights`/`set_weights` are Keras's, else None."""
    cls = type(model)
    if (
        getattr(cls, "get_weights", None) is not keras.layers.Layer.get_weights
        or getattr(cls, "set_weights", None) is not keras.layers.Layer.set_weights
    ):
        return None
    variables = list(model.weights)
    if not all(isinstance(variable, keras.Variable) for variable in variables):
        return None
    return variables


class ModelWeights:
    """Copies a model's weights out and puts them back, in place where it can.

    A Keras model's weights go into one `WeightSnapshot` whose buffers the next
    `copy` overwrites; any other model gets its `get_weights`/`set_weights`.
    """

    def __init__(self):
        self.snapshot = None

    def copy(self, model):
        variables = keras_variables(model)
        if variables is None:
            return model.get_weights()
        if self.snapshot is None or not self.snapshot.matches(variables):
            self.snapshot = WeightSnapshot(variables)
        self.snapshot.capture(variables)
        return self.snapshot.buffers

    def put_back(self, model, weights):
        if self.snapshot is not None and weights is self.snapshot.buffers:
            variables = keras_variables(model)
            if variables is not None and self.snapshot.matches(variables):
                self.snapshot.restore(variables)
                return
        model.set_weights(weights)
