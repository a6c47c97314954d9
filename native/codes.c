/* codes.c: read and write the integer weight codes inside packed GGML quant blocks.
 *
 * The C twin of edgees/quants.py (the numpy reference); tests/test_quants.py pins the two together
 * byte for byte. Element i of a tensor is the i-th value ggml's dequantize_row_* writes.
 *
 * Every code is a low field plus, for some types, a high field in another byte (edg_loc below).
 * All bits of a code byte belong to codes, so the block-at-a-time packers may overwrite whole
 * code bytes; scale, min and super-block bytes are never written.
 */
#include <string.h>
#include "codes.h"

int edg_qinfo_get(int type, edg_qinfo *out) {
    edg_qinfo q;
    switch (type) {
    case EDG_Q4_0: /* d | qs[16] */
        q = (edg_qinfo){.block_elems = 32, .block_bytes = 18, .lo = 0, .hi = 15}; break;
    case EDG_Q4_1: /* d | m | qs[16] */
        q = (edg_qinfo){.block_elems = 32, .block_bytes = 20, .lo = 0, .hi = 15}; break;
    case EDG_Q5_0: /* d | qh[4] | qs[16] */
        q = (edg_qinfo){.block_elems = 32, .block_bytes = 22, .lo = 0, .hi = 31}; break;
    case EDG_Q5_1: /* d | m | qh[4] | qs[16] */
        q = (edg_qinfo){.block_elems = 32, .block_bytes = 24, .lo = 0, .hi = 31}; break;
    case EDG_Q8_0: /* d | qs[32] int8 */
        q = (edg_qinfo){.block_elems = 32, .block_bytes = 34, .lo = -128, .hi = 127}; break;
    case EDG_Q2_K: /* scales[16] | qs[64] | d | dmin */
        q = (edg_qinfo){.block_elems = 256, .block_bytes = 84, .lo = 0, .hi = 3}; break;
    case EDG_Q3_K: /* hmask[32] | qs[64] | scales[12] | d */
        q = (edg_qinfo){.block_elems = 256, .block_bytes = 110, .lo = 0, .hi = 7}; break;
    case EDG_Q4_K: /* d | dmin | scales[12] | qs[128] */
        q = (edg_qinfo){.block_elems = 256, .block_bytes = 144, .lo = 0, .hi = 15}; break;
    case EDG_Q5_K: /* d | dmin | scales[12] | qh[32] | qs[128] */
        q = (edg_qinfo){.block_elems = 256, .block_bytes = 176, .lo = 0, .hi = 31}; break;
    case EDG_Q6_K: /* ql[128] | qh[64] | scales[16] | d */
        q = (edg_qinfo){.block_elems = 256, .block_bytes = 210, .lo = 0, .hi = 63}; break;
    case EDG_IQ4_NL: /* d | qs[16] */
        q = (edg_qinfo){.block_elems = 32, .block_bytes = 18, .lo = 0, .hi = 15}; break;
    case EDG_IQ4_XS: /* d | scales_h | scales_l[4] | qs[128] */
        q = (edg_qinfo){.block_elems = 256, .block_bytes = 136, .lo = 0, .hi = 15}; break;
    default: return -1;
    }
    if (out) *out = q;
    return 0;
}

int edg_get_code(int type, const uint8_t *tensor, int64_t i) {
    edg_qinfo q;
    if (edg_qinfo_get(type, &q) != 0) return 0;
    return get_in_block(type, tensor + (i / q.block_elems) * q.block_bytes, (int)(i % q.block_elems));
}

void edg_set_code(int type, uint8_t *tensor, int64_t i, int code) {
    edg_qinfo q;
    if (edg_qinfo_get(type, &q) != 0) return;
    set_in_block(type, tensor + (i / q.block_elems) * q.block_bytes, (int)(i % q.block_elems), code);
}

/* ---- whole blocks: straight loops over each layout ---------------------------------------- */

static void unpack_nib16(const uint8_t *qs, int8_t *out) {  /* 16 bytes -> 16 low, 16 high */
    for (int j = 0; j < 16; j++) { out[j] = (int8_t)(qs[j] & 15); out[j + 16] = (int8_t)(qs[j] >> 4); }
}

