"""Backend fast paths, and the one switch that turns them all off.

Every keras_reg object has a portable implementation written on `keras.ops`.
Where a backend has a measured faster route to the same numbers, that route
lives in this package, one module per fast path, named after the backend and
the job (`torch_masks`, `tensorflow_batch_norm`, ...). Library code asks
`fast_path(name)` for a module and falls back to the portable path when it
gets None.

`portable_only()` makes `fast_path` return None everywhere: tests use it to
check that the fast and portable paths give the same numbers, and it is the
only switch they flip.
"""

import contextlib
import functools
import importlib

import keras

_state = {"enabled": True}


def fast_path(job):
    """Returns the fast-path module for `job` on the current backend, or None.

    None when fast paths are switched off or the backend has no module for
    this job. The module is imported on first use, so a backend's libraries
    are only loaded on that backend.
    """
    if not _state["enabled"]:
        return None
    return _module(keras.backend.backend(), job)


@functools.cache
def _module(backend, job):
    name = f"{__name__}.{backend}_{job}"
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as error:
        if error.name != name:
            raise
        return None


@contextlib.contextmanager
def portable_only():
    """Runs the block with every fast path switched off."""
    previous = _state["enabled"]
    _state["enabled"] = False
    try:
        yield
    finally:
        _state["enabled"] = previous
