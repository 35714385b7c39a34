/*
 * test_stats.c - stats.c: mp_stats_get and the table of its figures.  Every
 * figure is in mp_stats_fields once; each call moves its own counters and
 * routes by size as documented; a calloc or realloc counts once on every
 * route; live, allocated, reserved, resident and the per-class figures add
 * up while blocks come and go.
 */
#define _GNU_SOURCE /* getrusage, sysconf, nanosleep under -std=c11 */
#include "pool_helpers.h"

/* mp_stats_fields: every scalar figure of mp_stats, once, in the struct's
 * order, each with a unit and a text; the names are C identifiers. */
static void test_stats_fields(void)
{
    const mp_stats_field *f = mp_stats_fields();
    const char *units[] = {"bytes", "calls", "count", "pages", "ns"};
    for (int i = 0; i < MP_STATS_COUNT; i++) {
        CHECK_EQ_U(f[i].offset, (size_t)i * sizeof(uint64_t));
        CHECK_MSG(f[i].name && f[i].name[0] && strspn(f[i].name, "abcdefghijklmnopqrstuvwxyz_")
                      == strlen(f[i].name), "field %d: name %s", i, f[i].name);
        CHECK_MSG(f[i].doc && strlen(f[i].doc) > 8, "field %s: no doc", f[i].name);
        int known = 0;
        for (size_t u = 0; u < sizeof units / sizeof *units; u++)
            known |= f[i].unit && strcmp(f[i].unit, units[u]) == 0;
        CHECK_MSG(known, "field %s: unit %s", f[i].name, f[i].unit ? f[i].unit : "(null)");
        for (int j = 0; j < i; j++)
            CHECK_MSG(strcmp(f[i].name, f[j].name) != 0, "field %s twice", f[i].name);
    }
    CHECK_EQ_U(f[0].offset, offsetof(mp_stats, live_bytes));
    CHECK_EQ_U(f[MP_STATS_COUNT - 1].offset, offsetof(mp_stats, error_total));
    /* a figure read through the table is the struct's */
    mp_pool *pool = make_quiet_pool();
    if (!pool)
        return;
    void *p = mp_alloc(pool, 1000);
    mp_stats s = snap(pool);
    for (int i = 0; i < MP_STATS_COUNT; i++)
        if (strcmp(f[i].name, "live_bytes") == 0)
            CHECK_EQ_U(*(const uint64_t *)((const char *)&s + f[i].offset), 1000);
    mp_free(pool, p, 0);
    mp_pool_destroy(pool);
}

/* Calls are counted once whatever route serves them: a calloc is an
 * allocation and a calloc; a realloc (in place or moved) is a realloc only,
 * its internal allocation and free uncounted. */
static void test_call_counts(void)
{
    mp_pool *pool = make_quiet_pool();
    if (!pool)
        return;
    size_t sizes[] = {100, 3 * MiB, direct_size()};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        mp_stats a = snap(pool);
        void *p = mp_calloc(pool, 1, sizes[i]);
        mp_stats b = snap(pool);
        CHECK(p != NULL);
        CHECK_EQ_U(b.calloc_count, a.calloc_count + 1);
        CHECK_EQ_U(b.alloc_count, a.alloc_count + 1);
        /* shrink: in place on every route */
        void *q = mp_realloc(pool, p, 0, sizes[i] - sizes[i] / 4);
        mp_stats c = snap(pool);
        CHECK(q != NULL);
        CHECK_EQ_U(c.realloc_count, b.realloc_count + 1);
        CHECK_EQ_U(c.alloc_count, b.alloc_count);
        CHECK_EQ_U(c.free_count, b.free_count);
        CHECK_EQ_U(c.live_bytes, a.live_bytes + sizes[i] - sizes[i] / 4);
        /* a move to another route: still one realloc, no alloc, no free */
        void *r = mp_realloc(pool, q, 0, i == 0 ? 3 * MiB : 50);
        mp_stats d = snap(pool);
        CHECK(r != NULL);
        CHECK_EQ_U(d.realloc_count, c.realloc_count + 1);
        CHECK_EQ_U(d.alloc_count, c.alloc_count);
        CHECK_EQ_U(d.free_count, c.free_count);
        CHECK_ERR(mp_free(pool, r, 0), MP_OK);
        mp_stats e = snap(pool);
        CHECK_EQ_U(e.free_count, d.free_count + 1);
        CHECK_EQ_U(e.live_bytes, a.live_bytes);
        CHECK_EQ_U(mp_pool_check(pool), 0);
    }
    mp_pool_destroy(pool);
}

