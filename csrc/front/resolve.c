/*
 * resolve.c - the one place a pointer becomes a block (front.h says how),
 * and the queries built on it: mp_owns, mp_usable_size, mp_requested_size.
 */
#include "front.h"

/* Error code for a pointer no live region of the pool holds: a double free
 * when it lies in memory the pool gave back recently, else foreign. */
int resolve_foreign(mp_pool *pool, const void *ptr) {
    mutex_lock(&pool->lock);
    bool freed = map_buried(&pool->graves, ptr);
    mutex_unlock(&pool->lock);
    return freed ? MP_EDOUBLEFREE : MP_EFOREIGN;
}

/* The live large block starting at ptr in `arena`, or why not: a movable
 * buffer's bytes (only mp_buffer_destroy frees them), a size that is not the
 * one asked with, a free span (double free), an interior pointer.  Lock held. */
int resolve_large(mp_arena *arena, const void *ptr, size_t size, mp_span **out) {
    uint64_t off = (uint64_t)((const char *)ptr - arena->region.base);
    uint32_t page = (uint32_t)(off >> arena->region.granule_shift);
    mp_span *span = &arena->spans[page];
    if (span->kind == MP_SPAN_LARGE && span_addr(span) == ptr) {
        if (span->movable)
            return MP_EINVAL;
        if (size && size != span->requested)
            return MP_ESIZE;
        *out = span;
        return MP_OK;
    }
    /* Error path: find the span that contains ptr to say why it is wrong. */
    ARENA_FOREACH_SPAN(arena, s) {
        if (s->page + s->npages > page)
            return s->kind == MP_SPAN_FREE ? MP_EDOUBLEFREE : MP_EINTERIOR;
    }
    return MP_EINTERIOR;
}

/* Whether ptr (with `size`, 0: any) is the direct block `d`.  Lock held. */
int resolve_direct(const mp_direct *d, const void *ptr, size_t size) {
    if (ptr != d->region.base)
        return MP_EINTERIOR;
    if (size && size != d->requested)
        return MP_ESIZE;
    return MP_OK;
}

/* ---- block queries ----------------------------------------------------------- */

/* Requested size and bytes taken by the live block at ptr, or an error code. */
static int block_query_raw(const mp_pool *pool_c, const void *ptr, size_t *requested,
                       size_t *usable) {
    mp_pool *pool = (mp_pool *)pool_c;
    if (pool == NULL || ptr == NULL)
        return MP_EINVAL;
    mp_region *region;
    mp_slab *slab;
    int rc = resolve_region(pool, ptr, &region, &slab);
    if (rc != MP_OK)
        return rc;
    if (slab) {
        uint32_t idx, state = 0;
        rc = slab_locate(slab, ptr, 0, &idx, &state);
        *requested = state;
        *usable = slab->block_size;
        return rc;
    }
    mutex_lock(&pool->lock);
    if (region->kind == MP_REGION_ARENA) {
        mp_span *span;
        rc = resolve_large((mp_arena *)region, ptr, 0, &span);
        if (rc == MP_OK) {
            *requested = span->requested;
            *usable = span_bytes(span);
        }
    } else {
        const mp_direct *d = (const mp_direct *)region;
        rc = resolve_direct(d, ptr, 0);
        if (rc == MP_OK) {
            *requested = d->requested;
            *usable = d->region.size;
        }
    }
    mutex_unlock(&pool->lock);
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
