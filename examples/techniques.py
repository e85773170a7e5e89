"""Each keras_reg technique in a model definition, next to the Keras line it replaces.

Run: python examples/techniques.py
(KERAS_REG_EXAMPLES_QUICK=1 trains one epoch, for tests.)
"""

import os

import keras
import numpy as np

import keras_reg

QUICK = os.environ.get("KERAS_REG_EXAMPLES_QUICK") == "1"
EPOCHS = 1 if QUICK else 20

rng = np.random.default_rng(0)
x = rng.normal(size=(512, 20)).astype("float32")
y = (x[:, 0] + x[:, 1] > 0).astype("int32")

model = keras.Sequential(
    [
        keras.Input((20,)),
        # L1: was keras.regularizers.L1(1e-4)
        keras.layers.Dense(
            64, activation="relu", kernel_regularizer=keras_reg.regularizers.L1(1e-4)
        ),
        # L2: was keras.regularizers.L2(1e-3)
        keras.layers.Dense(
            64, activation="relu", kernel_regularizer=keras_reg.regularizers.L2(1e-3)
        ),
        # ElasticNet (alias L1L2): was keras.regularizers.L1L2(l1=1e-5, l2=1e-4)
        keras.layers.Dense(
            64,
            kernel_regularizer=keras_reg.regularizers.ElasticNet(l1=1e-5, l2=1e-4),
        ),
        # BatchNormalization: was keras.layers.BatchNormalization()
        keras_reg.layers.BatchNormalization(),
        keras.layers.Activation("relu"),
        # Dropout: was keras.layers.Dropout(0.3)
        keras_reg.layers.Dropout(0.3),
        keras.layers.Dense(2, activation="softmax"),
    ]
)
model.compile(
    optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"]
)
# EarlyStopping: was keras.callbacks.EarlyStopping(...)
early_stopping = keras_reg.callbacks.EarlyStopping(
    monitor="val_loss", patience=3, restore_best_weights=True
)
history = model.fit(
    x,
    y,
    validation_split=0.25,
    epochs=EPOCHS,
    batch_size=32,
    callbacks=[early_stopping],
    verbose=0,
)
penalty = float(sum(keras.ops.convert_to_numpy(loss) for loss in model.losses))
print(f"epochs run: {len(history.history['loss'])}")
print(f"validation accuracy: {history.history['val_accuracy'][-1]:.3f}")
print(f"weight penalty in the loss: {penalty:.4f}")
