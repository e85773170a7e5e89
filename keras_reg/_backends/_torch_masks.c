/* Native CPU kernels for keras_reg's dropout masks (`torch_masks.py`).
 *
 * The masks are those `keras_reg/layers/_masks.py` specifies: hash word i
 * (from 0) is fmix32(fmix32(((i + 1) * 0x9E3779B9) ^ k1) ^ k2), with keys
 * (fmix32(seed ^ 0x5BD1E995), fmix32(counter ^ 0x27D4EB2F)), and gives
 * 32 / bits draws of `bits` bits, lowest bits first; a draw below
 * `bits_threshold` drops its element.
 *
 * keep_words() packs the mask one bit per element (bit r of word g: element
 * 32 * g + r is kept); apply_keep_words() multiplies float32 elements by
 * `scale` where kept and by 0 where dropped, in one pass (a dropped NaN or
 * infinity gives NaN, as `x * multiplier` does); clear_blocks() clears the
 * bits of DropBlock2D's blocks in such words. Addresses come as integers
 * (tensor.data_ptr()) of contiguous arrays the caller sized. The loops run
 * without the GIL and, built with OpenMP (setup.py), on `threads` threads;
 * every word is computed on its own, so the result does not depend on the
 * thread count. Masks under 2048 words stay on one thread.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* An AVX2 clone beside the baseline one, picked at load time, where the
 * toolchain supports function multiversioning (GCC or Clang, glibc, x86-64). */
#if defined(__x86_64__) && defined(__GNUC__) && defined(__GLIBC__)
#define MULTIVERSION __attribute__((target_clones("avx2", "default")))
#else
#define MULTIVERSION
#endif

#define BLOCK 64 /* keep words per hashing block */
#define TEAM(words, iterations, threads)                                       \
    ((words) < 2048 || (threads) < 2 ? 1                                       \
     : (iterations) < (threads)      ? (int)(iterations)                       \
                                     : (threads))
#ifdef _OPENMP
#define PRAGMA(x) _Pragma(#x)
#define OMP_FOR(team) PRAGMA(omp parallel for schedule(static) num_threads(team) if (team > 1))
#define OPENMP 1
#else
#define OMP_FOR(team)
#define OPENMP 0
#endif

static inline uint32_t fmix32(uint32_t h) {
    h ^= h >> 16;
    h *= 0x85EBCA6Bu;
    h ^= h >> 13;
    h *= 0xC2B2AE35u;
    return h ^ (h >> 16);
}

/* Writes `words` keep words for BITS-bit draws: keep word g packs the 32
 * draws of hash words g * BITS to g * BITS + BITS - 1, hashed BLOCK keep
 * words at a time. */
#define DEFINE_KEEP(BITS)                                                      \
    MULTIVERSION static void keep_##BITS(uint32_t *out, int64_t words,         \
                                         uint32_t k1, uint32_t k2,             \
                                         uint32_t threshold, int threads) {    \
        const uint32_t field = (uint32_t)((1ull << BITS) - 1u);                \
        int team = TEAM(words, (words + BLOCK - 1) / BLOCK, threads);          \
        OMP_FOR(team)                                                          \
        for (int64_t g0 = 0; g0 < words; g0 += BLOCK) {                        \
            uint32_t hashed[BLOCK * BITS];                                     \
            int count = words - g0 < BLOCK ? (int)(words - g0) : BLOCK;        \
            for (int i = 0; i < count * BITS; i++) {                           \
                uint32_t index = (uint32_t)(g0 * BITS + i + 1);                \
                hashed[i] = fmix32(fmix32((index * 0x9E3779B9u) ^ k1) ^ k2);   \
            }                                                                  \
            for (int g = 0; g < count; g++) {                                  \
                if (BITS == 1 && threshold == 1) { /* kept where the bit is 1 */ \
                    out[g0 + g] = hashed[g];                                   \
                    continue;                                                  \
                }                                                              \
                uint32_t word = 0;                                             \
                for (int q = 0; q < BITS; q++)                                 \
                    for (int m = 0; m < 32 / BITS; m++) {                      \
                        uint32_t draw = (hashed[g * BITS + q] >> (BITS * m)) & field; \
                        word |= (uint32_t)(draw >= threshold) << (q * 32 / BITS + m); \
                    }                                                          \
                out[g0 + g] = word;                                            \
            }                                                                  \
        }                                                                      \
    }

DEFINE_KEEP(1)
DEFINE_KEEP(2)
DEFINE_KEEP(4)
DEFINE_KEEP(8)
DEFINE_KEEP(16)

