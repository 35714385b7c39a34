/*
 * test.h - the few helpers every C test of the core shares.
 *
 * A failed CHECK prints file:line and the expression, counts the failure and
 * lets the test go on, so one run shows every broken promise; the test's
 * main ends with `return test_report("name");`, which fails the process when
 * any check failed.  Header-only on purpose: each test is one file and one
 * binary, built straight against the core sources.
 */
#ifndef MEMPOOL_TEST_H
#define MEMPOOL_TEST_H

#include <inttypes.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mempool.h"

/* Counters of one test binary (each test file has its own main); atomic so
 * threads may CHECK too, without a data race for TSan to report. */
static _Atomic unsigned long test_checks_run;
static _Atomic unsigned long test_failures;

/* Print at most this many failure lines, so a broken loop stays readable. */
#define TEST_MAX_PRINTED 200

/* Record one failed check; prints where and what (printf-style detail). */
static void test_fail(const char *file, int line, const char *fmt, ...)
{
    unsigned long n = ++test_failures;
    if (n > TEST_MAX_PRINTED)
        return;
    fprintf(stderr, "%s:%d: FAIL: ", file, line);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    if (n == TEST_MAX_PRINTED)
        fprintf(stderr, "(further failures counted, not printed)\n");
}

/* Count one check (relaxed: only the totals matter). */
#define TEST_COUNT_CHECK()                                                     \
    ((void)atomic_fetch_add_explicit(&test_checks_run, 1, memory_order_relaxed))

