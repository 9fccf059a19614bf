/*
 * fullduplex.protocol._speedups: optional C accelerator for the protocol hot path.
 *
 * The pure-Python code in frames.py (_apply_mask_python) is the reference; this module must
 * return exactly what it returns for every valid input (tests/protocol/test_speedups.py checks
 * it). frames.py imports it when it is built, unless FULLDUPLEX_NO_EXTENSIONS is set.
 *
 * apply_mask(data, mask) -> bytes
 *     XOR data (any C-contiguous buffer) with the 4-byte mask repeated (RFC 6455 section 5.3).
 *
 * Speed: the payload is XORed 32 bytes at a time with AVX2 when the CPU has it (chosen once, at
 * import), else 16 at a time with SSE2 (always there on x86-64), else 8 at a time as uint64;
 * the last few bytes one by one. Every block size is a multiple of 4, so the mask never needs
 * rotating: byte i is always XORed with mask[i % 4].
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <string.h>

#if defined(__SSE2__) || defined(_M_X64) || (defined(_M_IX86_FP) && _M_IX86_FP >= 2)
#define FD_HAVE_SSE2 1
#include <emmintrin.h>
#endif

/* AVX2 is compiled for one function only (target attribute) and chosen at run time, so the
 * module still loads on x86-64 CPUs without it. MSVC and other compilers get SSE2. */
#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define FD_HAVE_AVX2_DISPATCH 1
#include <immintrin.h>
#endif

#define MASK_LEN 4

/* Below this size the SIMD set-up costs more than it saves; the uint64 loop handles it. */
#define FD_AVX2_MIN 64

/* At or above this size the GIL is released while XORing. Measured (2-core EPYC, 3.11): a 1 MiB
 * mask takes ~23 us, 16 MiB ~0.8 ms, 64 MiB ~32 ms (page faults of the fresh output). Releasing
 * the GIL lets another thread run, but if one is busy we then wait up to its switch interval
 * (5 ms) to get the GIL back: a 1 MiB call went from 23 us to 5.2 ms next to a spinning Python
 * thread. So it is only worth it where the work dwarfs the switch interval. */
#define FD_RELEASE_GIL_MIN ((Py_ssize_t)64 << 20)

#ifdef FD_HAVE_AVX2_DISPATCH
/* Set once in module exec from CPUID; a CPU property, identical for every interpreter. */
static int fd_have_avx2 = 0;

__attribute__((target("avx2"))) static Py_ssize_t
fd_xor_avx2(const uint8_t *in, uint8_t *out, Py_ssize_t len, uint32_t mask32)
{
    /* Unaligned loads and stores: Python buffers carry no 32-byte alignment guarantee, and on
     * every CPU with AVX2 an unaligned access that happens to be aligned costs nothing extra. */
    const __m256i m = _mm256_set1_epi32((int)mask32);
    Py_ssize_t i = 0;
    /* Two vectors per iteration keep two loads in flight. */
    for (; i + 64 <= len; i += 64) {
        __m256i a = _mm256_loadu_si256((const __m256i *)(in + i));
        __m256i b = _mm256_loadu_si256((const __m256i *)(in + i + 32));
        _mm256_storeu_si256((__m256i *)(out + i), _mm256_xor_si256(a, m));
        _mm256_storeu_si256((__m256i *)(out + i + 32), _mm256_xor_si256(b, m));
    }
    for (; i + 32 <= len; i += 32) {
        __m256i a = _mm256_loadu_si256((const __m256i *)(in + i));
        _mm256_storeu_si256((__m256i *)(out + i), _mm256_xor_si256(a, m));
    }
    return i;
}
#endif

