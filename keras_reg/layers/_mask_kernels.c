/* Native CPU kernels for the dropout family's masks (PyTorch backend).
 *
 * The masks are the ones `_masks.py` defines and every other path draws:
 * hash word i (counted from 0) is fmix32(fmix32(((i + 1) * 0x9E3779B9) ^ k1)
 * ^ k2) and gives 32 / bits draws of `bits` bits, lowest bits first; a draw
 * below `bits_threshold` drops its element.
 *
 * keep_words() writes the mask packed one bit per element: bit r of word g
 * is 1 where element 32 * g + r is kept. apply_keep_words() multiplies a
 * float32 array by `scale` where its element is kept and by 0 where it is
 * dropped, in one pass, as `x * multiplier` does on every other path (so a
 * dropped NaN or infinity gives NaN). The backward pass of dropout is the
 * same product applied to the gradient, from the same packed words: the
 * mask costs one bit per element between the two passes.
 *
 * Addresses are passed as integers (tensor.data_ptr()) with the element and
 * word counts, which are checked against each other; the caller checks that
 * the arrays are contiguous float32 and int32 of those sizes. The loops run
 * without the GIL. Built as an optional extension: without a C compiler
 * the package falls back to the PyTorch-kernel path.
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

/* Built with OpenMP where the compiler is GCC (setup.py): the loops over
 * words then run on up to `threads` threads. The package passes torch's
 * intra-op thread count where this module and torch resolve the same OpenMP
 * runtime (one thread pool; see `_masks._load_mask_kernels`), else 1. Every
 * word is computed on its own, so the result does not depend on the thread
 * count. Masks under PARALLEL_MIN_WORDS words (2**16 elements, twice torch's
 * grain size) stay on the calling thread, and a team never has more threads
 * than the loop has iterations. */
#define PARALLEL_MIN_WORDS 2048

/* Threads for a loop of `iterations` over `words` words. */
static int team_size(int64_t words, int64_t iterations, int threads) {
    if (words < PARALLEL_MIN_WORDS || threads < 2)
        return 1;
    return iterations < threads ? (int)iterations : threads;
}

#ifdef _OPENMP
#include <omp.h>
#define PRAGMA(x) _Pragma(#x)
#define OMP_FOR(team)                                                          \
    PRAGMA(omp parallel for schedule(static) num_threads(team) if (team > 1))
#define OPENMP 1
/* The size of the team that ran the last loop, for the tests: written by
 * whichever thread runs iteration 0. */
static int last_team;
#define RECORD_TEAM(size) __atomic_store_n(&last_team, (size), __ATOMIC_RELAXED)
#define LAST_TEAM() __atomic_load_n(&last_team, __ATOMIC_RELAXED)
#define TEAM_NOW() omp_get_num_threads()
#else
#define OMP_FOR(team)
#define OPENMP 0
#define RECORD_TEAM(size) ((void)0)
#define LAST_TEAM() 1
#define TEAM_NOW() 1
#endif

static inline uint32_t fmix32(uint32_t h) {
    h ^= h >> 16;
    h *= 0x85EBCA6Bu;
    h ^= h >> 13;
    h *= 0xC2B2AE35u;
    h ^= h >> 16;
    return h;
}

/* Writes `words` keep words for `BITS`-bit draws: keep word g packs the 32
 * draws of hash words g * BITS to g * BITS + BITS - 1, hashed BLOCK keep
 * words at a time. */
#define DEFINE_KEEP(BITS)                                                      \
    MULTIVERSION static void keep_##BITS(uint32_t *out, int64_t words,         \
                                         uint32_t k1, uint32_t k2,             \
                                         uint32_t threshold, int threads) {    \
        enum { PER = 32 / BITS };                                              \
        const uint32_t field = (uint32_t)((1ull << BITS) - 1u);                \
        int team = team_size(words, (words + BLOCK - 1) / BLOCK, threads);     \
        RECORD_TEAM(1);                                                        \
        OMP_FOR(team)                                                          \
        for (int64_t g0 = 0; g0 < words; g0 += BLOCK) {                        \
            uint32_t hashed[BLOCK * BITS];                                     \
            if (g0 == 0)                                                       \
                RECORD_TEAM(TEAM_NOW());                                       \
            int count = words - g0 < BLOCK ? (int)(words - g0) : BLOCK;        \
            uint32_t first = (uint32_t)(g0 * BITS);                            \
            for (int i = 0; i < count * BITS; i++) {                           \
                uint32_t index = first + (uint32_t)i + 1u;                     \
                hashed[i] = fmix32(fmix32((index * 0x9E3779B9u) ^ k1) ^ k2);   \
            }                                                                  \
            if (BITS == 1) {                                                   \
                /* One draw per bit: kept where the bit is at least the      \
                 * threshold (0, 1 or 2). */                                   \
                for (int g = 0; g < count; g++)                                \
                    out[g0 + g] = threshold == 0   ? 0xFFFFFFFFu               \
                                  : threshold == 1 ? hashed[g]                 \
                                                   : 0u;                       \
                continue;                                                      \
            }                                                                  \
            for (int g = 0; g < count; g++) {                                  \
                uint32_t word = 0;                                             \
                for (int q = 0; q < BITS; q++) {                               \
                    uint32_t h = hashed[g * BITS + q];                         \
                    for (int m = 0; m < PER; m++) {                            \
                        uint32_t draw = (h >> (BITS * m)) & field;             \
                        word |= (uint32_t)(draw >= threshold) << (q * PER + m); \
                    }                                                          \
                }                                                              \
                out[g0 + g] = word;                                            \
            }                                                                  \
        }                                                                      \
    }

