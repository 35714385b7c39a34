/*
 * pool.h - the pool layer: struct mp_pool and what acts on a whole pool.
 *
 *   config.c  the settings table exported, defaults, checks that name what
 *             is wrong, mp_pool_set / mp_pool_get on a live pool
 *   pool.c    creation, destruction, the error counters,
 *             large-block accounting, and the fork protocol: prepare takes
 *             every lock in rank order through each layer's hook, the child
 *             re-makes them and repairs the caches of vanished threads
 *   purge.c   the background purger (acts on the layers' "dirty memory
 *             appeared" reports), mp_purge_aged, mp_trim
 *   stats.c   mp_stats_get
 *   check.c   mp_pool_check: every invariant, counted and named
 *   debug.c   debug mode: canaries, fill patterns, corruption reports
 *   buffer.c  movable buffers and their compaction (mp_defragment)
 *   walk.c    mp_pool_walk: every segment and block, for snapshots
 *   layers.c  mp_stats.layers: the figures by layer
 *
 * Lock order (ranks, base.h): registry -> class[i] (ascending i) -> pool ->
 * debug ring -> map.  Checked builds abort on a lock taken out of order.
 */
#ifndef MEMPOOL_POOL_H
#define MEMPOOL_POOL_H

#include "../small/small.h"

/* A block bigger than an arena: one mapping, one block, grown by mremap. */
typedef struct mp_direct {
    mp_region region;
    mp_link link; /* the pool's list of direct blocks */
    size_t requested;
} mp_direct;

/* ---- movable buffers -------------------------------------------------- */
/* One slot of the pool's buffer table.  A handle is (generation << 32) |
 * (index + 1); a slot's generation changes when it is freed, so an old handle
 * never names the slot's next buffer. */
typedef struct mp_buffer_slot {
    mp_span *span;      /* the heap span holding the bytes (live slots) */
    uint64_t nbytes;
    uint32_t pins;
    uint32_t generation; /* odd: live, even: free */
    uint32_t next_free;  /* free slots form a list (index + 1, 0 = end) */
} mp_buffer_slot;

typedef struct mp_buffer_table {
    mp_buffer_slot *slots;
    uint32_t count, cap, free_head;
    uint64_t live, bytes, pinned; /* statistics */
    uint64_t defrag_count, defrag_moved_bytes;
} mp_buffer_table;

/* ---- large-block counters ------------------------------------------------ */
/* The pool's own figures of large and direct blocks, kept under its lock by
 * pool_account_large (small blocks are counted per thread cache, lock-free:
 * small.h's mp_counters). */
typedef struct mp_large_counters {
    int64_t live_bytes;      /* requested bytes of live large and direct blocks */
    int64_t allocated_bytes; /* their spans' and mappings' bytes */
    uint64_t large_allocs, direct_allocs; /* successful allocations of each kind */
    uint64_t callocs, frees; /* of those, callocs; frees of either kind */
} mp_large_counters;

/* ---- the pool ----------------------------------------------------------- */
/* MP_HEAP_MESH: the slabs' heap of memfd-backed arenas when meshing is on
 * (without it, slabs share the page heap and the mesh heap stays empty). */
enum { MP_HEAP_PAGES = 0, MP_HEAP_HUGE = 1, MP_HEAP_MESH = 2, MP_HEAP_COUNT = 3 };

struct mp_pool {
    /* First: its uid and fast_max are the two reads every mp_alloc/mp_free
     * makes, and the thread caches key on &pool->small, which is then the
     * pool's own address (no add on the fast path). */
    mp_small small;
    mp_config config;
    mp_mutex lock; /* heaps, acct, directs, graves, buffers, the purger */
    mp_acct acct;  /* also the pool's identity in the address map */
    mp_heap heaps[MP_HEAP_COUNT];
    mp_list directs;
    uint64_t direct_count;
    mp_large_counters large;
    map_graves graves;
    _Atomic uint64_t errors[MP_ERROR_COUNT];
    /* background purge */
    pthread_cond_t purge_cond;
    pthread_t purger;
    bool purger_running, purger_waiting, stopping;
    int64_t purger_wake_ms;  /* while waiting: when it wakes by itself (INT64_MAX: never) */
    uint64_t purger_wakeups; /* waits it came back from (stats) */
    bool use_huge_heap;
    struct mp_debug *dbg; /* debug mode: the corruption reports (debug.c) */
    mp_buffer_table buffers; /* lock held */
    mp_observer_fn observer; /* mp_pool_observe (lock held) */
    void *observer_ctx;
};

