/*
 * test_api.c - the public contract of mempool.h, call by call.
 *
 * Every promise the header makes gets a check that a broken core would fail:
 * alignment, zero-size blocks, aligned and zeroed allocation, realloc across
 * the small / large / direct routes, every misuse code with "nothing changes"
 * verified field by field on the statistics, capacity, trim, decay, and the
 * point of the whole library: a steady loop of large temporaries takes no
 * page faults (a kernel counter, not a timing).
 */
#define _GNU_SOURCE /* getrusage, sysconf, nanosleep under -std=c11 */
#include "base/base.h"
#include "test.h"

#include <stdalign.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)
#define GiB ((size_t)1 << 30)

/* The defaults, read once: sizes below route relative to them. */
static mp_config g_defaults;

/* ---- helpers ---------------------------------------------------------- */

/* Create a pool from the defaults with the given overrides; NULL on failure
 * (counted as a failed check). */
static mp_pool *make_pool(int64_t decay_ms, int background_purge, int debug,
                          size_t capacity)
{
    mp_config cfg = g_defaults;
    cfg.decay_ms = decay_ms;
    cfg.background_purge = background_purge;
    cfg.debug = debug;
    cfg.capacity = capacity;
    mp_pool *pool = NULL;
    int rc = mp_pool_create(&cfg, &pool);
    CHECK_ERR(rc, MP_OK);
    CHECK(rc != MP_OK || pool != NULL);
    return rc == MP_OK ? pool : NULL;
}

/* A pool whose numbers only move when the test calls it: pages are given
 * back only on mp_trim and no background thread runs. */
static mp_pool *make_quiet_pool(void)
{
    return make_pool(-1, 0, 0, 0);
}

/* Snapshot the statistics (a failed mp_stats_get is a failed check). */
static mp_stats snap(mp_pool *pool)
{
    mp_stats s;
    memset(&s, 0, sizeof s);
    CHECK_ERR(mp_stats_get(pool, &s), MP_OK);
    return s;
}

/* The fields that no failed call may move (peak_live may lag, metadata and
 * thread-cache counts may change when a thread first touches the pool). */
#define STRICT_FIELDS(X)                                                       \
    X(live_bytes) X(allocated_bytes) X(reserved_bytes) X(resident_bytes)        \
    X(peak_resident_bytes) X(free_bytes) X(dirty_free_bytes)                   \
    X(largest_free_bytes) X(released_bytes) X(alloc_count) X(free_count)       \
    X(realloc_count) X(calloc_count) X(small_alloc_count)                      \
    X(large_alloc_count) X(direct_alloc_count) X(mmap_count) X(munmap_count)   \
    X(madvise_count) X(mremap_count) X(arena_count) X(direct_count)            \
    X(free_span_count)

/* Check that `after` equals `before` except that errors[-code] and
 * error_total grew by one (code MP_OK: nothing may differ).  `what` names
 * the call in the failure lines. */
