"""The one place that owns the serialization package name.

Files saved with keras_reg record classes as ``"keras_reg>ClassName"``. That
string is an on-disk contract: a `.keras` file written today must load in every
later version, so the package name is defined here and nowhere else.
"""

import keras

PACKAGE = "keras_reg"


def register(cls):
    """Registers `cls` with Keras as ``keras_reg>ClassName``."""
    return keras.saving.register_keras_serializable(package=PACKAGE)(cls)
