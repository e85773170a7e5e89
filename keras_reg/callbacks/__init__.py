"""Keras callbacks: EarlyStopping that never loses the best model, metrics, SWA."""

from keras_reg.callbacks.early_stopping import EarlyStopping
from keras_reg.callbacks.regularization_metrics import RegularizationMetrics
from keras_reg.callbacks.stochastic_weight_averaging import (
    StochasticWeightAveraging,
)

__all__ = [
    "EarlyStopping",
    "RegularizationMetrics",
    "StochasticWeightAveraging",
]
