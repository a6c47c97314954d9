/* noise.h: the counter-based, integer-only noise generator of QES (see edgees/noise.py).
 *
 * A member's noise on a tensor is drawn per stream chunk of EDG_CHUNK elements, as the positions
 * and values of its nonzero entries, in increasing position order; cost is proportional to the
 * number of nonzeros. The law is fixed by two integer tables computed by edgees/noise.py:
 *   gap[EDG_GAP_LEN + 1]: floor(2^32 * P(G <= g)) of the geometric gap between nonzeros; the last
 *                    entry is 2^32, above every 32-bit draw, so the search needs no bound check
 *   mag[EDG_MAG_LEN]: floor(2^31 * P(|R| <= m | R != 0)), m = 1..EDG_MAG_LEN
 * and a step s (codes per unit of R, 1..127): a nonzero's value is sign * min(127, s * |R|).
 * Golden values: edg_mix64(1) = 0x5692161d100b05e5, edg_stream_key(1, 0, 0) = 0x0a385ef24fa6a992;
 * seed 1, key 0, chunk 0, 65536 elements, sigma 0.01 (gap[0] = 34268880): 555 nonzeros, the first
 * three (58, -1), (113, -1), (171, +1); with step 16, -16, -16, +16. tests/test_noise.py pins these.
 */
#ifndef EDG_NOISE_H
#define EDG_NOISE_H

#include <stdint.h>

#define EDG_CHUNK 65536
#define EDG_GAP_LEN 1024
#define EDG_MAG_LEN 127
#define EDG_INDEX_LEN 4096
#define EDG_GOLDEN 0x9E3779B97F4A7C15ULL
#define EDG_GOLDEN_INV 0xF1DE83E19937733DULL /* EDG_GOLDEN * EDG_GOLDEN_INV == 1 mod 2^64 */
#define EDG_CHUNK_MUL 0xD1B54A32D192ED03ULL

static inline uint64_t edg_mix64(uint64_t x) {
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
    return x ^ (x >> 31);
}

static inline uint64_t edg_stream_key(uint64_t seed_abs, uint64_t tkey, uint64_t chunk) {
    uint64_t k = edg_mix64(edg_mix64(seed_abs + EDG_GOLDEN) ^ tkey);
    return edg_mix64(k ^ (chunk * EDG_CHUNK_MUL));
}

typedef struct {
    uint64_t key, t;
    int64_t pos, length;
    const uint64_t *gap, *mag;
    const uint16_t *index; /* index[k] = entries of gap <= k << 20 (noise.py _index) */
    int neg, step;
} edg_stream;

void edg_stream_init(edg_stream *s, int64_t seed, uint64_t tkey, uint64_t chunk, int64_t length,
                     const uint64_t *gap, const uint64_t *mag, const uint16_t *index, int step);

/* Up to max next nonzeros into pos/val (chunk-relative positions, values); returns how many, fewer
 * than max only when the stream is exhausted. The stream state stays in locals for
 * the whole batch (stores through int8_t may alias anything, so a per-entry call would
 * reload the state after every value it writes). The common case of each draw runs straight
 * through: the gap found by one index look-up and one comparison, magnitude 1 after one comparison,
 * the sign a bit of the draw xor the stream's; the rare cases (a longer gap search, a gap of
 * EDG_GAP_LEN or more, a larger magnitude, the end of the chunk) branch off. The end of the chunk
 * is noticed by the first draw past it (which is never emitted), so the loop tests only that. */
#if defined(__GNUC__) || defined(__clang__)
#define EDG_RARE(x) __builtin_expect(!!(x), 0)
#else
#define EDG_RARE(x) (x)
#endif
/* edg_stream_fill_pf: the same, and for each nonzero a write prefetch of the byte of a packed
 * tensor that element `where` of the chunk is written in (if pf is given): the cache lines are then
 * fetched while the rest of the batch is drawn, so memory latency overlaps the drawing instead of
 * following it. Element i = start + where sits in block i >> sh (bb bytes each), at byte
 * off[i mod 2^sh] of it. */
typedef struct {
    const uint8_t *data, *off;
    int64_t start;
    int sh, bb;
} edg_pf;
static inline int edg_stream_fill_pf(edg_stream *s, uint16_t *pos, int8_t *val, int max, const edg_pf *pf);

static inline int edg_stream_fill(edg_stream *s, uint16_t *pos, int8_t *val, int max) {
    return edg_stream_fill_pf(s, pos, val, max, 0);
}

static inline int edg_stream_fill_pf(edg_stream *s, uint16_t *pos, int8_t *val, int max, const edg_pf *pf) {
    if (s->pos >= s->length || max <= 0) return 0;
    int64_t p = s->pos;
    const int64_t length = s->length;
    uint64_t x = s->key + s->t * EDG_GOLDEN; /* the counter, as the hash input of draw t */
    const uint64_t neg = (uint64_t)(s->neg != 0);
    const uint64_t *gap = s->gap;
    const uint64_t lo_big = 2 * s->mag[0]; /* low 32 bits of a draw at or above: magnitude > 1 */
    const uint16_t *index = s->index;
    const int step = s->step;
    int n = 0;
    while (n < max) {
        x += EDG_GOLDEN;
        const uint64_t d = edg_mix64(x);
        const uint64_t hi = d >> 32;
        int64_t g = index[hi >> 20];
        g += gap[g] <= hi;
        if (EDG_RARE(gap[g] <= hi)) {
            while (gap[g] <= hi) g++;
        }
        if (EDG_RARE(g == EDG_GAP_LEN)) { /* no nonzero in the next EDG_GAP_LEN positions */
            p += EDG_GAP_LEN;
            if (p >= length) break;
            continue;
        }
        const int64_t where = p + g;
        p = where + 1;
        if (EDG_RARE(where >= length)) break;
        int v = step - 2 * step * (int)((d ^ neg) & 1);
        if (EDG_RARE((d & 0xFFFFFFFFULL) >= lo_big)) { /* mag[0] <= lo >> 1 */
            const uint64_t *mag = s->mag, r = (d & 0xFFFFFFFFULL) >> 1;
            int m = 1;
            while (m < EDG_MAG_LEN && mag[m - 1] <= r) m++;
            v = (v < 0 ? -1 : 1) * (m * step < 127 ? m * step : 127);
        }
#if defined(__GNUC__) || defined(__clang__)
        if (pf) {
            const int64_t i = pf->start + where;
            __builtin_prefetch(pf->data + (i >> pf->sh) * pf->bb + pf->off[i & ((1 << pf->sh) - 1)], 1, 3);
        }
#endif
        pos[n] = (uint16_t)where;
        val[n] = (int8_t)v;
        n++;
    }
    s->pos = p;
    s->t = (x - s->key) * EDG_GOLDEN_INV;
    return n;
}

/* Next nonzero of the stream: 1 with *pos (chunk-relative) and *val set, or 0 when exhausted. */
static inline int edg_stream_next(edg_stream *s, int64_t *pos, int *val) {
    uint16_t p;
    int8_t v;
    if (!edg_stream_fill(s, &p, &v, 1)) return 0;
    *pos = p;
    *val = v;
    return 1;
}

#endif
