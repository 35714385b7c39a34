/*
 * check.c - mp_pool_check: walk every structure, count broken invariants.
 *
 * Compiled in every build (a checker that only exists in debug builds is a
 * checker nobody runs).  It cross-checks three views of the same memory: the
 * heaps' physical walk, the slabs' block states, and the counters kept on the
 * fast path.  The counter cross-checks are exact when no other thread is
 * allocating meanwhile: other threads' caches change without a lock, so
 * those cross-checks run only when the caller is the only thread with one.
 */
#include "debug.h"

#include <stddef.h>

typedef struct class_tally {
    uint64_t slabs, blocks, live_blocks, live_bytes, cached;
} class_tally;

/* Check every slab of the page heap; fill per-class tallies. */
static size_t check_slabs(const mp_pool *pool, class_tally *tally) {
    size_t bad = 0;
    for (const mp_arena *arena = pool->heaps[MP_HEAP_PAGES].arenas; arena; arena = arena->next) {
        for (uint32_t page = 0; page < arena->npages;) {
            const mp_span *span = &arena->spans[page];
            if (span->npages == 0)
                return bad + 1; /* heap_check reports the details */
            if (span->kind == MP_SPAN_SLAB) {
                const mp_slab *slab = atomic_load_explicit(&((mp_span *)span)->slab,
                                                           memory_order_relaxed);
                if (slab == NULL || slab->cls >= pool->class_count || slab->span != span ||
                    slab->start != span_addr(span)) {
                    bad++;
                } else {
                    class_tally *t = &tally[slab->cls];
                    t->slabs++;
                    t->blocks += slab->nblocks;
                    bad += slab_check(pool, slab, &t->live_blocks, &t->live_bytes, &t->cached);
                }
            }
            page += span->npages;
        }
    }
    return bad;
}

/* Sum of a per-class counter over the central counters and every cache. */
static int64_t class_sum(const mp_pool *pool, size_t offset, unsigned cls) {
    const mp_counter *c = (const mp_counter *)((const char *)&pool->central + offset) + cls;
    int64_t v = ctr_get(c);
    for (const mp_tcache *tc = pool->tcaches; tc; tc = tc->next)
        v += ctr_get((const mp_counter *)((const char *)&tc->counters + offset) + cls);
    return v;
}

/* Large spans and direct mappings against the central counters and the
 * pool's resident and reserved figures. */
static size_t check_large(const mp_pool *pool) {
    size_t bad = 0;
    uint64_t requested = 0, rounded = 0, resident = 0, reserved = 0;
    for (int h = 0; h < MP_HEAP_COUNT; h++) {
        const mp_heap *heap = &pool->heaps[h];
        for (const mp_arena *arena = heap->arenas; arena; arena = arena->next) {
            resident += arena->dirty_count << heap->granule_shift;
            reserved += arena->region.size;
            for (uint32_t page = 0; page < arena->npages;) {
                const mp_span *span = &arena->spans[page];
                if (span->npages == 0)
                    return bad + 1;
                if (span->kind == MP_SPAN_LARGE) {
                    requested += span->requested;
                    rounded += span_bytes(span);
                }
                page += span->npages;
            }
        }
    }
    uint64_t directs = 0;
    for (const mp_direct *d = pool->directs; d; d = d->next) {
        requested += d->requested;
        rounded += d->region.size;
        resident += d->region.size;
        reserved += d->region.size;
        bad += map_lookup(d->region.base) != &d->region;
        directs++;
    }
    bad += directs != pool->direct_count;
    bad += requested != (uint64_t)ctr_get(&pool->central.live_bytes);
    bad += rounded != (uint64_t)ctr_get(&pool->central.allocated_bytes);
    bad += resident != pool->resident_bytes;
    bad += reserved != pool->reserved_bytes;
    bad += pool->resident_bytes > pool->peak_resident_bytes;
    return bad;
}

size_t mp_pool_check(mp_pool *pool) {
    if (pool == NULL)
        return 1;
    class_tally tally[MP_MAX_CLASSES] = {{0}};
    pool_lock_all(pool);
    size_t bad = 0;
    for (int h = 0; h < MP_HEAP_COUNT; h++)
        bad += heap_check(&pool->heaps[h]);
    bad += buffers_check(pool);
    bad += check_slabs(pool, tally);
    bad += check_large(pool);
    bad += debug_check_pool(pool); /* debug mode: canaries of live blocks */
    /* Other threads' caches change without any lock: their counters can be
     * cross-checked only when the caller is the only thread with a cache. */
    bool exclusive = true;
    for (const mp_tcache *tc = pool->tcaches; tc; tc = tc->next)
        exclusive &= pthread_equal(tc->owner, pthread_self()) != 0;
    uint64_t caches = 0;
    for (const mp_tcache *tc = pool->tcaches; tc; tc = tc->next) {
        caches++;
        if (!exclusive)
            continue;
        for (unsigned cls = 0; cls < pool->class_count; cls++) {
            const mp_tcache_bin *bin = &tc->bins[cls];
            bad += bin->count > bin->cap;
            tally[cls].cached -= bin->count;
            for (uint32_t i = 0; i < bin->count && i < bin->cap; i++) {
                const mp_slab *slab = bin->entries[i].slab;
                uint64_t off = (uint64_t)(bin->entries[i].ptr - slab->start);
                uint32_t idx = sc_index(off, slab->magic);
                bad += slab->cls != cls || idx >= slab->nblocks ||
                       atomic_load_explicit(&slab->state[idx], memory_order_relaxed) !=
                           MP_BLOCK_FREE;
            }
        }
    }
    bad += caches != pool->tcache_count;
    for (unsigned cls = 0; cls < pool->class_count; cls++) {
        const mp_class *c = &pool->classes[cls];
        bad += tally[cls].slabs != (uint64_t)ctr_get(&c->slabs);
        bad += tally[cls].blocks != (uint64_t)ctr_get(&c->blocks);
        if (!exclusive)
            continue;
        bad += tally[cls].cached != 0; /* every free block outside a stack is cached */
        bad += (int64_t)tally[cls].live_blocks !=
               class_sum(pool, offsetof(mp_counters, class_live_blocks), cls);
        bad += (int64_t)tally[cls].live_bytes !=
               class_sum(pool, offsetof(mp_counters, class_live_bytes), cls);
    }
    pool_unlock_all(pool);
    return bad;
}
