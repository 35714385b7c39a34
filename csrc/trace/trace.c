/*
 * trace.c - the allocation-event recorder (see trace.h).
 *
 * Glossary: ev = the event buffer (grows by doubling); map = open-addressing
 * hash from a live pointer to its block id, linear probing, deletion by
 * backward shift (no tombstones, so a long recording never degrades).
 */
#define _DEFAULT_SOURCE
#include "trace.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

_Static_assert(sizeof(mp_trace_event) == 24, "trace records are 24 bytes");

typedef struct map_slot {
    uintptr_t key; /* 0 = empty (a NULL pointer is never a live block) */
    uint32_t id;
} map_slot;

struct mp_trace {
    pthread_mutex_t mu;
    int active;
    uint64_t t0_ns;
    mp_trace_event *ev;
    size_t n_ev, cap_ev;
    map_slot *map;
    size_t map_cap, map_used; /* map_cap is a power of two */
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

/* Slot index of a pointer's home position (Fibonacci hashing of the
 * address without its low, always-zero alignment bits). */
static size_t map_home(const mp_trace *t, uintptr_t key)
{
    uint64_t h = (uint64_t)(key >> 4) * 0x9E3779B97F4A7C15ull;
    return (size_t)(h >> 20) & (t->map_cap - 1);
}

/* Index of key's slot, or of the empty slot where it would go. */
static size_t map_find(const mp_trace *t, uintptr_t key)
{
    size_t i = map_home(t, key);
    while (t->map[i].key != 0 && t->map[i].key != key)
        i = (i + 1) & (t->map_cap - 1);
    return i;
}

/* Double the map; 0 on success, -1 when out of memory (map unchanged). */
static int map_grow(mp_trace *t)
{
    size_t old_cap = t->map_cap;
    map_slot *old = t->map;
    map_slot *fresh = calloc(old_cap * 2, sizeof *fresh);
    if (fresh == NULL)
        return -1;
    t->map = fresh;
    t->map_cap = old_cap * 2;
    for (size_t i = 0; i < old_cap; i++)
        if (old[i].key != 0)
            t->map[map_find(t, old[i].key)] = old[i];
    free(old);
    return 0;
}

/* Remove slot i, shifting later members of its probe run back so lookups
 * never stop early at a hole. */
static void map_remove_at(mp_trace *t, size_t i)
{
    size_t mask = t->map_cap - 1;
    size_t j = i;
    for (;;) {
        j = (j + 1) & mask;
        if (t->map[j].key == 0)
            break;
        size_t home = map_home(t, t->map[j].key);
        /* j's entry may move to i only if its home is not in (i, j]. */
        int between = (i <= j) ? (home > i && home <= j)
                               : (home > i || home <= j);
        if (!between) {
            t->map[i] = t->map[j];
            i = j;
        }
    }
    t->map[i].key = 0;
    t->map_used--;
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
    if (t->map_used * 2 >= t->map_cap && map_grow(t) != 0) {
        t->lost++;
        return;
    }
    size_t i = map_find(t, key);
    if (t->map[i].key == key) {
        if (ev_reserve(t) != 0) {
            t->lost++;
            return;
        }
        ev_push(t, MP_TRACE_FREE, t->map[i].id, 0);
        map_remove_at(t, i);
        i = map_find(t, key);
    }
    if (ev_reserve(t) != 0) {
        t->lost++; /* not mapped either: its free will be skipped */
        return;
    }
    uint32_t id = t->next_id++;
    ev_push(t, op, id, size);
    t->map[i].key = key;
    t->map[i].id = id;
    t->map_used++;
}

/* A recorder, inactive, with an empty map of 1024 slots. */
mp_trace *mp_trace_create(void)
{
    mp_trace *t = calloc(1, sizeof *t);
    if (t == NULL)
        return NULL;
    t->map_cap = 1024;
    t->map = calloc(t->map_cap, sizeof *t->map);
    if (t->map == NULL || pthread_mutex_init(&t->mu, NULL) != 0) {
        free(t->map);
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
    free(t->map);
    free(t);
}

/* Reset and activate; the map is cleared in place (no allocation). */
int mp_trace_start(mp_trace *t)
{
    pthread_mutex_lock(&t->mu);
    t->n_ev = 0;
    memset(t->map, 0, t->map_cap * sizeof *t->map);
    t->map_used = 0;
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
    if (t->active && ok && old != NULL) {
        size_t i = map_find(t, (uintptr_t)old);
        if (t->map[i].key != (uintptr_t)old) {
            t->skipped++;
        } else if (ev_reserve(t) != 0) {
            t->lost++;
            map_remove_at(t, i); /* the block stays live in the trace */
        } else {
            ev_push(t, MP_TRACE_FREE, t->map[i].id, 0);
            map_remove_at(t, i);
        }
    }
    pthread_mutex_unlock(&t->mu);
}

/* Record a realloc: same id at a new address, or a new block. */
void mp_trace_note_realloc(mp_trace *t, const void *old, const void *ptr,
                           size_t size)
{
    if (t->active && ptr != NULL) {
        size_t i = old ? map_find(t, (uintptr_t)old) : 0;
        if (old == NULL || t->map[i].key != (uintptr_t)old) {
            if (old != NULL)
                t->skipped++; /* the old block predates the recording */
            record_new(t, MP_TRACE_ALLOC, (uintptr_t)ptr, size);
        } else if (ev_reserve(t) != 0) {
            t->lost++;
            map_remove_at(t, i);
        } else {
            uint32_t id = t->map[i].id;
            ev_push(t, MP_TRACE_REALLOC, id, size);
            map_remove_at(t, i);
            /* The map cannot be full: one slot was just freed. */
            size_t j = map_find(t, (uintptr_t)ptr);
            if (t->map[j].key == 0)
                t->map_used++;
            t->map[j].key = (uintptr_t)ptr;
            t->map[j].id = id;
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
