/*
 * heap.c - a two-level segregated fit heap of spans over a pool's arenas.
 *
 * Free spans sit in one of two TLSF indexes (sizes.c): those that hold
 * resident granules, searched first (reusing them faults no page), and clean
 * ones.  A freed span merges at once with free physical neighbours,
 * found through the boundary tag `prev_npages` and the descriptor array.
 *
 * Free spans that still hold resident granules are also kept in an LRU by
 * the time they became free; decay.c decides when their pages go back.  When
 * the LRU goes from empty to not, the heap reports it (acct_dirty): somebody
 * must now look at that memory.
 *
 * Every function here runs under the owner's lock (the pool lock).
 */
#include "heap.h"

#include <limits.h>

/* Index of the highest set bit (x != 0). */
static inline unsigned fls32(uint64_t x) { return 63u - (unsigned)__builtin_clzll(x); }

/* Put a free span into its size list, in the index its dirty count says. */
static void heap_sizes_insert(mp_heap *heap, mp_span *span) {
    MP_ASSERT(span->page + span->npages >= span->arena->npages ||
                  span->arena->spans[span->page + span->npages].kind != MP_SPAN_FREE,
              "a free span never has a free successor (coalesced at once)");
    span->sizes_set = span->dirty ? MP_SIZES_DIRTY : MP_SIZES_CLEAN;
    sizes_insert(&heap->sizes[span->sizes_set], span);
}

/* Take a free span out of its size list. */
static void heap_sizes_remove(mp_heap *heap, mp_span *span) {
    MP_ASSERT(span->kind == MP_SPAN_FREE, "only free spans are in the size lists");
    sizes_remove(&heap->sizes[span->sizes_set], span);
}

/* A free span that gave back its last resident granule moves to the clean
 * index (its dirty count is already 0). */
void heap_span_cleaned(mp_heap *heap, mp_span *span) {
    MP_ASSERT(span->kind == MP_SPAN_FREE && span->dirty == 0, "only a clean free span moves");
    if (span->sizes_set == MP_SIZES_CLEAN)
        return;
    heap_sizes_remove(heap, span);
    heap_sizes_insert(heap, span);
}

/* ---- dirty LRU -------------------------------------------------------- */

/* Link span after `after` (NULL: at the head) in the dirty LRU; report
 * when the LRU was empty. */
static void lru_insert_after(mp_heap *heap, mp_span *after, mp_span *span) {
    bool was_empty = heap->lru.head == NULL;
    list_insert_after(&heap->lru, after ? &after->lru_link : NULL, &span->lru_link);
    span->in_lru = 1;
    if (was_empty)
        acct_dirty(heap->acct);
}

/* Unlink span from the dirty LRU (if it is there). */
void heap_lru_remove(mp_heap *heap, mp_span *span) {
    if (!span->in_lru)
        return;
    list_remove(&heap->lru, &span->lru_link);
    span->in_lru = 0;
}

/* ---- spans ------------------------------------------------------------ */

/* Make a free span known: size list, counters, and the LRU after `lru_after`
 * (`at_tail`: as the newest) when it holds dirty granules. */
static void free_insert(mp_heap *heap, mp_span *span, mp_span *lru_after, bool at_tail) {
    span->kind = MP_SPAN_FREE;
    heap_sizes_insert(heap, span);
    heap->free_granules += span->npages;
    heap->dirty_free_granules += span->dirty;
    heap->free_spans++;
    if (span->dirty)
        lru_insert_after(heap, at_tail ? LIST_ENTRY(heap->lru.tail, mp_span, lru_link) : lru_after,
                         span);
}

/* Undo free_insert; returns the LRU predecessor, so a remainder can take the
 * span's place and keep its age. */
static mp_span *free_take(mp_heap *heap, mp_span *span) {
    mp_span *lru_pred = span->in_lru ? LIST_ENTRY(span->lru_link.prev, mp_span, lru_link) : NULL;
    heap_sizes_remove(heap, span);
    heap_lru_remove(heap, span);
    heap->free_granules -= span->npages;
    heap->dirty_free_granules -= span->dirty;
    heap->free_spans--;
    return lru_pred;
}

