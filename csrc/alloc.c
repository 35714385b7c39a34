/*
 * alloc.c - the allocation paths: routes each request by size.
 *
 *   size <= small_max          slab block through this thread's cache (no lock)
 *   size <  huge_min           span of 4 KiB granules in the page heap
 *   size >= huge_min           span of 2 MiB granules in the huge-page heap
 *   span > arena_bytes         a direct mapping of its own (grows with mremap)
 *
 * A pointer is trusted only after the pool has found it in its own metadata:
 * the chunk map gives the region, the region's descriptors give the block,
 * and the block's state says whether it is live.
 */
#include "debug.h"
#include "sanitize.h"

#include <stdlib.h>
#include <string.h>

/* pool_error for functions that return a pointer. */
static MP_COLD void *fail(mp_pool *pool, int code) {
    pool_error(pool, code);
    return NULL;
}

/* ---- small blocks ------------------------------------------------------ */

/* Refill an empty bin; false when no memory could be had. */
static MP_COLD bool small_refill(mp_pool *pool, mp_tcache *tc, unsigned cls) {
    mp_tcache_bin *bin = &tc->bins[cls];
    uint32_t want = bin->cap / 2 ? bin->cap / 2 : 1;
    bin->count = slab_refill(pool, cls, bin->entries, want);
    return bin->count > 0;
}

/* Hand out the top block of a bin that is not empty: mark it live with its
 * size and count it.  `fast` (a constant): called from mp_alloc's inlined
 * path, which debug mode never takes. */
static inline __attribute__((always_inline)) void *
small_take(mp_pool *pool, mp_tcache *tc, mp_tcache_bin *bin, unsigned cls, size_t size,
           int call, bool fast) {
    mp_tcache_entry e = bin->entries[--bin->count];
    uint32_t idx = sc_index((uint64_t)(e.ptr - e.slab->start), e.slab->magic);
    /* Before the state store: a concurrent mp_pool_check sees the canary of
     * every block it sees live. */
    if (!fast && MP_UNLIKELY(pool->config.debug))
        debug_small_fresh(pool, e.slab, e.ptr, size, call);
    mp_asan_live(e.ptr, size, e.slab->block_size);
    atomic_store_explicit(&e.slab->state[idx], (uint32_t)size, memory_order_relaxed);
    mp_counters *ctr = &tc->counters;
    ctr_add(&ctr->class_live_blocks[cls], 1);
    ctr_add(&ctr->class_live_bytes[cls], (int64_t)size);
    if (call != CALL_INTERNAL)
        ctr_add(&ctr->small_alloc_count, 1);
    if (call == CALL_CALLOC)
        ctr_add(&ctr->calloc_count, 1);
    tc->unpublished += (int64_t)size;
    if (MP_UNLIKELY(tc->unpublished >= MP_PUBLISH_BYTES))
        tc_publish(pool, tc);
    return e.ptr;
}

/* Small request through this thread's cache, refilled when empty. */
static inline __attribute__((always_inline)) void *small_alloc(mp_pool *pool, size_t size, int call) {
    unsigned cls = sc_of(size + pool_pad(pool)); /* debug: room for the canary */
    mp_tcache *tc = tc_get(pool);
    if (MP_UNLIKELY(tc == NULL))
        return fail(pool, MP_ENOMEM);
    mp_tcache_bin *bin = &tc->bins[cls];
    if (MP_UNLIKELY(bin->count == 0) && !small_refill(pool, tc, cls))
        return fail(pool, MP_ENOMEM);
    return small_take(pool, tc, bin, cls, size, call, false);
}

/* Find the live small block at ptr in `slab`: its index and state, or an
 * error code (interior pointer, already free, wrong size). */
