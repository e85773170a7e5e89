"""keras_reg: regularization for Keras 3.

Drop-in replacements for Keras's L1, L2, L1L2, Dropout, BatchNormalization and
EarlyStopping that save into `.keras` files and load back with
`keras.saving.load_model`, and the regularization techniques Keras lacks.
"""

__version__ = "0.1.0"

from keras_reg import callbacks, layers, optimizers, pruning, regularizers
from keras_reg.callbacks import EarlyStopping
from keras_reg.layers import BatchNormalization, Dropout, is_batch_normalization
from keras_reg.mc_dropout import mc_predict
from keras_reg.regularize import regularize
from keras_reg.regularizers import L1, L1L2, L2, ElasticNet
from keras_reg.sparsity import sparsity_report

__all__ = [
    "BatchNormalization",
    "Dropout",
    "EarlyStopping",
    "ElasticNet",
    "L1",
    "L1L2",
    "L2",
    "__version__",
    "callbacks",
    "is_batch_normalization",
    "layers",
    "mc_predict",
    "optimizers",
    "pruning",
    "regularize",
    "regularizers",
    "sparsity_report",
]
