/*
 * mutex.c - lock ranks, checked (MP_CHECK_LEVEL >= 1), after jemalloc's
 * witness: each thread keeps the locks it holds, and taking one whose
 * (rank, sub) is not above every held one aborts with both names, at the
 * call that would one day deadlock, not at the deadlock.  Release builds
 * use base.h's plain inline wrappers and compile nothing here.
 */
#include "base.h"

#if MP_CHECK_LEVEL >= 1

#include <stdio.h>

/* Enough for every class lock plus the pool, registry, debug and map locks. */
#define HELD_MAX (MP_MAX_CLASSES + 8)

static MP_TLS struct {
    const mp_mutex *lock[HELD_MAX];
    unsigned depth;
    bool forking; /* inside the fork handlers: not checked (mutex_forking) */
} held;

static const char *const RANK_NAMES[] = {"?", "registry", "class", "pool", "debug ring", "map"};

/* The name of a rank, for the report. */
static const char *rank_name(unsigned rank) {
    return rank < sizeof RANK_NAMES / sizeof RANK_NAMES[0] ? RANK_NAMES[rank] : "?";
}

/* Take `mu` after checking that it ranks above every lock this thread holds. */
void mutex_lock(mp_mutex *mu) {
    MP_ASSERT(mu->rank != 0, "every mutex is made with a rank");
    if (held.forking) {
        pthread_mutex_lock(&mu->m);
        return;
    }
    for (unsigned i = 0; i < held.depth; i++) {
        const mp_mutex *h = held.lock[i];
        if (h->rank > mu->rank || (h->rank == mu->rank && h->sub >= mu->sub)) {
            fprintf(stderr, "mempool: lock order: taking %s[%u] while holding %s[%u]\n",
                    rank_name(mu->rank), mu->sub, rank_name(h->rank), h->sub);
            assert_fail("lock rank above every held lock", "locks are taken in rank order",
                        __FILE__, __LINE__);
        }
    }
    mutex_acquire(mu);
    MP_ASSERT(held.depth < HELD_MAX, "a thread holds at most every lock once");
    held.lock[held.depth++] = mu;
}

/* Release `mu`, which this thread holds (not necessarily the newest). */
void mutex_unlock(mp_mutex *mu) {
    if (held.forking) {
        pthread_mutex_unlock(&mu->m);
        return;
    }
    unsigned i = held.depth;
    while (i > 0 && held.lock[i - 1] != mu)
        i--;
    MP_ASSERT(i > 0, "a thread unlocks only a lock it holds");
    for (; i < held.depth; i++)
        held.lock[i - 1] = held.lock[i];
    held.depth--;
    pthread_mutex_unlock(&mu->m);
}

/* In a fork child, once every lock was re-made: this thread holds none. */
void mutex_forget_all(void) {
    held.depth = 0;
    held.forking = false;
}

/* Enter (true) or leave the fork handlers, which hold every lock of every
 * pool at once: the registry lock, taken first, serializes them against
 * any other holder of two pools' locks, so ranks are not checked there
 * (jemalloc's witness_prefork does the same). */
void mutex_forking(bool on) { held.forking = on; }

#endif
