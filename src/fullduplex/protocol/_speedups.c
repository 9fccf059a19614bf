/*
 * fullduplex.protocol._speedups: optional C accelerator for the protocol hot path.
 *
 * The pure-Python code in frames.py (_apply_mask_python) is the reference; this module must
 * return exactly what it returns for every valid input (tests/protocol/test_speedups.py checks
 * it). frames.py imports it when it is built, unless FULLDUPLEX_NO_EXTENSIONS is set.
 *
 * apply_mask(data, mask) -> bytes
 *     XOR data (any C-contiguous buffer) with the 4-byte mask repeated (RFC 6455 section 5.3).
 * frame(opcode, payload, fin, rsv1, mask) -> bytes
 *     The twin of frames._frame_python: one frame's bytes in one allocation.
 * FrameParser
 *     The twin of frames.FrameParser (the reference), parsing a whole read in one C pass.
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

/* ---- frame ----------------------------------------------------------------------------------
 *
 * The C twin of frames._frame_python (the reference): the bytes of one frame, header and payload
 * (masked when a mask is given) in one allocation. Positional arguments only: it is called once
 * per message sent.
 */

PyDoc_STRVAR(frame_doc,
"frame($module, opcode, payload, fin, rsv1, mask, /)\n--\n\n"
"Return the bytes of one frame; mask is 4 bytes or None (see frames.serialize_frame).");

static PyObject *
frame(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "frame() takes exactly 5 arguments");
        return NULL;
    }
    long opcode = PyLong_AsLong(args[0]);
    if (opcode == -1 && PyErr_Occurred()) {
        return NULL;
    }
    int fin = PyObject_IsTrue(args[2]);
    int rsv1 = PyObject_IsTrue(args[3]);
    if (fin < 0 || rsv1 < 0) {
        return NULL;
    }
    Py_buffer payload_view;
    Py_buffer mask_view;
    int payload_owned = 0;
    int mask_owned = 0;
    const char *payload;
    const char *mask = NULL;
    Py_ssize_t length;
    Py_ssize_t mask_len = 0;
    PyObject *result = NULL;
    if (fd_get_bytes(args[1], &payload_view, &payload_owned, &payload, &length) < 0) {
        return NULL;
    }
    if (args[4] != Py_None) {
        if (fd_get_bytes(args[4], &mask_view, &mask_owned, &mask, &mask_len) < 0) {
            goto exit;
        }
        if (mask_len != MASK_LEN) {
            PyErr_Format(PyExc_ValueError, "mask must be exactly 4 bytes, got %zd", mask_len);
            goto exit;
        }
    }
    uint8_t header[14];
    Py_ssize_t header_len = 2;
    header[0] = (uint8_t)((opcode & 0x0F) | (fin ? 0x80 : 0) | (rsv1 ? 0x40 : 0));
    uint8_t mask_bit = mask != NULL ? 0x80 : 0;
    if (length < 126) {
        header[1] = (uint8_t)(mask_bit | length);
    }
    else if (length < 65536) {
        header[1] = mask_bit | 126;
        header[2] = (uint8_t)(length >> 8);
        header[3] = (uint8_t)length;
        header_len = 4;
    }
    else {
        header[1] = mask_bit | 127;
        for (int k = 0; k < 8; k++) {
            header[2 + k] = (uint8_t)((unsigned long long)length >> (56 - 8 * k));
        }
        header_len = 10;
    }
    if (mask != NULL) {
        memcpy(header + header_len, mask, MASK_LEN);
        header_len += MASK_LEN;
    }
    result = PyBytes_FromStringAndSize(NULL, header_len + length);
    if (result == NULL) {
        goto exit;
    }
    uint8_t *out = (uint8_t *)PyBytes_AS_STRING(result);
    memcpy(out, header, (size_t)header_len);
    if (mask != NULL) {
        fd_xor_mask((const uint8_t *)payload, out + header_len, length, (const uint8_t *)mask);
    }
    else if (length) {
        memcpy(out + header_len, payload, (size_t)length);
    }
