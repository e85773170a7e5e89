"""All six techniques on scikit-learn's digits: train, save, reload, compare.

L1, L2 and ElasticNet kernel penalties, Dropout, BatchNormalization and
EarlyStopping in one model, trained on the bundled digits data (no download),
saved to `.keras` and loaded back without `custom_objects`.

Run: python examples/all_six_digits.py
(KERAS_REG_EXAMPLES_QUICK=1 trains two epochs, for tests.)
"""

import os
import tempfile

import keras
import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import keras_reg

QUICK = os.environ.get("KERAS_REG_EXAMPLES_QUICK") == "1"
EPOCHS = 2 if QUICK else 100

keras.utils.set_random_seed(0)
digits = load_digits()
x = (digits.data / 16.0).astype("float32")
x_train, x_test, y_train, y_test = train_test_split(
    x, digits.target, test_size=0.3, random_state=0, stratify=digits.target
)

model = keras.Sequential(
    [
        keras.Input((64,)),
        keras.layers.Dense(256, kernel_regularizer=keras_reg.regularizers.L1(1e-5)),
        keras_reg.layers.BatchNormalization(),
        keras.layers.Activation("relu"),
        keras_reg.layers.Dropout(0.3),
        keras.layers.Dense(128, kernel_regularizer=keras_reg.regularizers.L2(1e-4)),
        keras_reg.layers.BatchNormalization(),
        keras.layers.Activation("relu"),
        keras_reg.layers.Dropout(0.3),
        keras.layers.Dense(
            10,
            activation="softmax",
            kernel_regularizer=keras_reg.regularizers.ElasticNet(l1=1e-5, l2=1e-4),
        ),
    ]
)
model.compile(
    optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"]
)
history = model.fit(
    x_train,
    y_train,
    validation_split=0.2,
    epochs=EPOCHS,
    batch_size=64,
    callbacks=[
        keras_reg.callbacks.EarlyStopping(
            monitor="val_loss", patience=10, restore_best_weights=True
        )
    ],
    verbose=0,
)
_, accuracy = model.evaluate(x_test, y_test, verbose=0)
print(f"trained {len(history.history['loss'])} epochs, test accuracy {accuracy:.3f}")

with tempfile.TemporaryDirectory() as folder:
    path = os.path.join(folder, "digits.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
_, restored_accuracy = restored.evaluate(x_test, y_test, verbose=0)
print(f"reloaded from .keras, test accuracy {restored_accuracy:.3f}")
same = np.array_equal(
    model.predict(x_test, verbose=0), restored.predict(x_test, verbose=0)
)
print(f"identical predictions after reload: {same}")
assert same
