/*
 * test_hardening.c - debug mode (canaries, write-after-free, reports, the
 * heap checker) and, when built with ASan, the poisoning of free memory and
 * of each block's tail (csrc/sanitize.h).
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

/* Under ASan: a freed block and the tail past the requested size are
 * poisoned, the requested bytes of a live block are not. */
static void test_asan_poison(void)
{
#if MP_ASAN
    for (int debug = 0; debug <= 1; debug++) {
        mp_config c;
        mp_config_default(&c);
        c.debug = debug;
        mp_pool *pool = NULL;
        CHECK_ERR(mp_pool_create(&c, &pool), MP_OK);
        static const size_t sizes[] = {1, 100, 5000, 100000, (size_t)5 << 20, (size_t)300 << 20};
        for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
            size_t n = sizes[k];
            char *p = mp_alloc(pool, n);
            CHECK(p != NULL);
            CHECK_MSG(!__asan_address_is_poisoned(p) && !__asan_address_is_poisoned(p + n - 1),
                      "live bytes of %zu poisoned", n);
            /* (a block filling its mapping to the last byte has no tail: what
             * follows is another mapping, or none) */
            if (n % MP_CHUNK_SIZE != 0)
                CHECK_MSG(__asan_address_is_poisoned(p + n), "tail past %zu not poisoned", n);
            char *g = mp_realloc(pool, p, n, n + 3);
            CHECK(g != NULL && !__asan_address_is_poisoned(g + n + 2) &&
                  __asan_address_is_poisoned(g + n + 3));
            CHECK_ERR(mp_free(pool, g, n + 3), MP_OK);
            if (n < ((size_t)5 << 20)) /* a direct mapping is gone: nothing to ask */
                CHECK_MSG(__asan_address_is_poisoned(g), "freed block of %zu not poisoned", n);
        }
        CHECK_EQ_U(mp_pool_check(pool), 0);
        mp_pool_destroy(pool);
    }
#else
    printf("  (not an ASan build: poisoning not checked)\n");
#endif
}

/* What the binding's full functions saw: the NEP 49 entry points must hand
 * them every call their fast paths did not finish. */
struct handler_ctx {
    mp_handler_head head;
    int mallocs, frees, last_code;
};

static void *full_malloc(void *ctx, size_t size)
{
    struct handler_ctx *c = ctx;
    c->mallocs++;
    return mp_alloc(c->head.pool, size);
}

static void full_free(void *ctx, void *ptr, size_t size)
{
    struct handler_ctx *c = ctx;
    (void)size;
    c->frees++;
    c->last_code = mp_free(c->head.pool, ptr, 0);
}

static uint64_t error_count(mp_pool *pool, int code)
{
    mp_stats st;
    mp_stats_get(pool, &st);
    return st.errors[-code];
}

/* mp_handler_malloc/mp_handler_free: a live small block goes through the
 * fast paths; a double, interior or foreign free, a large block, a debug
 * pool and bypass all reach the full functions, which report and count. */
static void test_handler_entry_points(void)
{
    for (int debug = 0; debug <= 1; debug++) {
        mp_config cfg;
        mp_config_default(&cfg);
        cfg.debug = debug;
        cfg.background_purge = 0;
        mp_pool *pool = NULL, *other = NULL;
        CHECK_ERR(mp_pool_create(&cfg, &pool), MP_OK);
        CHECK_ERR(mp_pool_create(&cfg, &other), MP_OK);
        if (!pool || !other)
            return;
        struct handler_ctx c = {.head = {.pool = pool, .malloc_full = full_malloc,
                                         .free_full = full_free}};
        void *warm = mp_handler_malloc(&c, 64); /* makes this thread's cache */
        mp_handler_free(&c, warm, 64);
        c.mallocs = c.frees = 0;

        char *p = mp_handler_malloc(&c, 64);
        CHECK(p != NULL && mp_owns(pool, p));
        mp_handler_free(&c, p, 64);
        CHECK_MSG(c.mallocs == debug && c.frees == debug,
                  "debug %d: live small pair took the full path %d/%d times", debug, c.mallocs,
                  c.frees);

        c.frees = 0;
        uint64_t before = error_count(pool, MP_EDOUBLEFREE);
        mp_handler_free(&c, p, 64);
        CHECK(c.frees == 1 && c.last_code == MP_EDOUBLEFREE);
        CHECK_EQ_U(error_count(pool, MP_EDOUBLEFREE), before + 1);

        p = mp_handler_malloc(&c, 200);
        c.frees = 0;
        mp_handler_free(&c, p + 16, 200);
        CHECK(c.frees == 1 && c.last_code == MP_EINTERIOR);
        struct handler_ctx o = {.head = {.pool = other, .malloc_full = full_malloc,
                                         .free_full = full_free}};
        mp_handler_free(&o, p, 200);
        CHECK(o.frees == 1 && o.last_code == MP_EFOREIGN);
        CHECK(mp_owns(pool, p)); /* the failed frees left it live */
        mp_handler_free(&c, p, 200);
        CHECK(c.frees == 1 + debug && !mp_owns(pool, p));

        c.mallocs = c.frees = 0;
        void *big = mp_handler_malloc(&c, (size_t)1 << 20);
        mp_handler_free(&c, big, (size_t)1 << 20);
        CHECK(big != NULL && c.mallocs == 1 && c.frees == 1 && c.last_code == MP_OK);

        c.head.bypass = 1;
        c.mallocs = c.frees = 0;
        p = mp_handler_malloc(&c, 64);
        mp_handler_free(&c, p, 64);
        CHECK(p != NULL && c.mallocs == 1 && c.frees == 1 && c.last_code == MP_OK);

        CHECK_EQ_U(mp_pool_check(pool), 0);
        mp_pool_destroy(other);
        mp_pool_destroy(pool);
    }
}

int main(void)
{
    test_canary_on_free();
    test_write_after_free();
    test_debug_clean_paths();
    test_ring_overflow();
    test_debug_off();
    test_asan_poison();
    test_handler_entry_points();
    return test_report("test_hardening");
}
