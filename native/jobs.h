/* jobs.h: the work split the kernels share. One job per (tensor, stream chunk of EDG_CHUNK
 * elements), in tensor order then chunk order; threads take jobs from a shared counter, and which
 * thread runs a job never changes its result; growable per-job lists gathered into records in job
 * order. */
#ifndef EDG_JOBS_H
#define EDG_JOBS_H

#include <stdint.h>

#include "kernels.h"

typedef struct {
    int slot;
    int64_t chunk, start, length;
} job_t;

/* Most threads one kernel call runs on; more are clamped to it. Per-thread state (the update's scratch
 * and stats, the workers) sits in fixed arrays of this size, indexed by `thread`. */
#define EDG_MAX_THREADS 64

typedef void (*job_fn)(void *ctx, int64_t job, int thread);

/* Jobs of these slots (malloc'd; NULL on allocation failure). */
job_t *edg_make_jobs(const edg_slot *slots, int n_slots, int64_t *n_jobs);

/* fn(ctx, j, thread) for every job, on up to n_threads threads (at most EDG_MAX_THREADS). */
void edg_run_jobs(job_fn fn, void *ctx, int64_t n_jobs, int n_threads);

typedef struct {
    uint16_t *pos;
    int8_t *val;
    int64_t n, cap;
    int failed;
} list_t;

/* Room for `need` entries (0), or -1 with l->failed set on allocation failure. */
int edg_list_reserve(list_t *l, int64_t need);

void edg_list_push(list_t *l, int64_t pos, int val);

/* Concatenate per-job lists into a record (frees the lists): 0, or -1 on allocation failure. */
int edg_gather(list_t *lists, int64_t n_jobs, edg_record *out);

#endif
