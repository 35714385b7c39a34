/*
 * tcache.c - per-thread caches of free small blocks.
 *
 * The fast path of mp_alloc/mp_free pops or pushes an entry of this thread's
 * cache: no lock, no atomic read-modify-write on shared memory.  Caches refill
 * from and flush to the class lists in batches of half their capacity.
 *
 * A thread keeps caches for up to MP_TLS_SLOTS pools in thread-local slots,
 * keyed by the pool's address and its never-reused uid (so a destroyed pool
 * whose address is reused is never mistaken for the new one).  When a thread
 * exits, a pthread key destructor hands its cached blocks back, but only to
 * pools the registry says are still alive.
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

MP_TLS struct mp_tls_slot tls_slots[MP_TLS_SLOTS];

static pthread_key_t tls_key;
static pthread_once_t tls_key_once = PTHREAD_ONCE_INIT;

/* Thread exit: return every cache this thread holds to its (live) pool. */
static void tls_thread_exit(void *unused) {
    (void)unused;
    pthread_mutex_lock(registry_lock());
    for (unsigned i = 0; i < MP_TLS_SLOTS; i++) {
        struct mp_tls_slot *slot = &tls_slots[i];
        if (slot->pool && registry_find(slot->uid) == slot->pool)
            tc_release(slot->pool, slot->tcache);
        memset(slot, 0, sizeof *slot);
    }
    pthread_mutex_unlock(registry_lock());
}

/* Create the key whose destructor runs tls_thread_exit. */
static void tls_key_create(void) { pthread_key_create(&tls_key, tls_thread_exit); }

/* A cache for the calling thread, taken from the pool's recycled ones or
 * made new; NULL when memory is refused. */
static mp_tcache *tc_create(mp_pool *pool) {
    pthread_mutex_lock(&pool->lock);
    mp_tcache *tc = pool->tcache_free;
    if (tc) {
        pool->tcache_free = tc->next;
    } else {
        size_t entries = 0;
        for (unsigned cls = 0; cls < pool->class_count; cls++)
            entries += pool->classes[cls].tcache_cap;
        size_t bytes = sizeof(mp_tcache) + entries * sizeof(mp_tcache_entry);
        tc = calloc(1, bytes);
        if (tc == NULL) {
            pthread_mutex_unlock(&pool->lock);
            return NULL;
        }
        mp_tcache_entry *storage = (mp_tcache_entry *)(tc + 1);
        for (unsigned cls = 0; cls < pool->class_count; cls++) {
            tc->bins[cls].entries = storage;
            tc->bins[cls].cap = pool->classes[cls].tcache_cap;
            storage += tc->bins[cls].cap;
        }
        pool->metadata_bytes += bytes;
    }
    tc->pool = pool;
    tc->owner = pthread_self();
    tc->prev = NULL;
    tc->next = pool->tcaches;
    if (pool->tcaches)
        pool->tcaches->prev = tc;
    pool->tcaches = tc;
    pool->tcache_count++;
    pthread_mutex_unlock(&pool->lock);
    return tc;
}

/* This thread's cache for `pool` when it is not in slot 0: found in another
 * slot, or created (evicting the least recently used slot). */
MP_COLD mp_tcache *tc_get_slow(mp_pool *pool) {
    unsigned found = MP_TLS_SLOTS;
    for (unsigned i = 1; i < MP_TLS_SLOTS; i++)
        if (tls_slots[i].pool == pool && tls_slots[i].uid == pool->uid)
            found = i;
    struct mp_tls_slot entry;
    if (found < MP_TLS_SLOTS) {
        entry = tls_slots[found];
    } else {
        mp_tcache *tc = tc_create(pool);
        if (tc == NULL)
            return NULL;
        entry = (struct mp_tls_slot){.pool = pool, .uid = pool->uid, .tcache = tc};
        found = MP_TLS_SLOTS - 1;
        struct mp_tls_slot *victim = &tls_slots[found];
        if (victim->pool) {
            pthread_mutex_lock(registry_lock());
            if (registry_find(victim->uid) == victim->pool)
                tc_release(victim->pool, victim->tcache);
            pthread_mutex_unlock(registry_lock());
        }
        pthread_once(&tls_key_once, tls_key_create);
        pthread_setspecific(tls_key, &tls_slots[0]);
    }
    memmove(&tls_slots[1], &tls_slots[0], found * sizeof tls_slots[0]);
    tls_slots[0] = entry;
    return entry.tcache;
}

