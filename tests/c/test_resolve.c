/*
 * test_resolve.c - resolve.c: a pointer is trusted only once found.  Block
 * queries (mp_usable_size, mp_owns, mp_requested_size) of live blocks, and
 * every misuse code of mp_free (double, foreign, interior, wrong size) caught
 * with nothing changed, verified field by field on the statistics.
 */
#define _GNU_SOURCE /* getrusage, sysconf, nanosleep under -std=c11 */
#include "pool_helpers.h"

/* Every byte mp_usable_size reports may be written without harming other
 * blocks or the pool (debug fill and canaries included). */
static void test_usable_size(int debug)
{
    mp_pool *pool = make_pool(-1, 0, debug, 0);
    if (!pool)
        return;
    test_rng rng;
    test_rng_seed(&rng, 7 + (uint64_t)debug);
    enum { N = 600 };
    static blk b[N];
    static size_t usable[N];
    for (int i = 0; i < N; i++) {
        size_t size = i % 50 == 0 ? (size_t)test_rng_range(&rng, 64 * KiB, 3 * MiB)
                                  : (size_t)test_rng_range(&rng, 0, 40000);
        b[i].p = mp_alloc(pool, size);
        b[i].size = size;
        usable[i] = b[i].p ? mp_usable_size(pool, b[i].p) : 0;
        CHECK(b[i].p != NULL && usable[i] >= size);
        if (b[i].p)
            test_pattern_fill(b[i].p, (uint64_t)i + 1, 0, usable[i]);
    }
    for (int i = 0; i < N; i++) {
        if (!b[i].p)
            continue;
        size_t bad = test_pattern_find_bad(b[i].p, (uint64_t)i + 1, 0, usable[i]);
        CHECK_MSG(bad == SIZE_MAX, "debug %d: block of %zu (usable %zu) changed at %zu", debug,
                  b[i].size, usable[i], bad);
        int rc = mp_free(pool, b[i].p, b[i].size);
        CHECK_MSG(rc == MP_OK, "debug %d: free after writing all %zu usable bytes: %s", debug,
                  usable[i], mp_error_name(rc));
    }
    mp_stats s = snap(pool);
    CHECK_EQ_U(s.live_bytes, 0);
    CHECK_EQ_U(s.error_total, 0);
    CHECK_EQ_U(mp_pool_check(pool), 0);
    mp_pool_destroy(pool);
}

/* usable bytes, plain config. */
static void test_usable_size_plain(void) { test_usable_size(0); }

/* usable bytes with debug fill on. */
static void test_usable_size_debug(void) { test_usable_size(1); }

