"""PyTorch fast path for dropout masks, for CPU tensors.

float32 tensors masked elementwise go to the C extension `_torch_masks` where
it was built; other float CPU tensors get their multiplier from NumPy, on one
thread; float64 and non-CPU tensors take the portable path. docs/internals.md
says why.
"""

import ctypes
import functools
import math
import os

import numpy as np
import torch

from keras_reg.layers import _masks

try:  # after torch, so that the kernels' OpenMP runtime is torch's
    from keras_reg._backends import _torch_masks as native
except ImportError:  # installed where no C compiler was found
    native = None

_FLOATS = (torch.float32, torch.float16, torch.bfloat16)


def _fmix32(h):
    """`fmix32` in place on a NumPy uint32 array (logical shifts, wrapping)."""
    h ^= h >> np.uint32(16)
    h *= np.uint32(_masks.FMIX[0])
    h ^= h >> np.uint32(13)
    h *= np.uint32(_masks.FMIX[1])
    h ^= h >> np.uint32(16)
    return h


def _multiplier(n, threshold, seed, counter, scale):
    """float32 NumPy `(n,)`: `scale` where the mask keeps an element, else 0."""
    bits, per_word, bits_threshold = _masks.draw_layout(threshold)
    salts = np.array(_masks.SALTS, np.uint32)
    k1, k2 = _fmix32(np.array([seed, counter], np.uint32) ^ salts)
    # Little-endian words: the 8- and 16-bit views, and the bytes' bits, list
    # each word's draws lowest bits first, the documented order.
    h = np.arange(1, (n + per_word - 1) // per_word + 1, dtype="<u4")
    h *= np.uint32(_masks.GOLDEN)
    h ^= k1
    _fmix32(h)
    h ^= k2
    _fmix32(h)
    if bits == 1 and bits_threshold == 1:
        keep = np.unpackbits(h.view(np.uint8), bitorder="little")  # kept where set
    elif bits >= 8:
        keep = h.view(f"<u{bits // 8}") >= bits_threshold
    else:
        draws = h[:, None] >> np.arange(0, 32, bits, dtype=np.uint32)
        keep = (draws & np.uint32((1 << bits) - 1)).reshape(-1) >= bits_threshold
    return np.multiply(keep[:n], np.float32(scale), dtype=np.float32)


def _openmp_address(path):
    """Where the library at `path` resolves `omp_get_max_threads`, or None."""
    try:
        function = ctypes.CDLL(path).omp_get_max_threads
    except (OSError, AttributeError):
        return None
    return ctypes.cast(function, ctypes.c_void_p).value


@functools.cache
def shares_torch_openmp():
    """Whether the C kernels run in torch's OpenMP runtime, hence its threads.

    Torch wheels that ship a renamed libgomp, or torch builds on another
    runtime, would leave the kernels a thread pool of their own, competing
    with torch's for the cores: they then run on one thread.
    """
    if native is None or not native.openmp:
        return False
    torch_cpu = os.path.join(os.path.dirname(torch.__file__), "lib", "libtorch_cpu.so")
    ours = _openmp_address(native.__file__)
    return ours is not None and ours == _openmp_address(torch_cpu)


def native_threads():
    """The threads the C kernels run on: torch's where they share its pool."""
    return torch.get_num_threads() if shares_torch_openmp() else 1


def _has_storage(x):
    """False for the tensors `torch.func` transforms (`torch.vmap`,
    `torch.func.grad`) hand over: the C kernels cannot read or write them."""
    try:
        x.data_ptr()
    except RuntimeError:
        return False
    return True


def _native_usable(x, shape):
    """Whether the C kernels serve `x`: contiguous float32, masked
    elementwise, and not traced (`torch.compile`, `torch.jit.trace`)."""
    return (
        native is not None
        and x.dtype == torch.float32
        and tuple(x.shape) == shape
        and x.is_contiguous()
        and not torch.compiler.is_compiling()
        and not torch.jit.is_tracing()
        and _has_storage(x)
    )


def _native_apply(x, words, scale):
    x = x.contiguous()
    out = torch.empty_like(x, memory_format=torch.contiguous_format)
    arrays = (x.data_ptr(), out.data_ptr(), x.numel(), words.data_ptr())
    native.apply_keep_words(*arrays, scale, native_threads())
    return out


def _words_product(tangent, words, scale):
    """`tangent` times the multiplier of packed keep words, differentiably."""
    words = words.numpy().view(np.uint32).astype("<u4", copy=False)
    keep = np.unpackbits(words.view(np.uint8), bitorder="little")[: tangent.numel()]
    multiplier = np.multiply(keep, np.float32(scale), dtype=np.float32)
    return tangent * torch.from_numpy(multiplier).view(tangent.shape)


class _NativeDrop(torch.autograd.Function):
    """`x * multiplier` by the C kernels, the mask kept as packed bits."""

    @staticmethod
    def forward(ctx, x, words, scale):
        ctx.save_for_backward(words)
        ctx.save_for_forward(words)
        ctx.scale = scale
        return _native_apply(x, words, scale)

    @staticmethod
    def backward(ctx, grad):
        (words,) = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph=True: differentiable
            return _words_product(grad, words, ctx.scale), None, None
        return _native_apply(grad, words, ctx.scale), None, None

    @staticmethod
    def jvp(ctx, x_tangent, words_tangent, scale_tangent):
        (words,) = ctx.saved_tensors
        return _words_product(x_tangent, words, ctx.scale)


def drop(x, shape, rate, state):
    """`_masks.drop` for float32, float16 and bfloat16 CPU tensors."""
    if x.dtype not in _FLOATS or x.device.type != "cpu":
        return None
    seed, counter = (value & 0xFFFFFFFF for value in torch.as_tensor(state).tolist())
    threshold, scale = _masks.drop_threshold(rate), _masks.scale(rate, "float32")
    if _native_usable(x, shape):
        bits, _, bits_threshold = _masks.draw_layout(threshold)
        words = torch.empty((x.numel() + 31) // 32, dtype=torch.int32)
        layout = (seed, counter, bits, bits_threshold, native_threads())
        native.keep_words(words.data_ptr(), x.numel(), *layout)
        return _NativeDrop.apply(x, words, scale)
    multiplier = _multiplier(math.prod(shape), threshold, seed, counter, scale)
    # A 16-bit tensor times a 16-bit multiplier rounds as `_masks.drop` does.
    return x * torch.from_numpy(multiplier).to(x.dtype).view(shape)
