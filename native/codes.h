/* codes.h: read and write the integer weight codes inside packed GGML quant blocks.
 *
 * A tensor is a contiguous run of blocks; element i lives in block i / block_elems.
 * A "code" is the stored integer a weight decodes from, before scale/min are applied:
 *   Q4_0 Q4_1 IQ4_NL IQ4_XS Q4_K: 0..15   Q5_0 Q5_1 Q5_K: 0..31   Q6_K: 0..63
 *   Q2_K: 0..3   Q3_K: 0..7 (low 2 bits | hmask bit << 2)   Q8_0: -128..127
 * IQ4_* codes index the ascending table kvalues_iq4nl, so code order is value order.
 * Scales, mins and super-block fields are never touched by these functions.
 */
#ifndef EDG_CODES_H
#define EDG_CODES_H

#include <stdint.h>

/* ggml_type ids (ggml.h) of the trainable types. */
enum {
    EDG_Q4_0 = 2, EDG_Q4_1 = 3, EDG_Q5_0 = 6, EDG_Q5_1 = 7, EDG_Q8_0 = 8,
    EDG_Q2_K = 10, EDG_Q3_K = 11, EDG_Q4_K = 12, EDG_Q5_K = 13, EDG_Q6_K = 14,
    EDG_IQ4_NL = 20, EDG_IQ4_XS = 23
};
#define EDG_N_TRAINABLE 12              /* the types above */
#define EDG_N_TYPE_IDS (EDG_IQ4_XS + 1) /* 24: a table by type id covers ids 0..23, IQ4_XS the highest */
#define EDG_MAX_BLOCK_ELEMS 256         /* the K-quant and IQ4_XS super-blocks; the others hold 32 */

typedef struct {
    int block_elems; /* weights per block: 32 or 256 */
    int block_bytes; /* bytes per block */
    int lo, hi;      /* code range, inclusive */
} edg_qinfo;

/* 0 and *out filled for a trainable type; -1 otherwise. */
int edg_qinfo_get(int type, edg_qinfo *out);

/* Element-wise access (called once per nonzero noise entry: keep them cheap). */
int edg_get_code(int type, const uint8_t *tensor, int64_t i);
void edg_set_code(int type, uint8_t *tensor, int64_t i, int code);

/* Bulk access to elements [start, start + n) of a tensor; codes as int8. */
void edg_unpack(int type, const uint8_t *tensor, int64_t start, int64_t n, int8_t *out);
void edg_pack(int type, uint8_t *tensor, int64_t start, int64_t n, const int8_t *codes);


/* ---- inline element access (shared by codes.c and the kernels' hot loops) ---------------- */

/* Where element e of a block keeps its code: low field = lw bits at bit ls of byte lb; high field
 * (hw = 0 if none) = hw bits at bit hs of byte hb, placed above the low field. */
typedef struct { int lb, ls, lw, hb, hs, hw; } edg_loc;