static void pack_nib16(uint8_t *qs, const int8_t *c) {
    for (int j = 0; j < 16; j++) qs[j] = (uint8_t)((c[j] & 15) | ((c[j + 16] & 15) << 4));
}

static void unpack_block(int type, const uint8_t *b, int8_t *out) {
    switch (type) {
    case EDG_Q4_0: case EDG_IQ4_NL: unpack_nib16(b + 2, out); break;
    case EDG_Q4_1: unpack_nib16(b + 4, out); break;
    case EDG_Q5_0: case EDG_Q5_1: {
        const uint8_t *qh = b + (type == EDG_Q5_1 ? 4 : 2);
        unpack_nib16(qh + 4, out);
        uint32_t h = qh[0] | (uint32_t)qh[1] << 8 | (uint32_t)qh[2] << 16 | (uint32_t)qh[3] << 24;
        for (int j = 0; j < 32; j++) out[j] |= (int8_t)(((h >> j) & 1) << 4);
        break;
    }
    case EDG_Q8_0: memcpy(out, b + 2, 32); break;
    case EDG_Q2_K: case EDG_Q3_K: {
        const uint8_t *qs = b + (type == EDG_Q3_K ? 32 : 16);
        for (int h = 0; h < 2; h++)
            for (int j = 0; j < 4; j++)
                for (int l = 0; l < 32; l++)
                    out[128 * h + 32 * j + l] = (int8_t)((qs[32 * h + l] >> (2 * j)) & 3);
        if (type == EDG_Q3_K)
            for (int bit = 0; bit < 8; bit++)  /* element 32*bit + l: bit `bit` of hmask[l] */
                for (int l = 0; l < 32; l++) out[32 * bit + l] |= (int8_t)(((b[l] >> bit) & 1) << 2);
        break;
    }
    case EDG_Q4_K: case EDG_Q5_K: {
        const uint8_t *qs = b + (type == EDG_Q5_K ? 48 : 16);
        for (int c = 0; c < 4; c++)
            for (int l = 0; l < 32; l++) {
                out[64 * c + l] = (int8_t)(qs[32 * c + l] & 15);
                out[64 * c + 32 + l] = (int8_t)(qs[32 * c + l] >> 4);
            }
        if (type == EDG_Q5_K)
            for (int bit = 0; bit < 8; bit++)  /* element 32*bit + l: bit `bit` of qh[l] */
                for (int l = 0; l < 32; l++) out[32 * bit + l] |= (int8_t)(((b[16 + l] >> bit) & 1) << 4);
        break;
    }
    case EDG_Q6_K:
        for (int h = 0; h < 2; h++) {
            const uint8_t *ql = b + 64 * h, *qh = b + 128 + 32 * h;
            int8_t *y = out + 128 * h;
            for (int l = 0; l < 32; l++) {
                y[l]      = (int8_t)((ql[l] & 15)      | (((qh[l] >> 0) & 3) << 4));
                y[l + 32] = (int8_t)((ql[l + 32] & 15) | (((qh[l] >> 2) & 3) << 4));
                y[l + 64] = (int8_t)((ql[l] >> 4)      | (((qh[l] >> 4) & 3) << 4));
                y[l + 96] = (int8_t)((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4));
            }
        }
        break;
    case EDG_IQ4_XS:
        for (int ib = 0; ib < 8; ib++) unpack_nib16(b + 8 + 16 * ib, out + 32 * ib);
        break;
    default: break;
    }
}

