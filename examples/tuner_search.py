"""A KerasTuner search over the L2 strength and the Dropout rate.

keras_reg objects take plain Python floats, so a tuner's sampled values go
straight into them. The tuner's files live in a temporary folder.

Run: python examples/tuner_search.py   (needs `pip install keras-tuner`)
(KERAS_REG_EXAMPLES_QUICK=1 tries two settings for one epoch, for tests.)
"""

import os
import tempfile

import keras
import keras_tuner
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import keras_reg

QUICK = os.environ.get("KERAS_REG_EXAMPLES_QUICK") == "1"
TRIALS = 2 if QUICK else 10
EPOCHS = 1 if QUICK else 30

digits = load_digits()
x = (digits.data / 16.0).astype("float32")
x_train, x_val, y_train, y_val = train_test_split(
    x, digits.target, train_size=300, random_state=0, stratify=digits.target
)


def build_model(hp):
    l2 = hp.Float("l2", min_value=1e-5, max_value=1e-1, sampling="log")
    rate = hp.Float("dropout_rate", min_value=0.0, max_value=0.6, step=0.1)
    model = keras.Sequential(
        [
            keras.Input((64,)),
            keras.layers.Dense(
                256,
                activation="relu",
                kernel_regularizer=keras_reg.regularizers.L2(l2),
            ),
            keras_reg.layers.Dropout(rate),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(
        optimizer="adam",
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


with tempfile.TemporaryDirectory() as folder:
    tuner = keras_tuner.RandomSearch(
        build_model,
        objective="val_accuracy",
        max_trials=TRIALS,
        seed=0,
        directory=folder,
        project_name="l2_search",
        overwrite=True,
    )
    tuner.search(
        x_train,
        y_train,
        validation_data=(x_val, y_val),
        epochs=EPOCHS,
        callbacks=[keras_reg.callbacks.EarlyStopping(patience=5)],
        verbose=0,
    )
    best = tuner.get_best_hyperparameters(1)[0]
    print(f"best l2: {best.get('l2'):.2e}, dropout rate: {best.get('dropout_rate')}")
    print(f"its validation accuracy: {tuner.oracle.get_best_trials(1)[0].score:.3f}")

# Retrain the winning setting from scratch; it saves and loads like any model.
model = build_model(best)
model.fit(x_train, y_train, epochs=EPOCHS, verbose=0)
print(
    f"retrained, validation accuracy {model.evaluate(x_val, y_val, verbose=0)[1]:.3f}"
)
