/*
 * test_tlsf.c - tests of the TLSF heap (csrc/heap/heap.c) and the arena's
 * dirty bits (csrc/heap/arena.c) inside a whole pool, driven through the internal API so that split,
 * coalesce, boundary tags, alignment, in-place resizing and decay purging are
 * checked directly rather than through mp_alloc.
 */
#include "front/front.h"
#include "base/base.h"
#include "test.h"

#include <stdint.h>
#include <string.h>

/* A pool whose heaps we drive by hand: no purger, no decay on its own,
 * arenas of `arena_bytes`. */
static mp_pool *make_pool_arena(size_t arena_bytes)
{
    mp_config cfg;
    mp_config_default(&cfg);
    cfg.background_purge = 0;
    cfg.decay_ms = -1;
    cfg.arena_bytes = arena_bytes;
    mp_pool *pool = NULL;
    CHECK(mp_pool_create(&cfg, &pool) == MP_OK);
    return pool;
}

/* make_pool_arena with 8 MiB arenas: 2048 granules of 4 KiB. */
static mp_pool *make_pool(void)
{
    return make_pool_arena((size_t)8 << 20);
}

/* Allocate npages from the page heap under the pool lock, accounted as the
 * core's large path does (so mp_pool_check's counter cross-checks hold);
 * *clean_out (if given) gets the granules that were clean. */
static mp_span *take_clean(mp_pool *pool, size_t npages, size_t align_pages,
                           uint32_t *clean_out)
{
    uint32_t clean = 0;
    mutex_lock(&pool->lock);
    mp_span *span = decay_alloc(&pool->heaps[MP_HEAP_PAGES], npages, align_pages, &clean);
    if (span) {
        span->requested = span_bytes(span);
        MP_UNPOISON(span_addr(span), span_bytes(span)); /* ASan: a live block now */
        pool_account_large(pool, (int64_t)span_bytes(span), (int64_t)span_bytes(span),
                           CALL_INTERNAL, LARGE_SPAN);
    }
    mutex_unlock(&pool->lock);
    if (clean_out)
        *clean_out = clean;
    return span;
}

/* take_clean without the clean count. */
static mp_span *take(mp_pool *pool, size_t npages, size_t align_pages)
{
    return take_clean(pool, npages, align_pages, NULL);
}

/* Return a span to the page heap at time `now`, with its accounting. */
static void give(mp_pool *pool, mp_span *span, int64_t now)
{
    mutex_lock(&pool->lock);
    pool_account_large(pool, -(int64_t)span->requested, -(int64_t)span_bytes(span), CALL_INTERNAL,
                       LARGE_SPAN);
    heap_free(&pool->heaps[MP_HEAP_PAGES], span, now);
    mutex_unlock(&pool->lock);
}

/* Split and coalesce: three neighbours freed in every order merge back into
 * the one span the arena started as. */
static void test_split_coalesce(void)
{
    static const int orders[6][3] = {{0, 1, 2}, {0, 2, 1}, {1, 0, 2},
                                     {1, 2, 0}, {2, 0, 1}, {2, 1, 0}};
    mp_pool *pool = make_pool();
    mp_heap *heap = &pool->heaps[MP_HEAP_PAGES];
    for (int o = 0; o < 6; o++) {
        mp_span *s[3] = {take(pool, 3, 1), take(pool, 5, 1), take(pool, 7, 1)};
        CHECK(s[0] && s[1] && s[2]);
        CHECK(span_addr(s[1]) == span_addr(s[0]) + 3 * MP_PAGE_SIZE); /* address order */
        CHECK_EQ_U(s[2]->prev_npages, 5);
        CHECK_EQ_U(heap->free_spans, 1); /* the tail of the arena */
        for (int i = 0; i < 3; i++) {
            give(pool, s[orders[o][i]], 0);
            CHECK_EQ_U(mp_pool_check(pool), 0);
        }
        CHECK_EQ_U(heap->free_spans, 1);
        CHECK_EQ_U(heap->free_granules, LIST_ENTRY(heap->arenas.head, mp_arena, link)->npages);
    }
    mp_pool_destroy(pool);
}

