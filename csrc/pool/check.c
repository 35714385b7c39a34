/*
 * check.c - mp_pool_check: walk every structure, count broken invariants,
 * and name the first ones found.
 *
 * Compiled in every build (a checker that only exists in checked builds is a
 * checker nobody runs).  It cross-checks three views of the same memory: the
 * heaps' physical walk, the slabs' block states, and the counters kept on the
 * fast path.  The counter cross-checks are exact when no other thread is
 * allocating meanwhile: other threads' caches change without a lock, so
 * those cross-checks run only when the caller is the only thread with one
 * (a thread takes its cache before it writes a block state; one that could
 * get none is counted in flight meanwhile: tc_cacheless).
 */
#include "pool.h"

#include <stddef.h>

typedef struct class_tally {
    uint64_t slabs, blocks, live_blocks, live_bytes, cached;
} class_tally;

/* Check every slab of the page heap; fill per-class tallies. */
static void check_slabs(const mp_pool *pool, class_tally *tally, mp_check_log *log) {
    const mp_small *s = &pool->small;
    HEAP_FOREACH_ARENA(s->pages, arena) {
        ARENA_FOREACH_SPAN(arena, span) {
            /* the address map's page table names a slab page's slab, and
             * no other page of the heap (the fast free path trusts it) */
            const void *want = span->kind == MP_SPAN_SLAB
                                   ? atomic_load_explicit(&span->slab, memory_order_relaxed)
                                   : NULL;
            bool tags_ok = true;
            for (uint32_t p = 0; p < span->npages; p++)
                tags_ok &= slab_at(pool, span_addr(span) + ((size_t)p << MP_PAGE_SHIFT)) == want;
            check_fail(log, !tags_ok, "map: a page's tag is not the slab of its span");
            if (span->kind != MP_SPAN_SLAB)
                continue;
            const mp_slab *slab = atomic_load_explicit(&span->slab, memory_order_relaxed);
            if (slab == NULL || slab->cls >= s->class_count || slab->span != span ||
                slab->start != span_addr(span)) {
                check_fail(log, 1, "slab: a slab span whose slab does not point back at it");
                continue;
            }
            class_tally *t = &tally[slab->cls];
            t->slabs++;
            t->blocks += slab->nblocks;
            slab_check(s, slab, log, &t->live_blocks, &t->live_bytes, &t->cached);
        }
    }
    for (unsigned cls = 0; cls < s->class_count; cls++)
        mesh_check(s, cls, log); /* meshed groups: members' occupancy disjoint */
}

/* Sum of a per-class counter over the uncached counters and every cache. */
static int64_t class_sum(const mp_small *s, size_t offset, unsigned cls) {
    const mp_counter *c = (const mp_counter *)((const char *)&s->uncached + offset) + cls;
    int64_t v = ctr_get(c);
    LIST_FOREACH(tc, &s->tcaches, const mp_tcache, link)
        v += ctr_get((const mp_counter *)((const char *)&tc->counters + offset) + cls);
    return v;
}

/* Large spans and direct mappings against the pool's large-block counters
 * and its resident and reserved figures. */
static void check_large(const mp_pool *pool, mp_check_log *log) {
    uint64_t requested = 0, rounded = 0, resident = 0, reserved = 0;
    for (int h = 0; h < MP_HEAP_COUNT; h++) {
        const mp_heap *heap = &pool->heaps[h];
        HEAP_FOREACH_ARENA(heap, arena) {
            resident += arena->dirty_count << heap->granule_shift;
            reserved += arena->region.size;
            ARENA_FOREACH_SPAN(arena, span) {
                if (span->kind == MP_SPAN_LARGE) {
                    requested += span->requested;
                    rounded += span_bytes(span);
                }
            }
        }
    }
    uint64_t directs = 0;
    LIST_FOREACH(d, &pool->directs, const mp_direct, link) {
        requested += d->requested;
        rounded += d->region.size;
        resident += d->region.size;
        reserved += d->region.size;
        check_fail(log, map_lookup(d->region.base) != &d->region,
                   "pool: a direct block is not in the address map");
        directs++;
    }
    const mp_large_counters *large = &pool->large;
    const mp_acct *acct = &pool->acct;
    check_fail(log, directs != pool->direct_count, "pool: direct block count");
    check_fail(log, requested != (uint64_t)large->live_bytes,
               "pool: large live bytes differ from the large blocks' requests");
    check_fail(log, rounded != (uint64_t)large->allocated_bytes,
               "pool: large allocated bytes differ from the large blocks' spans");
    check_fail(log, resident != acct->resident, "pool: resident bytes differ from the dirty granules");
    check_fail(log, reserved != acct->reserved, "pool: reserved bytes differ from the regions");
    check_fail(log, acct->resident > acct->peak_resident, "pool: resident above its peak");
}

