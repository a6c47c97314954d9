/* kernels.c: perturb with gating, exact restore and the fused swap of packed tensors, parallel over
 * (tensor, chunk) jobs. The update is in update.c.
 *
 * perturb records what it applied (chunk-relative position and value of every nonzero that moved a
 * code; gated entries are left out), so restore is a walk over that record with no noise to redraw:
 * about 3 bytes per nonzero, ~1% of the weights at sigma 0.01, against the 1 byte per weight of a
 * full mask. Noise is drawn in batches (the stream state stays in registers), then applied; each
 * loop is specialised per type (the switch on the type sits outside it). Perturb and restore
 * write-prefetch only sparse streams over large calls (PF_MIN_BYTES, PF_MIN_GAP below); the update
 * leaves its ascending accesses to the hardware prefetcher. */
#include "kernels.h"

#include <stdlib.h>
#include <string.h>

#include "codes.h"
#include "jobs.h"
#include "noise.h"

#if defined(__GNUC__) || defined(__clang__)
#define EDG_ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define EDG_ALWAYS_INLINE inline
#endif

#define NZ_BATCH 256 /* draws per batch */

static inline int block_shift(int block_elems) {
    int sh = 0;
    while ((1 << sh) < block_elems) sh++;
    return sh; /* block_elems is a power of two (32 or 256) for every trainable type */
}

typedef struct {
    const uint8_t *offs[EDG_N_TYPE_IDS];               /* code_offsets of each slot type (by type id), or NULL */
    uint8_t tab[EDG_N_TRAINABLE][EDG_MAX_BLOCK_ELEMS]; /* their storage */
} code_tabs;

typedef struct {
    const edg_slot *slots;
    const edg_slot_law *laws;
    const job_t *jobs;
    int64_t seed;
    list_t *lists;               /* perturb: applied entries per job */
    const edg_record *applied;   /* restore: what a perturb applied */
    const int64_t *offsets;      /* restore: first entry of each job in `applied` */
    int bad;                     /* restore: an entry that cannot be undone (foreign record) */
    int prefetch;                /* prefetch the blocks it will write (perturb) or read (restore) */
    code_tabs *tabs;             /* perturb with prefetch: where each type's codes sit in a block */
} pr_ctx;

/* Apply entries [n0, n0 + m) of l (gated ones dropped, the rest compacted); returns the new count. */
static EDG_ALWAYS_INLINE int64_t apply_batch(int type, const edg_slot *s, int64_t start, int sh,
                                             list_t *l, int64_t n0, int64_t m) {
    const int bb = s->block_bytes, lo = s->lo, hi = s->hi;
    const int64_t mask = ((int64_t)1 << sh) - 1;
    uint8_t *const data = s->data; /* in locals: byte stores may alias any field read in the loop */
    uint16_t *pos = l->pos + n0;
    int8_t *val = l->val + n0;
    int64_t kept = 0;
    for (int64_t k = 0; k < m; k++) {
        const int64_t i = start + pos[k];
        if (edg_add_in_block(type, data + (i >> sh) * bb, (int)(i & mask), val[k], lo, hi)) {
            pos[kept] = pos[k];
            val[kept] = val[k];
            kept++;
        }
    }
    return n0 + kept;
}

/* Write prefetch: perturb prefetches the line a drawn entry will be written in while the rest of
 * the batch is drawn (edg_stream_fill_pf); restore, which knows every position from its record,
 * prefetches RS_AHEAD entries ahead. Both fetch the line of the code's own byte (perturb looks it up
 * in code_offsets, restore calls locate), not the block's: a 256-element block spans several lines.
 * Only where it pays:
 * - calls over at least PF_MIN_BYTES of tensors: smaller ones find their blocks in cache, where a
 *   prefetch only costs instructions;
 * - nonzeros at least PF_MIN_GAP bytes apart on average: denser, most lines hold several entries,
 *   and the redundant prefetches cost more than they hide.
 * (measurements: docs/kernels.md) */
#define PF_MIN_BYTES (2 << 20)
#define PF_MIN_GAP 32.0
#define RS_AHEAD 16 /* restore: entries of lookahead */

/* off[e]: the byte of a block that element e's (low) code field is in, for perturb's prefetch. */
static void code_offsets(int type, int block_elems, uint8_t *off) {
    for (int e = 0; e < block_elems; e++) off[e] = (uint8_t)locate(type, e).lb;
}

