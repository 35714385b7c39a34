/*
 * test_decay.c - decay.c: when free pages go back.  Pages stay resident for
 * the decay, then go; a steady loop of large temporaries takes no page
 * faults (a kernel counter, not a timing); the dirty bits and purge of a
 * pool's page heap driven by hand; holes never raise the resident peak (the
 * peak rule: oldest first across heaps, whole 2 MiB extents where the heap
 * earns huge pages), and the rule is off with an infinite decay.
 */
#define _GNU_SOURCE /* getrusage, sysconf, nanosleep under -std=c11 */
#include "pool_helpers.h"
#include "span_helpers.h"

/* decay_ms 0 gives freed pages back at once; -1 keeps them until mp_trim;
 * a positive decay gives them back once aged (by call or background thread). */
static void test_decay(void)
{
    size_t size = g_defaults.arena_bytes / 2 < 32 * MiB ? g_defaults.arena_bytes / 2
                                                        : 32 * MiB;
    for (int mode = 0; mode < 4; mode++) {
        /* mode 0: decay 0; 1: decay -1; 2: decay 50 ms, purge on call;
         * 3: decay 50 ms with the background thread */
        int64_t decay = mode == 0 ? 0 : mode == 1 ? -1 : 50;
        mp_pool *pool = make_pool(decay, mode == 3, 0, 0);
        if (!pool)
            return;
        void *warm = mp_alloc(pool, 64); /* thread cache and slab exist first */
        mp_free(pool, warm, 64);
        uint8_t *p = mp_alloc(pool, size);
        if (!CHECK(p != NULL)) {
            mp_pool_destroy(pool);
            continue;
        }
        touch_pages(p, size);
        mp_stats s1 = snap(pool);
        size_t rss1 = process_rss();
        CHECK_ERR(mp_free(pool, p, size), MP_OK);
        mp_stats s2 = snap(pool);
        size_t rss2 = process_rss();
        if (mode == 0) {
            CHECK_MSG(s2.resident_bytes + size / 2 <= s1.resident_bytes,
                      "decay 0: resident %" PRIu64 " -> %" PRIu64 " after freeing %zu",
                      s1.resident_bytes, s2.resident_bytes, size);
            CHECK_MSG(rss2 + size / 2 <= rss1, "decay 0: process RSS %zu -> %zu", rss1,
                      rss2);
            CHECK(s2.released_bytes >= s1.released_bytes + size / 2);
        } else {
            CHECK_MSG(s2.resident_bytes >= s1.resident_bytes - size / 8,
                      "decay %" PRId64 ": resident %" PRIu64 " -> %" PRIu64
                      " right after free",
                      decay, s1.resident_bytes, s2.resident_bytes);
            CHECK_MSG(s2.released_bytes == s1.released_bytes,
                      "decay %" PRId64 ": released right after free", decay);
            CHECK(s2.dirty_free_bytes >= size / 2);
        }
        if (mode == 1) {
            sleep_ms(30);
            CHECK_MSG(mp_purge_aged(pool) == 0, "decay -1: purge_aged gave pages back");
            CHECK(snap(pool).resident_bytes + size / 8 >= s1.resident_bytes);
            CHECK(mp_trim(pool) >= size / 2);
            CHECK(snap(pool).resident_bytes + size / 2 <= s1.resident_bytes);
        }
        if (mode == 2) {
            sleep_ms(200);
            size_t purged = mp_purge_aged(pool);
            CHECK_MSG(purged >= size / 2, "decay 50: purge_aged after 200 ms gave %zu",
                      purged);
            CHECK(snap(pool).resident_bytes + size / 2 <= s1.resident_bytes);
        }
        if (mode == 3) { /* the background thread must do it on its own */
            int ok = 0;
            for (int t = 0; t < 100 && !ok; t++) { /* up to 5 s */
                sleep_ms(50);
                ok = snap(pool).resident_bytes + size / 2 <= s1.resident_bytes;
            }
            CHECK_MSG(ok, "background purge: resident still %" PRIu64 " after 5 s",
                      snap(pool).resident_bytes);
        }
        CHECK_EQ_U(mp_pool_check(pool), 0);
        mp_pool_destroy(pool);
    }
}

