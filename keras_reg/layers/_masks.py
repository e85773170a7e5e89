"""Random keep-masks for the dropout family, and the state they share.

Masks are drawn with a counter-based hash instead of a float per element.
Each element gets a `b`-bit draw, compared with an integer threshold. The
threshold is `t = round(rate * 2**16)`, so the effective rate is within
`2**-17` of the requested one, and `b` is the fewest bits that represent it
exactly: the smallest of 1, 2, 4, 8 and 16 for which `t` is a multiple of
`2**(16 - b)` (1 bit at rate 0.5, 2 at 0.25 and 0.75, 16 for most rates).
Element `j` is dropped when its draw is below `t / 2**(16 - b)`.

For a mask of `n` elements, `ceil(n * b / 32)` 32-bit words are hashed, and
word `i` gives `32 / b` draws, lowest bits first: draw `m` of word `i` (both
counted from 0) is bits `b * m` to `b * m + b - 1`, and belongs to element
`i * 32 / b + m`. Word `i` (counting from 1 in the hash) is

    fmix32(fmix32((i * 0x9E3779B9) ^ k1) ^ k2)

where `fmix32` is the MurmurHash3 finalizer and `(k1, k2)` is derived from a
`keras.random.SeedGenerator` state `(seed, counter)` as
`(fmix32(seed ^ 0x5BD1E995), fmix32(counter ^ 0x27D4EB2F))`. All arithmetic is
32-bit and wraps, so the same state gives bit-identical masks on every backend.

The portable path is written on `keras.ops`. Each backend also gets a fast
path computing the same bits: XLA-compiled on TensorFlow and JAX (reading
16- and 8-bit draws through a bitcast), in-place integer kernels on PyTorch,
NumPy for small PyTorch CPU masks. Where the optional C extension
`_mask_kernels` was built, PyTorch CPU float32 tensors masked elementwise
(Dropout without a noise shape, DropConnect) use it instead: one native pass
draws the mask as packed bits, one multiplies (`_native_drop`), each on
torch's intra-op threads where the extension was built with OpenMP and shares
torch's OpenMP runtime. PyTorch float tensors on a GPU use one Triton kernel,
where Triton is installed, which reads the seed state on the device
(`_triton_drop`, `_mask_triton`).
`tests/test_dropout.py` checks that both paths agree with an independent NumPy
implementation.
"""

import functools
import os
import sys
import threading

import keras
import numpy as np
from keras import ops

from keras_reg import _validation
from keras_reg.layers import _xla


def _load_mask_kernels():
    """The optional C extension, on the PyTorch backend where it was built.

    It serves PyTorch tensors only, so other backends never load it. Built
    with OpenMP (Linux, GCC), it needs `libgomp.so.1`. Torch is imported
    first, so where torch's wheel ships a `libgomp.so.1` the loader reuses
    that copy, and no other copy is loaded ahead of torch's.
    """
    if keras.backend.backend() != "torch":
        return None
    import torch  # noqa: F401

    try:
        from keras_reg.layers import _mask_kernels
    except ImportError:  # installed where no C compiler was found
        return None
    return _mask_kernels


def _openmp_address(path):
    """Where the library at `path` resolves `omp_get_max_threads`, or None."""
    import ctypes

    try:
        function = ctypes.CDLL(path).omp_get_max_threads
    except (OSError, AttributeError):
        return None
    return ctypes.cast(function, ctypes.c_void_p).value


def _shares_torch_openmp(kernels):
    """Whether `kernels` run in torch's OpenMP runtime, hence its thread pool.

    Torch wheels that ship a renamed libgomp, or torch builds on another
    OpenMP runtime, leave the kernels with a runtime of their own: two thread
    pools would compete for the cores (measured slower than one thread), so
    the kernels then run single-threaded.
    """
    if kernels is None or not kernels.openmp:
        return False
    import torch

    ours = _openmp_address(kernels.__file__)
    return ours is not None and ours == _openmp_address(torch._C.__file__)


_mask_kernels = _load_mask_kernels()
_kernels_share_torch_threads = _shares_torch_openmp(_mask_kernels)


def _native_threads():
    """The thread count the C kernels run on: torch's, where they share its pool."""
    if not _kernels_share_torch_threads:
        return 1
    import torch

    return torch.get_num_threads()


RANDOM_BITS = 16
# The fast paths read each hash word's 16- or 8-bit parts in memory order.
_LITTLE_ENDIAN = sys.byteorder == "little"
_SCALE = 1 << RANDOM_BITS


def _signed(value):
    """Returns the int32 whose bits are the 32-bit unsigned `value`."""
    return int(np.uint32(value).view(np.int32))


_GOLDEN = _signed(0x9E3779B9)
_FMIX_1 = _signed(0x85EBCA6B)
_FMIX_2 = _signed(0xC2B2AE35)
_SEED_SALT = _signed(0x5BD1E995)
_COUNTER_SALT = _signed(0x27D4EB2F)


def drop_threshold(rate):
    """Returns the integer threshold: a 16-bit draw below it is dropped."""
    return int(round(rate * _SCALE))