exit:
    if (payload_owned) {
        PyBuffer_Release(&payload_view);
    }
    if (mask_owned) {
        PyBuffer_Release(&mask_view);
    }
    return result;
}

/* ---- FrameParser ---------------------------------------------------------------------------
 *
 * The C twin of frames.FrameParser (the reference): same constructor, same feed() results, same
 * errors with the same messages, in the same order of checks (tests/protocol/test_speedups.py
 * compares the two on random streams cut at random places). One pass over each read, payloads
 * unmasked straight into their bytes objects, frames built as Frame tuples without a Python call.
 */

typedef struct {
    PyObject *frame_type;      /* frames.Frame, a NamedTuple: a tuple subclass without a dict */
    PyObject *protocol_error;  /* exceptions.ProtocolError */
    PyObject *payload_too_big; /* exceptions.PayloadTooBig */
} speedups_state;

typedef struct {
    PyObject_HEAD
    uint8_t *buf;              /* bytes of an incomplete frame, waiting for the rest */
    Py_ssize_t len;
    Py_ssize_t cap;
    int mask_required;
    int allow_rsv1;
    int has_max;               /* max_frame_size is not None */
    unsigned long long max_frame_size;
    PyObject *error;           /* None, or the violation that stopped parsing */
    /* A large frame whose payload is unmasked straight into its bytes object as it arrives,
     * instead of being buffered first (see FD_DIRECT_MIN): */
    PyObject *pending;         /* its payload so far (grown as it arrives), or NULL */
    Py_ssize_t pending_length; /* the payload's announced length */
    Py_ssize_t pending_filled; /* bytes of it received so far */
    Py_ssize_t pending_header; /* the length of its header, for `buffered` */
    unsigned pending_b0;       /* its first header byte */
    int pending_masked;
    uint8_t pending_mask[MASK_LEN];
} FrameParserObject;

/* An incomplete frame of FD_DIRECT_MIN to FD_DIRECT_MAX bytes is unmasked straight into its
 * bytes object (one copy instead of two). That object grows with the bytes received (doubling,
 * so each byte is moved at most about twice), never with the bytes announced: a peer that
 * sends the header of a 16 MiB frame and one byte holds about FD_DIRECT_MIN, not 16 MiB of
 * address space (which counts under `ulimit -v` or strict overcommit even if never touched).
 * Larger frames, or absurd lengths from a peer when there is no limit, are buffered as they
 * come; the length was already checked against max_frame_size. */
#define FD_DIRECT_MIN ((unsigned long long)64 * 1024)
#define FD_DIRECT_MAX ((unsigned long long)16 * 1024 * 1024)

/* When the buffer empties and holds more than this, it is freed: a connection that once
 * received a large frame must not keep its memory for the rest of its life. */
#define FD_BUFFER_KEEP ((Py_ssize_t)64 * 1024)

static struct PyModuleDef speedups_module;

static speedups_state *
fd_state_of(PyObject *self)
{
    PyObject *module = PyType_GetModuleByDef(Py_TYPE(self), &speedups_module);
    return module == NULL ? NULL : (speedups_state *)PyModule_GetState(module);
}

