/*
 * test_debug.c - debug.c: debug mode (canaries, write-after-free, the
 * corruption reports and their ring, the heap checker's canary walk), and
 * nothing of it when off.  ASan's poisoning of free blocks and of the NEP 49
 * entry points are alloc.c's (test_alloc.c).
 */
#include "mempool.h"
#include "base/base.h"
#include "test.h"

#include <string.h>

/* A debug pool with a small arena so every kind of block is reachable:
 * small (<= 4096), large (page heap), direct (> 4 MiB). */
static mp_pool *debug_pool(void)
{
    mp_config c;
    mp_config_default(&c);
    c.debug = 1;
    c.small_max = 4096;
    c.arena_bytes = (size_t)4 << 20;
    c.decay_ms = -1; /* nothing purged behind the test's back */
    c.background_purge = 0;
    mp_pool *pool = NULL;
    CHECK_ERR(mp_pool_create(&c, &pool), MP_OK);
    return pool;
}

static uint64_t corrupt_count(mp_pool *pool)
{
    mp_stats st;
    mp_stats_get(pool, &st);
    return st.errors[-MP_ECORRUPT];
}

/* One byte past the requested size is caught on free: MP_ECORRUPT, the block
 * is freed anyway, and the report names it.  For small, large and direct. */
static void test_canary_on_free(void)
{
    static const size_t sizes[] = {1, 100, 4088, 4089, 4096, 70000, (size_t)5 << 20};
    static const int kinds[] = {0, 0, 0, -1, -1, -1, -2};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        mp_pool *pool = debug_pool();
        size_t size = sizes[k];
        unsigned char *p = mp_alloc(pool, size);
        if (!CHECK(p != NULL))
            continue;
        CHECK_EQ_U(mp_usable_size(pool, p), size); /* debug: usable == requested */
        CHECK_EQ_U(mp_pool_check(pool), 0);
        MP_UNPOISON(p + size, 1);
        p[size] = 0x00; /* the overrun */
        CHECK_EQ_U(mp_pool_check(pool), 1);    /* the checker sees it on a live block */
        CHECK_EQ_U(mp_debug_reports(pool, NULL, 0), 1);
        mp_corruption_report r[MP_DEBUG_REPORTS];
        CHECK_EQ_U(mp_debug_reports(pool, r, MP_DEBUG_REPORTS), 1);
        CHECK_EQ_U(mp_debug_reports(pool, NULL, 0), 0); /* taken and cleared */
        CHECK_ERR(mp_free(pool, p, size), MP_ECORRUPT);
        CHECK_EQ_U(mp_debug_reports(pool, r, MP_DEBUG_REPORTS), 1);
        CHECK(r[0].address == (uintptr_t)p && r[0].requested == size);
        CHECK(r[0].kind == MP_CORRUPT_CANARY && r[0].bad_offset == size);
        CHECK(r[0].region_base != 0 && r[0].region_base + r[0].offset == (uintptr_t)p);
        CHECK(r[0].block_bytes >= size + MP_CANARY_BYTES);
        CHECK_MSG(kinds[k] == 0 ? r[0].size_class >= 0 : r[0].size_class == kinds[k],
                  "size %zu: class %d", size, r[0].size_class);
        CHECK_EQ_U(corrupt_count(pool), 2);
        CHECK_ERR(mp_free(pool, p, 0), MP_EDOUBLEFREE); /* it was freed */
        CHECK_EQ_U(mp_pool_check(pool), 0);
        mp_pool_destroy(pool);
    }
}

/* A write into a freed small block is caught when the block is handed out
 * again (the thread cache hands back the last freed block first). */
static void test_write_after_free(void)
{
    mp_pool *pool = debug_pool();
    unsigned char *p = mp_alloc(pool, 200);
    CHECK(p != NULL);
    CHECK_ERR(mp_free(pool, p, 200), MP_OK);
    MP_UNPOISON(p + 17, 1);
    p[17] = 1; /* the write after free */
    unsigned char *q = mp_alloc(pool, 200);
    CHECK(q == p);
    mp_corruption_report r;
    CHECK_EQ_U(mp_debug_reports(pool, &r, 1), 1);
    CHECK(r.kind == MP_CORRUPT_FREED && r.address == (uintptr_t)p && r.bad_offset == 17);
    CHECK(r.size_class >= 0 && r.block_bytes >= 208);
    CHECK_EQ_U(corrupt_count(pool), 1);
    /* The new block is fresh: 0xAB, and its own canary intact. */
    CHECK(q[0] == 0xAB && q[199] == 0xAB);
    CHECK_ERR(mp_free(pool, q, 200), MP_OK);
    CHECK_EQ_U(mp_pool_check(pool), 0);
    mp_pool_destroy(pool);
}

