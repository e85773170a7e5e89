"""The dropout family's masks: the documented algorithm against an independent
NumPy implementation (`reference_keep`), on the portable path and on every
backend's fast path, and the two paths against each other (`portable_only`)."""

import importlib.util
import os
import shutil
import subprocess
import sys
import sysconfig

import keras
import numpy as np
import pytest

from keras_reg._backends import fast_path, portable_only
from keras_reg.layers import Dropout, _masks
from tests.test_dropout import reference_keep

BACKEND = keras.backend.backend()


def _numpy(x):
    return keras.ops.convert_to_numpy(x)


def _state(seed, counter):
    return keras.ops.convert_to_tensor(np.array([seed, counter], "int32"))


def _torch_masks():
    return fast_path("masks") if BACKEND == "torch" else None


def _native():
    """The C kernels, where the torch backend's fast path loaded them."""
    module = _torch_masks()
    return None if module is None else module.native


needs_native = pytest.mark.skipif(
    _native() is None,
    reason="the C kernels serve the torch backend, where they were built",
)

# On PyTorch, float32 CPU tensors masked elementwise take the C kernels where
# they were built ("native"); without them ("hashed"), and for every other
# tensor, NumPy hashes and torch expands the mask.
TORCH_ROUTES = ["native", "hashed"] if BACKEND == "torch" else ["default"]


@pytest.fixture(params=TORCH_ROUTES)
def torch_route(request, monkeypatch):
    if request.param == "native" and _native() is None:
        pytest.skip("the C kernels were not built (no C compiler)")
    if request.param == "hashed":
        monkeypatch.setattr(_torch_masks(), "native", None)
    return request.param


def _drop_both_ways(x, shape, rate, state):
    """`drop` on the fast path and on the portable path."""
    fast = _masks.drop(x, shape, rate, state)
    with portable_only():
        portable = _masks.drop(x, shape, rate, state)
    return fast, portable


def test_tensorflow_and_torch_have_one_fast_path_module_jax_none():
    # On JAX, where Keras compiles every training step, the portable path
    # measured as fast as a compiled mask function.
    module = fast_path("masks")
    if BACKEND == "jax":
        assert module is None
    else:
        assert module.__name__ == f"keras_reg._backends.{BACKEND}_masks"
    with portable_only():
        assert fast_path("masks") is None


# Rates drawn with 16, 1, 2, 2, 4 and 8 bits per element.
LAYOUT_RATES = [0.37, 0.5, 0.25, 0.75, 0.0625, 3 / 256]


@pytest.mark.parametrize("rate", LAYOUT_RATES)
@pytest.mark.parametrize("shape", [(1,), (7,), (2, 3, 5), (64, 33)])
def test_fast_path_and_portable_path_draw_the_documented_mask(shape, rate, torch_route):
    masks = _drop_both_ways(keras.ops.ones(shape), shape, rate, _state(123456789, 42))
    expected = reference_keep(shape, rate, 123456789, 42)
    for mask in masks:
        np.testing.assert_array_equal(_numpy(mask) != 0, expected)


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
def test_masks_follow_a_seed_generators_state_in_its_own_dtype(seed):
    # A generator's state is int64 on TensorFlow, uint32 on JAX: both paths
    # derive the keys of `(seed, counter)` from it.
    generator = keras.random.SeedGenerator(seed)
    for counter in range(3):
        state = generator.next()
        for shape in [(5, 7), (64, 33)]:
            masks = _drop_both_ways(keras.ops.ones(shape), shape, 0.4, state)
            for mask in masks:
                keep = reference_keep(shape, 0.4, seed, counter)
                np.testing.assert_array_equal(_numpy(mask) != 0, keep)


# Rates whose 16-bit threshold is 0 (nothing dropped), 2**16 (everything
# dropped), a typical one, 1- and 2-bit draws, and one whose scale
# 1 / (1 - rate) rounds differently to float16 directly than through float32.
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
    values = np.random.default_rng(0).normal(size=x_shape).astype("float32")
    x = keras.ops.cast(keras.ops.convert_to_tensor(values), dtype)

    def as_float64(tensor):
        return _numpy(keras.ops.cast(tensor, "float64"))

    fast, portable = _drop_both_ways(x, mask_shape, rate, _state(987, 6))
    np.testing.assert_array_equal(as_float64(fast), as_float64(portable))
    # The reference: the documented mask, and 1 / (1 - rate) rounded to
    # float32 first for every dtype but float64.
    keep = reference_keep(mask_shape, rate, 987, 6)
    scale = 1 / (1 - rate)
    scale = np.float64(scale) if dtype == "float64" else np.float32(scale)
    # Dropped units are 0 even where the scale overflows the dtype (float16
    # at rate 0.999999: kept units are then infinite, as in Keras).
    kept = as_float64(keras.ops.multiply(x, keras.ops.cast(scale, dtype)))
    expected = np.where(np.broadcast_to(keep, x_shape), kept, 0.0)
    np.testing.assert_array_equal(as_float64(fast), expected)


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

    module, calls = fast_path("masks"), []
    function = module._compiled_multiplier()
    monkeypatch.setattr(
        module, "_compiled_multiplier", lambda: calls.append(1) or function
    )
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
    monkeypatch.setattr(fast_path("masks"), "_compiled_multiplier", None)
    y = _numpy(Dropout(0.4, seed=5)(np.ones((4, 6, 5), "float32"), training=True))
    np.testing.assert_array_equal(y != 0, reference_keep((4, 6, 5), 0.4, 5, 0))


