/*
 * resize.c - mp_realloc and the per-block queries (owns, sizes).
 *
 * realloc keeps a block where it is whenever it can: a small block whose new
 * size stays in its class, a large span that shrinks or grows into a free
 * successor, a direct mapping resized by mremap.  Only otherwise does it
 * allocate, copy and free, and a failed move leaves the old block live.
 */
#include "debug.h"
#include "sanitize.h"

#include <string.h>

/* Count one successful mp_realloc. */
static void count_realloc(mp_pool *pool) {
    mp_tcache *tc = tc_get(pool);
    if (tc) {
        ctr_add(&tc->counters.realloc_count, 1);
        return;
    }
    pthread_mutex_lock(&pool->lock);
    ctr_add(&pool->central.realloc_count, 1);
    pthread_mutex_unlock(&pool->lock);
}

/* Allocate, copy, free: the general case.  NULL leaves ptr live. */
static void *realloc_move(mp_pool *pool, void *ptr, size_t old_requested, size_t new_size) {
    void *moved = alloc_routed(pool, new_size, MP_MIN_ALIGN, CALL_INTERNAL);
    if (moved == NULL)
        return NULL;
    memcpy(moved, ptr, old_requested < new_size ? old_requested : new_size);
    free_routed(pool, ptr, 0, CALL_INTERNAL);
    count_realloc(pool);
    return moved;
}

/* Resize a small block inside its class, or move it. */
static void *realloc_small(mp_pool *pool, mp_slab *slab, void *ptr, size_t old_size,
                           size_t new_size) {
    uint32_t idx, state;
    int rc = small_locate(slab, ptr, old_size, &idx, &state);
    if (rc != MP_OK) {
        pool_error(pool, rc);
        return NULL;
    }
    if (new_size > pool_small_limit(pool) || sc_of(new_size + pool_pad(pool)) != slab->cls)
        return realloc_move(pool, ptr, state, new_size);
    if (!atomic_compare_exchange_strong_explicit(&slab->state[idx], &state, (uint32_t)new_size,
                                                 memory_order_relaxed, memory_order_relaxed)) {
        pool_error(pool, MP_EDOUBLEFREE);
        return NULL;
    }
    if (MP_UNLIKELY(pool->config.debug))
        debug_resized(pool, ptr, state, new_size, slab->block_size, slab->cls);
    mp_asan_live(ptr, new_size, slab->block_size);
    int64_t delta = (int64_t)new_size - (int64_t)state;
    mp_tcache *tc = tc_get(pool);
    if (tc) {
        ctr_add(&tc->counters.class_live_bytes[slab->cls], delta);
        tc->unpublished += delta;
    } else {
        pthread_mutex_lock(&pool->lock);
        ctr_add(&pool->central.class_live_bytes[slab->cls], delta);
        pthread_mutex_unlock(&pool->lock);
        pool_note_live(pool, delta);
    }
    count_realloc(pool);
    return ptr;
}

/* Resize a large span in place when the new size stays in its heap, or move. */
static void *realloc_large(mp_pool *pool, mp_arena *arena, void *ptr, size_t old_size,
                           size_t new_size) {
    mp_heap *heap = arena->heap;
    pthread_mutex_lock(&pool->lock);
    mp_span *span;
    int rc = large_locate(arena, ptr, old_size, &span);
    if (rc != MP_OK) {
        pthread_mutex_unlock(&pool->lock);
        pool_error(pool, rc);
        return NULL;
    }
    size_t old_requested = span->requested;
    size_t want = new_size + pool_pad(pool); /* <= MP_MAX_REQUEST + 8 */
    size_t need = MP_ALIGN_UP(want ? want : 1, (size_t)1 << heap->granule_shift);
    if (new_size > pool_small_limit(pool) && heap_for(pool, new_size) == heap &&
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
            after_free_locked(pool);
        } else if (npages > span->npages) {
            in_place = heap_grow_in_place(heap, span, npages, &clean);
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
            large_account(pool, (int64_t)new_size - (int64_t)old_requested,
                          (int64_t)span_bytes(span) - (int64_t)old_bytes, CALL_INTERNAL, NULL);
            pool_note_live(pool, (int64_t)new_size - (int64_t)old_requested);
            ctr_add(&pool->central.realloc_count, 1);
            pthread_mutex_unlock(&pool->lock);
            return ptr;
        }
    }
    pthread_mutex_unlock(&pool->lock);
    return realloc_move(pool, ptr, old_requested, new_size);
}