static int
fp_reserve(FrameParserObject *self, Py_ssize_t extra)
{
    Py_ssize_t need = self->len + extra;
    if (need <= self->cap) {
        return 0;
    }
    Py_ssize_t cap = self->cap ? self->cap : 256;
    while (cap < need) {
        cap = cap > PY_SSIZE_T_MAX / 2 ? need : cap * 2;
    }
    uint8_t *buf = PyMem_Realloc(self->buf, (size_t)cap);
    if (buf == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    self->buf = buf;
    self->cap = cap;
    return 0;
}

static void
fp_clear_buffer(FrameParserObject *self)
{
    PyMem_Free(self->buf);
    self->buf = NULL;
    self->len = self->cap = 0;
}

/* The error object for a header that breaks a rule, NULL with an exception set on failure, or
 * Py_None (borrowed) when the header is fine. Checks in the order of _header_error. */
static PyObject *
fp_header_error(FrameParserObject *self, speedups_state *st, unsigned b0,
                unsigned long long length, unsigned masked)
{
    unsigned opcode = b0 & 0x0F;
    PyObject *cls = st->protocol_error;
    PyObject *msg = NULL;
    if (!(opcode <= 2 || (opcode >= 8 && opcode <= 10))) {
        msg = PyUnicode_FromFormat("reserved opcode 0x%x", opcode);
    }
    else if ((b0 & 0x30) || ((b0 & 0x40) && !self->allow_rsv1)) {
        msg = PyUnicode_FromString("reserved bit set without a negotiated extension");
    }
    else if (opcode >= 8 && !(b0 & 0x80)) {
        msg = PyUnicode_FromString("fragmented control frame");
    }
    else if (opcode >= 8 && length > 125) {
        msg = PyUnicode_FromString("control frame payload longer than 125 bytes");
    }
    else if (opcode >= 8 && (b0 & 0x40)) {
        msg = PyUnicode_FromString("reserved bit set on a control frame");
    }
    else if ((masked != 0) != (self->mask_required != 0)) {
        msg = PyUnicode_FromString(self->mask_required ? "client frame is not masked"
                                                       : "server frame is masked");
    }
    else if (length >> 63) {
        msg = PyUnicode_FromString("frame length has its most significant bit set");
    }
    else if (self->has_max && length > self->max_frame_size) {
        cls = st->payload_too_big;
        msg = PyUnicode_FromFormat("frame of %llu bytes over the local limit (%llu bytes)",
                                   length, self->max_frame_size);
    }
    else {
        return Py_None;
    }
    if (msg == NULL) {
        return NULL;
    }
    PyObject *error = PyObject_CallOneArg(cls, msg);
    Py_DECREF(msg);
    return error;
}

/* Build a Frame (a NamedTuple: a tuple of its subclass, allocated as tuple.__new__ would) from
 * its first header byte and payload, and append it. Steals the payload reference. */
static int
fp_append_frame(speedups_state *st, PyObject *frames, unsigned b0, PyObject *payload)
{
    PyTypeObject *frame_type = (PyTypeObject *)st->frame_type;
    PyObject *frame = frame_type->tp_alloc(frame_type, 4);
    if (frame == NULL) {
        Py_DECREF(payload);
        return -1;
    }
    PyTuple_SET_ITEM(frame, 0, PyLong_FromLong((long)(b0 & 0x0F)));
    PyTuple_SET_ITEM(frame, 1, payload);
    PyTuple_SET_ITEM(frame, 2, Py_NewRef((b0 & 0x80) ? Py_True : Py_False));
    PyTuple_SET_ITEM(frame, 3, Py_NewRef((b0 & 0x40) ? Py_True : Py_False));
    int appended = PyList_Append(frames, frame);
    Py_DECREF(frame);
    return appended;
}

/* Copy (unmasking) n bytes of the pending frame's payload from d, growing its bytes object
 * first when they do not fit. Returns -1 with an exception set when memory runs out. */
static int
fp_fill_pending(FrameParserObject *self, const uint8_t *d, Py_ssize_t n)
{
    Py_ssize_t capacity = PyBytes_GET_SIZE(self->pending);
    if (self->pending_filled + n > capacity) {
        Py_ssize_t wanted = capacity * 2;
        if (wanted < self->pending_filled + n) {
            wanted = self->pending_filled + n;
        }
        if (wanted > self->pending_length) {
            wanted = self->pending_length;
        }
        if (_PyBytes_Resize(&self->pending, wanted) < 0) {
            return -1; /* self->pending is NULL now */
        }
    }
    uint8_t *out = (uint8_t *)PyBytes_AS_STRING(self->pending) + self->pending_filled;
    if (self->pending_masked) {
        /* The mask continues where the last piece stopped. */
        uint8_t rotated[MASK_LEN];
        for (int k = 0; k < MASK_LEN; k++) {
            rotated[k] = self->pending_mask[(self->pending_filled + k) & (MASK_LEN - 1)];
        }
        fd_xor_mask(d, out, n, rotated);
    }
    else if (n) {
        memcpy(out, d, (size_t)n);
    }
    self->pending_filled += n;
    return 0;
}

/* Parse complete frames from p[0:size) into frames; return how many bytes they used, or -1 with
 * an exception set. A rule violation is not an exception: it sets self->error and stops. */
static Py_ssize_t
fp_parse(FrameParserObject *self, speedups_state *st, const uint8_t *p, Py_ssize_t size,
         PyObject *frames)
{
    Py_ssize_t pos = 0;
    while (size - pos >= 2) {
        unsigned b0 = p[pos];
        unsigned b1 = p[pos + 1];
        unsigned long long length = b1 & 0x7F;
        Py_ssize_t header_end = pos + 2;
        if (length == 126) {
            header_end = pos + 4;
            if (header_end > size) {
                break;
            }
            length = ((unsigned)p[pos + 2] << 8) | p[pos + 3];
        }
        else if (length == 127) {
            header_end = pos + 10;
            if (header_end > size) {
                break;
            }
            length = 0;
            for (int k = 2; k < 10; k++) {
                length = (length << 8) | p[pos + k];
            }
        }
        unsigned masked = b1 & 0x80;
        if (masked) {
            header_end += 4;
        }
        PyObject *error = fp_header_error(self, st, b0, length, masked);
        if (error == NULL) {
            return -1;
        }
        if (error != Py_None) {
            Py_SETREF(self->error, error);
            return -2;
        }
        /* length < 2**63 here, so the comparison cannot overflow. */
        if (header_end > size || length > (unsigned long long)(size - header_end)) {
            if (header_end <= size && length >= FD_DIRECT_MIN && length <= FD_DIRECT_MAX) {
                Py_ssize_t received = size - header_end;
                Py_ssize_t capacity = received * 2 > (Py_ssize_t)FD_DIRECT_MIN
                                          ? received * 2
                                          : (Py_ssize_t)FD_DIRECT_MIN;
                if (capacity > (Py_ssize_t)length) {
                    capacity = (Py_ssize_t)length;
                }
                PyObject *payload = PyBytes_FromStringAndSize(NULL, capacity);
                if (payload == NULL) {
                    return -1;
                }
                self->pending = payload;
                self->pending_length = (Py_ssize_t)length;
                self->pending_filled = 0;
                self->pending_header = header_end - pos;
                self->pending_b0 = b0;
                self->pending_masked = masked != 0;
                if (masked) {
                    memcpy(self->pending_mask, p + header_end - MASK_LEN, MASK_LEN);
                }
                if (fp_fill_pending(self, p + header_end, received) < 0) {
                    return -1;
                }
                pos = size;
            }
            break;
        }
        Py_ssize_t end = header_end + (Py_ssize_t)length;
        PyObject *payload = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)length);
        if (payload == NULL) {
            return -1;
        }
        if (masked) {
            fd_xor_mask(p + header_end, (uint8_t *)PyBytes_AS_STRING(payload),
                        (Py_ssize_t)length, p + header_end - 4);
        }
        else if (length) {
            memcpy(PyBytes_AS_STRING(payload), p + header_end, (size_t)length);
        }
        if (fp_append_frame(st, frames, b0, payload) < 0) {
            return -1;
        }
        pos = end;
    }
    return pos;
}