/* The thread caches: each cached block is free and of its bin's class; and,
 * when the caller is the only thread with a cache, the counters against the
 * tallies of the slab walk. */
static void check_caches(const mp_pool *pool, class_tally *tally, mp_check_log *log) {
    const mp_small *s = &pool->small;
    /* Other threads' caches change without any lock: their counters can be
     * cross-checked only when the caller is the only thread with a cache and
     * no thread without one is midway through a call (tc_cacheless). */
    bool exclusive = s->cacheless_calls == 0;
    LIST_FOREACH(tc, &s->tcaches, const mp_tcache, link)
        exclusive &= pthread_equal(tc->owner, pthread_self()) != 0;
    uint64_t caches = 0;
    LIST_FOREACH(tc, &s->tcaches, const mp_tcache, link) {
        caches++;
        if (!exclusive)
            continue;
        for (unsigned cls = 0; cls < s->class_count; cls++) {
            const mp_tcache_bin *bin = &tc->bins[cls];
            uint32_t count = tc_bin_count(bin);
            check_fail(log, bin->top < bin->entries || count > bin->cap ||
                                bin->end != bin->entries + bin->cap,
                       "cache: a bin holds more than its capacity");
            tally[cls].cached -= count;
            for (uint32_t i = 0; i < count && i < bin->cap; i++) {
                const mp_tcache_entry *e = &bin->entries[i];
                const mp_slab *slab = slab_at(pool, e->ptr);
                uint64_t off = slab ? (uint64_t)(e->ptr - slab->start) : 0;
                uint32_t idx = slab ? sc_index(off, slab->magic) : 0;
                check_fail(log, slab == NULL || slab->cls != cls || idx >= slab->nblocks ||
                                    (uint64_t)idx * slab->block_size != off ||
                                    e->state != &slab->state[idx] ||
                                    atomic_load_explicit(e->state, memory_order_relaxed) !=
                                        MP_BLOCK_FREE,
                           "cache: a cached block is not a free block of the bin's class");
            }
        }
    }
    check_fail(log, caches != s->tcache_count, "cache: thread cache count");
    for (unsigned cls = 0; cls < s->class_count; cls++) {
        const mp_class *c = &s->classes[cls];
        check_fail(log, tally[cls].slabs != (uint64_t)ctr_get(&c->slabs), "class: slab count");
        check_fail(log, tally[cls].blocks != (uint64_t)ctr_get(&c->blocks), "class: block count");
        if (!exclusive)
            continue;
        check_fail(log, tally[cls].cached != 0,
                   "class: a free block is in neither its slab's stack nor a cache");
        check_fail(log, (int64_t)tally[cls].live_blocks !=
                            class_sum(s, offsetof(mp_counters, class_allocs), cls) -
                                class_sum(s, offsetof(mp_counters, class_frees), cls),
                   "class: live blocks differ from the counters");
        check_fail(log, (int64_t)tally[cls].live_bytes !=
                            class_sum(s, offsetof(mp_counters, class_live_bytes), cls),
                   "class: live bytes differ from the counters");
    }
}

size_t mp_pool_check_named(mp_pool *pool, const char **what, size_t max, size_t *named) {
    mp_check_log log = {0};
    if (pool == NULL) {
        check_fail(&log, 1, "pool: NULL");
    } else {
        class_tally tally[MP_MAX_CLASSES] = {{0}};
        pool_lock_all(pool);
        for (int h = 0; h < MP_HEAP_COUNT; h++)
            heap_check(&pool->heaps[h], &log);
        check_fail(&log, buffer_check(pool), "buffer: the table disagrees with its spans");
        check_slabs(pool, tally, &log);
        check_large(pool, &log);
        /* debug mode: canaries of live blocks */
        check_fail(&log, debug_check_pool(pool), "debug: a live block's canary is broken");
        check_caches(pool, tally, &log);
        pool_unlock_all(pool);
    }
    size_t n = 0;
    for (; what && n < max && n < log.named; n++)
        what[n] = log.what[n];
    if (named)
        *named = n;
    return log.bad;
}

size_t mp_pool_check(mp_pool *pool) { return mp_pool_check_named(pool, NULL, 0, NULL); }