/* Resize a direct mapping with mremap while it stays above the arena size. */
static void *realloc_direct(mp_pool *pool, mp_direct *d, void *ptr, size_t old_size,
                            size_t new_size) {
    pthread_mutex_lock(&pool->lock);
    if (ptr != d->region.base || (old_size && old_size != d->requested)) {
        pthread_mutex_unlock(&pool->lock);
        pool_error(pool, ptr != d->region.base ? MP_EINTERIOR : MP_ESIZE);
        return NULL;
    }
    size_t old_requested = d->requested, old_bytes = d->region.size;
    size_t new_bytes = MP_ALIGN_UP(new_size + pool_pad(pool), MP_CHUNK_SIZE);
    if (new_size <= pool->config.arena_bytes || new_bytes < new_size) {
        pthread_mutex_unlock(&pool->lock);
        return realloc_move(pool, ptr, old_requested, new_size);
    }
    if (MP_UNLIKELY(pool->config.debug)) /* before mremap may cut it off */
        debug_canary_check(pool, ptr, old_requested, old_bytes, -2);
    if (new_bytes > old_bytes) {
        if (pool->config.capacity &&
            pool->reserved_bytes + (new_bytes - old_bytes) > pool->config.capacity) {
            pthread_mutex_unlock(&pool->lock);
            pool_error(pool, MP_ENOMEM);
            return NULL;
        }
        map_remove(&d->region);
        char *grown = os_remap_grow(pool, d->region.base, old_bytes, new_bytes, MP_CHUNK_SIZE);
        if (grown == NULL) {
            map_insert(&d->region); /* cannot fail: its leaves exist */
            pthread_mutex_unlock(&pool->lock);
            pool_error(pool, MP_ENOMEM);
            return NULL;
        }
        d->region.base = grown;
    } else if (new_bytes < old_bytes) {
        if (os_remap_shrink(pool, d->region.base, old_bytes, new_bytes) != 0) {
            pthread_mutex_unlock(&pool->lock);
            return realloc_move(pool, ptr, old_requested, new_size);
        }
        map_remove(&d->region);
        pool->released_bytes += old_bytes - new_bytes;
    }
    d->region.size = new_bytes;
    /* Only a failed calloc of a map leaf can make this fail; the block then
     * stays live but unknown to mp_free, which reports it as foreign. */
    if (new_bytes != old_bytes)
        map_insert(&d->region);
    pool->reserved_bytes += new_bytes - old_bytes;
    pool_note_resident(pool, (int64_t)new_bytes - (int64_t)old_bytes);
    d->requested = new_size;
    if (MP_UNLIKELY(pool->config.debug))
        debug_canary_set(d->region.base, new_size);
    mp_asan_live(d->region.base, new_size, new_bytes);
    large_account(pool, (int64_t)new_size - (int64_t)old_requested,
                  (int64_t)new_bytes - (int64_t)old_bytes, CALL_INTERNAL, NULL);
    pool_note_live(pool, (int64_t)new_size - (int64_t)old_requested);
    ctr_add(&pool->central.realloc_count, 1);
    pthread_mutex_unlock(&pool->lock);
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
        void *fresh = alloc_routed(pool, new_size, MP_MIN_ALIGN, CALL_ALLOC);
        if (fresh)
            count_realloc(pool);
        return fresh;
    }
    mp_region *region = map_lookup(ptr);
    if (region == NULL || region->pool != pool) {
        pool_error(pool, foreign_or_freed(pool, ptr));
        return NULL;
    }
    if (region->kind == MP_REGION_DIRECT)
        return realloc_direct(pool, (mp_direct *)region, ptr, old_size, new_size);
    mp_arena *arena = (mp_arena *)region;
    uint64_t off = (uint64_t)((char *)ptr - region->base);
    mp_slab *slab = atomic_load_explicit(&arena->spans[off >> arena->heap->granule_shift].slab,
                                         memory_order_acquire);
    if (slab)
        return realloc_small(pool, slab, ptr, old_size, new_size);
    return realloc_large(pool, arena, ptr, old_size, new_size);
}

/* ---- queries ----------------------------------------------------------- */

/* Requested size and bytes taken by the live block at ptr, or an error code. */
static int block_query_raw(const mp_pool *pool_c, const void *ptr, size_t *requested,
                       size_t *usable) {
    mp_pool *pool = (mp_pool *)pool_c;
    if (pool == NULL || ptr == NULL)
        return MP_EINVAL;
    mp_region *region = map_lookup(ptr);
    if (region == NULL || region->pool != pool)
        return MP_EFOREIGN;
    int rc = MP_OK;
    if (region->kind == MP_REGION_ARENA) {
        mp_arena *arena = (mp_arena *)region;
        uint64_t off = (uint64_t)((const char *)ptr - region->base);
        mp_slab *slab = atomic_load_explicit(
            &arena->spans[off >> arena->heap->granule_shift].slab, memory_order_acquire);
        if (slab) {
            uint32_t idx, state;
            rc = small_locate(slab, ptr, 0, &idx, &state);
            *requested = state;
            *usable = slab->block_size;
            return rc;
        }
        pthread_mutex_lock(&pool->lock);
        mp_span *span;
        rc = large_locate(arena, ptr, 0, &span);
        if (rc == MP_OK) {
            *requested = span->requested;
            *usable = span_bytes(span);
        }
        pthread_mutex_unlock(&pool->lock);
        return rc;
    }
    mp_direct *d = (mp_direct *)region;
    pthread_mutex_lock(&pool->lock);
    if (ptr == d->region.base) {
        *requested = d->requested;
        *usable = d->region.size;
    } else {
        rc = MP_EINTERIOR;
    }
    pthread_mutex_unlock(&pool->lock);
    return rc;
}

/* Requested and usable size of a live block.  In debug mode and under ASan
 * usable is the requested size (like ASan's own malloc_usable_size): the
 * canary, or the poisoned tail, starts right after it. */
static int block_query(const mp_pool *pool, const void *ptr, size_t *requested,
                       size_t *usable) {
    int rc = block_query_raw(pool, ptr, requested, usable);
    if (rc == MP_OK && (MP_ASAN || pool->config.debug))
        *usable = *requested;
    return rc;
}

int mp_owns(const mp_pool *pool, const void *ptr) {
    size_t requested, usable;
    return block_query(pool, ptr, &requested, &usable) == MP_OK;
}

size_t mp_usable_size(const mp_pool *pool, const void *ptr) {
    size_t requested, usable;
    return block_query(pool, ptr, &requested, &usable) == MP_OK ? usable : 0;
}

int mp_requested_size(const mp_pool *pool, const void *ptr, size_t *out) {
    size_t requested, usable;
    int rc = block_query(pool, ptr, &requested, &usable);
    if (rc == MP_OK && out)
        *out = requested;
    return rc;
}