def draw_layout(threshold):
    """Returns `(bits, per_word, bits_threshold)` for a 16-bit `threshold`.

    `bits` is the fewest of 1, 2, 4, 8, 16 that represent `threshold / 2**16`
    exactly, `per_word` the draws per 32-bit hash word, and `bits_threshold`
    the threshold in `bits`-bit draws: a draw below it is dropped.
    """
    bits = 1
    while bits < RANDOM_BITS and threshold % (1 << (RANDOM_BITS - bits)):
        bits *= 2
    return bits, 32 // bits, threshold >> (RANDOM_BITS - bits)


def _word_count(n, per_word):
    return (n + per_word - 1) // per_word


def _shift_right(x, bits):
    # keras.ops.right_shift is arithmetic on int32: masking the sign-extended
    # bits makes it the logical shift that fmix32 is defined with.
    return ops.bitwise_and(ops.right_shift(x, bits), (1 << (32 - bits)) - 1)


def _fmix32(h):
    h = ops.bitwise_xor(h, _shift_right(h, 16))
    h = ops.multiply(h, _FMIX_1)
    h = ops.bitwise_xor(h, _shift_right(h, 13))
    h = ops.multiply(h, _FMIX_2)
    return ops.bitwise_xor(h, _shift_right(h, 16))


def keys_from_state(state):
    """Returns the int32 keys `(k1, k2)` for a seed-generator state."""
    state = ops.cast(state, "int32")
    k1 = _fmix32(ops.bitwise_xor(state[0], _SEED_SALT))
    k2 = _fmix32(ops.bitwise_xor(state[1], _COUNTER_SALT))
    return k1, k2


def _element_count(shape):
    """The product of `shape`'s entries: ints, or scalar tensors in a graph."""
    n = 1
    for dim in shape:
        n = n * dim
    return n


def _hashed_words(shape, per_word, k1, k2, first_round=None):
    """Returns `(n, h)`: the mask's element count and its int32 hash words.

    `per_word` is the number of draws each word gives (`draw_layout`).

    `first_round` is an optional `(words, cached_k1)` pair of tensors from a
    `FirstRoundCache`: the first round's words for `cached_k1`, used when `k1`
    equals it (checked where the mask is drawn).
    """
    n = _element_count(shape)
    words = _word_count(n, per_word)

    def first():
        h = ops.multiply(ops.arange(1, words + 1, dtype="int32"), _GOLDEN)
        return _fmix32(ops.bitwise_xor(h, k1))

    if first_round is None:
        h = first()
    else:
        cached, cached_k1 = first_round
        h = ops.cond(ops.equal(k1, cached_k1), lambda: cached, first)
    return n, _fmix32(ops.bitwise_xor(h, k2))


def _field_draws(h, bits):
    """The `bits`-bit draws of the words `h`, lowest bits first, flattened."""
    shifts = np.arange(0, 32, bits, dtype="int32")
    # The arithmetic shift's sign-extended bits are masked off with the rest.
    fields = ops.right_shift(ops.expand_dims(h, -1), shifts)
    return ops.reshape(ops.bitwise_and(fields, (1 << bits) - 1), (-1,))


def _portable_keep(shape, threshold, k1, k2):
    bits, per_word, bits_threshold = draw_layout(threshold)
    n, h = _hashed_words(shape, per_word, k1, k2)
    draws = _field_draws(h, bits)[:n]
    return ops.reshape(ops.greater_equal(draws, bits_threshold), shape)


def _bitcast_keep(bitcast, shape, threshold, k1, k2, first_round=None):
    # 16- and 8-bit draws are read through a bitcast, which lists each word's
    # parts in memory order: on a little-endian machine, lowest bits first,
    # the portable order. It replaced an interleaving stack of the 16-bit
    # halves, which XLA compiled to scalar index arithmetic once it fused the
    # mask into the multiplication that consumes it (5x slower on a 1024x1024
    # DropConnect kernel). Narrower draws take one broadcast shift, which
    # measured as fast: 0.23-0.25 ms per 1024x1024 mask on JAX for 1-, 2-, 4-,
    # 8- and 16-bit draws alike.
    # The draws are widened to int32 before the comparison: against a
    # uint16 draw, JAX would narrow the threshold 2**16 to 0 (XLA fuses the
    # cast into the comparison).
    bits, per_word, bits_threshold = draw_layout(threshold)
    n, h = _hashed_words(shape, per_word, k1, k2, first_round)
    if bits >= 8:
        draws = ops.reshape(bitcast(h, f"uint{bits}"), (-1,))
    else:
        draws = _field_draws(h, bits)
    draws = ops.cast(draws[:n], "int32")
    return ops.reshape(ops.greater_equal(draws, bits_threshold), shape)


_TORCH_COLUMNS = 1024


_torch_buffers = threading.local()
# The largest workspace kept between calls, in int32 words per buffer: two
# buffers of 32 MiB, enough for masks of up to 2**24 elements with 16-bit
# draws (a 4096x4096 kernel), 2**28 with 1-bit draws. Larger masks get fresh
# buffers, so that one huge mask does not pin hundreds of megabytes for the
# rest of the process.
_TORCH_WORKSPACE_MAX_WORDS = 1 << 23