_Static_assert(offsetof(struct mp_pool, small) == 0, "the fast paths key caches on the pool's address");

/* Debug mode's canary bytes after every block, 0 when off (debug_init makes
 * config.debug 0 or 1).  Derived from the config rather than stored: the
 * config shares its cache line with nothing a lock holder writes. */
static inline size_t pool_pad(const mp_pool *pool) {
    return (size_t)pool->config.debug * MP_CANARY_BYTES;
}
/* Largest request the slabs serve: small_max less the canary. */
static inline size_t pool_small_limit(const mp_pool *pool) {
    return pool->config.small_max - pool_pad(pool);
}

/* The pool's decay, read without the pool lock (mp_pool_set changes it). */
static inline int64_t pool_decay_ms(const mp_pool *pool) {
    return __atomic_load_n(&pool->config.decay_ms, __ATOMIC_RELAXED);
}

/* ---- config.c ----------------------------------------------------------- */
void config_normalise(mp_config *c); /* after mp_config_check */

/* ---- pool.c ------------------------------------------------------------- */
enum { CALL_ALLOC, CALL_CALLOC, CALL_INTERNAL }; /* which counters a call feeds */
enum { LARGE_SPAN, LARGE_DIRECT }; /* a large block's kind: heap span or own mapping */
int pool_error(const mp_pool *pool, int code); /* count + remember, returns code */
void pool_account_large(mp_pool *pool, int64_t requested, int64_t rounded, int call, int kind);
mp_heap *pool_heap_for(mp_pool *pool, size_t size);
void pool_lock_all(mp_pool *pool);
void pool_unlock_all(mp_pool *pool);

/* ---- purge.c ------------------------------------------------------------ */
/* Free resident bytes the pool keeps when fresh pages raise resident above
 * its peak: without it a loop whose live memory peaks at the same height
 * every step gives back, and re-faults, the holes it reuses (the README's
 * "Holes never raise the peak" has the measurements behind the value). */
#ifndef MP_PEAK_SLACK_BYTES
#define MP_PEAK_SLACK_BYTES ((uint64_t)8 << 20)
#endif
void purge_init(mp_pool *pool);
void purge_stop(mp_pool *pool);
void purge_reinit(mp_pool *pool);
void purge_after_free(mp_pool *pool); /* lock held */

/* ---- debug.c ------------------------------------------------------------ */
int debug_init(mp_pool *pool);
void debug_destroy(mp_pool *pool);
void debug_reinit_lock(mp_pool *pool);
int debug_canary_check(mp_pool *pool, const char *ptr, uint64_t requested, uint64_t bytes,
                       int cls);
void debug_canary_set(char *ptr, uint64_t requested);
void debug_small_fresh(mp_pool *pool, mp_slab *slab, char *ptr, size_t size, int call);
int debug_small_freed(mp_pool *pool, mp_slab *slab, char *ptr, uint32_t requested);
void debug_large_fresh(char *ptr, size_t size, int call);
int debug_large_freed(mp_pool *pool, char *ptr, uint64_t requested, uint64_t bytes, int cls);
void debug_resized(mp_pool *pool, char *ptr, uint64_t old_req, uint64_t new_req,
                   uint64_t bytes, int cls);
size_t debug_check_pool(mp_pool *pool);

/* ---- layers.c ------------------------------------------------------------ */
void layers_fill(const mp_pool *pool, mp_stats *out, uint64_t large_live); /* lock held */

/* ---- buffer.c ------------------------------------------------------------ */
void buffer_table_destroy(mp_pool *pool); /* pool teardown: the table only */
size_t buffer_check(const mp_pool *pool); /* lock held */

#endif /* MEMPOOL_POOL_H */