/* The promise of the library: a loop that allocates, touches and frees the
 * same large temporaries takes no page faults once warm (default config). */
static void test_steady_state_faults(void)
{
    mp_pool *pool = NULL;
    CHECK_ERR(mp_pool_create(NULL, &pool), MP_OK);
    if (!pool)
        return;
    const size_t sizes[] = {1 * MiB + 100, 3 * MiB + 4096, 7 * MiB, 12 * MiB + 777,
                            20 * MiB, 33 * MiB + 64, 48 * MiB - 4096, 64 * MiB};
    enum { NS = sizeof sizes / sizeof *sizes, ITERS = 50, WARM = 3 };
    void *p[NS];
    uint64_t faults_at_warm = 0, per_iter[ITERS];
    int failed_alloc = 0;
    for (int it = 0; it < ITERS; it++) {
        uint64_t f0 = page_faults();
        if (it == WARM)
            faults_at_warm = f0;
        for (int i = 0; i < NS; i++) {
            p[i] = mp_alloc(pool, sizes[i]);
            if (p[i])
                touch_pages(p[i], sizes[i]);
            else
                failed_alloc++;
        }
        for (int i = 0; i < NS; i++)
            if (p[i])
                mp_free(pool, p[i], sizes[i]);
        per_iter[it] = page_faults() - f0;
    }
    uint64_t steady = page_faults() - faults_at_warm;
    printf("steady-state faults: first iterations %" PRIu64 " %" PRIu64 " %" PRIu64
           ", then %" PRIu64 " in %d iterations (last %" PRIu64 ")\n",
           per_iter[0], per_iter[1], per_iter[2], steady, ITERS - WARM, per_iter[ITERS - 1]);
    CHECK_EQ_U(failed_alloc, 0);
    CHECK_MSG(steady <= 16, "%" PRIu64 " page faults in %d warm iterations", steady,
              ITERS - WARM);
    CHECK_EQ_U(snap(pool).live_bytes, 0);
    CHECK_EQ_U(mp_pool_check(pool), 0);
    mp_pool_destroy(pool);
}

/* Dirty bits and decay: freed spans stay resident until they age past the
 * decay, then go back oldest first; a re-allocation of purged granules
 * reports them clean (they read as zeros). */
static void test_dirty_and_purge(void)
{
    mp_pool *pool = span_pool();
    mp_heap *heap = &pool->heaps[MP_HEAP_PAGES];
    mp_span *a = span_take(pool, 8, 1), *sep1 = span_take(pool, 1, 1);
    mp_span *b = span_take(pool, 8, 1), *sep2 = span_take(pool, 1, 1);
    memset(span_addr(a), 0x5A, span_bytes(a));
    uint64_t resident = pool->acct.resident;
    CHECK_EQ_U(resident, 18 * MP_PAGE_SIZE);
    span_give(pool, a, 100);
    span_give(pool, b, 200);
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
    mp_span *warm = span_take_clean(pool, 8, 1, &clean);
    CHECK(warm && span_addr(warm) == span_addr(b));
    CHECK_EQ_U(clean, 0);
    mp_span *again = span_take_clean(pool, 8, 1, &clean);
    CHECK(again && span_addr(again) == span_addr(a));
    CHECK_EQ_U(clean, 8); /* purged: reads as zeros, calloc may skip memset */
    if (again)
        CHECK_EQ_U(test_find_nonzero(span_addr(again), 0, span_bytes(again)), SIZE_MAX);
    span_give(pool, warm, 300);
    span_give(pool, again, 300);
    span_give(pool, sep1, 300);
    span_give(pool, sep2, 300);
    CHECK_EQ_U(mp_trim(pool) > 0, 1);
    CHECK_EQ_U(pool->acct.resident, 0);
    CHECK_EQ_U(pool->acct.reserved, 0); /* trim unmaps wholly free arenas */
    CHECK_EQ_U(mp_pool_check(pool), 0);
    mp_pool_destroy(pool);
}

