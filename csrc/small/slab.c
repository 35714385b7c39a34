/*
 * slab.c - small blocks: slabs of one size class carved from the page heap.
 *
 * A slab's bookkeeping lives outside the slab (free-index stack and one
 * state word per block: MP_BLOCK_FREE or the requested size), so a stray
 * write into user memory cannot corrupt the allocator, and a free can tell a
 * live block from a free one without trusting the caller.
 *
 * Each class has a lock and a list of slabs with free blocks.  Threads do not
 * come here per block: their caches (tc.c) refill and flush in batches.
 * Invariant per slab: nblocks == live + nfree + (blocks sitting in caches).
 *
 * Per-thread slabs (partial.c): a cache refills from slabs it owns first.
 *
 * Slabs of a class grow: the first is the fewest pages holding 2 blocks
 * and 2 pages (8 KiB up to 4 KiB blocks), each next one twice the one before, up to
 * sc_slab_pages (64 KiB or 8 blocks, up to twice that).  A program with
 * many array sizes touches dozens of classes with a block or two each;
 * full-length first slabs cost it 64-256 KiB of resident memory per class.
 * Length, block count and bookkeeping are per slab; the number of slabs
 * the class holds picks the next length (class_slab_steps).
 */
#include "small.h"

#include <stdlib.h>
#include <string.h>

/* Fill the class's slab lengths.  The first slab is the fewest pages that
 * hold 2 blocks and 2 pages: a class that serves one array pins a few pages
 * of it, not a 64 KiB slab (most of a slab's pages stay resident: it is
 * usually carved from a dirty hole).  Not one page: single-page slabs, made
 * and dropped as drifting sizes move between classes, split the page heap's
 * holes into fragments large blocks cannot use (the README's "Small
 * blocks" has the stress and demo figures).  Each next length doubles the one before, so a busy
 * class reaches full-length slabs after a few and its slab count stays
 * logarithmic in its demand until then. */
static void class_slab_steps(mp_class *c, bool mesh) {
    uint32_t max = sc_slab_pages(c->block_size);
    if (mesh) { /* meshing pairs slabs of one length: one short length */
        c->slab_steps = 1;
        c->slab_pages[0] = sc_mesh_slab_pages(c->block_size);
        return;
    }
    size_t first = 2 * (size_t)c->block_size;
    if (first < 2 * MP_PAGE_SIZE)
        first = 2 * MP_PAGE_SIZE;
    uint32_t pages = sc_slab_grow_pages(c->block_size, first);
    c->slab_steps = 0;
    for (;;) {
        if (c->slab_steps == MP_SLAB_STEPS - 1)
            pages = max; /* not reached (see MP_SLAB_STEPS): a guard */
        c->slab_pages[c->slab_steps++] = pages;
        if (pages == max)
            break;
        pages = sc_slab_grow_pages(c->block_size, (size_t)pages << (MP_PAGE_SHIFT + 1));
    }
}

/* Set up the class table for the pool's small_max. */
void slab_classes_init(mp_small *s, size_t small_max) {
    s->class_count = sc_count(small_max);
    for (unsigned cls = 0; cls < s->class_count; cls++) {
        mp_class *c = &s->classes[cls];
        memset(c, 0, sizeof *c);
        mutex_init(&c->lock, MP_RANK_CLASS, cls);
        c->block_size = (uint32_t)sc_block(cls);
        c->magic = sc_magic(c->block_size);
        /* ~64 KiB of each class per thread: enough to absorb a burst, small
         * enough that idle threads do not pin much memory. */
        uint32_t cap = (uint32_t)(65536 / c->block_size);
        c->tcache_cap = cap < 4 ? 4 : cap > 64 ? 64 : cap;
        class_slab_steps(c, s->mesh);
    }
}

/* Free the bookkeeping of every slab (the pool is going away with its arenas). */
void slab_classes_destroy(mp_small *s) {
    HEAP_FOREACH_ARENA(s->pages, arena) {
        ARENA_FOREACH_SPAN(arena, span) {
            if (span->kind != MP_SPAN_SLAB)
                continue;
            /* the map is shared by every pool: untag before the slab goes */
            map_tag_pages(span_addr(span), span->npages, s->pages->owner, NULL);
            free(atomic_load_explicit(&span->slab, memory_order_relaxed));
        }
    }
    for (unsigned cls = 0; cls < s->class_count; cls++)
        mutex_destroy(&s->classes[cls].lock);
}

