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
 * not vouch for: (1) the address map names the region and its owner (two
 * loads, no lock; foreign pointers stop here); (2) in an arena, the span
 * descriptor of the pointer's granule names the slab, if any; (3) a slab
 * block is found by arithmetic (slab_locate: reciprocal multiply,
 * exactness test, state word), a large block by its span head under the
 * pool lock, a direct block by its base.
 */
#ifndef MEMPOOL_FRONT_H
#define MEMPOOL_FRONT_H

#include "../pool/pool.h"

/* Steps 1 and 2 of validation, lock-free: the pool's region holding ptr
 * and, in an arena, the slab of its granule (NULL: not a slab).  MP_OK, or
 * MP_EFOREIGN when no region of this pool holds ptr (NULL included). */
MP_INLINE int resolve_region(const mp_pool *pool, const void *ptr, mp_region **region_out,
                             mp_slab **slab_out) {
    mp_region *region = map_lookup(ptr);
    if (MP_UNLIKELY(region == NULL || region->owner != pool))
        return MP_EFOREIGN;
    *region_out = region;
    *slab_out = MP_LIKELY(region->kind == MP_REGION_ARENA) ? slab_of((mp_arena *)region, ptr)
                                                            : NULL;
    return MP_OK;
}

/* ---- resolve.c ------------------------------------------------------------ */
int resolve_foreign(mp_pool *pool, const void *ptr);
int resolve_large(mp_arena *arena, const void *ptr, size_t size, mp_span **out);
int resolve_direct(const mp_direct *d, const void *ptr, size_t size);

/* ---- alloc.c --------------------------------------------------------------- */
void *alloc_any(mp_pool *pool, size_t size, size_t align, int call);
int alloc_free(mp_pool *pool, void *ptr, size_t size, int call);

#endif /* MEMPOOL_FRONT_H */