/* Tell the next physical span how long its predecessor now is. */
static void set_next_prev_len(mp_span *span) {
    uint32_t next = span->page + span->npages;
    if (next < span->arena->npages)
        span->arena->spans[next].prev_npages = span->npages;
}

/* Cut span after `npages` granules; return the new tail span (kind NONE,
 * caller decides what it is). */
static mp_span *span_split(mp_span *span, uint32_t npages) {
    mp_span *tail = &span->arena->spans[span->page + npages];
    tail->arena = span->arena;
    tail->page = span->page + npages;
    tail->npages = span->npages - npages;
    tail->prev_npages = npages;
    tail->dirty = 0;
    tail->in_lru = 0;
    tail->requested = 0;
    tail->lru_link = tail->free_link = (mp_link){0};
    span->npages = npages;
    set_next_prev_len(tail);
    return tail;
}

/* Absorb the physically next span (already taken out of every list). */
static void span_absorb_next(mp_span *span, mp_span *next) {
    span->npages += next->npages;
    span->dirty += next->dirty;
    next->kind = MP_SPAN_NONE;
    next->in_lru = 0;
    set_next_prev_len(span);
}

/* Account granules turning resident (mark dirty); returns how many were clean. */
uint32_t heap_touch(mp_heap *heap, mp_arena *arena, uint32_t page, uint32_t n) {
    if (heap->huge_extents && n > 0)
        arena_advise_extents(arena, &heap->acct->os, page, n);
    uint32_t clean = arena_mark_dirty(arena, page, n);
    acct_resident(heap->acct, (int64_t)clean << heap->granule_shift);
    return clean;
}

/* How many of the most recently freed dirty spans an allocation looks at
 * before the size lists: enough to find the step's own holes in a loop. */
#define RESIDENT_FIRST_SCAN 32

/* A recently freed dirty span that holds n granules, or NULL: the lowest-
 * addressed one in a heap with `lowest_first`, else the smallest.  Reusing
 * resident memory first keeps a loop's page faults near zero (plain good fit
 * would as gladly take a clean span and touch fresh pages).  In the page
 * heap (many drifting mid-size blocks) lowest address keeps the working set
 * on the same pages; in the huge heap (a few blocks of 4-64 MiB) smallest
 * fit keeps the peak lower (the README's "Large blocks" has the figures). */
static mp_span *lru_find(mp_heap *heap, uint64_t n) {
    mp_span *best = NULL;
    unsigned seen = 0;
    for (mp_link *l = heap->lru.tail; l && seen < RESIDENT_FIRST_SCAN; l = l->prev, seen++) {
        mp_span *s = LIST_ENTRY(l, mp_span, lru_link);
        if (s->npages < n)
            continue;
        if (best == NULL ||
            (heap->lowest_first ? span_addr(s) < span_addr(best) : s->npages < best->npages))
            best = s;
    }
    return best;
}

static mp_span *span_carve(mp_heap *heap, mp_span *span, size_t npages, size_t align_pages,
                           uint32_t *clean_out);

/* ---- heap API --------------------------------------------------------- */

/* An empty heap of `granule_shift`-sized granules, reporting to `acct`. */
void heap_init(mp_heap *heap, const void *owner, mp_acct *acct, map_graves *graves,
               unsigned granule_shift, int huge_advice, size_t arena_bytes,
               unsigned retain_arenas) {
    *heap = (mp_heap){0};
    heap->owner = owner;
    heap->acct = acct;
    heap->graves = graves;
    heap->granule_shift = granule_shift;
    heap->huge_advice = huge_advice;
    heap->arena_bytes = arena_bytes;
    heap->retain_arenas = retain_arenas;
}

/* Give every arena of the heap back to the OS. */
void heap_destroy(mp_heap *heap) {
    mp_link *l;
    while ((l = heap->arenas.head) != NULL) {
        mp_arena *arena = LIST_ENTRY(l, mp_arena, link);
        list_remove(&heap->arenas, l);
        acct_resident(heap->acct, -(int64_t)(arena->dirty_count << heap->granule_shift));
        arena_destroy(arena, heap->acct, heap->graves);
    }
}