/* Move the live-bytes delta this thread has not yet reported into the
 * pool's published figure (which feeds peak_live_bytes). */
void tc_publish(mp_pool *pool, mp_tcache *tc) {
    if (tc->unpublished) {
        pool_note_live(pool, tc->unpublished);
        tc->unpublished = 0;
    }
}

/* Return the oldest cached blocks of a bin to their slabs, keeping `keep`. */
MP_COLD void tc_flush_bin(mp_pool *pool, mp_tcache *tc, unsigned cls, uint32_t keep) {
    mp_tcache_bin *bin = &tc->bins[cls];
    if (bin->count <= keep)
        return;
    uint32_t n = bin->count - keep;
    slab_return(pool, cls, bin->entries, n);
    memmove(bin->entries, bin->entries + n, keep * sizeof bin->entries[0]);
    bin->count = keep;
}

/* Fold an emptied cache's counters into the pool's and park it for reuse by
 * a later thread.  Lock held (or the process is a fresh fork child). */
static void tc_park(mp_pool *pool, mp_tcache *tc) {
    tc_publish(pool, tc);
    counters_fold(&pool->central, &tc->counters);
    if (tc->prev)
        tc->prev->next = tc->next;
    else
        pool->tcaches = tc->next;
    if (tc->next)
        tc->next->prev = tc->prev;
    tc->prev = NULL;
    tc->next = pool->tcache_free;
    pool->tcache_free = tc;
    pool->tcache_count--;
}

/* Empty a cache into its pool and park it. */
void tc_release(mp_pool *pool, mp_tcache *tc) {
    for (unsigned cls = 0; cls < pool->class_count; cls++)
        tc_flush_bin(pool, tc, cls, 0);
    pthread_mutex_lock(&pool->lock);
    tc_park(pool, tc);
    pthread_mutex_unlock(&pool->lock);
}

/* Clear the calling thread's slots that point at `pool`. */
static void tc_forget_pool(const mp_pool *pool) {
    for (unsigned i = 0; i < MP_TLS_SLOTS; i++)
        if (tls_slots[i].pool == pool && tls_slots[i].uid == pool->uid)
            memset(&tls_slots[i], 0, sizeof tls_slots[i]);
}

/* Free every cache of a pool that is being destroyed, and forget the calling
 * thread's slot for it (other threads' slots go stale: the uid check). */
void tc_release_all(mp_pool *pool) {
    mp_tcache *lists[2] = {pool->tcaches, pool->tcache_free};
    for (int i = 0; i < 2; i++) {
        mp_tcache *tc = lists[i];
        while (tc) {
            mp_tcache *next = tc->next;
            free(tc);
            tc = next;
        }
    }
    pool->tcaches = pool->tcache_free = NULL;
    tc_forget_pool(pool);
}

/* In a forked child: caches of threads that do not exist here are dropped
 * unread (their owner may have stopped mid-update), their counters folded,
 * and the slabs repaired from the block states (slab_repair_after_fork). */
void tc_reclaim_foreign(mp_pool *pool) {
    pthread_t self = pthread_self();
    mp_tcache *tc = pool->tcaches;
    while (tc) {
        mp_tcache *next = tc->next;
        if (!pthread_equal(tc->owner, self)) {
            for (unsigned cls = 0; cls < pool->class_count; cls++)
                tc->bins[cls].count = 0;
            tc_park(pool, tc);
        }
        tc = next;
    }
    slab_repair_after_fork(pool);
}
