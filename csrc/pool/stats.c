/*
 * stats.c - the snapshot handed up to users (mp_stats_get), and the table
 * of its figures (mp_stats_fields), both from mempool.h's MP_STATS_LIST.
 *
 * Counters are kept as the pool goes (per thread cache for small blocks, under
 * the pool lock for the rest); a snapshot sums them, it never walks the heap
 * except for the largest free span (one list of the TLSF).  Each group of
 * figures is filled from the layer that owns it.
 */
#include "pool.h"

#include <stddef.h>
#include <string.h>

static const mp_stats_field FIELDS[MP_STATS_COUNT] = {
#define FIELD(name, unit, doc) {#name, offsetof(mp_stats, name), unit, doc},
    MP_STATS_LIST(FIELD)
#undef FIELD
};
_Static_assert(offsetof(mp_stats, free_histogram_count) == MP_STATS_COUNT * sizeof(uint64_t),
               "MP_STATS_LIST declares every scalar figure, before the arrays");

/* The table of the scalar figures. */
const mp_stats_field *mp_stats_fields(void) { return FIELDS; }

#define COUNTERS_LEN (sizeof(mp_counters) / sizeof(mp_counter))

/* The summed value of a counter field, by its place in mp_counters. */
#define SUM(field) sums[offsetof(mp_counters, field) / sizeof(mp_counter)]

/* A counter sum as a figure: a transiently negative sum reads as 0. */
static uint64_t clamp0(int64_t v) { return v > 0 ? (uint64_t)v : 0; }

/* Small blocks and calls: the uncached counters plus every cache's, by
 * class; then the large blocks' own counters (pool->large) on top.  Pool
 * lock held. */
static void stats_blocks(mp_pool *pool, mp_stats *out) {
    const mp_small *s = &pool->small;
    int64_t sums[COUNTERS_LEN] = {0};
    const mp_counter *from = (const mp_counter *)&s->uncached;
    for (size_t i = 0; i < COUNTERS_LEN; i++)
        sums[i] += ctr_get(&from[i]);
    LIST_FOREACH(tc, &s->tcaches, const mp_tcache, link) {
        from = (const mp_counter *)&tc->counters;
        for (size_t i = 0; i < COUNTERS_LEN; i++)
            sums[i] += ctr_get(&from[i]);
    }
    const mp_large_counters *large = &pool->large;
    int64_t live = large->live_bytes, allocated = large->allocated_bytes;
    int64_t small_allocs = -SUM(small_internal_allocs), small_frees = -SUM(small_internal_frees);
    out->class_count = s->class_count;
    for (unsigned cls = 0; cls < s->class_count; cls++) {
        const mp_class *c = &s->classes[cls];
        int64_t blocks = SUM(class_allocs[cls]) - SUM(class_frees[cls]);
        int64_t bytes = SUM(class_live_bytes[cls]);
        small_allocs += SUM(class_allocs[cls]);
        small_frees += SUM(class_frees[cls]);
        live += bytes;
        allocated += blocks * (int64_t)c->block_size;
        mp_class_stats *cs = &out->classes[cls];
        *cs = (mp_class_stats){
            .block_size = c->block_size,
            .slabs = clamp0(ctr_get(&c->slabs)),
            .blocks = clamp0(ctr_get(&c->blocks)),
            .live_blocks = clamp0(blocks),
            .live_bytes = clamp0(bytes),
        };
        if (cs->blocks > cs->live_blocks)
            out->slab_free_bytes += (cs->blocks - cs->live_blocks) * cs->block_size;
    }
    out->live_bytes = clamp0(live);
    out->allocated_bytes = clamp0(allocated);
    out->small_alloc_count = clamp0(small_allocs);
    out->large_alloc_count = large->large_allocs;
    out->direct_alloc_count = large->direct_allocs;
    out->alloc_count = out->small_alloc_count + out->large_alloc_count + out->direct_alloc_count;
    out->free_count = clamp0((int64_t)large->frees + small_frees);
    out->calloc_count = clamp0(SUM(calloc_count) + (int64_t)large->callocs);
    out->realloc_count = clamp0(SUM(realloc_count));
    out->thread_cache_count = s->tcache_count;
    out->direct_count = pool->direct_count;
}

