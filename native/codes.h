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

#endif
