/*
 * realloc.c - mp_realloc.
 *
 * realloc keeps a block where it is whenever it can: a small block whose new
 * size stays in its class, a large span that shrinks or grows into a free
 * successor, a direct mapping resized by mremap.  Only otherwise does it
 * allocate, copy and free, and a failed move leaves the old block live.
 */
#include "front.h"

#include <string.h>

/* Count one successful mp_realloc (of any block: per thread, lock-free). */
static void count_realloc(mp_pool *pool) {
    mp_tcache *tc = tc_get(&pool->small);
    ctr_add(&tc_counters_take(&pool->small, tc)->realloc_count, 1);
    tc_counters_put(&pool->small, tc, 0);
}

/* Allocate, copy, free: the general case.  NULL leaves ptr live. */
static void *realloc_move(mp_pool *pool, void *ptr, size_t old_requested, size_t new_size) {
    void *moved = alloc_any(pool, new_size, MP_MIN_ALIGN, CALL_INTERNAL);
    if (moved == NULL)
        return NULL;
    memcpy(moved, ptr, old_requested < new_size ? old_requested : new_size);
    alloc_free_any(pool, ptr, 0, CALL_INTERNAL);
    count_realloc(pool);
    return moved;
}

/* Resize a small block inside its class, or move it. */
static void *realloc_small(mp_pool *pool, mp_slab *slab, void *ptr, size_t old_size,
                           size_t new_size) {
    uint32_t idx, state;
    int rc = slab_locate(slab, ptr, old_size, &idx, &state);
    if (rc != MP_OK) {
        pool_error(pool, rc);
        return NULL;
    }
    if (new_size > pool_small_limit(pool) || sc_of(new_size + pool_pad(pool)) != slab->cls)
        return realloc_move(pool, ptr, state, new_size);
    /* The cache before the state word, as small_free does (alloc.c). */
    mp_tcache *tc = tc_get(&pool->small);
    if (MP_UNLIKELY(tc == NULL))
        tc_cacheless(&pool->small, 1);
    bool resized = atomic_compare_exchange_strong_explicit(
        &slab->state[idx], &state, (uint32_t)new_size, memory_order_relaxed, memory_order_relaxed);
    if (resized) {
        if (MP_UNLIKELY(pool->config.debug))
            debug_resized(pool, ptr, state, new_size, slab->block_size, slab->cls);
        mp_asan_live(ptr, new_size, slab->block_size);
        int64_t delta = (int64_t)new_size - (int64_t)state;
        mp_counters *ctr = tc_counters_take(&pool->small, tc);
        ctr_add(&ctr->class_live_bytes[slab->cls], delta);
        ctr_add(&ctr->realloc_count, 1);
        tc_counters_put(&pool->small, tc, delta);
    }
    if (MP_UNLIKELY(tc == NULL))
        tc_cacheless(&pool->small, -1);
    if (!resized) {
        pool_error(pool, MP_EDOUBLEFREE);
        return NULL;
    }
    return ptr;
}

/* Resize a large span in place when the new size stays in its heap, or move. */
static void *realloc_large(mp_pool *pool, mp_arena *arena, void *ptr, size_t old_size,
                           size_t new_size) {
    mp_heap *heap = arena->heap;
    mutex_lock(&pool->lock);
    mp_span *span;
    int rc = resolve_large(arena, ptr, old_size, &span);
    if (rc != MP_OK) {
        mutex_unlock(&pool->lock);
        pool_error(pool, rc);
        return NULL;
    }
    size_t old_requested = span->requested;
    size_t want = new_size + pool_pad(pool); /* <= MP_MAX_REQUEST + 8 */
    size_t need = MP_ALIGN_UP(want ? want : 1, (size_t)1 << heap->granule_shift);
    if (new_size > pool_small_limit(pool) && pool_heap_for(pool, new_size) == heap &&
        need <= pool->config.arena_bytes) {
        size_t npages = need >> heap->granule_shift, old_bytes = span_bytes(span);
        uint32_t clean;
        bool in_place = true, checked = false;
        if (npages < span->npages) {
            /* The canary first: the cut-off tail may be purged to zeros. */
            if (MP_UNLIKELY(pool->config.debug)) {
                debug_canary_check(pool, ptr, old_requested, old_bytes, -1);
                checked = true;
            }
            heap_shrink_in_place(heap, span, npages, os_now_ms());
            purge_after_free(pool);
        } else if (npages > span->npages) {
            uint64_t peak = pool->acct.peak_resident;
            in_place = heap_grow_in_place(heap, span, npages, &clean);
            if (in_place && clean != 0)
                acct_after_growth(&pool->acct, peak);
        }
        if (in_place) {
            /* Under the lock: a shrunk tail is free to other threads once
             * it is unlocked, so it is poisoned before. */
            if (MP_UNLIKELY(pool->config.debug)) {
                if (!checked)
                    debug_canary_check(pool, ptr, old_requested, old_bytes, -1);
                debug_canary_set(ptr, new_size);
            }
            mp_asan_live(ptr, new_size, old_bytes > span_bytes(span) ? old_bytes : span_bytes(span));
            span->requested = new_size;
            pool_account_large(pool, (int64_t)new_size - (int64_t)old_requested,
                               (int64_t)span_bytes(span) - (int64_t)old_bytes, CALL_INTERNAL,
                               LARGE_SPAN);
            acct_live(&pool->acct, (int64_t)new_size - (int64_t)old_requested);
            mutex_unlock(&pool->lock);
            count_realloc(pool);
            return ptr;
        }
    }
    mutex_unlock(&pool->lock);
    return realloc_move(pool, ptr, old_requested, new_size);
}