/* Add a fresh arena to the heap as one clean free span. */
static void heap_add_arena(mp_heap *heap, mp_arena *arena) {
    arena->heap = heap;
    list_push_front(&heap->arenas, &arena->link);
    heap->arena_count++;
    arena->seq = heap->arena_seq++;
    heap->granules += arena->npages;
    mp_span *span = &arena->spans[0];
    span->arena = arena;
    span->page = 0;
    span->npages = arena->npages;
    span->prev_npages = 0;
    span->dirty = 0;
    free_insert(heap, span, NULL, true);
}

/* Unlink an arena whose only span is free, and unmap it. */
void heap_release_arena(mp_heap *heap, mp_arena *arena) {
    mp_span *span = &arena->spans[0];
    MP_ASSERT(span->kind == MP_SPAN_FREE && span->npages == arena->npages,
              "only a wholly free arena is released");
    free_take(heap, span);
    acct_released(heap->acct, (uint64_t)arena->dirty_count << heap->granule_shift);
    list_remove(&heap->arenas, &arena->link);
    heap->arena_count--;
    heap->granules -= arena->npages;
    arena_destroy(arena, heap->acct, heap->graves);
}

/* Hand out a span of `npages` granules whose address is a multiple of
 * `align_pages` granules, reserving a new arena when none fits.  *clean_out
 * gets the number of granules that were clean (they read as zeros).  NULL
 * when the capacity or the OS refuses; the heap is then unchanged.  The
 * placement only: decay_alloc adds the policy on resident holes. */
mp_span *heap_alloc(mp_heap *heap, size_t npages, size_t align_pages, uint32_t *clean_out) {
    size_t slack = align_pages > 1 ? align_pages - 1 : 0;
    size_t search = npages + slack;
    if (npages == 0 || search > UINT32_MAX)
        return NULL;
    mp_span *span = lru_find(heap, search);
    if (span == NULL)
        span = sizes_find(&heap->sizes[MP_SIZES_DIRTY], search);
    if (span == NULL)
        span = sizes_find(&heap->sizes[MP_SIZES_CLEAN], search);
    if (span == NULL) {
        mp_arena *arena = arena_create(heap->owner, heap->acct, heap->granule_shift,
                                       heap->huge_advice, heap->arena_bytes, search, heap->shared);
        if (arena == NULL)
            return NULL;
        heap_add_arena(heap, arena);
        span = sizes_find(&heap->sizes[MP_SIZES_CLEAN], search);
        MP_ASSERT(span != NULL, "a new arena holds the span it was made for");
    }
    /* A block of two extents or more (numpy's own huge-page threshold, 4 MiB)
     * taken from clean memory starts on an extent, so that its extents fault
     * as huge pages (arena_advise_extents); the granules skipped stay a clean
     * free span for smaller blocks. */
    uint32_t per_extent = 1u << (MP_HUGE_SHIFT - heap->granule_shift);
    if (heap->huge_extents && align_pages <= 1 && npages >= 2 * per_extent && span->dirty == 0 &&
        span->npages >= npages + per_extent - 1)
        align_pages = per_extent;
    return span_carve(heap, span, npages, align_pages, clean_out);
}

/* Hand out the first `npages` granules of the free span `free_span` (which
 * holds at least that many): the placement is the caller's choice. */
mp_span *heap_alloc_from(mp_heap *heap, mp_span *free_span, size_t npages, uint32_t *clean_out) {
    if (free_span->kind != MP_SPAN_FREE || npages == 0 || npages > free_span->npages)
        return NULL;
    return span_carve(heap, free_span, npages, 1, clean_out);
}

/* The free span that holds n granules earliest in compaction order (oldest
 * arena, then lowest address: span_before), or NULL.  Walks every list that can hold n: O(free spans), which
 * compaction can afford and allocation never pays. */
mp_span *heap_lowest_fit(const mp_heap *heap, size_t npages) {
    unsigned fl0, sl0;
    sizes_class(npages, &fl0, &sl0);
    mp_span *best = NULL;
    for (unsigned set = 0; set < 2; set++) {
        const mp_sizes *z = &heap->sizes[set];
        for (unsigned fl = fl0; fl < MP_FL_COUNT; fl++) {
            uint32_t sl_map = z->sl_bitmap[fl] & (fl == fl0 ? ~0u << sl0 : ~0u);
            while (sl_map) {
                unsigned sl = (unsigned)__builtin_ctz(sl_map);
                sl_map &= sl_map - 1;
                LIST_FOREACH(s, &z->lists[fl][sl], mp_span, free_link)
                    if (s->npages >= npages && (best == NULL || span_before(s, best)))
                        best = s;
            }
        }
    }
    return best;
}