/* Take every class lock, in ascending order (fork prepare, the checker). */
void slab_lock_all(mp_small *s) {
    for (unsigned cls = 0; cls < s->class_count; cls++)
        mutex_lock(&s->classes[cls].lock);
}

/* Release what slab_lock_all took. */
void slab_unlock_all(mp_small *s) {
    for (unsigned cls = s->class_count; cls-- > 0;)
        mutex_unlock(&s->classes[cls].lock);
}

/* In a forked child: fresh class locks (their holders may not exist). */
void slab_reinit_locks(mp_small *s) {
    for (unsigned cls = 0; cls < s->class_count; cls++)
        mutex_init(&s->classes[cls].lock, MP_RANK_CLASS, cls);
}

/* Words of a slab's purged-page bitmap. */
static size_t purged_words(uint32_t pages) { return (pages + 63) / 64; }

/* Bytes before a slab's state words: the descriptor and the purged-page
 * bitmap, padded so the states start a cache line. */
static size_t slab_states_offset(uint32_t pages) {
    return MP_ALIGN_UP(sizeof(mp_slab) + purged_words(pages) * sizeof(uint64_t), MP_CACHE_LINE);
}

/* Bytes of a slab's out-of-band bookkeeping: the descriptor, the purged-page
 * bitmap, one state word and one stack entry per block (in that order, so
 * every array stays aligned), in whole cache lines. */
static size_t slab_meta_bytes(uint32_t nblocks, uint32_t pages) {
    return MP_ALIGN_UP(slab_states_offset(pages) +
                           (size_t)nblocks * (sizeof(uint32_t) + sizeof(uint16_t)),
                       MP_CACHE_LINE);
}


/* A new slab with every block free, or NULL when memory is refused.
 * Class lock held; takes the pool lock for the span. */
static mp_slab *slab_create(mp_small *s, unsigned cls) {
    mp_class *c = &s->classes[cls];
    int64_t held = ctr_get(&c->slabs); /* class lock: this is its only writer */
    uint32_t pages = c->slab_pages[held < c->slab_steps ? held : c->slab_steps - 1];
    uint32_t n = (uint32_t)(((size_t)pages << MP_PAGE_SHIFT) / c->block_size);
    size_t meta = slab_meta_bytes(n, pages);
    mp_slab *slab = aligned_alloc(MP_CACHE_LINE, meta);
    if (slab == NULL)
        return NULL;
    mutex_lock(s->heap_lock);
    uint32_t clean;
    mp_span *span = decay_alloc(s->pages, pages, 1, &clean);
    if (span == NULL) {
        mutex_unlock(s->heap_lock);
        free(slab);
        return NULL;
    }
    memset(slab, 0, sizeof *slab);
    slab->purged = (uint64_t *)(slab + 1);
    memset(slab->purged, 0, purged_words(pages) * sizeof(uint64_t));
    slab->state = (_Atomic uint32_t *)((char *)slab + slab_states_offset(pages));
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
    if (MP_UNLIKELY(s->debug)) {
        /* free blocks read MP_FILL_FREED (debug mode checks it on reuse) */
        size_t bytes = (size_t)n * slab->block_size;
        MP_UNPOISON(slab->start, bytes);
        memset(slab->start, MP_FILL_FREED, bytes);
        MP_POISON(slab->start, bytes);
    }
    for (uint32_t p = 0; p < span->npages; p++)
        atomic_store_explicit(&span->arena->spans[span->page + p].slab, slab,
                              memory_order_release);
    map_tag_pages(slab->start, span->npages, s->pages->owner, slab);
    s->acct->metadata += meta;
    mutex_unlock(s->heap_lock);
    ctr_add(&c->slabs, 1);
    ctr_add(&c->blocks, n);
    return slab;
}

/* Give an empty slab's span back to the page heap.  Class lock held. */
static void slab_destroy(mp_small *s, mp_slab *slab) {
    mp_class *c = &s->classes[slab->cls];
    mp_span *span = slab->span;
    MP_ASSERT(slab->nfree == slab->nblocks, "only an empty slab goes back to the heap");
    size_t meta = slab_meta_bytes(slab->nblocks, span->npages);
    mutex_lock(s->heap_lock);
    map_tag_pages(slab->start, span->npages, s->pages->owner, NULL);
    for (uint32_t p = 0; p < span->npages; p++)
        atomic_store_explicit(&span->arena->spans[span->page + p].slab, NULL,
                              memory_order_relaxed);
    heap_free(s->pages, span, os_now_ms());
    s->acct->metadata -= meta;
    mutex_unlock(s->heap_lock);
    ctr_add(&c->slabs, -1);
    ctr_add(&c->blocks, -(int64_t)slab->nblocks);
    free(slab);
}

