/*
 * tc.c - per-thread caches of free small blocks.
 *
 * The fast path of mp_alloc/mp_free pops or pushes an entry of this thread's
 * cache: no lock, no atomic read-modify-write on shared memory.  Caches refill
 * from and flush to the class lists in batches of half their capacity.
 *
 * A thread keeps caches for up to MP_TLS_SLOTS pools in thread-local slots,
 * keyed by the pool's small-block state and its never-reused uid (so a
 * destroyed pool whose address is reused is never mistaken for the new one).
 * When a thread exits, a pthread key destructor hands its cached blocks
 * back, but only to pools the registry (registry.c) says are still alive.
 */
#include "small.h"

#include <stdlib.h>
#include <string.h>

MP_TLS struct mp_tls_slot tc_tls_slots[MP_TLS_SLOTS];

static pthread_key_t tls_key;
static pthread_once_t tls_key_once = PTHREAD_ONCE_INIT;

/* Thread exit: return every cache this thread holds to its (live) pool. */
static void tls_thread_exit(void *unused) {
    (void)unused;
    registry_lock();
    for (unsigned i = 0; i < MP_TLS_SLOTS; i++) {
        struct mp_tls_slot *slot = &tc_tls_slots[i];
        if (slot->small && registry_find(slot->uid) == slot->small)
            tc_release(slot->small, slot->tcache);
        memset(slot, 0, sizeof *slot);
    }
    registry_unlock();
}

/* Create the key whose destructor runs tls_thread_exit. */
static void tls_key_create(void) { pthread_key_create(&tls_key, tls_thread_exit); }

/* A cache for the calling thread, taken from the pool's recycled ones or
 * made new; NULL when memory is refused. */
static mp_tcache *tc_create(mp_small *s) {
    mutex_lock(s->heap_lock);
    mp_tcache *tc = LIST_ENTRY(s->tcache_free.head, mp_tcache, link);
    if (tc) {
        list_remove(&s->tcache_free, &tc->link);
    } else {
        size_t entries = 0;
        for (unsigned cls = 0; cls < s->class_count; cls++)
            entries += s->classes[cls].tcache_cap;
        /* whole cache lines: another thread's data never shares one with
         * the bins and counters this thread writes on every call */
        size_t bytes = MP_ALIGN_UP(sizeof(mp_tcache) + entries * sizeof(mp_tcache_entry),
                                   MP_CACHE_LINE);
        tc = aligned_alloc(MP_CACHE_LINE, bytes);
        if (tc == NULL) {
            mutex_unlock(s->heap_lock);
            return NULL;
        }
        memset(tc, 0, bytes);
        mp_tcache_entry *storage = (mp_tcache_entry *)(tc + 1);
        for (unsigned cls = 0; cls < s->class_count; cls++) {
            mp_tcache_bin *bin = &tc->bins[cls];
            bin->cap = s->classes[cls].tcache_cap;
            bin->entries = bin->top = storage;
            bin->end = storage + bin->cap;
            storage += bin->cap;
        }
        s->acct->metadata += bytes;
    }
    tc->small = s;
    tc->owner = pthread_self();
    list_push_front(&s->tcaches, &tc->link);
    s->tcache_count++;
    mutex_unlock(s->heap_lock);
    return tc;
}

/* This thread's cache for `pool` when it is not in slot 0: found in another
 * slot, or created (evicting the least recently used slot). */
MP_COLD mp_tcache *tc_get_slow(mp_small *s) {
    unsigned found = MP_TLS_SLOTS;
    for (unsigned i = 1; i < MP_TLS_SLOTS; i++)
        if (tc_tls_slots[i].small == s && tc_tls_slots[i].uid == s->uid)
            found = i;
    struct mp_tls_slot entry;
    if (found < MP_TLS_SLOTS) {
        entry = tc_tls_slots[found];
    } else {
        mp_tcache *tc = tc_create(s);
        if (tc == NULL)
            return NULL;
        entry = (struct mp_tls_slot){.small = s, .uid = s->uid, .tcache = tc};
        found = MP_TLS_SLOTS - 1;
        struct mp_tls_slot *victim = &tc_tls_slots[found];
        if (victim->small) {
            registry_lock();
            if (registry_find(victim->uid) == victim->small)
                tc_release(victim->small, victim->tcache);
            registry_unlock();
        }
        pthread_once(&tls_key_once, tls_key_create);
        pthread_setspecific(tls_key, &tc_tls_slots[0]);
    }
    memmove(&tc_tls_slots[1], &tc_tls_slots[0], found * sizeof tc_tls_slots[0]);
    tc_tls_slots[0] = entry;
    return entry.tcache;
}