/* Good fit: a request is served from a hole it fits, not from the big tail. */
static void test_good_fit_reuses_holes(void)
{
    mp_pool *pool = make_pool();
    mp_span *a = take(pool, 40, 1), *b = take(pool, 1, 1), *c = take(pool, 100, 1);
    mp_span *d = take(pool, 1, 1);
    char *hole_a = span_addr(a), *hole_c = span_addr(c);
    give(pool, a, 0);
    give(pool, c, 0);
    mp_span *fit = take(pool, 90, 1); /* 90 fits only the 100-granule hole */
    CHECK(fit && span_addr(fit) == hole_c);
    mp_span *small = take(pool, 33, 1); /* fits the 40-granule hole */
    CHECK(small && span_addr(small) == hole_a);
    CHECK_EQ_U(mp_pool_check(pool), 0);
    give(pool, fit, 0);
    give(pool, small, 0);
    give(pool, b, 0);
    give(pool, d, 0);
    CHECK_EQ_U(pool->heaps[MP_HEAP_PAGES].free_spans, 1);
    mp_pool_destroy(pool);
}

/* Alignment: the front slack becomes a free span, the block is aligned. */
static void test_alignment(void)
{
    mp_pool *pool = make_pool();
    mp_span *pad = take(pool, 3, 1);
    for (size_t align = 2; align <= 256; align *= 2) {
        mp_span *s = take(pool, 5, align);
        CHECK(s != NULL);
        if (s)
            CHECK_MSG(((uintptr_t)span_addr(s) & (align * MP_PAGE_SIZE - 1)) == 0,
                      "span not aligned to %zu granules", align);
        CHECK_EQ_U(mp_pool_check(pool), 0);
        if (s)
            give(pool, s, 0);
    }
    give(pool, pad, 0);
    CHECK_EQ_U(pool->heaps[MP_HEAP_PAGES].free_spans, 1);
    mp_pool_destroy(pool);
}

/* In-place growth takes the free successor; shrinking frees the tail. */
static void test_resize_in_place(void)
{
    mp_pool *pool = make_pool();
    mp_heap *heap = &pool->heaps[MP_HEAP_PAGES];
    mp_span *a = take(pool, 10, 1), *b = take(pool, 10, 1), *c = take(pool, 10, 1);
    give(pool, b, 0);
    uint32_t clean;
    mutex_lock(&pool->lock);
    CHECK(heap_grow_in_place(heap, a, 15, &clean));
    CHECK_EQ_U(a->npages, 15);
    CHECK(!heap_grow_in_place(heap, a, 30, &clean)); /* c is in the way */
    CHECK_EQ_U(a->npages, 15);
    heap_shrink_in_place(heap, a, 4, 0);
    CHECK_EQ_U(a->npages, 4);
    /* account the resize as realloc_large does */
    int64_t delta = (int64_t)span_bytes(a) - (int64_t)a->requested;
    pool_account_large(pool, delta, delta, CALL_INTERNAL, LARGE_SPAN);
    a->requested = span_bytes(a);
    mutex_unlock(&pool->lock);
    CHECK_EQ_U(mp_pool_check(pool), 0);
    /* the freed tail merged with the rest of b's hole: one span up to c */
    mp_span *hole = &a->arena->spans[a->page + 4];
    CHECK(hole->kind == MP_SPAN_FREE && hole->npages == 16);
    give(pool, a, 0);
    give(pool, c, 0);
    CHECK_EQ_U(heap->free_spans, 1);
    mp_pool_destroy(pool);
}

/* Dirty bits and decay: freed spans stay resident until they age past the
 * decay, then go back oldest first; a re-allocation of purged granules
 * reports them clean (they read as zeros). */
