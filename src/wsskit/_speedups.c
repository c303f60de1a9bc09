/*
 * wsskit._speedups: optional C twins of the hot loops of wsskit.protocol.
 *
 *   apply_mask(data, key) -> bytes
 *       the twin of wsskit.protocol.mask.apply_mask_py (RFC 6455 §5.3);
 *   parse_frames(data, start, expect_masked, allow_rsv1, max_payload)
 *       -> (frames, end, error)
 *       the twin of wsskit.protocol.frames.parse_frames_py (RFC 6455 §5.2).
 *
 * Both take any object with the buffer protocol (bytes, bytearray,
 * memoryview) and behave exactly like their pure-Python twins, which are the
 * reference: the test suite runs the same tests through both. Nothing here
 * knows about wsskit's exceptions; parse_frames reports a violation as a
 * (close code, reason) pair and the Python caller raises.
 *
 * Set WSSKIT_NO_SPEEDUPS=1 to make wsskit ignore this module.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <string.h>

#if defined(__SSE2__) || defined(_M_X64) || (defined(_M_IX86_FP) && _M_IX86_FP >= 2)
#include <emmintrin.h>
#define WSSKIT_SSE2 1
#endif

/* Above this many bytes the GIL is released while masking: other threads
 * run meanwhile, and the cost of releasing it is small next to the copy. */
#define MASK_NOGIL_THRESHOLD ((Py_ssize_t)1 << 17)

/* RFC 6455 §5.5: control frames carry 125 bytes of payload or less. */
#define MAX_CONTROL_PAYLOAD 125

/*
 * dst[i] = src[i] ^ key[i % 4] for i in [0, n). dst and src may be the same
 * buffer but must not otherwise overlap. 16 bytes at a time with SSE2 (every
 * x86-64 has it), else 8 at a time in a 64-bit word; unaligned loads and
 * stores go through memcpy, which compilers turn into plain moves.
 */
static void
mask_copy(unsigned char *dst, const unsigned char *src, Py_ssize_t n, const unsigned char key[4])
{
    Py_ssize_t i = 0;
    uint32_t key32;
    uint64_t key64;

    memcpy(&key32, key, 4);
    key64 = ((uint64_t)key32 << 32) | key32;
#ifdef WSSKIT_SSE2
    {
        /* The key repeated over 16 bytes; every offset below is a multiple
         * of 4, so the key stays in phase with the data. */
        const __m128i k = _mm_set1_epi32((int)key32);
        for (; i + 64 <= n; i += 64) {
            __m128i a = _mm_loadu_si128((const __m128i *)(src + i));
            __m128i b = _mm_loadu_si128((const __m128i *)(src + i + 16));
            __m128i c = _mm_loadu_si128((const __m128i *)(src + i + 32));
            __m128i d = _mm_loadu_si128((const __m128i *)(src + i + 48));
            _mm_storeu_si128((__m128i *)(dst + i), _mm_xor_si128(a, k));
            _mm_storeu_si128((__m128i *)(dst + i + 16), _mm_xor_si128(b, k));
            _mm_storeu_si128((__m128i *)(dst + i + 32), _mm_xor_si128(c, k));
            _mm_storeu_si128((__m128i *)(dst + i + 48), _mm_xor_si128(d, k));
        }
        for (; i + 16 <= n; i += 16) {
            __m128i a = _mm_loadu_si128((const __m128i *)(src + i));
            _mm_storeu_si128((__m128i *)(dst + i), _mm_xor_si128(a, k));
        }
    }
#endif
    for (; i + 8 <= n; i += 8) {
        uint64_t word;
        memcpy(&word, src + i, 8);
        word ^= key64;
        memcpy(dst + i, &word, 8);
    }
    for (; i < n; i++) {
        dst[i] = src[i] ^ key[i & 3];
    }
}

/* A new bytes object holding src[0:n] XOR key. */
static PyObject *
masked_bytes(const unsigned char *src, Py_ssize_t n, const unsigned char key[4])
{
    PyObject *out = PyBytes_FromStringAndSize(NULL, n);
    unsigned char *dst;

    if (out == NULL) {
        return NULL;
    }
    dst = (unsigned char *)PyBytes_AS_STRING(out);
    if (n >= MASK_NOGIL_THRESHOLD) {
        Py_BEGIN_ALLOW_THREADS
        mask_copy(dst, src, n, key);
        Py_END_ALLOW_THREADS
    }
    else {
        mask_copy(dst, src, n, key);
    }
    return out;
}

PyDoc_STRVAR(apply_mask_doc,
"apply_mask(data, key, /)\n--\n\n"
"Return ``data`` XORed with the 4-byte masking ``key`` (masks and unmasks).\n\n"
"Raises ValueError when ``key`` is not 4 bytes long.");

