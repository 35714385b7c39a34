/*
 * pool_helpers.h - what the C tests that drive a whole pool through the
 * public API share: pools made from the defaults, statistics snapshots and
 * the "a failed call changed nothing" check, page faults and RSS, block
 * overlap.  Header-only, as test.h is; a test's main calls helpers_init()
 * first (g_defaults).  Define _GNU_SOURCE before including it.
 */
#ifndef MEMPOOL_POOL_HELPERS_H
#define MEMPOOL_POOL_HELPERS_H

#include "base/base.h"
#include "test.h"

#include <stdalign.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)
#define GiB ((size_t)1 << 30)

/* The defaults, read once (helpers_init): sizes route relative to them. */
static mp_config g_defaults;

/* Read the defaults; every test's main calls it first. */
static inline void helpers_init(void)
{
    mp_config_default(&g_defaults);
}

/* Create a pool from the defaults with the given overrides; NULL on failure
 * (counted as a failed check). */
static inline mp_pool *make_pool(int64_t decay_ms, int background_purge, int debug,
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
static inline mp_pool *make_quiet_pool(void)
{
    return make_pool(-1, 0, 0, 0);
}

/* Snapshot the statistics (a failed mp_stats_get is a failed check). */
static inline mp_stats snap(mp_pool *pool)
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
static inline void check_unchanged(const mp_stats *before, const mp_stats *after, int code,
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
static inline uint64_t page_faults(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (uint64_t)ru.ru_minflt + (uint64_t)ru.ru_majflt;
}

/* Resident set of the process in bytes, from /proc/self/statm. */
static inline size_t process_rss(void)
{
    return (size_t)mp_process_rss();
}

/* Write one byte in every page of [p, p+n), so each page becomes resident. */
static inline void touch_pages(void *p, size_t n)
{
    volatile uint8_t *b = p;
    for (size_t i = 0; i < n; i += 4096)
        b[i] = (uint8_t)i;
    if (n)
        b[n - 1] = 1;
}

/* Sleep for ms milliseconds. */
static inline void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

/* A size that the pool serves from its own mapping (bigger than an arena). */
static inline size_t direct_size(void)
{
    size_t s = g_defaults.arena_bytes + 4 * MiB;
    return s > 300 * MiB ? s : 300 * MiB;
}

/* One block handed out by a test, for overlap checks. */
typedef struct blk {
    uint8_t *p;
    size_t size;
} blk;

/* qsort order by address. */
static inline int blk_cmp(const void *a, const void *b)
{
    uintptr_t x = (uintptr_t)((const blk *)a)->p, y = (uintptr_t)((const blk *)b)->p;
    return x < y ? -1 : x > y;
}

/* Blocks held at once must not overlap (a zero-size block counts as 1 byte). */
static inline void check_no_overlap(blk *b, size_t n)
{
    qsort(b, n, sizeof *b, blk_cmp);
    for (size_t i = 1; i < n; i++) {
        size_t len = b[i - 1].size ? b[i - 1].size : 1;
        CHECK_MSG(b[i - 1].p + len <= b[i].p,
                  "blocks overlap: %p+%zu and %p+%zu", (void *)b[i - 1].p, b[i - 1].size,
                  (void *)b[i].p, b[i].size);
    }
}

#endif /* MEMPOOL_POOL_HELPERS_H */