/* Every misuse code of mp_free, for a small, a large and a direct block. */
static void test_free_errors(void)
{
    mp_pool *pool = make_quiet_pool();
    mp_pool *other = make_quiet_pool();
    if (!pool || !other)
        return;
    /* warm this thread up, so first-use allocations of metadata are done */
    void *w = mp_alloc(pool, 64);
    mp_free(pool, w, 64);
    w = mp_alloc(pool, 1 * MiB);
    mp_free(pool, w, 1 * MiB);

    CHECK_ERR(mp_free(pool, NULL, 0), MP_OK);
    CHECK_ERR(mp_free(pool, NULL, 100), MP_OK);

    size_t sizes[] = {200, g_defaults.small_max, 1 * MiB + 100, direct_size()};
    const char *kinds[] = {"small", "small_max", "large", "direct"};
    for (int k = 0; k < 4; k++) {
        size_t size = sizes[k];
        char what[128];
        uint8_t *keep = mp_alloc(pool, size); /* a neighbour that must survive */
        uint8_t *p = mp_alloc(pool, size);
        if (!CHECK(p != NULL && keep != NULL))
            continue;
        test_block_fill(keep, 7, size);
        test_block_fill(p, 8, size);

        snprintf(what, sizeof what, "%s: wrong size +1", kinds[k]);
        EXPECT_FREE_ERROR(pool, p, size + 1, MP_ESIZE, what);
        snprintf(what, sizeof what, "%s: wrong size -1", kinds[k]);
        EXPECT_FREE_ERROR(pool, p, size - 1, MP_ESIZE, what);
        snprintf(what, sizeof what, "%s: interior +64", kinds[k]);
        EXPECT_FREE_ERROR(pool, p + 64, 0, MP_EINTERIOR, what);
        snprintf(what, sizeof what, "%s: interior +1", kinds[k]);
        EXPECT_FREE_ERROR(pool, p + 1, 0, MP_EINTERIOR, what);
        snprintf(what, sizeof what, "%s: interior middle", kinds[k]);
        EXPECT_FREE_ERROR(pool, p + (size / 2 & ~(size_t)63), 0, MP_EINTERIOR, what);
        snprintf(what, sizeof what, "%s: foreign (other pool)", kinds[k]);
        EXPECT_FREE_ERROR(other, p, size, MP_EFOREIGN, what);
        CHECK_MSG(mp_owns(other, p) == 0, "%s: other pool owns the block", kinds[k]);
        CHECK(mp_owns(pool, p + 64) == 0);
        CHECK(mp_usable_size(pool, p + 64) == 0);

        /* the failed calls left the block live and its content alone */
        CHECK(mp_owns(pool, p) == 1);
        CHECK(test_block_verify(p, 8, size, size) == SIZE_MAX);
        CHECK_ERR(mp_free(pool, p, size), MP_OK);
        CHECK(mp_owns(pool, p) == 0);
        CHECK(mp_usable_size(pool, p) == 0);
        size_t req = 0;
        CHECK(mp_requested_size(pool, p, &req) != MP_OK);
        if (k < 3) {
            snprintf(what, sizeof what, "%s: double free", kinds[k]);
            EXPECT_FREE_ERROR(pool, p, size, MP_EDOUBLEFREE, what);
            snprintf(what, sizeof what, "%s: double free, size unknown", kinds[k]);
            EXPECT_FREE_ERROR(pool, p, 0, MP_EDOUBLEFREE, what);
        } else {
            /* a direct mapping is gone once freed: the pool may no longer
             * know the address, so "foreign" is an honest answer too */
            mp_stats b = snap(pool);
            int rc = mp_free(pool, p, size);
            CHECK_MSG(rc == MP_EDOUBLEFREE || rc == MP_EFOREIGN,
                      "direct: double free returned %s", mp_error_name(rc));
            mp_stats a = snap(pool);
            check_unchanged(&b, &a, rc, "direct: double free", __LINE__);
        }
        CHECK(test_block_verify(keep, 7, size, size) == SIZE_MAX);
        CHECK_ERR(mp_free(pool, keep, size), MP_OK);
        CHECK_EQ_U(mp_pool_check(pool), 0);
    }

    /* pointers the pool never handed out */
    alignas(64) uint8_t stack_buf[256];
    stack_buf[0] = 1;
    void *heap_buf = malloc(4096);
    alignas(64) static uint8_t static_buf[4096];
    void *foreign[] = {stack_buf, heap_buf, static_buf, (void *)(uintptr_t)4096,
                       (void *)(uintptr_t)64, (void *)(uintptr_t)0xdeadbeef000ull};
    for (size_t i = 0; i < sizeof foreign / sizeof *foreign; i++) {
        char what[64];
        snprintf(what, sizeof what, "foreign pointer #%zu", i);
        EXPECT_FREE_ERROR(pool, foreign[i], 0, MP_EFOREIGN, what);
        EXPECT_FREE_ERROR(pool, foreign[i], 64, MP_EFOREIGN, what);
        CHECK(mp_owns(pool, foreign[i]) == 0);
        CHECK(mp_usable_size(pool, foreign[i]) == 0);
        size_t req = 0;
        CHECK_ERR(mp_requested_size(pool, foreign[i], &req), MP_EFOREIGN);
    }
    free(heap_buf);
    mp_stats s = snap(pool);
    CHECK_EQ_U(s.live_bytes, 0);
    CHECK_MSG(s.errors[-MP_EFOREIGN] >= 12, "EFOREIGN counted %" PRIu64,
              s.errors[-MP_EFOREIGN]);
    CHECK_EQ_U(mp_pool_check(pool), 0);
    mp_pool_destroy(pool);
    mp_pool_destroy(other);
}

int main(void)
{
    helpers_init();
    static const test_case tests[] = {
        {"usable_size", test_usable_size_plain},
        {"usable_size_debug", test_usable_size_debug},
        {"free_errors", test_free_errors},
    };
    return TEST_RUN("test_resolve", tests);
}
