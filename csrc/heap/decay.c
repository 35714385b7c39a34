/*
 * decay.c - when the pages of free spans go back to the OS.
 *
 * A free span keeps its resident pages in the heap's dirty LRU (heap.c).  A
 * loop that frees and re-allocates within the decay keeps them: zero page
 * faults.  What stays free past the decay goes back, oldest first, but only
 * beyond what the heap's recent peak demand would need again (hysteresis).
 * Holes are never given back for touching fresh pages below the peak: the
 * owner gives them back when fresh pages would raise it (acct.over_peak).
 *
 * One-way: decay uses the heap (heap.c), which never calls here.  Every
 * function here runs under the owner's lock (the pool lock).
 */
#include "heap.h"

#include <limits.h>

/* Give back the resident granules among the last `n` of the free span
 * `span`; its head stays resident (a carve takes a span's first granules),
 * and a span left with none leaves the LRU for the clean index. */
void decay_purge_tail(mp_heap *heap, mp_span *span, uint32_t n) {
    MP_ASSERT(span->kind == MP_SPAN_FREE && n <= span->npages, "only free granules are purged");
    uint32_t first = span->npages - n;
    /* In a heap whose extents earn huge pages, the purge takes the whole
     * extent it starts in when the span holds it: a clean extent can be
     * faulted again as one huge page, a part of one only in base pages. */
    if (heap->huge_extents) {
        unsigned shift = MP_HUGE_SHIFT - heap->granule_shift;
        uint32_t abs = span->page + first;
        uint32_t down = abs & ~((1u << shift) - 1);
        if (down >= span->page)
            first = down - span->page;
        else
            first = 0;
        n = span->npages - first;
    }
    uint32_t dirty = arena_count_dirty(span->arena, span->page + first, n);
    if (dirty == 0)
        return;
    arena_purge(span->arena, &heap->acct->os, (char *)span_addr(span) + ((size_t)first << heap->granule_shift),
             (size_t)n << heap->granule_shift);
    arena_clear_dirty(span->arena, span->page + first, n);
    span->dirty -= dirty;
    heap->dirty_free_granules -= dirty;
    acct_released(heap->acct, (uint64_t)dirty << heap->granule_shift);
    if (span->dirty == 0) {
        heap_lru_remove(heap, span);
        heap_span_cleaned(heap, span);
    }
}

/* Give back every resident granule of one free span (it leaves the LRU). */
static void span_purge(mp_heap *heap, mp_span *span) {
    decay_purge_tail(heap, span, span->npages);
}

/* Give back about `max_granules` dirty granules of the oldest free span:
 * all of it when it holds no more, else a tail holding at least that many
 * (its clean granules may sit inside the tail), since purging a whole
 * 30-60 MiB hole to shed a few MiB re-faults all of it later.  Returns
 * the granules given back (0: nothing dirty is free). */
uint64_t decay_purge_oldest(mp_heap *heap, uint64_t max_granules) {
    mp_span *oldest = heap_lru_oldest(heap);
    if (oldest == NULL || max_granules == 0)
        return 0;
    uint32_t dirty = oldest->dirty;
    if (dirty > max_granules) {
        /* a tail this long holds at least max_granules dirty granules */
        uint64_t before = heap->dirty_free_granules;
        decay_purge_tail(heap, oldest, (uint32_t)(max_granules + (oldest->npages - dirty)));
        return before - heap->dirty_free_granules;
    }
    span_purge(heap, oldest);
    return dirty;
}

/* heap_alloc with the owner's reports: an allocation that had to touch
 * fresh pages reports when resident passed its peak (acct_after_growth: the
 * owner then gives held holes back), and near the resident limit the owner
 * gives cached pages back first.  What the layers above call. */
