/* pack.c: records in compact form (see pack.h). */
#include "pack.h"

#include <stdlib.h>

int edg_record_pack(const edg_record *r, int64_t n_jobs, uint64_t *offsets, uint8_t **data, int64_t *size) {
    uint8_t *out = malloc((size_t)(4 * r->total + 1)); /* z < 2^18 (gap < 2^16): 3 bytes + a value */
    if (!out) return -1;
    int64_t k = 0, o = 0;
    for (int64_t j = 0; j < n_jobs; j++) {
        offsets[j] = (uint64_t)o;
        int64_t prev = -1;
        for (uint32_t e = 0; e < r->counts[j]; e++, k++) {
            const int64_t p = r->pos[k];
            const int v = r->val[k];
            if (p <= prev) { free(out); return -2; }
            uint64_t z = (uint64_t)(p - prev - 1) << 2 | (v == 1 ? 0u : v == -1 ? 1u : 2u);
            prev = p;
            do {
                out[o++] = (uint8_t)((z & 127) | (z > 127 ? 128 : 0));
                z >>= 7;
            } while (z);
            if (v != 1 && v != -1) out[o++] = (uint8_t)(int8_t)v;
        }
    }
    offsets[n_jobs] = (uint64_t)o;
    uint8_t *fit = realloc(out, (size_t)(o > 0 ? o : 1));
    *data = fit ? fit : out;
    *size = o;
    return 0;
}

int edg_record_unpack_job(const uint8_t *p, const uint8_t *end, int64_t n, int64_t length, uint16_t *pos,
                   int8_t *val) {
    int64_t prev = -1;
    for (int64_t k = 0; k < n; k++) {
        uint64_t z = 0;
        int shift = 0;
        uint8_t b;
        do {
            if (p >= end || shift > 21) return -1;
            b = *p++;
            z |= (uint64_t)(b & 127) << shift;
            shift += 7;
        } while (b & 128);
        const int64_t where = prev + 1 + (int64_t)(z >> 2);
        if (where >= length) return -1;
        const unsigned tag = (unsigned)(z & 3);
        int v;
        if (tag == 0) v = 1;
        else if (tag == 1) v = -1;
        else if (tag == 2) {
            if (p >= end) return -1;
            v = (int8_t)*p++;
        } else return -1;
        pos[k] = (uint16_t)where;
        val[k] = (int8_t)v;
        prev = where;
    }
    return p == end ? 0 : -1;
}
