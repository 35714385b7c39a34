/*
 * debug.c - debug mode: fill patterns, tail canaries, write-after-free
 * checks, and the ring of corruption reports (see mempool.h "debug mode").
 *
 * Everything here runs only when pool->config.debug is set; the fast paths
 * pay one predictable branch to get here.  In debug mode every block is
 * allocated MP_CANARY_BYTES larger than requested (pool_pad()), the
 * canary sits right after the requested bytes, and a small block's bytes
 * read MP_FILL_FREED for as long as it is free: a slab is filled when it is
 * made (slab.c) and each block again when it is freed, and neither a purge nor any
 * metadata ever touches a live slab's memory.  Large freed spans are merged,
 * split and purged (zeros), so their content is not checked on reuse.
 *
 * Under ASan the checks unpoison what they read or write; the callers then
 * re-poison (base.h's MP_POISON), so nothing here changes what ASan sees.
 * Findings go to pool_error(MP_ECORRUPT) and the report ring; never to a
 * stream.
 */
#include "pool.h"

#include <stdlib.h>
#include <string.h>

/* 1: debug mode for every pool, whatever its config.  Not a check level:
 * debug mode is a pool's run-time setting (fill patterns, canaries, reports);
 * MP_CHECK_LEVEL (base.h) grades the core's own assertions. */
#ifndef MP_DEBUG_MODE_ALWAYS
#define MP_DEBUG_MODE_ALWAYS 0
#endif

/* The canary: not a repeated byte, so a run of one value (a fill, a zeroed
 * tail, a memset overrun) cannot pass for it. */
static const unsigned char CANARY[MP_CANARY_BYTES] = {0xC5, 0x3A, 0x96, 0x69,
                                                      0xA5, 0x5A, 0xF0, 0x0F};
_Static_assert(MP_CANARY_BYTES == 8, "CANARY has 8 bytes");

typedef struct mp_debug mp_debug;
struct mp_debug {
    mp_mutex lock; /* a leaf: no other lock is taken while held */
    mp_corruption_report ring[MP_DEBUG_REPORTS];
    unsigned head, count;
    _Atomic size_t pending; /* == count, readable without the lock */
};

/* Set up debug mode for a new pool (config normalised); MP_ENOMEM if the
 * report ring cannot be allocated. */
int debug_init(mp_pool *pool) {
    if (MP_DEBUG_MODE_ALWAYS)
        pool->config.debug = 1;
    pool->config.debug = pool->config.debug != 0; /* pool_pad() relies on it */
    if (!pool->config.debug)
        return MP_OK;
    pool->dbg = calloc(1, sizeof *pool->dbg);
    if (pool->dbg == NULL)
        return MP_ENOMEM;
    mutex_init(&pool->dbg->lock, MP_RANK_DEBUG, 0);
    pool->acct.metadata += sizeof *pool->dbg;
    return MP_OK;
}

/* Free the report ring (pool teardown). */
void debug_destroy(mp_pool *pool) {
    if (pool->dbg) {
        mutex_destroy(&pool->dbg->lock);
        free(pool->dbg);
        pool->dbg = NULL;
    }
}

/* In a forked child: the ring's lock may have been held by a vanished thread. */
void debug_reinit_lock(mp_pool *pool) {
    if (pool->dbg)
        mutex_init(&pool->dbg->lock, MP_RANK_DEBUG, 0);
}

size_t mp_debug_reports(mp_pool *pool, mp_corruption_report *out, size_t max) {
    if (pool == NULL || pool->dbg == NULL)
        return 0;
    mp_debug *d = pool->dbg;
    if (out == NULL || max == 0)
        return atomic_load_explicit(&d->pending, memory_order_relaxed);
    mutex_lock(&d->lock);
    size_t n = 0;
    while (n < max && d->count > 0) {
        out[n++] = d->ring[d->head];
        d->head = (d->head + 1) % MP_DEBUG_REPORTS;
        d->count--;
    }
    atomic_store_explicit(&d->pending, d->count, memory_order_relaxed);
    mutex_unlock(&d->lock);
    return n;
}

/* Count an MP_ECORRUPT and describe the block in the ring (dropped, but
 * still counted, when the ring is full: the first reports say the most). */
static MP_COLD int report(mp_pool *pool, int kind, const char *ptr, uint64_t requested,
                          uint64_t bytes, int cls, uint64_t bad_offset) {
    mp_region *region = map_lookup(ptr);
    mp_corruption_report r = {
        .address = (uintptr_t)ptr,
        .requested = requested,
        .block_bytes = bytes,
        .region_base = region ? (uintptr_t)region->base : 0,
        .offset = region ? (uint64_t)(ptr - region->base) : 0,
        .bad_offset = bad_offset,
        .size_class = cls,
        .kind = kind,
    };
    mp_debug *d = pool->dbg;
    if (d) {
        mutex_lock(&d->lock);
        if (d->count < MP_DEBUG_REPORTS) {
            d->ring[(d->head + d->count) % MP_DEBUG_REPORTS] = r;
            d->count++;
            atomic_store_explicit(&d->pending, d->count, memory_order_relaxed);
        }
        mutex_unlock(&d->lock);
    }
    return pool_error(pool, MP_ECORRUPT);
}

