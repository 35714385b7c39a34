/*
 * purge.c - giving free pages back: the background purger, which acts on
 * the lower layers' "dirty memory appeared" reports (acct.on_dirty), and the
 * explicit mp_purge_aged and mp_trim.
 */
#define _GNU_SOURCE /* pthread_condattr_setclock, CLOCK_MONOTONIC */
#include "pool.h"

#include <signal.h>
#include <time.h>

/* ---- background purge -------------------------------------------------- */

/* Give back what aged past the decay in every heap.  Lock held. */
static size_t purge_aged_locked(mp_pool *pool, int64_t now) {
    if (pool->config.decay_ms < 0)
        return 0;
    size_t given = 0;
    for (int h = 0; h < MP_HEAP_COUNT; h++)
        given += decay_purge(&pool->heaps[h], now, pool->config.decay_ms, false);
    return given;
}

size_t mp_purge_aged(mp_pool *pool) {
    if (pool == NULL)
        return 0;
    int64_t now = os_now_ms(), decay_ms = pool_decay_ms(pool); /* no lock held */
    size_t given = decay_ms < 0 ? 0 : slab_purge_free_pages(&pool->small, now, decay_ms, NULL);
    mutex_lock(&pool->lock);
    given += purge_aged_locked(pool, now);
    mutex_unlock(&pool->lock);
    return given;
}

/* Pages one mesher run may mesh (each pair's pause is one slab's copy). */
#define MESH_PAGES_PER_CALL 16384

/* The purger's meshing, at a slab sweep: at most once per decay period.
 * Returns when it wants to run again (INT64_MAX: not before more blocks
 * come back).  Call without the pool lock. */
static int64_t purge_mesh(mp_pool *pool, int64_t now) {
    mp_small *s = &pool->small;
    if (!s->mesh)
        return INT64_MAX;
    int64_t last = atomic_load_explicit(&s->mesh_last_ms, memory_order_relaxed);
    int64_t decay_ms = pool_decay_ms(pool);
    if (last != 0 && now - last < decay_ms)
        return last + decay_ms;
    atomic_store_explicit(&s->mesh_last_ms, now, memory_order_relaxed);
    size_t pages = mesh_run(s, MESH_PAGES_PER_CALL);
    return pages >= MESH_PAGES_PER_CALL ? now + decay_ms : INT64_MAX;
}

/* When the purger next has work: the slab sweep's due time or the earliest
 * of the heaps' decay deadlines (INT64_MAX: nothing is dirty).  Lock held. */
static int64_t purge_next_deadline(mp_pool *pool) {
    int64_t sweep = atomic_load_explicit(&pool->small.slab_sweep_due_ms, memory_order_relaxed);
    int64_t deadline = sweep != 0 ? sweep : INT64_MAX;
    for (int h = 0; h < MP_HEAP_COUNT; h++) {
        int64_t d = decay_next_deadline(&pool->heaps[h], pool->config.decay_ms);
        if (d < deadline)
            deadline = d;
    }
    return deadline;
}

/* The purger: sleeps until the oldest dirty free span ages past the decay,
 * gives it back, and sleeps without a deadline when nothing is dirty. */
static void *purger_main(void *arg) {
    mp_pool *pool = arg;
    _Atomic int64_t *sweep_due = &pool->small.slab_sweep_due_ms;
    mutex_lock(&pool->lock);
    while (!pool->stopping) {
        if (!pool->config.background_purge) { /* turned off (mp_pool_set): idle */
            pool->purger_waiting = true;
            pthread_cond_wait(&pool->purge_cond, &pool->lock.m);
            pool->purger_waiting = false;
            continue;
        }
        int64_t now = os_now_ms();
        purge_aged_locked(pool, now);
        int64_t sweep = atomic_load_explicit(sweep_due, memory_order_relaxed);
        if (sweep != 0 && now >= sweep) {
            /* Slabs take their class locks before the pool lock. */
            atomic_store_explicit(sweep_due, 0, memory_order_relaxed);
            mutex_unlock(&pool->lock);
            int64_t next;
            slab_purge_free_pages(&pool->small, now, pool_decay_ms(pool), &next);
            int64_t mesh_next = purge_mesh(pool, now);
            if (mesh_next < next)
                next = mesh_next;
            mutex_lock(&pool->lock);
            if (next != INT64_MAX) {
                int64_t due = atomic_load_explicit(sweep_due, memory_order_relaxed);
                if (due == 0 || next < due)
                    atomic_store_explicit(sweep_due, next, memory_order_relaxed);
            }
            continue;
        }
        int64_t deadline = purge_next_deadline(pool);
        pool->purger_waiting = true;
        pool->purger_wake_ms = deadline;
        if (deadline == INT64_MAX) {
            pthread_cond_wait(&pool->purge_cond, &pool->lock.m);
        } else {
            /* The coarse clock may lag the fine one by a tick: wait a tick more. */
            int64_t wake = deadline + 5;
            struct timespec ts = {.tv_sec = wake / 1000, .tv_nsec = (wake % 1000) * 1000000};
            pthread_cond_timedwait(&pool->purge_cond, &pool->lock.m, &ts);
        }
        pool->purger_waiting = false;
        pool->purger_wakeups++;
    }
    mutex_unlock(&pool->lock);
    return NULL;
}

/* Dirty free memory appeared (a lower layer's report through acct.on_dirty):
 * make sure the purger will look at it.  Lock held. */
