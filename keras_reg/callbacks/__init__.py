"""Keras callbacks: EarlyStopping that never loses the best model."""

from keras_reg.callbacks.early_stopping import EarlyStopping
from keras_reg.callbacks.regularization_metrics import RegularizationMetrics

__all__ = [
    "EarlyStopping",
    "RegularizationMetrics",
]
