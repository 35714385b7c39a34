/*
 * test_alloc.c - alloc.c: routing by size and what mp_alloc, mp_alloc_aligned
 * and mp_calloc promise on every route (alignment, zero-size blocks, zeroed
 * memory, sizes past every limit, the capacity as a hard limit that leaves
 * the pool as it was), the NEP 49 entry points (the fast paths finish a live
 * small pair, everything else reaches the binding's full functions), and,
 * under ASan, the poisoning of free blocks and of each block's tail.
 */
#define _GNU_SOURCE /* getrusage, sysconf, nanosleep under -std=c11 */
#include "pool_helpers.h"

/* mp_alloc: 64-byte alignment, usable >= requested, content kept, for sizes
 * on every route boundary. */
static void test_alloc_alignment(void)
{
    mp_pool *pool = make_quiet_pool();
    if (!pool)
        return;
    size_t sm = g_defaults.small_max;
    size_t sizes[] = {0, 1, 2, 7, 8, 15, 16, 31, 32, 48, 63, 64, 65, 100, 127, 128,
                      129, 255, 256, 257, 511, 512, 513, 1000, 1023, 1024, 1025, 2047,
                      2048, 2049, 4095, 4096, 4097, 8191, 8192, 8193, 16383, 16384,
                      16385, 32 * KiB - 1, 32 * KiB, 32 * KiB + 1, 64 * KiB - 1,
                      64 * KiB, 64 * KiB + 1, sm - 1, sm, sm + 1, 100000, 1 * MiB - 1,
                      1 * MiB, 1 * MiB + 1, 2 * MiB, 5 * MiB, 5 * MiB + 3,
                      4 * MiB - 1, 4 * MiB, 4 * MiB + 1,
                      g_defaults.arena_bytes / 2, direct_size()};
    enum { N = sizeof sizes / sizeof *sizes };
    blk held[N];
    size_t nheld = 0;
    uint64_t want_live = 0;
    for (size_t i = 0; i < N; i++) {
        size_t size = sizes[i];
        uint8_t *p = mp_alloc(pool, size);
        if (!CHECK_MSG(p != NULL, "mp_alloc(%zu) = NULL (%s)", size,
                       mp_error_name(mp_last_error())))
            continue;
        CHECK_MSG((uintptr_t)p % 64 == 0, "mp_alloc(%zu) = %p not 64-aligned", size,
                  (void *)p);
        CHECK_MSG(mp_owns(pool, p) == 1, "mp_owns(mp_alloc(%zu)) != 1", size);
        size_t usable = mp_usable_size(pool, p);
        /* Under ASan usable is the requested size, 0 included (base.h, MP_ASAN). */
        CHECK_MSG(usable >= size && (usable > 0 || MP_ASAN), "usable %zu < size %zu", usable,
                  size);
        size_t req = 12345;
        CHECK_ERR(mp_requested_size(pool, p, &req), MP_OK);
        CHECK_MSG(req == size, "requested_size %zu, want %zu", req, size);
        test_block_fill(p, i + 1, size);
        held[nheld++] = (blk){p, size};
        want_live += size;
    }
    mp_stats s = snap(pool);
    CHECK_EQ_U(s.live_bytes, want_live);
    CHECK(s.allocated_bytes >= s.live_bytes);
    CHECK(s.reserved_bytes >= s.resident_bytes);
    CHECK_EQ_U(mp_pool_check(pool), 0);
    /* content survives the neighbours being written */
    for (size_t i = 0, k = 0; i < N && k < nheld; i++) {
        if (held[k].size != sizes[i])
            continue;
        size_t bad = test_block_verify(held[k].p, i + 1, sizes[i], sizes[i]);
        CHECK_MSG(bad == SIZE_MAX, "block of %zu bytes changed at %zu", sizes[i], bad);
        k++;
    }
    check_no_overlap(held, nheld);
    for (size_t i = 0; i < nheld; i++)
        CHECK_ERR(mp_free(pool, held[i].p, held[i].size), MP_OK);
    s = snap(pool);
    CHECK_EQ_U(s.live_bytes, 0);
    CHECK_EQ_U(s.allocated_bytes, 0);
    CHECK_EQ_U(mp_pool_check(pool), 0);
    mp_pool_destroy(pool);
}