/* In a heap whose extents earn huge pages, the peak rule gives back whole
 * extents where the oldest hole holds them: the tail it needs, extended
 * down to the extent it starts in. */
static void test_peak_purge_takes_whole_extents(void)
{
    enum { X = 512 };
    mp_pool *pool = span_pool_with((size_t)64 << 20, MP_HUGE_AUTO, 0);
    mp_heap *heap = &pool->heaps[MP_HEAP_PAGES];
    pool->config.decay_ms = 1000; /* finite: the rule acts */
    mp_span *y = span_take(pool, 6 * X, 1), *s1 = span_take(pool, 1, 1);
    CHECK(y && s1 && y->page == 0);
    span_give(pool, y, 100);
    uint64_t peak = pool->acct.peak_resident;
    /* 8 MiB more than the peak, fitting no hole: the rule must give back
     * 8 MiB of y's 12 (the slack keeps the rest), rounded down to extents. */
    uint32_t clean;
    mp_span *v = span_take_clean(pool, 8 * X, 1, &clean);
    CHECK(v != NULL);
    CHECK_EQ_U(clean, 8 * X);
    uint32_t kept = (uint32_t)heap->dirty_free_granules;
    CHECK(kept % X == 0 && kept < 6 * X && kept >= (MP_PEAK_SLACK_BYTES >> MP_PAGE_SHIFT) - X);
    CHECK_EQ_U(arena_count_dirty(y->arena, 0, kept), kept);
    CHECK_EQ_U(arena_count_dirty(y->arena, kept, 6 * X - kept), 0);
    CHECK(pool->acct.peak_resident <= peak + (uint64_t)8 * X * MP_PAGE_SIZE);
    span_give(pool, v, 300);
    span_give(pool, s1, 300);
    CHECK_EQ_U(mp_pool_check(pool), 0);
    mp_pool_destroy(pool);
}

/* Holes never raise the peak: below the pool's resident peak, fresh pages
 * leave the holes resident; fresh pages that take resident above the peak
 * make the pool give back as many bytes of holes (the oldest hole's tail)
 * beyond MP_PEAK_SLACK_BYTES, and the peak rises only by what is left. */
static void test_holes_never_raise_the_peak(void)
{
    const uint64_t slack = MP_PEAK_SLACK_BYTES >> MP_PAGE_SHIFT; /* granules */
    mp_pool *pool = span_pool_arena((size_t)64 << 20);
    mp_heap *heap = &pool->heaps[MP_HEAP_PAGES];
    /* A finite decay (the rule keeps every hole with an infinite one);
     * nothing here runs the decay itself. */
    pool->config.decay_ms = 1000;
    mp_span *big = span_take(pool, 8000, 1), *s1 = span_take(pool, 1, 1);
    CHECK(big && s1);
    span_give(pool, big, 100);
    uint64_t peak = pool->acct.peak_resident;
    CHECK_EQ_U(peak, 8001 * MP_PAGE_SIZE);
    mutex_lock(&pool->lock);
    decay_purge(heap, INT64_MAX / 2, 0, false);
    mutex_unlock(&pool->lock);
    CHECK_EQ_U(pool->acct.resident, 1 * MP_PAGE_SIZE);
    /* Below the peak: the hole of y stays resident while z touches fresh pages. */
    uint32_t clean;
    mp_span *y = span_take(pool, 3000, 1), *s2 = span_take(pool, 1, 1);
    CHECK(y && s2);
    span_give(pool, y, 200);
    mp_span *z = span_take_clean(pool, 3500, 1, &clean);
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
    mp_span *v = span_take_clean(pool, 3100, 1, &clean);
    CHECK(v != NULL);
    CHECK_EQ_U(clean, 3100);
    CHECK_EQ_U(heap->dirty_free_granules, slack);
    CHECK_EQ_U(arena_count_dirty(y->arena, y->page, (uint32_t)slack), slack);
    CHECK_EQ_U(arena_count_dirty(y->arena, y->page + (uint32_t)slack, 3000 - (uint32_t)slack), 0);
    CHECK_EQ_U(pool->acct.resident, (6602 + slack) * MP_PAGE_SIZE);
    CHECK_EQ_U(pool->acct.peak_resident, pool->acct.resident);
    CHECK_EQ_U(mp_pool_check(pool), 0);
    span_give(pool, v, 300);
    span_give(pool, z, 300);
    span_give(pool, s2, 300);
    span_give(pool, s1, 300);
    CHECK_EQ_U(mp_pool_check(pool), 0);
    mp_pool_destroy(pool);
}

