"""Dropout masks for PyTorch tensors on a GPU, as one Triton kernel.

The torch-kernel route (`_masks._torch_kept`) hashes a mask with some twenty
in-place kernels. On a GPU each launch costs microseconds of host time while
the kernel itself takes about as long, so a 64x32x32x64 dropout step there
took 2.9 times Keras's single fused `torch.nn.functional.dropout` kernel
(measured on an H100, see benchmarks/README.md). This kernel draws the same
bits (the algorithm in `_masks`' docstring) and applies them in one pass:

- `drop` multiplies `x` by the mask's `scale`-or-0 multiplier, element for
  element; its gradient is the same kernel applied to the upstream gradient.
- `multiplier` writes the multiplier of a mask shape that broadcasts against
  `x` (spatial dropout, a `noise_shape`), which torch then multiplies.

The keys are read on the device, from the seed generator's state tensor (or a
two-element tensor of keys), so that drawing a mask never waits for the GPU.
Imported only where a CUDA tensor is dropped and Triton is installed (it
comes with PyTorch's CUDA builds); `TRITON_INTERPRET=1` runs the kernel on
the CPU, which is how the tests run it on machines without a GPU.
"""

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


@triton.jit
def _kernel(
    x_ptr,
    out_ptr,
    keys_ptr,
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
    k1 = tl.load(keys_ptr).to(tl.uint32, bitcast=True)
    k2 = tl.load(keys_ptr + 1).to(tl.uint32, bitcast=True)
    if FROM_STATE:  # a seed generator's (seed, counter)
        k1 = _fmix32(k1 ^ tl.full((), 0x5BD1E995, tl.uint32))
        k2 = _fmix32(k2 ^ tl.full((), 0x27D4EB2F, tl.uint32))
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


def launch(x, out, keys, from_state, bits, bits_threshold, scale):
    """Fills `out` (contiguous): `x * multiplier`, or the multiplier if `x` is None.

    `keys` is a contiguous two-element int32 tensor on `out`'s device: a seed
    generator's state if `from_state`, else the keys `(k1, k2)`. `scale` is
    `1 / (1 - rate)` already rounded to `out`'s dtype.
    """
    n = out.numel()
    if n == 0:
        return out
    _kernel[(triton.cdiv(n, _BLOCK),)](
        out if x is None else x,
        out,
        keys,
        n,
        bits_threshold,
        scale,
        BITS=bits,
        PER_WORD_LOG2=(32 // bits).bit_length() - 1,
        FROM_STATE=from_state,
        HAS_X=x is not None,
        BLOCK=_BLOCK,
    )
    return out