static inline __attribute__((always_inline)) int
small_locate_inline(mp_slab *slab, const void *ptr, size_t size, uint32_t *idx_out,
                    uint32_t *state_out) {
    uint64_t off = (uint64_t)((const char *)ptr - slab->start);
    uint32_t idx = sc_index(off, slab->magic);
    if ((uint64_t)idx * slab->block_size != off || idx >= slab->nblocks)
        return MP_EINTERIOR;
    uint32_t state = atomic_load_explicit(&slab->state[idx], memory_order_relaxed);
    if (state == MP_BLOCK_FREE)
        return MP_EDOUBLEFREE;
    if (size && size != state)
        return MP_ESIZE;
    *idx_out = idx;
    *state_out = state;
    return MP_OK;
}

int small_locate(mp_slab *slab, const void *ptr, size_t size, uint32_t *idx_out,
                 uint32_t *state_out) {
    return small_locate_inline(slab, ptr, size, idx_out, state_out);
}

/* Put a block just marked free on a bin with room, and count it. */
static inline __attribute__((always_inline)) void
small_push(mp_pool *pool, mp_tcache *tc, mp_tcache_bin *bin, mp_slab *slab, void *ptr,
           unsigned cls, uint32_t state, int call) {
    bin->entries[bin->count++] = (mp_tcache_entry){.ptr = ptr, .slab = slab};
    mp_counters *ctr = &tc->counters;
    ctr_add(&ctr->class_live_blocks[cls], -1);
    ctr_add(&ctr->class_live_bytes[cls], -(int64_t)state);
    if (call != CALL_INTERNAL)
        ctr_add(&ctr->free_count, 1);
    tc->unpublished -= (int64_t)state;
    if (MP_UNLIKELY(tc->unpublished <= -MP_PUBLISH_BYTES))
        tc_publish(pool, tc);
}

/* Free a small block into this thread's cache.  MP_OK, or in debug mode
 * MP_ECORRUPT when its canary was broken (the block is freed all the same). */
static inline __attribute__((always_inline)) int small_free(mp_pool *pool, mp_slab *slab, void *ptr, size_t size, int call) {
    uint32_t idx, state;
    int rc = small_locate_inline(slab, ptr, size, &idx, &state);
    if (MP_UNLIKELY(rc != MP_OK))
        return pool_error(pool, rc);
    /* A plain store, not a compare-exchange: a locked instruction would cost
     * a third of the pair.  Any double free ordered after the first free is
     * still caught; two threads freeing one block at the same instant is a
     * data race in the program that no allocator check can make safe. */
    atomic_store_explicit(&slab->state[idx], MP_BLOCK_FREE, memory_order_relaxed);
    if (MP_UNLIKELY(pool->config.debug))
        rc = debug_small_freed(pool, slab, ptr, state);
    MP_POISON(ptr, slab->block_size);
    mp_tcache *tc = tc_get(pool);
    unsigned cls = slab->cls;
    if (MP_UNLIKELY(tc == NULL)) {
        /* No cache could be made: hand the block straight to its slab, and
         * account it centrally. */
        mp_tcache_entry entry = {.ptr = ptr, .slab = slab};
        slab_return(pool, cls, &entry, 1);
        pthread_mutex_lock(&pool->lock);
        ctr_add(&pool->central.class_live_blocks[cls], -1);
        ctr_add(&pool->central.class_live_bytes[cls], -(int64_t)state);
        if (call != CALL_INTERNAL)
            ctr_add(&pool->central.free_count, 1);
        pthread_mutex_unlock(&pool->lock);
        pool_note_live(pool, -(int64_t)state);
        return rc;
    }
    mp_tcache_bin *bin = &tc->bins[cls];
    if (MP_UNLIKELY(bin->count == bin->cap))
        tc_flush_bin(pool, tc, cls, bin->cap / 2);
    small_push(pool, tc, bin, slab, ptr, cls, state, call);
    return rc;
}

/* ---- large blocks and direct mappings ---------------------------------- */

