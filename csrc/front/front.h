/*
 * front.h - the front layer: what the public allocation calls do.
 *
 *   resolve.c  THE pointer -> block resolver (every "a pointer is trusted
 *              only once found" promise rests on it) and the block queries
 *   alloc.c    routing by size, the small fast paths, large and direct
 *              blocks, mp_alloc / mp_calloc / mp_free
 *   realloc.c  mp_realloc: in place when it can, else move
 *
 * How a pointer is validated, in order, never touching memory the pool does
 * not vouch for: (1) the address map's page table names the slab of a slab
 * page of this pool (two dependent loads, no lock: leaf, then the slab);
 * (2) otherwise the address map names the region and its owner (foreign
 * pointers stop here); (3) a slab block is found by arithmetic
 * (slab_locate: reciprocal multiply, exactness test, state word), a large
 * block by its span head under the pool lock, a direct block by its base.
 */
#ifndef MEMPOOL_FRONT_H
#define MEMPOOL_FRONT_H

#include "../pool/pool.h"

/* Steps 1 and 2 of validation, lock-free: the slab of this pool on ptr's
 * page (NULL: not a slab) and the pool's region holding ptr.  MP_OK, or
 * MP_EFOREIGN when no region of this pool holds ptr (NULL included). */
MP_INLINE int resolve_region(const mp_pool *pool, const void *ptr, mp_region **region_out,
                             mp_slab **slab_out) {
    mp_region *region = map_lookup(ptr);
    if (MP_UNLIKELY(region == NULL || region->owner != pool))
        return MP_EFOREIGN;
    *region_out = region;
    *slab_out = slab_at(pool, ptr);
    return MP_OK;
}

/* ---- resolve.c ------------------------------------------------------------ */
int resolve_foreign(mp_pool *pool, const void *ptr);
int resolve_large(mp_arena *arena, const void *ptr, size_t size, mp_span **out);
int resolve_direct(const mp_direct *d, const void *ptr, size_t size);

/* ---- alloc.c --------------------------------------------------------------- */
/* Allocate any size (routed: slab, heap or mapping) and free any block, with
 * the call kind that says which counters they feed: realloc's moves pass
 * CALL_INTERNAL, which keeps them out of the public call counts. */
void *alloc_any(mp_pool *pool, size_t size, size_t align, int call);
int alloc_free_any(mp_pool *pool, void *ptr, size_t size, int call);

#endif /* MEMPOOL_FRONT_H */
