"""Optimizers: `Proximal`, which applies proximal regularizers' steps, and `SAM`."""

from keras_reg.optimizers.proximal import Proximal
from keras_reg.optimizers.sam import SAM

__all__ = [
    "Proximal",
    "SAM",
]