static void test_dirty_and_purge(void)
{
    mp_pool *pool = make_pool();
    mp_heap *heap = &pool->heaps[MP_HEAP_PAGES];
    mp_span *a = take(pool, 8, 1), *sep1 = take(pool, 1, 1);
    mp_span *b = take(pool, 8, 1), *sep2 = take(pool, 1, 1);
    memset(span_addr(a), 0x5A, span_bytes(a));
    uint64_t resident = pool->acct.resident;
    CHECK_EQ_U(resident, 18 * MP_PAGE_SIZE);
    give(pool, a, 100);
    give(pool, b, 200);
    CHECK_EQ_U(heap->dirty_free_granules, 16);
    CHECK(heap_lru_oldest(heap) == a && LIST_ENTRY(heap->lru.tail, mp_span, lru_link) == b);
    mutex_lock(&pool->lock);
    CHECK_EQ_U(decay_purge(heap, 150, 100, false), 0); /* nothing aged yet */
    CHECK_EQ_U(decay_purge(heap, 250, 100, false), 8 * MP_PAGE_SIZE); /* a aged */
    CHECK(heap_lru_oldest(heap) == b);
    mutex_unlock(&pool->lock);
    CHECK_EQ_U(pool->acct.resident, resident - 8 * MP_PAGE_SIZE);
    CHECK_EQ_U(mp_pool_check(pool), 0);
    /* Most recently freed first: the still-resident b, no fault to take. */
    uint32_t clean;
    mp_span *warm = take_clean(pool, 8, 1, &clean);
    CHECK(warm && span_addr(warm) == span_addr(b));
    CHECK_EQ_U(clean, 0);
    mp_span *again = take_clean(pool, 8, 1, &clean);
    CHECK(again && span_addr(again) == span_addr(a));
    CHECK_EQ_U(clean, 8); /* purged: reads as zeros, calloc may skip memset */
    if (again)
        CHECK_EQ_U(test_find_nonzero(span_addr(again), 0, span_bytes(again)), SIZE_MAX);
    give(pool, warm, 300);
    give(pool, again, 300);
    give(pool, sep1, 300);
    give(pool, sep2, 300);
    CHECK_EQ_U(mp_trim(pool) > 0, 1);
    CHECK_EQ_U(pool->acct.resident, 0);
    CHECK_EQ_U(pool->acct.reserved, 0); /* trim unmaps wholly free arenas */
    CHECK_EQ_U(mp_pool_check(pool), 0);
    mp_pool_destroy(pool);
}

/* The hole cap: an allocation that touches fresh pages while the heap holds
 * more dirty free granules than 1/8 of what is in use + 16 MiB gives back the
 * excess plus 8 MiB at once, and from the oldest hole only the tail it
 * needs: the hole's head stays resident. */
static void test_hole_cap_gives_back_a_tail(void)
{
    mp_pool *pool = make_pool_arena((size_t)64 << 20); /* 16384 granules */
    mp_heap *heap = &pool->heaps[MP_HEAP_PAGES];
    pool->acct.over_peak = NULL; /* the cap alone (the peak rule has its own test) */
    mp_span *hole = take(pool, 6000, 1), *sep = take(pool, 1, 1), *live = take(pool, 1000, 1);
    CHECK(hole && sep && live);
    give(pool, hole, 100);
    CHECK_EQ_U(heap->dirty_free_granules, 6000);
    uint64_t resident = pool->acct.resident;
    /* No hole holds 7000 granules: fresh pages, so the cap applies.  In use
     * after: 8001 granules, cap 8001 / 8 + 4096 = 5096; 6000 dirty is 904
     * over, and 2048 more (8 MiB) go with them. */
    uint32_t clean;
    mp_span *big = take_clean(pool, 7000, 1, &clean);
    CHECK(big != NULL);
    CHECK_EQ_U(clean, 7000);
    uint32_t given = 904 + 2048;
    CHECK_EQ_U(heap->dirty_free_granules, 6000 - given);
    CHECK(heap_lru_oldest(heap) == hole && hole->kind == MP_SPAN_FREE);
    CHECK_EQ_U(hole->dirty, 6000 - given);
    CHECK_EQ_U(arena_count_dirty(hole->arena, hole->page, 6000 - given), 6000 - given);
    CHECK_EQ_U(arena_count_dirty(hole->arena, hole->page + 6000 - given, given), 0);
    CHECK_EQ_U(pool->acct.resident, resident + 7000 * MP_PAGE_SIZE - given * MP_PAGE_SIZE);
    CHECK_EQ_U(mp_pool_check(pool), 0);
    /* The hole's resident head serves the next request without a fault. */
    mp_span *warm = take_clean(pool, 3000, 1, &clean);
    CHECK(warm && span_addr(warm) == span_addr(hole));
    CHECK_EQ_U(clean, 0);
    give(pool, warm, 200);
    give(pool, big, 200);
    give(pool, live, 200);
    give(pool, sep, 200);
    CHECK_EQ_U(mp_pool_check(pool), 0);
    mp_pool_destroy(pool);
}

