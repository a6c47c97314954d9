/* binding.c: the CPython face of the C kernels; the only file that includes Python.h.
 * Buffers come in through the buffer protocol; the GIL is released around every kernel.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include "codes.h"

static int get_buf(PyObject *obj, Py_buffer *view, int writable, const char *what) {
    if (PyObject_GetBuffer(obj, view, (writable ? PyBUF_WRITABLE : PyBUF_SIMPLE) | PyBUF_C_CONTIGUOUS) < 0) {
        PyErr_Format(PyExc_TypeError, "%s: expected a %scontiguous buffer", what, writable ? "writable " : "");
        return -1;
    }
    return 0;
}

/* Bytes needed to hold elements [start, start+n) of a tensor of this type, from the tensor start. */
static int check_span(int type, Py_ssize_t buf_len, long long start, long long n, edg_qinfo *qi) {
    if (edg_qinfo_get(type, qi) != 0) {
        PyErr_Format(PyExc_ValueError, "ggml type %d is not a trainable type", type);
        return -1;
    }
    if (start < 0 || n < 0) {
        PyErr_SetString(PyExc_ValueError, "start and n must be >= 0");
        return -1;
    }
    long long end_block = (start + n + qi->block_elems - 1) / qi->block_elems;
    if (end_block * (long long)qi->block_bytes > (long long)buf_len) {
        PyErr_SetString(PyExc_ValueError, "element range runs past the end of the tensor buffer");
        return -1;
    }
    return 0;
}

/* unpack_codes(type, tensor, start, out_int8): out gets codes of elements [start, start+len(out)). */
static PyObject *py_unpack_codes(PyObject *self, PyObject *args) {
    int type; long long start; PyObject *src_o, *out_o;
    if (!PyArg_ParseTuple(args, "iOLO", &type, &src_o, &start, &out_o)) return NULL;
    Py_buffer src, out; edg_qinfo qi;
    if (get_buf(src_o, &src, 0, "tensor") < 0) return NULL;
    if (get_buf(out_o, &out, 1, "out") < 0) { PyBuffer_Release(&src); return NULL; }
    if (check_span(type, src.len, start, out.len, &qi) < 0) { PyBuffer_Release(&src); PyBuffer_Release(&out); return NULL; }
    Py_BEGIN_ALLOW_THREADS
    edg_unpack(type, (const uint8_t *)src.buf, start, out.len, (int8_t *)out.buf);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&src); PyBuffer_Release(&out);
    Py_RETURN_NONE;
}

/* pack_codes(type, tensor, start, codes_int8): writes codes of elements [start, start+len(codes)). */
static PyObject *py_pack_codes(PyObject *self, PyObject *args) {
    int type; long long start; PyObject *dst_o, *codes_o;
    if (!PyArg_ParseTuple(args, "iOLO", &type, &dst_o, &start, &codes_o)) return NULL;
    Py_buffer dst, codes; edg_qinfo qi;
    if (get_buf(dst_o, &dst, 1, "tensor") < 0) return NULL;
    if (get_buf(codes_o, &codes, 0, "codes") < 0) { PyBuffer_Release(&dst); return NULL; }
    if (check_span(type, dst.len, start, codes.len, &qi) < 0) { PyBuffer_Release(&dst); PyBuffer_Release(&codes); return NULL; }
    Py_BEGIN_ALLOW_THREADS
    edg_pack(type, (uint8_t *)dst.buf, start, codes.len, (const int8_t *)codes.buf);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&dst); PyBuffer_Release(&codes);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"unpack_codes", py_unpack_codes, METH_VARARGS, "unpack_codes(type, tensor, start, out_int8)"},
    {"pack_codes", py_pack_codes, METH_VARARGS, "pack_codes(type, tensor, start, codes_int8)"},
    {NULL, NULL, 0, NULL}
};

static struct PyModuleDef moddef = {PyModuleDef_HEAD_INIT, "_native", "edgees C kernels", -1, methods};

PyMODINIT_FUNC PyInit__native(void) { return PyModule_Create(&moddef); }