/* Move the live-bytes delta this thread has not yet reported into the
 * pool's published figure (which feeds peak_live_bytes). */
void tc_publish(mp_small *s, mp_tcache *tc) {
    if (tc->unpublished) {
        acct_live(s->acct, tc->unpublished);
        tc->unpublished = 0;
    }
}

/* Return the oldest cached blocks of a bin to their slabs, keeping `keep`. */
MP_COLD void tc_flush_bin(mp_small *s, mp_tcache *tc, unsigned cls, uint32_t keep) {
    mp_tcache_bin *bin = &tc->bins[cls];
    uint32_t count = tc_bin_count(bin);
    if (count <= keep)
        return;
    uint32_t n = count - keep;
    slab_return(s, cls, bin->entries, n);
    memmove(bin->entries, bin->entries + n, keep * sizeof bin->entries[0]);
    bin->top = bin->entries + keep;
}

/* Fold an emptied cache's counters into the pool's and park it for reuse by
 * a later thread.  Lock held (or the process is a fresh fork child). */
static void tc_park(mp_small *s, mp_tcache *tc) {
    tc_publish(s, tc);
    tc_fold(&s->uncached, &tc->counters);
    list_remove(&s->tcaches, &tc->link);
    list_push_front(&s->tcache_free, &tc->link);
    s->tcache_count--;
}

#define COUNTERS_LEN (sizeof(mp_counters) / sizeof(mp_counter))

/* Move every counter of `from` into `into` (from ends at zero). */
void tc_fold(mp_counters *into, mp_counters *from) {
    mp_counter *dst = (mp_counter *)into, *src = (mp_counter *)from;
    for (size_t i = 0; i < COUNTERS_LEN; i++) {
        ctr_add(&dst[i], ctr_get(&src[i]));
        atomic_store_explicit(&src[i], 0, memory_order_relaxed);
    }
}

/* Empty a cache into its pool, give up its slabs and park it. */
void tc_release(mp_small *s, mp_tcache *tc) {
    for (unsigned cls = 0; cls < s->class_count; cls++)
        tc_flush_bin(s, tc, cls, 0);
    partial_disown(s, tc);
    mutex_lock(s->heap_lock);
    tc_park(s, tc);
    mutex_unlock(s->heap_lock);
}

/* Clear the calling thread's slots that point at `pool`. */
static void tc_forget_pool(const mp_small *s) {
    for (unsigned i = 0; i < MP_TLS_SLOTS; i++)
        if (tc_tls_slots[i].small == s && tc_tls_slots[i].uid == s->uid)
            memset(&tc_tls_slots[i], 0, sizeof tc_tls_slots[i]);
}

/* Free every cache of a pool that is being destroyed, and forget the calling
 * thread's slot for it (other threads' slots go stale: the uid check). */
void tc_release_all(mp_small *s) {
    mp_list *lists[2] = {&s->tcaches, &s->tcache_free};
    for (int i = 0; i < 2; i++) {
        mp_link *l;
        while ((l = lists[i]->head) != NULL) {
            list_remove(lists[i], l);
            free(LIST_ENTRY(l, mp_tcache, link));
        }
    }
    tc_forget_pool(s);
}

/* In a forked child: caches of threads that do not exist here are dropped
 * unread (their owner may have stopped mid-update), their counters folded,
 * and the slabs repaired from the block states (slab_repair_after_fork). */
void tc_reclaim_foreign(mp_small *s) {
    pthread_t self = pthread_self();
    mp_link *l = s->tcaches.head;
    while (l) {
        mp_tcache *tc = LIST_ENTRY(l, mp_tcache, link);
        l = l->next;
        if (!pthread_equal(tc->owner, self)) {
            for (unsigned cls = 0; cls < s->class_count; cls++)
                tc->bins[cls].top = tc->bins[cls].entries;
            partial_disown(s, tc);
            tc_park(s, tc);
        }
    }
    slab_repair_after_fork(s);
}