/* Holes never raise the peak: below the pool's resident peak, fresh pages
 * leave the holes resident; fresh pages that take resident above the peak
 * make the pool give back as many bytes of holes (the oldest hole's tail)
 * beyond MP_PEAK_SLACK_BYTES, and the peak rises only by what is left.
 * Holes stay under the cap's 16 MiB, so only the peak rule acts. */
static void test_holes_never_raise_the_peak(void)
{
    const uint64_t slack = MP_PEAK_SLACK_BYTES >> MP_PAGE_SHIFT; /* granules */
    mp_pool *pool = make_pool_arena((size_t)64 << 20);
    mp_heap *heap = &pool->heaps[MP_HEAP_PAGES];
    /* A finite decay (the rule keeps every hole with an infinite one);
     * nothing here runs the decay itself. */
    pool->config.decay_ms = 1000;
    mp_span *big = take(pool, 8000, 1), *s1 = take(pool, 1, 1);
    CHECK(big && s1);
    give(pool, big, 100);
    uint64_t peak = pool->acct.peak_resident;
    CHECK_EQ_U(peak, 8001 * MP_PAGE_SIZE);
    mutex_lock(&pool->lock);
    decay_purge(heap, INT64_MAX / 2, 0, false);
    mutex_unlock(&pool->lock);
    CHECK_EQ_U(pool->acct.resident, 1 * MP_PAGE_SIZE);
    /* Below the peak: the hole of y stays resident while z touches fresh pages. */
    uint32_t clean;
    mp_span *y = take(pool, 3000, 1), *s2 = take(pool, 1, 1);
    CHECK(y && s2);
    give(pool, y, 200);
    mp_span *z = take_clean(pool, 3500, 1, &clean);
    CHECK(z != NULL);
    CHECK_EQ_U(clean, 3500);
    CHECK_EQ_U(heap->dirty_free_granules, 3000);
    CHECK_EQ_U(pool->acct.resident, 6502 * MP_PAGE_SIZE);
    CHECK_EQ_U(pool->acct.peak_resident, peak);
    /* 3100 fresh granules fit no resident hole and would take resident 1601
     * granules above the peak: the hole gives back its tail beyond the
     * slack (3000 - slack granules), and the peak rises by the rest. */
    _Static_assert((MP_PEAK_SLACK_BYTES >> MP_PAGE_SHIFT) < 3000 &&
                       3000 - (MP_PEAK_SLACK_BYTES >> MP_PAGE_SHIFT) < 1601,
                   "the sizes below assume this slack");
    mp_span *v = take_clean(pool, 3100, 1, &clean);
    CHECK(v != NULL);
    CHECK_EQ_U(clean, 3100);
    CHECK_EQ_U(heap->dirty_free_granules, slack);
    CHECK_EQ_U(arena_count_dirty(y->arena, y->page, (uint32_t)slack), slack);
    CHECK_EQ_U(arena_count_dirty(y->arena, y->page + (uint32_t)slack, 3000 - (uint32_t)slack), 0);
    CHECK_EQ_U(pool->acct.resident, (6602 + slack) * MP_PAGE_SIZE);
    CHECK_EQ_U(pool->acct.peak_resident, pool->acct.resident);
    CHECK_EQ_U(mp_pool_check(pool), 0);
    give(pool, v, 300);
    give(pool, z, 300);
    give(pool, s2, 300);
    give(pool, s1, 300);
    CHECK_EQ_U(mp_pool_check(pool), 0);
    mp_pool_destroy(pool);
}

/* An infinite decay keeps every page until trim: the peak rule gives no
 * hole back then. */