static EDG_ALWAYS_INLINE void perturb_typed(int type, pr_ctx *c, int64_t j) {
    const job_t *jb = &c->jobs[j];
    const edg_slot *s = &c->slots[jb->slot];
    const edg_slot_law *law = &c->laws[jb->slot];
    const int sh = block_shift(s->block_elems);
    list_t *l = &c->lists[j];
    const edg_pf pf = {.data = s->data, .off = c->tabs ? c->tabs->offs[type] : NULL, .start = jb->start,
                       .sh = sh, .bb = s->block_bytes};
    /* P(nonzero) = P(gap = 0) = gap[0] / 2^32 */
    const double gap_bytes = (double)s->block_bytes / s->block_elems / ((double)law->gap[0] / 4294967296.0 + 1e-12);
    const int prefetch = c->prefetch && gap_bytes >= PF_MIN_GAP;
    /* room for the expected entries and a batch, so the list rarely grows */
    if (edg_list_reserve(l, (int64_t)((double)jb->length * ((double)law->gap[0] / 4294967296.0) * 1.25) + NZ_BATCH)) return;
    edg_stream st;
    edg_stream_init(&st, c->seed, s->key, (uint64_t)jb->chunk, jb->length, law->gap, law->mag, law->index, law->step);
    for (;;) {
        if (edg_list_reserve(l, l->n + NZ_BATCH)) return;
        const int64_t m = edg_stream_fill_pf(&st, l->pos + l->n, l->val + l->n, NZ_BATCH, prefetch ? &pf : 0);
        l->n = apply_batch(type, s, jb->start, sh, l, l->n, m);
        if (m < NZ_BATCH) return;
    }
}

static EDG_ALWAYS_INLINE void restore_typed(int type, pr_ctx *c, int64_t j) {
    const job_t *jb = &c->jobs[j];
    const edg_slot *s = &c->slots[jb->slot];
    const int sh = block_shift(s->block_elems), bb = s->block_bytes, lo = s->lo, hi = s->hi;
    const int64_t mask = s->block_elems - 1, start = jb->start, m = c->applied->counts[j], length = jb->length;
    uint8_t *const data = s->data; /* in locals: byte stores may alias any field read in the loop */
    const uint16_t *pos = c->applied->pos + c->offsets[j];
    const int8_t *val = c->applied->val + c->offsets[j];
    int bad = 0;
#if defined(__GNUC__) || defined(__clang__)
    const int prefetch = c->prefetch && m > 0 && (double)length * bb / s->block_elems / (double)m >= PF_MIN_GAP;
#endif
    for (int64_t k = 0; k < m; k++) {
        const int64_t i = start + pos[k];
#if defined(__GNUC__) || defined(__clang__)
        if (prefetch && k + RS_AHEAD < m) {
            const int64_t ia = start + pos[k + RS_AHEAD];
            __builtin_prefetch(data + (ia >> sh) * bb + locate(type, (int)(ia & mask)).lb, 1, 3);
        }
#endif
        if (pos[k] >= length || !edg_add_in_block(type, data + (i >> sh) * bb, (int)(i & mask), -val[k], lo, hi))
            bad = 1;
    }
    if (bad) c->bad = 1;
}

/* fn(T, args...) with T the type as a compile-time constant, so each case gets its own loop. */
#define TYPE_DISPATCH(type, fn, ...)                                                         \
    switch (type) {                                                                          \
    case EDG_Q4_0: fn(EDG_Q4_0, __VA_ARGS__); break; case EDG_Q4_1: fn(EDG_Q4_1, __VA_ARGS__); break; \
    case EDG_Q5_0: fn(EDG_Q5_0, __VA_ARGS__); break; case EDG_Q5_1: fn(EDG_Q5_1, __VA_ARGS__); break; \
    case EDG_Q8_0: fn(EDG_Q8_0, __VA_ARGS__); break; case EDG_Q2_K: fn(EDG_Q2_K, __VA_ARGS__); break; \
    case EDG_Q3_K: fn(EDG_Q3_K, __VA_ARGS__); break; case EDG_Q4_K: fn(EDG_Q4_K, __VA_ARGS__); break; \
    case EDG_Q5_K: fn(EDG_Q5_K, __VA_ARGS__); break; case EDG_Q6_K: fn(EDG_Q6_K, __VA_ARGS__); break; \
    case EDG_IQ4_NL: fn(EDG_IQ4_NL, __VA_ARGS__); break;                                     \
    case EDG_IQ4_XS: fn(EDG_IQ4_XS, __VA_ARGS__); break;                                     \
    default: break;                                                                          \
    }

static void perturb_job(void *vctx, int64_t j, int thread) {
    pr_ctx *c = vctx;
    (void)thread;
    TYPE_DISPATCH(c->slots[c->jobs[j].slot].type, perturb_typed, c, j)
}

static void restore_job(void *vctx, int64_t j, int thread) {
    pr_ctx *c = vctx;
    (void)thread;
    TYPE_DISPATCH(c->slots[c->jobs[j].slot].type, restore_typed, c, j)
}

/* Fused: undo one member's record and perturb with the next member, chunk by chunk, so each chunk's
 * blocks are touched while in cache. Byte-identical to edg_restore then edg_perturb. */
typedef struct {
    pr_ctx restore, perturb;
} swap_ctx;