PyDoc_STRVAR(fp_feed_doc,
"feed($self, data, /)\n--\n\n"
"Parse data after whatever was buffered; return the frames it completes (see frames.py).");

static PyObject *
fp_feed(FrameParserObject *self, PyObject *data_obj)
{
    Py_buffer view;
    int owned = 0;
    const char *data;
    Py_ssize_t data_len;
    speedups_state *st = fd_state_of((PyObject *)self);
    if (st == NULL) {
        return NULL;
    }
    if (st->frame_type == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "fullduplex.protocol._speedups.setup() not called");
        return NULL;
    }
    PyObject *frames = PyList_New(0);
    if (frames == NULL || self->error != Py_None) {
        return frames;
    }
    if (fd_get_bytes(data_obj, &view, &owned, &data, &data_len) < 0) {
        Py_DECREF(frames);
        return NULL;
    }
    if (self->pending != NULL) {
        /* The rest of a large frame comes first; the buffer is empty meanwhile. */
        Py_ssize_t missing = self->pending_length - self->pending_filled;
        Py_ssize_t n = data_len < missing ? data_len : missing;
        if (fp_fill_pending(self, (const uint8_t *)data, n) < 0) {
            goto fail;
        }
        data += n;
        data_len -= n;
        if (n < missing) {
            goto done;
        }
        PyObject *payload = self->pending;
        self->pending = NULL;
        if (fp_append_frame(st, frames, self->pending_b0, payload) < 0) {
            goto fail;
        }
    }
    Py_ssize_t used;
    if (self->len) {
        /* Continuing a frame: parse from the buffer, then keep only what is left. */
        if (fp_reserve(self, data_len) < 0) {
            goto fail;
        }
        memcpy(self->buf + self->len, data, (size_t)data_len);
        self->len += data_len;
        used = fp_parse(self, st, self->buf, self->len, frames);
        if (used == -1) {
            goto fail;
        }
        if (used == -2) {
            fp_clear_buffer(self);
        }
        else if (used > 0) {
            memmove(self->buf, self->buf + used, (size_t)(self->len - used));
            self->len -= used;
            if (self->len == 0 && self->cap > FD_BUFFER_KEEP) {
                fp_clear_buffer(self);
            }
        }
    }
    else {
        used = fp_parse(self, st, (const uint8_t *)data, data_len, frames);
        if (used == -1) {
            goto fail;
        }
        if (used >= 0 && used < data_len) {
            if (fp_reserve(self, data_len - used) < 0) {
                goto fail;
            }
            memcpy(self->buf, data + used, (size_t)(data_len - used));
            self->len = data_len - used;
        }
    }