/* An infinite decay keeps every page until trim: the peak rule gives no
 * hole back then. */
static void test_peak_rule_off_with_infinite_decay(void)
{
    mp_pool *pool = span_pool_arena((size_t)64 << 20); /* decay_ms -1 */
    mp_heap *heap = &pool->heaps[MP_HEAP_PAGES];
    mp_span *y = span_take(pool, 3000, 1), *s1 = span_take(pool, 1, 1);
    CHECK(y && s1);
    span_give(pool, y, 100);
    uint64_t peak = pool->acct.peak_resident;
    uint32_t clean;
    mp_span *v = span_take_clean(pool, 3100, 1, &clean);
    CHECK(v != NULL);
    CHECK_EQ_U(clean, 3100);
    CHECK_EQ_U(heap->dirty_free_granules, 3000);
    CHECK_EQ_U(pool->acct.peak_resident, peak + 3100 * MP_PAGE_SIZE);
    span_give(pool, v, 300);
    span_give(pool, s1, 300);
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
    mp_pool *pool = span_pool_with((size_t)64 << 20, MP_HUGE_AUTO, (size_t)4 << 20);
    CHECK(pool->use_huge_heap); /* huge_min asks for the 2 MiB-granule heap */
    mp_heap *huge = &pool->heaps[MP_HEAP_HUGE], *pages = &pool->heaps[MP_HEAP_PAGES];
    void *h = mp_alloc(pool, (size_t)8 << 20);
    mp_span *p = span_take(pool, 256, 1), *sep = span_take(pool, 1, 1);
    CHECK(h && p && sep);
    CHECK_EQ_U(mp_free(pool, h, (size_t)8 << 20), MP_OK);
    pool->config.decay_ms = 1000; /* finite (see above); mp_free ran no decay (-1) */
    span_give(pool, p, os_now_ms() + 1000); /* the newer hole */
    uint64_t peak = pool->acct.peak_resident;
    CHECK_EQ_U(huge->dirty_free_granules, 4);
    CHECK_EQ_U(pages->dirty_free_granules, 256);
    uint32_t clean;
    mp_span *q = span_take_clean(pool, 512, 1, &clean); /* 2 MiB, fits no resident hole */
    CHECK(q != NULL);
    CHECK_EQ_U(clean, 512);
    CHECK_EQ_U(huge->dirty_free_granules, 3);
    CHECK_EQ_U(pages->dirty_free_granules, 256);
    CHECK_EQ_U(pool->acct.peak_resident, peak);
    span_give(pool, q, 0);
    span_give(pool, sep, 0);
    CHECK_EQ_U(mp_pool_check(pool), 0);
    mp_pool_destroy(pool);
}

int main(void)
{
    helpers_init();
    static const test_case tests[] = {
        {"decay", test_decay},
        {"steady_state_faults", test_steady_state_faults},
        {"dirty_and_purge", test_dirty_and_purge},
        {"peak_purge_whole_extents", test_peak_purge_takes_whole_extents},
        {"holes_never_raise_the_peak", test_holes_never_raise_the_peak},
        {"peak_rule_off_infinite", test_peak_rule_off_with_infinite_decay},
        {"peak_rule_oldest_first", test_peak_rule_oldest_across_heaps},
    };
    return TEST_RUN("test_decay", tests);
}
