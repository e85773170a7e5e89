"""Backend fast paths, and the one switch that turns them all off.

A fast path is a backend's measured faster route to the numbers of the
portable `keras.ops` code, in one module per job named `<backend>_<job>`
(`torch_masks`, ...). `portable_only()` switches them all off: tests use it
to compare the two paths (docs/internals.md).
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
