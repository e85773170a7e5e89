"""A preallocated host copy of a model's weights, refreshed in place.

Keras's EarlyStopping allocates a fresh `model.get_weights()` at every
improvement while the previous one is alive: about twice the weights.
"""

import keras
import numpy as np


def host_view(variable, *, fast=True):
    """Returns `variable`'s value as a NumPy array, without a copy if it can.

    On CPU each backend can expose a variable's memory to NumPy without a
    copy, so refreshing a snapshot moves each byte once. On an accelerator
    these calls copy to the host, which is still one transfer.
    """
    backend = keras.backend.backend() if fast else None
    try:
        if backend == "tensorflow":
            return np.asarray(variable.value.read_value())
        if backend == "jax":
            return np.asarray(variable.value)
        if backend == "torch":
            return variable.value.detach().cpu().numpy()
    except (TypeError, ValueError, RuntimeError, AttributeError):
        # bfloat16 and other dtypes NumPy cannot view take the portable path,
        # which converts.
        pass
    return keras.ops.convert_to_numpy(variable)


# Restoring in slices of at most this many bytes keeps TensorFlow from
# allocating a whole second copy of each variable.
_RESTORE_CHUNK_BYTES = 4 * 1024 * 1024


def restore_into(variable, buffer, *, fast=True):
    """Writes `buffer` into `variable`, in place where the backend allows.

    Each backend can write into the variable's own memory, where `assign`
    first converts the whole buffer into a new tensor: peak memory would then
    grow by the largest variable (TensorFlow keeps that memory).
    """
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
        self.buffers = []
        self._dtypes = []
        for variable in variables:
            view = host_view(variable, fast=fast)
            self.buffers.append(np.empty(view.shape, dtype=view.dtype))
            self._dtypes.append(str(variable.dtype))

    def matches(self, variables):
        """Whether the buffers fit `variables` (same count, shapes, dtypes)."""
        return len(variables) == len(self.buffers) and all(
            tuple(variable.shape) == buffer.shape and str(variable.dtype) == dtype
            for variable, buffer, dtype in zip(
                variables, self.buffers, self._dtypes, strict=True
            )
        )

    def capture(self, variables):
        """Copies the current values of `variables` into the buffers."""
        for variable, buffer in zip(variables, self.buffers, strict=True):
            np.copyto(buffer, host_view(variable, fast=self.fast))

    def restore(self, variables):
        """Assigns the buffers back to `variables`."""
        for variable, buffer in zip(variables, self.buffers, strict=True):
            restore_into(variable, buffer, fast=self.fast)


def keras_variables(model):
    """`model.weights` if `get_weights`/`set_weights` are Keras's own over them.

    Keras's `Layer.get_weights` returns the values of `model.weights` in order,
    and `set_weights` assigns them back, so a snapshot can stand in for both.
    A model without Keras variables, or with its own `get_weights` or
    `set_weights`, gives None: its methods are then called, as Keras does.
    """
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

    A Keras model's weights go into one `WeightSnapshot`, reused from copy to
    copy (the list `copy` returns is its buffers, overwritten by the next
    copy); any other model, with only `get_weights` and `set_weights` or its
    own versions of them, gets those called.
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