/* Slide a live span down over its free physical predecessor: the span then
 * starts where the predecessor did and the free granules follow it (merged
 * with a free successor).  Returns the span's new descriptor, or NULL (and
 * nothing changed) when the predecessor is not free.  The caller memmoves
 * the content: the two ranges overlap. */
mp_span *heap_slide_down(mp_heap *heap, mp_span *span, int64_t now_ms) {
    mp_arena *arena = span->arena;
    if (span->page == 0)
        return NULL;
    mp_span *moved = &arena->spans[span->page - span->prev_npages];
    if (moved->kind != MP_SPAN_FREE)
        return NULL;
    free_take(heap, moved);
    uint32_t n = span->npages, gap = moved->npages, start = moved->page;
    uint64_t requested = span->requested;
    uint8_t movable = span->movable;
    span->kind = MP_SPAN_NONE; /* the old head becomes an inner granule */
    span->movable = 0;
    span->requested = 0;
    moved->npages = n;
    moved->kind = MP_SPAN_LARGE;
    moved->requested = requested;
    moved->movable = movable;
    moved->dirty = 0;
    heap_touch(heap, arena, start, n);
    mp_span *tail = &arena->spans[start + n];
    tail->arena = arena;
    tail->page = start + n;
    tail->npages = gap;
    tail->prev_npages = n;
    tail->in_lru = 0;
    tail->movable = 0;
    tail->lru_link = tail->free_link = (mp_link){0};
    set_next_prev_len(tail);
    heap_free(heap, tail, now_ms);
    return moved;
}

/* Add the heap's free spans to a histogram by size: bin i counts spans of
 * [4 KiB << i, 4 KiB << (i + 1)) bytes, the last bin everything larger. */
void heap_free_histogram(const mp_heap *heap, uint64_t *count, uint64_t *bytes) {
    for (unsigned set = 0; set < 2; set++)
    for (unsigned fl = 0; fl < MP_FL_COUNT; fl++) {
        if (!(heap->sizes[set].fl_bitmap >> fl & 1))
            continue;
        for (unsigned sl = 0; sl < MP_SL_COUNT; sl++)
            LIST_FOREACH(s, &heap->sizes[set].lists[fl][sl], const mp_span, free_link) {
                uint64_t size = span_bytes(s);
                unsigned bin = fls32(size >> MP_PAGE_SHIFT);
                if (bin >= MP_FREE_BINS)
                    bin = MP_FREE_BINS - 1;
                count[bin]++;
                bytes[bin] += size;
            }
    }
}

/* Take `npages` granules, aligned to `align_pages`, from the free span `span`
 * (which holds npages + align_pages - 1); the rest stays free, in the LRU
 * where the span was, so it keeps its age. */
static mp_span *span_carve(mp_heap *heap, mp_span *span, size_t npages, size_t align_pages,
                           uint32_t *clean_out) {
    MP_ASSERT(span->kind == MP_SPAN_FREE && span->npages >= npages + (align_pages - 1),
              "a carve takes a free span long enough for the aligned request");
    int64_t freed_at = span->freed_at_ms;
    mp_span *lru_pos = free_take(heap, span);
    uint32_t dirty = span->dirty;
    mp_arena *arena = span->arena;

    if (align_pages > 1) {
        uintptr_t base = (uintptr_t)arena->region.base >> heap->granule_shift;
        uint32_t front = (uint32_t)((align_pages - (base + span->page) % align_pages) % align_pages);
        if (front) {
            mp_span *rest = span_split(span, front);
            span->dirty = arena_count_dirty(arena, span->page, front);
            rest->dirty = dirty - span->dirty;
            dirty = rest->dirty;
            span->freed_at_ms = freed_at;
            free_insert(heap, span, lru_pos, false);
            if (span->in_lru)
                lru_pos = span;
            span = rest;
        }
    }
    uint32_t clean = heap_touch(heap, arena, span->page, (uint32_t)npages);
    if (span->npages > npages) {
        mp_span *rest = span_split(span, (uint32_t)npages);
        rest->dirty = dirty - ((uint32_t)npages - clean);
        rest->freed_at_ms = freed_at;
        free_insert(heap, rest, lru_pos, false);
    }
    span->dirty = 0;
    span->kind = MP_SPAN_LARGE;
    uint64_t in_use = heap_in_use(heap);
    if (in_use > heap->demand_cur)
        heap->demand_cur = in_use;
    *clean_out = clean;
    return span;
}