/* The heap serving a request of `size` bytes. */
mp_heap *heap_for(mp_pool *pool, size_t size) {
    if (pool->use_huge_heap && size >= pool->config.huge_min)
        return &pool->heaps[MP_HEAP_HUGE];
    return &pool->heaps[MP_HEAP_PAGES];
}

/* Counters for a large or direct block turning live (delta > 0) or not. */
void large_account(mp_pool *pool, int64_t requested, int64_t rounded, int call,
                          mp_counter *kind_count) {
    ctr_add(&pool->central.live_bytes, requested);
    ctr_add(&pool->central.allocated_bytes, rounded);
    if (call == CALL_INTERNAL)
        return;
    if (requested > 0 || rounded > 0) {
        ctr_add(kind_count, 1);
        if (call == CALL_CALLOC)
            ctr_add(&pool->central.calloc_count, 1);
    } else {
        ctr_add(&pool->central.free_count, 1);
    }
}

/* A block in a mapping of its own. */
static void *direct_alloc(mp_pool *pool, size_t size, size_t align, int call) {
    size_t want = size + pool_pad(pool); /* size <= MP_MAX_REQUEST: no overflow */
    size_t bytes = MP_ALIGN_UP(want ? want : 1, MP_CHUNK_SIZE);
    if (bytes < size)
        return fail(pool, MP_ESIZE);
    mp_direct *d = calloc(1, sizeof *d);
    if (d == NULL)
        return fail(pool, MP_ENOMEM);
    pthread_mutex_lock(&pool->lock);
    if (pool->config.capacity && pool->reserved_bytes + bytes > pool->config.capacity) {
        pthread_mutex_unlock(&pool->lock);
        free(d);
        return fail(pool, MP_ENOMEM);
    }
    char *base = os_reserve(pool, bytes, align > MP_CHUNK_SIZE ? align : MP_CHUNK_SIZE);
    if (base == NULL) {
        pthread_mutex_unlock(&pool->lock);
        free(d);
        return fail(pool, MP_ENOMEM);
    }
    d->region = (mp_region){.kind = MP_REGION_DIRECT, .pool = pool, .base = base, .size = bytes};
    d->requested = size;
    if (map_insert(&d->region) != 0) {
        os_release(pool, base, bytes);
        pthread_mutex_unlock(&pool->lock);
        free(d);
        return fail(pool, MP_ENOMEM);
    }
    os_advise_huge(pool, base, bytes, pool->config.huge_pages != MP_HUGE_OFF);
    d->next = pool->directs;
    if (pool->directs)
        pool->directs->prev = d;
    pool->directs = d;
    pool->direct_count++;
    pool->reserved_bytes += bytes;
    pool->metadata_bytes += sizeof *d;
    pool_note_resident(pool, (int64_t)bytes);
    large_account(pool, (int64_t)size, (int64_t)bytes, call, &pool->central.direct_alloc_count);
    pool_note_live(pool, (int64_t)size);
    pthread_mutex_unlock(&pool->lock);
    if (MP_UNLIKELY(pool->config.debug))
        debug_large_fresh(base, size, call);
    mp_asan_live(base, size, bytes);
    return base; /* a fresh mapping reads as zeros: calloc needs no memset */
}

/* Unmap a direct block.  Lock held on entry, released on return. */
int direct_free_unlock(mp_pool *pool, mp_direct *d, int call) {
    if (d->prev)
        d->prev->next = d->next;
    else
        pool->directs = d->next;
    if (d->next)
        d->next->prev = d->prev;
    pool->direct_count--;
    pool->reserved_bytes -= d->region.size;
    pool->metadata_bytes -= sizeof *d;
    pool->resident_bytes -= d->region.size;
    pool->released_bytes += d->region.size;
    large_account(pool, -(int64_t)d->requested, -(int64_t)d->region.size, call,
                  &pool->central.direct_alloc_count);
    pool_note_live(pool, -(int64_t)d->requested);
    pool_bury(pool, &d->region);
    map_remove(&d->region);
    os_release(pool, d->region.base, d->region.size);
    pthread_mutex_unlock(&pool->lock);
    free(d);
    return MP_OK;
}