static void purge_on_dirty(mp_acct *acct) {
    mp_pool *pool = MP_CONTAINER(acct, mp_pool, acct);
    if (!pool->config.background_purge || pool->config.decay_ms <= 0 || pool->stopping)
        return;
    if (pool->purger_running) {
        /* Wake it only when its work moved earlier than the wake-up it set
         * itself: in a loop whose holes are taken and freed every step the
         * report comes twice a step, and a wake-up each time cost a futex
         * call, and the purger's turn on the pool lock, per report. */
        if (pool->purger_waiting && purge_next_deadline(pool) < pool->purger_wake_ms) {
            pool->purger_wake_ms = INT64_MIN; /* signalled: no second signal */
            pthread_cond_signal(&pool->purge_cond);
        }
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
void purge_after_free(mp_pool *pool) {
    if (pool->config.decay_ms >= 0)
        purge_aged_locked(pool, pool->config.decay_ms == 0 ? INT64_MAX / 2 : os_now_ms());
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

/* Resident memory would pass the pool's limit (a lower layer's report):
 * give back every free page of every heap now, whatever its age.  Lock
 * held, so the slabs' free pages (class locks first) wait for the purger. */
static void purge_over_limit(mp_acct *acct) {
    mp_pool *pool = MP_CONTAINER(acct, mp_pool, acct);
    for (int h = 0; h < MP_HEAP_COUNT; h++)
        decay_purge(&pool->heaps[h], INT64_MAX / 2, 0, false);
}

/* The heap whose oldest dirty free span has been free longest, or NULL when
 * none holds one.  Lock held. */
static mp_heap *heap_with_oldest(mp_pool *pool) {
    mp_heap *best = NULL;
    int64_t best_at = INT64_MAX;
    for (int h = 0; h < MP_HEAP_COUNT; h++) {
        const mp_span *oldest = heap_lru_oldest(&pool->heaps[h]);
        if (oldest != NULL && oldest->freed_at_ms < best_at) {
            best = &pool->heaps[h];
            best_at = oldest->freed_at_ms;
        }
    }
    return best;
}

/* Fresh pages took resident `excess` bytes above its peak (a lower layer's
 * report): the free resident pages the pool held for reuse would raise the
 * peak by that much, so give back as many, oldest first across the heaps,
 * keeping MP_PEAK_SLACK_BYTES (pool.h).  Below the peak the holes stay (a
 * loop reuses them without faults).  Not with an infinite decay, which
 * keeps every page until trim.  Lock held. */
static void purge_over_peak(mp_acct *acct, uint64_t excess) {
    mp_pool *pool = MP_CONTAINER(acct, mp_pool, acct);
    if (pool->config.decay_ms < 0)
        return;
    uint64_t held = 0;
    for (int h = 0; h < MP_HEAP_COUNT; h++)
        held += pool->heaps[h].dirty_free_granules << pool->heaps[h].granule_shift;
    if (held <= MP_PEAK_SLACK_BYTES)
        return;
    uint64_t want = held - MP_PEAK_SLACK_BYTES < excess ? held - MP_PEAK_SLACK_BYTES : excess;
    mp_heap *heap;
    while (want > 0 && (heap = heap_with_oldest(pool)) != NULL) {
        uint64_t granule = (uint64_t)1 << heap->granule_shift;
        uint64_t got = decay_purge_oldest(heap, (want + granule - 1) >> heap->granule_shift);
        if (got == 0)
            break;
        got <<= heap->granule_shift;
        want = got >= want ? 0 : want - got;
    }
}

/* A new pool: no purger thread yet (the first report starts it); the pool
 * listens to its layers' reports from now on. */
void purge_init(mp_pool *pool) {
    purge_cond_init(pool);
    pool->acct.on_dirty = purge_on_dirty;
    pool->acct.over_limit = purge_over_limit;
    pool->acct.over_peak = purge_over_peak;
}

/* Stop and join the purger (pool teardown). */
void purge_stop(mp_pool *pool) {
    mutex_lock(&pool->lock);
    pool->stopping = true;
    bool join = pool->purger_running;
    pthread_cond_signal(&pool->purge_cond);
    mutex_unlock(&pool->lock);
    if (join)
        pthread_join(pool->purger, NULL);
    pthread_cond_destroy(&pool->purge_cond);
}

/* In a forked child: the purger thread did not survive; a fresh condition
 * variable, and the next report starts a new thread. */
void purge_reinit(mp_pool *pool) {
    purge_cond_init(pool);
    pool->purger_running = false;
    pool->purger_waiting = false;
}

/* Give back every free page now: this thread's cache, spare slabs, free slab
 * pages and every free span (wholly free arenas are unmapped).  Returns bytes. */
size_t mp_trim(mp_pool *pool) {
    if (pool == NULL)
        return 0;
    mp_small *s = &pool->small;
    mp_tcache *tc = tc_get(s);
    if (tc) {
        for (unsigned cls = 0; cls < s->class_count; cls++)
            tc_flush_bin(s, tc, cls, 0);
        mutex_lock(&pool->lock);
        tc_publish(s, tc);
        mutex_unlock(&pool->lock);
    }
    slab_drop_spares(s);
    size_t given = slab_purge_free_pages(s, INT64_MAX / 2, 0, NULL);
    given += mesh_run(s, SIZE_MAX) << MP_PAGE_SHIFT; /* meshing's punched pages */
    mutex_lock(&pool->lock);
    for (int h = 0; h < MP_HEAP_COUNT; h++)
        given += decay_purge(&pool->heaps[h], INT64_MAX / 2, 0, true);
    mutex_unlock(&pool->lock);
    return given;
}
