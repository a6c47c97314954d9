/* update.c: the QES update with error feedback (replay / residual / off), parallel over
 * (tensor, chunk) jobs. The numpy reference is update() in edgees/kernels_ref.py.
 *
 * Replay is lazy, with the same bytes as a dense pass per step. A replayed step moves codes only by
 * its recorded deltas, so where it has no noise entry and no recorded delta an element's e only
 * decays: v = gamma * e, e_q <- T(e_q), a function of e_q alone while |v| < 0.5 (no code step) and of
 * e_q and the element's unchanging code beyond. Each element keeps the index of the step its e_q
 * enters (last[]) and is brought up to date only when a step touches it: one look-up of T^n for a
 * gap of n <= 16 steps, jumps of T^(2^b) for longer ones, exact single steps where the decay steps a
 * code; the tables are built once per call from the dense pass's own arithmetic (settle()). A
 * replayed step then costs its noise entries and recorded deltas. A step whose noise touches much of
 * the chunk (Q8_0 at usual sigmas) runs dense, as does the current step.
 */
#include "kernels.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "codes.h"
#include "jobs.h"
#include "noise.h"
#include "pack.h"

/* ------------------------------------------------------------------ the arithmetic of one element */

#define E_SCALE 8192.0
#define E_CLAMP 1.5
#define E_MAX 12288 /* |e_q| <= E_CLAMP * E_SCALE after any step */
#define COEF_SCALE 4096.0
#define MAX_STEP 127.0 /* a step moves a code by at most this: records keep deltas as int8 */
#define NZ_BATCH 256   /* noise draws per batch */

/* Round half away from zero: trunc(v + copysign(0.5, v)), the cast truncating (|v| <= 1e9 + 0.5). */
static inline double round_away(double v) { return (double)(int64_t)(v + copysign(0.5, v)); }

static inline double clamp_v(double v) {
    if (v < -1e9) v = -1e9;
    if (v > 1e9) v = 1e9;
    return v;
}

/* v of an element with no noise this step: coef * 0.0 is a zero, and a zero plus y is y (or a zero
 * when y is one, which settles the same), so this is the dense v for any finite coef. */
static inline double decay_v(double gamma, int e_q) { return clamp_v(gamma * ((double)e_q / E_SCALE)); }

/* From v to the new e_q (*e_q) and the step the range admits (returned; *blocked = 1 when a nonzero
 * rounded step, bounded to +-MAX_STEP, was refused). Every path runs this one function, so they agree to the bit. */
static inline double settle(double v, int code, int lo, int hi, int16_t *e_q, int *blocked) {
    double stp = round_away(v), applied = 0.0;
    if (stp > MAX_STEP) stp = MAX_STEP;
    if (stp < -MAX_STEP) stp = -MAX_STEP;
    *blocked = 0;
    if (stp != 0.0) {
        double target = (double)code + stp;
        if (target >= lo && target <= hi) applied = stp;
        else *blocked = 1;
    }
    double r = v - applied;
    if (r < -E_CLAMP) r = -E_CLAMP;
    if (r > E_CLAMP) r = E_CLAMP;
    *e_q = (int16_t)round_away(r * E_SCALE);
    return applied;
}

/* ------------------------------------------------------------------ decay tables */

#define NO_JUMP INT16_MIN /* the path from x steps a code within those steps: no table jump */
#define MAX_LEVELS 16     /* last[] is uint16: lazy replay takes windows up to 2^16 steps */
#define DIRECT_N 16       /* direct[n - 1][x] = T^n(x), n <= DIRECT_N, */
#define DIRECT_X 4096     /* for |x| <= 4096: where T lands from any x it does not step */

typedef struct {
    double gamma;
    int levels;      /* 0: no tables, every replayed step is dense */
    int16_t *jump;   /* [levels][E_MAX + 1]: T^(2^b)(x) for 0 <= x <= E_MAX (T is odd), or NO_JUMP */
    int16_t *direct; /* [DIRECT_N][DIRECT_X + 1]: T^n(x), or NO_JUMP; most catch-ups are one look-up */
} decay_t;

/* T^a then T^b by tables p (T^a) and q (T^b) of x >= 0, NO_JUMP if either steps a code. */
static inline int16_t compose(const int16_t *p, const int16_t *q, int x) {
    int y = p[x], z = y == NO_JUMP ? NO_JUMP : q[y < 0 ? -y : y];
    return (int16_t)(z == NO_JUMP ? NO_JUMP : y < 0 ? -z : z);
}