static PyObject *
apply_mask(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer data, key;
    PyObject *result = NULL;
    unsigned char key_bytes[4];

    (void)module;
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "apply_mask() takes 2 arguments (%zd given)", nargs);
        return NULL;
    }
    if (PyObject_GetBuffer(args[0], &data, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    if (PyObject_GetBuffer(args[1], &key, PyBUF_SIMPLE) < 0) {
        PyBuffer_Release(&data);
        return NULL;
    }
    if (key.len != 4) {
        PyErr_SetString(PyExc_ValueError, "a masking key is 4 bytes");
    }
    else {
        memcpy(key_bytes, key.buf, 4);
        result = masked_bytes((const unsigned char *)data.buf, data.len, key_bytes);
    }
    PyBuffer_Release(&key);
    PyBuffer_Release(&data);
    return result;
}

/* The (close code, reason) pair that parse_frames returns for a violation. */
static PyObject *
violation(int code, const char *format, ...)
{
    va_list vargs;
    PyObject *reason;
    PyObject *pair;

    va_start(vargs, format);
    reason = PyUnicode_FromFormatV(format, vargs);
    va_end(vargs);
    if (reason == NULL) {
        return NULL;
    }
    pair = Py_BuildValue("(iN)", code, reason);
    return pair;
}

/*
 * Check the first two header bytes as frames.py's _check_header does, in the
 * same order, so both twins report the same first violation. Returns NULL
 * (no error set) when the header is valid, a new (code, reason) pair when it
 * is not, and NULL with an exception set on failure: the caller tells the
 * last two apart with PyErr_Occurred().
 */
static PyObject *
check_header(unsigned int b0, unsigned int b1, int expect_masked, int allow_rsv1)
{
    unsigned int opcode = b0 & 0x0F;
    int fin = (b0 & 0x80) != 0;
    int rsv1 = (b0 & 0x40) != 0;
    int masked = (b1 & 0x80) != 0;
    unsigned int length = b1 & 0x7F;

    if (b0 & 0x30) {
        return violation(1002, "reserved bits RSV2/RSV3 set without an extension");
    }
    if (rsv1 && !allow_rsv1) {
        return violation(1002, "reserved bit RSV1 set without an extension");
    }
    if (!(opcode <= 0x2 || (opcode >= 0x8 && opcode <= 0xA))) {
        return violation(1002, "reserved opcode 0x%x", opcode);
    }
    if (opcode >= 0x8) {
        if (!fin) {
            return violation(1002, "fragmented control frame");
        }
        if (length > MAX_CONTROL_PAYLOAD) {
            return violation(1002, "control frame payload over 125 bytes");
        }
        if (rsv1) {
            return violation(1002, "RSV1 set on a control frame");
        }
    }
    if (masked != expect_masked) {
        if (expect_masked) {
            return violation(1002, "client frame is not masked");
        }
        return violation(1002, "server frame is masked");
    }
    return NULL;
}

PyDoc_STRVAR(parse_frames_doc,
"parse_frames(data, start, expect_masked, allow_rsv1, max_payload, /)\n--\n\n"
"Parse the complete frames in ``data`` from offset ``start``.\n\n"
"Returns ``(frames, end, error)``: ``frames`` is a list of ``(first, payload)``\n"
"pairs, the first header byte (FIN, RSV1 and opcode) and the unmasked payload\n"
"as bytes;\n"
"``end`` is the offset after the last frame parsed; ``error`` is None or the\n"
"``(close code, reason)`` of a violation found at ``end``. Parsing stops at an\n"
"incomplete frame, at a violation, and after any frame but a final text,\n"
"binary, ping or pong frame (what follows may need other limits).\n"
"``max_payload`` is None or the largest payload allowed (more for a\n"
"compressed frame, as frames.compressed_limit says).");

static PyObject *
parse_frames(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer view;
    const unsigned char *buf;
    Py_ssize_t pos, end;
    int expect_masked, allow_rsv1;
    int has_limit = 0;
    unsigned long long max_payload = 0;
    PyObject *frames = NULL;
    PyObject *error = NULL;
    PyObject *end_obj;
    PyObject *result = NULL;

    (void)module;
    if (nargs != 5) {
        PyErr_Format(PyExc_TypeError, "parse_frames() takes 5 arguments (%zd given)", nargs);
        return NULL;
    }
    pos = PyLong_AsSsize_t(args[1]);
    if (pos == -1 && PyErr_Occurred()) {
        return NULL;
    }
    expect_masked = PyObject_IsTrue(args[2]);
    if (expect_masked < 0) {
        return NULL;
    }
    allow_rsv1 = PyObject_IsTrue(args[3]);
    if (allow_rsv1 < 0) {
        return NULL;
    }
    if (args[4] != Py_None) {
        int overflow = 0;
        long long value = PyLong_AsLongLongAndOverflow(args[4], &overflow);
        if (value == -1 && PyErr_Occurred()) {
            return NULL;
        }
        if (overflow < 0 || (overflow == 0 && value < 0)) {
            PyErr_SetString(PyExc_ValueError, "max_payload must not be negative");
            return NULL;
        }
        /* Beyond 63 bits no frame length can exceed the limit. */
        max_payload = overflow > 0 ? ULLONG_MAX : (unsigned long long)value;
        has_limit = 1;
    }
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    buf = (const unsigned char *)view.buf;
    end = view.len;
    if (pos < 0 || pos > end) {
        PyErr_SetString(PyExc_ValueError, "start is outside the data");
        goto done;
    }
    frames = PyList_New(0);
    if (frames == NULL) {
        goto done;
    }

    while (end - pos >= 2) {
        unsigned int b0 = buf[pos];
        unsigned int b1 = buf[pos + 1];
        int rsv1 = (b0 & 0x40) != 0;
        int masked = (b1 & 0x80) != 0;
        unsigned long long length = b1 & 0x7F;
        Py_ssize_t header = 2;
        const unsigned char *payload_start;
        PyObject *payload;
        PyObject *first;
        PyObject *frame;
        int appended;

        error = check_header(b0, b1, expect_masked, allow_rsv1);
        if (error != NULL || PyErr_Occurred()) {
            break;
        }
        if (length == 126) {
            if (end - pos < 4) {
                break;
            }
            length = ((unsigned long long)buf[pos + 2] << 8) | buf[pos + 3];
            header = 4;
            if (length < 126) {
                error = violation(1002, "frame length not in its shortest form");
                break;
            }
        }
        else if (length == 127) {
            int i;
            if (end - pos < 10) {
                break;
            }
            length = 0;
            for (i = 0; i < 8; i++) {
                length = (length << 8) | buf[pos + 2 + i];
            }
            header = 10;
            /* RFC 6455 §5.2: the most significant bit of a 64-bit length MUST be 0. */
            if (length >> 63) {
                error = violation(1002, "frame length has its top bit set");
                break;
            }
            if (length < 0x10000) {
                error = violation(1002, "frame length not in its shortest form");
                break;
            }
        }
        if (has_limit) {
            unsigned long long limit = max_payload;
            if (rsv1) {
                /* frames.compressed_limit(): DEFLATE may grow incompressible data a little. */
                unsigned long long slack = (limit >> 5) + (limit >> 7) + (limit >> 11) + 64;
                limit = (limit > ULLONG_MAX - slack) ? ULLONG_MAX : limit + slack;
            }
            if (length > limit) {
                error = violation(1009, "frame of %llu bytes exceeds the limit of %S", length, args[4]);
                break;
            }
        }
        if (masked) {
            header += 4;
        }
        /* length < 2**63 here, and end - pos fits in Py_ssize_t. */
        if (end - pos < header || (unsigned long long)(end - pos - header) < length) {
            break;
        }
        payload_start = buf + pos + header;
        if (masked) {
            payload = masked_bytes(payload_start, (Py_ssize_t)length, payload_start - 4);
        }
        else {
            payload = PyBytes_FromStringAndSize((const char *)payload_start, (Py_ssize_t)length);
        }
        if (payload == NULL) {
            break;
        }
        /* b0 < 256: a cached small int, never NULL in practice, checked anyway. */
        first = PyLong_FromUnsignedLong(b0);
        if (first == NULL) {
            Py_DECREF(payload);
            break;
        }
        frame = PyTuple_New(2);
        if (frame == NULL) {
            Py_DECREF(first);
            Py_DECREF(payload);
            break;
        }
        PyTuple_SET_ITEM(frame, 0, first);
        PyTuple_SET_ITEM(frame, 1, payload);
        appended = PyList_Append(frames, frame);
        Py_DECREF(frame);
        if (appended < 0) {
            break;
        }
        pos += header + (Py_ssize_t)length;
        /* Only a final text, binary, ping or pong frame leaves the limits of
         * the next frame as they were; after any other, the caller looks. */
        switch (b0 & 0x8F) {
        case 0x81: case 0x82: case 0x89: case 0x8A:
            continue;
        default:
            break;
        }
        break;
    }
    if (PyErr_Occurred()) {
        goto done;
    }
    if (error == NULL) {
        error = Py_NewRef(Py_None);
    }
    end_obj = PyLong_FromSsize_t(pos);
    if (end_obj != NULL) {
        result = PyTuple_Pack(3, frames, end_obj, error);
        Py_DECREF(end_obj);
    }

done:
    Py_XDECREF(frames);
    Py_XDECREF(error);
    PyBuffer_Release(&view);
    return result;
}

static PyMethodDef speedups_methods[] = {
    {"apply_mask", (PyCFunction)(void (*)(void))apply_mask, METH_FASTCALL, apply_mask_doc},
    {"parse_frames", (PyCFunction)(void (*)(void))parse_frames, METH_FASTCALL, parse_frames_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef_Slot speedups_slots[] = {
#ifdef Py_mod_multiple_interpreters
    {Py_mod_multiple_interpreters, Py_MOD_PER_INTERPRETER_GIL_SUPPORTED},
#endif
    {0, NULL},
};

static struct PyModuleDef speedups_module = {
    PyModuleDef_HEAD_INIT,
    "wsskit._speedups",
    "C twins of wsskit.protocol's hot loops (masking, frame parsing).",
    0,
    speedups_methods,
    speedups_slots,
    NULL,
    NULL,
    NULL,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    return PyModuleDef_Init(&speedups_module);
}
