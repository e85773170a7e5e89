"""Dropout masks for PyTorch tensors on a GPU, as one Triton kernel.

The torch-kernel route (`_masks._torch_kept`) hashes a mask with some twenty
in-place kernels, and read the seed state on the host, which waits for the
GPU. This kernel draws the same bits (the algorithm in `_masks`' docstring)
and, given `x`, applies them in the same pass: `x * multiplier`, where the
multiplier is `1 / (1 - rate)` or 0 per element; the gradient is the same
kernel applied to the upstream gradient. Without `x` it writes the multiplier
itself, for a mask shape that broadcasts against `x` (spatial dropout, a
`noise_shape`), which torch then multiplies.

The keys come either from a seed generator's state tensor, read on the
device, or from two host integers passed as kernel arguments (Monte Carlo
passes): neither waits for the GPU. Imported only where a CUDA tensor is
dropped and Triton is installed (it comes with PyTorch's CUDA builds);
`TRITON_INTERPRET=1` runs the kernel on the CPU, which is how the tests run it
on machines without a GPU.
"""

import torch
import triton
import triton.language as tl

_BLOCK = 1024


@triton.jit
def _fmix32(h):
    h ^= h >> 16
    h *= tl.full((), 0x85EBCA6B, tl.uint32)
    h ^= h >> 13
    h *= tl.full((), 0xC2B2AE35, tl.uint32)
    h ^= h >> 16
    return h


# An int argument equal to 1 would otherwise be compiled in as a constant.
@triton.jit(do_not_specialize=["k1", "k2"])
def _kernel(
    x_ptr,
    out_ptr,
    state_ptr,
    k1,
    k2,
    n,
    bits_threshold,
    scale,
    BITS: tl.constexpr,
    PER_WORD_LOG2: tl.constexpr,
    FROM_STATE: tl.constexpr,
    HAS_X: tl.constexpr,
    BLOCK: tl.constexpr,
):
    offsets = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    valid = offsets < n
    if FROM_STATE:  # a seed generator's (seed, counter), on the device
        seed = tl.load(state_ptr).to(tl.uint32, bitcast=True)
        counter = tl.load(state_ptr + 1).to(tl.uint32, bitcast=True)
        k1 = _fmix32(seed ^ tl.full((), 0x5BD1E995, tl.uint32))
        k2 = _fmix32(counter ^ tl.full((), 0x27D4EB2F, tl.uint32))
    else:  # the keys themselves, as signed 32-bit integers
        k1 = k1.to(tl.uint32, bitcast=True)
        k2 = k2.to(tl.uint32, bitcast=True)
    # Element e is draw e % (32 / BITS) of word e / (32 / BITS), words
    # counted from 1 in the hash; 32-bit arithmetic that wraps, as elsewhere.
    word = (offsets >> PER_WORD_LOG2).to(tl.uint32) + 1
    part = (offsets & ((1 << PER_WORD_LOG2) - 1)).to(tl.uint32)
    h = word * tl.full((), 0x9E3779B9, tl.uint32)
    h = _fmix32(_fmix32(h ^ k1) ^ k2)
    draw = (h >> (part * BITS)) & ((1 << BITS) - 1)
    multiplier = tl.where(draw.to(tl.int32) >= bits_threshold, scale, 0.0)
    if HAS_X:
        x = tl.load(x_ptr + offsets, mask=valid)
        # A product rather than a select: a dropped NaN or infinity gives
        # NaN, as on every other path. A 16-bit input times its 16-bit scale
        # is exact in float32, so one rounding gives torch's product.
        # (Compiled, the conversion rounds to nearest even, as torch does;
        # Triton's interpreter truncates to bfloat16.)
        y = x.to(tl.float32) * multiplier
        tl.store(out_ptr + offsets, y.to(out_ptr.dtype.element_ty), mask=valid)
    else:
        tl.store(out_ptr + offsets, multiplier.to(out_ptr.dtype.element_ty), mask=valid)


def launch(x, out, state, host_keys, bits, bits_threshold, scale):
    """Fills `out` (contiguous): `x * multiplier`, or the multiplier if `x` is None.

    The keys come from `state`, a seed generator's contiguous two-element int32
    state on `out`'s device, or, where `state` is None, are `host_keys`, two
    Python ints in the signed 32-bit range. `scale` is `1 / (1 - rate)` already
    rounded to `out`'s dtype.
    """
    n = out.numel()
    if n == 0:
        return out
    k1, k2 = (0, 0) if state is not None else host_keys

    def run():
        _kernel[(triton.cdiv(n, _BLOCK),)](
            out if x is None else x,
            out,
            out if state is None else state,
            k1,
            k2,
            n,
            bits_threshold,
            scale,
            BITS=bits,
            PER_WORD_LOG2=(32 // bits).bit_length() - 1,
            FROM_STATE=state is not None,
            HAS_X=x is not None,
            BLOCK=_BLOCK,
        )

    # Triton launches on the current device's stream, not on the tensors'.
    if out.is_cuda and out.device.index != torch.cuda.current_device():
        with torch.cuda.device(out.device):
            run()
    else:
        run()
    return out