/* A block from the page or huge heap (or a direct mapping when too big). */
static MP_COLD void *large_alloc(mp_pool *pool, size_t size, size_t align, int call) {
    mp_heap *heap = heap_for(pool, size);
    size_t granule = (size_t)1 << heap->granule_shift;
    size_t want = size + pool_pad(pool); /* size <= MP_MAX_REQUEST: no overflow */
    size_t need = MP_ALIGN_UP(want ? want : 1, granule);
    if (need > pool->config.arena_bytes || align > pool->config.arena_bytes / 2)
        return direct_alloc(pool, size, align, call);
    size_t npages = need >> heap->granule_shift;
    size_t align_pages = align > granule ? align >> heap->granule_shift : 1;
    pthread_mutex_lock(&pool->lock);
    uint32_t clean;
    mp_span *span = heap_alloc(heap, npages, align_pages, &clean);
    if (span == NULL) {
        pthread_mutex_unlock(&pool->lock);
        return fail(pool, MP_ENOMEM);
    }
    span->requested = size;
    large_account(pool, (int64_t)size, (int64_t)need, call, &pool->central.large_alloc_count);
    pool_note_live(pool, (int64_t)size);
    pthread_mutex_unlock(&pool->lock);
    char *ptr = span_addr(span);
    mp_asan_live(ptr, size, need);
    /* Clean granules are fresh or purged pages: the kernel zeroes them. */
    if (call == CALL_CALLOC && clean != npages)
        memset(ptr, 0, size);
    if (MP_UNLIKELY(pool->config.debug)) {
        debug_large_fresh(ptr, size, call);
        mp_asan_live(ptr, size, need);
    }
    return ptr;
}

/* The live large block starting at ptr, or an error code.  Lock held. */
int large_locate(mp_arena *arena, const void *ptr, size_t size, mp_span **out) {
    mp_heap *heap = arena->heap;
    uint64_t off = (uint64_t)((const char *)ptr - arena->region.base);
    uint32_t page = (uint32_t)(off >> heap->granule_shift);
    mp_span *span = &arena->spans[page];
    if (span->kind == MP_SPAN_LARGE && span_addr(span) == ptr) {
        if (span->movable) /* a buffer's bytes: only mp_buffer_destroy frees them */
            return MP_EINVAL;
        if (size && size != span->requested)
            return MP_ESIZE;
        *out = span;
        return MP_OK;
    }
    /* Error path: find the span that contains ptr to say why it is wrong. */
    uint32_t p = 0;
    while (p < arena->npages && arena->spans[p].npages != 0 &&
           p + arena->spans[p].npages <= page)
        p += arena->spans[p].npages;
    if (p < arena->npages && arena->spans[p].kind == MP_SPAN_FREE)
        return MP_EDOUBLEFREE;
    return MP_EINTERIOR;
}

/* ---- public allocation API --------------------------------------------- */

/* Route a request; `align` is a power of two. */
static inline __attribute__((always_inline)) void *
alloc_inline(mp_pool *pool, size_t size, size_t align, int call) {
    if (MP_LIKELY(size <= pool_small_limit(pool) && align <= MP_MIN_ALIGN))
        return small_alloc(pool, size, call); /* small_max <= 64 KiB: never too large */
    if (MP_UNLIKELY(size > MP_MAX_REQUEST))
        return fail(pool, MP_ESIZE);
    if (pool->config.capacity && size > pool->config.capacity)
        return fail(pool, MP_ENOMEM);
    return large_alloc(pool, size, align, call);
}

void *alloc_routed(mp_pool *pool, size_t size, size_t align, int call) {
    return alloc_inline(pool, size, align, call);
}