static void check_unchanged(const mp_stats *before, const mp_stats *after, int code,
                            const char *what, int line)
{
#define CMP_FIELD(f)                                                           \
    CHECK_MSG(before->f == after->f, "line %d, %s: stats.%s moved %" PRIu64     \
              " -> %" PRIu64, line, what, #f, before->f, after->f);
    STRICT_FIELDS(CMP_FIELD)
#undef CMP_FIELD
    for (int i = 0; i < MP_ERROR_COUNT; i++) {
        uint64_t want = before->errors[i] + (i == -code && code != MP_OK ? 1 : 0);
        CHECK_MSG(after->errors[i] == want,
                  "line %d, %s: errors[%d] (%s) is %" PRIu64 ", want %" PRIu64, line,
                  what, i, mp_error_name(-i), after->errors[i], want);
    }
    CHECK_MSG(after->error_total == before->error_total + (code != MP_OK),
              "line %d, %s: error_total %" PRIu64 " -> %" PRIu64, line, what,
              before->error_total, after->error_total);
    CHECK_MSG(after->class_count == before->class_count, "line %d, %s: class_count",
              line, what);
    for (unsigned c = 0; c < before->class_count && c < MP_MAX_CLASSES; c++) {
        const mp_class_stats *a = &before->classes[c], *b = &after->classes[c];
        CHECK_MSG(a->slabs == b->slabs && a->blocks == b->blocks &&
                      a->live_blocks == b->live_blocks && a->live_bytes == b->live_bytes,
                  "line %d, %s: class %u moved (slabs %" PRIu64 "->%" PRIu64
                  ", live %" PRIu64 "->%" PRIu64 ")",
                  line, what, c, a->slabs, b->slabs, a->live_blocks, b->live_blocks);
    }
}

/* Run a free that must fail with `want`, and check it changed nothing. */
#define EXPECT_FREE_ERROR(pool, ptr, size, want, what)                         \
    do {                                                                       \
        mp_stats b_ = snap(pool);                                              \
        int rc_ = mp_free((pool), (ptr), (size));                              \
        CHECK_MSG(rc_ == (want), "%s: mp_free returned %s, want %s", (what),   \
                  mp_error_name(rc_), mp_error_name(want));                    \
        mp_stats a_ = snap(pool);                                              \
        check_unchanged(&b_, &a_, rc_, (what), __LINE__);                      \
        CHECK_MSG(mp_pool_check(pool) == 0, "%s: mp_pool_check != 0", (what)); \
    } while (0)

/* Process page faults so far (minor + major). */
static uint64_t page_faults(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (uint64_t)ru.ru_minflt + (uint64_t)ru.ru_majflt;
}

/* Resident set of the process in bytes, from /proc/self/statm. */
static size_t process_rss(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long size = 0, rss = 0;
    if (f) {
        if (fscanf(f, "%lu %lu", &size, &rss) != 2)
            rss = 0;
        fclose(f);
    }
    return rss * (size_t)sysconf(_SC_PAGESIZE);
}

/* Write one byte in every page of [p, p+n), so each page becomes resident. */
static void touch_pages(void *p, size_t n)
{
    volatile uint8_t *b = p;
    for (size_t i = 0; i < n; i += 4096)
        b[i] = (uint8_t)i;
    if (n)
        b[n - 1] = 1;
}

/* Sleep for ms milliseconds. */
static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

/* A size that the pool serves from its own mapping (bigger than an arena). */
static size_t direct_size(void)
{
    size_t s = g_defaults.arena_bytes + 4 * MiB;
    return s > 300 * MiB ? s : 300 * MiB;
}

/* ---- error names ------------------------------------------------------ */

/* mp_error_name / mp_strerror cover every code of the list, and unknown ones. */
static void test_error_names(void)
{
#define CHECK_NAME(name, value, text)                                          \
    CHECK_MSG(strcmp(mp_error_name(-(value)), #name) == 0,                      \
              "mp_error_name(%d) = %s, want %s", -(value), mp_error_name(-(value)), \
              #name);                                                          \
    CHECK_MSG(mp_strerror(-(value)) != NULL && strcmp(mp_strerror(-(value)), text) == 0, \
              "mp_strerror(%d) = %s", -(value),                                \
              mp_strerror(-(value)) ? mp_strerror(-(value)) : "(null)");
    MP_ERROR_LIST(CHECK_NAME)
#undef CHECK_NAME
    int unknown[] = {-MP_ERROR_COUNT, -1000, 1, 77};
    for (size_t i = 0; i < sizeof unknown / sizeof *unknown; i++) {
        CHECK(strcmp(mp_error_name(unknown[i]), "MP_UNKNOWN") == 0);
        CHECK(mp_strerror(unknown[i]) != NULL && mp_strerror(unknown[i])[0] != '\0');
    }
}

/* ---- configuration and lifetime ----------------------------------------- */

/* Defaults are consistent, and a pool reports back the config it got. */
static void test_config_defaults(void)
{
    mp_config d = g_defaults;
    CHECK_MSG(d.small_max >= 64 && d.small_max <= 65536, "small_max %zu", d.small_max);
    CHECK_MSG(d.arena_bytes >= 2 * MiB && d.arena_bytes % (2 * MiB) == 0,
              "arena_bytes %zu", d.arena_bytes);
    CHECK_MSG(d.huge_pages >= MP_HUGE_OFF && d.huge_pages <= MP_HUGE_AUTO,
              "huge_pages %d", d.huge_pages);
    CHECK_MSG(d.huge_min > d.small_max, "huge_min %zu <= small_max %zu", d.huge_min,
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

/* ---- allocation ------------------------------------------------------- */

/* One block handed out by a test, for overlap checks. */
typedef struct blk {
    uint8_t *p;
    size_t size;
} blk;

/* qsort order by address. */
static int blk_cmp(const void *a, const void *b)
{
    uintptr_t x = (uintptr_t)((const blk *)a)->p, y = (uintptr_t)((const blk *)b)->p;
    return x < y ? -1 : x > y;
}

/* Blocks held at once must not overlap (a zero-size block counts as 1 byte). */
static void check_no_overlap(blk *b, size_t n)
{
    qsort(b, n, sizeof *b, blk_cmp);
    for (size_t i = 1; i < n; i++) {
        size_t len = b[i - 1].size ? b[i - 1].size : 1;
        CHECK_MSG(b[i - 1].p + len <= b[i].p,
                  "blocks overlap: %p+%zu and %p+%zu", (void *)b[i - 1].p, b[i - 1].size,
                  (void *)b[i].p, b[i].size);
    }
}

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
                      g_defaults.huge_min - 1, g_defaults.huge_min,
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
        /* Under ASan usable is the requested size, 0 included (sanitize.h). */
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

/* ---- misuse ----------------------------------------------------------- */

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

/* ---- counters and queries ---------------------------------------------- */

/* Each call moves its own counter and routes by size as documented. */
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

/* After everything is freed the free space coalesces: one request as large
 * as largest_free_bytes fits without reserving more (OffsetAllocator's test). */
static void test_full_size_after_free(void)
{
    mp_pool *pool = make_quiet_pool();
    if (!pool)
        return;
    enum { N = 24 };
    void *p[N];
    size_t size = g_defaults.arena_bytes / (2 * N) > 256 * KiB
                      ? g_defaults.arena_bytes / (2 * N) : 256 * KiB;
    for (int i = 0; i < N; i++)
        p[i] = mp_alloc(pool, size);
    for (int i = 0; i < N; i += 2) /* odd ones first: gaps must merge later */
        CHECK_ERR(mp_free(pool, p[i + 1], size), MP_OK);
    for (int i = 0; i < N; i += 2)
        CHECK_ERR(mp_free(pool, p[i], size), MP_OK);
    mp_stats s = snap(pool);
    CHECK_MSG(s.largest_free_bytes >= (uint64_t)N * size,
              "largest free %" PRIu64 " < %zu freed in one arena (not coalesced?)",
              s.largest_free_bytes, N * size);
    void *big = mp_alloc(pool, s.largest_free_bytes);
    CHECK_MSG(big != NULL, "alloc of largest_free_bytes %" PRIu64 " failed",
              s.largest_free_bytes);
    mp_stats t = snap(pool);
    CHECK_MSG(t.reserved_bytes == s.reserved_bytes,
              "reserved grew %" PRIu64 " -> %" PRIu64 " for a request that fit",
              s.reserved_bytes, t.reserved_bytes);
    CHECK_ERR(mp_free(pool, big, s.largest_free_bytes), MP_OK);
    CHECK_EQ_U(mp_pool_check(pool), 0);
    mp_pool_destroy(pool);
}

/* ---- slab lengths ------------------------------------------------------ */

/* Pages of 4 KiB needed for `bytes`. */
static size_t pages_of(size_t bytes) { return (bytes + 4095) / 4096; }

/* One class, as seen through mp_stats: its first slab is small (the fewest
 * pages holding 2 blocks, or up to half again as many), each new slab
 * holds at least twice the blocks of the one before until they reach the
 * full length (>= 64 KiB and 8 blocks), and once every block went back and
 * mp_trim dropped the spare, the class starts small again.  `debug` runs
 * the same in debug mode (every slab filled, canaries). */
static void check_slab_growth(size_t size, int debug)
{
    mp_pool *pool = make_pool(-1, 0, debug, 0);
    if (!pool)
        return;
    unsigned cls = mp_size_class_of(size + (debug ? MP_CANARY_BYTES : 0));
    size_t bs = mp_size_class_block(cls);
    /* the first slab: the fewest pages holding 2 blocks and 2 pages, or up
     * to half again as many when that wastes less at the tail */
    uint64_t first_max = (pages_of(2 * bs > 8192 ? 2 * bs : 8192) * 3 / 2 * 4096) / bs;
    enum { N = 4000 };
    static void *blocks[N];
    for (int round = 0; round < 2; round++) {
        size_t n = 0, nslabs = 0;
        uint64_t prev_blocks = 0, sizes[64];
        /* allocate until the class holds 3 full-length slabs */
        while (n < N && nslabs < 64) {
            blocks[n] = mp_alloc(pool, size);
            if (!CHECK(blocks[n] != NULL))
                break;
            memset(blocks[n++], 0x5A, size);
            mp_stats s = snap(pool);
            uint64_t slabs = s.classes[cls].slabs, held = s.classes[cls].blocks;
            if (slabs == nslabs)
                continue;
            CHECK_EQ_U(slabs, nslabs + 1);
            sizes[nslabs++] = held - prev_blocks;
            prev_blocks = held;
            if (nslabs >= 4 && sizes[nslabs - 1] == sizes[nslabs - 2] &&
                sizes[nslabs - 2] == sizes[nslabs - 3])
                break;
        }
        CHECK_MSG(nslabs >= 4, "block %zu: only %zu slabs for %zu blocks", bs, nslabs, n);
        CHECK_MSG(sizes[0] >= 2 && sizes[0] <= first_max,
                  "round %d, block %zu: first slab holds %" PRIu64 " blocks (at most %" PRIu64
                  ")", round, bs, sizes[0], first_max);
        uint64_t full = sizes[nslabs - 1];
        CHECK_MSG(full * bs >= 65536 && full >= 8 && full > sizes[0],
                  "block %zu: full-length slab holds %" PRIu64 " blocks", bs, full);
        for (size_t k = 1; k < nslabs; k++)
            CHECK_MSG(sizes[k] == full || sizes[k] >= 2 * sizes[k - 1],
                      "block %zu: slab %zu holds %" PRIu64 " blocks after %" PRIu64, bs, k,
                      sizes[k], sizes[k - 1]);
        if (round == 0)
            printf("slab growth, block %zu%s:", bs, debug ? " (debug)" : "");
        for (size_t k = 0; round == 0 && k < nslabs; k++)
            printf(" %" PRIu64, sizes[k]);
        if (round == 0)
            printf(" blocks\n");
        CHECK_EQ_U(mp_pool_check(pool), 0);
        for (size_t i = 0; i < n; i++)
            CHECK_ERR(mp_free(pool, blocks[i], size), MP_OK);
        mp_trim(pool); /* this thread's cache and the spare go back */
        mp_stats s = snap(pool);
        CHECK_EQ_U(s.classes[cls].slabs, 0);
        CHECK_EQ_U(s.classes[cls].blocks, 0);
        CHECK_EQ_U(mp_pool_check(pool), 0);
    }
    mp_pool_destroy(pool);
}

/* Small, middle and large classes, plain and in debug mode. */
static void test_slab_growth(void)
{
    size_t sizes[] = {8, 700, 4096, 20000, 32768};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        check_slab_growth(sizes[i], 0);
        if (sizes[i] + MP_CANARY_BYTES <= g_defaults.small_max)
            check_slab_growth(sizes[i], 1);
    }
}

/* ---- giving memory back ------------------------------------------------ */

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

int main(void)
{
    mp_config_default(&g_defaults);
    struct { const char *name; void (*fn)(void); } tests[] = {
        {"error_names", test_error_names},
        {"config_defaults", test_config_defaults},
        {"create_destroy", test_create_destroy},
        {"alloc_alignment", test_alloc_alignment},
        {"zero_size", test_zero_size},
        {"alloc_aligned", test_alloc_aligned},
        {"realloc_chain", test_realloc_chain},
        {"usable_size", test_usable_size_plain},
        {"usable_size_debug", test_usable_size_debug},
        {"free_errors", test_free_errors},
        {"huge_requests", test_huge_requests},
        {"capacity", test_capacity},
        {"stats_fields", test_stats_fields},
        {"call_counts", test_call_counts},
        {"counters", test_counters},
        {"stats_identities", test_stats_identities},
        {"full_size_after_free", test_full_size_after_free},
        {"slab_growth", test_slab_growth},
        {"trim", test_trim},
        {"decay", test_decay},
        {"calloc", test_calloc_plain},
        {"calloc_debug_fill", test_calloc_debug},
        {"default_gives_back", test_default_gives_back},
        {"steady_state_faults", test_steady_state_faults},
    };
    for (size_t i = 0; i < sizeof tests / sizeof *tests; i++) {
        unsigned long before = test_failures;
        tests[i].fn();
        printf("  %-22s %s\n", tests[i].name, test_failures == before ? "ok" : "FAIL");
        fflush(stdout);
    }
    return test_report("test_api");
}
