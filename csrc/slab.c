/*
 * slab.c - small blocks: slabs of one size class carved from the page heap.
 *
 * A slab's bookkeeping lives outside the slab (free-index stack and one
 * state word per block: MP_BLOCK_FREE or the requested size), so a stray
 * write into user memory cannot corrupt the allocator, and a free can tell a
 * live block from a free one without trusting the caller.
 *
 * Each class has a lock and a list of slabs with free blocks.  Threads do not
 * come here per block: their caches (tcache.c) refill and flush in batches.
 * Invariant per slab: nblocks == live + nfree + (blocks sitting in caches).
 */
#include "debug.h"

#include <stdlib.h>
#include <string.h>

/* Set up the class table for the pool's small_max. */
void slab_classes_init(mp_pool *pool) {
    pool->class_count = sc_count(pool->config.small_max);
    for (unsigned cls = 0; cls < pool->class_count; cls++) {
        mp_class *c = &pool->classes[cls];
        memset(c, 0, sizeof *c);
        pthread_mutex_init(&c->lock, NULL);
        c->block_size = (uint32_t)sc_block(cls);
        c->slab_pages = sc_slab_pages(c->block_size);
        c->blocks_per_slab = (uint32_t)(((size_t)c->slab_pages << MP_PAGE_SHIFT) / c->block_size);
        c->magic = sc_magic(c->block_size);
        /* ~64 KiB of each class per thread: enough to absorb a burst, small
         * enough that idle threads do not pin much memory. */
        uint32_t cap = (uint32_t)(65536 / c->block_size);
        c->tcache_cap = cap < 4 ? 4 : cap > 64 ? 64 : cap;
    }
}

/* Free the bookkeeping of every slab (the pool is going away with its arenas). */
void slab_classes_destroy(mp_pool *pool) {
    for (mp_arena *arena = pool->heaps[MP_HEAP_PAGES].arenas; arena; arena = arena->next) {
        for (uint32_t page = 0; page < arena->npages; page += arena->spans[page].npages) {
            mp_span *span = &arena->spans[page];
            if (span->kind == MP_SPAN_SLAB)
                free(atomic_load_explicit(&span->slab, memory_order_relaxed));
        }
    }
    for (unsigned cls = 0; cls < pool->class_count; cls++)
        pthread_mutex_destroy(&pool->classes[cls].lock);
}

/* Link a slab into its class's partial list. */
static void partial_push(mp_class *c, mp_slab *slab) {
    slab->prev = NULL;
    slab->next = c->partial;
    if (c->partial)
        c->partial->prev = slab;
    c->partial = slab;
    slab->in_partial = 1;
}

/* Unlink a slab from its class's partial list. */
static void partial_remove(mp_class *c, mp_slab *slab) {
    if (slab->prev)
        slab->prev->next = slab->next;
    else
        c->partial = slab->next;
    if (slab->next)
        slab->next->prev = slab->prev;
    slab->next = slab->prev = NULL;
    slab->in_partial = 0;
}

/* A new slab with every block free, or NULL when memory is refused.
 * Class lock held; takes the pool lock for the span. */
static mp_slab *slab_create(mp_pool *pool, unsigned cls) {
    mp_class *c = &pool->classes[cls];
    uint32_t n = c->blocks_per_slab;
    size_t meta = sizeof(mp_slab) + (size_t)n * sizeof(uint32_t) + (size_t)n * sizeof(uint16_t);
    mp_slab *slab = malloc(meta);
    if (slab == NULL)
        return NULL;
    pthread_mutex_lock(&pool->lock);
    uint32_t clean;
    mp_span *span = heap_alloc(&pool->heaps[MP_HEAP_PAGES], c->slab_pages, 1, &clean);
    if (span == NULL) {
        pthread_mutex_unlock(&pool->lock);
        free(slab);
        return NULL;
    }
    memset(slab, 0, sizeof *slab);
    slab->state = (_Atomic uint32_t *)(slab + 1);
    slab->free_stack = (uint16_t *)(slab->state + n);
    slab->start = span_addr(span);
    slab->span = span;
    slab->nblocks = slab->nfree = n;
    slab->block_size = c->block_size;
    slab->magic = c->magic;
    slab->cls = (uint16_t)cls;
    for (uint32_t i = 0; i < n; i++) {
        atomic_init(&slab->state[i], MP_BLOCK_FREE);
        slab->free_stack[i] = (uint16_t)(n - 1 - i); /* lowest address first */
    }
    span->kind = MP_SPAN_SLAB;
    if (MP_UNLIKELY(pool->config.debug))
        debug_slab_fill(slab); /* free blocks read 0xDF (checked on reuse) */
    for (uint32_t p = 0; p < span->npages; p++)
        atomic_store_explicit(&span->arena->spans[span->page + p].slab, slab,
                              memory_order_release);
    pool->metadata_bytes += meta;
    pthread_mutex_unlock(&pool->lock);
    ctr_add(&c->slabs, 1);
    ctr_add(&c->blocks, n);
    return slab;
}