done:
    if (owned) {
        PyBuffer_Release(&view);
    }
    return frames;
fail:
    if (owned) {
        PyBuffer_Release(&view);
    }
    Py_DECREF(frames);
    return NULL;
}

static int
fp_init(FrameParserObject *self, PyObject *args, PyObject *kwds)
{
    static char *keywords[] = {"mask_required", "max_frame_size", "allow_rsv1", NULL};
    int mask_required;
    PyObject *max_frame_size = Py_None;
    int allow_rsv1 = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|$pOp:FrameParser", keywords, &mask_required,
                                     &max_frame_size, &allow_rsv1)) {
        return -1;
    }
    if (kwds == NULL || PyDict_GetItemString(kwds, "mask_required") == NULL) {
        PyErr_SetString(PyExc_TypeError,
                        "FrameParser() missing required keyword-only argument: 'mask_required'");
        return -1;
    }
    self->mask_required = mask_required;
    self->allow_rsv1 = allow_rsv1;
    self->has_max = max_frame_size != Py_None;
    if (self->has_max) {
        /* Stricter than the reference, which compares any number: a limit is an int >= 0. */
        long long value = PyLong_AsLongLong(max_frame_size);
        if (value == -1 && PyErr_Occurred()) {
            return -1;
        }
        if (value < 0) {
            PyErr_SetString(PyExc_ValueError, "max_frame_size must be >= 0 or None");
            return -1;
        }
        self->max_frame_size = (unsigned long long)value;
    }
    fp_clear_buffer(self);
    Py_CLEAR(self->pending);
    Py_XSETREF(self->error, Py_NewRef(Py_None));
    return 0;
}

static int
fp_traverse(FrameParserObject *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->error);
    return 0;
}

static int
fp_clear(FrameParserObject *self)
{
    Py_CLEAR(self->error);
    Py_CLEAR(self->pending);
    return 0;
}