/* Return a span to the heap, merging it with free neighbours. */
void heap_free(mp_heap *heap, mp_span *span, int64_t now_ms) {
    mp_arena *arena = span->arena;
    MP_ASSERT(span->kind != MP_SPAN_FREE, "a span is freed once (a double free is caught above)");
    MP_ASSERT(atomic_load_explicit(&span->slab, memory_order_relaxed) == NULL,
              "a slab's span is unmarked before it goes back");
    span->kind = MP_SPAN_FREE;
    span->requested = 0;
    span->dirty = arena_count_dirty(arena, span->page, span->npages);
    if (span->page > 0) {
        mp_span *prev = &arena->spans[span->page - span->prev_npages];
        if (prev->kind == MP_SPAN_FREE) {
            free_take(heap, prev);
            span_absorb_next(prev, span);
            span = prev;
        }
    }
    uint32_t next_page = span->page + span->npages;
    if (next_page < arena->npages && arena->spans[next_page].kind == MP_SPAN_FREE) {
        mp_span *next = &arena->spans[next_page];
        free_take(heap, next);
        span_absorb_next(span, next);
    }
    span->freed_at_ms = now_ms;
    free_insert(heap, span, NULL, true);
}

/* Grow a live span to `npages` by taking granules from a free successor;
 * false (nothing changed) when the successor is not free or too short. */
bool heap_grow_in_place(mp_heap *heap, mp_span *span, size_t npages, uint32_t *clean_out) {
    mp_arena *arena = span->arena;
    uint32_t next_page = span->page + span->npages;
    if (npages <= span->npages || next_page >= arena->npages)
        return false;
    mp_span *next = &arena->spans[next_page];
    if (next->kind != MP_SPAN_FREE || (size_t)span->npages + next->npages < npages)
        return false;
    int64_t freed_at = next->freed_at_ms;
    uint32_t next_dirty = next->dirty;
    mp_span *lru_pos = free_take(heap, next);
    uint32_t old = span->npages, added = (uint32_t)npages - old;
    span_absorb_next(span, next);
    span->dirty = 0;
    uint32_t clean = heap_touch(heap, arena, old + span->page, added);
    if (span->npages > npages) {
        mp_span *rest = span_split(span, (uint32_t)npages);
        rest->dirty = next_dirty - (added - clean);
        rest->freed_at_ms = freed_at;
        free_insert(heap, rest, lru_pos, false);
    }
    *clean_out = clean;
    return true;
}

/* Shrink a live span to `npages` (>= 1), freeing the tail. */
void heap_shrink_in_place(mp_heap *heap, mp_span *span, size_t npages, int64_t now_ms) {
    if (npages >= span->npages || npages == 0)
        return;
    mp_span *tail = span_split(span, (uint32_t)npages);
    heap_free(heap, tail, now_ms);
}

/* Bytes of the largest free span (scans only the highest non-empty list). */
uint64_t heap_largest_free(const mp_heap *heap) {
    uint64_t best = 0;
    for (unsigned set = 0; set < 2; set++) {
        const mp_sizes *z = &heap->sizes[set];
        if (z->fl_bitmap == 0)
            continue;
        unsigned fl = 31u - (unsigned)__builtin_clz(z->fl_bitmap);
        unsigned sl = 31u - (unsigned)__builtin_clz(z->sl_bitmap[fl]);
        LIST_FOREACH(s, &z->lists[fl][sl], const mp_span, free_link)
            if (s->npages > best)
                best = s->npages;
    }
    return best << heap->granule_shift;
}