/* Give an empty slab's span back to the page heap.  Class lock held. */
static void slab_destroy(mp_pool *pool, mp_slab *slab) {
    mp_class *c = &pool->classes[slab->cls];
    mp_span *span = slab->span;
    size_t meta = sizeof(mp_slab) + (size_t)slab->nblocks * (sizeof(uint32_t) + sizeof(uint16_t));
    pthread_mutex_lock(&pool->lock);
    for (uint32_t p = 0; p < span->npages; p++)
        atomic_store_explicit(&span->arena->spans[span->page + p].slab, NULL,
                              memory_order_relaxed);
    heap_free(&pool->heaps[MP_HEAP_PAGES], span, os_now_ms());
    pool->metadata_bytes -= meta;
    pthread_mutex_unlock(&pool->lock);
    ctr_add(&c->slabs, -1);
    ctr_add(&c->blocks, -(int64_t)slab->nblocks);
    free(slab);
}

/* Move up to `want` free blocks of class `cls` into `out`; returns how many
 * (0 only when no memory could be had). */
uint32_t slab_refill(mp_pool *pool, unsigned cls, mp_tcache_entry *out, uint32_t want) {
    mp_class *c = &pool->classes[cls];
    uint32_t n = 0;
    pthread_mutex_lock(&c->lock);
    while (n < want) {
        mp_slab *slab = c->partial;
        if (slab == NULL) {
            slab = c->spare;
            c->spare = NULL;
            if (slab == NULL && (slab = slab_create(pool, cls)) == NULL)
                break;
            partial_push(c, slab);
        }
        while (n < want && slab->nfree > 0) {
            uint32_t idx = slab->free_stack[--slab->nfree];
            out[n].ptr = slab->start + (size_t)idx * slab->block_size;
            out[n].slab = slab;
            n++;
        }
        if (slab->nfree == 0)
            partial_remove(c, slab);
    }
    pthread_mutex_unlock(&c->lock);
    return n;
}

/* Take back free blocks of class `cls` (their state is already FREE); a slab
 * that becomes empty is kept as the class's spare or given to the heap. */
void slab_return(mp_pool *pool, unsigned cls, const mp_tcache_entry *blocks, uint32_t n) {
    mp_class *c = &pool->classes[cls];
    pthread_mutex_lock(&c->lock);
    for (uint32_t i = 0; i < n; i++) {
        mp_slab *slab = blocks[i].slab;
        uint32_t idx = sc_index((uint64_t)(blocks[i].ptr - slab->start), slab->magic);
        slab->free_stack[slab->nfree++] = (uint16_t)idx;
        if (slab->nfree == 1 && slab != c->spare)
            partial_push(c, slab);
        if (slab->nfree == slab->nblocks) {
            if (slab->in_partial)
                partial_remove(c, slab);
            if (c->spare == NULL)
                c->spare = slab;
            else
                slab_destroy(pool, slab);
        }
    }
    pthread_mutex_unlock(&c->lock);
}

/* Give the spare slab of every class back to the heap (for mp_trim). */
void slab_drop_spares(mp_pool *pool) {
    for (unsigned cls = 0; cls < pool->class_count; cls++) {
        mp_class *c = &pool->classes[cls];
        pthread_mutex_lock(&c->lock);
        if (c->spare) {
            slab_destroy(pool, c->spare);
            c->spare = NULL;
        }
        pthread_mutex_unlock(&c->lock);
    }
}

/* Count broken invariants of one slab; adds its live blocks/bytes and the
 * blocks that are free but not in its stack (they sit in thread caches).
 * Class and pool locks held. */