static void
fp_dealloc(FrameParserObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    fp_clear(self);
    PyMem_Free(self->buf);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

static PyObject *
fp_get_buffered(FrameParserObject *self, void *closure)
{
    (void)closure;
    Py_ssize_t pending = self->pending ? self->pending_header + self->pending_filled : 0;
    return PyLong_FromSsize_t(self->len + pending);
}

static PyObject *
fp_get_error(FrameParserObject *self, void *closure)
{
    (void)closure;
    return Py_NewRef(self->error ? self->error : Py_None);
}

static int
fp_set_error(FrameParserObject *self, PyObject *value, void *closure)
{
    (void)closure;
    if (value == NULL) {
        PyErr_SetString(PyExc_AttributeError, "cannot delete error");
        return -1;
    }
    Py_XSETREF(self->error, Py_NewRef(value));
    return 0;
}

PyDoc_STRVAR(fp_partial_text_doc,
"partial_text($self, start, message, /)\n--\n\n"
"The text payload of an incomplete frame received so far, from start on (see frames.py).");

/* Mirrors FrameParser.partial_text: the incomplete frame is either direct (its payload already
 * unmasked in self->pending) or at the start of the buffer, header included, still masked. */
static PyObject *
fp_partial_text(FrameParserObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "partial_text() takes exactly 2 arguments");
        return NULL;
    }
    Py_ssize_t start = PyLong_AsSsize_t(args[0]);
    if (start == -1 && PyErr_Occurred()) {
        return NULL;
    }
    long message = PyLong_AsLong(args[1]);
    if (message == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (start < 0) {
        PyErr_SetString(PyExc_ValueError, "start must not be negative");
        return NULL;
    }
    unsigned b0;
    const uint8_t *payload;
    Py_ssize_t received;
    const uint8_t *mask = NULL;
    if (self->pending != NULL) {
        b0 = self->pending_b0;
        payload = (const uint8_t *)PyBytes_AS_STRING(self->pending);
        received = self->pending_filled;
    }
    else {
        if (self->len < 2) {
            Py_RETURN_NONE;
        }
        b0 = self->buf[0];
        unsigned b1 = self->buf[1];
        unsigned length = b1 & 0x7F;
        Py_ssize_t header_end = length == 126 ? 4 : length == 127 ? 10 : 2;
        if (b1 & 0x80) {
            header_end += MASK_LEN;
        }
        if (header_end > self->len) {
            Py_RETURN_NONE;
        }
        /* The frame is incomplete, so every byte after its header belongs to its payload. */
        payload = self->buf + header_end;
        received = self->len - header_end;
        if (b1 & 0x80) {
            mask = self->buf + header_end - MASK_LEN;
        }
    }
    unsigned opcode = b0 & 0x0F;
    if (opcode == 1) {
        if (message || (b0 & 0x40)) {
            Py_RETURN_NONE;
        }
    }
    else if (opcode != 0 || message != 1) {
        Py_RETURN_NONE;
    }
    if (start >= received) {
        return PyBytes_FromStringAndSize(NULL, 0);
    }
    Py_ssize_t n = received - start;
    if (mask == NULL) {
        return PyBytes_FromStringAndSize((const char *)payload + start, n);
    }
    PyObject *out = PyBytes_FromStringAndSize(NULL, n);
    if (out == NULL) {
        return NULL;
    }
    uint8_t rotated[MASK_LEN];
    for (int k = 0; k < MASK_LEN; k++) {
        rotated[k] = mask[(start + k) & (MASK_LEN - 1)];
    }
    fd_xor_mask(payload + start, (uint8_t *)PyBytes_AS_STRING(out), n, rotated);
    return out;
}