/* Tables covering gaps up to n_steps - 1 in few jumps. 0, or -1 on allocation failure. */
static int decay_build(decay_t *d, double gamma, int n_steps) {
    d->gamma = gamma;
    d->levels = 0;
    d->jump = d->direct = NULL;
    if (n_steps < 2 || n_steps - 1 > 65535 || !isfinite(gamma)) return 0;
    int levels = 1;
    while (levels < MAX_LEVELS && ((int64_t)1 << levels) <= n_steps - 1) levels++;
    d->jump = malloc(sizeof(int16_t) * (size_t)levels * (E_MAX + 1));
    d->direct = malloc(sizeof(int16_t) * DIRECT_N * (DIRECT_X + 1));
    if (!d->jump || !d->direct) return -1;
    int16_t *t1 = d->jump;
    for (int x = 0; x <= E_MAX; x++) {
        double v = decay_v(gamma, x);
        int16_t y;
        int blocked;
        if (round_away(v) != 0.0) t1[x] = NO_JUMP;
        else { settle(v, 0, 0, 0, &y, &blocked); t1[x] = y; } /* no step: the code is not read */
    }
    /* |T(x)| < 4096 wherever T steps no code (|v| < 0.5), so tables of x <= E_MAX compose */
    for (int b = 1; b < levels; b++) {
        const int16_t *p = d->jump + (size_t)(b - 1) * (E_MAX + 1);
        for (int x = 0; x <= E_MAX; x++) d->jump[(size_t)b * (E_MAX + 1) + x] = compose(p, p, x);
    }
    memcpy(d->direct, t1, sizeof(int16_t) * (DIRECT_X + 1));
    for (int n = 1; n < DIRECT_N; n++) {
        const int16_t *p = d->direct + (size_t)(n - 1) * (DIRECT_X + 1);
        for (int x = 0; x <= DIRECT_X; x++) d->direct[(size_t)n * (DIRECT_X + 1) + x] = compose(p, t1, x);
    }
    d->levels = levels;
    return 0;
}

/* e_q after n > 0 steps of pure decay with the element's code fixed at `code`. */
static int16_t decay(const decay_t *d, int16_t x, int64_t n, int code, int lo, int hi) {
    const int16_t *t1 = d->jump;
    while (n > 0 && x != 0) {
        int ax = x < 0 ? -x : x;
        if (n <= DIRECT_N && ax <= DIRECT_X) { /* the rest in one look-up */
            int y = d->direct[(size_t)(n - 1) * (DIRECT_X + 1) + ax];
            if (y != NO_JUMP) return (int16_t)(x < 0 ? -y : y);
        }
        if (ax > E_MAX || t1[ax] == NO_JUMP) { /* a code step (or a residual out of range): exact */
            int16_t y;
            int blocked;
            settle(decay_v(d->gamma, x), code, lo, hi, &y, &blocked);
            n--;
            if (y == x) break; /* a fixed point for this code */
            x = y;
            continue;
        }
        if (t1[ax] == ax) break; /* a fixed point of T (and -x of T, which is odd) */
        int b = d->levels - 1; /* the longest jump that fits n and steps no code (b = 0 does not) */
        while (((int64_t)1 << b) > n) b--;
        while (d->jump[(size_t)b * (E_MAX + 1) + ax] == NO_JUMP) b--;
        int y = d->jump[(size_t)b * (E_MAX + 1) + ax];
        x = (int16_t)(x < 0 ? -y : y);
        n -= (int64_t)1 << b;
    }
    return x;
}

/* decay() with its most common case inline: a gap of at most DIRECT_N steps from |x| <= DIRECT_X. */
static inline int16_t catch_up(const decay_t *d, int16_t x, int n, int code, int lo, int hi) {
    const int ax = x < 0 ? -x : x;
    if (ax <= DIRECT_X && n <= DIRECT_N) {
        const int y = d->direct[(n - 1) * (DIRECT_X + 1) + ax];
        if (y != NO_JUMP) return (int16_t)(x < 0 ? -y : y);
    }
    return decay(d, x, n, code, lo, hi);
}