static inline float masked(float x, uint32_t word, int r, uint32_t scale_bits) {
    uint32_t bits = scale_bits & (0u - ((word >> r) & 1u));
    float multiplier;
    memcpy(&multiplier, &bits, sizeof multiplier);
    return x * multiplier;
}

MULTIVERSION static void apply_words(const float *src, float *dst, int64_t n,
                                     const uint32_t *words, float scale,
                                     int threads) {
    uint32_t scale_bits;
    memcpy(&scale_bits, &scale, sizeof scale_bits);
    int64_t full = n / 32;
    int team = TEAM(full, full, threads);
    OMP_FOR(team)
    for (int64_t g = 0; g < full; g++)
        for (int r = 0; r < 32; r++)
            dst[32 * g + r] = masked(src[32 * g + r], words[g], r, scale_bits);
    for (int64_t e = 32 * full; e < n; e++)
        dst[e] = masked(src[e], words[e / 32], (int)(e % 32), scale_bits);
}

static PyObject *keep_words(PyObject *self, PyObject *args) {
    unsigned long long out;
    Py_ssize_t n;
    unsigned int seed, counter, threshold;
    int bits, threads;
    if (!PyArg_ParseTuple(args, "KnIIiIi", &out, &n, &seed, &counter, &bits,
                          &threshold, &threads))
        return NULL;
    uint32_t k1 = fmix32(seed ^ 0x5BD1E995u), k2 = fmix32(counter ^ 0x27D4EB2Fu);
    int64_t words = ((int64_t)n + 31) / 32;
    uint32_t *dst = (uint32_t *)(uintptr_t)out;
    Py_BEGIN_ALLOW_THREADS
    switch (bits) {
    case 1: keep_1(dst, words, k1, k2, threshold, threads); break;
    case 2: keep_2(dst, words, k1, k2, threshold, threads); break;
    case 4: keep_4(dst, words, k1, k2, threshold, threads); break;
    case 8: keep_8(dst, words, k1, k2, threshold, threads); break;
    default: keep_16(dst, words, k1, k2, threshold, threads); break;
    }
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

static PyObject *apply_keep_words(PyObject *self, PyObject *args) {
    unsigned long long src, dst, words;
    Py_ssize_t n;
    float scale;
    int threads;
    if (!PyArg_ParseTuple(args, "KKnKfi", &src, &dst, &n, &words, &scale, &threads))
        return NULL;
    Py_BEGIN_ALLOW_THREADS
    apply_words((const float *)(uintptr_t)src, (float *)(uintptr_t)dst, (int64_t)n,
                (const uint32_t *)(uintptr_t)words, scale, threads);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

/* Clears, in keep words, the bits of `count` blocks of block_h x block_w
 * elements: block i's element (r, c) is starts[i] + r * row_stride +
 * c * col_stride. One thread: blocks overlap. */
static PyObject *clear_blocks(PyObject *self, PyObject *args) {
    unsigned long long words, starts;
    Py_ssize_t count, block_h, block_w, row_stride, col_stride;
    if (!PyArg_ParseTuple(args, "KKnnnnn", &words, &starts, &count, &block_h,
                          &block_w, &row_stride, &col_stride))
        return NULL;
    uint32_t *w = (uint32_t *)(uintptr_t)words;
    const int64_t *s = (const int64_t *)(uintptr_t)starts;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < count; i++)
        for (Py_ssize_t r = 0; r < block_h; r++)
            for (Py_ssize_t c = 0; c < block_w; c++) {
                int64_t e = s[i] + r * row_stride + c * col_stride;
                w[e >> 5] &= ~(1u << (e & 31));
            }
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"keep_words", keep_words, METH_VARARGS,
     "keep_words(out, n, seed, counter, bits, bits_threshold, threads)"},
    {"apply_keep_words", apply_keep_words, METH_VARARGS,
     "apply_keep_words(src, dst, n, words, scale, threads)"},
    {"clear_blocks", clear_blocks, METH_VARARGS,
     "clear_blocks(words, starts, count, block_h, block_w, row_stride, col_stride)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_torch_masks",
    "Native CPU kernels for keras_reg's dropout masks.", -1, methods,
};

PyMODINIT_FUNC PyInit__torch_masks(void) {
    PyObject *m = PyModule_Create(&module);
    /* Whether `threads` is honoured (built with OpenMP) or ignored. */
    if (m != NULL && PyModule_AddIntConstant(m, "openmp", OPENMP) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