mp_span *decay_alloc(mp_heap *heap, size_t npages, size_t align_pages, uint32_t *clean_out) {
    mp_acct *acct = heap->acct;
    uint64_t peak = acct->peak_resident;
    /* Near the resident limit, the owner gives cached pages back before the
     * request may touch fresh ones (so resident never passes the limit). */
    if (MP_UNLIKELY(acct->resident_limit != 0))
        acct_over_limit(acct, (uint64_t)(npages + align_pages - 1) << heap->granule_shift);
    mp_span *span = heap_alloc(heap, npages, align_pages, clean_out);
    if (span == NULL || *clean_out == 0)
        return span;
    acct_after_growth(acct, peak);
    /* Still over (live memory fills the limit): the request fails and its
     * fresh granules go back, as if it had never been made. */
    if (MP_UNLIKELY(acct_over_limit(acct, 0))) {
        heap_free(heap, span, os_now_ms());
        decay_purge(heap, INT64_MAX / 2, 0, false);
        acct->peak_resident = peak;
        return NULL;
    }
    return span;
}

/* Start a new half-decay demand period when the current one is over. */
static void demand_rotate(mp_heap *heap, int64_t now_ms, int64_t decay_ms) {
    int64_t period = decay_ms / 2 > 0 ? decay_ms / 2 : 1;
    if (now_ms - heap->demand_since_ms < period)
        return;
    uint64_t in_use = heap_in_use(heap);
    heap->demand_prev = now_ms - heap->demand_since_ms < 2 * period ? heap->demand_cur : in_use;
    heap->demand_cur = in_use;
    heap->demand_since_ms = now_ms;
}

/* Dirty free granules the heap keeps: what its peak demand of the last
 * decay period needs on top of what is in use now, plus 1/8 for the holes
 * of drifting sizes.  Keeping them is what makes a loop with slow steps or
 * pauses take no page faults; once demand stays low for a decay period the
 * allowance falls and the memory goes back. */
static uint64_t dirty_allowance(const mp_heap *heap) {
    uint64_t peak = heap->demand_cur > heap->demand_prev ? heap->demand_cur : heap->demand_prev;
    uint64_t in_use = heap_in_use(heap);
    return (peak > in_use ? peak - in_use : 0) + peak / 8;
}

/* Give back the dirty granules of free spans that have been free for at
 * least decay_ms, oldest first, while the heap holds more dirty free
 * granules than its recent demand needs (decay_ms 0: every free span, no
 * allowance); an arena that is entirely free is unmapped instead when
 * `release_arenas` or when the heap holds more than config.retain_arenas.
 * Returns bytes given back. */
size_t decay_purge(mp_heap *heap, int64_t now_ms, int64_t decay_ms, bool release_arenas) {
    size_t given = 0;
    uint64_t allowance = 0;
    if (decay_ms > 0) {
        demand_rotate(heap, now_ms, decay_ms);
        allowance = dirty_allowance(heap);
    }
    mp_span *span;
    while ((span = heap_lru_oldest(heap)) != NULL && now_ms - span->freed_at_ms >= decay_ms &&
           heap->dirty_free_granules > allowance) {
        mp_arena *arena = span->arena;
        size_t bytes = (size_t)span->dirty << heap->granule_shift;
        given += bytes;
        if (span->page == 0 && span->npages == arena->npages &&
            (release_arenas || heap->arena_count > heap->retain_arenas)) {
            heap_release_arena(heap, arena);
            continue;
        }
        span_purge(heap, span);
    }
    if (release_arenas) {
        mp_link *l = heap->arenas.head;
        while (l) {
            mp_arena *arena = LIST_ENTRY(l, mp_arena, link);
            l = l->next;
            if (arena->spans[0].kind == MP_SPAN_FREE && arena->spans[0].npages == arena->npages)
                heap_release_arena(heap, arena);
        }
    }
    return given;
}

/* When decay_purge may next have work: the oldest dirty free span ages past
 * the decay, or the demand period ends (INT64_MAX: nothing dirty). */
int64_t decay_next_deadline(const mp_heap *heap, int64_t decay_ms) {
    const mp_span *oldest = heap_lru_oldest(heap);
    if (oldest == NULL)
        return INT64_MAX;
    int64_t aged = oldest->freed_at_ms + decay_ms;
    if (heap->dirty_free_granules > dirty_allowance(heap))
        return aged;
    int64_t rotate = heap->demand_since_ms + (decay_ms / 2 > 0 ? decay_ms / 2 : 1);
    return aged > rotate ? aged : rotate;
}
