/*
 * pool.c - a pool's lifetime: configuration, creation and destruction, its
 * locks (and their fate across fork), the statistics helpers every path
 * shares, and the background purger that gives aged free pages back.
 * The allocation paths themselves are in alloc.c.
 */
#define _GNU_SOURCE /* pthread_condattr_setclock, CLOCK_MONOTONIC */
#include "debug.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static MP_TLS int tls_last_error;

int mp_last_error(void) { return tls_last_error; }

/* Count an error against the pool and remember it for mp_last_error. */
MP_COLD int pool_error(const mp_pool *pool, int code) {
    if (pool && code < 0 && -code < MP_ERROR_COUNT)
        atomic_fetch_add_explicit(&((mp_pool *)pool)->errors[-code], 1, memory_order_relaxed);
    tls_last_error = code;
    return code;
}

/* ---- configuration and lifetime -------------------------------------- */

void mp_config_default(mp_config *config) {
    *config = (mp_config){
        .capacity = 0,
        .small_max = 32768,
        .arena_bytes = (size_t)256 << 20,
        .huge_min = (size_t)4 << 20, /* numpy's own huge-page threshold */
        .decay_ms = 1000,
        .huge_pages = MP_HUGE_AUTO,
        .background_purge = 1,
        .debug = 0,
        .retain_arenas = 1,
    };
}

/* The purger's condition variable waits on the monotonic clock, the one its
 * deadlines are computed on. */
static void purge_cond_init(mp_pool *pool) {
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&pool->purge_cond, &attr);
    pthread_condattr_destroy(&attr);
}

/* Check and normalise a config; MP_EINVAL when it cannot work. */
static int config_normalise(mp_config *c) {
    if (c->small_max < MP_MIN_ALIGN || c->small_max > MP_SMALL_MAX_LIMIT)
        return MP_EINVAL;
    if (c->huge_pages < MP_HUGE_OFF || c->huge_pages > MP_HUGE_AUTO)
        return MP_EINVAL;
    if (c->arena_bytes < MP_CHUNK_SIZE || c->arena_bytes > ((size_t)1 << 40))
        return MP_EINVAL;
    c->arena_bytes = MP_ALIGN_UP(c->arena_bytes, MP_CHUNK_SIZE);
    if (c->huge_min <= c->small_max)
        c->huge_min = c->small_max + 1;
    if (c->capacity && c->capacity < MP_CHUNK_SIZE)
        return MP_EINVAL;
    return MP_OK;
}

int mp_pool_create(const mp_config *config, mp_pool **out) {
    if (out == NULL)
        return pool_error(NULL, MP_EINVAL);
    mp_config c;
    if (config)
        c = *config;
    else
        mp_config_default(&c);
    int rc = config_normalise(&c);
    if (rc != MP_OK)
        return pool_error(NULL, rc);
    mp_pool *pool = calloc(1, sizeof *pool);
    if (pool == NULL)
        return pool_error(NULL, MP_ENOMEM);
    pool->config = c;
    if (debug_init(pool) != MP_OK) {
        free(pool);
        return pool_error(NULL, MP_ENOMEM);
    }
    /* Under a tight capacity one heap serves every large block: a second
     * heap's arena would take address space the first one may need. */
    pool->use_huge_heap = c.huge_pages != MP_HUGE_OFF &&
                          (c.capacity == 0 || c.capacity / 4 >= c.arena_bytes);
    pthread_mutex_init(&pool->lock, NULL);
    purge_cond_init(pool);
    heap_init(&pool->heaps[MP_HEAP_PAGES], pool, MP_PAGE_SHIFT, c.huge_pages == MP_HUGE_ON);
    heap_init(&pool->heaps[MP_HEAP_HUGE], pool, MP_HUGE_SHIFT, c.huge_pages != MP_HUGE_OFF);
    pool->heaps[MP_HEAP_PAGES].lowest_first = true; /* see lru_find */
    slab_classes_init(pool);
    pool->fast_small_max = pool->config.debug ? 0 : pool_small_limit(pool);
    pool->metadata_bytes += sizeof *pool; /* debug_init counted its ring */
    registry_add(pool);
    *out = pool;
    return MP_OK;
}

void mp_pool_destroy(mp_pool *pool) {
    if (pool == NULL)
        return;
    registry_remove(pool); /* exiting threads no longer flush into it */
    pthread_mutex_lock(&pool->lock);
    pool->stopping = true;
    bool join = pool->purger_running;
    pthread_cond_signal(&pool->purge_cond);
    pthread_mutex_unlock(&pool->lock);
    if (join)
        pthread_join(pool->purger, NULL);
    tc_release_all(pool);
    buffers_destroy(pool);
    slab_classes_destroy(pool);
    for (int h = 0; h < MP_HEAP_COUNT; h++)
        heap_destroy(&pool->heaps[h]);
    mp_direct *d = pool->directs;
    while (d) {
        mp_direct *next = d->next;
        map_remove(&d->region);
        os_release(pool, d->region.base, d->region.size);
        free(d);
        d = next;
    }
    pthread_cond_destroy(&pool->purge_cond);
    pthread_mutex_destroy(&pool->lock);
    debug_destroy(pool);
    free(pool);
}

void mp_pool_config(const mp_pool *pool, mp_config *out) {
    if (pool && out)
        *out = pool->config;
}

/* ---- locks, fork, statistics helpers ---------------------------------- */

/* Take every lock of the pool in the documented order (fork prepare). */
void pool_lock_all(mp_pool *pool) {
    for (unsigned cls = 0; cls < pool->class_count; cls++)
        pthread_mutex_lock(&pool->classes[cls].lock);
    pthread_mutex_lock(&pool->lock);
}