static PyGetSetDef fp_getset[] = {
    {"buffered", (getter)fp_get_buffered, NULL, "How many bytes wait for the rest of their frame.",
     NULL},
    {"error", (getter)fp_get_error, (setter)fp_set_error,
     "The violation that stopped parsing, or None.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMethodDef fp_methods[] = {
    {"feed", (PyCFunction)fp_feed, METH_O, fp_feed_doc},
    {"partial_text", (PyCFunction)(void (*)(void))fp_partial_text, METH_FASTCALL,
     fp_partial_text_doc},
    {NULL, NULL, 0, NULL},
};

PyDoc_STRVAR(fp_doc,
"FrameParser(*, mask_required, max_frame_size=None, allow_rsv1=False)\n--\n\n"
"The C twin of fullduplex.protocol.frames.FrameParser: turns a stream into frames.");

static PyType_Slot fp_slots[] = {
    {Py_tp_doc, (void *)fp_doc},
    {Py_tp_init, (void *)fp_init},
    {Py_tp_dealloc, (void *)fp_dealloc},
    {Py_tp_traverse, (void *)fp_traverse},
    {Py_tp_clear, (void *)fp_clear},
    {Py_tp_methods, fp_methods},
    {Py_tp_getset, fp_getset},
    {0, NULL},
};

static PyType_Spec fp_spec = {
    .name = "fullduplex.protocol._speedups.FrameParser",
    .basicsize = sizeof(FrameParserObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .slots = fp_slots,
};

PyDoc_STRVAR(setup_doc,
"setup($module, frame_type, protocol_error, payload_too_big, /)\n--\n\n"
"Give FrameParser the classes it creates; frames.py calls it once, at import.");

static PyObject *
speedups_setup(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "setup() takes exactly 3 arguments");
        return NULL;
    }
    if (!PyType_Check(args[0]) || !PyType_IsSubtype((PyTypeObject *)args[0], &PyTuple_Type) ||
        ((PyTypeObject *)args[0])->tp_dictoffset != 0) {
        PyErr_SetString(PyExc_TypeError, "frame_type must be a tuple subclass without a dict");
        return NULL;
    }
    speedups_state *st = (speedups_state *)PyModule_GetState(module);
    Py_XSETREF(st->frame_type, Py_NewRef(args[0]));
    Py_XSETREF(st->protocol_error, Py_NewRef(args[1]));
    Py_XSETREF(st->payload_too_big, Py_NewRef(args[2]));
    Py_RETURN_NONE;
}

static PyMethodDef speedups_methods[] = {
    {"apply_mask", (PyCFunction)(void (*)(void))apply_mask, METH_FASTCALL | METH_KEYWORDS,
     apply_mask_doc},
    {"setup", (PyCFunction)(void (*)(void))speedups_setup, METH_FASTCALL, setup_doc},
    {"frame", (PyCFunction)(void (*)(void))frame, METH_FASTCALL, frame_doc},
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
    if (PyModule_AddStringConstant(module, "simd", simd) < 0) {
        return -1;
    }
    PyObject *parser_type = PyType_FromModuleAndSpec(module, &fp_spec, NULL);
    if (parser_type == NULL) {
        return -1;
    }
    int added = PyModule_AddObjectRef(module, "FrameParser", parser_type);
    Py_DECREF(parser_type);
    return added;
}

static int
speedups_traverse(PyObject *module, visitproc visit, void *arg)
{
    speedups_state *st = (speedups_state *)PyModule_GetState(module);
    Py_VISIT(st->frame_type);
    Py_VISIT(st->protocol_error);
    Py_VISIT(st->payload_too_big);
    return 0;
}

static int
speedups_clear(PyObject *module)
{
    speedups_state *st = (speedups_state *)PyModule_GetState(module);
    Py_CLEAR(st->frame_type);
    Py_CLEAR(st->protocol_error);
    Py_CLEAR(st->payload_too_big);
    return 0;
}

static void
speedups_free(void *module)
{
    speedups_clear((PyObject *)module);
}

static PyModuleDef_Slot speedups_slots[] = {
    {Py_mod_exec, (void *)speedups_exec},
#ifdef Py_mod_multiple_interpreters
    /* Its Python objects live in per-module state and a heap type: safe in sub-interpreters. */
    {Py_mod_multiple_interpreters, Py_MOD_PER_INTERPRETER_GIL_SUPPORTED},
#endif
    {0, NULL},
};

PyDoc_STRVAR(speedups_doc,
"Optional C accelerator for fullduplex.protocol; the pure-Python code is the reference.");

static struct PyModuleDef speedups_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "fullduplex.protocol._speedups",
    .m_doc = speedups_doc,
    .m_size = sizeof(speedups_state),
    .m_methods = speedups_methods,
    .m_slots = speedups_slots,
    .m_traverse = speedups_traverse,
    .m_clear = speedups_clear,
    .m_free = speedups_free,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    return PyModuleDef_Init(&speedups_module);
}
