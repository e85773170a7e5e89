"""Keras layers: drop-in Dropout and BatchNormalization, and layers Keras lacks."""

from keras_reg.layers.batch_normalization import BatchNormalization
from keras_reg.layers.dropout import Dropout

__all__ = [
    "BatchNormalization",
    "Dropout",
]