/* Size 0 gives distinct live pointers that can be freed (and double-freed). */
static void test_zero_size(void)
{
    mp_pool *pool = make_quiet_pool();
    if (!pool)
        return;
    enum { N = 500 };
    blk b[N];
    for (int i = 0; i < N; i++) {
        b[i].p = mp_alloc(pool, 0);
        b[i].size = 0;
        CHECK_MSG(b[i].p != NULL, "mp_alloc(0) #%d = NULL", i);
        if (!b[i].p)
            return;
        CHECK(mp_owns(pool, b[i].p) == 1);
        CHECK((uintptr_t)b[i].p % 64 == 0);
    }
    mp_stats s = snap(pool);
    CHECK_EQ_U(s.live_bytes, 0);
    check_no_overlap(b, N); /* sorted now: also proves distinctness */
    for (int i = 1; i < N; i++)
        CHECK(b[i].p != b[i - 1].p);
    for (int i = 0; i < N; i++)
        CHECK_ERR(mp_free(pool, b[i].p, 0), MP_OK);
    void *z = mp_alloc(pool, 0);
    CHECK_ERR(mp_free(pool, z, 0), MP_OK);
    EXPECT_FREE_ERROR(pool, z, 0, MP_EDOUBLEFREE, "double free of a zero-size block");
    /* a zero-size block was requested with 0 bytes: size 1 is a wrong size */
    z = mp_alloc(pool, 0);
    EXPECT_FREE_ERROR(pool, z, 1, MP_ESIZE, "zero-size block freed with size 1");
    CHECK_ERR(mp_free(pool, z, 0), MP_OK);
    CHECK_EQ_U(mp_pool_check(pool), 0);
    mp_pool_destroy(pool);
}

/* mp_alloc_aligned: every power of two up to 1 GiB; anything else refused. */
static void test_alloc_aligned(void)
{
    mp_pool *pool = make_quiet_pool();
    if (!pool)
        return;
    size_t sizes[] = {0, 1, 100, 4096, 70000, 3 * MiB};
    for (size_t align = 1; align <= GiB; align <<= 1) {
        for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
            size_t size = sizes[k];
            if (align >= 64 * MiB && size > 4096)
                continue; /* keeps the address space reserved by the test modest */
            uint8_t *p = mp_alloc_aligned(pool, size, align);
            if (!CHECK_MSG(p != NULL, "mp_alloc_aligned(%zu, %zu) = NULL (%s)", size,
                           align, mp_error_name(mp_last_error())))
                continue;
            CHECK_MSG((uintptr_t)p % align == 0, "mp_alloc_aligned(%zu, %zu) = %p",
                      size, align, (void *)p);
            CHECK_MSG((uintptr_t)p % 64 == 0, "aligned block %p below 64-alignment",
                      (void *)p);
            CHECK(mp_owns(pool, p) == 1);
            CHECK(mp_usable_size(pool, p) >= size);
            size_t req = 0;
            CHECK_ERR(mp_requested_size(pool, p, &req), MP_OK);
            CHECK_EQ_U(req, size);
            test_block_fill(p, align + size, size);
            CHECK(test_block_verify(p, align + size, size, size) == SIZE_MAX);
            CHECK_MSG(mp_free(pool, p, size) == MP_OK, "free aligned (%zu, %zu)", size,
                      align);
        }
    }
    CHECK_EQ_U(snap(pool).live_bytes, 0);
    /* not a power of two, or too large: NULL and MP_EALIGN, nothing changes */
    size_t bad[] = {0, 3, 48, 96, 1000, 4097, 2 * GiB, (size_t)1 << 40, SIZE_MAX};
    for (size_t k = 0; k < sizeof bad / sizeof *bad; k++) {
        mp_stats before = snap(pool);
        void *p = mp_alloc_aligned(pool, 64, bad[k]);
        CHECK_MSG(p == NULL, "mp_alloc_aligned(64, %zu) succeeded", bad[k]);
        CHECK_MSG(mp_last_error() == MP_EALIGN, "align %zu: last error %s", bad[k],
                  mp_error_name(mp_last_error()));
        mp_stats after = snap(pool);
        check_unchanged(&before, &after, MP_EALIGN, "bad alignment", __LINE__);
    }
    CHECK_EQ_U(mp_pool_check(pool), 0);
    mp_pool_destroy(pool);
}