/* An empty slab leaves: kept as its class's spare, or given back to the
 * heap.  Class lock held. */
void slab_release_empty(mp_small *s, mp_slab *slab) {
    mp_class *c = &s->classes[slab->cls];
    if (slab->in_partial)
        partial_remove(c, slab);
    slab->owner = NULL;
    if (c->spare == NULL)
        c->spare = slab;
    else
        slab_destroy(s, slab);
}

/* Set bit i of `bits` (zeroed by the caller, nblocks bits) for every block
 * not in the slab's free stack: live, or cached by a thread, which may hand
 * it out without the class lock.  Returns how many.  Class lock held. */
uint32_t slab_occupancy(const mp_slab *slab, uint64_t *bits) {
    uint32_t words = (slab->nblocks + 63) / 64;
    for (uint32_t w = 0; w < words; w++)
        bits[w] = ~(uint64_t)0;
    if (slab->nblocks % 64)
        bits[words - 1] = ((uint64_t)1 << (slab->nblocks % 64)) - 1;
    for (uint32_t i = 0; i < slab->nfree; i++)
        bits[slab->free_stack[i] / 64] &= ~((uint64_t)1 << (slab->free_stack[i] % 64));
    return slab->nblocks - slab->nfree;
}

/* The pages a block of the slab covers: [*first, *last]. */
static void block_pages(const mp_slab *slab, uint32_t idx, uint32_t *first, uint32_t *last) {
    size_t start = (size_t)idx * slab->block_size;
    *first = (uint32_t)(start >> MP_PAGE_SHIFT);
    *last = (uint32_t)((start + slab->block_size - 1) >> MP_PAGE_SHIFT);
}

/* Whether page `page` of the slab was given back. */
static bool page_purged(const mp_slab *slab, uint32_t page) {
    return bits_test(slab->purged, page);
}

/* A block about to be handed out covers pages given back: count them as
 * resident again (the caller's first write faults them in, zeroed).  Class
 * lock held; takes the pool lock. */
static MP_COLD void slab_unpurge_block(mp_small *s, mp_slab *slab, uint32_t idx) {
    uint32_t first, last;
    block_pages(slab, idx, &first, &last);
    bool any = false;
    for (uint32_t p = first; p <= last && !any; p++)
        any = page_purged(slab, p);
    if (!any)
        return;
    mp_span *span = slab->span;
    mutex_lock(s->heap_lock);
    for (uint32_t p = first; p <= last; p++) {
        if (!page_purged(slab, p))
            continue;
        bits_clear(slab->purged, p, 1);
        slab->purged_pages--;
        heap_touch(s->pages, span->arena, span->page + p, 1);
    }
    mutex_unlock(s->heap_lock);
}

/* Give back the pages of `slab` that only free blocks of its stack cover
 * (blocks in thread caches count as in use: they are handed out without
 * coming here).  Class lock held; takes the pool lock.  Returns bytes. */
static size_t slab_purge_pages(mp_small *s, mp_slab *slab) {
    mp_span *span = slab->span;
    uint32_t pages = span->npages;
    uint8_t *page_used = calloc(pages, 1);
    uint8_t *in_stack = calloc(slab->nblocks, 1);
    size_t given = 0;
    if (page_used == NULL || in_stack == NULL)
        goto out; /* nothing given back: memory stays resident, no harm */
    for (uint32_t i = 0; i < slab->nfree; i++)
        in_stack[slab->free_stack[i]] = 1;
    for (uint32_t idx = 0; idx < slab->nblocks; idx++) {
        if (in_stack[idx])
            continue;
        uint32_t first, last;
        block_pages(slab, idx, &first, &last);
        for (uint32_t p = first; p <= last; p++)
            page_used[p] = 1;
    }
    mutex_lock(s->heap_lock);
    for (uint32_t p = 0; p < pages;) {
        if (page_used[p] || page_purged(slab, p)) {
            p++;
            continue;
        }
        uint32_t run = 1;
        while (p + run < pages && !page_used[p + run] && !page_purged(slab, p + run))
            run++;
        arena_purge(span->arena, &s->acct->os, slab->start + ((size_t)p << MP_PAGE_SHIFT),
                 (size_t)run << MP_PAGE_SHIFT);
        arena_clear_dirty(span->arena, span->page + p, run);
        bits_set(slab->purged, p, run);
        slab->purged_pages += run;
        given += (size_t)run << MP_PAGE_SHIFT;
        p += run;
    }
    acct_released(s->acct, given);
    mutex_unlock(s->heap_lock);
out:
    free(page_used);
    free(in_stack);
    return given;
}