/* Healthy use raises nothing: calloc zeroes, realloc keeps content and moves
 * the canary (in a class, in place for large, by mremap for direct). */
static void test_debug_clean_paths(void)
{
    mp_pool *pool = debug_pool();
    unsigned char *z = mp_calloc(pool, 10, 7);
    CHECK(z != NULL && test_find_nonzero(z, 0, 70) == SIZE_MAX);
    unsigned char *zl = mp_calloc(pool, 1000, 100);
    CHECK(zl != NULL && test_find_nonzero(zl, 0, 100000) == SIZE_MAX);
    static const size_t steps[] = {64, 100, 4000, 5000, 100000, 60000, (size_t)6 << 20,
                                   (size_t)9 << 20, (size_t)5 << 20, 300, 0, 50};
    unsigned char *p = NULL;
    size_t have = 0;
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        size_t n = steps[i];
        unsigned char *q = mp_realloc(pool, p, have, n);
        CHECK_MSG(q != NULL, "realloc %zu -> %zu: %s", have, n, mp_error_name(mp_last_error()));
        size_t keep = have < n ? have : n;
        CHECK_MSG(test_pattern_find_bad(q, 7, 0, keep) == SIZE_MAX, "content lost %zu -> %zu",
                  have, n);
        test_pattern_fill(q, 7, 0, n);
        CHECK_EQ_U(mp_pool_check(pool), 0);
        p = q;
        have = n;
    }
    CHECK_ERR(mp_free(pool, p, have), MP_OK);
    CHECK_ERR(mp_free(pool, z, 70), MP_OK);
    CHECK_ERR(mp_free(pool, zl, 100000), MP_OK);
    CHECK_EQ_U(corrupt_count(pool), 0);
    CHECK_EQ_U(mp_debug_reports(pool, NULL, 0), 0);
    /* A size that fits a class only without the canary goes one class up. */
    unsigned char *edge = mp_alloc(pool, 64);
    CHECK(edge != NULL && mp_requested_size(pool, edge, &have) == MP_OK && have == 64);
    CHECK_ERR(mp_free(pool, edge, 64), MP_OK);
    CHECK_EQ_U(mp_pool_check(pool), 0);
    mp_pool_destroy(pool);
}

/* The ring keeps the first MP_DEBUG_REPORTS reports; the counter counts all. */
static void test_ring_overflow(void)
{
    mp_pool *pool = debug_pool();
    for (int i = 0; i < MP_DEBUG_REPORTS + 5; i++) {
        unsigned char *p = mp_alloc(pool, 40);
        MP_UNPOISON(p + 40, 1);
        p[40] ^= 0xFF;
        CHECK_ERR(mp_free(pool, p, 40), MP_ECORRUPT);
    }
    CHECK_EQ_U(mp_debug_reports(pool, NULL, 0), MP_DEBUG_REPORTS);
    CHECK_EQ_U(corrupt_count(pool), MP_DEBUG_REPORTS + 5);
    mp_corruption_report r[4];
    CHECK_EQ_U(mp_debug_reports(pool, r, 4), 4);
    CHECK_EQ_U(mp_debug_reports(pool, NULL, 0), MP_DEBUG_REPORTS - 4);
    mp_pool_destroy(pool);
}

/* Debug mode off: no canary, no reports, usable is the block size. */
static void test_debug_off(void)
{
    mp_pool *pool = NULL;
    CHECK_ERR(mp_pool_create(NULL, &pool), MP_OK);
    unsigned char *p = mp_alloc(pool, 100);
    CHECK(mp_usable_size(pool, p) == (MP_ASAN ? 100 : 128));
    CHECK_ERR(mp_free(pool, p, 100), MP_OK);
    CHECK_EQ_U(mp_debug_reports(pool, NULL, 0), 0);
    mp_pool_destroy(pool);
}

int main(void)
{
    test_canary_on_free();
    test_write_after_free();
    test_debug_clean_paths();
    test_ring_overflow();
    test_debug_off();
    return test_report("test_debug");
}
