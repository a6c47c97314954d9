/* kernels.c: perturb with gating, exact restore and the fused swap of packed tensors, parallel over
 * (tensor, chunk) jobs. The update is in update.c. */
#include "kernels.h"

#include <stdlib.h>

#include "codes.h"
#include "jobs.h"
#include "noise.h"

/* ------------------------------------------------------------------ perturb / restore */

static inline int block_shift(int block_elems) {
    int sh = 0;
    while ((1 << sh) < block_elems) sh++;
    return sh; /* block_elems is a power of two (32 or 256) for every trainable type */
}

typedef struct {
    const edg_slot *slots;
    const edg_slot_law *laws;
    const job_t *jobs;
    int64_t seed;
    list_t *lists;            /* perturb: gated positions per job */
    const edg_record *gated;  /* restore */
    const int64_t *offsets;   /* restore: first gated entry of each job */
} pr_ctx;

static void perturb_job(void *vctx, int64_t j, int thread) {
    pr_ctx *c = vctx;
    const job_t *jb = &c->jobs[j];
    const edg_slot *s = &c->slots[jb->slot];
    const edg_slot_law *law = &c->laws[jb->slot];
    edg_stream st;
    edg_stream_init(&st, c->seed, s->key, (uint64_t)jb->chunk, jb->length, law->gap, law->mag, law->index);
    int64_t pos;
    int u;
    (void)thread;
    const int bb = s->block_bytes, type = s->type, lo = s->lo, hi = s->hi;
    const int sh = block_shift(s->block_elems); /* blocks hold 32 or 256 weights: shift, not divide */
    const int64_t mask = s->block_elems - 1;
    while (edg_stream_next(&st, &pos, &u)) {
        int64_t i = jb->start + pos;
        if (!edg_add_in_block(type, s->data + (i >> sh) * bb, (int)(i & mask), u, lo, hi))
            edg_list_push(&c->lists[j], pos, 0, 0);
    }
}

int edg_perturb(const edg_slot *slots, int n_slots, const edg_slot_law *laws, int64_t seed,
                int n_threads, edg_record *gated) {
    int64_t n_jobs;
    job_t *jobs = edg_make_jobs(slots, n_slots, &n_jobs);
    list_t *lists = calloc((size_t)(n_jobs > 0 ? n_jobs : 1), sizeof(list_t));
    if (!jobs || !lists) { free(jobs); free(lists); return -1; }
    pr_ctx c = {slots, laws, jobs, seed, lists, NULL, NULL};
    edg_run_jobs(perturb_job, &c, n_jobs, n_threads);
    free(jobs);
    int rc = edg_gather(lists, n_jobs, 0, gated);
    free(lists);
    return rc;
}

static void restore_job(void *vctx, int64_t j, int thread) {
    pr_ctx *c = vctx;
    const job_t *jb = &c->jobs[j];
    const edg_slot *s = &c->slots[jb->slot];
    const edg_slot_law *law = &c->laws[jb->slot];
    const uint16_t *g = c->gated->pos + c->offsets[j];
    int64_t ng = c->gated->counts[j], gi = 0;
    edg_stream st;
    edg_stream_init(&st, c->seed, s->key, (uint64_t)jb->chunk, jb->length, law->gap, law->mag, law->index);
    int64_t pos;
    int u;
    (void)thread;
    const int bb = s->block_bytes, type = s->type;
    const int sh = block_shift(s->block_elems);
    const int64_t mask = s->block_elems - 1;
    while (edg_stream_next(&st, &pos, &u)) {
        if (gi < ng && g[gi] == pos) { gi++; continue; } /* was gated: untouched */
        int64_t i = jb->start + pos;
        uint8_t *blk = s->data + (i >> sh) * bb;
        const int e = (int)(i & mask);
        set_in_block(type, blk, e, get_in_block(type, blk, e) - u);
    }
}

/* Fused: restore member `seed` (given its gated record) and perturb with member `next_seed`, chunk
 * by chunk, so each chunk's blocks are touched once while they are in cache. Byte-identical to
 * edg_restore followed by edg_perturb. */
typedef struct {
    pr_ctx restore, perturb;
} swap_ctx;

static void swap_job(void *vctx, int64_t j, int thread) {
    swap_ctx *c = vctx;
    restore_job(&c->restore, j, thread);
    perturb_job(&c->perturb, j, thread);
}

int edg_swap(const edg_slot *slots, int n_slots, const edg_slot_law *laws, int64_t seed,
             const edg_record *gated, int64_t next_seed, int n_threads, edg_record *next_gated) {
    int64_t n_jobs;
    job_t *jobs = edg_make_jobs(slots, n_slots, &n_jobs);
    int64_t *offsets = malloc(sizeof(int64_t) * (size_t)(n_jobs > 0 ? n_jobs : 1));
    list_t *lists = calloc((size_t)(n_jobs > 0 ? n_jobs : 1), sizeof(list_t));
    if (!jobs || !offsets || !lists) { free(jobs); free(offsets); free(lists); return -1; }
    int64_t k = 0;
    for (int64_t j = 0; j < n_jobs; j++) { offsets[j] = k; k += gated->counts[j]; }
    swap_ctx c = {{slots, laws, jobs, seed, NULL, gated, offsets}, {slots, laws, jobs, next_seed, lists, NULL, NULL}};
    edg_run_jobs(swap_job, &c, n_jobs, n_threads);
    free(jobs);
    free(offsets);
    int rc = edg_gather(lists, n_jobs, 0, next_gated);
    free(lists);
    return rc;
}

int edg_restore(const edg_slot *slots, int n_slots, const edg_slot_law *laws, int64_t seed,
                const edg_record *gated, int n_threads) {
    int64_t n_jobs;
    job_t *jobs = edg_make_jobs(slots, n_slots, &n_jobs);
    int64_t *offsets = malloc(sizeof(int64_t) * (size_t)(n_jobs > 0 ? n_jobs : 1));
    if (!jobs || !offsets) { free(jobs); free(offsets); return -1; }
    int64_t k = 0;
    for (int64_t j = 0; j < n_jobs; j++) { offsets[j] = k; k += gated->counts[j]; }
    pr_ctx c = {slots, laws, jobs, seed, NULL, gated, offsets};
    edg_run_jobs(restore_job, &c, n_jobs, n_threads);
    free(jobs);
    free(offsets);
    return 0;
}