static void pack_block(int type, uint8_t *b, const int8_t *c) {
    switch (type) {
    case EDG_Q4_0: case EDG_IQ4_NL: pack_nib16(b + 2, c); break;
    case EDG_Q4_1: pack_nib16(b + 4, c); break;
    case EDG_Q5_0: case EDG_Q5_1: {
        uint8_t *qh = b + (type == EDG_Q5_1 ? 4 : 2);
        pack_nib16(qh + 4, c);
        for (int k = 0; k < 4; k++) {
            int v = 0;
            for (int j = 0; j < 8; j++) v |= ((c[8 * k + j] >> 4) & 1) << j;
            qh[k] = (uint8_t)v;
        }
        break;
    }
    case EDG_Q8_0: memcpy(b + 2, c, 32); break;
    case EDG_Q2_K: case EDG_Q3_K: {
        uint8_t *qs = b + (type == EDG_Q3_K ? 32 : 16);
        for (int h = 0; h < 2; h++)
            for (int l = 0; l < 32; l++) {
                const int8_t *x = c + 128 * h + l;
                qs[32 * h + l] = (uint8_t)((x[0] & 3) | ((x[32] & 3) << 2) | ((x[64] & 3) << 4) |
                                           ((x[96] & 3) << 6));
            }
        if (type == EDG_Q3_K)
            for (int l = 0; l < 32; l++) {
                int v = 0;
                for (int bit = 0; bit < 8; bit++) v |= ((c[32 * bit + l] >> 2) & 1) << bit;
                b[l] = (uint8_t)v;
            }
        break;
    }
    case EDG_Q4_K: case EDG_Q5_K: {
        uint8_t *qs = b + (type == EDG_Q5_K ? 48 : 16);
        for (int k = 0; k < 4; k++)
            for (int l = 0; l < 32; l++)
                qs[32 * k + l] = (uint8_t)((c[64 * k + l] & 15) | ((c[64 * k + 32 + l] & 15) << 4));
        if (type == EDG_Q5_K)
            for (int l = 0; l < 32; l++) {
                int v = 0;
                for (int bit = 0; bit < 8; bit++) v |= ((c[32 * bit + l] >> 4) & 1) << bit;
                b[16 + l] = (uint8_t)v;
            }
        break;
    }
    case EDG_Q6_K:
        for (int h = 0; h < 2; h++) {
            uint8_t *ql = b + 64 * h, *qh = b + 128 + 32 * h;
            const int8_t *x = c + 128 * h;
            for (int l = 0; l < 32; l++) {
                ql[l]      = (uint8_t)((x[l] & 15)      | ((x[l + 64] & 15) << 4));
                ql[l + 32] = (uint8_t)((x[l + 32] & 15) | ((x[l + 96] & 15) << 4));
                qh[l] = (uint8_t)(((x[l] >> 4) & 3) | (((x[l + 32] >> 4) & 3) << 2) |
                                  (((x[l + 64] >> 4) & 3) << 4) | (((x[l + 96] >> 4) & 3) << 6));
            }
        }
        break;
    case EDG_IQ4_XS:
        for (int ib = 0; ib < 8; ib++) pack_nib16(b + 8 + 16 * ib, c + 32 * ib);
        break;
    default: break;
    }
}

/* ---- ranges: element-wise head and tail, whole blocks in the middle ----------------------- */

void edg_unpack(int type, const uint8_t *tensor, int64_t start, int64_t n, int8_t *out) {
    edg_qinfo q;
    if (edg_qinfo_get(type, &q) != 0 || n <= 0) return;
    int64_t i = start, end = start + n, be = q.block_elems;
    for (; i < end && i % be; i++) *out++ = (int8_t)get_in_block(type, tensor + (i / be) * q.block_bytes, (int)(i % be));
    for (; i + be <= end; i += be, out += be) unpack_block(type, tensor + (i / be) * q.block_bytes, out);
    for (; i < end; i++) *out++ = (int8_t)get_in_block(type, tensor + (i / be) * q.block_bytes, (int)(i % be));
}

void edg_pack(int type, uint8_t *tensor, int64_t start, int64_t n, const int8_t *codes) {
    edg_qinfo q;
    if (edg_qinfo_get(type, &q) != 0 || n <= 0) return;
    int64_t i = start, end = start + n, be = q.block_elems;
    for (; i < end && i % be; i++) set_in_block(type, tensor + (i / be) * q.block_bytes, (int)(i % be), *codes++);
    for (; i + be <= end; i += be, codes += be) pack_block(type, tensor + (i / be) * q.block_bytes, codes);
    for (; i < end; i++) set_in_block(type, tensor + (i / be) * q.block_bytes, (int)(i % be), *codes++);
}