/* Give back the whole free pages of every slab (spares included) whose
 * blocks came back at least decay_ms ago: holes inside slabs then cost no
 * memory either.  Not in debug mode, where free blocks must keep their fill
 * pattern for the write-after-free check.  Takes class locks, then the pool
 * lock: call without the pool lock.  Returns bytes given back; *next_due_ms
 * (may be NULL) gets when the youngest slab skipped will have aged
 * (INT64_MAX: none skipped). */
size_t slab_purge_free_pages(mp_small *s, int64_t now_ms, int64_t decay_ms,
                             int64_t *next_due_ms) {
    size_t given = 0;
    int64_t next = INT64_MAX;
    for (unsigned cls = 0; cls < s->class_count && !s->debug; cls++) {
        mp_class *c = &s->classes[cls];
        mutex_lock(&c->lock);
        mp_link *l = c->partial.head;
        int list = 0;
        for (;;) { /* the partial list, the owned list, then the spare */
            if (l == NULL && list == 0) {
                l = c->owned.head;
                list = 1;
            }
            mp_slab *slab = l ? LIST_ENTRY(l, mp_slab, link) : c->spare;
            if (slab == NULL)
                break;
            if (now_ms - slab->returned_ms >= decay_ms)
                given += slab_purge_pages(s, slab);
            else if (slab->returned_ms + decay_ms < next)
                next = slab->returned_ms + decay_ms;
            if (l == NULL)
                break;
            l = l->next;
        }
        mutex_unlock(&c->lock);
    }
    if (next_due_ms)
        *next_due_ms = next;
    return given;
}

/* The slab `tc` refills from next: one it owns, else one it claims (no live
 * cache's, the spare or, when nothing was had yet, a new one); when memory
 * is refused, another cache's.  NULL: nothing (more) to be had.  Class
 * lock held. */
static mp_slab *refill_source(mp_small *s, mp_class *c, unsigned cls, mp_tcache *tc, uint32_t had) {
    mp_slab *slab = LIST_ENTRY(tc->owned[cls].head, mp_slab, own_link);
    if (slab)
        return slab;
    slab = LIST_ENTRY(c->partial.head, mp_slab, link);
    if (slab) {
        partial_remove(c, slab);
    } else {
        slab = c->spare;
        c->spare = NULL;
        /* Once some blocks were had, a short refill beats a new slab: a
         * small first slab then gives the cache what it holds rather than
         * pulling in the next, twice longer, slab at once. */
        if (slab == NULL && had > 0)
            return NULL;
        if (slab == NULL && (slab = slab_create(s, cls)) == NULL)
            return LIST_ENTRY(c->owned.head, mp_slab, link); /* memory refused */
    }
    partial_claim(s, slab, tc);
    partial_push(c, slab);
    return slab;
}

/* Move up to `want` free blocks of class `cls` into `out` (tc's bin), from
 * the slabs refill_source picks; returns how many (0 only when no memory
 * could be had). */
uint32_t slab_refill(mp_small *s, mp_tcache *tc, unsigned cls, mp_tcache_entry *out,
                     uint32_t want) {
    mp_class *c = &s->classes[cls];
    uint32_t n = 0;
    mutex_lock(&c->lock);
    while (n < want) {
        mp_slab *slab = refill_source(s, c, cls, tc, n);
        if (slab == NULL)
            break;
        while (n < want && slab->nfree > 0) {
            uint32_t idx = slab->free_stack[--slab->nfree];
            MP_ASSERT(atomic_load_explicit(&slab->state[idx], memory_order_relaxed) ==
                          MP_BLOCK_FREE, "a block in a free stack is free");
            if (MP_UNLIKELY(slab->purged_pages))
                slab_unpurge_block(s, slab, idx);
            out[n].ptr = slab->start + (size_t)idx * slab->block_size;
            out[n].state = &slab->state[idx];
            n++;
        }
        if (slab->nfree == 0)
            partial_remove(c, slab);
    }
    mutex_unlock(&c->lock);
    return n;
}

/* Whether the free stack of `slab` holds block idx (O(stack): expensive
 * assertions only). */
static inline bool slab_stack_holds(const mp_slab *slab, uint32_t idx) {
    for (uint32_t i = 0; i < slab->nfree; i++)
        if (slab->free_stack[i] == idx)
            return true;
    return false;
}