/* Position of the lowest set bit of w != 0 (de Bruijn, portable C99). */
static inline int lowest_bit(uint64_t w) {
    static const int8_t pos[64] = {
        0, 1, 2, 53, 3, 7, 54, 27, 4, 38, 41, 8, 34, 55, 48, 28, 62, 5, 39, 46, 44, 42, 22, 9, 24, 35,
        59, 56, 49, 18, 29, 11, 63, 52, 6, 26, 37, 40, 33, 47, 61, 45, 43, 21, 23, 58, 17, 10, 51, 25,
        36, 32, 60, 20, 57, 16, 50, 31, 19, 15, 30, 14, 13, 12};
    return pos[((w & (~w + 1)) * 0x022fdd63cc95386dULL) >> 58];
}

/* ------------------------------------------------------------------ update */

typedef struct {
    int8_t *codes;
    int16_t *eq;
    int32_t *gsum;     /* zero between uses: every pass clears what it reads */
    uint16_t *last;    /* lazy replay: the step whose entering e eq[i] holds */
    uint64_t *touched; /* lazy replay, zero between uses: bit i = position i has noise or a delta */
    const uint16_t **hp; /* [n_steps - 1]: the current job's recorded positions of each history step */
    const int8_t **hv;   /* ... and values */
    uint16_t *hpos;      /* packed history decoded for the current job (hcap entries) */
    int8_t *hval;
    int64_t hcap;
} scratch_t;

typedef struct {
    const edg_slot *slots;
    const job_t *jobs;
    const edg_step *steps;
    int n_steps;
    const edg_record *hist;
    int64_t **hist_offsets; /* [n_steps - 1][n_jobs] */
    double gamma;
    decay_t decay;
    list_t *lists;
    scratch_t w[EDG_MAX_THREADS]; /* per thread */
    int diverged;
    int oom;
    edg_update_stats tstats[EDG_MAX_THREADS];
} up_ctx;

/* Point w->hp/hv at job j's recorded deltas of every history step, decoding packed records into
 * the thread's scratch. 0, -1 on allocation failure, -2 for a malformed packed record. */
static int hist_views(up_ctx *c, int64_t j, int64_t len, scratch_t *w) {
    const int n_hist = c->n_steps - 1;
    int64_t need = 0;
    for (int h = 0; h < n_hist; h++)
        if (c->hist[h].packed) need += c->hist[h].counts[j];
    if (need > w->hcap) {
        uint16_t *p = realloc(w->hpos, sizeof(uint16_t) * (size_t)need);
        if (p) w->hpos = p;
        int8_t *v = realloc(w->hval, (size_t)need);
        if (v) w->hval = v;
        if (!p || !v) return -1;
        w->hcap = need;
    }
    int64_t k = 0;
    for (int h = 0; h < n_hist; h++) {
        const edg_record *r = &c->hist[h];
        if (r->packed) {
            const uint8_t *base = r->packed;
            if (edg_record_unpack_job(base + r->offsets[j], base + r->offsets[j + 1], r->counts[j], len,
                               w->hpos + k, w->hval + k))
                return -2;
            w->hp[h] = w->hpos + k;
            w->hv[h] = w->hval + k;
            k += r->counts[j];
        } else {
            w->hp[h] = r->pos + c->hist_offsets[h][j];
            w->hv[h] = r->val + c->hist_offsets[h][j];
        }
    }
    return 0;
}

/* The noise of a step on a chunk, summed into gsum in fixed point (u re-gated against the codes);
 * each position met is also marked in the `touched` bitmap when one is given. */
static void gather_noise(const edg_slot *s, const job_t *jb, const edg_step *st,
                         const edg_slot_law *law, const int8_t *codes, int32_t *gsum, uint64_t *touched) {
    const int lo = s->lo, hi = s->hi;
    for (int j = 0; j < st->P; j++) {
        edg_stream ns;
        edg_stream_init(&ns, st->seeds[j], s->key, (uint64_t)jb->chunk, jb->length, law->gap, law->mag, law->index, law->step);
        /* coefficients enter in fixed point: a_q = round(a * 4096), so g sums exactly in int32 */
        const int32_t a = (int32_t)round_away(st->coefs[j] * COEF_SCALE);
        uint16_t pos[NZ_BATCH];
        int8_t val[NZ_BATCH];
        int m;
        do {
            m = edg_stream_fill(&ns, pos, val, NZ_BATCH);
            for (int k = 0; k < m; k++) {
                const int p = pos[k], u = val[k];
                if (touched) touched[p >> 6] |= (uint64_t)1 << (p & 63);
                const int nc = codes[p] + u;
                if (nc >= lo && nc <= hi) gsum[p] += a * u;
            }
        } while (m == NZ_BATCH);
    }
}