static inline edg_loc locate(int type, int e) {
    edg_loc L = {0}; /* hw = 0: no high field unless a case sets one */
    switch (type) {
    case EDG_Q4_0: case EDG_IQ4_NL:  /* qs @2: e < 16 low nibble of qs[e], else high of qs[e-16] */
        L.lb = 2 + (e & 15); L.ls = 4 * (e >> 4); L.lw = 4; break;
    case EDG_Q4_1:                   /* qs @4 */
        L.lb = 4 + (e & 15); L.ls = 4 * (e >> 4); L.lw = 4; break;
    case EDG_Q5_0:                   /* qs @6 as Q4_0; bit 4 = bit e of qh (LE u32) @2 */
        L.lb = 6 + (e & 15); L.ls = 4 * (e >> 4); L.lw = 4;
        L.hb = 2 + (e >> 3); L.hs = e & 7; L.hw = 1; break;
    case EDG_Q5_1:                   /* qs @8; qh @4 */
        L.lb = 8 + (e & 15); L.ls = 4 * (e >> 4); L.lw = 4;
        L.hb = 4 + (e >> 3); L.hs = e & 7; L.hw = 1; break;
    case EDG_Q8_0:                   /* qs @2, one int8 per element */
        L.lb = 2 + e; L.lw = 8; break;
    case EDG_Q2_K:                   /* e = 128h + 32j + l: bits 2j of qs[32h + l], qs @16 */
        L.lb = 16 + 32 * (e >> 7) + (e & 31); L.ls = 2 * ((e >> 5) & 3); L.lw = 2; break;
    case EDG_Q3_K:                   /* as Q2_K with qs @32; bit 2 = bit e/32 of hmask[e%32] @0 */
        L.lb = 32 + 32 * (e >> 7) + (e & 31); L.ls = 2 * ((e >> 5) & 3); L.lw = 2;
        L.hb = e & 31; L.hs = e >> 5; L.hw = 1; break;
    case EDG_Q4_K:                   /* e = 64c + 32n + l: nibble n of qs[32c + l], qs @16 */
        L.lb = 16 + 32 * (e >> 6) + (e & 31); L.ls = 4 * ((e >> 5) & 1); L.lw = 4; break;
    case EDG_Q5_K:                   /* as Q4_K with qs @48; bit 4 = bit e/32 of qh[e%32] @16 */
        L.lb = 48 + 32 * (e >> 6) + (e & 31); L.ls = 4 * ((e >> 5) & 1); L.lw = 4;
        L.hb = 16 + (e & 31); L.hs = e >> 5; L.hw = 1; break;
    case EDG_Q6_K: {                 /* e = 128h + 32k + l: nibble k/2 of ql[64h + 32(k%2) + l] @0,
                                        bits 2k of qh[32h + l] @128 */
        int h = e >> 7, k = (e >> 5) & 3, l = e & 31;
        L.lb = 64 * h + 32 * (k & 1) + l; L.ls = 4 * (k >> 1); L.lw = 4;
        L.hb = 128 + 32 * h + l; L.hs = 2 * k; L.hw = 2; break;
    }
    case EDG_IQ4_XS:                 /* e = 32ib + 16n + j: nibble n of qs[16ib + j], qs @8 */
        L.lb = 8 + 16 * (e >> 5) + (e & 15); L.ls = 4 * ((e >> 4) & 1); L.lw = 4; break;
    default: break;
    }
    return L;
}

static inline int get_in_block(int type, const uint8_t *blk, int e) {
    if (type == EDG_Q8_0) return (int8_t)blk[2 + e];
    edg_loc L = locate(type, e);
    int c = (blk[L.lb] >> L.ls) & ((1 << L.lw) - 1);
    if (L.hw) c |= ((blk[L.hb] >> L.hs) & ((1 << L.hw) - 1)) << L.lw;
    return c;
}

static inline void set_in_block(int type, uint8_t *blk, int e, int code) {
    if (type == EDG_Q8_0) { blk[2 + e] = (uint8_t)(int8_t)code; return; }
    edg_loc L = locate(type, e);
    int lm = (1 << L.lw) - 1;
    blk[L.lb] = (uint8_t)((blk[L.lb] & ~(lm << L.ls)) | ((code & lm) << L.ls));
    if (L.hw) {
        int hm = (1 << L.hw) - 1;
        blk[L.hb] = (uint8_t)((blk[L.hb] & ~(hm << L.hs)) | (((code >> L.lw) & hm) << L.hs));
    }
}

/* Add delta to the code of element e of a block if the result stays in [lo, hi]: 1 if applied,
 * 0 if gated (the block is then untouched). */
static inline int edg_add_in_block(int type, uint8_t *blk, int e, int delta, int lo, int hi) {
    int c = get_in_block(type, blk, e) + delta;
    if (c < lo || c > hi) return 0;
    set_in_block(type, blk, e, c);
    return 1;
}

#endif
