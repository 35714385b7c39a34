/*
 * test_heap.c - heap.c (the TLSF heap of spans) and arena.c.  First the heap
 * layer alone: no pool, only the accounting and graves a heap reports into
 * (split, coalesce, placement, the dirty report, the capacity, the checker
 * naming what it finds broken).  Then inside a whole pool, driven through
 * the internal API (span_helpers.h) so that split, coalesce, boundary tags,
 * good fit, alignment, in-place resizing, resident holes taken before clean
 * spans and the huge-page advice 2 MiB extents earn are checked directly
 * rather than through mp_alloc; the address map finds an arena's chunks and no
 * other; and after everything is freed one request as large as the largest
 * free span fits without reserving more.  When pages go back is decay.c's
 * (test_decay.c).
 */
#define _GNU_SOURCE /* getrusage, sysconf, nanosleep under -std=c11 */
#include "pool_helpers.h"
#include "span_helpers.h"

#include <string.h>

static int dirty_reports;
static void on_dirty(mp_acct *acct) {
    (void)acct;
    dirty_reports++;
}

typedef struct fixture {
    mp_acct acct;
    map_graves graves;
    mp_heap heap;
} fixture;

/* A page heap of 8 MiB arenas (2048 granules), keeping one free arena. */
static void setup(fixture *f, size_t capacity) {
    memset(f, 0, sizeof *f);
    f->acct.capacity = capacity;
    f->acct.on_dirty = on_dirty;
    heap_init(&f->heap, f, &f->acct, &f->graves, MP_PAGE_SHIFT, 0, (size_t)8 << 20, 1);
}

/* heap_check finds nothing, or prints what it names. */
static void check_clean(fixture *f) {
    mp_check_log log = {0};
    size_t bad = heap_check(&f->heap, &log);
    CHECK_MSG(bad == 0 && log.bad == 0, "heap_check: %zu, first: %s", bad,
              log.named ? log.what[0] : "-");
}

static mp_span *take(fixture *f, size_t n) {
    uint32_t clean = 0;
    mp_span *s = decay_alloc(&f->heap, n, 1, &clean);
    CHECK(s != NULL);
    if (s)
        MP_UNPOISON(span_addr(s), span_bytes(s));
    return s;
}

static void test_split_coalesce_and_reports(void) {
    fixture f;
    setup(&f, 0);
    dirty_reports = 0;
    mp_span *a = take(&f, 3), *b = take(&f, 5), *c = take(&f, 7);
    CHECK(span_addr(b) == span_addr(a) + 3 * MP_PAGE_SIZE); /* address order */
    CHECK_EQ_U(f.acct.reserved, (size_t)8 << 20);
    CHECK_EQ_U(f.acct.resident, 15 * MP_PAGE_SIZE);
    CHECK_EQ_U(dirty_reports, 0); /* nothing free is dirty yet */
    heap_free(&f.heap, b, 10);
    CHECK_EQ_U(dirty_reports, 1); /* the LRU went from empty to not: reported */
    heap_free(&f.heap, a, 11);
    /* merged with b: b left the LRU (empty again) and a+b entered it */
    CHECK_EQ_U(dirty_reports, 2);
    CHECK_EQ_U(f.heap.free_spans, 2); /* a+b, and the arena's tail after c */
    check_clean(&f);
    heap_free(&f.heap, c, 12); /* everything merges back into one span */
    CHECK_EQ_U(f.heap.free_spans, 1);
    CHECK_EQ_U(f.heap.free_granules, 2048);
    check_clean(&f);
    /* decay: nothing is old enough at t=100 with a decay of 1000 ms... */
    CHECK_EQ_U(decay_purge(&f.heap, 100, 1000, false), 0);
    /* ...everything at t=5000 (no allowance beyond the recent peak) */
    size_t given = decay_purge(&f.heap, 5000, 1000, false) + decay_purge(&f.heap, 9000, 1000, false);
    CHECK_EQ_U(given, 15 * MP_PAGE_SIZE);
    CHECK_EQ_U(f.acct.resident, 0);
    CHECK_EQ_U(f.acct.released, 15 * MP_PAGE_SIZE);
    CHECK_EQ_U(f.heap.arena_count, 1); /* retain_arenas keeps one */
    check_clean(&f);
    /* release_arenas unmaps it; its range goes to the graves */
    char *base = span_addr(&LIST_ENTRY(f.heap.arenas.head, mp_arena, link)->spans[0]);
    decay_purge(&f.heap, 9000, 0, true);
    CHECK_EQ_U(f.heap.arena_count, 0);
    CHECK_EQ_U(f.acct.reserved, 0);
    CHECK(map_buried(&f.graves, base) && map_lookup(base) == NULL);
    heap_destroy(&f.heap);
}