def _torch_workspace(size, device):
    """Returns two int32 buffers of `size` elements, reused between calls.

    PyTorch's CPU allocator returns large blocks to the operating system, so
    a fresh multi-megabyte buffer page-faults on first touch: for a 1024x1024
    mask that doubled the time of the whole hash. The CPU buffers are kept
    per thread and grow to the largest mask drawn, up to
    `_TORCH_WORKSPACE_MAX_WORDS`; other devices have caching allocators and
    get fresh buffers.
    """
    import torch

    # A buffer created inside torch.inference_mode() could never again be
    # written outside it; a normal one can be written inside it.
    with torch.inference_mode(False):
        if device is not None and torch.device(device).type != "cpu":
            empty = torch.empty(2, size, dtype=torch.int32, device=device)
            return empty[0], empty[1]
        if size > _TORCH_WORKSPACE_MAX_WORDS:
            empty = torch.empty(2, size, dtype=torch.int32)
            return empty[0], empty[1]
        buffer = getattr(_torch_buffers, "buffer", None)
        if buffer is None or buffer.shape[1] < size:
            buffer = torch.empty(2, size, dtype=torch.int32)
            _torch_buffers.buffer = buffer
    return buffer[0, :size], buffer[1, :size]


class FirstRoundCache:
    """Keeps the first hash round of a layer's mask between calls.

    The first round, `fmix32((i * golden) ^ k1)`, depends only on the mask
    size and on `k1`, which comes from the seed alone: a seed generator's
    counter, which changes every call, only enters `k2`. A layer whose mask
    shape is fixed (DropConnect's kernel mask) therefore hashes one round per
    call instead of two. The cache holds one int32 word per `32 / bits`
    mask elements per entry (`draw_layout`). It keeps the two most recent
    entries: inside `mc_predict` a layer called twice per pass alternates
    between two seeds.

    PyTorch looks entries up on every call that hashes with torch kernels
    (masks of more than `_NUMPY_MAX_ELEMENTS` elements, or not on the CPU).
    TensorFlow looks one up when the graph is traced and its compiled
    function checks the seed at run time (`_tf_first_round`). JAX hashes both
    rounds in one compiled pass.
    """

    __slots__ = ("entries",)

    def __init__(self):
        self.entries = ()  # ((k1, words, device), first-round words), newest first

    def find(self, key):
        for entry_key, words in self.entries:
            if entry_key == key:
                return words
        return None

    def store(self, key, words):
        # One assignment: a concurrent reader sees the old or the new tuple.
        self.entries = ((key, words),) + self.entries[:1]


# Masks of up to this many elements are hashed by NumPy for CPU tensors: each
# torch kernel launch costs several microseconds whatever its size, so the
# twenty-odd in-place kernels take about 120 us even for a 64-entry
# stochastic-depth mask, against 13-60 us in NumPy up to this size.
_NUMPY_MAX_ELEMENTS = 1 << 16


def _numpy_words(words, keys):
    """The hash words after one round per key in `keys`, as NumPy uint32."""
    h = np.arange(1, words + 1, dtype=np.uint32)
    h *= np.uint32(0x9E3779B9)
    for key in keys:
        h ^= np.uint32(key & 0xFFFFFFFF)
        h ^= h >> np.uint32(16)
        h *= np.uint32(0x85EBCA6B)
        h ^= h >> np.uint32(13)
        h *= np.uint32(0xC2B2AE35)
        h ^= h >> np.uint32(16)
    return h


def _numpy_kept(n, threshold, k1, k2):
    """`_torch_kept` in NumPy: int32 `(n,)`, -1 where kept, 0 where dropped."""
    bits, per_word, bits_threshold = draw_layout(threshold)
    h = _numpy_words(_word_count(n, per_word), (k1, k2))
    if bits >= 8:
        # Little-endian: each word's parts, lowest bits first.
        draws = h.view(f"uint{bits}")
    else:
        shifts = np.arange(0, 32, bits, dtype=np.uint32)
        draws = (h[:, None] >> shifts) & np.uint32((1 << bits) - 1)
    draws = draws.reshape(-1)[:n]
    return np.negative(draws >= bits_threshold, dtype=np.int32)