static void swap_job(void *vctx, int64_t j, int thread) {
    swap_ctx *c = vctx;
    restore_job(&c->restore, j, thread);
    perturb_job(&c->perturb, j, thread);
}

static int wants_prefetch(const edg_slot *slots, int n_slots) {
    int64_t bytes = 0;
    for (int i = 0; i < n_slots; i++) bytes += slots[i].n / slots[i].block_elems * slots[i].block_bytes;
    return bytes >= PF_MIN_BYTES;
}

/* The perturb side of a context: prefetch on or off, and the code offsets of each slot type. */
static void perturb_setup(pr_ctx *c, code_tabs *tabs, const edg_slot *slots, int n_slots) {
    c->prefetch = wants_prefetch(slots, n_slots);
    c->tabs = NULL;
    if (!c->prefetch) return;
    memset(tabs->offs, 0, sizeof tabs->offs);
    int used = 0;
    for (int i = 0; i < n_slots; i++) {
        const int t = slots[i].type;
        if (t < 0 || t >= EDG_N_TYPE_IDS || tabs->offs[t]) continue;
        if (used == EDG_N_TRAINABLE || slots[i].block_elems > EDG_MAX_BLOCK_ELEMS) { /* not a trainable type */
            c->prefetch = 0;
            return;
        }
        code_offsets(t, slots[i].block_elems, tabs->tab[used]);
        tabs->offs[t] = tabs->tab[used++];
    }
    c->tabs = tabs;
}

static int64_t *record_offsets(const edg_record *r, int64_t n_jobs) {
    int64_t *offsets = malloc(sizeof(int64_t) * (size_t)(n_jobs > 0 ? n_jobs : 1));
    if (!offsets) return NULL;
    int64_t k = 0;
    for (int64_t j = 0; j < n_jobs; j++) { offsets[j] = k; k += r->counts[j]; }
    return offsets;
}

int edg_perturb(const edg_slot *slots, int n_slots, const edg_slot_law *laws, int64_t seed,
                int n_threads, edg_record *applied) {
    int64_t n_jobs;
    job_t *jobs = edg_make_jobs(slots, n_slots, &n_jobs);
    list_t *lists = calloc((size_t)(n_jobs > 0 ? n_jobs : 1), sizeof(list_t));
    if (!jobs || !lists) { free(jobs); free(lists); return -1; }
    pr_ctx c = {.slots = slots, .laws = laws, .jobs = jobs, .seed = seed, .lists = lists}; /* prefetch: below */
    code_tabs tabs;
    perturb_setup(&c, &tabs, slots, n_slots);
    edg_run_jobs(perturb_job, &c, n_jobs, n_threads);
    free(jobs);
    int rc = edg_gather(lists, n_jobs, applied);
    free(lists);
    return rc;
}

int edg_restore(const edg_slot *slots, int n_slots, const edg_record *applied, int n_threads) {
    int64_t n_jobs;
    job_t *jobs = edg_make_jobs(slots, n_slots, &n_jobs);
    int64_t *offsets = jobs ? record_offsets(applied, n_jobs) : NULL;
    if (!jobs || !offsets) { free(jobs); free(offsets); return -1; }
    pr_ctx c = {.slots = slots, .jobs = jobs, .applied = applied, .offsets = offsets,
                .prefetch = wants_prefetch(slots, n_slots)};
    edg_run_jobs(restore_job, &c, n_jobs, n_threads);
    free(jobs);
    free(offsets);
    return c.bad ? -2 : 0;
}

int edg_swap(const edg_slot *slots, int n_slots, const edg_slot_law *laws, const edg_record *applied,
             int64_t next_seed, int n_threads, edg_record *next_applied) {
    int64_t n_jobs;
    job_t *jobs = edg_make_jobs(slots, n_slots, &n_jobs);
    int64_t *offsets = jobs ? record_offsets(applied, n_jobs) : NULL;
    list_t *lists = calloc((size_t)(n_jobs > 0 ? n_jobs : 1), sizeof(list_t));
    if (!jobs || !offsets || !lists) { free(jobs); free(offsets); free(lists); return -1; }
    swap_ctx c = {
        .restore = {.slots = slots, .jobs = jobs, .applied = applied, .offsets = offsets,
                    .prefetch = wants_prefetch(slots, n_slots)},
        .perturb = {.slots = slots, .laws = laws, .jobs = jobs, .seed = next_seed, .lists = lists}, /* prefetch: below */
    };
    code_tabs tabs;
    perturb_setup(&c.perturb, &tabs, slots, n_slots);
    edg_run_jobs(swap_job, &c, n_jobs, n_threads);
    free(jobs);
    free(offsets);
    int rc = edg_gather(lists, n_jobs, next_applied);
    free(lists);
    if (rc == 0 && c.restore.bad) { edg_record_free(next_applied); rc = -2; }
    return rc;
}
