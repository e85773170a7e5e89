"""Which device the current Keras backend computes on, for the JSON lines."""

import keras


def device_name():
    """ "cpu", or the accelerator's name ("NVIDIA H100 80GB HBM3", ...)."""
    backend = keras.backend.backend()
    if backend == "torch":
        import torch

        device = keras.ops.convert_to_tensor(0.0).device  # Keras's device
        if device.type == "cuda":
            return torch.cuda.get_device_name(device)
    elif backend == "jax":
        import jax

        if jax.default_backend() != "cpu":
            return jax.devices()[0].device_kind
    elif backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        if gpus:
            details = tf.config.experimental.get_device_details(gpus[0])
            return details.get("device_name", "GPU")
    return "cpu"