static double step_coef(const edg_step *st, const edg_slot_law *law) {
    return st->alpha / (law->sigma_t * (double)st->P * COEF_SCALE);
}

/* One step on a chunk, dense: codes and eq updated in place; applied deltas pushed to out (if any). */
/* A replayed step passes its recorded deltas (rpos/rval, rn of them). Its error is computed as if
 * the window's optimiser had applied its own rounded steps (e started at 0 at the window start, so
 * taking the recorded moves, which also spent error from before the window, would book that error
 * as negative and push those codes back); the codes themselves follow the recorded deltas. */
static int one_step(const edg_slot *s, const job_t *jb, const edg_step *st, double gamma,
                    int8_t *codes, int16_t *eq, int32_t *gsum, list_t *out, int slot_index,
                    edg_update_stats *stats, const uint16_t *rpos, const int8_t *rval, int64_t rn) {
    const edg_slot_law *law = &st->laws[slot_index];
    const int64_t len = jb->length;
    const int lo = s->lo, hi = s->hi;
    gather_noise(s, jb, st, law, codes, gsum, NULL);
    const double coef = step_coef(st, law);
    int64_t ri = 0;
    int bad = 0;
    for (int64_t i = 0; i < len; i++) {
        /* v = 0 leaves code and e at 0: skip, unless a recorded delta sits here */
        const int32_t gi = gsum[i];
        if (gi == 0 && eq[i] == 0 && !(rpos && ri < rn && rpos[ri] == i)) continue;
        gsum[i] = 0;
        double v = clamp_v(coef * (double)gi + gamma * ((double)eq[i] / E_SCALE));
        int blocked;
        int delta = (int)settle(v, codes[i], lo, hi, &eq[i], &blocked);
        if (stats) stats->blocked += blocked;
        if (rpos) { /* a replayed step: e is the window's own, the codes follow what really happened */
            delta = 0;
            if (ri < rn && rpos[ri] == i) {
                delta = rval[ri++];
                int moved = codes[i] + delta;
                if (moved < lo || moved > hi || codes[i] < lo || codes[i] > hi) bad = 1;
            }
        }
        if (delta != 0) {
            codes[i] = (int8_t)(codes[i] + delta);
            if (out) edg_list_push(out, i, delta);
        }
        if (stats && fabs(v) > stats->abs_v_max) stats->abs_v_max = fabs(v);
    }
    return bad || (rpos && ri != rn);
}

/* Bring every element of the chunk up to the entry of step t (last[] is then stale). */
static void catch_up_all(const decay_t *d, const edg_slot *s, int64_t len, scratch_t *w, int t) {
    for (int64_t i = 0; i < len; i++)
        if (w->eq[i] != 0 && w->last[i] < t) w->eq[i] = catch_up(d, w->eq[i], t - w->last[i], w->codes[i], s->lo, s->hi);
}

/* Should replayed step h run lazily? Not when its noise touches so much of the chunk that a dense
 * pass is cheaper (a touched element costs about 2.5 dense ones); and only with a finite coef
 * (decay_v is then the dense v) and recorded positions strictly increasing inside the chunk (else
 * the dense pass flags them, as it always did). Either way the bytes are the same. */
static int lazy_ok(const edg_step *st, const edg_slot_law *law, const uint16_t *rpos, int64_t rn, int64_t len) {
    double untouched = 1.0; /* expected fraction: gap[0] / 2^32 = P(an entry is nonzero) */
    for (int j = 0; j < st->P; j++) untouched *= 1.0 - (double)law->gap[0] / 4294967296.0;
    if (untouched < 0.6 || !isfinite(step_coef(st, law))) return 0;
    for (int64_t k = 0; k < rn; k++)
        if (rpos[k] >= len || (k > 0 && rpos[k] <= rpos[k - 1])) return 0;
    return 1;
}

/* Replayed step h touching only its noise entries and recorded deltas: the same bytes as one_step
 * on the chunk caught up to h. Returns 1 when a recorded delta does not fit the codes. */
