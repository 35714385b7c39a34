/*
 * census.c - what each block of a slab is, for mp_pool_walk (pool/walk.c):
 * the small layer reports its blocks' states, the pool layer assembles the
 * walk.
 *
 * A slab's block is live when its state word holds a requested size.  A free
 * one is in the slab's free stack (a hole the class hands out next) or else
 * in a thread's cache (or on its way there): under the class lock the stack
 * is exact, and the caches need not be read, which their owners change
 * without a lock.  A free block whose pages were all given back is
 * released; a free block of a slab mapped onto another slab's pages
 * (meshing) is meshed.
 */
#include "small.h"

#include <string.h>

/* Whether every page the block at byte offset `off` covers was given back. */
static bool census_block_purged(const mp_slab *slab, size_t off) {
    if (slab->purged_pages == 0)
        return false;
    uint32_t first = (uint32_t)(off >> MP_PAGE_SHIFT);
    uint32_t last = (uint32_t)((off + slab->block_size - 1) >> MP_PAGE_SHIFT);
    for (uint32_t p = first; p <= last; p++)
        if (!bits_test(slab->purged, p))
            return false;
    return true;
}

/* Report every block of `slab` in address order, then the bytes after its
 * last block, through fn (state, address, size, requested); stops at the
 * first nonzero return and returns it.  Class lock of the slab held. */
int census_slab(const mp_slab *slab, census_fn fn, void *ctx) {
    /* the free stack's entries are uint16_t: at most 65536 blocks */
    uint64_t in_stack[65536 / 64];
    uint32_t words = (slab->nblocks + 63) / 64;
    MP_ASSERT(slab->nblocks <= 65536 && slab->nfree <= slab->nblocks,
              "a slab's free stack indexes its blocks with 16 bits");
    memset(in_stack, 0, (size_t)words * sizeof in_stack[0]);
    for (uint32_t i = 0; i < slab->nfree; i++)
        in_stack[slab->free_stack[i] / 64] |= (uint64_t)1 << (slab->free_stack[i] % 64);
    bool member = slab->mesh_owner != NULL && slab->mesh_owner != slab;
    int rc = 0;
    for (uint32_t i = 0; i < slab->nblocks && rc == 0; i++) {
        size_t off = (size_t)i * slab->block_size;
        /* relaxed: a thread may hand the block out or take it back meanwhile */
        uint32_t state = atomic_load_explicit(&slab->state[i], memory_order_relaxed);
        int what;
        uint64_t requested = 0;
        if (state != MP_BLOCK_FREE && state != MP_BLOCK_CACHED) {
            what = MP_WALK_LIVE;
            requested = state;
        } else if (member) {
            what = MP_WALK_MESHED;
        } else if (!bits_test(in_stack, i)) {
            what = MP_WALK_CACHED;
        } else {
            what = census_block_purged(slab, off) ? MP_WALK_RELEASED : MP_WALK_FREE;
        }
        rc = fn(ctx, what, slab->start + off, slab->block_size, requested);
    }
    size_t used = (size_t)slab->nblocks * slab->block_size;
    size_t bytes = span_bytes(slab->span);
    if (rc == 0 && used < bytes)
        rc = fn(ctx, MP_WALK_UNUSED, slab->start + used, bytes - used, 0);
    return rc;
}