/* Blocks came back to slabs: make sure the purger sweeps them a decay
 * later (once per sweep: the common case is one atomic load). */
static void slab_sweep_schedule(mp_small *s, int64_t now) {
    int64_t decay_ms = atomic_load_explicit(&s->decay_ms, memory_order_relaxed);
    if (decay_ms <= 0 || s->debug ||
        atomic_load_explicit(&s->slab_sweep_due_ms, memory_order_relaxed) != 0)
        return;
    mutex_lock(s->heap_lock);
    if (atomic_load_explicit(&s->slab_sweep_due_ms, memory_order_relaxed) == 0) {
        atomic_store_explicit(&s->slab_sweep_due_ms, now + decay_ms, memory_order_relaxed);
        acct_dirty(s->acct); /* the owner's purger must wake for the sweep */
    }
    mutex_unlock(s->heap_lock);
}

/* Take back free blocks of class `cls` (their state is already FREE); a slab
 * that becomes empty is kept as the class's spare or given to the heap. */
void slab_return(mp_small *s, unsigned cls, const mp_tcache_entry *blocks, uint32_t n) {
    mp_class *c = &s->classes[cls];
    int64_t now = os_now_ms();
    mutex_lock(&c->lock);
    for (uint32_t i = 0; i < n; i++) {
        mp_slab *slab = slab_at(s->pages->owner, blocks[i].ptr);
        MP_ASSERT(slab != NULL, "a returned block lies on a slab page of its pool");
        slab->returned_ms = now;
        uint32_t idx = sc_index((uint64_t)(blocks[i].ptr - slab->start), slab->magic);
        MP_ASSERT(slab->cls == cls && idx < slab->nblocks && slab->nfree < slab->nblocks,
                  "a returned block belongs to a slab of its class with room in the stack");
        MP_ASSERT(atomic_load_explicit(&slab->state[idx], memory_order_relaxed) == MP_BLOCK_FREE,
                  "a block goes back to its slab only once marked free");
        MP_ASSERT_EXPENSIVE(!slab_stack_holds(slab, idx),
                            "a block is in its slab's free stack at most once");
        slab->free_stack[slab->nfree++] = (uint16_t)idx;
        if (MP_UNLIKELY(slab->mesh_owner != NULL)) { /* meshed: not allocated from */
            if (slab->nfree == slab->nblocks)
                mesh_member_empty(s, slab);
            continue;
        }
        if (slab->nfree == 1 && slab != c->spare)
            partial_push(c, slab);
        if (slab->nfree == slab->nblocks)
            slab_release_empty(s, slab);
    }
    mutex_unlock(&c->lock);
    slab_sweep_schedule(s, now);
}

/* Give the spare slab of every class back to the heap (for mp_trim). */
void slab_drop_spares(mp_small *s) {
    for (unsigned cls = 0; cls < s->class_count; cls++) {
        mp_class *c = &s->classes[cls];
        mutex_lock(&c->lock);
        if (c->spare) {
            slab_destroy(s, c->spare);
            c->spare = NULL;
        }
        mutex_unlock(&c->lock);
    }
}

/* Count broken invariants of one slab into `log`; adds its live blocks/bytes
 * and the blocks that are free but not in its stack (they sit in thread
 * caches).  Class and pool locks held. */
