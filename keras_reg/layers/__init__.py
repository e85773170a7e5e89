"""Keras layers: drop-in Dropout and BatchNormalization, and layers Keras lacks."""

from keras_reg.layers.batch_normalization import (
    BatchNormalization,
    is_batch_normalization,
)
from keras_reg.layers.drop_block import DropBlock2D
from keras_reg.layers.drop_connect import DropConnect
from keras_reg.layers.dropout import Dropout
from keras_reg.layers.spatial_dropout import (
    SpatialDropout1D,
    SpatialDropout2D,
    SpatialDropout3D,
)
from keras_reg.layers.stochastic_depth import StochasticDepth

__all__ = [
    "BatchNormalization",
    "DropBlock2D",
    "DropConnect",
    "Dropout",
    "SpatialDropout1D",
    "SpatialDropout2D",
    "SpatialDropout3D",
    "StochasticDepth",
    "is_batch_normalization",
]
