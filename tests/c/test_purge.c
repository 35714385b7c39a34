/*
 * test_purge.c - purge.c: giving memory back.  mp_trim returns every free
 * page; with the default config the background purger returns freed memory
 * on its own within the decay; under a resident limit cached free pages go
 * back before resident passes it, live memory beyond it is MP_ENOMEM, and a
 * limit below the live bytes is refused.
 */
#define _GNU_SOURCE /* getrusage, sysconf, nanosleep under -std=c11 */
#include "pool_helpers.h"

/* mp_trim gives back freed pages: it reports bytes, resident drops (in the
 * pool's figures and in the process RSS), and live data survives it. */
static void test_trim(void)
{
    mp_pool *pool = make_quiet_pool();
    if (!pool)
        return;
    enum { NL = 40, NS = 20000 };
    static void *large[NL], *small[NS];
    size_t lsize = 5 * MiB + 12345;
    for (int i = 0; i < NL; i++) {
        large[i] = mp_alloc(pool, lsize);
        if (large[i])
            touch_pages(large[i], lsize);
    }
    for (int i = 0; i < NS; i++) {
        small[i] = mp_alloc(pool, 1000);
        if (small[i])
            memset(small[i], 1, 1000);
    }
    uint8_t *keep_s = mp_alloc(pool, 3000), *keep_l = mp_alloc(pool, 2 * MiB);
    CHECK(keep_s && keep_l);
    test_block_fill(keep_s, 1, 3000);
    test_block_fill(keep_l, 2, 2 * MiB);
    for (int i = 0; i < NL; i++)
        CHECK_ERR(mp_free(pool, large[i], lsize), MP_OK);
    for (int i = 0; i < NS; i++)
        CHECK_ERR(mp_free(pool, small[i], 1000), MP_OK);
    mp_stats before = snap(pool);
    size_t rss_before = process_rss();
    size_t given = mp_trim(pool);
    size_t rss_after = process_rss();
    mp_stats after = snap(pool);
    size_t freed = (size_t)NL * lsize + (size_t)NS * 1000;
    printf("trim: gave back %zu bytes of %zu freed; pool resident %" PRIu64 " -> %" PRIu64
           "; process RSS %zu -> %zu\n",
           given, freed, before.resident_bytes, after.resident_bytes, rss_before, rss_after);
    CHECK_MSG(given >= freed / 2, "mp_trim gave back %zu of %zu freed", given, freed);
    CHECK_MSG(after.resident_bytes + freed / 2 <= before.resident_bytes,
              "resident %" PRIu64 " -> %" PRIu64, before.resident_bytes,
              after.resident_bytes);
    CHECK_MSG(after.released_bytes >= before.released_bytes + given,
              "released_bytes %" PRIu64 " -> %" PRIu64 " after giving %zu",
              before.released_bytes, after.released_bytes, given);
    CHECK_MSG(rss_after + freed / 2 <= rss_before, "process RSS %zu -> %zu", rss_before,
              rss_after);
    CHECK(after.resident_bytes >= after.allocated_bytes);
    CHECK_EQ_U(after.live_bytes, 3000 + 2 * MiB);
    CHECK(test_block_verify(keep_s, 1, 3000, 3000) == SIZE_MAX);
    CHECK(test_block_verify(keep_l, 2, 2 * MiB, 2 * MiB) == SIZE_MAX);
    CHECK_MSG(mp_trim(pool) == 0, "a second trim found more to give back");
    CHECK_ERR(mp_free(pool, keep_s, 3000), MP_OK);
    CHECK_ERR(mp_free(pool, keep_l, 2 * MiB), MP_OK);
    CHECK_EQ_U(mp_pool_check(pool), 0);
    mp_pool_destroy(pool);
}

/* With the defaults (decay + background purge), memory freed by a workload
 * goes back by itself: resident returns near zero within decay + slack, for
 * large blocks and for small ones (empty slabs are free pages too). */
static void test_default_gives_back(void)
{
    for (int small = 0; small < 2; small++) {
        mp_pool *pool = NULL;
        CHECK_ERR(mp_pool_create(NULL, &pool), MP_OK);
        if (!pool)
            return;
        enum { NB = 100000 };
        static void *b[NB];
        size_t n = small ? NB : 24, size = small ? 600 : 3 * MiB + 5000;
        for (size_t i = 0; i < n; i++) {
            b[i] = mp_alloc(pool, size);
            if (b[i])
                memset(b[i], 0x11, size);
        }
        for (size_t i = 0; i < n; i++) /* every other one first: fragmented */
            if (i % 2 == 0)
                mp_free(pool, b[i], size);
        for (size_t i = 0; i < n; i++)
            if (i % 2 == 1)
                mp_free(pool, b[i], size);
        mp_stats s0 = snap(pool);
        CHECK_EQ_U(s0.live_bytes, 0);
        uint64_t limit = 8 * MiB;
        int waited_ms = 0;
        mp_stats s = s0;
        while (s.resident_bytes > limit && waited_ms < (int)g_defaults.decay_ms * 4 + 2000) {
            sleep_ms(50);
            waited_ms += 50;
            s = snap(pool);
        }
        printf("default config, %s blocks: %.1f MiB freed, resident %.1f -> %.1f MiB after %d ms\n",
               small ? "small" : "large", (double)(n * size) / MiB,
               (double)s0.resident_bytes / MiB, (double)s.resident_bytes / MiB, waited_ms);
        CHECK_MSG(s.resident_bytes <= limit,
                  "%s blocks: resident still %" PRIu64 " bytes %d ms after freeing %zu",
                  small ? "small" : "large", s.resident_bytes, waited_ms, n * size);
        CHECK_EQ_U(mp_pool_check(pool), 0);
        mp_pool_destroy(pool);
    }
}