static int lazy_step(const decay_t *d, const edg_slot *s, const job_t *jb, const edg_step *st,
                     int slot_index, scratch_t *w, int h, const uint16_t *rpos, const int8_t *rval,
                     int64_t rn) {
    const edg_slot_law *law = &st->laws[slot_index];
    const int lo = s->lo, hi = s->hi;
    gather_noise(s, jb, st, law, w->codes, w->gsum, w->touched);
    for (int64_t k = 0; k < rn; k++) w->touched[rpos[k] >> 6] |= (uint64_t)1 << (rpos[k] & 63);
    const double coef = step_coef(st, law);
    for (int64_t wi = 0; wi < (jb->length + 63) >> 6; wi++) { /* touched positions, in order */
        uint64_t bits = w->touched[wi];
        if (!bits) continue;
        w->touched[wi] = 0;
        do { /* as the dense pass (gsum may have cancelled to 0: the same) */
            const int i = (int)(wi << 6) + lowest_bit(bits);
            bits &= bits - 1;
            int16_t e = w->eq[i];
            if (e != 0 && w->last[i] < h) e = catch_up(d, e, h - w->last[i], w->codes[i], lo, hi);
            w->last[i] = (uint16_t)(h + 1);
            const int32_t gi = w->gsum[i];
            w->gsum[i] = 0;
            int blocked;
            settle(clamp_v(coef * (double)gi + d->gamma * ((double)e / E_SCALE)), w->codes[i], lo, hi,
                   &w->eq[i], &blocked);
        } while (bits);
    }
    int bad = 0;
    for (int64_t k = 0; k < rn; k++) { /* the codes follow what really happened */
        const int i = rpos[k], moved = w->codes[i] + rval[k];
        if (moved < lo || moved > hi || w->codes[i] < lo || w->codes[i] > hi) bad = 1;
        w->codes[i] = (int8_t)moved;
    }
    return bad;
}

static void update_job(void *vctx, int64_t j, int thread) {
    up_ctx *c = vctx;
    const job_t *jb = &c->jobs[j];
    const edg_slot *s = &c->slots[jb->slot];
    const decay_t *d = &c->decay;
    scratch_t *w = &c->w[thread];
    int8_t *codes = w->codes;
    int16_t *eq = w->eq;
    const int64_t len = jb->length;
    int n_hist = c->n_steps - 1;
    const int views = hist_views(c, j, len, w);
    if (views) {
        if (views == -1) c->oom = 1;
        else c->diverged = 1;
        return;
    }
    edg_unpack(s->type, s->data, jb->start, len, codes);
    /* rewind the codes through the window's recorded deltas, newest first */
    for (int h = n_hist - 1; h >= 0; h--) {
        const uint16_t *rp = w->hp[h];
        const int8_t *rv = w->hv[h];
        for (int64_t k = 0; k < c->hist[h].counts[j]; k++) codes[rp[k]] -= rv[k];
    }
    if (s->residual) memcpy(eq, s->residual + jb->start, sizeof(int16_t) * (size_t)len);
    else memset(eq, 0, sizeof(int16_t) * (size_t)len);
    int behind = 0; /* some e in eq is from before step h: last[] says which step */
    for (int h = 0; h < n_hist; h++) {
        const edg_record *r = &c->hist[h];
        const edg_step *st = &c->steps[h];
        const uint16_t *rpos = w->hp[h];
        const int8_t *rval = w->hv[h];
        int bad;
        if (d->levels > 0 && lazy_ok(st, &st->laws[jb->slot], rpos, r->counts[j], len)) {
            if (!behind) for (int64_t i = 0; i < len; i++) w->last[i] = (uint16_t)h;
            behind = 1;
            bad = lazy_step(d, s, jb, st, jb->slot, w, h, rpos, rval, r->counts[j]);
        } else {
            if (behind) catch_up_all(d, s, len, w, h);
            behind = 0;
            bad = one_step(s, jb, st, c->gamma, codes, eq, w->gsum, NULL, jb->slot, NULL, rpos, rval, r->counts[j]);
        }
        if (bad) c->diverged = 1;
    }
    if (behind) catch_up_all(d, s, len, w, n_hist);
    list_t *out = &c->lists[j];
    one_step(s, jb, &c->steps[n_hist], c->gamma, codes, eq, w->gsum, out, jb->slot, &c->tstats[thread],
             NULL, NULL, 0);
    for (int64_t k = 0; k < out->n; k++) {
        int64_t i = jb->start + out->pos[k];
        edg_set_code(s->type, s->data, i, codes[out->pos[k]]);
    }
    c->tstats[thread].changed += out->n;
    if (s->residual) memcpy(s->residual + jb->start, eq, sizeof(int16_t) * (size_t)len);
}

