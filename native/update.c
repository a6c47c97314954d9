/* update.c: the QES update with error feedback (replay / residual / off), parallel over
 * (tensor, chunk) jobs. The numpy reference is update() in edgees/kernels_ref.py. */
#include "kernels.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "codes.h"
#include "jobs.h"
#include "noise.h"

/* ------------------------------------------------------------------ update */

#define E_SCALE 8192.0
#define E_CLAMP 1.5
#define COEF_SCALE 4096.0

typedef struct {
    const edg_slot *slots;
    const job_t *jobs;
    const edg_step *steps;
    int n_steps;
    const edg_record *hist;
    int64_t **hist_offsets; /* [n_steps - 1][n_jobs] */
    double gamma;
    list_t *lists;
    /* per thread scratch */
    int8_t *codes[64];
    int16_t *eq[64];
    int32_t *gsum[64]; /* zero between uses: the dense pass clears what it reads */
    int diverged;
    edg_update_stats tstats[64];
} up_ctx;

/* Round half away from zero: trunc(v + copysign(0.5, v)), the cast truncating (|v| <= 1e9 + 0.5). */
static inline double round_away(double v) { return (double)(int64_t)(v + copysign(0.5, v)); }

/* One step on a chunk: codes and eq updated in place; applied deltas pushed to out (if any). */
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
    for (int j = 0; j < st->P; j++) {
        edg_stream ns;
        edg_stream_init(&ns, st->seeds[j], s->key, (uint64_t)jb->chunk, len, law->gap, law->mag, law->index);
        /* coefficients enter in fixed point: a_q = round(a * 4096), so g sums exactly in int32 */
        const int32_t a = (int32_t)round_away(st->coefs[j] * COEF_SCALE);
        int64_t pos;
        int u;
        while (edg_stream_next(&ns, &pos, &u)) {
            int nc = codes[pos] + u;
            if (nc >= lo && nc <= hi) gsum[pos] += a * u; /* u re-gated against these codes */
        }
    }
    const double coef = st->alpha / (law->sigma_t * (double)st->P * COEF_SCALE);
    int64_t ri = 0;
    int bad = 0;
    for (int64_t i = 0; i < len; i++) {
        /* v = 0 leaves code and e at 0: skip, unless a recorded delta sits here */
        const int32_t gi = gsum[i];
        if (gi == 0 && eq[i] == 0 && !(rpos && ri < rn && rpos[ri] == i)) continue;
        gsum[i] = 0;
        double v = coef * (double)gi + gamma * ((double)eq[i] / E_SCALE);
        if (v < -1e9) v = -1e9;
        if (v > 1e9) v = 1e9;
        double stp = round_away(v), applied = 0.0;
        if (stp != 0.0) {
            double target = (double)codes[i] + stp;
            if (target >= lo && target <= hi) applied = stp;
            else if (stats) stats->blocked++;
        }
        double r = v - applied;
        if (r < -E_CLAMP) r = -E_CLAMP;
        if (r > E_CLAMP) r = E_CLAMP;
        eq[i] = (int16_t)round_away(r * E_SCALE);
        int delta = (int)applied;
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
            if (out) edg_list_push(out, i, delta, 1);
        }
        if (stats && fabs(v) > stats->abs_v_max) stats->abs_v_max = fabs(v);
    }
    return bad || (rpos && ri != rn);
}

static void update_job(void *vctx, int64_t j, int thread) {
    up_ctx *c = vctx;
    const job_t *jb = &c->jobs[j];
    const edg_slot *s = &c->slots[jb->slot];
    int8_t *codes = c->codes[thread];
    int16_t *eq = c->eq[thread];
    int32_t *gsum = c->gsum[thread];
    const int64_t len = jb->length;
    edg_unpack(s->type, s->data, jb->start, len, codes);
    int n_hist = c->n_steps - 1;
    /* rewind the codes through the window's recorded deltas, newest first */
    for (int h = n_hist - 1; h >= 0; h--) {
        const edg_record *r = &c->hist[h];
        int64_t off = c->hist_offsets[h][j];
        for (int64_t k = 0; k < r->counts[j]; k++) codes[r->pos[off + k]] -= r->val[off + k];
    }
    if (s->residual) memcpy(eq, s->residual + jb->start, sizeof(int16_t) * (size_t)len);
    else memset(eq, 0, sizeof(int16_t) * (size_t)len);
    for (int h = 0; h < n_hist; h++) {
        const edg_record *r = &c->hist[h];
        int64_t off = c->hist_offsets[h][j];
        if (one_step(s, jb, &c->steps[h], c->gamma, codes, eq, gsum, NULL, jb->slot, NULL,
                     r->pos + off, r->val + off, r->counts[j]))
            c->diverged = 1;
    }
    list_t *out = &c->lists[j];
    one_step(s, jb, &c->steps[n_hist], c->gamma, codes, eq, gsum, out, jb->slot, &c->tstats[thread],
             NULL, NULL, 0);
    for (int64_t k = 0; k < out->n; k++) {
        int64_t i = jb->start + out->pos[k];
        edg_set_code(s->type, s->data, i, codes[out->pos[k]]);
    }
    c->tstats[thread].changed += out->n;
    if (s->residual) memcpy(s->residual + jb->start, eq, sizeof(int16_t) * (size_t)len);
}

int edg_update(const edg_slot *slots, int n_slots, const edg_step *steps, int n_steps,
               const edg_record *hist, double gamma, int n_threads, edg_record *out,
               edg_update_stats *stats) {
    int64_t n_jobs;
    job_t *jobs = edg_make_jobs(slots, n_slots, &n_jobs);
    if (n_threads < 1) n_threads = 1;
    if (n_threads > 64) n_threads = 64;
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
    for (int t = 0; t < n_threads; t++) {
        c->codes[t] = malloc(EDG_CHUNK);
        c->eq[t] = malloc(sizeof(int16_t) * EDG_CHUNK);
        c->gsum[t] = calloc(EDG_CHUNK, sizeof(int32_t));
        if (!c->codes[t] || !c->eq[t] || !c->gsum[t]) { rc = -1; goto done; }
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
    rc = edg_gather(lists, n_jobs, 1, out);
    lists = NULL;
    if (rc == 0 && c->diverged) rc = -2;
done:
    if (lists) {
        for (int64_t j = 0; j < n_jobs; j++) { free(lists[j].pos); free(lists[j].val); }
        free(lists);
    }
    if (c) for (int t = 0; t < 64; t++) { free(c->codes[t]); free(c->eq[t]); free(c->gsum[t]); }
    if (hoff) for (int h = 0; h < n_steps - 1; h++) free(hoff[h]);
    free(hoff); free(c); free(jobs);
    return rc;
}
