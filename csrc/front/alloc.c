/*
 * alloc.c - the allocation paths: routes each request by size.
 *
 *   size <= small_max          slab block through this thread's cache (no lock)
 *   size <  huge_min           span of 4 KiB granules in the page heap
 *   size >= huge_min           span of 2 MiB granules in the huge-page heap
 *   span > arena_bytes         a direct mapping of its own (grows with mremap)
 *
 * A pointer is trusted only after the resolver (resolve.c, front.h) has
 * found it in the pool's own metadata.
 */
#include "front.h"

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
    MP_ASSERT(bin->top == bin->entries, "a bin is refilled only when empty");
    uint32_t got = slab_refill(&pool->small, tc, cls, bin->entries, want);
    bin->top = bin->entries + got;
    return got > 0;
}

#if MP_CHECK_LEVEL >= 1
/* Whether a cache entry is a free block of class cls of this pool, its
 * state word that block's (checked builds' assertion). */
static MP_COLD bool small_entry_ok(const mp_pool *pool, unsigned cls, mp_tcache_entry e) {
    const mp_slab *slab = slab_at(pool, e.ptr);
    if (slab == NULL || slab->cls != cls)
        return false;
    uint64_t off = (uint64_t)(e.ptr - slab->start);
    uint32_t idx = sc_index(off, slab->magic);
    return (uint64_t)idx * slab->block_size == off && idx < slab->nblocks &&
           e.state == &slab->state[idx] &&
           atomic_load_explicit(e.state, memory_order_relaxed) == MP_BLOCK_FREE;
}
#endif

/* Hand out the top block of a bin that is not empty: mark it live with its
 * size and count it.  `fast` (a constant): called from mp_alloc's inlined
 * path, which debug mode never takes.  Plain loads and stores come before
 * the atomic ones, which the compiler does not move other accesses across. */
static inline __attribute__((always_inline)) void *
small_take(mp_pool *pool, mp_tcache *tc, mp_tcache_bin *bin, unsigned cls, size_t size,
           int call, bool fast) {
    mp_tcache_entry *top = bin->top - 1;
    mp_tcache_entry e = *top;
    bin->top = top;
    MP_ASSERT(small_entry_ok(pool, cls, e),
              "a cached block is a free block of its bin's class (cached blocks stay marked free)");
    int64_t unpublished = tc->unpublished + (int64_t)size;
    tc->unpublished = unpublished;
    /* Before the state store: a concurrent mp_pool_check sees the canary of
     * every block it sees live. */
    if (!fast && MP_UNLIKELY(pool->config.debug))
        debug_small_fresh(pool, slab_at(pool, e.ptr), e.ptr, size, call);
    mp_asan_live(e.ptr, size, pool->small.classes[cls].block_size);
    atomic_store_explicit(e.state, (uint32_t)size, memory_order_relaxed);
    mp_counters *ctr = &tc->counters;
    ctr_add(&ctr->class_allocs[cls], 1);
    ctr_add(&ctr->class_live_bytes[cls], (int64_t)size);
    if (call == CALL_INTERNAL)
        ctr_add(&ctr->small_internal_allocs, 1);
    if (call == CALL_CALLOC)
        ctr_add(&ctr->calloc_count, 1);
    if (MP_UNLIKELY(unpublished >= MP_PUBLISH_BYTES))
        tc_publish(&pool->small, tc);
    return e.ptr;
}

/* Small request through this thread's cache, refilled when empty. */
static inline __attribute__((always_inline)) void *small_alloc(mp_pool *pool, size_t size, int call) {
    unsigned cls = sc_of(size + pool_pad(pool)); /* debug: room for the canary */
    mp_tcache *tc = tc_get(&pool->small);
    if (MP_UNLIKELY(tc == NULL))
        return fail(pool, MP_ENOMEM);
    mp_tcache_bin *bin = &tc->bins[cls];
    if (MP_UNLIKELY(bin->top == bin->entries) && !small_refill(pool, tc, cls))
        return fail(pool, MP_ENOMEM);
    return small_take(pool, tc, bin, cls, size, call, false);
}

/* Count the free of a small block of class cls that held `state` requested
 * bytes, on a cache's counters or the uncached ones (tc_counters_take). */
static inline __attribute__((always_inline)) void small_count_free(mp_counters *ctr, unsigned cls,
                                                                   uint32_t state, int call) {
    ctr_add(&ctr->class_frees[cls], 1);
    ctr_add(&ctr->class_live_bytes[cls], -(int64_t)state);
    if (call == CALL_INTERNAL)
        ctr_add(&ctr->small_internal_frees, 1);
}