/* mp_calloc zeroes memory that was dirtied and freed before; overflow fails. */
static void test_calloc(int debug)
{
    mp_pool *pool = make_pool(-1, 0, debug, 0);
    if (!pool)
        return;
    size_t sizes[] = {1, 64, 100, 1000, 4096, 20000, g_defaults.small_max,
                      g_defaults.small_max + 1, 300 * KiB, 3 * MiB, 17 * MiB + 5};
    enum { N = sizeof sizes / sizeof *sizes };
    for (int round = 0; round < 4; round++) {
        uint8_t *p[N];
        for (int i = 0; i < N; i++) { /* dirty blocks of every size, then free */
            p[i] = mp_alloc(pool, sizes[i]);
            CHECK(p[i] != NULL);
            if (p[i])
                memset(p[i], 0xA5, sizes[i]);
        }
        for (int i = 0; i < N; i++)
            if (p[i])
                CHECK_ERR(mp_free(pool, p[i], sizes[i]), MP_OK);
        for (int i = 0; i < N; i++) { /* the same sizes again, zeroed */
            size_t count = round % 2 ? sizes[i] : 1, each = round % 2 ? 1 : sizes[i];
            mp_stats before = snap(pool);
            p[i] = mp_calloc(pool, count, each);
            if (!CHECK_MSG(p[i] != NULL, "mp_calloc(%zu, %zu) = NULL", count, each))
                continue;
            CHECK_EQ_U(snap(pool).calloc_count, before.calloc_count + 1);
            size_t bad = test_find_nonzero(p[i], 0, sizes[i]);
            CHECK_MSG(bad == SIZE_MAX, "round %d: calloc of %zu bytes not zero at %zu",
                      round, sizes[i], bad);
            memset(p[i], 0x5A, sizes[i]);
        }
        for (int i = 0; i < N; i++)
            if (p[i])
                CHECK_ERR(mp_free(pool, p[i], sizes[i]), MP_OK);
    }
    /* a direct mapping, dirtied on every page and freed, then calloc'd again
     * (a pool that caches mappings must still zero them) */
    for (int round = 0; round < 2; round++) {
        size_t big = direct_size();
        uint8_t *d = mp_alloc(pool, big);
        if (!CHECK(d != NULL))
            break;
        memset(d, 0xEE, 1 * MiB);
        for (size_t off = 0; off < big; off += 4096)
            d[off + (off / 4096) % 4096] = 0xEE;
        memset(d + big - 1 * MiB, 0xEE, 1 * MiB);
        CHECK_ERR(mp_free(pool, d, big), MP_OK);
        d = mp_calloc(pool, big / 64, 64);
        if (!CHECK(d != NULL))
            break;
        size_t bad = test_find_nonzero(d, 0, 1 * MiB);
        for (size_t off = 0; off < big && bad == SIZE_MAX; off += 4096)
            if (d[off + (off / 4096) % 4096] != 0)
                bad = off + (off / 4096) % 4096;
        if (bad == SIZE_MAX)
            bad = test_find_nonzero(d, big - 1 * MiB, big);
        CHECK_MSG(bad == SIZE_MAX, "calloc of a direct block (%zu) not zero at %zu", big, bad);
        CHECK_ERR(mp_free(pool, d, big), MP_OK);
    }
    /* count * size overflows */
    struct { size_t n, m; } ovf[] = {{SIZE_MAX / 2 + 1, 2}, {2, SIZE_MAX / 2 + 1},
                                     {(size_t)1 << 32, (size_t)1 << 32}, {SIZE_MAX, SIZE_MAX}};
    for (size_t k = 0; k < sizeof ovf / sizeof *ovf; k++) {
        mp_stats before = snap(pool);
        void *q = mp_calloc(pool, ovf[k].n, ovf[k].m);
        CHECK_MSG(q == NULL, "mp_calloc(%zu, %zu) succeeded", ovf[k].n, ovf[k].m);
        CHECK_ERR(mp_last_error(), MP_EOVERFLOW);
        mp_stats after = snap(pool);
        check_unchanged(&before, &after, MP_EOVERFLOW, "calloc overflow", __LINE__);
    }
    /* zero products give zero-size blocks */
    void *z1 = mp_calloc(pool, 0, 100), *z2 = mp_calloc(pool, 100, 0);
    CHECK(z1 != NULL && z2 != NULL && z1 != z2);
    CHECK_ERR(mp_free(pool, z1, 0), MP_OK);
    CHECK_ERR(mp_free(pool, z2, 0), MP_OK);
    CHECK_EQ_U(snap(pool).live_bytes, 0);
    CHECK_EQ_U(mp_pool_check(pool), 0);
    mp_pool_destroy(pool);
}

/* calloc with the plain config. */
static void test_calloc_plain(void) { test_calloc(0); }

/* calloc with debug fill on (freed memory is patterned, calloc must zero it). */
static void test_calloc_debug(void) { test_calloc(1); }

