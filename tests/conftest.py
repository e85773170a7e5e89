import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _fresh_keras_state():
    """Each test starts with a fresh Keras name scope and a fixed seed."""
    keras.backend.clear_session()
    keras.utils.set_random_seed(1234)
    yield
