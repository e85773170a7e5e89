"""Keras callbacks: EarlyStopping that never loses the best model."""

from keras_reg.callbacks.early_stopping import EarlyStopping

__all__ = [
    "EarlyStopping",
]