static mp_pool *make(size_t limit) {
    mp_config cfg;
    mp_config_default(&cfg);
    cfg.decay_ms = -1; /* nothing goes back on its own: only the limit acts */
    cfg.background_purge = 0;
    cfg.resident_limit = limit;
    mp_pool *pool = NULL;
    CHECK_ERR(mp_pool_create(&cfg, &pool), MP_OK);
    return pool;
}

static uint64_t resident(mp_pool *pool) {
    mp_stats st;
    mp_stats_get(pool, &st);
    return st.resident_bytes;
}

static void touch(void *p, size_t n) {
    for (size_t i = 0; i < n; i += 4096)
        ((volatile char *)p)[i] = 1;
}

static void test_cache_goes_back_before_the_limit(void) {
    mp_pool *pool = make(64 * MiB);
    void *a = mp_alloc(pool, 48 * MiB);
    CHECK(a != NULL);
    touch(a, 48 * MiB);
    CHECK_ERR(mp_free(pool, a, 48 * MiB), MP_OK);
    uint64_t cached = resident(pool);
    CHECK_MSG(cached >= 48 * MiB, "the freed block stays cached: %llu", (unsigned long long)cached);
    /* 40 MiB more would pass 64 MiB with the cache: the cache goes first */
    void *b = mp_alloc(pool, 40 * MiB);
    void *c = mp_alloc(pool, 20 * MiB);
    CHECK(b != NULL && c != NULL);
    CHECK_MSG(resident(pool) <= 64 * MiB, "resident %llu over the limit",
              (unsigned long long)resident(pool));
    /* live 60 MiB: 8 MiB more cannot fit, and nothing is cached to give */
    CHECK(mp_alloc(pool, 8 * MiB) == NULL);
    CHECK_ERR(mp_last_error(), MP_ENOMEM);
    CHECK(mp_alloc(pool, 300 * MiB) == NULL); /* a direct mapping too */
    CHECK_ERR(mp_last_error(), MP_ENOMEM);
    CHECK_EQ_U(mp_pool_check(pool), 0);
    CHECK(resident(pool) <= 64 * MiB);
    /* below the live bytes: refused; above: cached pages over it go back */
    CHECK_ERR(mp_pool_set_resident_limit(pool, 16 * MiB), MP_EINVAL);
    CHECK_ERR(mp_free(pool, c, 20 * MiB), MP_OK);
    CHECK_ERR(mp_pool_set_resident_limit(pool, 44 * MiB), MP_OK);
    CHECK_MSG(resident(pool) <= 44 * MiB, "resident %llu after lowering the limit",
              (unsigned long long)resident(pool));
    CHECK_ERR(mp_pool_set_resident_limit(pool, 0), MP_OK); /* none */
    void *d = mp_alloc(pool, 64 * MiB);
    CHECK(d != NULL);
    mp_free(pool, d, 64 * MiB);
    mp_free(pool, b, 40 * MiB);
    CHECK_EQ_U(mp_pool_check(pool), 0);
    mp_pool_destroy(pool);
}

static void test_small_blocks_respect_it(void) {
    mp_pool *pool = make(8 * MiB);
    void *blocks[4096];
    size_t n = 0;
    while (n < 4096 && (blocks[n] = mp_alloc(pool, 4096)) != NULL)
        n++;
    CHECK_MSG(n > 1000 && n < 4096, "%zu blocks of 4 KiB under an 8 MiB limit", n);
    CHECK(resident(pool) <= 8 * MiB);
    CHECK_EQ_U(mp_pool_check(pool), 0);
    for (size_t i = 0; i < n; i++)
        mp_free(pool, blocks[i], 4096);
    mp_pool_destroy(pool);
}

static void test_bad_limits(void) {
    mp_config cfg;
    mp_config_default(&cfg);
    cfg.resident_limit = 4096; /* below a chunk: nothing could ever fit */
    mp_pool *pool = NULL;
    CHECK_ERR(mp_pool_create(&cfg, &pool), MP_EINVAL);
    CHECK_ERR(mp_pool_set_resident_limit(NULL, 0), MP_EINVAL);
}

int main(void)
{
    helpers_init();
    static const test_case tests[] = {
        {"trim", test_trim},
        {"default_gives_back", test_default_gives_back},
        {"limit_cache_goes_back", test_cache_goes_back_before_the_limit},
        {"limit_small_blocks", test_small_blocks_respect_it},
        {"limit_bad_limits", test_bad_limits},
    };
    return TEST_RUN("test_purge", tests);
}
