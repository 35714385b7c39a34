/*
 * span_helpers.h - for the C tests that drive a pool's heaps by hand
 * (test_heap.c, test_decay.c): a pool with no purger and no decay of its
 * own, and spans taken from and given back to its page heap under the pool
 * lock, accounted as the core's large path does (so mp_pool_check's counter
 * cross-checks hold).  Header-only.
 */
#ifndef MEMPOOL_SPAN_HELPERS_H
#define MEMPOOL_SPAN_HELPERS_H

#include "front/front.h"
#include "test.h"

#include <stdint.h>
#include <string.h>

/* A pool whose heaps we drive by hand: no purger, no decay on its own,
 * arenas of `arena_bytes`. */
static inline mp_pool *span_pool_with(size_t arena_bytes, int huge_pages, size_t huge_min)
{
    mp_config cfg;
    mp_config_default(&cfg);
    cfg.background_purge = 0;
    cfg.decay_ms = -1;
    cfg.arena_bytes = arena_bytes;
    cfg.huge_pages = huge_pages;
    cfg.huge_min = huge_min;
    mp_pool *pool = NULL;
    CHECK(mp_pool_create(&cfg, &pool) == MP_OK);
    return pool;
}

/* A pool whose page heap advises no huge pages (the layouts below are the
 * placement's alone: no extent alignment, no whole-extent purges). */
static inline mp_pool *span_pool_arena(size_t arena_bytes)
{
    return span_pool_with(arena_bytes, MP_HUGE_OFF, 0);
}

/* span_pool_arena with 8 MiB arenas: 2048 granules of 4 KiB. */
static inline mp_pool *span_pool(void)
{
    return span_pool_arena((size_t)8 << 20);
}

/* Allocate npages from the page heap under the pool lock, accounted as the
 * core's large path does (so mp_pool_check's counter cross-checks hold);
 * *clean_out (if given) gets the granules that were clean. */
static inline mp_span *span_take_clean(mp_pool *pool, size_t npages, size_t align_pages,
                           uint32_t *clean_out)
{
    uint32_t clean = 0;
    mutex_lock(&pool->lock);
    mp_span *span = decay_alloc(&pool->heaps[MP_HEAP_PAGES], npages, align_pages, &clean);
    if (span) {
        span->requested = span_bytes(span);
        MP_UNPOISON(span_addr(span), span_bytes(span)); /* ASan: a live block now */
        pool_account_large(pool, (int64_t)span_bytes(span), (int64_t)span_bytes(span),
                           CALL_INTERNAL, LARGE_SPAN);
    }
    mutex_unlock(&pool->lock);
    if (clean_out)
        *clean_out = clean;
    return span;
}

/* span_take_clean without the clean count. */
static inline mp_span *span_take(mp_pool *pool, size_t npages, size_t align_pages)
{
    return span_take_clean(pool, npages, align_pages, NULL);
}

/* Return a span to the page heap at time `now`, with its accounting. */
static inline void span_give(mp_pool *pool, mp_span *span, int64_t now)
{
    mutex_lock(&pool->lock);
    pool_account_large(pool, -(int64_t)span->requested, -(int64_t)span_bytes(span), CALL_INTERNAL,
                       LARGE_SPAN);
    heap_free(&pool->heaps[MP_HEAP_PAGES], span, now);
    mutex_unlock(&pool->lock);
}

#endif /* MEMPOOL_SPAN_HELPERS_H */