/* The peak of live bytes, raised to this snapshot's live bytes (the
 * published figure lags the caches' unpublished deltas). */
static void stats_peak_live(mp_pool *pool, mp_stats *out) {
    acct_live(&pool->acct, 0);
    uint64_t peak = atomic_load_explicit(&pool->acct.peak_live, memory_order_relaxed);
    if (out->live_bytes > peak) {
        peak = out->live_bytes;
        atomic_store_explicit(&pool->acct.peak_live, peak, memory_order_relaxed);
    }
    out->peak_live_bytes = peak;
}

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

/* The pool's accounting (mp_acct) and its OS calls. */
static void stats_acct(const mp_acct *acct, mp_stats *out) {
    out->reserved_bytes = acct->reserved;
    out->resident_bytes = acct->resident;
    out->peak_resident_bytes = stats_peak_resident(acct);
    out->released_bytes = acct->released;
    out->metadata_bytes = acct->metadata;
    out->mmap_count = atomic_load(&acct->os.mmap);
    out->munmap_count = atomic_load(&acct->os.munmap);
    out->madvise_count = atomic_load(&acct->os.madvise);
    out->mremap_count = atomic_load(&acct->os.mremap);
}

/* The heaps: free and dirty bytes, the largest free span, arenas, the free
 * spans and their histogram. */
static void stats_heaps(const mp_pool *pool, mp_stats *out) {
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
}

/* Movable buffers and meshing. */
static void stats_buffers_mesh(const mp_pool *pool, mp_stats *out) {
    const mp_buffer_table *b = &pool->buffers;
    out->buffer_count = b->live;
    out->buffer_bytes = b->bytes;
    out->pinned_buffer_count = b->pinned;
    out->defrag_count = b->defrag_count;
    out->defrag_moved_bytes = b->defrag_moved_bytes;
    const mp_small *s = &pool->small;
    out->mesh_pages = clamp0(atomic_load(&s->mesh_pages));
    out->mesh_bytes_saved = out->mesh_pages << MP_PAGE_SHIFT;
    out->mesh_pages_total = atomic_load(&s->mesh_pages_total);
    out->mesh_calls = atomic_load(&s->mesh_calls);
    out->mesh_pause_max_ns = atomic_load(&s->mesh_pause_max_ns);
}

/* Contention: waits on the pool's and the classes' locks, the purger's
 * wake-ups.  Pool lock held (purger_wakeups). */
static void stats_threads(const mp_pool *pool, mp_stats *out) {
    out->pool_lock_waits = mutex_waits(&pool->lock);
    for (unsigned cls = 0; cls < pool->small.class_count; cls++)
        out->class_lock_waits += mutex_waits(&pool->small.classes[cls].lock);
    out->purger_wakeups = pool->purger_wakeups;
}

/* The error counters, by code, and their sum. */
static void stats_errors(const mp_pool *pool, mp_stats *out) {
    for (int i = 1; i < MP_ERROR_COUNT; i++) {
        out->errors[i] = atomic_load(&pool->errors[i]);
        out->error_total += out->errors[i];
    }
}

/* Every figure, the locked ones in one critical section (a consistent
 * snapshot), the atomic ones after. */
int mp_stats_get(mp_pool *pool, mp_stats *out) {
    if (pool == NULL || out == NULL)
        return pool_error(pool, MP_EINVAL);
    memset(out, 0, sizeof *out);
    mutex_lock(&pool->lock);
    stats_blocks(pool, out);
    stats_peak_live(pool, out);
    stats_acct(&pool->acct, out);
    stats_heaps(pool, out);
    stats_buffers_mesh(pool, out);
    layers_fill(pool, out, (uint64_t)(pool->large.live_bytes > 0 ? pool->large.live_bytes : 0));
    stats_threads(pool, out);
    mutex_unlock(&pool->lock);
    stats_errors(pool, out);
    return MP_OK;
}
