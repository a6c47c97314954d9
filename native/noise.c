/* noise.c: stream set-up for the counter-based noise (the draw loop is inline in noise.h). */
#include "noise.h"

void edg_stream_init(edg_stream *s, int64_t seed, uint64_t tkey, uint64_t chunk, int64_t length,
                     const uint64_t *gap, const uint64_t *mag, const uint16_t *index, int step) {
    uint64_t seed_abs = seed < 0 ? (uint64_t)(-(seed + 1)) + 1 : (uint64_t)seed;
    s->key = edg_stream_key(seed_abs, tkey, chunk);
    s->t = 0;
    s->pos = 0;
    s->length = length;
    s->gap = gap;
    s->mag = mag;
    s->index = index;
    s->neg = seed < 0;
    s->step = step;
}