/* Count broken invariants of the heap into `log`: physical walk of every
 * arena, size lists and bitmaps, the LRU, and the counters that summarize
 * them.  Returns the number found here. */
size_t heap_check(const mp_heap *heap, mp_check_log *log) {
    size_t bad = 0;
    uint64_t free_spans = 0, free_granules = 0, dirty_free = 0, lru_spans = 0, arenas = 0;
    HEAP_FOREACH_ARENA(heap, arena) {
        arenas++;
        uint32_t page = 0, prev_len = 0;
        bool prev_free = false, walked = true;
        bad += check_fail(log, arena->heap != heap, "heap: an arena names another heap");
        bad += check_fail(log, arena_count_dirty(arena, 0, arena->npages) != arena->dirty_count,
                          "heap: an arena's dirty count is not its dirty bits");
        ARENA_FOREACH_SPAN(arena, s) {
            if (s->kind == MP_SPAN_NONE || s->page != page || s->arena != arena ||
                s->npages == 0 || (uint64_t)page + s->npages > arena->npages ||
                s->prev_npages != prev_len) {
                bad += check_fail(log, 1, "heap: the physical walk meets a broken span head");
                walked = false;
                break;
            }
            bool is_free = s->kind == MP_SPAN_FREE;
            void *slab = atomic_load_explicit(&s->slab, memory_order_relaxed);
            bad += check_fail(log, is_free && prev_free, "heap: two free neighbours (a missed coalesce)");
            if (is_free) {
                free_spans++;
                free_granules += s->npages;
                dirty_free += s->dirty;
                lru_spans += s->in_lru;
                bad += check_fail(log, s->dirty != arena_count_dirty(arena, s->page, s->npages),
                                  "heap: a free span's dirty count is not its dirty bits");
                bad += check_fail(log, (s->dirty > 0) != (s->in_lru != 0),
                                  "heap: a free span is in the LRU iff it has dirty granules");
            } else if (s->kind == MP_SPAN_LARGE) {
                /* slabs may have given back their free pages (slab_check) */
                bad += check_fail(log, arena_count_dirty(arena, s->page, s->npages) != s->npages,
                                  "heap: a large block has a purged granule");
            }
            bad += check_fail(log, (s->kind == MP_SPAN_SLAB) != (slab != NULL),
                              "heap: a span has a slab iff it is a slab span");
            for (uint32_t p = page + 1; p < page + s->npages; p++) {
                mp_span *inner = &arena->spans[p];
                bad += check_fail(log, inner->kind != MP_SPAN_NONE,
                                  "heap: an inner granule is marked as a span head");
                bad += check_fail(log, atomic_load_explicit(&inner->slab, memory_order_relaxed) != slab,
                                  "heap: an inner granule names another slab than its head");
            }
            prev_free = is_free;
            prev_len = s->npages;
            page += s->npages;
        }
        bad += check_fail(log, walked && page != arena->npages,
                          "heap: the spans do not cover the arena exactly");
    }
    bad += check_fail(log, arenas != heap->arena_count, "heap: arena count");
    bad += check_fail(log, free_spans != heap->free_spans, "heap: free span count");
    bad += check_fail(log, free_granules != heap->free_granules, "heap: free granule count");
    bad += check_fail(log, dirty_free != heap->dirty_free_granules, "heap: dirty free granule count");
    uint64_t listed = 0;
    for (unsigned set = 0; set < 2; set++) {
        bad += sizes_check(&heap->sizes[set], set, log, &listed, free_spans + 1);
        if (listed > free_spans + 1)
            return bad;
    }
    bad += check_fail(log, listed != free_spans, "heap: the size lists do not hold every free span");
    uint64_t in_lru = 0;
    int64_t last = INT64_MIN;
    LIST_FOREACH(s, &heap->lru, const mp_span, lru_link) {
        bad += check_fail(log, s->kind != MP_SPAN_FREE || !s->in_lru || s->freed_at_ms < last,
                          "heap: the LRU holds a span out of age order or not free");
        last = s->freed_at_ms;
        if (++in_lru > lru_spans + 1)
            return bad + check_fail(log, 1, "heap: the LRU has a cycle");
    }
    bad += check_fail(log, in_lru != lru_spans, "heap: the LRU does not hold every dirty free span");
    return bad;
}