/* Requests no machine can serve fail cleanly with ESIZE or ENOMEM. */
static void test_huge_requests(void)
{
    mp_pool *pool = make_quiet_pool();
    if (!pool)
        return;
    void *w = mp_alloc(pool, 64);
    mp_free(pool, w, 64);
    size_t sizes[] = {SIZE_MAX, SIZE_MAX - 1, SIZE_MAX - 63, SIZE_MAX - 4096,
                      SIZE_MAX / 2, SIZE_MAX / 2 + 1, (size_t)1 << 62, (size_t)1 << 50};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        for (int how = 0; how < 3; how++) {
            mp_stats before = snap(pool);
            void *p = how == 0   ? mp_alloc(pool, sizes[i])
                      : how == 1 ? mp_alloc_aligned(pool, sizes[i], 4096)
                                 : mp_calloc(pool, 1, sizes[i]);
            CHECK_MSG(p == NULL, "%s(%zu) succeeded",
                      how == 0 ? "mp_alloc" : how == 1 ? "mp_alloc_aligned" : "mp_calloc",
                      sizes[i]);
            int e = mp_last_error();
            CHECK_MSG(e == MP_ESIZE || e == MP_ENOMEM, "size %zu (how %d): error %s",
                      sizes[i], how, mp_error_name(e));
            mp_stats after = snap(pool);
            check_unchanged(&before, &after, e, "huge request", __LINE__);
        }
    }
    CHECK_EQ_U(mp_pool_check(pool), 0);
    mp_pool_destroy(pool);
}

/* A capacity is a hard limit: refusing a request leaves the pool as it was. */
static void test_capacity(void)
{
    mp_config cfg = g_defaults;
    cfg.capacity = 64 * MiB;
    cfg.decay_ms = -1;
    cfg.background_purge = 0;
    mp_pool *pool = NULL;
    int rc = mp_pool_create(&cfg, &pool);
    CHECK_MSG(rc == MP_OK, "pool with capacity 64 MiB (arena %zu): %s", cfg.arena_bytes,
              mp_error_name(rc));
    if (rc != MP_OK) {
        cfg.arena_bytes = 16 * MiB; /* go on with an arena that fits */
        if (mp_pool_create(&cfg, &pool) != MP_OK)
            return;
    }
    void *small = mp_alloc(pool, 100);
    void *med = mp_alloc(pool, 1 * MiB);
    CHECK(small && med);
    mp_stats before = snap(pool);
    void *p = mp_alloc(pool, 100 * MiB);
    CHECK(p == NULL);
    CHECK_ERR(mp_last_error(), MP_ENOMEM);
    mp_stats after = snap(pool);
    check_unchanged(&before, &after, MP_ENOMEM, "over capacity", __LINE__);
    before = after;
    CHECK(mp_realloc(pool, med, 1 * MiB, 100 * MiB) == NULL);
    CHECK_ERR(mp_last_error(), MP_ENOMEM);
    after = snap(pool);
    check_unchanged(&before, &after, MP_ENOMEM, "realloc over capacity", __LINE__);
    CHECK(mp_owns(pool, med) == 1);
    /* smaller requests still work */
    void *q = mp_alloc(pool, 4 * MiB), *r = mp_alloc(pool, 1000);
    CHECK(q != NULL && r != NULL);
    /* fill up: the pool never reserves more than its capacity */
    void *blocks[200];
    int n = 0;
    while (n < 200 && (blocks[n] = mp_alloc(pool, 2 * MiB)) != NULL)
        n++;
    CHECK_MSG(n > 0 && n < 200, "filled %d blocks of 2 MiB under a 64 MiB cap", n);
    CHECK_ERR(mp_last_error(), MP_ENOMEM);
    mp_stats full = snap(pool);
    CHECK_MSG(full.reserved_bytes <= cfg.capacity, "reserved %" PRIu64 " > capacity %zu",
              full.reserved_bytes, cfg.capacity);
    CHECK_MSG(full.live_bytes >= 40 * MiB, "only %" PRIu64 " live at the cap",
              full.live_bytes);
    for (int i = 0; i < n; i++)
        CHECK_ERR(mp_free(pool, blocks[i], 2 * MiB), MP_OK);
    CHECK_ERR(mp_free(pool, q, 4 * MiB), MP_OK);
    CHECK_ERR(mp_free(pool, r, 1000), MP_OK);
    CHECK_ERR(mp_free(pool, med, 1 * MiB), MP_OK);
    CHECK_ERR(mp_free(pool, small, 100), MP_OK);
    CHECK_EQ_U(mp_pool_check(pool), 0);
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
    helpers_init();
    static const test_case tests[] = {
        {"alloc_alignment", test_alloc_alignment},
        {"zero_size", test_zero_size},
        {"alloc_aligned", test_alloc_aligned},
        {"calloc", test_calloc_plain},
        {"calloc_debug_fill", test_calloc_debug},
        {"huge_requests", test_huge_requests},
        {"capacity", test_capacity},
        {"asan_poison", test_asan_poison},
        {"handler_entry_points", test_handler_entry_points},
    };
    return TEST_RUN("test_alloc", tests);
}