def _c_compiler():
    """The compiler setup.py uses (`CC`, else Python's), or a skip."""
    command = (os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc").split()
    if shutil.which(command[0]) is None:
        pytest.skip(f"no C compiler ({command[0]}): masks are hashed by NumPy")
    return command


def test_native_kernels_are_built_where_a_c_compiler_exists():
    # setup.py builds them as an optional extension, and tests/run_backends.py
    # builds them in this tree: without this check a failed build would only
    # turn the native tests into skips.
    _c_compiler()
    assert importlib.util.find_spec("keras_reg._backends._torch_masks") is not None
    if BACKEND == "torch":
        assert _native() is not None


def test_native_kernels_are_loaded_on_the_torch_backend_only():
    # Built with OpenMP they bring libgomp: loaded ahead of torch's copy on
    # another backend, it would be the one torch binds to if imported later.
    loaded = "keras_reg._backends._torch_masks" in sys.modules
    assert loaded == (BACKEND == "torch" and _native() is not None)


@needs_native
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
    assert _native().openmp == 1
    if not os.path.exists(
        os.path.join(os.path.dirname(torch.__file__), "lib", "libgomp.so.1")
    ):
        pytest.skip("this torch does not ship libgomp.so.1 (a renamed copy, or none)")
    # One runtime, resolved by the kernels and by torch alike: one thread pool.
    assert _torch_masks().shares_torch_openmp()
    assert _torch_masks().native_threads() == torch.get_num_threads()


def _unpacked(words, n):
    """The keep bits of packed int32 words, element e at bit e % 32 of word e // 32."""
    words = np.asarray(words).view(np.uint32)
    return ((words[:, None] >> np.arange(32, dtype=np.uint32)) & 1).reshape(-1)[:n]


def _keep_and_apply(x, rate, seed, counter, threads):
    """The C kernels' packed keep words and `x * multiplier` for a float32 `x`."""
    import torch

    n = x.numel()
    bits, _, bits_threshold = _masks.draw_layout(_masks.drop_threshold(rate))
    words = torch.full(((n + 31) // 32,), -1, dtype=torch.int32)
    _native().keep_words(
        words.data_ptr(), n, seed, counter, bits, bits_threshold, threads
    )
    out = torch.full_like(x, np.nan)
    _native().apply_keep_words(
        x.data_ptr(), out.data_ptr(), n, words.data_ptr(), 2.0, threads
    )
    return _unpacked(words.numpy(), n), out.numpy()


@needs_native
@pytest.mark.parametrize("rate", LAYOUT_RATES + [1e-9, 0.999999])
@pytest.mark.parametrize("n", [0, 1, 31, 32, 33, 1000, 65_537])
def test_native_keep_words_are_the_documented_mask(n, rate):
    import torch

    keep, _ = _keep_and_apply(torch.ones(n), rate, 9, 4, 1)
    np.testing.assert_array_equal(keep, reference_keep((n,), rate, 9, 4))


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
    for threads in (1, 2, 3, 8, 2, 3):  # repeated: races need not show at once
        keep, out = _keep_and_apply(x, rate, 3, 8, threads)
        np.testing.assert_array_equal(keep, expected_keep)
        np.testing.assert_array_equal(out, expected)


@needs_native
def test_native_kernels_run_single_threaded_beside_another_openmp_runtime(
    monkeypatch,
):
    import torch

    module = _torch_masks()
    addresses = {module.native.__file__: 1}
    monkeypatch.setattr(module, "_openmp_address", addresses.get)
    module.shares_torch_openmp.cache_clear()
    try:
        assert not module.shares_torch_openmp()
        assert module.native_threads() == 1
        x = torch.ones(3 * 65_536)
        y = _masks.drop(x, tuple(x.shape), 0.5, _state(5, 6))
    finally:
        module.shares_torch_openmp.cache_clear()
    keep = reference_keep(tuple(x.shape), 0.5, 5, 6)
    np.testing.assert_array_equal(y.numpy(), np.where(keep, 2.0, 0.0))


def _drop_and_gradients(x, upstream, rate, state):
    """`drop`'s output, its gradient and a second-order gradient, in torch."""
    import torch

    x = x.clone().requires_grad_(True)
    y = _masks.drop(x, tuple(x.shape), rate, state)
    (grad,) = torch.autograd.grad(y, x, upstream, retain_graph=True)
    # d/dx sum(y**2) = 2 y m; its derivative, kept differentiable, is 2 m**2.
    (first,) = torch.autograd.grad((y * y).sum(), x, create_graph=True)
    (second,) = torch.autograd.grad(first.sum(), x)
    return [t.detach().numpy() for t in (y, grad, first, second)]


@needs_native
@pytest.mark.parametrize("rate", LAYOUT_RATES)
def test_native_drop_gives_the_numbers_and_gradients_of_the_hashed_route(
    rate, monkeypatch
):
    import torch

    rng = np.random.default_rng(4)
    values = rng.normal(size=(37, 129)).astype("float32")
    values[0, :8] = [np.nan, np.inf, -np.inf, -0.0, 1e-40, -1e-40, 3e38, -3e38]
    x = torch.from_numpy(values)
    # A strided upstream gradient: the kernels take a contiguous copy.
    upstream = torch.from_numpy(rng.normal(size=(129, 37)).astype("float32")).T
    state = _state(2024, 7)
    native = _drop_and_gradients(x, upstream, rate, state)
    monkeypatch.setattr(_torch_masks(), "native", None)
    hashed = _drop_and_gradients(x, upstream, rate, state)
    for got, expected in zip(native, hashed, strict=True):
        # Bit for bit, NaN where the other route has NaN (a dropped infinity).
        np.testing.assert_array_equal(got.view(np.int32), expected.view(np.int32))


@needs_native
def test_native_kernels_serve_only_contiguous_float32_cpu_tensors_of_the_mask_shape():
    import torch

    module, x = _torch_masks(), torch.ones(8, 6)
    assert module._native_usable(x, (8, 6))
    assert not module._native_usable(x, (8, 1))  # a broadcast mask
    assert not module._native_usable(x.T, (6, 8))  # strided
    assert not module._native_usable(x.double(), (8, 6))
    assert not module._native_usable(x.half(), (8, 6))
    # Tensors on other devices take the portable path, on their device.
    meta = torch.ones(8, 6, device="meta")
    assert module.drop(meta, (8, 6), 0.5, _state(1, 2)) is None


def _transformed_drops(rate):
    """Dropout under vmap, torch.func.grad and forward-mode AD, in torch."""
    import torch
    import torch.autograd.forward_ad as forward_ad

    x = torch.from_numpy(np.random.default_rng(1).normal(size=(6, 40)).astype("f4"))

    def drop(x):
        return _masks.drop(x, tuple(x.shape), rate, _state(5, 6))

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


@pytest.mark.skipif(BACKEND != "torch", reason="torch's transforms")
@pytest.mark.parametrize("rate", [0.3, 0.5])
def test_drop_under_vmap_func_and_forward_ad_gives_the_portable_numbers(
    rate, torch_route
):
    # Transforms whose tensors have no storage of their own leave the C
    # kernels; forward-mode AD runs their forward pass and its jvp.
    fast = _transformed_drops(rate)
    with portable_only():
        portable = _transformed_drops(rate)
    for got, expected in zip(fast, portable, strict=True):
        np.testing.assert_array_equal(got, expected)


@needs_native
def test_native_kernels_stay_out_of_torch_jit_tracing():
    import torch

    seen = []

    def record(x):
        seen.append(_torch_masks()._native_usable(x, tuple(x.shape)))
        return x * 2

    torch.jit.trace(record, torch.ones(4, 3), check_trace=False)
    assert seen == [False]
    assert _torch_masks()._native_usable(torch.ones(4, 3), (4, 3))


@pytest.mark.skipif(BACKEND != "torch", reason="torch.inference_mode is torch's")
def test_masks_drawn_inside_torch_inference_mode_leave_training_working():
    import torch

    layer = Dropout(0.5, seed=1)
    x = torch.ones(4096, 257)
    with torch.inference_mode():
        inside = _numpy(layer(x, training=True))
    outside = _numpy(layer(x, training=True))
    assert inside.shape == outside.shape == (4096, 257)
    assert 0 < np.mean(outside == 0) < 1
