/*
 * stats.c - the snapshot handed up to users.
 *
 * Counters are kept as the pool goes (per thread cache for small blocks, under
 * the pool lock for the rest); a snapshot sums them, it never walks the heap
 * except for the largest free span (one list of the TLSF).
 */
#include "pool.h"

#include <stddef.h>
#include <string.h>

#define COUNTERS_LEN (sizeof(mp_counters) / sizeof(mp_counter))

/* Add every counter of `from` into the plain sums `sum`. */
static void counters_sum(int64_t *sum, const mp_counters *from) {
    const mp_counter *src = (const mp_counter *)from;
    for (size_t i = 0; i < COUNTERS_LEN; i++)
        sum[i] += ctr_get(&src[i]);
}

/* A counter sum as a figure: a transiently negative sum reads as 0. */
static uint64_t clamp0(int64_t v) { return v > 0 ? (uint64_t)v : 0; }

/* The resident peak since the last mp_pool_reset_peak.  The peak rule keeps
 * its own peak (acct.peak_resident: never lowered by a reset, it decides
 * what is given back); it only grows, so once it passed its value at the
 * reset it is the answer, else the highest resident seen since the reset,
 * capped by it (acct_resident counts growth before the rule corrects it). */
static uint64_t stats_peak_resident(const mp_acct *a) {
    if (a->peak_resident > a->peak_at_reset)
        return a->peak_resident;
    return a->resident_since_reset < a->peak_resident ? a->resident_since_reset
                                                      : a->peak_resident;
}

/* The summed value of a counter field, by its place in mp_counters. */
#define SUM(field) sums[offsetof(mp_counters, field) / sizeof(mp_counter)]

int mp_stats_get(mp_pool *pool, mp_stats *out) {
    if (pool == NULL || out == NULL)
        return pool_error(pool, MP_EINVAL);
    memset(out, 0, sizeof *out);
    int64_t sums[COUNTERS_LEN] = {0};
    mp_small *s = &pool->small;
    mutex_lock(&pool->lock);
    counters_sum(sums, &s->central);
    LIST_FOREACH(tc, &s->tcaches, mp_tcache, link)
        counters_sum(sums, &tc->counters);
    int64_t live = SUM(live_bytes), allocated = SUM(allocated_bytes);
    out->class_count = s->class_count;
    int64_t small_allocs = -SUM(small_internal_allocs), small_frees = -SUM(small_internal_frees);
    for (unsigned cls = 0; cls < s->class_count; cls++) {
        mp_class *c = &s->classes[cls];
        int64_t blocks = SUM(class_allocs[cls]) - SUM(class_frees[cls]);
        small_allocs += SUM(class_allocs[cls]);
        small_frees += SUM(class_frees[cls]);
        int64_t bytes = SUM(class_live_bytes[cls]);
        live += bytes;
        allocated += blocks * (int64_t)c->block_size;
        out->classes[cls] = (mp_class_stats){
            .block_size = c->block_size,
            .slabs = clamp0(ctr_get(&c->slabs)),
            .blocks = clamp0(ctr_get(&c->blocks)),
            .live_blocks = clamp0(blocks),
            .live_bytes = clamp0(bytes),
        };
    }
    for (unsigned cls = 0; cls < s->class_count; cls++) {
        const mp_class_stats *c = &out->classes[cls];
        if (c->blocks > c->live_blocks)
            out->slab_free_bytes += (c->blocks - c->live_blocks) * c->block_size;
    }
    out->live_bytes = clamp0(live);
    out->allocated_bytes = clamp0(allocated);
    acct_live(&pool->acct, 0);
    uint64_t peak = atomic_load_explicit(&pool->acct.peak_live, memory_order_relaxed);
    if (out->live_bytes > peak) {
        peak = out->live_bytes;
        atomic_store_explicit(&pool->acct.peak_live, peak, memory_order_relaxed);
    }
    out->peak_live_bytes = peak;
    out->free_count = clamp0(SUM(free_count) + small_frees);
    out->realloc_count = clamp0(SUM(realloc_count));
    out->calloc_count = clamp0(SUM(calloc_count));
    out->small_alloc_count = clamp0(small_allocs);
    out->large_alloc_count = clamp0(SUM(large_alloc_count));
    out->direct_alloc_count = clamp0(SUM(direct_alloc_count));
    out->alloc_count = out->small_alloc_count + out->large_alloc_count + out->direct_alloc_count;
    out->reserved_bytes = pool->acct.reserved;
    out->resident_bytes = pool->acct.resident;
    out->peak_resident_bytes = stats_peak_resident(&pool->acct);
    out->released_bytes = pool->acct.released;
    out->metadata_bytes = pool->acct.metadata;
    for (int h = 0; h < MP_HEAP_COUNT; h++) {
        const mp_heap *heap = &pool->heaps[h];
        out->free_bytes += heap->free_granules << heap->granule_shift;
        out->dirty_free_bytes += heap->dirty_free_granules << heap->granule_shift;
        uint64_t largest = heap_largest_free(heap);
        if (largest > out->largest_free_bytes)
            out->largest_free_bytes = largest;
        out->arena_count += heap->arena_count;
        out->free_span_count += heap->free_spans;
        heap_free_histogram(heap, out->free_histogram_count, out->free_histogram_bytes);
    }
    out->buffer_count = pool->buffers.live;
    out->buffer_bytes = pool->buffers.bytes;
    out->pinned_buffer_count = pool->buffers.pinned;
    out->defrag_count = pool->buffers.defrag_count;
    out->defrag_moved_bytes = pool->buffers.defrag_moved_bytes;
    out->mesh_pages = clamp0(atomic_load(&s->mesh_pages));
    out->mesh_bytes_saved = out->mesh_pages << MP_PAGE_SHIFT;
    out->mesh_pages_total = atomic_load(&s->mesh_pages_total);
    out->mesh_calls = atomic_load(&s->mesh_calls);
    out->mesh_pause_max_ns = atomic_load(&s->mesh_pause_max_ns);
    out->direct_count = pool->direct_count;
    out->thread_cache_count = s->tcache_count;
    layers_fill(pool, out, clamp0(SUM(live_bytes)));
    mutex_unlock(&pool->lock);
    out->mmap_count = atomic_load(&pool->acct.os.mmap);
    out->munmap_count = atomic_load(&pool->acct.os.munmap);
    out->madvise_count = atomic_load(&pool->acct.os.madvise);
    out->mremap_count = atomic_load(&pool->acct.os.mremap);
    for (int i = 1; i < MP_ERROR_COUNT; i++) {
        out->errors[i] = atomic_load(&pool->errors[i]);
        out->error_total += out->errors[i];
    }
    return MP_OK;
}

