"""The best weights on disk, crash-safe, and the progress to resume from."""

import contextlib
import json
import os
import tempfile
import warnings

import keras
import numpy as np

# Stored in the weights file's root attributes so that a resumed run can tell
# which epoch the file holds, even if it was killed between two writes.
EPOCH_ATTRIBUTE = "keras_reg_best_epoch"


def _fsync_folder(folder):
    # So that a rename survives a power loss. Windows cannot open a folder;
    # the rename is still atomic there.
    with contextlib.suppress(OSError):
        descriptor = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


@contextlib.contextmanager
def _atomic_file(path, suffix):
    """Yields a temporary name beside `path`; moves it over `path` on success.

    On any error, or an interrupt, the temporary file is removed and `path`
    keeps its content.
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(
        dir=folder, prefix="." + os.path.basename(path) + ".", suffix=suffix
    )
    os.close(descriptor)
    try:
        yield temporary
        with open(temporary, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise
    _fsync_folder(folder)


def atomic_save_weights(model, path, epoch):
    """Writes `model.save_weights(path)` atomically, tagged with `epoch`."""
    import h5py

    # save_weights insists on the `.weights.h5` ending, so the temporary file
    # keeps it.
    with _atomic_file(path, ".tmp.weights.h5") as temporary:
        model.save_weights(temporary, overwrite=True)
        with h5py.File(temporary, "a") as handle:
            handle.attrs[EPOCH_ATTRIBUTE] = int(epoch)


def read_saved_epoch(path):
    """Returns the epoch tag of a weights file written here, or None."""
    import h5py

    try:
        with h5py.File(path, "r") as handle:
            value = handle.attrs.get(EPOCH_ATTRIBUTE)
    except OSError:
        return None
    return None if value is None else int(value)


def is_chief(model=None):
    """Whether this process writes files: the strategy's chief, or process 0."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        strategy = getattr(model, "distribute_strategy", None)
        if strategy is None:
            import tensorflow as tf

            strategy = tf.distribute.get_strategy()
        return bool(strategy.extended.should_checkpoint)
    if backend == "jax":
        import jax

        return jax.process_index() == 0
    if backend == "torch":
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return dist.get_rank() == 0
    return True


class BestCheckpoint:
    """Writes the best weights and the progress beside them; reads them back."""

    def __init__(self, path: str):
        self.path = path
        self.state_path = path + ".state.json"

    def save_weights(self, model, epoch: int, fit_model=None) -> None:
        if is_chief(fit_model or model):
            atomic_save_weights(model, self.path, epoch)

    def save_state(self, state: dict, fit_model=None) -> None:
        if is_chief(fit_model):
            with _atomic_file(self.state_path, ".tmp") as temporary:
                with open(temporary, "w", encoding="utf-8") as handle:
                    json.dump(state, handle)

    def resumable_state(self, epoch: int) -> dict | None:
        """The progress saved after epoch `epoch - 1`, if a run can resume from it."""
        try:
            with open(self.state_path, encoding="utf-8") as handle:
                state = json.load(handle)
        except (OSError, ValueError):  # absent or unreadable
            return None
        if not state or state.get("finished") or state.get("epoch") != epoch - 1:
            return None
        if state.get("best") is not None:
            saved_epoch = read_saved_epoch(self.path)
            if saved_epoch != state["best_epoch"]:
                warnings.warn(
                    f"Not resuming from {self.state_path}: {self.path} holds "
                    f"epoch {saved_epoch}, the state expects epoch "
                    f"{state['best_epoch']}.",
                    stacklevel=3,
                )
                return None
        return state

    def has_weights(self, state: dict) -> bool:
        return bool(state.get("has_best_weights")) and os.path.exists(self.path)

    def load_weights(self, model, copy):
        """`copy()` of the file's weights; the model keeps its current values."""
        # `load_weights` also writes the optimizer's variables.
        optimizer = getattr(model, "optimizer", None)
        variables = list(model.weights) + (
            list(optimizer.variables) if optimizer else []
        )
        current = [np.array(keras.ops.convert_to_numpy(v)) for v in variables]
        model.load_weights(self.path)
        weights = copy()
        for variable, value in zip(variables, current, strict=True):
            variable.assign(value)
        return weights
