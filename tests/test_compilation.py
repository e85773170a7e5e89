"""Every keras_reg layer compiles: XLA on TensorFlow, the default jit on JAX."""

import keras
import numpy as np
import pytest
from layer_zoo import build, fit_briefly, zoo_names

BACKEND = keras.backend.backend()

pytestmark = pytest.mark.skipif(
    BACKEND == "torch",
    reason="torch's jit_compile is torch.compile (dynamo); Keras leaves it off "
    "by default and the issue asks for XLA on TensorFlow and jit on JAX",
)


@pytest.mark.parametrize("name", zoo_names())
def test_layer_trains_under_jit_compile(name):
    model, input_shape = build(name)
    history, x = fit_briefly(model, input_shape, epochs=2, jit_compile=True)
    assert all(np.isfinite(history.history["loss"]))
    assert np.all(np.isfinite(model.predict(x, verbose=0)))