/* Each call moves its own counter and routes by size as documented. */
static void test_counters(void)
{
    mp_pool *pool = make_quiet_pool();
    if (!pool)
        return;
    struct { size_t size; int route; } cases[] = {
        {100, 0}, {g_defaults.small_max, 0}, {g_defaults.small_max + 1, 1},
        {3 * MiB, 1}, {direct_size(), 2}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        mp_stats a = snap(pool);
        void *p = mp_alloc(pool, cases[i].size);
        mp_stats b = snap(pool);
        CHECK(p != NULL);
        CHECK_EQ_U(b.alloc_count, a.alloc_count + 1);
        CHECK_EQ_U(b.small_alloc_count, a.small_alloc_count + (cases[i].route == 0));
        CHECK_EQ_U(b.large_alloc_count, a.large_alloc_count + (cases[i].route == 1));
        CHECK_EQ_U(b.direct_alloc_count, a.direct_alloc_count + (cases[i].route == 2));
        CHECK_EQ_U(b.live_bytes, a.live_bytes + cases[i].size);
        if (cases[i].route == 2)
            CHECK_EQ_U(b.direct_count, a.direct_count + 1);
        if (cases[i].route == 0) {
            unsigned c = mp_size_class_of(cases[i].size);
            CHECK_EQ_U(b.classes[c].live_blocks, a.classes[c].live_blocks + 1);
            CHECK_EQ_U(b.classes[c].live_bytes, a.classes[c].live_bytes + cases[i].size);
            CHECK_EQ_U(b.classes[c].block_size, mp_size_class_block(c));
        }
        CHECK_ERR(mp_free(pool, p, cases[i].size), MP_OK);
        mp_stats c = snap(pool);
        CHECK_EQ_U(c.free_count, b.free_count + 1);
        CHECK_EQ_U(c.live_bytes, a.live_bytes);
        CHECK_EQ_U(c.allocated_bytes, a.allocated_bytes);
    }
    mp_stats s = snap(pool);
    CHECK_EQ_U(s.class_count, mp_size_class_count(g_defaults.small_max));
    CHECK_EQ_U(s.error_total, 0);
    CHECK(s.reserved_bytes > 0 && s.mmap_count > 0 && s.metadata_bytes > 0);
    mp_pool_destroy(pool);
}

/* live = sum of requested sizes; allocated >= live; reserved >= resident;
 * per-class figures add up. */
static void test_stats_identities(void)
{
    mp_pool *pool = make_quiet_pool();
    if (!pool)
        return;
    test_rng rng;
    test_rng_seed(&rng, 42);
    enum { N = 3000 };
    static blk b[N];
    uint64_t live = 0;
    for (int i = 0; i < N; i++) {
        size_t size = i % 100 == 0   ? test_rng_range(&rng, 100 * KiB, 8 * MiB)
                      : i % 10 == 0 ? test_rng_range(&rng, 1 * KiB, 64 * KiB)
                                    : test_rng_range(&rng, 0, 1024);
        b[i].p = mp_alloc(pool, size);
        b[i].size = size;
        CHECK(b[i].p != NULL);
        live += size;
        if (i % 500 == 499) {
            mp_stats s = snap(pool);
            CHECK_EQ_U(s.live_bytes, live);
            CHECK(s.allocated_bytes >= s.live_bytes);
            CHECK(s.reserved_bytes >= s.resident_bytes);
            CHECK(s.peak_live_bytes + 64 * KiB >= s.live_bytes);
            CHECK(s.peak_resident_bytes >= s.resident_bytes);
            uint64_t class_live = 0, class_blocks = 0;
            for (unsigned c = 0; c < s.class_count && c < MP_MAX_CLASSES; c++) {
                class_live += s.classes[c].live_bytes;
                class_blocks += s.classes[c].live_blocks;
                CHECK(s.classes[c].live_blocks <= s.classes[c].blocks);
            }
            CHECK(class_live <= s.live_bytes);
            CHECK(class_blocks <= (uint64_t)i + 1);
            CHECK_EQ_U(mp_pool_check(pool), 0);
        }
    }
    check_no_overlap(b, N);
    for (int i = 0; i < N; i += 2) {
        CHECK_ERR(mp_free(pool, b[i].p, b[i].size), MP_OK);
        live -= b[i].size;
    }
    mp_stats s = snap(pool);
    CHECK_EQ_U(s.live_bytes, live);
    CHECK(s.free_bytes >= s.dirty_free_bytes);
    CHECK(s.free_bytes >= s.largest_free_bytes);
    CHECK(s.free_span_count > 0);
    for (int i = 1; i < N; i += 2)
        CHECK_ERR(mp_free(pool, b[i].p, b[i].size), MP_OK);
    s = snap(pool);
    CHECK_EQ_U(s.live_bytes, 0);
    CHECK_EQ_U(s.allocated_bytes, 0);
    CHECK(s.peak_live_bytes > 0);
    CHECK_EQ_U(mp_pool_check(pool), 0);
    mp_pool_destroy(pool);
}

int main(void)
{
    helpers_init();
    static const test_case tests[] = {
        {"stats_fields", test_stats_fields},
        {"call_counts", test_call_counts},
        {"counters", test_counters},
        {"stats_identities", test_stats_identities},
    };
    return TEST_RUN("test_stats", tests);
}