static void test_capacity_refuses(void) {
    fixture f;
    setup(&f, (size_t)8 << 20); /* room for exactly one arena */
    mp_span *a = take(&f, 2048);
    uint32_t clean;
    CHECK(decay_alloc(&f.heap, 1, 1, &clean) == NULL); /* a second arena would exceed it */
    CHECK_EQ_U(f.acct.reserved, (size_t)8 << 20);
    heap_free(&f.heap, a, 0);
    check_clean(&f);
    heap_destroy(&f.heap);
    CHECK_EQ_U(f.acct.resident, 0);
}

static void test_alignment(void) {
    fixture f;
    setup(&f, 0);
    mp_span *pad = take(&f, 1);
    uint32_t clean;
    mp_span *s = decay_alloc(&f.heap, 4, 64, &clean); /* 256 KiB aligned */
    CHECK(s && ((uintptr_t)span_addr(s) & (64 * MP_PAGE_SIZE - 1)) == 0);
    CHECK_EQ_U(clean, 4);
    heap_free(&f.heap, s, 0);
    heap_free(&f.heap, pad, 0);
    check_clean(&f);
    heap_destroy(&f.heap);
}

static void test_checker_names_what_broke(void) {
    fixture f;
    setup(&f, 0);
    mp_span *a = take(&f, 4);
    f.heap.free_granules += 1; /* a counter that no longer sums the walk */
    mp_check_log log = {0};
    size_t bad = heap_check(&f.heap, &log);
    CHECK_EQ_U(bad, 1);
    CHECK(log.named == 1 && strcmp(log.what[0], "heap: free granule count") == 0);
    f.heap.free_granules -= 1;
    heap_free(&f.heap, a, 0);
    check_clean(&f);
    heap_destroy(&f.heap);
}

/* After everything is freed the free space coalesces: one request as large
 * as largest_free_bytes fits without reserving more (OffsetAllocator's test). */
static void test_full_size_after_free(void)
{
    mp_pool *pool = make_quiet_pool();
    if (!pool)
        return;
    enum { N = 24 };
    void *p[N];
    size_t size = g_defaults.arena_bytes / (2 * N) > 256 * KiB
                      ? g_defaults.arena_bytes / (2 * N) : 256 * KiB;
    for (int i = 0; i < N; i++)
        p[i] = mp_alloc(pool, size);
    for (int i = 0; i < N; i += 2) /* odd ones first: gaps must merge later */
        CHECK_ERR(mp_free(pool, p[i + 1], size), MP_OK);
    for (int i = 0; i < N; i += 2)
        CHECK_ERR(mp_free(pool, p[i], size), MP_OK);
    mp_stats s = snap(pool);
    CHECK_MSG(s.largest_free_bytes >= (uint64_t)N * size,
              "largest free %" PRIu64 " < %zu freed in one arena (not coalesced?)",
              s.largest_free_bytes, N * size);
    void *big = mp_alloc(pool, s.largest_free_bytes);
    CHECK_MSG(big != NULL, "alloc of largest_free_bytes %" PRIu64 " failed",
              s.largest_free_bytes);
    mp_stats t = snap(pool);
    CHECK_MSG(t.reserved_bytes == s.reserved_bytes,
              "reserved grew %" PRIu64 " -> %" PRIu64 " for a request that fit",
              s.reserved_bytes, t.reserved_bytes);
    CHECK_ERR(mp_free(pool, big, s.largest_free_bytes), MP_OK);
    CHECK_EQ_U(mp_pool_check(pool), 0);
    mp_pool_destroy(pool);
}

/* Split and coalesce: three neighbours freed in every order merge back into
 * the one span the arena started as. */