static void test_peak_rule_off_with_infinite_decay(void)
{
    mp_pool *pool = make_pool_arena((size_t)64 << 20); /* decay_ms -1 */
    mp_heap *heap = &pool->heaps[MP_HEAP_PAGES];
    mp_span *y = take(pool, 3000, 1), *s1 = take(pool, 1, 1);
    CHECK(y && s1);
    give(pool, y, 100);
    uint64_t peak = pool->acct.peak_resident;
    uint32_t clean;
    mp_span *v = take_clean(pool, 3100, 1, &clean);
    CHECK(v != NULL);
    CHECK_EQ_U(clean, 3100);
    CHECK_EQ_U(heap->dirty_free_granules, 3000);
    CHECK_EQ_U(pool->acct.peak_resident, peak + 3100 * MP_PAGE_SIZE);
    give(pool, v, 300);
    give(pool, s1, 300);
    CHECK_EQ_U(mp_pool_check(pool), 0);
    mp_pool_destroy(pool);
}

/* The peak rule spans both heaps, oldest hole first: a free huge-page-heap
 * block older than a page-heap hole gives back its tail granule when a
 * page-heap request takes resident past the peak (9 MiB held, the slack
 * keeps 8 MiB: one 2 MiB granule goes). */
static void test_peak_rule_oldest_across_heaps(void)
{
    _Static_assert(MP_PEAK_SLACK_BYTES == (uint64_t)8 << 20, "the sizes below assume this slack");
    mp_pool *pool = make_pool_arena((size_t)64 << 20);
    if (!pool->use_huge_heap) { /* huge_pages "off" in this environment */
        mp_pool_destroy(pool);
        return;
    }
    mp_heap *huge = &pool->heaps[MP_HEAP_HUGE], *pages = &pool->heaps[MP_HEAP_PAGES];
    void *h = mp_alloc(pool, (size_t)8 << 20);
    mp_span *p = take(pool, 256, 1), *sep = take(pool, 1, 1);
    CHECK(h && p && sep);
    CHECK_EQ_U(mp_free(pool, h, (size_t)8 << 20), MP_OK);
    pool->config.decay_ms = 1000; /* finite (see above); mp_free ran no decay (-1) */
    give(pool, p, os_now_ms() + 1000); /* the newer hole */
    uint64_t peak = pool->acct.peak_resident;
    CHECK_EQ_U(huge->dirty_free_granules, 4);
    CHECK_EQ_U(pages->dirty_free_granules, 256);
    uint32_t clean;
    mp_span *q = take_clean(pool, 512, 1, &clean); /* 2 MiB, fits no resident hole */
    CHECK(q != NULL);
    CHECK_EQ_U(clean, 512);
    CHECK_EQ_U(huge->dirty_free_granules, 3);
    CHECK_EQ_U(pages->dirty_free_granules, 256);
    CHECK_EQ_U(pool->acct.peak_resident, peak);
    give(pool, q, 0);
    give(pool, sep, 0);
    CHECK_EQ_U(mp_pool_check(pool), 0);
    mp_pool_destroy(pool);
}

/* A foreign address is never found in the chunk map; an arena's is. */
static void test_chunk_map(void)
{
    mp_pool *pool = make_pool();
    mp_span *a = take(pool, 1, 1);
    int local;
    CHECK(map_lookup(&local) == NULL);
    CHECK(map_lookup((void *)(uintptr_t)1) == NULL);
    CHECK(map_lookup((void *)~(uintptr_t)0) == NULL);
    mp_region *region = map_lookup(span_addr(a));
    CHECK(region == &a->arena->region && region->owner == pool);
    CHECK(map_lookup(region->base + region->size - 1) == region);
    give(pool, a, 0);
    char *base = region->base;
    mp_trim(pool);
    CHECK(map_lookup(base) == NULL); /* the arena is gone from the map */
    mp_pool_destroy(pool);
}

int main(void)
{
    test_split_coalesce();
    test_good_fit_reuses_holes();
    test_alignment();
    test_resize_in_place();
    test_dirty_and_purge();
    test_hole_cap_gives_back_a_tail();
    test_holes_never_raise_the_peak();
    test_peak_rule_off_with_infinite_decay();
    test_peak_rule_oldest_across_heaps();
    test_chunk_map();
    return test_report("test_tlsf");
}
