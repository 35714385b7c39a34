/*
 * layers.c - mp_stats.layers: what each layer holds (small blocks, the page
 * heap's large blocks, the huge-page heap, direct mappings), for summaries
 * a person reads.
 *
 * Cheap enough for every mp_stats_get: the classes' figures are already
 * summed, the heaps keep their own counts, and the only walks are over the
 * huge-page heap's spans (2 MiB each: at most 128 per arena) and the list of
 * direct mappings.  The page heap's large blocks are the rest: the large
 * live bytes less the huge heap's and the mappings', its granules in use
 * less the slabs'.
 */
#include "pool.h"

/* A heap's figures common to both heaps (lock held). */
static void layers_heap(const mp_heap *heap, mp_layer_stats *l) {
    unsigned shift = heap->granule_shift;
    l->free_bytes += heap->free_granules << shift;
    l->dirty_free_bytes += heap->dirty_free_granules << shift;
    l->in_use_bytes += (heap->granules - heap->free_granules) << shift;
    uint64_t largest = heap_largest_free(heap);
    if (largest > l->largest_free_bytes)
        l->largest_free_bytes = largest;
    HEAP_FOREACH_ARENA((mp_heap *)heap, arena) {
        l->resident_bytes += arena->dirty_count << shift;
        l->reserved_bytes += arena->region.size;
    }
}

void layers_fill(const mp_pool *pool, mp_stats *out, uint64_t large_live) {
    mp_layer_stats *small = &out->layers[MP_LAYER_SMALL];
    mp_layer_stats *pages = &out->layers[MP_LAYER_PAGES];
    mp_layer_stats *huge = &out->layers[MP_LAYER_HUGE];
    mp_layer_stats *direct = &out->layers[MP_LAYER_DIRECT];
    for (unsigned cls = 0; cls < out->class_count; cls++) {
        small->live_bytes += out->classes[cls].live_bytes;
        small->blocks += out->classes[cls].live_blocks;
    }
    small->in_use_bytes = pool->small.slab_bytes;
    small->free_bytes = out->slab_free_bytes;
    /* slabs live in the page heap (the mesh heap when meshing) */
    layers_heap(&pool->heaps[MP_HEAP_PAGES], pages);
    layers_heap(&pool->heaps[MP_HEAP_MESH], pages);
    layers_heap(&pool->heaps[MP_HEAP_HUGE], huge);
    HEAP_FOREACH_ARENA((mp_heap *)&pool->heaps[MP_HEAP_HUGE], arena) {
        ARENA_FOREACH_SPAN(arena, span) {
            if (span->kind == MP_SPAN_LARGE) {
                huge->live_bytes += span->requested;
                huge->blocks++;
            }
        }
    }
    LIST_FOREACH(d, &pool->directs, const mp_direct, link) {
        direct->live_bytes += d->requested;
        direct->in_use_bytes += d->region.size;
        direct->resident_bytes += d->region.size;
        direct->reserved_bytes += d->region.size;
        direct->blocks++;
    }
    uint64_t others = huge->live_bytes + direct->live_bytes;
    pages->live_bytes = large_live > others ? large_live - others : 0;
    const mp_large_counters *lc = &pool->large; /* frees count both kinds */
    uint64_t large_blocks = lc->large_allocs + lc->direct_allocs - lc->frees;
    uint64_t other_blocks = huge->blocks + direct->blocks;
    pages->blocks = large_blocks > other_blocks ? large_blocks - other_blocks : 0;
    pages->in_use_bytes -= pages->in_use_bytes > small->in_use_bytes ? small->in_use_bytes
                                                                     : pages->in_use_bytes;
}