/* Index of the first of n bytes at p that is not `byte`, or n. */
static size_t find_not(const unsigned char *p, unsigned char byte, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (p[i] != byte)
            return i;
    return n;
}

/* Write the canary after `requested` bytes (left poisoned under ASan). */
void debug_canary_set(char *ptr, uint64_t requested) {
    MP_UNPOISON(ptr + requested, MP_CANARY_BYTES);
    memcpy(ptr + requested, CANARY, MP_CANARY_BYTES);
    MP_POISON(ptr + requested, MP_CANARY_BYTES);
}

/* MP_OK when the canary after `requested` bytes is intact; otherwise report
 * the block and return MP_ECORRUPT. */
int debug_canary_check(mp_pool *pool, const char *ptr, uint64_t requested, uint64_t bytes,
                       int cls) {
    const unsigned char *c = (const unsigned char *)ptr + requested;
    MP_UNPOISON(c, MP_CANARY_BYTES);
    size_t i = 0;
    while (i < MP_CANARY_BYTES && c[i] == CANARY[i])
        i++;
    MP_POISON(c, MP_CANARY_BYTES);
    if (MP_LIKELY(i == MP_CANARY_BYTES))
        return MP_OK;
    return report(pool, MP_CORRUPT_CANARY, ptr, requested, bytes, cls, requested + i);
}

/* A free small block about to be handed out for `size` bytes: check that
 * its 0xDF fill is intact, fill it 0xAB (calloc: the caller zeroes it),
 * write the canary.  Leaves the whole block unpoisoned. */
void debug_small_fresh(mp_pool *pool, mp_slab *slab, char *ptr, size_t size, int call) {
    MP_UNPOISON(ptr, slab->block_size);
    size_t bad = find_not((const unsigned char *)ptr, MP_FILL_FREED, slab->block_size);
    if (bad != slab->block_size)
        report(pool, MP_CORRUPT_FREED, ptr, size, slab->block_size, slab->cls, bad);
    if (call != CALL_CALLOC)
        memset(ptr, MP_FILL_FRESH, slab->block_size);
    debug_canary_set(ptr, size);
}

/* A live small block of `requested` bytes being freed: check its canary,
 * fill it 0xDF.  MP_ECORRUPT (reported) when the canary was broken. */
int debug_small_freed(mp_pool *pool, mp_slab *slab, char *ptr, uint32_t requested) {
    int rc = debug_canary_check(pool, ptr, requested, slab->block_size, slab->cls);
    MP_UNPOISON(ptr, slab->block_size);
    memset(ptr, MP_FILL_FREED, slab->block_size);
    return rc;
}

/* A fresh large block or mapping of `size` bytes: fill 0xAB (not for
 * calloc) and write the canary.  The first `size` bytes are unpoisoned. */
void debug_large_fresh(char *ptr, size_t size, int call) {
    MP_UNPOISON(ptr, size);
    if (call != CALL_CALLOC)
        memset(ptr, MP_FILL_FRESH, size);
    debug_canary_set(ptr, size);
}

/* A live large block being freed: check its canary, fill 0xDF. */
int debug_large_freed(mp_pool *pool, char *ptr, uint64_t requested, uint64_t bytes, int cls) {
    int rc = debug_canary_check(pool, ptr, requested, bytes, cls);
    MP_UNPOISON(ptr, requested);
    memset(ptr, MP_FILL_FREED, requested);
    return rc;
}

/* A live block resized in place from old_req to new_req bytes: check the
 * old canary (reported when broken), write the new one. */
void debug_resized(mp_pool *pool, char *ptr, uint64_t old_req, uint64_t new_req,
                   uint64_t bytes, int cls) {
    debug_canary_check(pool, ptr, old_req, bytes, cls);
    debug_canary_set(ptr, new_req);
}

/* Canaries of every live block of the pool; the number broken (each one
 * reported).  Locks held (pool_lock_all); exact only while no other thread
 * allocates, like the rest of mp_pool_check. */
size_t debug_check_pool(mp_pool *pool) {
    if (!pool->config.debug)
        return 0;
    size_t bad = 0;
    for (int h = 0; h < MP_HEAP_COUNT; h++) {
        HEAP_FOREACH_ARENA(&pool->heaps[h], arena) {
            ARENA_FOREACH_SPAN(arena, span) {
                if (span->kind == MP_SPAN_SLAB) {
                    mp_slab *slab = atomic_load_explicit(&span->slab, memory_order_relaxed);
                    for (uint32_t i = 0; slab && i < slab->nblocks; i++) {
                        uint32_t st = atomic_load_explicit(&slab->state[i], memory_order_relaxed);
                        if (st != MP_BLOCK_FREE && st != MP_BLOCK_CACHED)
                            bad += debug_canary_check(pool, slab->start + (size_t)i * slab->block_size,
                                                      st, slab->block_size, slab->cls) != MP_OK;
                    }
                } else if (span->kind == MP_SPAN_LARGE && !span->movable) {
                    bad += debug_canary_check(pool, span_addr(span), span->requested,
                                              span_bytes(span), -1) != MP_OK;
                }
            }
        }
    }
    LIST_FOREACH(d, &pool->directs, mp_direct, link)
        bad += debug_canary_check(pool, d->region.base, d->requested, d->region.size, -2) != MP_OK;
    return bad;
}