size_t slab_check(const mp_small *s, const mp_slab *slab, mp_check_log *log,
                  uint64_t *live_blocks, uint64_t *live_bytes, uint64_t *cached) {
    const mp_class *c = &s->classes[slab->cls];
    size_t bad = 0;
    uint64_t free_states = 0;
    /* A slab is one of its class's lengths and holds every block that fits. */
    bool known_length = false;
    for (uint32_t k = 0; k < c->slab_steps; k++)
        known_length |= slab->span->npages == c->slab_pages[k];
    bad += check_fail(log, slab->block_size != c->block_size || slab->magic != c->magic,
                      "slab: block size or reciprocal differs from its class's");
    bad += check_fail(log, !known_length, "slab: a length that is none of its class's");
    bad += check_fail(log, slab->nblocks != span_bytes(slab->span) / c->block_size,
                      "slab: does not hold every block that fits");
    bad += check_fail(log, slab->nfree > slab->nblocks, "slab: more free entries than blocks");
    for (uint32_t i = 0; i < slab->nblocks; i++) {
        uint32_t state = atomic_load_explicit(&slab->state[i], memory_order_relaxed);
        if (state == MP_BLOCK_FREE) {
            free_states++;
        } else {
            (*live_blocks)++;
            *live_bytes += state;
            bad += check_fail(log, state > slab->block_size, "slab: a live block larger than its class");
            uint32_t first, last;
            block_pages(slab, i, &first, &last);
            for (uint32_t p = first; p <= last; p++)
                bad += check_fail(log, page_purged(slab, p), "slab: a live block on a purged page");
        }
    }
    for (uint32_t i = 0; i < slab->nfree && i < slab->nblocks; i++) {
        uint16_t idx = slab->free_stack[i];
        bad += check_fail(log, idx >= slab->nblocks ||
                                   atomic_load_explicit(&slab->state[idx], memory_order_relaxed) !=
                                       MP_BLOCK_FREE,
                          "slab: the free stack holds a block that is not free");
    }
    bad += check_fail(log, free_states < slab->nfree, "slab: fewer free blocks than stack entries");
    *cached += free_states - (free_states < slab->nfree ? free_states : slab->nfree);
    bool should_be_partial = slab->nfree > 0 && slab != c->spare && slab->mesh_owner == NULL;
    bad += check_fail(log, should_be_partial != (slab->in_partial != 0),
                      "slab: in the partial list iff it has free blocks and is not the spare");
    bad += check_fail(log, partial_owner_lost(slab),
                      "slab: in an owner's list, but no live cache owns it");
    bad += check_fail(log, slab->in_partial == LISTED_PARTIAL && slab->owner != NULL,
                      "slab: in its class's partial list, but owned");
    bad += check_fail(log, slab == c->spare && slab->nfree != slab->nblocks,
                      "slab: the spare is not empty");
    return bad;
}

/* Mark (or unmark) the blocks held by the surviving thread caches, so the
 * repair below can tell them from lost ones. */
static void mark_cached(mp_small *s, uint32_t from, uint32_t to) {
    LIST_FOREACH(tc, &s->tcaches, mp_tcache, link)
        for (unsigned cls = 0; cls < s->class_count; cls++)
            for (uint32_t i = 0; i < tc_bin_count(&tc->bins[cls]); i++) {
                _Atomic uint32_t *state = tc->bins[cls].entries[i].state;
                if (atomic_load_explicit(state, memory_order_relaxed) == from)
                    atomic_store_explicit(state, to, memory_order_relaxed);
            }
}

/* In a forked child, after the caches of vanished threads were dropped:
 * the block state words are the truth.  A vanished thread may have been
 * anywhere in a lock-free fast path (a block popped but not yet marked,
 * marked but not yet counted, freed but not yet cached), so every free block
 * that is in no free stack and no surviving cache goes back to its slab, and
 * the per-class live counters are recomputed from the states.  Runs single-
 * threaded with fresh locks. */
void slab_repair_after_fork(mp_small *s) {
    int64_t live_blocks[MP_MAX_CLASSES] = {0}, live_bytes[MP_MAX_CLASSES] = {0};
    mark_cached(s, MP_BLOCK_FREE, MP_BLOCK_CACHED);
    HEAP_FOREACH_ARENA(s->pages, arena) {
        ARENA_FOREACH_SPAN(arena, span) {
            if (span->kind != MP_SPAN_SLAB)
                continue;
            mp_slab *slab = atomic_load_explicit(&span->slab, memory_order_relaxed);
            mp_class *c = &s->classes[slab->cls];
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
            if (slab->nfree > 0 && !slab->in_partial && slab != c->spare && !slab->mesh_owner)
                partial_push(c, slab);
        }
    }
    mark_cached(s, MP_BLOCK_CACHED, MP_BLOCK_FREE);
    /* uncached = truth - what the surviving caches account for */
    for (unsigned cls = 0; cls < s->class_count; cls++) {
        LIST_FOREACH(tc, &s->tcaches, mp_tcache, link) {
            live_blocks[cls] -= ctr_class_live(&tc->counters, cls);
            live_bytes[cls] -= ctr_get(&tc->counters.class_live_bytes[cls]);
        }
        /* the difference goes into the uncached allocations and, so that
         * the public allocation count does not move, into the internal ones */
        int64_t fix = live_blocks[cls] - ctr_class_live(&s->uncached, cls);
        ctr_add(&s->uncached.class_allocs[cls], fix);
        ctr_add(&s->uncached.small_internal_allocs, fix);
        atomic_store_explicit(&s->uncached.class_live_bytes[cls], live_bytes[cls],
                              memory_order_relaxed);
    }
}