/* out[i] = in[i] ^ mask[i % 4] for i in [0, len). in and out may not overlap. */
static void
fd_xor_mask(const uint8_t *in, uint8_t *out, Py_ssize_t len, const uint8_t *mask)
{
    Py_ssize_t i = 0;
    uint32_t mask32;
    uint64_t mask64;

    /* memcpy, not a pointer cast: no alignment or strict-aliasing assumptions, and compilers
     * turn it into a single load. */
    memcpy(&mask32, mask, MASK_LEN);

#ifdef FD_HAVE_AVX2_DISPATCH
    if (fd_have_avx2 && len >= FD_AVX2_MIN) {
        i = fd_xor_avx2(in, out, len, mask32);
    }
#endif

#ifdef FD_HAVE_SSE2
    {
        const __m128i m = _mm_set1_epi32((int)mask32);
        for (; i + 16 <= len; i += 16) {
            __m128i a = _mm_loadu_si128((const __m128i *)(in + i));
            _mm_storeu_si128((__m128i *)(out + i), _mm_xor_si128(a, m));
        }
    }
#endif

    /* The same 4 bytes twice, in memory order, whatever the endianness. */
    memcpy(&mask64, mask, MASK_LEN);
    memcpy((uint8_t *)&mask64 + MASK_LEN, mask, MASK_LEN);
    for (; i + 8 <= len; i += 8) {
        uint64_t v;
        memcpy(&v, in + i, 8);
        v ^= mask64;
        memcpy(out + i, &v, 8);
    }

    for (; i < len; i++) {
        out[i] = in[i] ^ mask[i & (MASK_LEN - 1)];
    }
}

/* Get a C-contiguous byte view of obj. bytes, the common case, skips the buffer protocol. On
 * success *view is filled only when *owned is set to 1, and must then be released. */
static int
fd_get_bytes(PyObject *obj, Py_buffer *view, int *owned, const char **buf, Py_ssize_t *len)
{
    if (PyBytes_CheckExact(obj)) {
        *owned = 0;
        *buf = PyBytes_AS_STRING(obj);
        *len = PyBytes_GET_SIZE(obj);
        return 0;
    }
    /* PyBUF_SIMPLE asks for contiguous bytes: a strided memoryview fails with BufferError
     * rather than being copied behind the caller's back. */
    if (PyObject_GetBuffer(obj, view, PyBUF_SIMPLE) < 0) {
        return -1;
    }
    *owned = 1;
    *buf = (const char *)view->buf;
    *len = view->len;
    return 0;
}

PyDoc_STRVAR(apply_mask_doc,
"apply_mask($module, /, data, mask)\n"
"--\n"
"\n"
"XOR data with the 4-byte mask repeated (RFC 6455 section 5.3) and return new bytes.\n"
"\n"
"Args:\n"
"    data: Any C-contiguous bytes-like object (bytes, bytearray, memoryview...).\n"
"    mask: Exactly four bytes, any bytes-like object.\n"
"\n"
"Returns:\n"
"    The masked (or, applied again, unmasked) bytes, as long as data.\n"
"\n"
"Raises:\n"
"    ValueError: If mask is not exactly 4 bytes long.\n"
"    TypeError: If data or mask does not support the buffer protocol.\n"
"    BufferError: If data is not C-contiguous.");