/* Resize a direct mapping with mremap while it stays above the arena size. */
static void *realloc_direct(mp_pool *pool, mp_direct *d, void *ptr, size_t old_size,
                            size_t new_size) {
    mutex_lock(&pool->lock);
    int rc = resolve_direct(d, ptr, old_size);
    if (rc != MP_OK) {
        mutex_unlock(&pool->lock);
        pool_error(pool, rc);
        return NULL;
    }
    size_t old_requested = d->requested, old_bytes = d->region.size;
    size_t new_bytes = MP_ALIGN_UP(new_size + pool_pad(pool), MP_CHUNK_SIZE);
    if (new_size <= pool->config.arena_bytes || new_bytes < new_size) {
        mutex_unlock(&pool->lock);
        return realloc_move(pool, ptr, old_requested, new_size);
    }
    if (MP_UNLIKELY(pool->config.debug)) /* before mremap may cut it off */
        debug_canary_check(pool, ptr, old_requested, old_bytes, -2);
    if (new_bytes > old_bytes) {
        if ((pool->acct.capacity &&
             pool->acct.reserved + (new_bytes - old_bytes) > pool->acct.capacity) ||
            acct_over_limit(&pool->acct, new_bytes - old_bytes)) {
            mutex_unlock(&pool->lock);
            pool_error(pool, MP_ENOMEM);
            return NULL;
        }
        map_remove(&d->region);
        char *grown = os_remap_grow(&pool->acct.os, d->region.base, old_bytes, new_bytes, MP_CHUNK_SIZE);
        if (grown == NULL) {
            map_insert(&d->region); /* cannot fail: its leaves exist */
            mutex_unlock(&pool->lock);
            pool_error(pool, MP_ENOMEM);
            return NULL;
        }
        d->region.base = grown;
    } else if (new_bytes < old_bytes) {
        if (os_remap_shrink(&pool->acct.os, d->region.base, old_bytes, new_bytes) != 0) {
            mutex_unlock(&pool->lock);
            return realloc_move(pool, ptr, old_requested, new_size);
        }
        map_remove(&d->region);
        pool->acct.released += old_bytes - new_bytes;
    }
    d->region.size = new_bytes;
    /* Only a failed calloc of a map leaf can make this fail; the block then
     * stays live but unknown to mp_free, which reports it as foreign. */
    if (new_bytes != old_bytes)
        map_insert(&d->region);
    pool->acct.reserved += new_bytes - old_bytes;
    uint64_t peak = pool->acct.peak_resident;
    acct_resident(&pool->acct, (int64_t)new_bytes - (int64_t)old_bytes);
    acct_after_growth(&pool->acct, peak);
    d->requested = new_size;
    if (MP_UNLIKELY(pool->config.debug))
        debug_canary_set(d->region.base, new_size);
    mp_asan_live(d->region.base, new_size, new_bytes);
    pool_account_large(pool, (int64_t)new_size - (int64_t)old_requested,
                       (int64_t)new_bytes - (int64_t)old_bytes, CALL_INTERNAL, LARGE_DIRECT);
    acct_live(&pool->acct, (int64_t)new_size - (int64_t)old_requested);
    mutex_unlock(&pool->lock);
    count_realloc(pool);
    return d->region.base;
}

void *mp_realloc(mp_pool *pool, void *ptr, size_t old_size, size_t new_size) {
    if (pool == NULL) {
        pool_error(NULL, MP_EINVAL);
        return NULL;
    }
    if (new_size > MP_MAX_REQUEST) {
        pool_error(pool, MP_ESIZE);
        return NULL;
    }
    if (ptr == NULL) {
        void *fresh = alloc_any(pool, new_size, MP_MIN_ALIGN, CALL_ALLOC);
        if (fresh)
            count_realloc(pool);
        return fresh;
    }
    mp_region *region;
    mp_slab *slab;
    if (resolve_region(pool, ptr, &region, &slab) != MP_OK) {
        pool_error(pool, resolve_foreign(pool, ptr));
        return NULL;
    }
    if (slab)
        return realloc_small(pool, slab, ptr, old_size, new_size);
    if (region->kind == MP_REGION_DIRECT)
        return realloc_direct(pool, (mp_direct *)region, ptr, old_size, new_size);
    return realloc_large(pool, (mp_arena *)region, ptr, old_size, new_size);
}