/* mp_alloc past its fast path: every case, checks included. */
static __attribute__((noinline)) void *alloc_full(mp_pool *pool, size_t size) {
    if (MP_UNLIKELY(pool == NULL))
        return fail(NULL, MP_EINVAL);
    return alloc_inline(pool, size, MP_MIN_ALIGN, CALL_ALLOC);
}

/* The fast path is the common case only: a small request whose bin, in this
 * thread's most recent cache, is not empty.  It makes no call but a rare
 * publish, so it saves no registers; everything else is alloc_full's. */
void *mp_alloc(mp_pool *pool, size_t size) {
    /* size - 1: a request of 0 bytes takes the full path (debug mode's
     * fast_small_max is 0, and its canary needs room even then). */
    if (MP_LIKELY(pool != NULL && size - 1 < pool->fast_small_max)) {
        mp_tcache *tc = tc_peek(pool);
        if (MP_LIKELY(tc != NULL)) {
            unsigned cls = sc_of(size);
            mp_tcache_bin *bin = &tc->bins[cls];
            if (MP_LIKELY(bin->count != 0))
                return small_take(pool, tc, bin, cls, size, CALL_ALLOC, true);
        }
    }
    return alloc_full(pool, size);
}

void *mp_alloc_aligned(mp_pool *pool, size_t size, size_t align) {
    if (pool == NULL)
        return fail(NULL, MP_EINVAL);
    if (align == 0 || (align & (align - 1)) || align > ((size_t)1 << 30))
        return fail(pool, MP_EALIGN);
    return alloc_routed(pool, size, align < MP_MIN_ALIGN ? MP_MIN_ALIGN : align, CALL_ALLOC);
}

void *mp_calloc(mp_pool *pool, size_t count, size_t size) {
    if (pool == NULL)
        return fail(NULL, MP_EINVAL);
    size_t total;
    if (__builtin_mul_overflow(count, size, &total))
        return fail(pool, MP_EOVERFLOW);
    void *ptr = alloc_routed(pool, total, MP_MIN_ALIGN, CALL_CALLOC);
    if (ptr && total <= pool_small_limit(pool))
        memset(ptr, 0, total);
    return ptr;
}

/* Remember a region about to be unmapped.  Lock held. */
void pool_bury(mp_pool *pool, const mp_region *region) {
    pool->graves[pool->grave_next].base = (uintptr_t)region->base;
    pool->graves[pool->grave_next].size = region->size;
    pool->grave_next = (pool->grave_next + 1) % MP_GRAVES;
}

/* Error code for a pointer no live region of the pool holds: a double free
 * when it lies in memory the pool gave back recently, else foreign. */
int foreign_or_freed(mp_pool *pool, const void *ptr) {
    int code = MP_EFOREIGN;
    pthread_mutex_lock(&pool->lock);
    for (unsigned i = 0; i < MP_GRAVES; i++)
        if ((uintptr_t)ptr - pool->graves[i].base < pool->graves[i].size)
            code = MP_EDOUBLEFREE;
    pthread_mutex_unlock(&pool->lock);
    return code;
}

/* Free a block that is not in a slab (large span or direct mapping). */
static MP_COLD int free_large(mp_pool *pool, mp_region *region, void *ptr, size_t size, int call) {
    if (region->kind == MP_REGION_ARENA) {
        mp_arena *arena = (mp_arena *)region;
        pthread_mutex_lock(&pool->lock);
        mp_span *span;
        int rc = large_locate(arena, ptr, size, &span);
        if (rc != MP_OK) {
            pthread_mutex_unlock(&pool->lock);
            return pool_error(pool, rc);
        }
        int result = MP_OK;
        if (MP_UNLIKELY(pool->config.debug))
            result = debug_large_freed(pool, ptr, span->requested, span_bytes(span), -1);
        MP_POISON(ptr, span_bytes(span)); /* before the heap may hand it out */
        large_account(pool, -(int64_t)span->requested, -(int64_t)span_bytes(span), call,
                      &pool->central.large_alloc_count);
        pool_note_live(pool, -(int64_t)span->requested);
        heap_free(arena->heap, span, os_now_ms());
        after_free_locked(pool);
        pthread_mutex_unlock(&pool->lock);
        return result;
    }
    mp_direct *d = (mp_direct *)region;
    pthread_mutex_lock(&pool->lock);
    if (ptr != d->region.base || (size && size != d->requested)) {
        pthread_mutex_unlock(&pool->lock);
        return pool_error(pool, ptr != d->region.base ? MP_EINTERIOR : MP_ESIZE);
    }
    int result = MP_OK;
    if (MP_UNLIKELY(pool->config.debug))
        result = debug_canary_check(pool, ptr, d->requested, d->region.size, -2);
    direct_free_unlock(pool, d, call);
    return result;
}