static void scratch_free(scratch_t *w) {
    free(w->codes); free(w->eq); free(w->gsum); free(w->last); free(w->touched);
    free((void *)w->hp); free((void *)w->hv); free(w->hpos); free(w->hval);
}

int edg_update(const edg_slot *slots, int n_slots, const edg_step *steps, int n_steps,
               const edg_record *hist, double gamma, int n_threads, edg_record *out,
               edg_update_stats *stats) {
    int64_t n_jobs;
    job_t *jobs = edg_make_jobs(slots, n_slots, &n_jobs);
    if (n_threads < 1) n_threads = 1;
    if (n_threads > EDG_MAX_THREADS) n_threads = EDG_MAX_THREADS; /* as edg_run_jobs: c->w[thread] */
    up_ctx *c = calloc(1, sizeof(up_ctx));
    list_t *lists = calloc((size_t)(n_jobs > 0 ? n_jobs : 1), sizeof(list_t));
    int64_t **hoff = calloc((size_t)(n_steps > 1 ? n_steps - 1 : 1), sizeof(int64_t *));
    int rc = 0;
    if (!jobs || !c || !lists || !hoff) { rc = -1; goto done; }
    for (int h = 0; h < n_steps - 1; h++) {
        hoff[h] = malloc(sizeof(int64_t) * (size_t)(n_jobs > 0 ? n_jobs : 1));
        if (!hoff[h]) { rc = -1; goto done; }
        int64_t k = 0;
        for (int64_t j = 0; j < n_jobs; j++) { hoff[h][j] = k; k += hist[h].counts[j]; }
    }
    if (decay_build(&c->decay, gamma, n_steps)) { rc = -1; goto done; }
    const int lazy = c->decay.levels > 0;
    for (int t = 0; t < n_threads; t++) {
        scratch_t *w = &c->w[t];
        w->codes = malloc(EDG_CHUNK);
        w->eq = malloc(sizeof(int16_t) * EDG_CHUNK);
        w->gsum = calloc(EDG_CHUNK, sizeof(int32_t));
        w->hp = malloc(sizeof(*w->hp) * (size_t)n_steps);
        w->hv = malloc(sizeof(*w->hv) * (size_t)n_steps);
        if (!w->codes || !w->eq || !w->gsum || !w->hp || !w->hv) { rc = -1; goto done; }
        if (!lazy) continue;
        w->last = malloc(sizeof(uint16_t) * EDG_CHUNK);
        w->touched = calloc(EDG_CHUNK / 64, sizeof(uint64_t));
        if (!w->last || !w->touched) { rc = -1; goto done; }
    }
    c->slots = slots; c->jobs = jobs; c->steps = steps; c->n_steps = n_steps;
    c->hist = hist; c->hist_offsets = hoff; c->gamma = gamma; c->lists = lists;
    edg_run_jobs(update_job, c, n_jobs, n_threads);
    if (stats) {
        memset(stats, 0, sizeof(*stats));
        for (int t = 0; t < n_threads; t++) {
            stats->changed += c->tstats[t].changed;
            stats->blocked += c->tstats[t].blocked;
            if (c->tstats[t].abs_v_max > stats->abs_v_max) stats->abs_v_max = c->tstats[t].abs_v_max;
        }
    }
    rc = edg_gather(lists, n_jobs, out);
    lists = NULL;
    if (rc == 0 && c->oom) { edg_record_free(out); rc = -1; }
    if (rc == 0 && c->diverged) rc = -2;
done:
    if (lists) {
        for (int64_t j = 0; j < n_jobs; j++) { free(lists[j].pos); free(lists[j].val); }
        free(lists);
    }
    if (c) { for (int t = 0; t < EDG_MAX_THREADS; t++) scratch_free(&c->w[t]); free(c->decay.jump); free(c->decay.direct); }
    if (hoff) for (int h = 0; h < n_steps - 1; h++) free(hoff[h]);
    free(hoff); free(c); free(jobs);
    return rc;
}