/* Mark a live block free, put it on its class's bin (which has room) and
 * count it.  Plain loads and stores first, as in small_take. */
static inline __attribute__((always_inline)) void
small_push(mp_pool *pool, mp_tcache *tc, mp_tcache_bin *bin, unsigned cls, void *ptr,
           _Atomic uint32_t *state_word, uint32_t state, int call) {
    mp_tcache_entry *top = bin->top;
    MP_ASSERT(top < bin->end, "a block is pushed on a bin with room");
    *top = (mp_tcache_entry){.ptr = ptr, .state = state_word};
    bin->top = top + 1;
    int64_t unpublished = tc->unpublished - (int64_t)state;
    tc->unpublished = unpublished;
    atomic_store_explicit(state_word, MP_BLOCK_FREE, memory_order_relaxed);
    small_count_free(&tc->counters, cls, state, call);
    if (MP_UNLIKELY(unpublished <= -MP_PUBLISH_BYTES))
        tc_publish(&pool->small, tc);
}

/* Free a small block into this thread's cache.  MP_OK, or in debug mode
 * MP_ECORRUPT when its canary was broken (the block is freed all the same). */
static inline __attribute__((always_inline)) int small_free(mp_pool *pool, mp_slab *slab, void *ptr, size_t size, int call) {
    uint32_t idx, state;
    int rc = slab_locate(slab, ptr, size, &idx, &state);
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
    mp_tcache *tc = tc_get(&pool->small);
    unsigned cls = slab->cls;
    if (MP_UNLIKELY(tc == NULL)) {
        /* No cache could be made: hand the block straight to its slab. */
        mp_tcache_entry entry = {.ptr = ptr, .state = &slab->state[idx]};
        slab_return(&pool->small, cls, &entry, 1);
        small_count_free(tc_counters_take(&pool->small, NULL), cls, state, call);
        tc_counters_put(&pool->small, NULL, -(int64_t)state);
        return rc;
    }
    mp_tcache_bin *bin = &tc->bins[cls];
    if (MP_UNLIKELY(bin->top == bin->end))
        tc_flush_bin(&pool->small, tc, cls, bin->cap / 2);
    small_push(pool, tc, bin, cls, ptr, &slab->state[idx], state, call);
    return rc;
}

/* ---- large blocks and direct mappings ---------------------------------- */

/* A block in a mapping of its own. */
static void *direct_alloc(mp_pool *pool, size_t size, size_t align, int call) {
    size_t want = size + pool_pad(pool); /* size <= MP_MAX_REQUEST: no overflow */
    size_t bytes = MP_ALIGN_UP(want ? want : 1, MP_CHUNK_SIZE);
    if (bytes < size)
        return fail(pool, MP_ESIZE);
    mp_direct *d = calloc(1, sizeof *d);
    if (d == NULL)
        return fail(pool, MP_ENOMEM);
    mp_acct *acct = &pool->acct;
    mutex_lock(&pool->lock);
    if ((acct->capacity && acct->reserved + bytes > acct->capacity) ||
        acct_over_limit(acct, bytes)) {
        mutex_unlock(&pool->lock);
        free(d);
        return fail(pool, MP_ENOMEM);
    }
    char *base = os_reserve(&acct->os, bytes, align > MP_CHUNK_SIZE ? align : MP_CHUNK_SIZE);
    if (base == NULL) {
        mutex_unlock(&pool->lock);
        free(d);
        return fail(pool, MP_ENOMEM);
    }
    d->region = (mp_region){.kind = MP_REGION_DIRECT, .owner = pool, .base = base, .size = bytes};
    d->requested = size;
    if (map_insert(&d->region) != 0) {
        os_release(&acct->os, base, bytes);
        mutex_unlock(&pool->lock);
        free(d);
        return fail(pool, MP_ENOMEM);
    }
    os_advise_huge(&acct->os, base, bytes, pool->config.huge_pages != MP_HUGE_OFF);
    list_push_front(&pool->directs, &d->link);
    pool->direct_count++;
    acct->reserved += bytes;
    acct->metadata += sizeof *d;
    uint64_t peak = acct->peak_resident;
    acct_resident(acct, (int64_t)bytes);
    acct_after_growth(acct, peak);
    pool_account_large(pool, (int64_t)size, (int64_t)bytes, call,
                       LARGE_DIRECT);
    acct_live(acct, (int64_t)size);
    mutex_unlock(&pool->lock);
    if (MP_UNLIKELY(pool->config.debug))
        debug_large_fresh(base, size, call);
    mp_asan_live(base, size, bytes);
    return base; /* a fresh mapping reads as zeros: calloc needs no memset */
}