def _torch_kept(shape, threshold, k1, k2, device, cache=None):
    """Returns int32 `(n,)`: -1 where the portable mask keeps, 0 where it drops.

    Small CPU masks are hashed by NumPy. Otherwise the hash runs as in-place
    or `out=` kernels on contiguous int32 memory; 16- and 8-bit draws are then
    read through int16 or int8 views, narrower ones with one broadcast shift
    into a new int32 tensor (`_torch_draws_kept`). Comparison kernels,
    which write bool tensors, are avoided: on CPU they are several times
    slower than integer arithmetic. `cache` is an optional `FirstRoundCache`.
    """
    import torch

    n = int(_element_count(shape))
    if n <= _NUMPY_MAX_ELEMENTS and torch.device(device).type == "cpu":
        return torch.from_numpy(_numpy_kept(n, threshold, k1, k2))
    bits, per_word, bits_threshold = draw_layout(threshold)
    words = _word_count(n, per_word)
    rows = -(-words // _TORCH_COLUMNS)
    h, scratch = _torch_workspace(rows * _TORCH_COLUMNS, device)
    scratch = scratch[:words]

    def xor_shift_right_(h, bits):  # h ^= h >>> bits, the logical shift
        torch.bitwise_right_shift(h, bits, out=scratch)
        scratch.bitwise_and_((1 << (32 - bits)) - 1)
        h.bitwise_xor_(scratch)

    def round_(h, key):  # h = fmix32(h ^ key)
        h.bitwise_xor_(key)
        xor_shift_right_(h, 16)
        h.mul_(_FMIX_1)
        xor_shift_right_(h, 13)
        h.mul_(_FMIX_2)
        xor_shift_right_(h, 16)

    cache_key = (k1, words, str(device))
    cached = None if cache is None else cache.find(cache_key)
    if cached is not None:
        h = h[:words]
        h.copy_(cached)
    else:
        # `i * golden` for i = 1..words, as one broadcast addition of a row
        # part and a column part (both wrap like the product): faster than
        # an arange followed by a multiplication.
        row_part = torch.arange(rows, dtype=torch.int32, device=device)
        row_part.mul_(_signed(_TORCH_COLUMNS * 0x9E3779B9 & 0xFFFFFFFF))
        column_part = torch.arange(
            1, _TORCH_COLUMNS + 1, dtype=torch.int32, device=device
        )
        column_part.mul_(_GOLDEN)
        torch.add(row_part[:, None], column_part, out=h.view(rows, _TORCH_COLUMNS))
        h = h[:words]
        round_(h, k1)
        if cache is not None:
            # A normal tensor even inside torch.inference_mode(), so that it
            # can be read after it.
            with torch.inference_mode(False):
                cache.store(cache_key, h.clone())
    round_(h, k2)
    return _torch_draws_kept(h, n, bits, bits_threshold)


def _torch_draws_kept(h, n, bits, bits_threshold):
    """The int32 -1/0 mask of the first `n` `bits`-bit draws of words `h`."""
    import torch

    if bits >= 8:
        # On a little-endian machine the int16 (int8) view lists each word's
        # parts lowest bits first: the portable order. Flipping the sign bit
        # of a part gives `draw - 2**(bits - 1)` as a signed integer; widened
        # to int32, `threshold - 1 - draw` is negative exactly where the draw
        # is kept, and its sign, shifted down, is the mask.
        sign = 1 << (bits - 1)
        draws = h.view(getattr(torch, f"int{bits}"))[:n]
        draws.bitwise_xor_(-sign)
        kept = draws.to(torch.int32)
        torch.sub(bits_threshold - 1 - sign, kept, out=kept)
        return kept.bitwise_right_shift_(31)
    if bits == 1 and bits_threshold == 1:
        # Kept where the bit is set: shifted up to the sign bit (bit `m` by
        # 31 - m) and back down, it is the mask, in two kernels.
        shifts = torch.arange(31, -1, -1, dtype=torch.int32, device=h.device)
        kept = torch.bitwise_left_shift(h[:, None], shifts)
        return kept.view(-1)[:n].bitwise_right_shift_(31)
    positions = torch.arange(0, 32, bits, dtype=torch.int32, device=h.device)
    kept = torch.bitwise_right_shift(h[:, None], positions).view(-1)[:n]
    kept.bitwise_and_((1 << bits) - 1)
    torch.sub(bits_threshold - 1, kept, out=kept)
    return kept.bitwise_right_shift_(31)


def _torch_keep(shape, threshold, k1, k2, device):
    import torch

    kept = _torch_kept(shape, threshold, k1, k2, device).neg_()
    return kept.to(torch.uint8).view(torch.bool).view(shape)


def _torch_drop(x, shape, threshold, keys, rate, cache):
    """`drop` on PyTorch: the Triton kernel on a GPU, the C kernels for float32
    CPU tensors masked elementwise, torch kernels otherwise."""
    import torch

    # Before the keys are read on the host, which on a GPU waits for it.
    if _triton_usable(x):
        return _triton_drop(x, shape, threshold, keys, rate)
    keys = _host_keys(keys)
    if _native_usable(x, shape):
        return _native_drop(x, threshold, keys, rate)
    kept = _torch_kept(shape, threshold, keys[0], keys[1], x.device, cache)
    if x.dtype == torch.float32:
        # -1 & bits(scale) is the float `scale`, 0 & bits(scale) is 0.0: the
        # multiplier without a conversion kernel.
        bits = int(np.float32(_scale(rate, "float32")).view(np.int32))
        multiplier = kept.bitwise_and_(bits).view(torch.float32)
    else:
        # torch multiplies a 16-bit tensor by a Python float in float32, so
        # this rounds as `survivor_scale` does.
        scale = _scale(rate, keras.backend.standardize_dtype(x.dtype))
        multiplier = kept.neg_().to(x.dtype).mul_(scale)
    return x * multiplier.view(shape)


def _native_usable(x, shape):
    """Whether `_native_drop` applies: the C kernels, float32 on the CPU.

    The kernels read and write memory directly, so they stay out of whatever
    traces or transforms tensors instead of running on them: `torch.compile`,
    `torch.jit.trace` (which would record the mask's uninitialised buffer)
    and functorch transforms (`torch.vmap`, `torch.func`, Keras's
    `vectorized_map`), whose tensors have no storage of their own.
    """
    import torch

    return (
        _mask_kernels is not None
        and x.dtype == torch.float32
        and x.device.type == "cpu"
        and tuple(x.shape) == tuple(shape)
        and x.is_contiguous()
        and not _traced()
    )


def _traced():
    """Whether torch is tracing or transforming tensors rather than running.

    `torch.compile`, `torch.jit.trace` and functorch transforms (`torch.vmap`,
    `torch.func`, Keras's `vectorized_map`) hand over tensors that the native
    and Triton kernels cannot read or write directly.
    """
    import torch

    if torch.compiler.is_compiling() or torch.jit.is_tracing():
        return True
    active = getattr(torch._C, "_are_functorch_transforms_active", None)
    # Without the check (a future torch), assume a transform may be active.
    return True if active is None else bool(active())


def _native_keep_words(n, threshold, k1, k2):
    """int32 `(ceil(n / 32),)`: bit `r` of word `g` set where `32g + r` is kept."""
    import torch

    bits, _, bits_threshold = draw_layout(threshold)
    words = torch.empty((n + 31) // 32, dtype=torch.int32)
    _mask_kernels.keep_words(
        words.data_ptr(),
        words.numel(),
        n,
        k1 & 0xFFFFFFFF,
        k2 & 0xFFFFFFFF,
        bits,
        bits_threshold,
        _native_threads(),
    )
    return words


def _native_drop(x, threshold, keys, rate):
    """`_torch_drop` for a contiguous float32 CPU tensor, by the C kernels.

    The mask is drawn as packed keep bits (an eighth of a byte per element),
    applied in one pass, and applied again to the gradient from the same
    bits in the backward pass.
    """
    words = _native_keep_words(x.numel(), threshold, keys[0], keys[1])
    return _native_drop_function().apply(x, words, _scale(rate, "float32"))


def _words_multiplier(words, n, scale):
    """The float32 multiplier, `scale` or 0 per element, from packed words."""
    import torch

    bits = int(np.float32(scale).view(np.int32))
    kept = _torch_draws_kept(words, n, 1, 1)
    return kept.bitwise_and_(bits).view(torch.float32)


# Where the Triton kernel runs. The tests add "cpu" to run it on the CPU under
# TRITON_INTERPRET=1, Triton's interpreter.
_TRITON_DEVICES = ("cuda",)


@functools.cache
def _triton_kernels():
    """The `_mask_triton` module, or None where Triton cannot be imported."""
    try:
        from keras_reg.layers import _mask_triton
    except Exception:  # not installed, or installed without a backend
        return None
    return _mask_triton


def _triton_usable(x):
    """Whether `_triton_drop` applies: a 32- or 16-bit float tensor on a GPU.

    Like the C kernels, the Triton kernel stays out of `torch.compile`,
    `torch.jit.trace` and functorch transforms, which trace or batch tensors
    instead of running on them.
    """
    import torch

    return (
        x.device.type in _TRITON_DEVICES
        and x.dtype in (torch.float32, torch.float16, torch.bfloat16)
        and not _traced()
        and _triton_kernels() is not None
    )


def _triton_keys(keys, device):
    """`(state, host_keys)` for the kernel: one of them is None.

    A seed generator's state stays on the device, where the kernel derives the
    keys from it: reading it on the host would wait for the GPU. Keys already
    on the host (Monte Carlo passes) go to the kernel as two integers.
    """
    import torch

    if isinstance(keys, SeedState):
        state = torch.as_tensor(keys.state)
        return state.to(device=device, dtype=torch.int32).contiguous(), None
    return None, (int(keys[0]), int(keys[1]))


@functools.lru_cache(maxsize=64)
def _rounded_scale(rate, dtype):
    """`_scale` rounded to the torch `dtype`, as a Python float."""
    import torch

    value = _scale(rate, keras.backend.standardize_dtype(dtype))
    return torch.tensor(value, dtype=torch.float32).to(dtype).item()


def _triton_drop(x, shape, threshold, keys, rate):
    """`_torch_drop` for a float tensor on a GPU, by the Triton kernel.

    A mask of `x`'s shape is drawn and applied in one pass (and again on the
    gradient, from the same keys); a mask that broadcasts is drawn as its
    multiplier, which torch multiplies.
    """
    import torch

    bits, _, bits_threshold = draw_layout(threshold)
    state, host_keys = _triton_keys(keys, x.device)
    scale = _rounded_scale(rate, x.dtype)
    params = (state, host_keys, bits, bits_threshold, scale)
    if tuple(x.shape) == tuple(shape):
        return _triton_drop_function().apply(x, *params)
    multiplier = torch.empty(tuple(shape), dtype=x.dtype, device=x.device)
    _triton_kernels().launch(None, multiplier, *params)
    return x * multiplier


@functools.cache
def _triton_drop_function():
    """The autograd function `x * multiplier` computed by `_mask_triton`."""
    import torch

    kernels = _triton_kernels()

    class TritonDrop(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, state, host_keys, bits, bits_threshold, scale):
            # `state` is a fresh tensor (`advance_seed` returns a copy), so
            # the backward pass reads the forward pass's keys.
            ctx.save_for_backward(state)
            ctx.save_for_forward(state)
            ctx.params = (host_keys, bits, bits_threshold, scale)
            x = x.contiguous()
            out = torch.empty_like(x, memory_format=torch.contiguous_format)
            return kernels.launch(x, out, state, *ctx.params)

        @staticmethod
        def backward(ctx, grad):
            # Linear in `x` with a fixed mask: the gradient is the same drop,
            # through `apply` so that `create_graph=True` can differentiate it.
            (state,) = ctx.saved_tensors
            return (TritonDrop.apply(grad, state, *ctx.params),) + (None,) * 5

        @staticmethod
        def jvp(ctx, x_tangent, *unused_tangents):
            (state,) = ctx.saved_tensors
            return TritonDrop.apply(x_tangent, state, *ctx.params)

    return TritonDrop


@functools.cache
def _native_drop_function():
    """The autograd function `x * multiplier` computed by `_mask_kernels`."""
    import torch

    def apply(x, words, scale):
        x = x.contiguous()
        out = torch.empty_like(x, memory_format=torch.contiguous_format)
        _mask_kernels.apply_keep_words(
            x.data_ptr(),
            out.data_ptr(),
            x.numel(),
            words.data_ptr(),
            words.numel(),
            scale,
            _native_threads(),
        )
        return out

    def product(tangent, words, scale):
        # Differentiable: for higher-order gradients and forward-mode AD.
        multiplier = _words_multiplier(words, tangent.numel(), scale)
        return tangent * multiplier.view(tangent.shape)

    class NativeDrop(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, words, scale):
            ctx.save_for_backward(words)
            ctx.save_for_forward(words)
            ctx.scale = scale
            return apply(x, words, scale)

        @staticmethod
        def backward(ctx, grad):
            (words,) = ctx.saved_tensors
            if torch.is_grad_enabled():  # create_graph=True
                return product(grad, words, ctx.scale), None, None
            # The engine hands over the gradient in the output's dtype,
            # float32.
            return apply(grad, words, ctx.scale), None, None

        @staticmethod
        def jvp(ctx, x_tangent, words_tangent, scale_tangent):
            (words,) = ctx.saved_tensors
            return product(x_tangent, words, ctx.scale)

    return NativeDrop


class SeedState:
    """A seed generator's state, turned into mask keys where the mask is drawn.

    `keep_mask` and `drop` take either keys `(k1, k2)` or a `SeedState`. On
    TensorFlow the keys are then derived inside the compiled mask function:
    as separate graph operations, `keys_from_state`'s twenty scalar kernels
    took longer than hashing a whole 1024x1024 mask. On PyTorch they are
    derived on the host, except by the Triton kernel for GPU tensors, which
    reads the state on the device. `variable` is the generator's state
    variable, read when a TensorFlow graph is traced to pick the cached first
    hash round.
    """

    __slots__ = ("state", "variable")

    def __init__(self, state, variable=None):
        self.state = state
        self.variable = variable


def _graph_keys(keys):
    if isinstance(keys, SeedState):
        return keys_from_state(keys.state)
    return keys


def _host_keys(keys):
    if isinstance(keys, SeedState):
        seed, counter = keys.state.tolist()
        return host_keys_from_state(seed, counter)
    return int(keys[0]), int(keys[1])


_compiled = {}


def _compiled_functions(backend):
    """Returns the XLA-compiled mask functions of TensorFlow or JAX."""
    if backend not in _compiled:
        if backend == "tensorflow":
            _compiled[backend] = _tf_functions()
        else:
            import jax

            def bitcast(h, dtype):
                return jax.lax.bitcast_convert_type(h, dtype)

            def keep(shape, threshold, k1, k2):
                # The barrier makes XLA materialize the mask: fused into a
                # consumer that broadcasts it (spatial dropout), the hash
                # would be recomputed for every element of the output.
                mask = _bitcast_keep(bitcast, shape, threshold, k1, k2)
                return jax.lax.optimization_barrier(mask)

            _compiled[backend] = {"keep": jax.jit(keep, static_argnums=(0, 1))}
    return _compiled[backend]


def _tf_functions():
    import tensorflow as tf

    def bitcast(h, dtype):
        return tf.bitcast(h, dtype)

    def keep(shape, threshold, key_input, from_state, first_round=None):
        if from_state:
            k1, k2 = keys_from_state(key_input)
        else:
            k1, k2 = key_input[0], key_input[1]
        shape = tf.unstack(shape)
        return _bitcast_keep(bitcast, shape, threshold, k1, k2, first_round)

    def multiplier(
        shape, threshold, key_input, from_state, rate, dtype, first_round=None
    ):
        mask = keep(shape, threshold, key_input, from_state, first_round)
        return tf.cast(mask, dtype) * survivor_scale(rate, dtype.name)

    # Keras does not XLA-compile TensorFlow training on CPU: a mask returned
    # to the graph would be cast and scaled by separate kernels, each a pass
    # over the mask, so `drop` takes the multiplier instead.
    return {
        "keep": tf.function(keep, jit_compile=True),
        "multiplier": tf.function(multiplier, jit_compile=True),
    }


def _tf_arguments(shape, threshold, keys):
    import tensorflow as tf

    shape_tensor = tf.stack([tf.cast(dim, tf.int32) for dim in shape])
    if isinstance(keys, SeedState):
        return shape_tensor, threshold, keys.state, True
    key_input = tf.stack([tf.cast(keys[0], tf.int32), tf.cast(keys[1], tf.int32)])
    return shape_tensor, threshold, key_input, False


def _tf_first_round(cache, keys, shape, threshold):
    """Returns `(words, k1)` tensors of `cache`'s first hash round, or None.

    The seed is read when the graph is traced (`tf.init_scope`); the compiled
    function compares it with the state's at run time and hashes the first
    round itself if a new seed was assigned since.
    """
    import tensorflow as tf

    if not all(isinstance(dim, int) for dim in shape):
        return None
    if isinstance(keys, SeedState):
        if keys.variable is None:
            return None
        with tf.init_scope():
            value = keys.variable.value
            # Inside a StatelessScope (`stateless_call`, symbolic builds) the
            # variable reads as the traced state: nothing to capture.
            if tf.is_symbolic_tensor(value):
                return None
            seed = int(keras.ops.convert_to_numpy(value)[0])
        k1 = host_keys_from_state(seed, 0)[0]
    elif isinstance(keys[0], int):
        k1 = keys[0]  # Monte Carlo keys, derived on the host
    else:
        return None
    words = _word_count(_element_count(shape), draw_layout(threshold)[1])
    key = ("tensorflow", k1, words)
    found = cache.find(key)
    if found is None:
        with tf.init_scope():
            first = _numpy_words(words, (k1,)).view(np.int32)
            found = (tf.constant(first), tf.constant(k1, tf.int32))
        cache.store(key, found)
    return found


def keep_mask(shape, rate, keys, *, like=None, fast=True):
    """Returns a boolean tensor of `shape`, True where units are kept.

    Args:
        shape: the mask shape; entries are ints or, on TensorFlow, scalar
            tensors for dynamic dimensions.
        rate: the drop probability.
        keys: `(k1, k2)`, int32 scalars from `keys_from_state` or an
            `MCContext`, or a `SeedState`.
        like: a tensor on the device the mask should live on (PyTorch).
        fast: False forces the portable `keras.ops` path.
    """
    threshold = drop_threshold(rate)
    backend = keras.backend.backend()
    fast = fast and _LITTLE_ENDIAN
    # XLA compiles once per mask shape: see `_xla`.
    if fast and backend == "tensorflow" and _xla.tf_xla_usable(shape):
        function = _compiled_functions(backend)["keep"]
        return function(*_tf_arguments(shape, threshold, keys))
    if fast and backend == "torch":
        import torch

        device = like.device if like is not None else torch.get_default_device()
        if device.type != "meta":
            return _torch_keep(shape, threshold, *_host_keys(keys), device)
    k1, k2 = _graph_keys(keys)
    if fast and backend == "jax":
        k1 = ops.convert_to_tensor(k1, "int32")
        k2 = ops.convert_to_tensor(k2, "int32")
        function = _compiled_functions(backend)["keep"]
        return function(tuple(shape), threshold, k1, k2)
    return _portable_keep(tuple(shape), threshold, k1, k2)


def _scale(rate, dtype):
    """`1 / (1 - rate)`: exact for float64, else rounded to float32."""
    scale = 1.0 / (1.0 - rate)
    return scale if dtype == "float64" else float(np.float32(scale))


def survivor_scale(rate, dtype):
    """Returns `1 / (1 - rate)` as a scalar tensor of `dtype`.

    Exact in float64; for every other dtype rounded to float32 first, then to
    `dtype`, so that every path and every backend multiplies by the same
    number (backends differ in how they convert a Python float).
    """
    value_dtype = "float64" if dtype == "float64" else "float32"
    return ops.cast(ops.convert_to_tensor(_scale(rate, dtype), value_dtype), dtype)


def apply_keep(x, keep, rate):
    """Returns `x * (keep / (1 - rate))`: survivors scaled, the rest zeroed.

    A multiplication by the mask, not a select: it is branch-free (selecting
    on a random mask mispredicts every other element on CPU) and every
    backend rounds `x * scale` the same way. As in Keras's TensorFlow
    dropout, a dropped NaN or infinity gives NaN.
    """
    dtype = keras.backend.standardize_dtype(x.dtype)
    multiplier = ops.multiply(ops.cast(keep, dtype), survivor_scale(rate, dtype))
    return ops.multiply(x, multiplier)


def drop(x, shape, rate, keys, *, fast=True, cache=None):
    """Returns `x` with a fresh keep-mask of `shape` applied, survivors scaled.

    The same numbers as `apply_keep(x, keep_mask(shape, rate, keys), rate)`;
    `shape` broadcasts against `x`'s shape. On TensorFlow the compiled mask
    function returns the multiplier; on PyTorch it is built from the mask's
    integer form directly, with the first hash round taken from `cache` (a
    `FirstRoundCache`) when it holds this mask's.
    """
    backend = keras.backend.backend()
    fast = fast and _LITTLE_ENDIAN
    threshold = drop_threshold(rate)
    if fast and backend == "torch" and x.device.type != "meta":
        return _torch_drop(x, shape, threshold, keys, rate, cache)
    # XLA compiles once per mask shape: see `_xla`.
    if fast and backend == "tensorflow" and _xla.tf_xla_usable(shape):
        function = _compiled_functions(backend)["multiplier"]
        arguments = _tf_arguments(shape, threshold, keys)
        first_round = (
            None if cache is None else _tf_first_round(cache, keys, shape, threshold)
        )
        return x * function(*arguments, rate, x.dtype, first_round)
    return apply_keep(x, keep_mask(shape, rate, keys, like=x, fast=fast), rate)


# Monte Carlo mode: `mc_predict` switches the dropout family on while the
# model runs with training=False, so BatchNormalization stays in inference.
_mc_state = threading.local()


def mc_context():
    """Returns the active Monte Carlo context, or None."""
    return getattr(_mc_state, "context", None)


def _fmix32_int(h):
    h &= 0xFFFFFFFF
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & 0xFFFFFFFF
    return h ^ (h >> 16)


def host_keys_from_state(seed, counter):
    """`keys_from_state` on Python ints: the same int32 keys."""
    return tuple(
        _signed(_fmix32_int((value ^ salt) & 0xFFFFFFFF))
        for value, salt in ((seed, _SEED_SALT), (counter, _COUNTER_SALT))
    )


class MCContext:
    """Hands out seed states for each dropout-family call of a Monte Carlo pass.

    Call `c` (counted from 0 within a forward pass) of pass `p` uses the state
    `(fmix32(fmix32(seed) + c), p)`, so a pass's masks depend only on `seed`,
    `p` and the order in which the model calls its layers.
    """

    def __init__(self, seed):
        self.base = _fmix32_int(seed)
        self.pass_index = 0
        self.call_index = 0
        self.layers_seen = 0

    def start_pass(self, pass_index):
        self.pass_index = pass_index
        self.call_index = 0

    def next_keys(self):
        seed = _fmix32_int(self.base + self.call_index)
        self.call_index += 1
        return host_keys_from_state(seed, self.pass_index)

    def __enter__(self):
        if mc_context() is not None:
            raise RuntimeError("mc_predict cannot be nested.")
        _mc_state.context = self
        return self

    def __exit__(self, *exc_info):
        _mc_state.context = None


_torch_increments = {}


def advance_seed(generator):
    """`generator.next()`: a copy of the state, then its counter advanced by one.

    On PyTorch the increment `[0, 1]` is kept on the state's device instead of
    being converted from NumPy on every call, as Keras does: on a GPU that
    conversion is a blocking host-to-device copy, which waits until the GPU
    has run all the work queued before it. The state is read and written
    through the variable, so stateless scopes see the update as with `next()`.
    """
    if keras.backend.backend() != "torch":
        return generator.next()
    import torch

    state = generator.state
    value = state.value
    key = (value.device, value.dtype)
    increment = _torch_increments.get(key)
    if increment is None:
        # A normal tensor even inside torch.inference_mode().
        with torch.inference_mode(False):
            increment = torch.tensor([0, 1], dtype=value.dtype, device=value.device)
        _torch_increments[key] = increment
    snapshot = value.clone()
    state.assign(value + increment)
    return snapshot


class DropoutFamilyLayer(keras.layers.Layer):
    """Base of keras_reg's random layers: seed state, saving, Monte Carlo mode.

    The weights layout is Keras's: a dropout layer owns no weights, so
    `.weights.h5` files move between keras_reg's layers and Keras's in both
    directions. The seed generator's state (which Keras's own layers do not
    save) goes to the `.keras` archive's assets instead, so a model reloaded
    from a `.keras` file continues with the masks the original would have
    drawn next.
    """

    _SEED_STATE_KEY = "seed_generator_state"
    _SEED_STATE_FILE = "seed_generator_state.npy"

    def _init_seed(self, seed):
        self.seed_generator = keras.random.SeedGenerator(seed)

    def _mark_built(self):
        """Marks the layer built unless a subclass defines its own `build`.

        Keras's rule for layers without state to create: built at
        construction, except in subclasses whose `build` would then never
        run.
        """
        if type(self).build is keras.layers.Layer.build:
            self.built = True

    def _is_active(self, training):
        context = mc_context()
        if context is not None:
            context.layers_seen += 1
            return True
        return bool(training)

    def _next_keys(self):
        context = mc_context()
        if context is not None:
            return context.next_keys()
        return SeedState(advance_seed(self.seed_generator), self.seed_generator.state)

    @classmethod
    def from_config(cls, config):
        return cls(**_validation.layer_constructor_kwargs(config))

    def save_assets(self, dir_path):
        generator = getattr(self, "seed_generator", None)
        if generator is not None:
            state = ops.convert_to_numpy(generator.state)
            np.save(os.path.join(dir_path, self._SEED_STATE_FILE), state)

    def load_assets(self, dir_path):
        generator = getattr(self, "seed_generator", None)
        if dir_path is None or generator is None:
            return
        path = os.path.join(dir_path, self._SEED_STATE_FILE)
        if os.path.exists(path):
            generator.state.assign(np.load(path, allow_pickle=False))

    def load_own_variables(self, store):
        # keras_reg 0.1 saved the seed state among the weights; such files
        # still load, with their state.
        own = {key: store[key] for key in store.keys() if key != self._SEED_STATE_KEY}
        super().load_own_variables(own)
        generator = getattr(self, "seed_generator", None)
        if generator is not None and self._SEED_STATE_KEY in store.keys():
            generator.state.assign(store[self._SEED_STATE_KEY])
