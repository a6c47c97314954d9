/* binding.c: the CPython face of the C kernels; the only file that includes Python.h.
 * Buffers come in through the buffer protocol; the GIL is released around every kernel.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h> /* first: CPython requires it before any standard header */

#include <stdlib.h>

#include "codes.h"
#include "kernels.h"
#include "noise.h"
#include "pack.h"

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
static PyObject *py_unpack_codes(PyObject *Py_UNUSED(self), PyObject *args) {
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
static PyObject *py_pack_codes(PyObject *Py_UNUSED(self), PyObject *args) {
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

/* ------------------------------------------------------------------ QES kernels */

/* A growable set of held buffers, released together; blocks never move once allocated. */
#define BUF_BLOCK 256
typedef struct bufblock { Py_buffer b[BUF_BLOCK]; int n; struct bufblock *next; } bufblock;
typedef struct { bufblock *head; Py_buffer *last; } bufset;

static void bufset_release(bufset *s) {
    bufblock *blk = s->head;
    while (blk) {
        for (int i = 0; i < blk->n; i++) PyBuffer_Release(&blk->b[i]);
        bufblock *next = blk->next;
        PyMem_Free(blk);
        blk = next;
    }
    s->head = NULL;
}

static void *bufset_get(bufset *s, PyObject *o, int writable, Py_ssize_t min_len, const char *what) {
    if (!s->head || s->head->n == BUF_BLOCK) {
        bufblock *blk = PyMem_Calloc(1, sizeof(bufblock));
        if (!blk) { PyErr_NoMemory(); return NULL; }
        blk->next = s->head;
        s->head = blk;
    }
    Py_buffer *view = &s->head->b[s->head->n];
    if (get_buf(o, view, writable, what) < 0) return NULL;
    if (view->len < min_len) {
        PyErr_Format(PyExc_ValueError, "%s: buffer of %zd bytes, need %zd", what, view->len, min_len);
        PyBuffer_Release(view);
        return NULL;
    }
    s->head->n++;
    s->last = view;
    return view->buf;
}

/* slots: list of (type, tensor_buf, n_elements, key, residual_int16_buf_or_None) */
static edg_slot *parse_slots(PyObject *list, bufset *bs, int *n_out) {
    if (!PyList_Check(list)) { PyErr_SetString(PyExc_TypeError, "slots must be a list"); return NULL; }
    int n = (int)PyList_GET_SIZE(list);
    edg_slot *slots = PyMem_Calloc(n > 0 ? n : 1, sizeof(edg_slot));
    if (!slots) { PyErr_NoMemory(); return NULL; }
    for (int i = 0; i < n; i++) {
        int type; long long n_el; unsigned long long key; PyObject *buf_o, *res_o; edg_qinfo qi;
        if (!PyArg_ParseTuple(PyList_GET_ITEM(list, i), "iOLKO", &type, &buf_o, &n_el, &key, &res_o)) goto fail;
        if (edg_qinfo_get(type, &qi) != 0) { PyErr_Format(PyExc_ValueError, "slot %d: type %d is not trainable", i, type); goto fail; }
        if (n_el < 0 || n_el % qi.block_elems) { PyErr_Format(PyExc_ValueError, "slot %d: bad element count", i); goto fail; }
        Py_ssize_t need = (Py_ssize_t)(n_el / qi.block_elems * qi.block_bytes);
        slots[i].data = bufset_get(bs, buf_o, 1, need, "tensor");
        if (!slots[i].data) goto fail;
        slots[i].type = type; slots[i].n = n_el; slots[i].key = key; slots[i].lo = qi.lo; slots[i].hi = qi.hi;
        slots[i].block_elems = qi.block_elems; slots[i].block_bytes = qi.block_bytes;
        if (res_o != Py_None) {
            slots[i].residual = bufset_get(bs, res_o, 1, (Py_ssize_t)(2 * n_el), "residual");
            if (!slots[i].residual) goto fail;
        }
    }
    *n_out = n;
    return slots;
fail:
    PyMem_Free(slots);
    return NULL;
}

/* laws: list of (gap_u64_buf, mag_u64_buf, index_u16_buf, sigma_t, step), one per slot */
static edg_slot_law *parse_laws(PyObject *list, int n_slots, bufset *bs) {
    if (!PyList_Check(list) || PyList_GET_SIZE(list) != n_slots) {
        PyErr_SetString(PyExc_ValueError, "laws must be a list with one entry per slot");
        return NULL;
    }
    edg_slot_law *laws = PyMem_Calloc(n_slots > 0 ? n_slots : 1, sizeof(edg_slot_law));
    if (!laws) { PyErr_NoMemory(); return NULL; }
    for (int i = 0; i < n_slots; i++) {
        PyObject *g_o, *m_o, *x_o; double sig;
        int step;
        if (!PyArg_ParseTuple(PyList_GET_ITEM(list, i), "OOOdi", &g_o, &m_o, &x_o, &sig, &step)) goto fail;
        if (step < 1 || step > 127) { PyErr_SetString(PyExc_ValueError, "noise step must be 1..127"); goto fail; }
        laws[i].step = step;
        laws[i].index = bufset_get(bs, x_o, 0, 2 * EDG_INDEX_LEN, "index table");
        if (!laws[i].index) goto fail;
        laws[i].gap = bufset_get(bs, g_o, 0, 8 * (EDG_GAP_LEN + 1), "gap table");
        if (!laws[i].gap) goto fail;
        laws[i].mag = bufset_get(bs, m_o, 0, 8 * EDG_MAG_LEN, "mag table");
        if (!laws[i].mag) goto fail;
        laws[i].sigma_t = sig;
    }
    return laws;
fail:
    PyMem_Free(laws);
    return NULL;
}

/* A packed history record: (b"packed", counts, offsets, data), see pack.h. */
static int parse_packed(PyObject *o, int64_t n_jobs, bufset *bs, edg_record *r) {
    PyObject *tag_o, *c_o, *o_o, *d_o;
    if (!PyArg_ParseTuple(o, "OOOO", &tag_o, &c_o, &o_o, &d_o)) return -1;
    r->counts = bufset_get(bs, c_o, 0, (Py_ssize_t)(4 * n_jobs), "record counts");
    if (!r->counts) return -1;
    if (bs->last->len != 4 * n_jobs) { PyErr_SetString(PyExc_ValueError, "record does not match the slots (job count)"); return -1; }
    r->offsets = bufset_get(bs, o_o, 0, (Py_ssize_t)(8 * (n_jobs + 1)), "packed record offsets");
    if (!r->offsets) return -1;
    r->packed = bufset_get(bs, d_o, 0, 0, "packed record data");
    if (!r->packed) {
        if (PyErr_Occurred()) return -1;
        r->packed = (const uint8_t *)""; /* an empty buffer may have no address; packed is the flag */
    }
    Py_ssize_t size = bs->last->len;
    int64_t total = 0;
    for (int64_t j = 0; j < n_jobs; j++) {
        if (r->offsets[j] > r->offsets[j + 1]) { PyErr_SetString(PyExc_ValueError, "packed record offsets do not ascend"); return -1; }
        total += r->counts[j];
    }
    if (r->offsets[0] != 0 || r->offsets[n_jobs] != (uint64_t)size) {
        PyErr_SetString(PyExc_ValueError, "packed record offsets do not span its data");
        return -1;
    }
    r->pos = NULL; r->val = NULL; r->total = total;
    return 0;
}

/* record: (counts_u32_buf, pos_u16_buf, val_i8_buf); a 4-tuple is a packed one (above), which only
 * edg_update reads (edg_restore and edg_swap need pos and val) */
static int parse_record(PyObject *o, int64_t n_jobs, bufset *bs, edg_record *r) {
    PyObject *c_o, *p_o, *v_o;
    if (PyTuple_Check(o) && PyTuple_GET_SIZE(o) == 4) return parse_packed(o, n_jobs, bs, r);
    if (!PyArg_ParseTuple(o, "OOO", &c_o, &p_o, &v_o)) return -1;
    r->packed = NULL; r->offsets = NULL;
    r->counts = bufset_get(bs, c_o, 0, (Py_ssize_t)(4 * n_jobs), "record counts");
    if (!r->counts) return -1;
    Py_ssize_t clen = bs->last->len;
    if (clen != 4 * n_jobs) { PyErr_SetString(PyExc_ValueError, "record does not match the slots (job count)"); return -1; }
    int64_t total = 0;
    for (int64_t j = 0; j < n_jobs; j++) total += r->counts[j];
    r->pos = bufset_get(bs, p_o, 0, (Py_ssize_t)(2 * total), "record positions");
    if (!r->pos) return -1;
    r->val = bufset_get(bs, v_o, 0, (Py_ssize_t)total, "record values");
    if (!r->val) return -1;
    r->total = total;
    return 0;
}

static PyObject *record_to_py(edg_record *r, int64_t n_jobs) {
    PyObject *res = Py_BuildValue("(y#y#y#)", (const char *)r->counts, (Py_ssize_t)(4 * n_jobs),
                                  (const char *)r->pos, (Py_ssize_t)(2 * r->total),
                                  (const char *)r->val, (Py_ssize_t)r->total);
    edg_record_free(r);
    return res;
}

/* perturb(slots, laws, seed, n_threads) -> applied record (counts, pos, val) */
static PyObject *py_perturb(PyObject *Py_UNUSED(self), PyObject *args) {
    PyObject *slots_o, *laws_o; long long seed; int nt;
    if (!PyArg_ParseTuple(args, "OOLi", &slots_o, &laws_o, &seed, &nt)) return NULL;
    if (seed == 0) { PyErr_SetString(PyExc_ValueError, "seed 0 is reserved"); return NULL; }
    bufset *bs = PyMem_Calloc(1, sizeof(bufset)); if (!bs) return PyErr_NoMemory();
    int n; PyObject *res = NULL; edg_slot_law *laws = NULL;
    edg_slot *slots = parse_slots(slots_o, bs, &n);
    if (slots && (laws = parse_laws(laws_o, n, bs))) {
        edg_record applied = {0}; int rc;
        Py_BEGIN_ALLOW_THREADS
        rc = edg_perturb(slots, n, laws, seed, nt, &applied);
        Py_END_ALLOW_THREADS
        if (rc) PyErr_NoMemory(); else res = record_to_py(&applied, edg_count_jobs(slots, n));
    }
    PyMem_Free(slots); PyMem_Free(laws); bufset_release(bs); PyMem_Free(bs);
    return res;
}

static void restore_error(int rc) {
    if (rc == -2) PyErr_SetString(PyExc_ValueError, "the record does not fit these weights (not from this perturb)");
    else PyErr_NoMemory();
}

/* restore(slots, applied_record, n_threads) */
/* the record restore and swap undo: perturb's, with positions and values (a packed one has none) */
static int parse_applied(PyObject *o, int64_t n_jobs, bufset *bs, edg_record *r) {
    if (parse_record(o, n_jobs, bs, r) < 0) return -1;
    if (r->packed) {
        PyErr_SetString(PyExc_ValueError, "restore and swap take the record perturb returned, not a packed one");
        return -1;
    }
    return 0;
}

static PyObject *py_restore(PyObject *Py_UNUSED(self), PyObject *args) {
    PyObject *slots_o, *rec_o; int nt;
    if (!PyArg_ParseTuple(args, "OOi", &slots_o, &rec_o, &nt)) return NULL;
    bufset *bs = PyMem_Calloc(1, sizeof(bufset)); if (!bs) return PyErr_NoMemory();
    int n, ok = 0; edg_record rec;
    edg_slot *slots = parse_slots(slots_o, bs, &n);
    if (slots && parse_applied(rec_o, edg_count_jobs(slots, n), bs, &rec) == 0) {
        int rc;
        Py_BEGIN_ALLOW_THREADS
        rc = edg_restore(slots, n, &rec, nt);
        Py_END_ALLOW_THREADS
        if (rc) restore_error(rc); else ok = 1;
    }
    PyMem_Free(slots); bufset_release(bs); PyMem_Free(bs);
    if (!ok) return NULL;
    Py_RETURN_NONE;
}

/* swap(slots, laws, applied_record, next_seed, n_threads) -> next member's applied record */
static PyObject *py_swap(PyObject *Py_UNUSED(self), PyObject *args) {
    PyObject *slots_o, *laws_o, *rec_o; long long next_seed; int nt;
    if (!PyArg_ParseTuple(args, "OOOLi", &slots_o, &laws_o, &rec_o, &next_seed, &nt)) return NULL;
    if (next_seed == 0) { PyErr_SetString(PyExc_ValueError, "seed 0 is reserved"); return NULL; }
    bufset *bs = PyMem_Calloc(1, sizeof(bufset)); if (!bs) return PyErr_NoMemory();
    int n; PyObject *res = NULL; edg_slot_law *laws = NULL; edg_record rec;
    edg_slot *slots = parse_slots(slots_o, bs, &n);
    if (slots && (laws = parse_laws(laws_o, n, bs)) && parse_applied(rec_o, edg_count_jobs(slots, n), bs, &rec) == 0) {
        edg_record next = {0}; int rc;
        Py_BEGIN_ALLOW_THREADS
        rc = edg_swap(slots, n, laws, &rec, next_seed, nt, &next);
        Py_END_ALLOW_THREADS
        if (rc) restore_error(rc); else res = record_to_py(&next, edg_count_jobs(slots, n));
    }
    PyMem_Free(slots); PyMem_Free(laws); bufset_release(bs); PyMem_Free(bs);
    return res;
}

/* update(slots, steps, hist_records, gamma, n_threads) -> ((counts, pos, val), stats dict)
 * steps: list of (seeds_i64_buf, coefs_f64_buf, alpha, laws); the last is the current step. */
static PyObject *py_update(PyObject *Py_UNUSED(self), PyObject *args) {
    PyObject *slots_o, *steps_o, *hist_o; double gamma; int nt;
    if (!PyArg_ParseTuple(args, "OOOdi", &slots_o, &steps_o, &hist_o, &gamma, &nt)) return NULL;
    if (!PyList_Check(steps_o) || PyList_GET_SIZE(steps_o) < 1 || !PyList_Check(hist_o) ||
        PyList_GET_SIZE(hist_o) != PyList_GET_SIZE(steps_o) - 1) {
        PyErr_SetString(PyExc_ValueError, "update needs >= 1 step and one record per earlier step");
        return NULL;
    }
    int n_steps = (int)PyList_GET_SIZE(steps_o);
    bufset *bs = PyMem_Calloc(1, sizeof(bufset)); if (!bs) return PyErr_NoMemory();
    edg_step *steps = PyMem_Calloc(n_steps, sizeof(edg_step));
    edg_record *hist = PyMem_Calloc(n_steps, sizeof(edg_record));
    PyObject *res = NULL; int n = 0;
    edg_slot *slots = parse_slots(slots_o, bs, &n);
    if (!steps || !hist || !slots) goto done;
    int64_t n_jobs = edg_count_jobs(slots, n);
    for (int s = 0; s < n_steps; s++) {
        PyObject *seeds_o, *coefs_o, *laws_o; double alpha;
        if (!PyArg_ParseTuple(PyList_GET_ITEM(steps_o, s), "OOdO", &seeds_o, &coefs_o, &alpha, &laws_o)) goto done;
        steps[s].seeds = bufset_get(bs, seeds_o, 0, 0, "seeds");
        if (!steps[s].seeds) goto done;
        Py_ssize_t P = bs->last->len / 8;
        steps[s].coefs = bufset_get(bs, coefs_o, 0, 8 * P, "coefs");
        if (!steps[s].coefs) goto done;
        if (bs->last->len != 8 * P || P < 1) { PyErr_SetString(PyExc_ValueError, "seeds and coefs differ in length"); goto done; }
        for (Py_ssize_t j = 0; j < P; j++) if (steps[s].seeds[j] <= 0) { PyErr_SetString(PyExc_ValueError, "pair seeds must be > 0"); goto done; }
        steps[s].P = (int)P; steps[s].alpha = alpha;
        steps[s].laws = parse_laws(laws_o, n, bs);
        if (!steps[s].laws) goto done;
        if (s < n_steps - 1 && parse_record(PyList_GET_ITEM(hist_o, s), n_jobs, bs, &hist[s]) < 0) goto done;
    }
    edg_record out = {0}; edg_update_stats st; int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = edg_update(slots, n, steps, n_steps, hist, gamma, nt, &out, &st);
    Py_END_ALLOW_THREADS
    if (rc == -1) { PyErr_NoMemory(); goto done; }
    if (rc == -2) {
        edg_record_free(&out);
        PyErr_SetString(PyExc_RuntimeError, "replay diverged from the recorded deltas: the window history does not match these weights");
        goto done;
    }
    PyObject *rec = record_to_py(&out, n_jobs);
    if (!rec) goto done;
    res = Py_BuildValue("(N{s:L,s:L,s:d})", rec, "changed", (long long)st.changed, "blocked", (long long)st.blocked, "abs_v_max", st.abs_v_max);
done:
    if (steps) for (int s = 0; s < n_steps; s++) PyMem_Free((void *)steps[s].laws);
    PyMem_Free(steps); PyMem_Free(hist); PyMem_Free(slots); bufset_release(bs); PyMem_Free(bs);
    return res;
}

/* pack_record((counts, pos, val)) -> (offsets uint64 bytes, data bytes): the packed form (pack.h) */
static PyObject *py_pack_record(PyObject *Py_UNUSED(self), PyObject *args) {
    PyObject *rec_o, *c_o, *p_o, *v_o;
    if (!PyArg_ParseTuple(args, "O", &rec_o) || !PyArg_ParseTuple(rec_o, "OOO", &c_o, &p_o, &v_o)) return NULL;
    bufset *bs = PyMem_Calloc(1, sizeof(bufset)); if (!bs) return PyErr_NoMemory();
    PyObject *res = NULL;
    const uint32_t *counts = bufset_get(bs, c_o, 0, 0, "record counts");
    if (counts) {
        int64_t n_jobs = bs->last->len / 4;
        edg_record r = {0};
        r.counts = (uint32_t *)counts;
        for (int64_t j = 0; j < n_jobs; j++) r.total += counts[j];
        r.pos = bufset_get(bs, p_o, 0, (Py_ssize_t)(2 * r.total), "record positions");
        r.val = r.pos ? bufset_get(bs, v_o, 0, (Py_ssize_t)r.total, "record values") : NULL;
        uint64_t *offsets = r.val ? PyMem_Malloc(8 * (size_t)(n_jobs + 1)) : NULL;
        if (r.val && !offsets) PyErr_NoMemory();
        if (offsets) {
            uint8_t *data = NULL; int64_t size = 0; int rc;
            Py_BEGIN_ALLOW_THREADS
            rc = edg_record_pack(&r, n_jobs, offsets, &data, &size);
            Py_END_ALLOW_THREADS
            if (rc == -1) PyErr_NoMemory();
            else if (rc == -2) PyErr_SetString(PyExc_ValueError, "record positions do not ascend within a job");
            else res = Py_BuildValue("(y#y#)", (const char *)offsets, (Py_ssize_t)(8 * (n_jobs + 1)),
                                     (const char *)data, (Py_ssize_t)size);
            free(data);
            PyMem_Free(offsets);
        }
    }
    bufset_release(bs); PyMem_Free(bs);
    return res;
}

/* chunk_noise(seed, key, chunk, length, gap, mag, index, step) -> (positions int64 bytes, values int8 bytes) */
static PyObject *py_chunk_noise(PyObject *Py_UNUSED(self), PyObject *args) {
    long long seed, length; unsigned long long key, chunk; PyObject *g_o, *m_o, *x_o; int step;
    if (!PyArg_ParseTuple(args, "LKKLOOOi", &seed, &key, &chunk, &length, &g_o, &m_o, &x_o, &step)) return NULL;
    if (seed == 0 || length < 0 || length > EDG_CHUNK || step < 1 || step > 127) {
        PyErr_SetString(PyExc_ValueError, "bad seed, length or step"); return NULL;
    }
    bufset *bs = PyMem_Calloc(1, sizeof(bufset)); if (!bs) return PyErr_NoMemory();
    PyObject *res = NULL;
    const uint64_t *gap = bufset_get(bs, g_o, 0, 8 * (EDG_GAP_LEN + 1), "gap table");
    const uint64_t *mag = gap ? bufset_get(bs, m_o, 0, 8 * EDG_MAG_LEN, "mag table") : NULL;
    const uint16_t *index = mag ? bufset_get(bs, x_o, 0, 2 * EDG_INDEX_LEN, "index table") : NULL;
    if (index) {
        int64_t *pos = PyMem_Malloc(8 * (size_t)(length + 1)); int8_t *val = PyMem_Malloc((size_t)length + 1);
        if (pos && val) {
            edg_stream st; int64_t p, k = 0; int v;
            edg_stream_init(&st, seed, key, chunk, length, gap, mag, index, step);
            while (edg_stream_next(&st, &p, &v)) { pos[k] = p; val[k] = (int8_t)v; k++; }
            res = Py_BuildValue("(y#y#)", (const char *)pos, (Py_ssize_t)(8 * k), (const char *)val, (Py_ssize_t)k);
        } else PyErr_NoMemory();
        PyMem_Free(pos); PyMem_Free(val);
    }
    bufset_release(bs); PyMem_Free(bs);
    return res;
}

static PyObject *py_mix64(PyObject *Py_UNUSED(self), PyObject *args) {
    unsigned long long x;
    if (!PyArg_ParseTuple(args, "K", &x)) return NULL;
    return PyLong_FromUnsignedLongLong(edg_mix64(x));
}

static PyMethodDef methods[] = {
    {"unpack_codes", py_unpack_codes, METH_VARARGS, "unpack_codes(type, tensor, start, out_int8)"},
    {"pack_codes", py_pack_codes, METH_VARARGS, "pack_codes(type, tensor, start, codes_int8)"},
    {"perturb", py_perturb, METH_VARARGS, "perturb(slots, laws, seed, n_threads) -> applied record"},
    {"restore", py_restore, METH_VARARGS, "restore(slots, applied, n_threads)"},
    {"swap", py_swap, METH_VARARGS, "swap(slots, laws, applied, next_seed, n_threads) -> next applied"},
    {"update", py_update, METH_VARARGS, "update(slots, steps, hist, gamma, n_threads) -> (record, stats)"},
    {"chunk_noise", py_chunk_noise, METH_VARARGS, "chunk_noise(seed, key, chunk, length, gap, mag, index, step)"},
    {"mix64", py_mix64, METH_VARARGS, "mix64(x)"},
    {"pack_record", py_pack_record, METH_VARARGS, "pack_record((counts, pos, val)) -> (offsets, data)"},
    {NULL, NULL, 0, NULL}
};

static struct PyModuleDef moddef = {
    .m_base = PyModuleDef_HEAD_INIT,
    .m_name = "_native",
    .m_doc = "edgees C kernels",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__native(void) { return PyModule_Create(&moddef); }
