/* kernels.h: QES kernels on packed tensors: perturb with gating, exact restore, the update.
 *
 * Work is split into jobs, one per (tensor, stream chunk of EDG_CHUNK elements), in tensor order then
 * chunk order. Every job is independent, so results are identical at any thread count; per-job
 * outputs are concatenated in job order. The numpy reference is edgees/kernels_ref.py.
 */
#ifndef EDG_KERNELS_H
#define EDG_KERNELS_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    int type;            /* ggml type id (trainable) */
    uint8_t *data;       /* packed blocks of the tensor */
    int64_t n;           /* elements */
    uint64_t key;        /* noise key of the tensor */
    int lo, hi;          /* code range */
    int block_elems, block_bytes;
    int16_t *residual;   /* residual mode: e in fixed point, n entries; else NULL */
} edg_slot;

typedef struct {
    const uint64_t *gap, *mag; /* noise tables for this slot's type sigma */
    const uint16_t *index;
    double sigma_t;            /* the law's sigma, in this slot's code steps */
    int step;                  /* codes per unit of noise (noise.h) */
} edg_slot_law;

/* A sparse per-job record: counts[n_jobs], and pos/val concatenated in job order. A history record
 * given to edg_update may instead be packed (pack.h): pos and val NULL, packed/offsets set. */
typedef struct {
    uint32_t *counts;
    uint16_t *pos;
    int8_t *val; /* values (code deltas) */
    int64_t total;
    const uint8_t *packed;   /* packed form (edg_update history only), or NULL */
    const uint64_t *offsets; /* packed: where each job's stream starts, n_jobs + 1 entries */
} edg_record;

typedef struct {
    const int64_t *seeds; /* P pair seeds (> 0) */
    const double *coefs;  /* P coefficients a_j */
    int P;
    double alpha;
    const edg_slot_law *laws; /* one per slot */
} edg_step;

typedef struct {
    int64_t changed;    /* codes moved by the current step */
    int64_t blocked;    /* nonzero rounded steps refused by the range */
    double abs_v_max;   /* largest |v| seen in the current step */
} edg_update_stats;

int64_t edg_count_jobs(const edg_slot *slots, int n_slots);

/* Perturb in place with member noise sign(seed) * R(|seed|), gated at the code range; what was
 * applied (chunk-relative position and value of every entry that moved a code) goes to *applied
 * (malloc'd arrays, caller frees). Returns 0, or -1 on allocation failure. */
int edg_perturb(const edg_slot *slots, int n_slots, const edg_slot_law *laws, int64_t seed,
                int n_threads, edg_record *applied);

/* Undo what a perturb applied. 0, -1 on allocation failure, -2 if the record does not fit these
 * slots (an entry past a chunk or leaving the code range; the rest is still undone). */
int edg_restore(const edg_slot *slots, int n_slots, const edg_record *applied, int n_threads);

/* restore(applied) then perturb(next_seed) in one pass over the blocks (identical bytes). */
int edg_swap(const edg_slot *slots, int n_slots, const edg_slot_law *laws, const edg_record *applied,
             int64_t next_seed, int n_threads, edg_record *next_applied);

/* The QES update of steps[n_steps - 1], replaying steps[0 .. n_steps - 2] (whose applied deltas are
 * hist[0 .. n_steps - 2]) from e = 0 (or from each slot's residual when n_steps == 1 and residual
 * is set). Writes the current step's deltas to *out. Returns 0, -1 on allocation failure, or
 * -2 when a recorded delta would leave the code range (a history that does not match these
 * weights). A replayed step's codes move by its recorded deltas; its error is v minus the step the
 * window's own optimiser would have applied (see update.c). */
int edg_update(const edg_slot *slots, int n_slots, const edg_step *steps, int n_steps,
               const edg_record *hist, double gamma, int n_threads, edg_record *out,
               edg_update_stats *stats);

void edg_record_free(edg_record *r);

#endif
