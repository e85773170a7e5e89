import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _fresh_keras_state():
    """Each test starts with a fresh Keras name scope and a fixed seed.

    `free_memory=False` skips a full garbage collection per test (about 0.4 s
    each, which over the suite's three backends costs many minutes).
    """
    keras.backend.clear_session(free_memory=False)
    keras.utils.set_random_seed(1234)
    yield
