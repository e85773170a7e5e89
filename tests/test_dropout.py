import importlib.util
import math
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import threading

import keras
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keras_reg.layers import Dropout, _masks
from tests.helpers import (
    assert_build_rule_like_keras,
    assert_config_round_trip,
    assert_model_save_round_trip,
    assert_same_public_state,
    assert_weights_files_interchangeable,
    raised_message,
    run_layer_test,
)

BACKEND = keras.backend.backend()


def _fmix32(h):
    h = np.asarray(h, dtype=np.uint32)
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))


def reference_keep(shape, rate, seed, counter):
    """NumPy re-implementation of the documented mask algorithm."""
    threshold = round(rate * 65536)
    # The fewest of 1, 2, 4, 8, 16 bits per draw that represent the
    # threshold exactly.
    bits = next(b for b in (1, 2, 4, 8, 16) if threshold % 2 ** (16 - b) == 0)
    n = int(np.prod(shape))
    per_word = 32 // bits
    with np.errstate(over="ignore"):
        k1 = _fmix32(np.uint32(seed) ^ np.uint32(0x5BD1E995))
        k2 = _fmix32(np.uint32(counter) ^ np.uint32(0x27D4EB2F))
        words = np.arange(1, -(-n // per_word) + 1, dtype=np.uint64)
        words = (words * 0x9E3779B9 % 2**32).astype(np.uint32)
        h = _fmix32(_fmix32(words ^ k1) ^ k2).astype(np.uint64)
    # Element i * per_word + m is bits [m * bits, (m + 1) * bits) of word i.
    draws = [(h >> (m * bits)) % 2**bits for m in range(per_word)]
    draws = np.stack(draws, axis=-1).reshape(-1)[:n]
    return (draws * 2 ** (16 - bits) >= threshold).reshape(shape)


def _numpy(x):
    return keras.ops.convert_to_numpy(x)


def _ones(shape):
    return np.ones(shape, dtype="float32")


@pytest.mark.parametrize(
    "init_kwargs, input_shape",
    [
        ({"rate": 0.3}, (2, 3)),
        ({"rate": 0.5, "noise_shape": (None, 1, None), "seed": 7}, (2, 4, 3)),
        ({"rate": 0.0}, (3, 2)),
        ({"rate": 1.0, "seed": 1}, (2, 2, 2, 2)),
    ],
)
def test_layer_battery(init_kwargs, input_shape, tmp_path):
    run_layer_test(
        Dropout,
        init_kwargs,
        input_shape,
        tmp_path,
        expected_num_trainable_weights=0,
        expected_num_non_trainable_weights=0,
    )


def test_config_keys_and_attributes_match_keras_dropout():
    ours = Dropout(0.25, noise_shape=[None, 1], seed=3, name="d")
    theirs = keras.layers.Dropout(0.25, noise_shape=[None, 1], seed=3, name="d")
    assert set(ours.get_config()) == set(theirs.get_config())
    for attribute in ("rate", "noise_shape", "seed", "supports_masking"):
        assert getattr(ours, attribute) == getattr(theirs, attribute)
    assert isinstance(ours.rate, float)
    assert ours.noise_shape == (None, 1)
    assert len(ours.variables) == 1  # the seed generator state


def test_swapping_keras_dropout_changes_no_prediction():
    x = np.random.default_rng(0).normal(size=(8, 5)).astype("float32")

    def model(dropout_cls):
        keras.utils.set_random_seed(5)
        return keras.Sequential(
            [keras.Input((5,)), dropout_cls(0.4), keras.layers.Dense(3)]
        )

    np.testing.assert_array_equal(
        model(Dropout).predict(x, verbose=0),
        model(keras.layers.Dropout).predict(x, verbose=0),
    )


def test_identity_at_inference():
    x = np.random.default_rng(1).normal(size=(4, 6)).astype("float32")
    layer = Dropout(0.7, seed=1)
    np.testing.assert_array_equal(_numpy(layer(x)), x)
    np.testing.assert_array_equal(_numpy(layer(x, training=False)), x)


def test_mask_matches_numpy_reference_of_documented_algorithm():
    shape = (3, 5, 7)
    layer = Dropout(0.3, seed=11)
    first = _numpy(layer(_ones(shape), training=True))
    second = _numpy(layer(_ones(shape), training=True))
    np.testing.assert_array_equal(first != 0, reference_keep(shape, 0.3, 11, 0))
    np.testing.assert_array_equal(second != 0, reference_keep(shape, 0.3, 11, 1))


# PyTorch drops float32 CPU tensors elementwise with the native C kernels
# where they were built ("native"); otherwise it hashes small masks in NumPy
# and larger ones with in-place torch kernels ("kernels" forces the second
# route for every size). GPU tensors are dropped by the Triton kernel
# ("triton"), which also runs on the CPU under TRITON_INTERPRET=1.
TORCH_ROUTES = (
    ["native", "numpy", "kernels", "triton"] if BACKEND == "torch" else ["default"]
)


def _triton_runs():
    """Whether the Triton kernel can run here: a GPU, or the interpreter."""
    if BACKEND != "torch" or _masks._triton_kernels() is None:
        return False
    import torch

    return torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") == "1"


needs_triton = pytest.mark.skipif(
    not _triton_runs(),
    reason="the Triton kernel needs torch, Triton and a GPU or TRITON_INTERPRET=1",
)


def _skip_interpreted_bfloat16(dtype):
    import torch

    if dtype == "bfloat16" and not torch.cuda.is_available():
        pytest.skip("Triton's interpreter truncates float32 to bfloat16")


def _force_triton(monkeypatch):
    """Routes CPU tensors to the kernel too (the interpreter), GPU ones as ever."""
    monkeypatch.setattr(_masks, "_TRITON_DEVICES", ("cuda", "cpu"))


@pytest.fixture(params=TORCH_ROUTES)
def torch_route(request, monkeypatch):
    if request.param == "native" and _masks._mask_kernels is None:
        pytest.skip("the native mask kernels were not built (no C compiler)")
    if request.param == "triton":
        if not _triton_runs():
            pytest.skip("Triton needs a GPU, or TRITON_INTERPRET=1 (and Triton)")
        _force_triton(monkeypatch)
    elif BACKEND == "torch":
        monkeypatch.setattr(_masks, "_TRITON_DEVICES", ())
    if request.param in ("numpy", "kernels"):
        monkeypatch.setattr(_masks, "_mask_kernels", None)
    if request.param == "kernels":
        monkeypatch.setattr(_masks, "_NUMPY_MAX_ELEMENTS", 0)
    return request.param


# Rates drawn with 16, 1, 2, 2, 4 and 8 bits per element.
LAYOUT_RATES = [0.37, 0.5, 0.25, 0.75, 0.0625, 3 / 256]


@pytest.mark.parametrize("rate", LAYOUT_RATES)
@pytest.mark.parametrize("shape", [(1,), (7,), (2, 3, 5), (64, 33)])
def test_fast_path_and_portable_path_give_the_same_mask(shape, rate, torch_route):
    state = keras.ops.convert_to_tensor(np.array([123456789, 42], dtype="int32"))
    keys = _masks.keys_from_state(state)
    like = keras.ops.zeros(shape)
    fast = _numpy(_masks.keep_mask(shape, rate, keys, like=like))
    portable = _numpy(_masks.keep_mask(shape, rate, keys, fast=False))
    np.testing.assert_array_equal(fast, portable)
    np.testing.assert_array_equal(fast, reference_keep(shape, rate, 123456789, 42))


@pytest.mark.parametrize(
    "rate, bits",
    [(0.5, 1), (0.25, 2), (0.75, 2), (0.125, 4), (0.0625, 4), (3 / 256, 8)]
    + [(1 / 512, 16), (0.1, 16), (0.37, 16), (0.0, 1), (1.0, 1)],
)
def test_draws_use_the_fewest_bits_that_represent_the_rate(rate, bits):
    layout = _masks.draw_layout(_masks.drop_threshold(rate))
    assert layout[:2] == (bits, 32 // bits)
    # The threshold in `bits`-bit draws is the same fraction of their range.
    assert layout[2] / 2**bits == _masks.drop_threshold(rate) / 2**16


@pytest.mark.parametrize("seed", [0, 11, 2**31 - 1])
def test_keys_derived_from_a_seed_generator_state_match_explicit_keys(seed):
    # Layers hand the mask functions a SeedState: its keys are derived inside
    # TensorFlow's compiled function, in traced JAX code or on the host for
    # PyTorch. Every route must give the keys of keys_from_state.
    generator = keras.random.SeedGenerator(seed)
    for _ in range(3):
        state = generator.next()
        expected = tuple(int(k) for k in _masks.keys_from_state(state))
        seed_value, counter = (int(v) for v in _numpy(state))
        assert _masks.host_keys_from_state(seed_value, counter) == expected
        for shape in [(5, 7), (64, 33)]:
            via_state = _masks.keep_mask(shape, 0.4, _masks.SeedState(state))
            via_keys = _masks.keep_mask(shape, 0.4, expected, fast=False)
            np.testing.assert_array_equal(_numpy(via_state), _numpy(via_keys))


def test_seed_advance_is_keras_seed_generator_next():
    # The layers advance their generator with advance_seed, which on PyTorch
    # keeps the increment on the device; it must step exactly as next() does,
    # also inside a stateless scope, where the variable itself is not written.
    ours, theirs = keras.random.SeedGenerator(9), keras.random.SeedGenerator(9)
    for _ in range(3):
        np.testing.assert_array_equal(
            _numpy(_masks.advance_seed(ours)), _numpy(theirs.next())
        )
        np.testing.assert_array_equal(_numpy(ours.state), _numpy(theirs.state))
    start = np.array([123, 2**31 - 1], "int32")  # the counter wraps, as in Keras
    results = []
    for generator, advance in ((ours, _masks.advance_seed), (theirs, None)):
        mapping = [(generator.state, keras.ops.convert_to_tensor(start))]
        with keras.StatelessScope(state_mapping=mapping) as scope:
            drawn = advance(generator) if advance else generator.next()
        results.append((drawn, scope.get_current_value(generator.state)))
    for got, expected in zip(results[0], results[1], strict=True):
        np.testing.assert_array_equal(_numpy(got), _numpy(expected))
    np.testing.assert_array_equal(_numpy(results[0][0]), start)
    np.testing.assert_array_equal(_numpy(ours.state), _numpy(theirs.state))


# Rates whose 16-bit threshold is 0 (nothing dropped), 2**16 (everything
# dropped), a typical one, 1- and 2-bit draws, and one whose scale 1 / (1 - rate) rounds
# differently to float16 directly than through float32.
EDGE_RATES = [1e-9, 0.999999, 0.3, 0.3331162379896437, 0.5, 0.75]


@pytest.mark.parametrize("rate", EDGE_RATES)
@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16", "float64"])
@pytest.mark.parametrize(
    "x_shape, mask_shape", [((64, 33), (64, 33)), ((4, 3, 5, 6), (4, 1, 1, 6))]
)
def test_fast_drop_gives_the_numbers_of_the_portable_path(
    x_shape, mask_shape, dtype, rate, torch_route
):
    if dtype == "float64" and BACKEND == "jax":
        pytest.skip("JAX truncates float64 unless jax_enable_x64 is set")
    if dtype == "float16" and 1 / (1 - rate) > np.finfo("float16").max:
        pytest.skip("the survivors' scale overflows float16")
    if torch_route == "triton":
        _skip_interpreted_bfloat16(dtype)
    state = keras.ops.convert_to_tensor(np.array([987, 6], dtype="int32"))
    keys = _masks.keys_from_state(state)
    values = np.random.default_rng(0).normal(size=x_shape).astype("float32")
    x = keras.ops.cast(keras.ops.convert_to_tensor(values), dtype)

    def as_float64(tensor):
        return _numpy(keras.ops.cast(tensor, "float64"))

    fast = as_float64(_masks.drop(x, mask_shape, rate, keys))
    portable = as_float64(_masks.drop(x, mask_shape, rate, keys, fast=False))
    np.testing.assert_array_equal(fast, portable)
    # The reference: the documented mask, and 1 / (1 - rate) rounded to
    # float32 first for every dtype but float64.
    keep = reference_keep(mask_shape, rate, 987, 6)
    scale = 1 / (1 - rate)
    scale = np.float64(scale) if dtype == "float64" else np.float32(scale)
    zeroed = keras.ops.cast(as_float64(x) * keep, dtype)
    expected = keras.ops.multiply(zeroed, keras.ops.cast(scale, dtype))
    np.testing.assert_array_equal(fast, as_float64(expected))


@pytest.mark.skipif(BACKEND != "tensorflow", reason="TensorFlow's XLA route only")
@pytest.mark.parametrize(
    "signature, compiled", [((4, 6, 5), True), ((None, None, 5), False)]
)
@pytest.mark.parametrize("rate", [0.4, 0.5, 0.25])  # 16-, 1- and 2-bit draws
def test_tensorflow_compiles_masks_only_when_the_features_are_static(
    signature, compiled, rate, monkeypatch
):
    # XLA compiles once per concrete shape: a length unknown while tracing
    # would compile for every new size, so such masks take the graph kernels.
    import tensorflow as tf

    calls = []
    functions = _masks._compiled_functions

    def spy(backend):
        calls.append(backend)
        return functions(backend)

    monkeypatch.setattr(_masks, "_compiled_functions", spy)
    layer = Dropout(rate, seed=5)
    step = tf.function(
        lambda x: layer(x, training=True),
        input_signature=[tf.TensorSpec(signature, tf.float32)],
    )
    y = _numpy(step(tf.ones((4, 6, 5))))
    assert bool(calls) is compiled
    np.testing.assert_array_equal(y != 0, reference_keep((4, 6, 5), rate, 5, 0))


@pytest.mark.skipif(BACKEND != "tensorflow", reason="TensorFlow's XLA route only")
def test_tensorflow_without_xla_draws_masks_with_graph_kernels(monkeypatch):
    import platform

    import tensorflow as tf

    from keras_reg.layers import _xla

    # Apple-silicon GPUs (tensorflow-metal) have no XLA; Keras turns
    # jit_compile off there too.
    monkeypatch.setattr(platform, "system", lambda: "Darwin")
    monkeypatch.setattr(platform, "processor", lambda: "arm")
    gpus = []
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind: gpus)
    assert _xla.tf_xla_available.__wrapped__()
    gpus.append("GPU:0")
    assert not _xla.tf_xla_available.__wrapped__()

    monkeypatch.setattr(_xla, "tf_xla_available", lambda: False)
    monkeypatch.setattr(_masks, "_compiled_functions", None)  # never called
    y = _numpy(Dropout(0.4, seed=5)(np.ones((4, 6, 5), "float32"), training=True))
    np.testing.assert_array_equal(y != 0, reference_keep((4, 6, 5), 0.4, 5, 0))


@pytest.mark.skipif(BACKEND != "torch", reason="the reused workspace is torch's")
def test_torch_workspace_is_capped_and_larger_masks_stay_exact(monkeypatch):
    monkeypatch.setattr(_masks, "_torch_buffers", threading.local())
    monkeypatch.setattr(_masks, "_NUMPY_MAX_ELEMENTS", 0)
    monkeypatch.setattr(_masks, "_TORCH_WORKSPACE_MAX_WORDS", 2048)
    import torch

    keys = (12345, -678)
    cpu = torch.zeros(1, device="cpu")  # the workspace is the CPU's, also on a GPU
    small = _numpy(_masks.keep_mask((40, 50), 0.3, keys, like=cpu))
    assert _masks._torch_buffers.buffer.shape == (2, 1024)  # 1000 words, one row
    large = _numpy(_masks.keep_mask((90, 50), 0.3, keys, like=cpu))
    assert _masks._torch_buffers.buffer.shape == (2, 1024)  # not grown past the cap
    for mask, shape in ((small, (40, 50)), (large, (90, 50))):
        portable = _masks.keep_mask(shape, 0.3, keys, fast=False)
        np.testing.assert_array_equal(mask, _numpy(portable))


def _c_compiler():
    """The compiler setup.py uses (`CC`, else Python's), or a skip."""
    command = (os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc").split()
    if shutil.which(command[0]) is None:
        pytest.skip(f"no C compiler ({command[0]}): the torch-kernel path is used")
    return command


def test_native_kernels_are_built_where_a_c_compiler_exists():
    # setup.py builds them as an optional extension, and tests/run_backends.py
    # builds them in this tree: without this check a failed build would only
    # turn the native tests into skips.
    _c_compiler()
    assert importlib.util.find_spec("keras_reg.layers._mask_kernels") is not None
    if BACKEND == "torch":
        assert _masks._mask_kernels is not None


def test_native_kernels_are_loaded_on_the_torch_backend_only():
    # Built with OpenMP they bring libgomp: loaded ahead of torch's copy on
    # another backend, it would be the one torch binds to if imported later.
    loaded = "keras_reg.layers._mask_kernels" in sys.modules
    assert loaded == (BACKEND == "torch" and _masks._mask_kernels is not None)


def test_native_kernels_use_torchs_openmp_threads_on_linux_with_gcc(tmp_path):
    if BACKEND != "torch" or not sys.platform.startswith("linux"):
        pytest.skip("setup.py builds the OpenMP kernels on Linux, for torch")
    import torch

    compiler = _c_compiler()
    # setup.py's conditions: GCC, and a program built with -fopenmp links.
    macros = subprocess.run(
        [*compiler, "-dM", "-E", "-x", "c", os.devnull], capture_output=True, text=True
    ).stdout
    if "__GNUC__" not in macros or "__clang__" in macros:
        pytest.skip("setup.py builds the OpenMP kernels with GCC only")
    source = tmp_path / "probe.c"
    source.write_text("int main(void) { return 0; }\n")
    probe = subprocess.run(
        [*compiler, "-fopenmp", str(source), "-o", str(tmp_path / "probe")],
        capture_output=True,
    )
    if probe.returncode:
        pytest.skip("the C compiler cannot build with -fopenmp")
    assert _masks._mask_kernels.openmp == 1
    if not os.path.exists(
        os.path.join(os.path.dirname(torch.__file__), "lib", "libgomp.so.1")
    ):
        pytest.skip("this torch does not ship libgomp.so.1 (a renamed copy, or none)")
    # One runtime, resolved by the kernels and by torch alike: one thread pool.
    assert _masks._kernels_share_torch_threads
    assert _masks._native_threads() == torch.get_num_threads()


needs_native = pytest.mark.skipif(
    BACKEND != "torch" or _masks._mask_kernels is None,
    reason="the native kernels serve the torch backend, where they were built",
)


def _unpacked(words, n):
    """The keep bits of packed int32 words, element e at bit e % 32 of word e // 32."""
    words = np.asarray(words).view(np.uint32)
    return ((words[:, None] >> np.arange(32, dtype=np.uint32)) & 1).reshape(-1)[:n]


@needs_native
@pytest.mark.parametrize("rate", LAYOUT_RATES + [1e-9, 0.999999])
@pytest.mark.parametrize("n", [0, 1, 31, 32, 33, 1000, 65_537])
def test_native_keep_words_are_the_documented_mask(n, rate):
    threshold = _masks.drop_threshold(rate)
    words = _masks._native_keep_words(n, threshold, 123, -456)
    assert tuple(words.shape) == ((n + 31) // 32,)
    keys = tuple(int(k) for k in _masks.keys_from_state(np.array([9, 4], "int32")))
    words = _masks._native_keep_words(n, threshold, *keys)
    np.testing.assert_array_equal(
        _unpacked(words.numpy(), n), reference_keep((n,), rate, 9, 4)
    )


def _keep_and_apply(kernels, x, rate, threads):
    """The kernels' keep words and product for float32 tensor `x`, and team sizes."""
    import torch

    n = x.numel()
    bits, _, bits_threshold = _masks.draw_layout(_masks.drop_threshold(rate))
    state = np.array([3, 8], "int32")
    keys = [int(k) & 0xFFFFFFFF for k in _masks.keys_from_state(state)]
    words = torch.full(((n + 31) // 32,), -1, dtype=torch.int32)
    kernels.keep_words(
        words.data_ptr(), words.numel(), n, *keys, bits, bits_threshold, threads
    )
    keep_team = kernels.last_team_size()
    out = torch.full_like(x, np.nan)
    kernels.apply_keep_words(
        x.data_ptr(), out.data_ptr(), n, words.data_ptr(), words.numel(), 2.0, threads
    )
    return words, out, (keep_team, kernels.last_team_size())


@needs_native
@pytest.mark.parametrize("rate", [0.5, 0.25, 0.0625, 2**-8, 0.3])
def test_native_kernels_give_the_same_words_and_products_on_any_thread_count(rate):
    import torch

    # 6,145 words in 97 blocks of 64, a ragged tail: above the 2,048 words at
    # which the loops go parallel.
    n = 3 * 65_536 + 45
    expected_keep = reference_keep((n,), rate, 3, 8)
    x = torch.from_numpy(np.random.default_rng(5).normal(size=n).astype("float32"))
    expected = np.where(expected_keep, x.numpy() * np.float32(2.0), np.float32(0))
    kernels = _masks._mask_kernels
    for threads in (1, 2, 3, 8, 2, 3):  # repeated: races need not show at once
        words, out, teams = _keep_and_apply(kernels, x, rate, threads)
        np.testing.assert_array_equal(_unpacked(words.numpy(), n), expected_keep)
        np.testing.assert_array_equal(out.numpy(), expected)
        # The loops did run on that many threads (one where built serially).
        assert teams == ((threads, threads) if kernels.openmp else (1, 1))


@needs_native
def test_native_kernels_stay_on_one_thread_for_small_masks_and_cap_their_teams():
    import torch

    kernels = _masks._mask_kernels
    if not kernels.openmp:
        pytest.skip("built without OpenMP: every loop runs on the calling thread")
    # 2,047 words: under the parallel size, whatever is asked.
    small = torch.ones(2047 * 32)
    assert _keep_and_apply(kernels, small, 0.5, 8)[2] == (1, 1)
    # 2,100 words, 33 blocks: no more threads than the loop has iterations.
    large = torch.ones(2100 * 32)
    assert _keep_and_apply(kernels, large, 0.5, 40)[2] == (33, 40)


@needs_native
def test_native_kernels_run_single_threaded_beside_another_openmp_runtime(
    monkeypatch,
):
    import torch

    kernels = _masks._mask_kernels
    addresses = {kernels.__file__: 1, torch._C.__file__: 2}
    monkeypatch.setattr(_masks, "_openmp_address", addresses.get)
    assert not _masks._shares_torch_openmp(kernels)
    assert not _masks._shares_torch_openmp(None)
    monkeypatch.setattr(_masks, "_kernels_share_torch_threads", False)
    assert _masks._native_threads() == 1
    x = torch.ones(3 * 65_536)
    y = _masks.drop(x, tuple(x.shape), 0.5, (5, 6))
    assert kernels.last_team_size() == 1
    assert set(np.unique(y.numpy())) == {0.0, 2.0}


def _drop_and_gradients(x, upstream, rate, keys):
    """`drop`'s output, its gradient and a second-order gradient, in torch."""
    import torch

    x = x.clone().requires_grad_(True)
    y = _masks.drop(x, tuple(x.shape), rate, keys)
    (grad,) = torch.autograd.grad(y, x, upstream, retain_graph=True)
    # d/dx sum(y**2) = 2 y m; its derivative, kept differentiable, is 2 m**2.
    (first,) = torch.autograd.grad((y * y).sum(), x, create_graph=True)
    (second,) = torch.autograd.grad(first.sum(), x)
    return [t.detach().cpu().numpy() for t in (y, grad, first, second)]


@needs_native
@pytest.mark.parametrize("rate", LAYOUT_RATES)
def test_native_drop_gives_the_numbers_and_gradients_of_the_torch_kernels(
    rate, monkeypatch
):
    import torch

    rng = np.random.default_rng(4)
    values = rng.normal(size=(37, 129)).astype("float32")
    values[0, :8] = [np.nan, np.inf, -np.inf, -0.0, 1e-40, -1e-40, 3e38, -3e38]
    x = torch.from_numpy(values)
    # A strided upstream gradient: the kernels take a contiguous copy.
    upstream = torch.from_numpy(rng.normal(size=(129, 37)).astype("float32")).T
    keys = (2024, -7)
    native = _drop_and_gradients(x, upstream, rate, keys)
    monkeypatch.setattr(_masks, "_mask_kernels", None)
    kernels = _drop_and_gradients(x, upstream, rate, keys)
    for got, expected in zip(native, kernels, strict=True):
        # Bit for bit, NaN where the torch path has NaN (a dropped infinity).
        np.testing.assert_array_equal(got.view(np.int32), expected.view(np.int32))


@needs_native
def test_native_drop_serves_only_contiguous_float32_cpu_tensors_of_the_mask_shape():
    import torch

    x = torch.ones(8, 6)
    assert _masks._native_usable(x, (8, 6))
    assert not _masks._native_usable(x, (8, 1))  # a broadcast mask
    assert not _masks._native_usable(x.T, (6, 8))  # strided
    assert not _masks._native_usable(x.double(), (8, 6))
    assert not _masks._native_usable(x.half(), (8, 6))
    assert not _masks._native_usable(torch.ones(8, 6, device="meta"), (8, 6))


@needs_native
@pytest.mark.parametrize("bits", [0, 3, 32])
def test_native_kernels_refuse_a_draw_width_they_do_not_define(bits):
    import torch

    words = torch.zeros(1, dtype=torch.int32)
    expected = (
        "Invalid value received for argument `bits`. Expected one of 1, 2, 4, 8, "
        f"16. Received: bits={bits}"
    )
    with pytest.raises(ValueError, match=re.escape(expected)):
        _masks._mask_kernels.keep_words(words.data_ptr(), 1, 32, 1, 2, bits, 1)


@needs_native
def test_native_kernels_refuse_sizes_their_buffers_cannot_hold():
    import torch

    words = torch.zeros(2, dtype=torch.int32)
    x = torch.ones(65)
    kernels = _masks._mask_kernels
    with pytest.raises(ValueError, match=re.escape("Received: words=2")):
        kernels.keep_words(words.data_ptr(), 2, 65, 1, 2, 1, 1)  # needs 3 words
    with pytest.raises(ValueError, match=re.escape("Received: words=2")):
        kernels.apply_keep_words(
            x.data_ptr(), x.data_ptr(), 65, words.data_ptr(), 2, 2.0
        )
    with pytest.raises(ValueError, match=re.escape("Received: n=-1")):
        kernels.keep_words(words.data_ptr(), 2, -1, 1, 2, 1, 1)
    with pytest.raises(ValueError, match=re.escape("Received: address=0")):
        kernels.apply_keep_words(0, x.data_ptr(), 64, words.data_ptr(), 2, 2.0)


@needs_native
@pytest.mark.parametrize("threads", [0, -2])
def test_native_kernels_refuse_a_thread_count_below_one(threads):
    import torch

    words = torch.zeros(1, dtype=torch.int32)
    x = torch.ones(32)
    kernels = _masks._mask_kernels
    expected = (
        "Invalid value received for argument `threads`. Expected a positive "
        f"thread count. Received: threads={threads}"
    )
    with pytest.raises(ValueError, match=re.escape(expected)):
        kernels.keep_words(words.data_ptr(), 1, 32, 1, 2, 1, 1, threads)
    with pytest.raises(ValueError, match=re.escape(expected)):
        kernels.apply_keep_words(
            x.data_ptr(), x.data_ptr(), 32, words.data_ptr(), 1, 2.0, threads
        )


def _transformed_drops(device="cpu"):
    """Dropout under vmap, torch.func.grad and forward-mode AD, in torch."""
    import torch
    import torch.autograd.forward_ad as forward_ad

    x = torch.from_numpy(np.random.default_rng(1).normal(size=(6, 40)).astype("f4"))
    x = x.to(device)

    def drop(x):
        return _masks.drop(x, tuple(x.shape), 0.3, (5, 6))

    results = [
        keras.ops.vectorized_map(drop, x),
        torch.func.grad(lambda x: (drop(x) ** 2).sum())(x),
    ]
    with forward_ad.dual_level():
        primal, tangent = forward_ad.unpack_dual(
            drop(forward_ad.make_dual(x, torch.full_like(x, 3.0)))
        )
        results += [primal.detach(), tangent]
    return [_numpy(result) for result in results]


@needs_native
def test_native_drop_under_vmap_func_and_forward_ad_matches_the_torch_kernels(
    monkeypatch,
):
    # Transforms whose tensors have no storage of their own take the torch
    # kernels; forward-mode AD runs the native forward and its jvp.
    native = _transformed_drops()
    monkeypatch.setattr(_masks, "_mask_kernels", None)
    for got, expected in zip(native, _transformed_drops(), strict=True):
        np.testing.assert_array_equal(got, expected)


@needs_native
def test_native_kernels_stay_out_of_torch_jit_tracing():
    import torch

    seen = []

    def record(x):
        seen.append(_masks._native_usable(x, tuple(x.shape)))
        return x * 2

    torch.jit.trace(record, torch.ones(4, 3), check_trace=False)
    assert seen == [False]
    assert _masks._native_usable(torch.ones(4, 3), (4, 3))


def _triton_device():
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _bits(tensor):
    """A float tensor's bit patterns, as NumPy integers (bfloat16 too)."""
    import torch

    tensor = tensor.detach().cpu()
    width = {4: torch.int32, 2: torch.int16}[tensor.element_size()]
    return tensor.view(width).numpy()


def _drops_and_gradients(x, upstream, rate, keys, mask_shape):
    """`drop`'s output, gradient and second-order gradient, as bit patterns."""
    import torch

    x = x.clone().requires_grad_(True)
    y = _masks.drop(x, mask_shape, rate, keys)
    (grad,) = torch.autograd.grad(y, x, upstream, retain_graph=True)
    (first,) = torch.autograd.grad((y * y).sum(), x, create_graph=True)
    (second,) = torch.autograd.grad(first.sum(), x)
    return [_bits(t) for t in (y, grad, first, second)]


@needs_triton
@pytest.mark.parametrize("rate", LAYOUT_RATES + [1e-9, 0.999999])
@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
@pytest.mark.parametrize("mask_shape", [(37, 129), (37, 1), (1, 129)])
def test_triton_drop_gives_the_numbers_and_gradients_of_the_torch_kernels(
    mask_shape, dtype, rate, monkeypatch
):
    import torch

    if dtype == "float16" and 1 / (1 - rate) > np.finfo("float16").max:
        pytest.skip("the survivors' scale overflows float16")
    _skip_interpreted_bfloat16(dtype)
    rng = np.random.default_rng(5)
    values = rng.normal(size=(37, 129)).astype("float32")
    values[0, :6] = [np.nan, np.inf, -np.inf, -0.0, 1e-40, 3e38]
    device = _triton_device()
    x = torch.from_numpy(values).to(device, getattr(torch, dtype))
    # A strided upstream gradient: the kernel takes a contiguous copy.
    upstream = torch.from_numpy(rng.normal(size=(129, 37)).astype("float32")).T
    upstream = upstream.to(device, x.dtype)
    keys = (2024, -7)
    _force_triton(monkeypatch)
    launches = []
    launch = _masks._triton_kernels().launch
    monkeypatch.setattr(
        _masks._triton_kernels(),
        "launch",
        lambda *args: launches.append(1) or launch(*args),
    )
    triton = _drops_and_gradients(x, upstream, rate, keys, mask_shape)
    assert launches  # the kernel ran
    monkeypatch.setattr(_masks, "_TRITON_DEVICES", ())
    monkeypatch.setattr(_masks, "_mask_kernels", None)
    monkeypatch.setattr(_masks, "_NUMPY_MAX_ELEMENTS", 0)
    kernels = _drops_and_gradients(x, upstream, rate, keys, mask_shape)
    for got, expected in zip(triton, kernels, strict=True):
        # Bit for bit, NaN where the torch path has NaN (a dropped infinity).
        np.testing.assert_array_equal(got, expected)


@needs_triton
@pytest.mark.parametrize("shape", [(0,), (1,), (1000, 1025)])
def test_triton_kernel_derives_the_keys_from_the_seed_state_on_the_device(
    shape, monkeypatch
):
    import torch

    _force_triton(monkeypatch)

    def host_read(keys):
        raise AssertionError("the seed state was read on the host")

    monkeypatch.setattr(_masks, "_host_keys", host_read)
    device = _triton_device()
    generator = keras.random.SeedGenerator(77)
    x = torch.ones(shape, device=device)
    for counter in range(2):
        state = generator.next()
        y = _masks.drop(x, shape, 0.3, _masks.SeedState(state))
        assert y.device == x.device
        keep = reference_keep(shape, 0.3, 77, counter)
        np.testing.assert_array_equal(_numpy(y) != 0, keep)
        np.testing.assert_array_equal(_numpy(y)[keep], np.float32(1 / 0.7))


@needs_triton
def test_triton_drop_under_vmap_func_and_forward_ad_matches_the_torch_kernels(
    monkeypatch,
):
    # Transforms whose tensors have no storage of their own take the torch
    # kernels; forward-mode AD runs the kernel and its jvp.
    _force_triton(monkeypatch)
    device = _triton_device()
    triton = _transformed_drops(device)
    monkeypatch.setattr(_masks, "_TRITON_DEVICES", ())
    monkeypatch.setattr(_masks, "_mask_kernels", None)
    for got, expected in zip(triton, _transformed_drops(device), strict=True):
        np.testing.assert_array_equal(got, expected)


@pytest.mark.skipif(BACKEND != "torch", reason="the Triton kernel is torch's")
def test_triton_drop_serves_only_float_tensors_on_a_gpu(monkeypatch):
    import torch

    monkeypatch.setattr(_masks, "_triton_kernels", lambda: object())
    assert not _masks._triton_usable(torch.ones(8, 6))  # the CPU
    assert not _masks._triton_usable(torch.ones(8, 6, device="meta"))
    monkeypatch.setattr(_masks, "_TRITON_DEVICES", ("cpu",))
    assert _masks._triton_usable(torch.ones(8, 6))
    assert _masks._triton_usable(torch.ones(8, 6, dtype=torch.bfloat16))
    assert not _masks._triton_usable(torch.ones(8, 6, dtype=torch.float64))
    seen = []

    def record(x):
        seen.append(_masks._triton_usable(x))
        return x * 2

    torch.jit.trace(record, torch.ones(4, 3), check_trace=False)
    torch.vmap(record)(torch.ones(4, 3))
    assert seen == [False, False]
    monkeypatch.setattr(_masks, "_triton_kernels", lambda: None)  # no Triton
    assert not _masks._triton_usable(torch.ones(8, 6))


@pytest.mark.skipif(BACKEND != "torch", reason="torch.inference_mode is torch's")
def test_masks_drawn_inside_torch_inference_mode_leave_training_working():
    import torch

    layer = Dropout(0.5, seed=1)
    # Larger than any mask drawn before, so the reused buffer is regrown here.
    x = torch.ones(4096, 257)
    with torch.inference_mode():
        inside = _numpy(layer(x, training=True))
    outside = _numpy(layer(x, training=True))
    assert inside.shape == outside.shape == (4096, 257)
    assert 0 < np.mean(outside == 0) < 1


@pytest.mark.parametrize("rate", [0.1, 0.5, 0.9])
def test_zero_fraction_close_to_rate(rate):
    n = 200 * 500
    y = _numpy(Dropout(rate, seed=3)(_ones((200, 500)), training=True))
    # The number of zeros is Binomial(n, p) with p the effective rate, within
    # 2**-17 of `rate`. Its standard deviation is sqrt(p (1 - p) / n) as a
    # fraction: 0.0016 at most for n = 1e5. Six standard deviations plus the
    # quantization error bound a correct implementation (two-sided tail
    # probability 2e-9).
    bound = 6 * math.sqrt(rate * (1 - rate) / n) + 2**-17
    assert abs(np.mean(y == 0) - rate) < bound


@pytest.mark.parametrize("rate", [0.5, 0.25, 0.125, 0.3])  # 1, 2, 4, 16 bits
def test_draws_sharing_a_hash_word_are_unbiased_and_uncorrelated(rate):
    # One 32-bit word gives 32 one-bit draws at rate 0.5, 16 two-bit draws at
    # 0.25, 8 four-bit draws at 0.125. Each position within a word must drop
    # with probability p = rate, and draws at every distance L = 1..31 apart
    # independently (a draw reusing another's bits repeats at some L < 32).
    # Position: each of the 32 positions has m = n / 32 = 3125 draws, so its
    # zero fraction has standard deviation sqrt(p (1 - p) / m).
    # Distance L: the m = n - L products D_i D_{i+L} of independent
    # Bernoulli(p) indicators have mean p**2 and variance p**2 (1 - p**2);
    # the m - L pairs of products sharing an indicator have covariance
    # p**3 (1 - p), and all others 0. The fraction of both dropped has
    # variance (m p**2 (1 - p**2) + 2 (m - L) p**3 (1 - p)) / m**2.
    # Six standard deviations: two-sided tail 2e-9 per check, 1.3e-7 over all
    # 63 checks.
    n = 200 * 500
    p = rate
    y = _numpy(Dropout(rate, seed=8)(_ones((200, 500)), training=True))
    dropped = (y == 0).reshape(-1)
    for position in range(32):
        fraction = np.mean(dropped[position::32])
        assert abs(fraction - p) < 6 * math.sqrt(p * (1 - p) / (n / 32))
    for distance in range(1, 32):
        m = n - distance
        both = np.mean(dropped[distance:] & dropped[:-distance])
        variance = m * p**2 * (1 - p**2) + 2 * (m - distance) * p**3 * (1 - p)
        assert abs(both - p**2) < 6 * math.sqrt(variance) / m, distance


def test_survivors_scaled_exactly_by_inverse_keep_probability():
    rate = 0.3
    x = np.random.default_rng(2).uniform(0.5, 2.0, size=(50, 40)).astype("float32")
    y = _numpy(Dropout(rate, seed=9)(x, training=True))
    kept = y != 0
    assert 0 < kept.sum() < kept.size
    np.testing.assert_array_equal(y[kept], x[kept] * np.float32(1 / (1 - rate)))


@pytest.mark.parametrize(
    "noise_shape, shared_axes",
    [((None, 1, None), (1,)), ((6, 1, 8), (1,)), ((1, 5, 1), (0, 2))],
)
def test_noise_shape_broadcasts_mask_over_size_one_axes(noise_shape, shared_axes):
    y = _numpy(
        Dropout(0.5, noise_shape=noise_shape, seed=4)(_ones((6, 5, 8)), training=True)
    )
    for axis in shared_axes:
        first = np.take(y, [0], axis=axis)
        np.testing.assert_array_equal(y, np.broadcast_to(first, y.shape))
    assert 0 < np.mean(y == 0) < 1
    resolved = tuple(
        d if d is not None else s for d, s in zip(noise_shape, y.shape, strict=True)
    )
    expected = np.broadcast_to(reference_keep(resolved, 0.5, 4, 0), y.shape)
    np.testing.assert_array_equal(y != 0, expected)


def test_noise_shape_of_wrong_rank_raises_naming_the_shape():
    layer = Dropout(0.5, noise_shape=(None, 1))
    message = (
        "`noise_shape` must have one entry per input dimension. Received: "
        "noise_shape=(None, 1) for an input of shape (2, 3, 4)"
    )
    # Layer.__call__ decorates the message with call arguments; call() does not.
    with pytest.raises(ValueError) as info:
        layer.call(keras.ops.ones((2, 3, 4)), training=True)
    assert str(info.value) == message
    with pytest.raises(ValueError, match=re.escape(message)):
        layer(_ones((2, 3, 4)), training=True)


def test_same_seed_same_masks_and_successive_calls_differ():
    x = _ones((20, 30))
    first, second = Dropout(0.5, seed=21), Dropout(0.5, seed=21)
    a1, a2 = _numpy(first(x, training=True)), _numpy(first(x, training=True))
    np.testing.assert_array_equal(a1, _numpy(second(x, training=True)))
    np.testing.assert_array_equal(a2, _numpy(second(x, training=True)))
    assert not np.array_equal(a1, a2)
    assert not np.array_equal(a1, _numpy(Dropout(0.5, seed=22)(x, training=True)))


def test_dropped_units_are_zero_and_kept_non_finite_values_pass():
    x = np.full((8, 8), np.inf, dtype="float32")
    x[::2] = -1.0
    y = _numpy(Dropout(0.5, seed=3)(x, training=True))
    keep = reference_keep((8, 8), 0.5, 3, 0)
    np.testing.assert_array_equal(y[keep], x[keep] * 2)
    np.testing.assert_array_equal(y[~keep & (x == -1)], 0)
    # Like Keras's TensorFlow dropout, a dropped infinity becomes NaN.
    assert np.all(np.isnan(y[~keep & np.isinf(x)]))


def test_rate_one_returns_zeros_without_nan():
    x = np.array([[1.0, np.inf, -np.inf, np.nan]], dtype="float32")
    y = _numpy(Dropout(1.0)(x, training=True))
    np.testing.assert_array_equal(y, np.zeros_like(x))


def test_rate_zero_is_identity_in_training():
    x = np.random.default_rng(3).normal(size=(4, 4)).astype("float32")
    np.testing.assert_array_equal(_numpy(Dropout(0.0)(x, training=True)), x)


def test_gradient_is_mask_times_inverse_keep_probability():
    rate = 0.25
    layer = Dropout(rate, seed=5)
    x = _ones((6, 7))
    expected = reference_keep((6, 7), rate, 5, 0) * np.float32(1 / (1 - rate))
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        x = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(layer(x, training=True))
        grad = tape.gradient(loss, x)
    elif backend == "jax":
        import jax

        state = layer.seed_generator.state.value

        def loss_fn(x):
            with keras.StatelessScope(
                state_mapping=[(layer.seed_generator.state, state)]
            ):
                return keras.ops.sum(layer(x, training=True))

        grad = jax.grad(loss_fn)(x)
    else:
        import torch

        x = torch.tensor(x, requires_grad=True)
        layer(x, training=True).sum().backward()
        grad = x.grad
    np.testing.assert_array_equal(_numpy(grad), expected)


def test_mixed_precision_computes_in_float16():
    layer = Dropout(0.5, seed=1, dtype="mixed_float16")
    y = layer(np.ones((4, 4), dtype="float16"), training=True)
    assert keras.backend.standardize_dtype(y.dtype) == "float16"
    assert set(np.unique(_numpy(y)).tolist()) <= {0.0, 2.0}


def test_mask_propagates_like_keras():
    inputs = keras.Input((3, 2))
    masked = keras.layers.Masking()(inputs)
    outputs = Dropout(0.5)(masked)
    assert outputs._keras_mask is not None


def test_fit_advances_the_seed_state_once_per_step():
    model = keras.Sequential(
        [keras.Input((4,)), Dropout(0.5, seed=2), keras.layers.Dense(1)]
    )
    model.compile(optimizer="sgd", loss="mse")
    x, y = _ones((12, 4)), _ones((12, 1))
    model.fit(x, y, batch_size=4, epochs=2, verbose=0)
    state = _numpy(model.layers[0].seed_generator.state)
    assert state.tolist() == [2, 6]


def test_save_load_restores_seed_state_and_continues_the_masks(tmp_path):
    model = keras.Sequential([keras.Input((40,)), Dropout(0.5, seed=8)])
    x = _ones((10, 40))
    model(x, training=True)
    restored = assert_model_save_round_trip(model, x, tmp_path)
    np.testing.assert_array_equal(
        _numpy(model(x, training=True)), _numpy(restored(x, training=True))
    )
    np.testing.assert_array_equal(
        _numpy(restored.layers[0].seed_generator.state), [8, 2]
    )


@settings(max_examples=10, deadline=None)
@given(
    shape=st.lists(st.integers(1, 6), min_size=1, max_size=4).map(tuple),
    rate=st.floats(0.0, 1.0, allow_nan=False),
    seed=st.integers(0, 2**31 - 1),
)
def test_outputs_are_zero_or_exactly_scaled_for_any_shape_and_rate(shape, rate, seed):
    x = np.random.default_rng(seed).uniform(1, 2, size=shape).astype("float32")
    y = _numpy(Dropout(rate, seed=seed)(x, training=True))
    assert y.shape == x.shape
    if rate == 1.0:
        np.testing.assert_array_equal(y, 0)
        return
    np.testing.assert_array_equal(y != 0, reference_keep(shape, rate, seed, 0))
    kept = y != 0
    np.testing.assert_array_equal(y[kept], x[kept] * np.float32(1 / (1 - rate)))


@settings(max_examples=50, deadline=None)
@given(rate=st.floats(0.0, 1.0, allow_nan=False))
def test_effective_rate_within_two_to_minus_sixteen_of_rate(rate):
    effective = _masks.drop_threshold(rate) / 2**16
    assert abs(effective - rate) <= 2**-17


def _message(name, expected, value):
    return (
        f"Invalid value received for argument `{name}`. Expected {expected}. "
        f"Received: {name}={value!r}"
    )


@pytest.mark.parametrize(
    "rate", [-0.1, 1.5, float("nan"), float("inf"), True, "0.5", None]
)
def test_bad_rate_raises(rate):
    with pytest.raises(ValueError) as info:
        Dropout(rate)
    assert str(info.value) == _message("rate", "a float value between 0 and 1", rate)


@pytest.mark.parametrize(
    "noise_shape, expected",
    [
        ("abc", "a tuple or list of integers"),
        (5, "an iterable of integers (e.g., a tuple or list)"),
        ((2, 0), "all dimensions to be positive integers or None"),
        ((2, -1), "all dimensions to be positive integers or None"),
        ((2.0, 3), "all elements to be integers or None"),
        ((True, 3), "all elements to be integers or None"),
        (("2",), "all elements to be integers or None"),
        (("2", -1), "all elements to be integers or None"),
    ],
)
def test_bad_noise_shape_raises(noise_shape, expected):
    with pytest.raises(ValueError) as info:
        Dropout(0.5, noise_shape=noise_shape)
    assert str(info.value) == _message("noise_shape", expected, noise_shape)


@pytest.mark.parametrize("seed", [-1, 1.5, "1", True])
def test_bad_seed_raises(seed):
    with pytest.raises(ValueError) as info:
        Dropout(0.5, seed=seed)
    assert str(info.value) == _message("seed", "an int >= 0", seed)


def test_from_config_validates_too():
    config = Dropout(0.5).get_config()
    config["rate"] = 2.0
    with pytest.raises(ValueError) as info:
        Dropout.from_config(config)
    assert str(info.value) == _message("rate", "a float value between 0 and 1", 2.0)


def test_config_round_trip_turns_lists_into_tuples():
    clone = assert_config_round_trip(Dropout(0.5, noise_shape=[None, 1]))
    assert clone.noise_shape == (None, 1)


# Drop-in fidelity: Keras's own Dropout is the oracle.

# Each phrase is the one Keras 3.15's checks print for that kind of mistake.
_KERAS_PHRASES = [
    (
        dict(rate=1.5),
        r"Invalid value received for argument `rate`\. Expected a "
        r"float value between 0 and 1\.",
    ),
    (dict(rate=-0.1), r"Expected a float value between 0 and 1\."),
    (dict(rate=0.5, noise_shape="abc"), r"Expected a tuple or list of integers\."),
    (dict(rate=0.5, noise_shape=5), r"Expected an iterable of integers"),
    (
        dict(rate=0.5, noise_shape=(2, "x")),
        r"Invalid value received for argument "
        r"`noise_shape`\. Expected all elements to be integers or None\.",
    ),
    (
        dict(rate=0.5, noise_shape=(2, 0)),
        r"Expected all dimensions to be positive "
        r"integers or None\.",
    ),
    (
        dict(rate=0.5, noise_shape=(-1,)),
        r"Expected all dimensions to be positive "
        r"integers or None\.",
    ),
]


@pytest.mark.parametrize("kwargs, phrase", _KERAS_PHRASES)
def test_error_matches_the_regex_that_matches_keras_message(kwargs, phrase):
    theirs = raised_message(lambda: keras.layers.Dropout(**kwargs))
    ours = raised_message(lambda: Dropout(**kwargs))
    assert re.search(phrase, theirs)
    assert re.search(phrase, ours)
    name = "rate" if "noise_shape" not in kwargs else "noise_shape"
    assert ours.endswith(f"Received: {name}={kwargs[name]!r}")


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(rate=0.3),
        dict(rate=0.0),
        dict(rate=1),
        dict(rate=0.5, noise_shape=[None, 1, 4], seed=7),
        dict(rate=0.25, seed=0, dtype="mixed_float16", name="d"),
    ],
)
def test_config_attributes_and_state_are_keras(kwargs):
    attributes = ("rate", "seed", "noise_shape", "supports_masking", "built")
    assert_same_public_state(
        Dropout(**kwargs), keras.layers.Dropout(**kwargs), attributes
    )


def test_output_shape_and_spec_are_keras():
    ours, theirs = Dropout(0.5), keras.layers.Dropout(0.5)
    assert ours.compute_output_shape((None, 3, 4)) == theirs.compute_output_shape(
        (None, 3, 4)
    )
    symbolic = keras.KerasTensor((None, 3), dtype="float16")
    mine, keras_spec = (layer.compute_output_spec(symbolic) for layer in (ours, theirs))
    assert (mine.shape, mine.dtype) == (keras_spec.shape, keras_spec.dtype)


@pytest.mark.parametrize("rate", [0.0, 0.5])
def test_subclass_overriding_build_is_built_only_when_called(rate):
    assert_build_rule_like_keras(Dropout, keras.layers.Dropout, (rate,), _ones((2, 5)))


@pytest.mark.parametrize("rate", [0.0, 0.5])
def test_weights_files_load_into_keras_dropout_and_back(rate, tmp_path):
    assert_weights_files_interchangeable(
        lambda: Dropout(rate, seed=3),
        lambda: keras.layers.Dropout(rate, seed=3),
        _ones((4, 5)),
        tmp_path,
    )


def test_weights_file_of_keras_reg_0_1_still_loads_with_its_seed_state(tmp_path):
    # keras_reg 0.1 wrote the seed state as a variable named after
    # `DropoutFamilyLayer._SEED_STATE_KEY` next to the layer's (absent) weights.
    import h5py

    model = keras.Sequential([keras.Input((4,)), Dropout(0.5, seed=8, name="dropout")])
    path = os.path.join(str(tmp_path), "old.weights.h5")
    model.save_weights(path)
    with h5py.File(path, "a") as archive:
        archive["layers/dropout/vars"].create_dataset(
            "seed_generator_state", data=np.array([8, 5], "int32")
        )
    model.load_weights(path)
    assert _numpy(model.layers[0].seed_generator.state).tolist() == [8, 5]


def test_seed_state_lives_in_the_archive_assets(tmp_path):
    import zipfile

    model = keras.Sequential([keras.Input((4,)), Dropout(0.5, seed=8)])
    model(_ones((2, 4)), training=True)
    path = os.path.join(str(tmp_path), "model.keras")
    model.save(path)
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
    assert any(name.endswith("seed_generator_state.npy") for name in names)
    restored = keras.saving.load_model(path)
    assert _numpy(restored.layers[0].seed_generator.state).tolist() == [8, 1]
