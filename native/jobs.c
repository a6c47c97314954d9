/* jobs.c: the work split the kernels share (see jobs.h). */
#include "jobs.h"

#include "noise.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ jobs and threads */

int64_t edg_count_jobs(const edg_slot *slots, int n_slots) {
    int64_t n = 0;
    for (int s = 0; s < n_slots; s++) n += (slots[s].n + EDG_CHUNK - 1) / EDG_CHUNK;
    return n;
}

job_t *edg_make_jobs(const edg_slot *slots, int n_slots, int64_t *n_jobs) {
    *n_jobs = edg_count_jobs(slots, n_slots);
    job_t *jobs = malloc(sizeof(job_t) * (size_t)(*n_jobs > 0 ? *n_jobs : 1));
    if (!jobs) return NULL;
    int64_t k = 0;
    for (int s = 0; s < n_slots; s++) {
        for (int64_t start = 0; start < slots[s].n; start += EDG_CHUNK) {
            jobs[k].slot = s;
            jobs[k].chunk = start / EDG_CHUNK;
            jobs[k].start = start;
            jobs[k].length = slots[s].n - start < EDG_CHUNK ? slots[s].n - start : EDG_CHUNK;
            k++;
        }
    }
    return jobs;
}

/* Jobs are handed out in order from a shared counter, so a thread slowed by the machine's other
 * work takes fewer of them. Which thread runs a job never changes its result: each job writes only
 * its own outputs, and what threads accumulate (counts, a maximum) does not depend on the order. */
typedef struct {
    pthread_mutex_t lock;
    int64_t next, n_jobs;
} queue_t;

typedef struct {
    job_fn fn;
    void *ctx;
    queue_t *q;
    int thread;
} worker_t;

static int64_t take(queue_t *q) {
    pthread_mutex_lock(&q->lock);
    int64_t j = q->next < q->n_jobs ? q->next++ : -1;
    pthread_mutex_unlock(&q->lock);
    return j;
}

static void *worker_main(void *arg) {
    worker_t *w = arg;
    for (int64_t j; (j = take(w->q)) >= 0;) w->fn(w->ctx, j, w->thread);
    return NULL;
}

void edg_run_jobs(job_fn fn, void *ctx, int64_t n_jobs, int n_threads) {
    if (n_threads < 1) n_threads = 1;
    if (n_threads > EDG_MAX_THREADS) n_threads = EDG_MAX_THREADS;
    if (n_threads > n_jobs) n_threads = n_jobs > 0 ? (int)n_jobs : 1;
    if (n_threads == 1) {
        for (int64_t j = 0; j < n_jobs; j++) fn(ctx, j, 0);
        return;
    }
    queue_t q = {.lock = PTHREAD_MUTEX_INITIALIZER, .next = 0, .n_jobs = n_jobs};
    worker_t w[EDG_MAX_THREADS];
    pthread_t th[EDG_MAX_THREADS];
    int started[EDG_MAX_THREADS] = {0};
    for (int t = 0; t < n_threads; t++) {
        w[t] = (worker_t){.fn = fn, .ctx = ctx, .q = &q, .thread = t};
        if (t > 0) started[t] = pthread_create(&th[t], NULL, worker_main, &w[t]) == 0;
    }
    worker_main(&w[0]); /* threads that could not start leave their share to the others */
    for (int t = 1; t < n_threads; t++)
        if (started[t]) pthread_join(th[t], NULL);
}

/* ------------------------------------------------------------------ growable per-job lists */

int edg_list_reserve(list_t *l, int64_t need) {
    if (l->cap >= need) return 0;
    int64_t cap = l->cap ? l->cap : 64;
    while (cap < need) cap *= 2;
    uint16_t *p = realloc(l->pos, sizeof(uint16_t) * (size_t)cap);
    if (!p) { l->failed = 1; return -1; }
    l->pos = p;
    int8_t *v = realloc(l->val, (size_t)cap);
    if (!v) { l->failed = 1; return -1; }
    l->val = v;
    l->cap = cap;
    return 0;
}

void edg_list_push(list_t *l, int64_t pos, int val) {
    if (edg_list_reserve(l, l->n + 1)) return;
    l->pos[l->n] = (uint16_t)pos;
    l->val[l->n] = (int8_t)val;
    l->n++;
}

/* Concatenate per-job lists into a record (frees the lists). */
int edg_gather(list_t *lists, int64_t n_jobs, edg_record *out) {
    int64_t total = 0;
    int failed = 0;
    for (int64_t j = 0; j < n_jobs; j++) { total += lists[j].n; failed |= lists[j].failed; }
    out->counts = malloc(sizeof(uint32_t) * (size_t)(n_jobs > 0 ? n_jobs : 1));
    out->pos = malloc(sizeof(uint16_t) * (size_t)(total > 0 ? total : 1));
    out->val = malloc((size_t)(total > 0 ? total : 1));
    out->total = total;
    if (!out->counts || !out->pos || !out->val) failed = 1;
    int64_t k = 0;
    for (int64_t j = 0; j < n_jobs; j++) {
        if (!failed) {
            out->counts[j] = (uint32_t)lists[j].n;
            if (lists[j].n) { /* an empty list may hold NULL arrays */
                memcpy(out->pos + k, lists[j].pos, sizeof(uint16_t) * (size_t)lists[j].n);
                memcpy(out->val + k, lists[j].val, (size_t)lists[j].n);
            }
        }
        k += lists[j].n;
        free(lists[j].pos);
        free(lists[j].val);
    }
    if (failed) { edg_record_free(out); return -1; }
    return 0;
}

void edg_record_free(edg_record *r) {
    free(r->counts); free(r->pos); free(r->val);
    r->counts = NULL; r->pos = NULL; r->val = NULL; r->total = 0;
}
