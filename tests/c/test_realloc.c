/*
 * test_realloc.c - realloc.c: mp_realloc keeps content across the small,
 * large and direct routes, in place and moved, and a failed resize leaves
 * the old block live.
 */
#define _GNU_SOURCE /* getrusage, sysconf, nanosleep under -std=c11 */
#include "pool_helpers.h"

/* mp_realloc keeps the prefix through a chain that crosses every route. */
static void test_realloc_chain(void)
{
    mp_pool *pool = make_quiet_pool();
    if (!pool)
        return;
    size_t sm = g_defaults.small_max;
    size_t chain[] = {100,     5000,          sm,       sm + 1,     3 * MiB, 64,
                      2 * MiB, direct_size(), 40,       direct_size() + 8 * MiB,
                      5 * MiB, 0,             1,        sm + 100,   sm - 100,
                      1 * MiB, direct_size(), 300,      0};
    enum { N = sizeof chain / sizeof *chain };
    uint64_t id = 1;
    uint8_t *p = mp_alloc(pool, chain[0]);
    if (!CHECK(p != NULL))
        return;
    test_block_fill(p, id, chain[0]);
    for (int i = 1; i < N; i++) {
        size_t old = chain[i - 1], new_size = chain[i];
        size_t old_arg = i % 3 == 0 ? 0 : old; /* 0 = unknown, also allowed */
        mp_stats before = snap(pool);
        uint8_t *q = mp_realloc(pool, p, old_arg, new_size);
        if (!CHECK_MSG(q != NULL, "realloc %zu -> %zu failed (%s)", old, new_size,
                       mp_error_name(mp_last_error())))
            break;
        mp_stats after = snap(pool);
        CHECK_EQ_U(after.realloc_count, before.realloc_count + 1);
        CHECK_EQ_U(after.live_bytes, new_size);
        CHECK_MSG((uintptr_t)q % 64 == 0, "realloc result %p not 64-aligned", (void *)q);
        size_t keep = old < new_size ? old : new_size;
        size_t bad = test_block_verify(q, id, old, keep);
        CHECK_MSG(bad == SIZE_MAX, "realloc %zu -> %zu lost content at %zu", old,
                  new_size, bad);
        size_t req = 1;
        CHECK_ERR(mp_requested_size(pool, q, &req), MP_OK);
        CHECK_EQ_U(req, new_size);
        CHECK_EQ_U(mp_pool_check(pool), 0);
        id++;
        test_block_fill(q, id, new_size);
        p = q;
    }
    CHECK_ERR(mp_free(pool, p, chain[N - 1]), MP_OK);
    CHECK_EQ_U(snap(pool).live_bytes, 0);

    /* NULL acts as alloc; new size 0 frees the old block's bytes */
    p = mp_realloc(pool, NULL, 0, 1000);
    CHECK(p != NULL && mp_owns(pool, p));
    CHECK_EQ_U(snap(pool).live_bytes, 1000);
    void *z = mp_realloc(pool, p, 1000, 0);
    CHECK(z != NULL && mp_owns(pool, z));
    CHECK_EQ_U(snap(pool).live_bytes, 0);
    CHECK_ERR(mp_free(pool, z, 0), MP_OK);

    /* wrong old_size: NULL + MP_ESIZE, block untouched and live */
    size_t sizes[] = {200, 3 * MiB};
    for (int k = 0; k < 2; k++) {
        p = mp_alloc(pool, sizes[k]);
        if (!CHECK(p != NULL))
            continue;
        test_block_fill(p, 99, sizes[k]);
        mp_stats before = snap(pool);
        CHECK(mp_realloc(pool, p, sizes[k] + 1, sizes[k] * 2) == NULL);
        CHECK_ERR(mp_last_error(), MP_ESIZE);
        mp_stats after = snap(pool);
        check_unchanged(&before, &after, MP_ESIZE, "realloc wrong old_size", __LINE__);
        /* too large a new size: NULL, old block intact and live */
        before = after;
        CHECK(mp_realloc(pool, p, sizes[k], SIZE_MAX - 4096) == NULL);
        int e = mp_last_error();
        CHECK_MSG(e == MP_ESIZE || e == MP_ENOMEM, "realloc to SIZE_MAX-4096: %s",
                  mp_error_name(e));
        after = snap(pool);
        check_unchanged(&before, &after, e, "realloc to huge", __LINE__);
        CHECK(mp_owns(pool, p) == 1);
        CHECK(test_block_verify(p, 99, sizes[k], sizes[k]) == SIZE_MAX);
        CHECK_ERR(mp_free(pool, p, sizes[k]), MP_OK);
    }
    /* realloc of a freed or foreign pointer is refused */
    p = mp_alloc(pool, 500);
    CHECK_ERR(mp_free(pool, p, 500), MP_OK);
    CHECK(mp_realloc(pool, p, 0, 600) == NULL);
    CHECK_ERR(mp_last_error(), MP_EDOUBLEFREE);
    alignas(64) static uint8_t foreign[256];
    CHECK(mp_realloc(pool, foreign, 0, 600) == NULL);
    CHECK_ERR(mp_last_error(), MP_EFOREIGN);
    CHECK_EQ_U(snap(pool).live_bytes, 0);
    CHECK_EQ_U(mp_pool_check(pool), 0);
    mp_pool_destroy(pool);
}

int main(void)
{
    helpers_init();
    static const test_case tests[] = {
        {"realloc_chain", test_realloc_chain},
    };
    return TEST_RUN("test_realloc", tests);
}