static void test_split_coalesce(void)
{
    static const int orders[6][3] = {{0, 1, 2}, {0, 2, 1}, {1, 0, 2},
                                     {1, 2, 0}, {2, 0, 1}, {2, 1, 0}};
    mp_pool *pool = span_pool();
    mp_heap *heap = &pool->heaps[MP_HEAP_PAGES];
    for (int o = 0; o < 6; o++) {
        mp_span *s[3] = {span_take(pool, 3, 1), span_take(pool, 5, 1), span_take(pool, 7, 1)};
        CHECK(s[0] && s[1] && s[2]);
        CHECK(span_addr(s[1]) == span_addr(s[0]) + 3 * MP_PAGE_SIZE); /* address order */
        CHECK_EQ_U(s[2]->prev_npages, 5);
        CHECK_EQ_U(heap->free_spans, 1); /* the tail of the arena */
        for (int i = 0; i < 3; i++) {
            span_give(pool, s[orders[o][i]], 0);
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
    mp_pool *pool = span_pool();
    mp_span *a = span_take(pool, 40, 1), *b = span_take(pool, 1, 1), *c = span_take(pool, 100, 1);
    mp_span *d = span_take(pool, 1, 1);
    char *hole_a = span_addr(a), *hole_c = span_addr(c);
    span_give(pool, a, 0);
    span_give(pool, c, 0);
    mp_span *fit = span_take(pool, 90, 1); /* 90 fits only the 100-granule hole */
    CHECK(fit && span_addr(fit) == hole_c);
    mp_span *small = span_take(pool, 33, 1); /* fits the 40-granule hole */
    CHECK(small && span_addr(small) == hole_a);
    CHECK_EQ_U(mp_pool_check(pool), 0);
    span_give(pool, fit, 0);
    span_give(pool, small, 0);
    span_give(pool, b, 0);
    span_give(pool, d, 0);
    CHECK_EQ_U(pool->heaps[MP_HEAP_PAGES].free_spans, 1);
    mp_pool_destroy(pool);
}

/* Alignment: the front slack becomes a free span, the block is aligned. */
static void test_alignment_in_pool(void)
{
    mp_pool *pool = span_pool();
    mp_span *pad = span_take(pool, 3, 1);
    for (size_t align = 2; align <= 256; align *= 2) {
        mp_span *s = span_take(pool, 5, align);
        CHECK(s != NULL);
        if (s)
            CHECK_MSG(((uintptr_t)span_addr(s) & (align * MP_PAGE_SIZE - 1)) == 0,
                      "span not aligned to %zu granules", align);
        CHECK_EQ_U(mp_pool_check(pool), 0);
        if (s)
            span_give(pool, s, 0);
    }
    span_give(pool, pad, 0);
    CHECK_EQ_U(pool->heaps[MP_HEAP_PAGES].free_spans, 1);
    mp_pool_destroy(pool);
}

/* In-place growth takes the free successor; shrinking frees the tail. */
static void test_resize_in_place(void)
{
    mp_pool *pool = span_pool();
    mp_heap *heap = &pool->heaps[MP_HEAP_PAGES];
    mp_span *a = span_take(pool, 10, 1), *b = span_take(pool, 10, 1), *c = span_take(pool, 10, 1);
    span_give(pool, b, 0);
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
    span_give(pool, a, 0);
    span_give(pool, c, 0);
    CHECK_EQ_U(heap->free_spans, 1);
    mp_pool_destroy(pool);
}

/* Whether extent e of the arena is advised huge pages. */
static bool extent_huge(const mp_arena *arena, uint32_t e)
{
    return bits_count(arena->huge_bits, e, 1) != 0;
}

/* huge_pages "auto": a block's 2 MiB extents that it covers whole while they
 * are clean are advised huge pages, those it covers in part base pages; a
 * block of two extents or more from clean memory starts on an extent (the
 * gap stays a clean free span that smaller blocks take), and an extent keeps
 * its advice until a block needs the other. */
static void test_extents_earn_huge_pages(void)
{
    enum { X = 512 }; /* granules per 2 MiB extent */
    mp_pool *pool = span_pool_with((size_t)64 << 20, MP_HUGE_AUTO, 0);
    CHECK(!pool->use_huge_heap && pool->heaps[MP_HEAP_PAGES].huge_extents);
    mp_span *a = span_take(pool, 100, 1); /* part of extent 0: base pages (its advice at creation) */
    CHECK(a && a->page == 0 && !extent_huge(a->arena, 0));
    uint64_t madv0 = pool->acct.os.madvise; /* the arena's creation advised base pages */
    mp_span *b = span_take(pool, 2 * X + 300, 1); /* 4.6 MiB: starts on extent 1 */
    CHECK(b && b->page == X);
    CHECK(extent_huge(b->arena, 1) && extent_huge(b->arena, 2) && !extent_huge(b->arena, 3));
    CHECK_EQ_U(pool->acct.os.madvise, madv0 + 1); /* one call for extents 1-2 */
    mp_span *c = span_take(pool, 300, 1); /* the gap after a takes it: extent 0, base pages */
    CHECK(c && c->page == 100 && !extent_huge(c->arena, 0));
    uint64_t madv1 = pool->acct.os.madvise;
    CHECK_EQ_U(madv1, madv0 + 1);
    /* b back and given back whole: a block as long takes its place again and
     * its extents keep their advice (no call). */
    span_give(pool, b, 100);
    mutex_lock(&pool->lock);
    decay_purge(&pool->heaps[MP_HEAP_PAGES], INT64_MAX / 2, 0, false);
    mutex_unlock(&pool->lock);
    mp_span *e = span_take(pool, 2 * X + 300, 1);
    CHECK(e && e->page == X && extent_huge(e->arena, 1) && extent_huge(e->arena, 2));
    CHECK_EQ_U(pool->acct.os.madvise, madv1 + 1); /* the purge's own call only */
    /* Extent 1 reused in part, clean: base pages from now on. */
    span_give(pool, e, 200);
    mutex_lock(&pool->lock);
    decay_purge(&pool->heaps[MP_HEAP_PAGES], INT64_MAX / 2, 0, false);
    mutex_unlock(&pool->lock);
    mp_span *f = span_take(pool, X, 1); /* under two extents: not aligned; after c, in part of extent 1 */
    CHECK(f && f->page == 400 && !extent_huge(f->arena, 1) && extent_huge(f->arena, 2));
    span_give(pool, f, 300);
    span_give(pool, c, 300);
    span_give(pool, a, 300);
    CHECK_EQ_U(mp_pool_check(pool), 0);
    mp_pool_destroy(pool);
}

/* Resident holes are taken before clean spans, even a clean span that fits
 * better: reusing a hole touches no fresh page. */
static void test_resident_holes_first(void)
{
    mp_pool *pool = span_pool();
    mp_heap *heap = &pool->heaps[MP_HEAP_PAGES];
    mp_span *big = span_take(pool, 40, 1), *s1 = span_take(pool, 1, 1);
    mp_span *small = span_take(pool, 10, 1), *s2 = span_take(pool, 1, 1);
    CHECK(big && s1 && small && s2);
    mp_span *t[33];
    for (int i = 0; i < 33; i++) { /* 33 newer holes push big's out of the LRU window */
        t[i] = span_take(pool, 1, 1);
        CHECK(t[i] && span_take(pool, 1, 1));
    }
    char *big_at = span_addr(big);
    span_give(pool, big, 100);
    span_give(pool, small, 100);
    mutex_lock(&pool->lock);
    decay_purge_tail(heap, small, small->npages); /* the 10-granule hole is clean now */
    mutex_unlock(&pool->lock);
    CHECK_EQ_U(small->dirty, 0);
    for (int i = 0; i < 33; i++)
        span_give(pool, t[i], 110);
    CHECK_EQ_U(mp_pool_check(pool), 0);
    uint32_t clean;
    mp_span *x = span_take_clean(pool, 10, 1, &clean);
    CHECK(x && span_addr(x) == big_at);
    CHECK_EQ_U(clean, 0);
    CHECK_EQ_U(mp_pool_check(pool), 0);
    mp_trim(pool);
    mp_pool_destroy(pool);
}

/* A foreign address is never found in the chunk map; an arena's is. */
static void test_chunk_map(void)
{
    mp_pool *pool = span_pool();
    mp_span *a = span_take(pool, 1, 1);
    int local;
    CHECK(map_lookup(&local) == NULL);
    CHECK(map_lookup((void *)(uintptr_t)1) == NULL);
    CHECK(map_lookup((void *)~(uintptr_t)0) == NULL);
    mp_region *region = map_lookup(span_addr(a));
    CHECK(region == &a->arena->region && region->owner == pool);
    CHECK(map_lookup(region->base + region->size - 1) == region);
    span_give(pool, a, 0);
    char *base = region->base;
    mp_trim(pool);
    CHECK(map_lookup(base) == NULL); /* the arena is gone from the map */
    mp_pool_destroy(pool);
}

int main(void) {
    helpers_init();
    test_split_coalesce_and_reports();
    test_capacity_refuses();
    test_alignment();
    test_checker_names_what_broke();
    test_split_coalesce();
    test_good_fit_reuses_holes();
    test_alignment_in_pool();
    test_resize_in_place();
    test_extents_earn_huge_pages();
    test_resident_holes_first();
    test_chunk_map();
    test_full_size_after_free();
    return test_report("test_heap");
}
