"""Save a model that uses keras_reg objects to `.keras` and load it back.

keras_reg registers its classes with Keras (as "keras_reg>Dropout" and so on)
when it is imported, so `keras.saving.load_model` needs no `custom_objects`
and works with `safe_mode=True` (the default).

Run: python examples/save_and_reload.py
(KERAS_REG_EXAMPLES_QUICK=1 trains one epoch, for tests.)
"""

import os
import tempfile

import keras
import numpy as np

import keras_reg  # importing registers the classes

QUICK = os.environ.get("KERAS_REG_EXAMPLES_QUICK") == "1"
EPOCHS = 1 if QUICK else 10

rng = np.random.default_rng(0)
x = rng.normal(size=(256, 8)).astype("float32")
y = (x.sum(axis=1) > 0).astype("int32")

model = keras.Sequential(
    [
        keras.Input((8,)),
        keras.layers.Dense(
            32, kernel_regularizer=keras_reg.regularizers.ElasticNet(1e-5, 1e-4)
        ),
        keras_reg.layers.BatchNormalization(),
        keras.layers.Activation("relu"),
        keras_reg.layers.Dropout(0.2, seed=1),
        keras.layers.Dense(
            2, activation="softmax", kernel_regularizer=keras_reg.regularizers.L2(1e-3)
        ),
    ]
)
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
model.fit(x, y, epochs=EPOCHS, batch_size=32, verbose=0)

with tempfile.TemporaryDirectory() as folder:
    path = os.path.join(folder, "model.keras")
    model.save(path)
    # No custom_objects: the registered names resolve to keras_reg's classes.
    restored = keras.saving.load_model(path)
    # Passing them explicitly, as code written for unregistered classes does,
    # still works and gives the same classes.
    explicit = keras.saving.load_model(
        path,
        custom_objects={
            "Dropout": keras_reg.layers.Dropout,
            "BatchNormalization": keras_reg.layers.BatchNormalization,
        },
    )
    assert [type(layer) for layer in explicit.layers] == [
        type(layer) for layer in restored.layers
    ]

for layer in restored.layers:
    package = type(layer).__module__.split(".")[0]
    print(f"{layer.name:20s} {type(layer).__name__} from {package}")
same = np.array_equal(model.predict(x, verbose=0), restored.predict(x, verbose=0))
print(f"identical predictions after reload: {same}")
assert same
assert isinstance(restored.layers[1], keras_reg.layers.BatchNormalization)
