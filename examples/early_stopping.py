"""EarlyStopping in fit: stop when the validation loss stops improving, keep the best.

`restore_best_weights=True` puts back the weights of the best epoch when fit
ends, whether training stopped early or ran out of epochs.

Run: python examples/early_stopping.py
(KERAS_REG_EXAMPLES_QUICK=1 trains at most three epochs, for tests.)
"""

import os

import keras
import numpy as np

import keras_reg

QUICK = os.environ.get("KERAS_REG_EXAMPLES_QUICK") == "1"
EPOCHS = 3 if QUICK else 200

keras.utils.set_random_seed(0)
rng = np.random.default_rng(0)
x = rng.normal(size=(200, 10)).astype("float32")
y = (x @ rng.normal(size=(10, 1)) + rng.normal(size=(200, 1))).astype("float32")

model = keras.Sequential(
    [
        keras.Input((10,)),
        keras.layers.Dense(256, activation="relu"),
        keras.layers.Dense(256, activation="relu"),
        keras.layers.Dense(1),
    ]
)
model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
early_stopping = keras_reg.callbacks.EarlyStopping(
    monitor="val_loss", patience=10, restore_best_weights=True
)
history = model.fit(
    x,
    y,
    validation_split=0.3,
    epochs=EPOCHS,
    batch_size=32,
    callbacks=[early_stopping],
    verbose=0,
)
val_losses = history.history["val_loss"]
best = int(np.argmin(val_losses))
print(f"ran {len(val_losses)} of {EPOCHS} epochs")
print(f"best epoch {early_stopping.best_epoch + 1}, val_loss {early_stopping.best:.4f}")
assert early_stopping.best_epoch == best
restored = model.evaluate(x[140:], y[140:], verbose=0)
print(f"val_loss of the returned model: {restored:.4f} (the best epoch's)")