/* Unmap a direct block.  Lock held on entry, released on return. */
static void direct_free_unlock(mp_pool *pool, mp_direct *d, int call) {
    mp_acct *acct = &pool->acct;
    list_remove(&pool->directs, &d->link);
    pool->direct_count--;
    acct->reserved -= d->region.size;
    acct->metadata -= sizeof *d;
    acct_released(acct, d->region.size);
    pool_account_large(pool, -(int64_t)d->requested, -(int64_t)d->region.size, call,
                       LARGE_DIRECT);
    acct_live(acct, -(int64_t)d->requested);
    map_bury(&pool->graves, &d->region);
    map_remove(&d->region);
    os_release(&acct->os, d->region.base, d->region.size);
    mutex_unlock(&pool->lock);
    free(d);
}

/* A block from the page or huge heap (or a direct mapping when too big). */
static MP_COLD void *large_alloc(mp_pool *pool, size_t size, size_t align, int call) {
    mp_heap *heap = pool_heap_for(pool, size);
    size_t granule = (size_t)1 << heap->granule_shift;
    size_t want = size + pool_pad(pool); /* size <= MP_MAX_REQUEST: no overflow */
    size_t need = MP_ALIGN_UP(want ? want : 1, granule);
    if (need > pool->config.arena_bytes || align > pool->config.arena_bytes / 2)
        return direct_alloc(pool, size, align, call);
    size_t npages = need >> heap->granule_shift;
    size_t align_pages = align > granule ? align >> heap->granule_shift : 1;
    mutex_lock(&pool->lock);
    uint32_t clean;
    mp_span *span = decay_alloc(heap, npages, align_pages, &clean);
    if (span == NULL) {
        mutex_unlock(&pool->lock);
        return fail(pool, MP_ENOMEM);
    }
    span->requested = size;
    if (clean == npages) /* nothing of it resident yet: its page size can be chosen */
        arena_advise_fresh(span->arena, &pool->acct.os, span->page, (uint32_t)npages, want);
    pool_account_large(pool, (int64_t)size, (int64_t)need, call,
                       LARGE_SPAN);
    acct_live(&pool->acct, (int64_t)size);
    mutex_unlock(&pool->lock);
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

/* Any request, routed (realloc's moves use it with CALL_INTERNAL). */
void *alloc_any(mp_pool *pool, size_t size, size_t align, int call) {
    return alloc_inline(pool, size, align, call);
}

/* mp_alloc past its fast path: every case, checks included. */
static __attribute__((noinline)) void *alloc_full(mp_pool *pool, size_t size) {
    if (MP_UNLIKELY(pool == NULL))
        return fail(NULL, MP_EINVAL);
    return alloc_inline(pool, size, MP_MIN_ALIGN, CALL_ALLOC);
}

/* The fast path is the common case only: a small request whose bin, in this
 * thread's most recent cache, is not empty (the block in *out); false
 * otherwise, nothing done.  It makes no call but a rare publish, so it saves
 * no registers. */
MP_INLINE bool alloc_fast(mp_pool *pool, size_t size, void **out) {
    /* size - 1: a request of 0 bytes takes the full path (debug mode's
     * small.fast_max is 0, and its canary needs room even then). */
    if (MP_LIKELY(pool != NULL && size - 1 < pool->small.fast_max)) {
        mp_tcache *tc = tc_peek(&pool->small);
        if (MP_LIKELY(tc != NULL)) {
            unsigned cls = sc_of_small(size);
            mp_tcache_bin *bin = &tc->bins[cls];
            if (MP_LIKELY(bin->top != bin->entries)) {
                *out = small_take(pool, tc, bin, cls, size, CALL_ALLOC, true);
                return true;
            }
        }
    }
    return false;
}

/* The fast path, else alloc_full: every case, checks included. */
void *mp_alloc(mp_pool *pool, size_t size) {
    void *p;
    if (MP_LIKELY(alloc_fast(pool, size, &p)))
        return p;
    return alloc_full(pool, size);
}

void *mp_alloc_aligned(mp_pool *pool, size_t size, size_t align) {
    if (pool == NULL)
        return fail(NULL, MP_EINVAL);
    if (align == 0 || (align & (align - 1)) || align > ((size_t)1 << 30))
        return fail(pool, MP_EALIGN);
    return alloc_any(pool, size, align < MP_MIN_ALIGN ? MP_MIN_ALIGN : align, CALL_ALLOC);
}

void *mp_calloc(mp_pool *pool, size_t count, size_t size) {
    if (pool == NULL)
        return fail(NULL, MP_EINVAL);
    size_t total;
    if (__builtin_mul_overflow(count, size, &total))
        return fail(pool, MP_EOVERFLOW);
    void *ptr = alloc_any(pool, total, MP_MIN_ALIGN, CALL_CALLOC);
    if (ptr && total <= pool_small_limit(pool))
        memset(ptr, 0, total);
    return ptr;
}

/* Free a block that is not in a slab (large span or direct mapping). */
static MP_COLD int free_large(mp_pool *pool, mp_region *region, void *ptr, size_t size, int call) {
    if (region->kind == MP_REGION_ARENA) {
        mp_arena *arena = (mp_arena *)region;
        mutex_lock(&pool->lock);
        mp_span *span;
        int rc = resolve_large(arena, ptr, size, &span);
        if (rc != MP_OK) {
            mutex_unlock(&pool->lock);
            return pool_error(pool, rc);
        }
        int result = MP_OK;
        if (MP_UNLIKELY(pool->config.debug))
            result = debug_large_freed(pool, ptr, span->requested, span_bytes(span), -1);
        MP_POISON(ptr, span_bytes(span)); /* before the heap may hand it out */
        pool_account_large(pool, -(int64_t)span->requested, -(int64_t)span_bytes(span), call,
                           LARGE_SPAN);
        acct_live(&pool->acct, -(int64_t)span->requested);
        heap_free(arena->heap, span, os_now_ms());
        purge_after_free(pool);
        mutex_unlock(&pool->lock);
        return result;
    }
    mp_direct *d = (mp_direct *)region;
    mutex_lock(&pool->lock);
    int rc = resolve_direct(d, ptr, size);
    if (rc != MP_OK) {
        mutex_unlock(&pool->lock);
        return pool_error(pool, rc);
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
    mp_region *region;
    mp_slab *slab;
    if (MP_UNLIKELY(resolve_region(pool, ptr, &region, &slab) != MP_OK))
        return pool_error(pool, resolve_foreign(pool, ptr));
    if (MP_LIKELY(slab != NULL))
        return small_free(pool, slab, ptr, size, call);
    return free_large(pool, region, ptr, size, call);
}

/* Any free, with the call kind that says which counters it feeds. */
int alloc_free_any(mp_pool *pool, void *ptr, size_t size, int call) {
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
 * (the address map tags the pointer's page with a slab of this pool, it
 * starts a block, the block is live, the size is the one asked with); false
 * when any check fails, the bin is full or the pool is in debug mode, and
 * then nothing has been written: free_full does it all again and reports
 * what is wrong. */
MP_INLINE bool free_fast(mp_pool *pool, void *ptr, size_t size) {
    if (MP_LIKELY(pool != NULL)) {
        mp_tcache *tc = tc_peek_uid(pool->small.fast_uid);
        if (MP_LIKELY(tc != NULL)) {
            mp_slab *slab = slab_at(pool, ptr);
            uint32_t idx, state;
            if (MP_LIKELY(slab != NULL) &&
                MP_LIKELY(slab_locate(slab, ptr, size, &idx, &state) == MP_OK)) {
                unsigned cls = slab->cls;
                mp_tcache_bin *bin = &tc->bins[cls];
                if (MP_LIKELY(bin->top != bin->end)) {
                    MP_POISON(ptr, slab->block_size);
                    small_push(pool, tc, bin, cls, ptr, &slab->state[idx], state, CALL_ALLOC);
                    return true;
                }
            }
        }
    }
    return false;
}

int mp_free(mp_pool *pool, void *ptr, size_t size) {
    if (MP_LIKELY(free_fast(pool, ptr, size)))
        return MP_OK;
    return free_full(pool, ptr, size);
}

/* ---- NEP 49 entry points ------------------------------------------------- */

/* The fast paths inlined into the very functions numpy calls, so a small
 * array costs one call each way; anything else goes to the binding's own
 * functions, which start over (the fast paths wrote nothing). */
void *mp_handler_malloc(void *ctx, size_t size) {
    mp_handler_head *h = ctx;
    void *p;
    if (MP_LIKELY(!h->bypass) && MP_LIKELY(alloc_fast(h->pool, size, &p)))
        return p;
    return h->malloc_full(ctx, size);
}

void mp_handler_free(void *ctx, void *ptr, size_t size) {
    mp_handler_head *h = ctx;
    /* numpy's size is not always the one it asked with: 0, unknown */
    if (MP_LIKELY(!h->bypass) && MP_LIKELY(free_fast(h->pool, ptr, 0)))
        return;
    h->free_full(ctx, ptr, size);
}
