/*
 * test_pool.c - pool.c: a pool's configuration and lifetime.  The defaults
 * are consistent and a pool reports the config it got; inconsistent configs
 * are refused with *out untouched; pools with live blocks come and go
 * without leaking (ASan/LSan).  The fork protocol, also pool.c's, has its
 * own whole-core test (test_fork.c).
 */
#define _GNU_SOURCE /* getrusage, sysconf, nanosleep under -std=c11 */
#include "pool_helpers.h"

/* Defaults are consistent, and a pool reports back the config it got. */
static void test_config_defaults(void)
{
    mp_config d = g_defaults;
    CHECK_MSG(d.small_max >= 64 && d.small_max <= 65536, "small_max %zu", d.small_max);
    CHECK_MSG(d.arena_bytes >= 2 * MiB && d.arena_bytes % (2 * MiB) == 0,
              "arena_bytes %zu", d.arena_bytes);
    CHECK_MSG(d.huge_pages >= MP_HUGE_OFF && d.huge_pages <= MP_HUGE_AUTO,
              "huge_pages %d", d.huge_pages);
    CHECK_MSG(d.huge_min == 0 || d.huge_min > d.small_max, "huge_min %zu <= small_max %zu", d.huge_min,
              d.small_max);
    /* decay 0 would re-fault every reuse: the defaults must keep hot memory */
    CHECK_MSG(d.decay_ms != 0, "default decay_ms is 0");
    CHECK(d.background_purge == 0 || d.background_purge == 1);
    CHECK_MSG(d.debug == 0, "debug fill is on by default");
    printf("defaults: capacity %zu small_max %zu arena %zu huge_min %zu decay %" PRId64
           " ms huge_pages %d background_purge %d debug %d\n",
           d.capacity, d.small_max, d.arena_bytes, d.huge_min, d.decay_ms, d.huge_pages,
           d.background_purge, d.debug);

    /* NULL config and an explicit copy of the defaults give the same pool */
    mp_pool *a = NULL, *b = NULL;
    CHECK_ERR(mp_pool_create(NULL, &a), MP_OK);
    CHECK_ERR(mp_pool_create(&d, &b), MP_OK);
    if (a && b) {
        mp_config ca, cb;
        mp_pool_config(a, &ca);
        mp_pool_config(b, &cb);
        CHECK(ca.small_max == d.small_max && cb.small_max == d.small_max);
        CHECK(ca.arena_bytes == d.arena_bytes && cb.arena_bytes == d.arena_bytes);
        CHECK(ca.decay_ms == d.decay_ms && cb.decay_ms == d.decay_ms);
        CHECK(ca.capacity == d.capacity && ca.huge_min == d.huge_min);
        CHECK(ca.huge_pages == d.huge_pages && ca.background_purge == d.background_purge);
        CHECK(a != b);
    }
    mp_pool_destroy(a);
    mp_pool_destroy(b);

    /* inconsistent configs are refused and *out is left alone */
    mp_pool *sentinel = (mp_pool *)(uintptr_t)0x1234;
    mp_pool *out = sentinel;
    mp_config bad = d;
    bad.huge_pages = 7;
    CHECK_ERR(mp_pool_create(&bad, &out), MP_EINVAL);
    CHECK(out == sentinel);
    bad = d;
    bad.small_max = 1 << 20; /* the header limits small_max to 65536 */
    CHECK_ERR(mp_pool_create(&bad, &out), MP_EINVAL);
    CHECK(out == sentinel);
}

/* Pools come and go, with live blocks in them, without leaking (ASan/LSan). */
static void test_create_destroy(void)
{
    mp_pool_destroy(NULL);
    for (int i = 0; i < 30; i++) {
        mp_pool *pool = NULL;
        CHECK_ERR(mp_pool_create(NULL, &pool), MP_OK);
        if (!pool)
            return;
        void *s = mp_alloc(pool, 100);
        void *l = mp_alloc(pool, 3 * MiB);
        CHECK(s && l);
        if (i % 2)
            CHECK_ERR(mp_free(pool, s, 100), MP_OK);
        mp_pool_destroy(pool); /* l (and s on even rounds) still live */
    }
}

int main(void)
{
    helpers_init();
    static const test_case tests[] = {
        {"config_defaults", test_config_defaults},
        {"create_destroy", test_create_destroy},
    };
    return TEST_RUN("test_pool", tests);
}
