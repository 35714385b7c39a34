/*
 * arena.c - address space reserved in 2 MiB-aligned chunks, used lazily.
 *
 * An arena is one reservation plus the bookkeeping kept outside it: a span
 * descriptor per granule and a bit per granule saying whether it may be
 * resident ("dirty").  The bits make the resident estimate exact up to what
 * the program touched: a granule turns dirty when it is handed out and clean
 * when the pool purges it.
 */
#include "internal.h"

#include <stdlib.h>

/* Bytes of bookkeeping for an arena of `npages` granules. */
static size_t arena_metadata_size(uint32_t npages, size_t *bits_words) {
    *bits_words = ((size_t)npages + 63) / 64;
    return sizeof(mp_arena) + (size_t)npages * sizeof(mp_span) + *bits_words * 8;
}

/* Reserve a new arena able to hold `min_granules`, within the pool's
 * capacity; NULL (and nothing changed) when the capacity or the OS says no. */
mp_arena *arena_create(mp_heap *heap, size_t min_granules) {
    mp_pool *pool = heap->pool;
    size_t need = MP_ALIGN_UP(min_granules << heap->granule_shift, MP_CHUNK_SIZE);
    size_t size = pool->config.arena_bytes > need ? pool->config.arena_bytes : need;
    if (pool->config.capacity) {
        size_t room = pool->config.capacity > pool->reserved_bytes
                          ? pool->config.capacity - pool->reserved_bytes : 0;
        room &= ~(MP_CHUNK_SIZE - 1);
        if (room < need)
            return NULL;
        if (size > room)
            size = room;
    }
    size_t npages = size >> heap->granule_shift;
    if (npages > UINT32_MAX)
        return NULL;
    size_t bits_words;
    size_t meta = arena_metadata_size((uint32_t)npages, &bits_words);
    /* calloc of this size is an untouched zero mapping: the descriptors cost
     * memory only for the granules that become span heads. */
    mp_arena *arena = calloc(1, meta);
    if (arena == NULL)
        return NULL;
    char *base = os_reserve(pool, size, MP_CHUNK_SIZE);
    if (base == NULL) {
        free(arena);
        return NULL;
    }
    arena->region = (mp_region){.kind = MP_REGION_ARENA, .granule_shift = heap->granule_shift, .pool = pool, .base = base,
                                .size = size};
    arena->heap = heap;
    arena->npages = (uint32_t)npages;
    arena->spans = (mp_span *)(arena + 1);
    arena->dirty_bits = (uint64_t *)(arena->spans + npages);
    arena->metadata_bytes = meta;
    if (map_insert(&arena->region) != 0) {
        os_release(pool, base, size);
        free(arena);
        return NULL;
    }
    os_advise_huge(pool, base, size, heap->huge_advice);
    pool->reserved_bytes += size;
    pool->metadata_bytes += meta;
    heap_register_arena(heap, arena);
    return arena;
}

/* Unmap an arena and drop its bookkeeping; the heap has already unlinked it
 * and its pages are no longer counted as resident. */
void arena_destroy(mp_arena *arena) {
    mp_pool *pool = arena->heap->pool;
    pool_bury(pool, &arena->region);
    map_remove(&arena->region);
    os_release(pool, arena->region.base, arena->region.size);
    pool->reserved_bytes -= arena->region.size;
    pool->metadata_bytes -= arena->metadata_bytes;
    free(arena);
}

/* Mask of bits [lo, hi) within one 64-bit word (0 <= lo < hi <= 64). */
static inline uint64_t word_mask(unsigned lo, unsigned hi) {
    uint64_t upper = hi == 64 ? ~(uint64_t)0 : (((uint64_t)1 << hi) - 1);
    return upper & ~(((uint64_t)1 << lo) - 1);
}

/* Apply `op` (0 count, 1 set, 2 clear) to bits [page, page+n); return the
 * number of bits that were set before (count/clear) or clear before (set). */
static uint32_t bits_apply(uint64_t *bits, uint32_t page, uint32_t n, int op) {
    uint32_t changed = 0;
    uint64_t pos = page, end = (uint64_t)page + n;
    while (pos < end) {
        size_t w = pos / 64;
        unsigned lo = pos % 64;
        unsigned hi = (end - (uint64_t)w * 64) < 64 ? (unsigned)(end - (uint64_t)w * 64) : 64;
        uint64_t mask = word_mask(lo, hi);
        if (op == 1) {
            changed += (uint32_t)__builtin_popcountll(~bits[w] & mask);
            bits[w] |= mask;
        } else {
            changed += (uint32_t)__builtin_popcountll(bits[w] & mask);
            if (op == 2)
                bits[w] &= ~mask;
        }
        pos = (uint64_t)w * 64 + hi;
    }
    return changed;
}

/* Mark granules as handed out; return how many were clean (new resident). */
uint32_t arena_mark_dirty(mp_arena *arena, uint32_t page, uint32_t n) {
    uint32_t fresh = bits_apply(arena->dirty_bits, page, n, 1);
    arena->dirty_count += fresh;
    return fresh;
}

/* Number of dirty granules in [page, page+n). */
uint32_t arena_count_dirty(const mp_arena *arena, uint32_t page, uint32_t n) {
    return bits_apply(arena->dirty_bits, page, n, 0);
}

/* Mark granules as given back (after the purge itself). */
void arena_clear_dirty(mp_arena *arena, uint32_t page, uint32_t n) {
    arena->dirty_count -= bits_apply(arena->dirty_bits, page, n, 2);
}
