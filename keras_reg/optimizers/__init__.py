"""Optimizers: `Proximal`, which applies proximal regularizers' steps."""

from keras_reg.optimizers.proximal import Proximal

__all__ = [
    "Proximal",
]