/* CHECK(cond): counts a failure when cond is false; evaluates to cond. */
#define CHECK(cond)                                                            \
    (TEST_COUNT_CHECK(), (cond) ? 1                                             \
                               : (test_fail(__FILE__, __LINE__, "%s", #cond), 0))

/* CHECK_MSG(cond, fmt, ...): CHECK with a printf-style explanation. */
#define CHECK_MSG(cond, ...)                                                   \
    (TEST_COUNT_CHECK(),                                                       \
     (cond) ? 1 : (test_fail(__FILE__, __LINE__, __VA_ARGS__), 0))

/* FAIL(fmt, ...): an unconditional failure with an explanation. */
#define FAIL(...)                                                              \
    (TEST_COUNT_CHECK(), test_fail(__FILE__, __LINE__, __VA_ARGS__))

/* CHECK_EQ_U(a, b): unsigned equality, printing both values on failure. */
#define CHECK_EQ_U(a, b)                                                       \
    do {                                                                       \
        uintmax_t ta_ = (uintmax_t)(a), tb_ = (uintmax_t)(b);                  \
        CHECK_MSG(ta_ == tb_, "%s == %s (%ju != %ju)", #a, #b, ta_, tb_);       \
    } while (0)

/* CHECK_ERR(got, want): error-code equality, printing both names. */
#define CHECK_ERR(got, want)                                                   \
    do {                                                                       \
        int tg_ = (int)(got), tw_ = (int)(want);                               \
        CHECK_MSG(tg_ == tw_, "%s: got %s (%d), want %s (%d)", #got,           \
                  mp_error_name(tg_), tg_, mp_error_name(tw_), tw_);           \
    } while (0)

/* Print the summary line; the exit status of the test (0 = all passed). */
static int test_report(const char *name)
{
    unsigned long run = test_checks_run, failed = test_failures;
    printf("%s: %lu checks, %lu failed -> %s\n", name, run, failed,
           failed ? "FAIL" : "ok");
    fflush(stdout);
    return test_failures ? 1 : 0;
}

/* One named test of a file's table (test_run). */
typedef struct test_case {
    const char *name;
    void (*fn)(void);
} test_case;

/* Run a file's table of tests in order, printing each one's verdict; the
 * file's exit status (test_report).  TEST_RUN(name, table) for an array. */
static inline int test_run(const char *file, const test_case *tests, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned long before = test_failures;
        tests[i].fn();
        printf("  %-26s %s\n", tests[i].name, test_failures == before ? "ok" : "FAIL");
        fflush(stdout);
    }
    return test_report(file);
}
#define TEST_RUN(file, table) test_run((file), (table), sizeof(table) / sizeof *(table))

/* xorshift64*: deterministic, seedable, cheap; the one RNG of the tests. */
typedef struct test_rng {
    uint64_t s;
} test_rng;

/* Seed the generator (any seed, 0 included, gives a usable sequence). */
static inline void test_rng_seed(test_rng *r, uint64_t seed)
{
    r->s = seed * 0x9E3779B97F4A7C15ull + 0x2545F4914F6CDD1Dull;
    if (r->s == 0)
        r->s = 1;
}

/* Next 64 random bits. */
static inline uint64_t test_rng_next(test_rng *r)
{
    r->s ^= r->s >> 12;
    r->s ^= r->s << 25;
    r->s ^= r->s >> 27;
    return r->s * 0x2545F4914F6CDD1Dull;
}

/* Uniform in [lo, hi] (hi >= lo; the tiny modulo bias does not matter here). */
static inline uint64_t test_rng_range(test_rng *r, uint64_t lo, uint64_t hi)
{
    return lo + test_rng_next(r) % (hi - lo + 1);
}

/* The byte a block with identity `id` holds at offset i: two blocks that
 * overlap, or a block the pool scribbles on, show up as a wrong byte. */
static inline uint8_t test_pattern_byte(uint64_t id, size_t i)
{
    uint64_t h = id * 0x9E3779B97F4A7C15ull;
    return (uint8_t)((h >> 32) + i * 31u + (i >> 8) + 1u);
}

/* Fill bytes [from, to) of p with the pattern of `id`. */
static inline void test_pattern_fill(void *p, uint64_t id, size_t from, size_t to)
{
    uint8_t *b = p;
    for (size_t i = from; i < to; i++)
        b[i] = test_pattern_byte(id, i);
}

/* Offset of the first byte in [from, to) that breaks the pattern, or SIZE_MAX. */
static inline size_t test_pattern_find_bad(const void *p, uint64_t id,
                                           size_t from, size_t to)
{
    const uint8_t *b = p;
    for (size_t i = from; i < to; i++)
        if (b[i] != test_pattern_byte(id, i))
            return i;
    return SIZE_MAX;
}

/* Offset of the first non-zero byte in [from, to), or SIZE_MAX. */
static inline size_t test_find_nonzero(const void *p, size_t from, size_t to)
{
    const uint8_t *b = p;
    for (size_t i = from; i < to; i++)
        if (b[i] != 0)
            return i;
    return SIZE_MAX;
}

/* Blocks above this size get a sampled pattern: the first and last 4 KiB and
 * 8 bytes at a stride in between (512 bytes, widened so a block has at most
 * ~2048 samples).  That keeps a stress test over 256 MiB blocks fast under
 * ASan while still catching content lost by realloc/trim, scribbles at
 * either end, and blocks that overlap (with the interval check). */
#define TEST_FULL_FILL_MAX ((size_t)256 * 1024)

/* One operation on bytes [from, to) of a block; returns a bad offset or SIZE_MAX. */
typedef size_t (*test_span_fn)(void *p, uint64_t id, size_t from, size_t to);

/* Apply fn to each sampled span of a `size`-byte block, clipped to [0, limit);
 * stops at, and returns, the first bad offset fn reports (SIZE_MAX if none). */
static inline size_t test_for_each_span(void *p, uint64_t id, size_t size,
                                        size_t limit, test_span_fn fn)
{
    if (limit > size)
        limit = size;
    if (size <= TEST_FULL_FILL_MAX)
        return limit ? fn(p, id, 0, limit) : SIZE_MAX;
    size_t tail = size - 4096, bad;
    if ((bad = fn(p, id, 0, 4096 < limit ? 4096 : limit)) != SIZE_MAX)
        return bad;
    size_t stride = (size / 2048) & ~(size_t)7;
    if (stride < 512)
        stride = 512;
    for (size_t off = 4096; off + 8 <= tail && off + 8 <= limit; off += stride)
        if ((bad = fn(p, id, off, off + 8)) != SIZE_MAX)
            return bad;
    if (tail < limit)
        return fn(p, id, tail, limit);
    return SIZE_MAX;
}

/* span op: write the pattern. */
static inline size_t test_span_fill(void *p, uint64_t id, size_t from, size_t to)
{
    test_pattern_fill(p, id, from, to);
    return SIZE_MAX;
}

/* span op: verify the pattern. */
static inline size_t test_span_verify(void *p, uint64_t id, size_t from, size_t to)
{
    return test_pattern_find_bad(p, id, from, to);
}

/* span op: verify zeros (id unused). */
static inline size_t test_span_zero(void *p, uint64_t id, size_t from, size_t to)
{
    (void)id;
    return test_find_nonzero(p, from, to);
}

/* Write the (sampled) pattern of `id` into a block of `size` bytes. */
static inline void test_block_fill(void *p, uint64_t id, size_t size)
{
    test_for_each_span(p, id, size, size, test_span_fill);
}

/* First bad offset of the (sampled) pattern within [0, limit), or SIZE_MAX. */
static inline size_t test_block_verify(void *p, uint64_t id, size_t size, size_t limit)
{
    return test_for_each_span(p, id, size, limit, test_span_verify);
}

/* First non-zero offset among the sampled spans of the block, or SIZE_MAX. */
static inline size_t test_block_find_nonzero(void *p, size_t size)
{
    return test_for_each_span(p, 0, size, size, test_span_zero);
}

#endif /* MEMPOOL_TEST_H */