/* Release what pool_lock_all took. */
void pool_unlock_all(mp_pool *pool) {
    pthread_mutex_unlock(&pool->lock);
    for (unsigned cls = pool->class_count; cls-- > 0;)
        pthread_mutex_unlock(&pool->classes[cls].lock);
}

/* In a forked child: fresh locks and no purger thread (it did not survive). */
void pool_reinit_locks(mp_pool *pool) {
    for (unsigned cls = 0; cls < pool->class_count; cls++)
        pthread_mutex_init(&pool->classes[cls].lock, NULL);
    pthread_mutex_init(&pool->lock, NULL);
    purge_cond_init(pool);
    debug_reinit_lock(pool);
    pool->purger_running = false;
    pool->purger_waiting = false;
}

/* Add a live-bytes delta to the published figure and raise the peak. */
void pool_note_live(mp_pool *pool, int64_t delta) {
    int64_t now = atomic_fetch_add_explicit(&pool->published_live, delta,
                                            memory_order_relaxed) + delta;
    uint64_t peak = atomic_load_explicit(&pool->peak_live, memory_order_relaxed);
    while (now > 0 && (uint64_t)now > peak &&
           !atomic_compare_exchange_weak_explicit(&pool->peak_live, &peak, (uint64_t)now,
                                                  memory_order_relaxed, memory_order_relaxed))
        ;
}

/* Account bytes turning resident (or, negative, given back).  Lock held. */
void pool_note_resident(mp_pool *pool, int64_t delta_bytes) {
    pool->resident_bytes += (uint64_t)delta_bytes;
    if (pool->resident_bytes > pool->peak_resident_bytes)
        pool->peak_resident_bytes = pool->resident_bytes;
}

/* ---- background purge -------------------------------------------------- */

/* Give back what aged past the decay in both heaps.  Lock held. */
static size_t purge_aged_locked(mp_pool *pool, int64_t now) {
    if (pool->config.decay_ms < 0)
        return 0;
    size_t given = 0;
    for (int h = 0; h < MP_HEAP_COUNT; h++)
        given += heap_purge(&pool->heaps[h], now, pool->config.decay_ms, false);
    return given;
}

size_t mp_purge_aged(mp_pool *pool) {
    if (pool == NULL)
        return 0;
    int64_t now = os_now_ms();
    size_t given = pool->config.decay_ms < 0
                       ? 0 : slab_purge_free_pages(pool, now, pool->config.decay_ms, NULL);
    pthread_mutex_lock(&pool->lock);
    given += purge_aged_locked(pool, now);
    pthread_mutex_unlock(&pool->lock);
    return given;
}

/* The purger: sleeps until the oldest dirty free span ages past the decay,
 * gives it back, and sleeps without a deadline when nothing is dirty. */
static void *purger_main(void *arg) {
    mp_pool *pool = arg;
    pthread_mutex_lock(&pool->lock);
    while (!pool->stopping) {
        int64_t now = os_now_ms();
        purge_aged_locked(pool, now);
        int64_t sweep = atomic_load_explicit(&pool->slab_sweep_due_ms, memory_order_relaxed);
        if (sweep != 0 && now >= sweep) {
            /* Slabs take their class locks before the pool lock. */
            atomic_store_explicit(&pool->slab_sweep_due_ms, 0, memory_order_relaxed);
            pthread_mutex_unlock(&pool->lock);
            int64_t next;
            slab_purge_free_pages(pool, now, pool->config.decay_ms, &next);
            pthread_mutex_lock(&pool->lock);
            if (next != INT64_MAX) {
                int64_t due = atomic_load_explicit(&pool->slab_sweep_due_ms, memory_order_relaxed);
                if (due == 0 || next < due)
                    atomic_store_explicit(&pool->slab_sweep_due_ms, next, memory_order_relaxed);
            }
            continue;
        }
        int64_t deadline = sweep != 0 ? sweep : INT64_MAX;
        for (int h = 0; h < MP_HEAP_COUNT; h++) {
            int64_t d = heap_next_deadline(&pool->heaps[h], pool->config.decay_ms);
            if (d < deadline)
                deadline = d;
        }
        pool->purger_waiting = true;
        if (deadline == INT64_MAX) {
            pthread_cond_wait(&pool->purge_cond, &pool->lock);
        } else {
            /* The coarse clock may lag the fine one by a tick: wait a tick more. */
            int64_t wake = deadline + 5;
            struct timespec ts = {.tv_sec = wake / 1000, .tv_nsec = (wake % 1000) * 1000000};
            pthread_cond_timedwait(&pool->purge_cond, &pool->lock, &ts);
        }
        pool->purger_waiting = false;
    }
    pthread_mutex_unlock(&pool->lock);
    return NULL;
}

/* Dirty free memory appeared: make sure the purger will look at it.  Lock held. */
void pool_wake_purger(mp_pool *pool) {
    if (!pool->config.background_purge || pool->config.decay_ms <= 0 || pool->stopping)
        return;
    if (pool->purger_running) {
        if (pool->purger_waiting)
            pthread_cond_signal(&pool->purge_cond);
        return;
    }
    /* The purger must not take signals meant for the program (Python's
     * handlers run on the main thread). */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pool->purger_running = pthread_create(&pool->purger, NULL, purger_main, pool) == 0;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
}

/* After a free: apply decay (decay 0 gives back at once).  Lock held. */
void after_free_locked(mp_pool *pool) {
    if (pool->config.decay_ms >= 0)
        purge_aged_locked(pool, pool->config.decay_ms == 0 ? INT64_MAX / 2 : os_now_ms());
}