DEFINE_KEEP(1)
DEFINE_KEEP(2)
DEFINE_KEEP(4)
DEFINE_KEEP(8)
DEFINE_KEEP(16)

MULTIVERSION static void apply_words(const float *src, float *dst, int64_t n,
                                     const uint32_t *words, float scale,
                                     int threads) {
    uint32_t scale_bits;
    memcpy(&scale_bits, &scale, sizeof scale_bits);
    int64_t full = n / 32;
    int team = team_size(full, full, threads);
    RECORD_TEAM(1);
    OMP_FOR(team)
    for (int64_t g = 0; g < full; g++) {
        if (g == 0)
            RECORD_TEAM(TEAM_NOW());
        uint32_t word = words[g];
        const float *s = src + 32 * g;
        float *d = dst + 32 * g;
        for (int r = 0; r < 32; r++) {
            uint32_t bits = scale_bits & (0u - ((word >> r) & 1u));
            float multiplier;
            memcpy(&multiplier, &bits, sizeof multiplier);
            d[r] = s[r] * multiplier;
        }
    }
    for (int64_t e = 32 * full; e < n; e++) {
        uint32_t bits = scale_bits & (0u - ((words[e / 32] >> (e % 32)) & 1u));
        float multiplier;
        memcpy(&multiplier, &bits, sizeof multiplier);
        dst[e] = src[e] * multiplier;
    }
}

/* The package's error template (keras_reg/_validation.py). */
static PyObject *invalid_argument(const char *name, const char *expected,
                                  long long value) {
    PyErr_Format(PyExc_ValueError,
                 "Invalid value received for argument `%s`. Expected %s. "
                 "Received: %s=%lld",
                 name, expected, name, value);
    return NULL;
}

/* Checks the element count, the packed words' count and the addresses. */
static int check_sizes(Py_ssize_t n, Py_ssize_t words,
                       unsigned long long addresses_nonzero) {
    if (n < 0 || n > PY_SSIZE_T_MAX - 31) {
        invalid_argument("n", "a non-negative element count", (long long)n);
        return 0;
    }
    if (words < (n + 31) / 32) {
        invalid_argument("words", "at least ceil(n / 32) packed words", (long long)words);
        return 0;
    }
    if (n > 0 && !addresses_nonzero) {
        invalid_argument("address", "non-zero addresses for a non-empty array", 0);
        return 0;
    }
    return 1;
}

static PyObject *keep_words(PyObject *self, PyObject *args) {
    unsigned long long out;
    Py_ssize_t words, n;
    unsigned int k1, k2, threshold;
    int bits, threads = 1;
    if (!PyArg_ParseTuple(args, "KnnIIiI|i", &out, &words, &n, &k1, &k2, &bits,
                          &threshold, &threads))
        return NULL;
    if (!check_sizes(n, words, out != 0))
        return NULL;
    if (threads < 1)
        return invalid_argument("threads", "a positive thread count", threads);
    if (bits != 1 && bits != 2 && bits != 4 && bits != 8 && bits != 16)
        return invalid_argument("bits", "one of 1, 2, 4, 8, 16", bits);
    int64_t count = ((int64_t)n + 31) / 32;
    uint32_t *dst = (uint32_t *)(uintptr_t)out;
    Py_BEGIN_ALLOW_THREADS
    switch (bits) {
    case 1: keep_1(dst, count, k1, k2, threshold, threads); break;
    case 2: keep_2(dst, count, k1, k2, threshold, threads); break;
    case 4: keep_4(dst, count, k1, k2, threshold, threads); break;
    case 8: keep_8(dst, count, k1, k2, threshold, threads); break;
    default: keep_16(dst, count, k1, k2, threshold, threads); break;
    }
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

static PyObject *apply_keep_words(PyObject *self, PyObject *args) {
    unsigned long long src, dst, words;
    Py_ssize_t n, word_count;
    float scale;
    int threads = 1;
    if (!PyArg_ParseTuple(args, "KKnKnf|i", &src, &dst, &n, &words, &word_count,
                          &scale, &threads))
        return NULL;
    if (!check_sizes(n, word_count, src != 0 && dst != 0 && words != 0))
        return NULL;
    if (threads < 1)
        return invalid_argument("threads", "a positive thread count", threads);
    Py_BEGIN_ALLOW_THREADS
    apply_words((const float *)(uintptr_t)src, (float *)(uintptr_t)dst, (int64_t)n,
                (const uint32_t *)(uintptr_t)words, scale, threads);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

static PyObject *last_team_size(PyObject *self, PyObject *unused) {
    return PyLong_FromLong(LAST_TEAM());
}

static PyMethodDef methods[] = {
    {"keep_words", keep_words, METH_VARARGS,
     "keep_words(out, words, n, k1, k2, bits, bits_threshold, threads=1): "
     "writes ceil(n / 32) uint32 words at address `out` (room for `words`), "
     "bit r of word g set where element 32 * g + r is kept."},
    {"apply_keep_words", apply_keep_words, METH_VARARGS,
     "apply_keep_words(src, dst, n, words, word_count, scale, threads=1): "
     "dst[e] = src[e] * (scale where bit e of the packed words is set, else "
     "0), for n float32 elements."},
    {"last_team_size", last_team_size, METH_NOARGS,
     "last_team_size(): how many threads ran the last kernel call's loop (1 "
     "where built without OpenMP)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_mask_kernels",
    "Native CPU kernels for keras_reg's dropout masks.", -1, methods,
};

PyMODINIT_FUNC PyInit__mask_kernels(void) {
    PyObject *m = PyModule_Create(&module);
    /* Whether `threads` is honoured (built with OpenMP) or ignored. */
    if (m != NULL && PyModule_AddIntConstant(m, "openmp", OPENMP) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
