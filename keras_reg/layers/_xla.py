"""When keras_reg's TensorFlow fast paths may call XLA-compiled functions.

XLA compiles once per concrete shape (35-60 ms on a 2-core CPU). A dimension
unknown while tracing, other than the batch, can take a new size every call
(variable-length sequences), and each would pay that compile: such calls run
graph kernels instead. A varying batch size is allowed: a training or
prediction loop sees one or two batch sizes.
"""

import functools
import platform

from keras import ops


@functools.cache
def tf_xla_available():
    """False where TensorFlow cannot XLA-compile: Apple-silicon GPUs.

    Keras turns `jit_compile` off there for the same reason (tensorflow-metal
    has no XLA).
    """
    if platform.system() == "Darwin" and "arm" in platform.processor().lower():
        import tensorflow as tf

        return not tf.config.list_physical_devices("GPU")
    return True


def tf_xla_usable(dims):
    """Whether a fast path may call an XLA-compiled function for this shape.

    True where TensorFlow has XLA and every dimension after the first is
    static. `dims` is a `TensorShape` (None where unknown) or a list of ints
    and, for dimensions unknown while tracing, scalar tensors.
    """
    static = all(dim is not None and not ops.is_tensor(dim) for dim in list(dims)[1:])
    return static and tf_xla_available()
