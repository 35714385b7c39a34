/*
 * test_limit.c - the resident limit: cached free pages go back before
 * resident passes it; live memory beyond it is MP_ENOMEM; the pool stays
 * consistent; a limit below the live bytes is refused.
 */
#include "base/base.h"
#include "test.h"

#include <string.h>

#define MiB ((size_t)1 << 20)

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

int main(void) {
    test_cache_goes_back_before_the_limit();
    test_small_blocks_respect_it();
    test_bad_limits();
    return test_report("test_limit");
}