/* Free with an explicit call kind (internal frees are not counted); the
 * slab case is inlined since it is every small free. */
static inline __attribute__((always_inline)) int
free_inline(mp_pool *pool, void *ptr, size_t size, int call) {
    mp_region *region = map_lookup(ptr);
    if (MP_UNLIKELY(region == NULL || region->pool != pool))
        return pool_error(pool, foreign_or_freed(pool, ptr));
    if (MP_LIKELY(region->kind == MP_REGION_ARENA)) {
        uint64_t off = (uint64_t)((char *)ptr - region->base);
        mp_span *at = &((mp_arena *)region)->spans[off >> region->granule_shift];
        mp_slab *slab = atomic_load_explicit(&at->slab, memory_order_acquire);
        if (MP_LIKELY(slab != NULL))
            return small_free(pool, slab, ptr, size, call);
    }
    return free_large(pool, region, ptr, size, call);
}

int free_routed(mp_pool *pool, void *ptr, size_t size, int call) {
    return free_inline(pool, ptr, size, call);
}

/* mp_free past its fast path: every case, every error reported. */
static __attribute__((noinline)) int free_full(mp_pool *pool, void *ptr, size_t size) {
    if (MP_UNLIKELY(ptr == NULL))
        return MP_OK;
    if (MP_UNLIKELY(pool == NULL))
        return pool_error(NULL, MP_EINVAL);
    return free_inline(pool, ptr, size, CALL_ALLOC);
}

/* The fast path frees a live small block of this pool into a bin with room
 * in this thread's most recent cache, with the same checks as the full path
 * (the chunk map owns the pointer, it starts a block, the block is live);
 * whatever fails a check goes to free_full, which reports it.  Nothing is
 * written before every check has passed. */
int mp_free(mp_pool *pool, void *ptr, size_t size) {
    if (MP_LIKELY(pool != NULL && pool->fast_small_max != 0)) {
        mp_region *region = map_lookup(ptr); /* NULL for ptr == NULL */
        mp_tcache *tc = tc_peek(pool);
        if (MP_LIKELY(region != NULL && region->pool == pool &&
                      region->kind == MP_REGION_ARENA && tc != NULL)) {
            uint64_t off = (uint64_t)((char *)ptr - region->base);
            mp_span *at = &((mp_arena *)region)->spans[off >> region->granule_shift];
            mp_slab *slab = atomic_load_explicit(&at->slab, memory_order_acquire);
            uint32_t idx, state;
            if (MP_LIKELY(slab != NULL) &&
                MP_LIKELY(small_locate_inline(slab, ptr, size, &idx, &state) == MP_OK)) {
                unsigned cls = slab->cls;
                mp_tcache_bin *bin = &tc->bins[cls];
                if (MP_LIKELY(bin->count != bin->cap)) {
                    atomic_store_explicit(&slab->state[idx], MP_BLOCK_FREE,
                                          memory_order_relaxed);
                    MP_POISON(ptr, slab->block_size);
                    small_push(pool, tc, bin, slab, ptr, cls, state, CALL_ALLOC);
                    return MP_OK;
                }
            }
        }
    }
    return free_full(pool, ptr, size);
}