static PyObject *
apply_mask(PyObject *module, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *data_obj = NULL;
    PyObject *mask_obj = NULL;
    Py_buffer data_view;
    Py_buffer mask_view;
    int data_owned = 0;
    int mask_owned = 0;
    const char *data;
    const char *mask;
    Py_ssize_t data_len;
    Py_ssize_t mask_len;
    PyObject *result = NULL;

    (void)module;

    /* Same signature as the Python reference, keywords included; the positional call is the
     * one on the hot path and costs no parsing. */
    if (nargs > 2) {
        PyErr_Format(PyExc_TypeError,
                     "apply_mask() takes at most 2 arguments (%zd given)", nargs);
        return NULL;
    }
    if (nargs >= 1) {
        data_obj = args[0];
    }
    if (nargs == 2) {
        mask_obj = args[1];
    }
    if (kwnames != NULL) {
        Py_ssize_t nkw = PyTuple_GET_SIZE(kwnames);
        for (Py_ssize_t k = 0; k < nkw; k++) {
            PyObject *name = PyTuple_GET_ITEM(kwnames, k);
            PyObject **slot;
            if (PyUnicode_Check(name) && PyUnicode_CompareWithASCIIString(name, "data") == 0) {
                slot = &data_obj;
            }
            else if (PyUnicode_Check(name) &&
                     PyUnicode_CompareWithASCIIString(name, "mask") == 0) {
                slot = &mask_obj;
            }
            else {
                PyErr_Format(PyExc_TypeError,
                             "apply_mask() got an unexpected keyword argument '%S'", name);
                return NULL;
            }
            if (*slot != NULL) {
                PyErr_Format(PyExc_TypeError,
                             "apply_mask() got multiple values for argument '%S'", name);
                return NULL;
            }
            *slot = args[nargs + k];
        }
    }
    if (data_obj == NULL || mask_obj == NULL) {
        PyErr_Format(PyExc_TypeError, "apply_mask() missing required argument '%s'",
                     data_obj == NULL ? "data" : "mask");
        return NULL;
    }

    if (fd_get_bytes(mask_obj, &mask_view, &mask_owned, &mask, &mask_len) < 0) {
        goto exit;
    }
    if (mask_len != MASK_LEN) {
        PyErr_Format(PyExc_ValueError, "mask must be exactly 4 bytes, got %zd", mask_len);
        goto exit;
    }
    if (fd_get_bytes(data_obj, &data_view, &data_owned, &data, &data_len) < 0) {
        goto exit;
    }

    /* Allocate the bytes object and write into it directly: no intermediate copy. */
    result = PyBytes_FromStringAndSize(NULL, data_len);
    if (result == NULL) {
        goto exit;
    }
    if (data_len >= FD_RELEASE_GIL_MIN) {
        /* Safe: the buffer exports we hold keep data and mask alive and unresizable, and
         * result is not visible to any other thread yet. (bytes data is immutable.) */
        uint8_t mask_copy[MASK_LEN];
        memcpy(mask_copy, mask, MASK_LEN);
        Py_BEGIN_ALLOW_THREADS
        fd_xor_mask((const uint8_t *)data, (uint8_t *)PyBytes_AS_STRING(result), data_len,
                    mask_copy);
        Py_END_ALLOW_THREADS
    }
    else {
        fd_xor_mask((const uint8_t *)data, (uint8_t *)PyBytes_AS_STRING(result), data_len,
                    (const uint8_t *)mask);
    }

exit:
    if (data_owned) {
        PyBuffer_Release(&data_view);
    }
    if (mask_owned) {
        PyBuffer_Release(&mask_view);
    }
    return result;
}

static PyMethodDef speedups_methods[] = {
    {"apply_mask", (PyCFunction)(void (*)(void))apply_mask, METH_FASTCALL | METH_KEYWORDS,
     apply_mask_doc},
    {NULL, NULL, 0, NULL},
};

static int
speedups_exec(PyObject *module)
{
    const char *simd = "uint64";
#ifdef FD_HAVE_SSE2
    simd = "sse2";
#endif
#ifdef FD_HAVE_AVX2_DISPATCH
    /* __builtin_cpu_supports also checks that the OS saves the AVX registers (XGETBV). */
    __builtin_cpu_init();
    fd_have_avx2 = __builtin_cpu_supports("avx2") ? 1 : 0;
    if (fd_have_avx2) {
        simd = "avx2";
    }
#endif
    /* Which code path apply_mask uses on this machine, for benchmarks and bug reports. */
    return PyModule_AddStringConstant(module, "simd", simd);
}

static PyModuleDef_Slot speedups_slots[] = {
    {Py_mod_exec, (void *)speedups_exec},
#ifdef Py_mod_multiple_interpreters
    /* No per-module state and no static Python objects: safe in every sub-interpreter. */
    {Py_mod_multiple_interpreters, Py_MOD_PER_INTERPRETER_GIL_SUPPORTED},
#endif
#ifdef Py_mod_gil
    /* No shared mutable state (fd_have_avx2 is written once, before use, with the same value
     * every time), so free-threaded builds may keep the GIL off. */
    {Py_mod_gil, Py_MOD_GIL_NOT_USED},
#endif
    {0, NULL},
};

PyDoc_STRVAR(speedups_doc,
"Optional C accelerator for fullduplex.protocol; the pure-Python code is the reference.");

static struct PyModuleDef speedups_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "fullduplex.protocol._speedups",
    .m_doc = speedups_doc,
    .m_size = 0,
    .m_methods = speedups_methods,
    .m_slots = speedups_slots,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    return PyModuleDef_Init(&speedups_module);
}
