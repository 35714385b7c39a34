/*
 * test_heap.c - unit tests of the heap layer alone (arena.c, heap.c,
 * decay.c): no pool, only the accounting and graves a heap reports into.
 * Split, coalesce, placement, the dirty report, decay, the capacity, and
 * the checker naming what it finds broken.
 */
#include "heap/heap.h"
#include "test.h"

#include <string.h>

static int dirty_reports;
static void on_dirty(mp_acct *acct) {
    (void)acct;
    dirty_reports++;
}

typedef struct fixture {
    mp_acct acct;
    map_graves graves;
    mp_heap heap;
} fixture;

/* A page heap of 8 MiB arenas (2048 granules), keeping one free arena. */
static void setup(fixture *f, size_t capacity) {
    memset(f, 0, sizeof *f);
    f->acct.capacity = capacity;
    f->acct.on_dirty = on_dirty;
    heap_init(&f->heap, f, &f->acct, &f->graves, MP_PAGE_SHIFT, 0, (size_t)8 << 20, 1);
}

/* heap_check finds nothing, or prints what it names. */
static void check_clean(fixture *f) {
    mp_check_log log = {0};
    size_t bad = heap_check(&f->heap, &log);
    CHECK_MSG(bad == 0 && log.bad == 0, "heap_check: %zu, first: %s", bad,
              log.named ? log.what[0] : "-");
}

static mp_span *take(fixture *f, size_t n) {
    uint32_t clean = 0;
    mp_span *s = decay_alloc(&f->heap, n, 1, &clean);
    CHECK(s != NULL);
    if (s)
        MP_UNPOISON(span_addr(s), span_bytes(s));
    return s;
}

static void test_split_coalesce_and_reports(void) {
    fixture f;
    setup(&f, 0);
    dirty_reports = 0;
    mp_span *a = take(&f, 3), *b = take(&f, 5), *c = take(&f, 7);
    CHECK(span_addr(b) == span_addr(a) + 3 * MP_PAGE_SIZE); /* address order */
    CHECK_EQ_U(f.acct.reserved, (size_t)8 << 20);
    CHECK_EQ_U(f.acct.resident, 15 * MP_PAGE_SIZE);
    CHECK_EQ_U(dirty_reports, 0); /* nothing free is dirty yet */
    heap_free(&f.heap, b, 10);
    CHECK_EQ_U(dirty_reports, 1); /* the LRU went from empty to not: reported */
    heap_free(&f.heap, a, 11);
    /* merged with b: b left the LRU (empty again) and a+b entered it */
    CHECK_EQ_U(dirty_reports, 2);
    CHECK_EQ_U(f.heap.free_spans, 2); /* a+b, and the arena's tail after c */
    check_clean(&f);
    heap_free(&f.heap, c, 12); /* everything merges back into one span */
    CHECK_EQ_U(f.heap.free_spans, 1);
    CHECK_EQ_U(f.heap.free_granules, 2048);
    check_clean(&f);
    /* decay: nothing is old enough at t=100 with a decay of 1000 ms... */
    CHECK_EQ_U(decay_purge(&f.heap, 100, 1000, false), 0);
    /* ...everything at t=5000 (no allowance beyond the recent peak) */
    size_t given = decay_purge(&f.heap, 5000, 1000, false) + decay_purge(&f.heap, 9000, 1000, false);
    CHECK_EQ_U(given, 15 * MP_PAGE_SIZE);
    CHECK_EQ_U(f.acct.resident, 0);
    CHECK_EQ_U(f.acct.released, 15 * MP_PAGE_SIZE);
    CHECK_EQ_U(f.heap.arena_count, 1); /* retain_arenas keeps one */
    check_clean(&f);
    /* release_arenas unmaps it; its range goes to the graves */
    char *base = span_addr(&LIST_ENTRY(f.heap.arenas.head, mp_arena, link)->spans[0]);
    decay_purge(&f.heap, 9000, 0, true);
    CHECK_EQ_U(f.heap.arena_count, 0);
    CHECK_EQ_U(f.acct.reserved, 0);
    CHECK(map_buried(&f.graves, base) && map_lookup(base) == NULL);
    heap_destroy(&f.heap);
}

static void test_capacity_refuses(void) {
    fixture f;
    setup(&f, (size_t)8 << 20); /* room for exactly one arena */
    mp_span *a = take(&f, 2048);
    uint32_t clean;
    CHECK(decay_alloc(&f.heap, 1, 1, &clean) == NULL); /* a second arena would exceed it */
    CHECK_EQ_U(f.acct.reserved, (size_t)8 << 20);
    heap_free(&f.heap, a, 0);
    check_clean(&f);
    heap_destroy(&f.heap);
    CHECK_EQ_U(f.acct.resident, 0);
}

static void test_alignment(void) {
    fixture f;
    setup(&f, 0);
    mp_span *pad = take(&f, 1);
    uint32_t clean;
    mp_span *s = decay_alloc(&f.heap, 4, 64, &clean); /* 256 KiB aligned */
    CHECK(s && ((uintptr_t)span_addr(s) & (64 * MP_PAGE_SIZE - 1)) == 0);
    CHECK_EQ_U(clean, 4);
    heap_free(&f.heap, s, 0);
    heap_free(&f.heap, pad, 0);
    check_clean(&f);
    heap_destroy(&f.heap);
}

static void test_checker_names_what_broke(void) {
    fixture f;
    setup(&f, 0);
    mp_span *a = take(&f, 4);
    f.heap.free_granules += 1; /* a counter that no longer sums the walk */
    mp_check_log log = {0};
    size_t bad = heap_check(&f.heap, &log);
    CHECK_EQ_U(bad, 1);
    CHECK(log.named == 1 && strcmp(log.what[0], "heap: free granule count") == 0);
    f.heap.free_granules -= 1;
    heap_free(&f.heap, a, 0);
    check_clean(&f);
    heap_destroy(&f.heap);
}

int main(void) {
    test_split_coalesce_and_reports();
    test_capacity_refuses();
    test_alignment();
    test_checker_names_what_broke();
    return test_report("test_heap");
}