size_t slab_check(const mp_pool *pool, const mp_slab *slab, uint64_t *live_blocks,
                  uint64_t *live_bytes, uint64_t *cached) {
    const mp_class *c = &pool->classes[slab->cls];
    size_t bad = 0;
    uint64_t free_states = 0;
    bad += slab->block_size != c->block_size || slab->nblocks != c->blocks_per_slab;
    bad += slab->nfree > slab->nblocks;
    for (uint32_t i = 0; i < slab->nblocks; i++) {
        uint32_t state = atomic_load_explicit(&slab->state[i], memory_order_relaxed);
        if (state == MP_BLOCK_FREE) {
            free_states++;
        } else {
            (*live_blocks)++;
            *live_bytes += state;
            bad += state > slab->block_size;
        }
    }
    for (uint32_t i = 0; i < slab->nfree && i < slab->nblocks; i++) {
        uint16_t idx = slab->free_stack[i];
        bad += idx >= slab->nblocks ||
               atomic_load_explicit(&slab->state[idx], memory_order_relaxed) != MP_BLOCK_FREE;
    }
    bad += free_states < slab->nfree;
    *cached += free_states - (free_states < slab->nfree ? free_states : slab->nfree);
    bool should_be_partial = slab->nfree > 0 && slab != c->spare;
    bad += should_be_partial != (slab->in_partial != 0);
    bad += slab == c->spare && slab->nfree != slab->nblocks;
    return bad;
}

/* Mark (or unmark) the blocks held by the surviving thread caches, so the
 * repair below can tell them from lost ones. */
static void mark_cached(mp_pool *pool, uint32_t from, uint32_t to) {
    for (mp_tcache *tc = pool->tcaches; tc; tc = tc->next)
        for (unsigned cls = 0; cls < pool->class_count; cls++)
            for (uint32_t i = 0; i < tc->bins[cls].count; i++) {
                mp_tcache_entry *e = &tc->bins[cls].entries[i];
                uint32_t idx = sc_index((uint64_t)(e->ptr - e->slab->start), e->slab->magic);
                if (atomic_load_explicit(&e->slab->state[idx], memory_order_relaxed) == from)
                    atomic_store_explicit(&e->slab->state[idx], to, memory_order_relaxed);
            }
}

/* In a forked child, after the caches of vanished threads were dropped:
 * the block state words are the truth.  A vanished thread may have been
 * anywhere in a lock-free fast path (a block popped but not yet marked,
 * marked but not yet counted, freed but not yet cached), so every free block
 * that is in no free stack and no surviving cache goes back to its slab, and
 * the per-class live counters are recomputed from the states.  Runs single-
 * threaded with fresh locks. */
void slab_repair_after_fork(mp_pool *pool) {
    int64_t live_blocks[MP_MAX_CLASSES] = {0}, live_bytes[MP_MAX_CLASSES] = {0};
    mark_cached(pool, MP_BLOCK_FREE, MP_BLOCK_CACHED);
    for (mp_arena *arena = pool->heaps[MP_HEAP_PAGES].arenas; arena; arena = arena->next) {
        for (uint32_t page = 0; page < arena->npages && arena->spans[page].npages;
             page += arena->spans[page].npages) {
            mp_span *span = &arena->spans[page];
            if (span->kind != MP_SPAN_SLAB)
                continue;
            mp_slab *slab = atomic_load_explicit(&span->slab, memory_order_relaxed);
            mp_class *c = &pool->classes[slab->cls];
            uint8_t *in_stack = calloc(slab->nblocks, 1);
            if (in_stack == NULL)
                continue; /* the slab keeps its lost blocks: a leak, not a fault */
            for (uint32_t i = 0; i < slab->nfree; i++)
                in_stack[slab->free_stack[i]] = 1;
            for (uint32_t idx = 0; idx < slab->nblocks; idx++) {
                uint32_t state = atomic_load_explicit(&slab->state[idx], memory_order_relaxed);
                if (state == MP_BLOCK_FREE && !in_stack[idx]) {
                    slab->free_stack[slab->nfree++] = (uint16_t)idx;
                } else if (state != MP_BLOCK_FREE && state != MP_BLOCK_CACHED) {
                    live_blocks[slab->cls]++;
                    live_bytes[slab->cls] += state;
                }
            }
            free(in_stack);
            if (slab->nfree > 0 && !slab->in_partial && slab != c->spare)
                partial_push(c, slab);
        }
    }
    mark_cached(pool, MP_BLOCK_CACHED, MP_BLOCK_FREE);
    /* central = truth - what the surviving caches account for */
    for (unsigned cls = 0; cls < pool->class_count; cls++) {
        for (mp_tcache *tc = pool->tcaches; tc; tc = tc->next) {
            live_blocks[cls] -= ctr_get(&tc->counters.class_live_blocks[cls]);
            live_bytes[cls] -= ctr_get(&tc->counters.class_live_bytes[cls]);
        }
        atomic_store_explicit(&pool->central.class_live_blocks[cls], live_blocks[cls],
                              memory_order_relaxed);
        atomic_store_explicit(&pool->central.class_live_bytes[cls], live_bytes[cls],
                              memory_order_relaxed);
    }
}
