/*
 * trace.c - the allocation-event recorder (see trace.h).
 *
 * Glossary: ev = the event buffer (grows by doubling); map = a live pointer's
 * block id (addrmap.c, the id kept in the slot's site field).
 */
#define _DEFAULT_SOURCE
#include "trace.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

_Static_assert(sizeof(mp_trace_event) == 24, "trace records are 24 bytes");

struct mp_trace {
    pthread_mutex_t mu;
    int active;
    uint64_t t0_ns;
    mp_trace_event *ev;
    size_t n_ev, cap_ev;
    addrmap map; /* live pointer -> its block id (in the slot's site) */
    uint32_t next_id;
    uint64_t skipped, lost;
};

/* Monotonic clock in nanoseconds. */
static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Make room for one more event; 0 on success, -1 when out of memory. */
static int ev_reserve(mp_trace *t)
{
    if (t->n_ev < t->cap_ev)
        return 0;
    size_t cap = t->cap_ev ? t->cap_ev * 2 : 4096;
    mp_trace_event *ev = realloc(t->ev, cap * sizeof *ev);
    if (ev == NULL)
        return -1;
    t->ev = ev;
    t->cap_ev = cap;
    return 0;
}

/* Append one event (room reserved by the caller). */
static void ev_push(mp_trace *t, int op, uint32_t id, size_t size)
{
    mp_trace_event *e = &t->ev[t->n_ev++];
    memset(e, 0, sizeof *e);
    e->t_ns = now_ns() - t->t0_ns;
    e->size = size;
    e->id = id;
    e->op = (uint8_t)op;
}

/* Record a new block at ptr (mutex held).  Pointer already mapped means a
 * free we could not see (a failed or untraced path): the stale block is
 * freed first so the trace stays consistent. */
static void record_new(mp_trace *t, int op, uintptr_t key, size_t size)
{
    addrmap_slot stale;
    if (addrmap_take(&t->map, key, &stale)) {
        if (ev_reserve(t) != 0) {
            addrmap_put(&t->map, key, 0, stale.site); /* back where it was: no growth */
            t->lost++;
            return;
        }
        ev_push(t, MP_TRACE_FREE, (uint32_t)stale.site, 0);
    }
    uint32_t id = t->next_id;
    if (ev_reserve(t) != 0 || addrmap_put(&t->map, key, 0, (int32_t)id) != 0) {
        t->lost++; /* not mapped: its free will be skipped */
        return;
    }
    t->next_id++;
    ev_push(t, op, id, size);
}

/* A recorder, inactive, with an empty map. */
mp_trace *mp_trace_create(void)
{
    mp_trace *t = calloc(1, sizeof *t);
    if (t == NULL)
        return NULL;
    if (addrmap_init(&t->map) != 0) {
        free(t);
        return NULL;
    }
    if (pthread_mutex_init(&t->mu, NULL) != 0) {
        addrmap_free(&t->map);
        free(t);
        return NULL;
    }
    return t;
}

/* Free everything the recorder holds. */
void mp_trace_destroy(mp_trace *t)
{
    if (t == NULL)
        return;
    pthread_mutex_destroy(&t->mu);
    free(t->ev);
    addrmap_free(&t->map);
    free(t);
}

/* Reset and activate; the map is cleared in place (no allocation). */
int mp_trace_start(mp_trace *t)
{
    pthread_mutex_lock(&t->mu);
    t->n_ev = 0;
    addrmap_clear(&t->map);
    t->next_id = 0;
    t->skipped = t->lost = 0;
    t->t0_ns = now_ns();
    int rc = ev_reserve(t);
    t->active = rc == 0;
    pthread_mutex_unlock(&t->mu);
    return rc;
}

/* Deactivate; events stay for mp_trace_copy. */
void mp_trace_stop(mp_trace *t)
{
    pthread_mutex_lock(&t->mu);
    t->active = 0;
    pthread_mutex_unlock(&t->mu);
}

/* Record a successful alloc/calloc. */
void mp_trace_note_alloc(mp_trace *t, int op, const void *ptr, size_t size)
{
    if (ptr == NULL)
        return;
    pthread_mutex_lock(&t->mu);
    if (t->active)
        record_new(t, op, (uintptr_t)ptr, size);
    pthread_mutex_unlock(&t->mu);
}

/* Held across the real call by the caller (see trace.h). */
void mp_trace_lock(mp_trace *t)
{
    pthread_mutex_lock(&t->mu);
}

/* Record a free of a known pointer, then unlock. */
void mp_trace_note_free(mp_trace *t, const void *old, int ok)
{
    addrmap_slot s;
    if (t->active && ok && old != NULL) {
        if (!addrmap_take(&t->map, (uintptr_t)old, &s))
            t->skipped++;
        else if (ev_reserve(t) != 0)
            t->lost++; /* the block stays live in the trace */
        else
            ev_push(t, MP_TRACE_FREE, (uint32_t)s.site, 0);
    }
    pthread_mutex_unlock(&t->mu);
}

/* Record a realloc: same id at a new address, or a new block. */
void mp_trace_note_realloc(mp_trace *t, const void *old, const void *ptr,
                           size_t size)
{
    addrmap_slot s;
    if (t->active && ptr != NULL) {
        if (old == NULL || !addrmap_take(&t->map, (uintptr_t)old, &s)) {
            if (old != NULL)
                t->skipped++; /* the old block predates the recording */
            record_new(t, MP_TRACE_ALLOC, (uintptr_t)ptr, size);
        } else if (ev_reserve(t) != 0) {
            t->lost++;
        } else {
            ev_push(t, MP_TRACE_REALLOC, (uint32_t)s.site, size);
            /* the map cannot need to grow: one slot was just freed */
            addrmap_put(&t->map, (uintptr_t)ptr, 0, s.site);
        }
    }
    pthread_mutex_unlock(&t->mu);
}

/* Events recorded so far. */
size_t mp_trace_count(mp_trace *t)
{
    pthread_mutex_lock(&t->mu);
    size_t n = t->n_ev;
    pthread_mutex_unlock(&t->mu);
    return n;
}

/* Copy a range of events out. */
size_t mp_trace_copy(mp_trace *t, size_t first, mp_trace_event *out,
                     size_t max)
{
    pthread_mutex_lock(&t->mu);
    size_t n = first < t->n_ev ? t->n_ev - first : 0;
    if (n > max)
        n = max;
    if (n)
        memcpy(out, t->ev + first, n * sizeof *out);
    pthread_mutex_unlock(&t->mu);
    return n;
}

/* Skipped and lost counts. */
void mp_trace_counters(mp_trace *t, uint64_t *skipped, uint64_t *lost)
{
    pthread_mutex_lock(&t->mu);
    *skipped = t->skipped;
    *lost = t->lost;
    pthread_mutex_unlock(&t->mu);
}
