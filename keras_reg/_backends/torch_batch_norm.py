"""BatchNormalization's torch fast path, for the last axis or axis 1.

Training runs torch's native batch norm; inference is one fused multiply-add
pass, which measured faster on CPU than the native kernel's. Each returns
None where it does not apply, and the layer then runs the portable path.
"""

import math

import torch


def _view(x, axis):
    """`x` as (values, channels) or (batch, channels, values), or None."""
    rank = x.ndim
    if x.dtype not in (torch.float32, torch.float64) or rank < 2:
        return None
    if axis == rank - 1:
        return x.reshape(-1, x.shape[axis])
    if axis == 1:
        return x.reshape(x.shape[0], x.shape[1], -1)
    return None


def train(x, axis, gamma, beta, epsilon):
    """Returns (outputs, batch mean, biased batch variance), or None."""
    view = _view(x, axis)
    count = math.prod(size for i, size in enumerate(x.shape) if i != axis)
    # Torch refuses training statistics of a single value per channel.
    if view is None or count < 2:
        return None
    channels = x.shape[axis]
    # With momentum 1 the running buffers receive exactly this batch's mean
    # and unbiased variance.
    mean = torch.zeros(channels, dtype=x.dtype, device=x.device)
    variance = torch.zeros(channels, dtype=x.dtype, device=x.device)
    if gamma is None and beta is not None and x.is_cuda:
        # Without a weight but with a bias, torch's CUDA backward failed
        # ("tensor does not have a device") for a (batch, channels, values)
        # view of an input copied from the CPU; a weight of ones is exact.
        gamma = torch.ones(channels, dtype=x.dtype, device=x.device)
    cudnn = torch.backends.cudnn.enabled
    y = torch.batch_norm(view, gamma, beta, mean, variance, True, 1.0, epsilon, cudnn)
    return y.reshape(x.shape), mean, variance * ((count - 1) / count)


def infer(x, axis, mean, variance, gamma, beta, epsilon):
    """Returns the inference outputs, or None."""
    view = _view(x, axis)
    if view is None:
        return None
    scale = torch.rsqrt(variance + epsilon)
    if gamma is not None:
        scale = scale * gamma
    if beta is None:
        offset = -(mean * scale)
    else:
        offset = torch.addcmul(beta, mean, scale, value=-1)
    if view.ndim == 3:
        scale, offset = scale[:, None], offset[:, None]
    return torch.addcmul(offset, view, scale).reshape(x.shape)
