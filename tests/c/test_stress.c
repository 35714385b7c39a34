/*
 * test_stress.c - randomized stress of one pool against a shadow model.
 *
 *   test_stress [SEED [OPS [MODE [CHECK_EVERY]]]]
 *       MODE: "default" (the default config), "debug-decay0" (debug fill
 *       on, pages given back at every free: the release paths all the time),
 *       or config overrides "key=value,..." (arena, small_max, huge_min,
 *       decay, huge, bg, debug, capacity; sizes may end in K, M or G), e.g.
 *       "arena=4M,small_max=65536" for many arenas and many direct blocks.
 *
 * Mixed alloc / calloc / aligned / realloc / free with sizes from 0 B to
 * 256 MiB (mostly small, some medium, rare huge).  The model knows every
 * live block: its size, alignment and an id whose pattern fills the block
 * and is verified at realloc and free.  Live blocks sit in a balanced tree
 * of intervals (tsearch) so any overlap is caught at allocation.  Every
 * CHECK_EVERY ops the pool's statistics are compared with the model and
 * mp_pool_check() must be 0.  Hostile frees (double, interior, foreign,
 * wrong size) are injected and must give their codes.  Live memory is capped
 * at 1 GiB.  Same seed, same run.
 */
#define _GNU_SOURCE /* tsearch/tdelete/tfind, clock_gettime under -std=c11 */
#include "test.h"

#include <search.h>
#include <stdalign.h>
#include <time.h>

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)
#define LIVE_CAP ((uint64_t)1 << 30) /* the machine has 24 GiB; stay far off */
#define NSLOTS 2048
#define FREED_RING 64

/* One live block of the model. */
typedef struct slot {
    uint8_t *p;       /* NULL: the slot is empty */
    size_t size;      /* requested size */
    size_t align;     /* alignment asked for (64 for plain alloc) */
    uint64_t id;      /* pattern identity */
    uintptr_t start;  /* interval [start, end) in the overlap tree */
    uintptr_t end;
} slot;

/* The whole model: what the pool's counters must agree with. */
typedef struct model {
    slot slots[NSLOTS];
    void *tree;                  /* tsearch tree of live intervals */
    uint64_t live_bytes, live_count;
    uint64_t alloc_calls, calloc_calls, realloc_calls, free_calls;
    uint64_t errors[MP_ERROR_COUNT];
    uint64_t next_id;
    void *freed[FREED_RING];     /* recently freed pointers, for late double frees */
    unsigned freed_pos;
    int calloc_in_alloc_count;   /* does mp_calloc also bump alloc_count? (probed) */
} model;

static model M;
static mp_pool *pool;
static test_rng rng;
static size_t arena_bytes;
static uint64_t hostile_ops;

/* Interval order; overlapping intervals compare equal, so tfind on a new
 * block finds any live block it overlaps (live intervals are disjoint). */
static int iv_cmp(const void *a, const void *b)
{
    const slot *x = a, *y = b;
    if (x->end <= y->start)
        return -1;
    if (y->end <= x->start)
        return 1;
    return 0;
}

/* A random request size: 1% zero, 70% up to 1 KiB, 20% up to 64 KiB, 8.9% up
 * to 4 MiB, ~0.1% up to 64 MiB, 0.01% up to 256 MiB. */
static size_t gen_size(void)
{
    uint64_t r = test_rng_next(&rng) % 100000;
    if (r < 1000)
        return 0;
    if (r < 71000)
        return (size_t)test_rng_range(&rng, 1, 1024);
    if (r < 91000)
        return (size_t)test_rng_range(&rng, 1025, 64 * KiB);
    if (r < 99890)
        return (size_t)test_rng_range(&rng, 64 * KiB + 1, 4 * MiB);
    if (r < 99990)
        return (size_t)test_rng_range(&rng, 4 * MiB + 1, 64 * MiB);
    return (size_t)test_rng_range(&rng, 64 * MiB + 1, 256 * MiB);
}

/* Enter a fresh block in the model: alignment, overlap, ownership checks. */
static void model_add(int i, uint8_t *p, size_t size, size_t align)
{
    slot *s = &M.slots[i];
    CHECK_MSG((uintptr_t)p % align == 0 && (uintptr_t)p % 64 == 0,
              "block %p (size %zu) not aligned to %zu", (void *)p, size, align);
    s->p = p;
    s->size = size;
    s->align = align;
    s->id = ++M.next_id;
    s->start = (uintptr_t)p;
    s->end = (uintptr_t)p + (size ? size : 1);
    slot **hit = tfind(s, &M.tree, iv_cmp);
    if (hit) {
        FAIL("new block %p+%zu overlaps live block %p+%zu", (void *)p, size,
                  (void *)(*hit)->p, (*hit)->size);
        s->start = s->end = 0; /* keep it out of the tree */
    } else {
        tsearch(s, &M.tree, iv_cmp);
    }
    M.live_bytes += size;
    M.live_count++;
}

/* Remove a block from the model (it was freed or moved by realloc). */
static void model_remove(int i)
{
    slot *s = &M.slots[i];
    if (s->end > s->start)
        tdelete(s, &M.tree, iv_cmp);
    M.live_bytes -= s->size;
    M.live_count--;
    M.freed[M.freed_pos++ % FREED_RING] = s->p;
    s->p = NULL;
}

/* Verify a live block's pattern (all of it, or the sampled layout). */
static void verify_slot(int i, const char *when)
{
    slot *s = &M.slots[i];
    size_t bad = test_block_verify(s->p, s->id, s->size, s->size);
    CHECK_MSG(bad == SIZE_MAX, "%s: block %p (size %zu, id %" PRIu64 ") corrupt at offset %zu",
              when, (void *)s->p, s->size, s->id, bad);
}

/* Allocate into empty slot i with a random call. */
static void op_alloc(int i)
{
    size_t size = gen_size();
    if (M.live_bytes + size > LIVE_CAP)
        size = (size_t)test_rng_range(&rng, 0, 1024);
    uint64_t how = test_rng_next(&rng) % 100;
    size_t align = 64;
    uint8_t *p;
    if (how < 70) {
        p = mp_alloc(pool, size);
        M.alloc_calls++;
    } else if (how < 85) {
        size_t count = size, each = 1;
        if (size % 8 == 0 && size) {
            count = size / 8;
            each = 8;
        }
        p = mp_calloc(pool, count, each);
        M.calloc_calls++;
    } else {
        unsigned shift = test_rng_next(&rng) % 50 == 0
                             ? (unsigned)test_rng_range(&rng, 17, 28)
                             : (unsigned)test_rng_range(&rng, 0, 16);
        align = (size_t)1 << shift;
        p = mp_alloc_aligned(pool, size, align);
        M.alloc_calls++;
        if (align < 64)
            align = 64; /* the pool's minimum; checked in model_add */
    }
    if (!CHECK_MSG(p != NULL, "alloc of %zu (how %" PRIu64 ", align %zu) failed: %s", size,
                   how, align, mp_error_name(mp_last_error()))) {
        if (how >= 70 && how < 85)
            M.calloc_calls--;
        else
            M.alloc_calls--;
        int e = mp_last_error(); /* the pool counts it: keep the model in step */
        if (e < 0 && e > -MP_ERROR_COUNT)
            M.errors[-e]++;
        return;
    }
    if (how >= 70 && how < 85) {
        size_t bad = test_block_find_nonzero(p, size);
        CHECK_MSG(bad == SIZE_MAX, "calloc of %zu not zero at %zu", size, bad);
    }
    model_add(i, p, size, align);
    test_block_fill(p, M.slots[i].id, size);
}

/* Free slot i (verifying it), sometimes double-freeing it right after. */
static void op_free(int i)
{
    slot *s = &M.slots[i];
    verify_slot(i, "free");
    size_t req = 0;
    CHECK_ERR(mp_requested_size(pool, s->p, &req), MP_OK);
    CHECK_MSG(req == s->size, "requested_size %zu, model %zu", req, s->size);
    if (test_rng_next(&rng) % 16 == 0)
        CHECK_MSG(mp_usable_size(pool, s->p) >= s->size, "usable < size %zu", s->size);
    int rc = mp_free(pool, s->p, test_rng_next(&rng) % 2 ? s->size : 0);
    CHECK_MSG(rc == MP_OK, "free of %p (size %zu): %s", (void *)s->p, s->size,
              mp_error_name(rc));
    if (rc != MP_OK)
        return; /* keep it in the model: the pool says it is still live */
    M.free_calls++;
    uint8_t *p = s->p;
    size_t size = s->size;
    model_remove(i);
    if (test_rng_next(&rng) % 200 == 0) { /* immediate double free */
        hostile_ops++;
        rc = mp_free(pool, p, size);
        if (size >= arena_bytes / 2) /* maybe a direct mapping, now unmapped */
            CHECK_MSG(rc == MP_EDOUBLEFREE || rc == MP_EFOREIGN,
                      "double free of %zu-byte block: %s", size, mp_error_name(rc));
        else
            CHECK_MSG(rc == MP_EDOUBLEFREE, "double free of %zu-byte block: %s", size,
                      mp_error_name(rc));
        if (rc < 0)
            M.errors[-rc]++;
    }
}

/* Resize slot i to a random size and check the prefix survived. */
static void op_realloc(int i)
{
    slot *s = &M.slots[i];
    size_t new_size = gen_size();
    if (M.live_bytes - s->size + new_size > LIVE_CAP)
        new_size = (size_t)test_rng_range(&rng, 0, 1024);
    verify_slot(i, "before realloc");
    size_t old_arg = test_rng_next(&rng) % 2 ? s->size : 0;
    uint8_t *q = mp_realloc(pool, s->p, old_arg, new_size);
    if (!CHECK_MSG(q != NULL, "realloc %zu -> %zu failed: %s", s->size, new_size,
                   mp_error_name(mp_last_error()))) {
        int e = mp_last_error(); /* the pool counts it: keep the model in step */
        if (e < 0 && e > -MP_ERROR_COUNT)
            M.errors[-e]++;
        verify_slot(i, "after failed realloc");
        return;
    }
    M.realloc_calls++;
    size_t keep = s->size < new_size ? s->size : new_size;
    size_t bad = test_block_verify(q, s->id, s->size, keep);
    CHECK_MSG(bad == SIZE_MAX, "realloc %zu -> %zu lost content at %zu", s->size, new_size,
              bad);
    uint8_t *old = s->p;
    model_remove(i);
    /* the old address is not "recently freed" if the block stayed there */
    if (q == old)
        M.freed[(M.freed_pos - 1) % FREED_RING] = NULL;
    model_add(i, q, new_size, 64);
    test_block_fill(q, M.slots[i].id, new_size);
}

/* A random live slot at or after i with at least min_size bytes, or -1. */
static int find_live(int i, size_t min_size)
{
    for (int k = 0; k < NSLOTS; k++) {
        int j = (i + k) % NSLOTS;
        if (M.slots[j].p && M.slots[j].size >= min_size)
            return j;
    }
    return -1;
}

/* Inject one misuse and check its code; the model counts it. */
static void op_hostile(void)
{
    alignas(64) uint8_t stack_buf[128];
    alignas(64) static uint8_t static_buf[128];
    int kind = (int)(test_rng_next(&rng) % 4), rc, want;
    int i = (int)(test_rng_next(&rng) % NSLOTS);
    hostile_ops++;
    switch (kind) {
    case 0: { /* a pointer freed a while ago and not handed out again */
        void *p = M.freed[test_rng_next(&rng) % FREED_RING];
        if (!p)
            return;
        slot probe = {.start = (uintptr_t)p, .end = (uintptr_t)p + 1};
        if (tfind(&probe, &M.tree, iv_cmp))
            return; /* the address is live again (reused): not a misuse */
        rc = mp_free(pool, p, 0);
        CHECK_MSG(rc == MP_EDOUBLEFREE || rc == MP_EFOREIGN || rc == MP_EINTERIOR,
                  "late double free of %p: %s", p, mp_error_name(rc));
        break;
    }
    case 1: { /* interior pointer of a live block */
        int j = find_live(i, 128);
        if (j < 0)
            return;
        slot *s = &M.slots[j];
        size_t off = test_rng_next(&rng) % 4 == 0
                         ? 1
                         : 64 * (size_t)test_rng_range(&rng, 1, (s->size - 1) / 64);
        rc = mp_free(pool, s->p + off, test_rng_next(&rng) % 2 ? s->size : 0);
        want = MP_EINTERIOR;
        CHECK_MSG(rc == want, "interior free %p+%zu (size %zu): %s", (void *)s->p, off,
                  s->size, mp_error_name(rc));
        verify_slot(j, "after interior free");
        break;
    }
    case 2: { /* pointers from elsewhere */
        void *mal = malloc(256);
        void *cands[] = {stack_buf, static_buf, mal};
        stack_buf[0] = 1;
        rc = mp_free(pool, cands[test_rng_next(&rng) % 3], 0);
        free(mal);
        CHECK_MSG(rc == MP_EFOREIGN, "foreign free: %s", mp_error_name(rc));
        break;
    }
    default: { /* wrong size for a live block */
        int j = find_live(i, 2);
        if (j < 0)
            return;
        slot *s = &M.slots[j];
        size_t wrong = test_rng_next(&rng) % 2 ? s->size + 1 : s->size - 1;
        rc = mp_free(pool, s->p, wrong);
        CHECK_MSG(rc == MP_ESIZE, "free of %zu-byte block with size %zu: %s", s->size, wrong,
                  mp_error_name(rc));
        verify_slot(j, "after wrong-size free");
        break;
    }
    }
    if (rc < 0 && rc > -MP_ERROR_COUNT)
        M.errors[-rc]++;
    else if (rc == MP_OK)
        FAIL("hostile free (kind %d) succeeded: the model is now wrong", kind);
}

/* Compare the pool's counters with the model and walk its structures. */
static void compare_with_model(uint64_t op)
{
    mp_stats s;
    CHECK_ERR(mp_stats_get(pool, &s), MP_OK);
    CHECK_MSG(s.live_bytes == M.live_bytes, "op %" PRIu64 ": live_bytes %" PRIu64
              ", model %" PRIu64, op, s.live_bytes, M.live_bytes);
    uint64_t allocs = s.alloc_count + (M.calloc_in_alloc_count ? 0 : s.calloc_count);
    CHECK_MSG(allocs - s.free_count == M.live_count,
              "op %" PRIu64 ": alloc_count %" PRIu64 " (+calloc %" PRIu64 ") - free_count %" PRIu64
              " != %" PRIu64 " live blocks", op, s.alloc_count, s.calloc_count, s.free_count,
              M.live_count);
    CHECK_MSG(s.alloc_count >= M.alloc_calls && s.free_count >= M.free_calls,
              "op %" PRIu64 ": alloc/free counts %" PRIu64 "/%" PRIu64 " below calls %" PRIu64
              "/%" PRIu64, op, s.alloc_count, s.free_count, M.alloc_calls, M.free_calls);
    CHECK_MSG(s.calloc_count == M.calloc_calls && s.realloc_count == M.realloc_calls,
              "op %" PRIu64 ": calloc/realloc counts %" PRIu64 "/%" PRIu64 ", model %" PRIu64
              "/%" PRIu64, op, s.calloc_count, s.realloc_count, M.calloc_calls, M.realloc_calls);
    uint64_t total = 0;
    for (int e = 1; e < MP_ERROR_COUNT; e++) {
        CHECK_MSG(s.errors[e] == M.errors[e], "op %" PRIu64 ": errors[%s] %" PRIu64
                  ", model %" PRIu64, op, mp_error_name(-e), s.errors[e], M.errors[e]);
        total += M.errors[e];
    }
    CHECK_EQ_U(s.error_total, total);
    CHECK_MSG(s.allocated_bytes >= s.live_bytes, "op %" PRIu64 ": allocated < live", op);
    CHECK_MSG(s.reserved_bytes >= s.resident_bytes, "op %" PRIu64 ": reserved < resident", op);
    size_t bad = mp_pool_check(pool);
    CHECK_MSG(bad == 0, "op %" PRIu64 ": mp_pool_check found %zu violations", op, bad);
}

/* Find out whether mp_calloc also counts in alloc_count, and that a moving
 * realloc keeps alloc_count - free_count balanced. */
static void probe_counter_semantics(void)
{
    mp_stats a, b, c;
    mp_stats_get(pool, &a);
    void *p = mp_calloc(pool, 1, 10);
    mp_stats_get(pool, &b);
    M.calloc_in_alloc_count = b.alloc_count == a.alloc_count + 1;
    CHECK_MSG(b.alloc_count - a.alloc_count <= 1, "calloc moved alloc_count by %" PRIu64,
              b.alloc_count - a.alloc_count);
    void *q = mp_realloc(pool, p, 10, 3 * MiB); /* small -> large: must move */
    mp_stats_get(pool, &c);
    CHECK_MSG(c.alloc_count - b.alloc_count == c.free_count - b.free_count,
              "a moving realloc moved alloc_count by %" PRIu64 " and free_count by %" PRIu64,
              c.alloc_count - b.alloc_count, c.free_count - b.free_count);
    CHECK_ERR(mp_free(pool, q, 3 * MiB), MP_OK);
    mp_stats_get(pool, &a);
    M.alloc_calls = a.alloc_count;
    M.calloc_calls = a.calloc_count;
    M.realloc_calls = a.realloc_count;
    M.free_calls = a.free_count;
    printf("counter semantics: calloc %s alloc_count\n",
           M.calloc_in_alloc_count ? "counts in" : "is separate from");
}

/* tdestroy callback: the tree's keys are the model's slots, not heap memory. */
static void free_nothing(void *key)
{
    (void)key;
}

/* Parse "key=value,..." config overrides into cfg; 0 on a malformed one. */
static int parse_overrides(mp_config *cfg, const char *spec)
{
    char buf[256];
    snprintf(buf, sizeof buf, "%s", spec);
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
        char *eq = strchr(tok, '=');
        if (!eq)
            return 0;
        *eq = '\0';
        char *end;
        long long v = strtoll(eq + 1, &end, 0);
        if (*end == 'K')
            v <<= 10;
        else if (*end == 'M')
            v <<= 20;
        else if (*end == 'G')
            v <<= 30;
        if (!strcmp(tok, "arena")) cfg->arena_bytes = (size_t)v;
        else if (!strcmp(tok, "small_max")) cfg->small_max = (size_t)v;
        else if (!strcmp(tok, "huge_min")) cfg->huge_min = (size_t)v;
        else if (!strcmp(tok, "decay")) cfg->decay_ms = v;
        else if (!strcmp(tok, "huge")) cfg->huge_pages = (int)v;
        else if (!strcmp(tok, "bg")) cfg->background_purge = (int)v;
        else if (!strcmp(tok, "debug")) cfg->debug = (int)v;
        else if (!strcmp(tok, "capacity")) cfg->capacity = (size_t)v;
        else return 0;
    }
    return 1;
}

/* Seconds since an arbitrary point (for the report only). */
static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
    uint64_t seed = argc > 1 ? strtoull(argv[1], NULL, 0) : 1;
    uint64_t ops = argc > 2 ? strtoull(argv[2], NULL, 0) : 1000000;
    const char *mode = argc > 3 ? argv[3] : "default";
    uint64_t check_every = argc > 4 ? strtoull(argv[4], NULL, 0) : 5000;
    if (check_every == 0)
        check_every = 5000;

    mp_config cfg;
    mp_config_default(&cfg);
    if (strcmp(mode, "debug-decay0") == 0) {
        cfg.debug = 1;
        cfg.decay_ms = 0;
        cfg.background_purge = 0;
    } else if (strcmp(mode, "default") != 0 && !parse_overrides(&cfg, mode)) {
        fprintf(stderr, "unknown mode %s (default | debug-decay0 | key=value,...: "
                "arena, small_max, huge_min, decay, huge, bg, debug, capacity; "
                "sizes take K/M/G)\n", mode);
        return 2;
    }
    arena_bytes = cfg.arena_bytes;
    int created = mp_pool_create(&cfg, &pool);
    if (created != MP_OK) {
        FAIL("mp_pool_create(mode %s) failed: %s", mode, mp_error_name(created));
        return test_report("test_stress");
    }
    test_rng_seed(&rng, seed);
    probe_counter_semantics();
    double t0 = now_s();
    uint64_t peak_live = 0;
    for (uint64_t op = 1; op <= ops; op++) {
        int i = (int)(test_rng_next(&rng) % NSLOTS);
        if (test_rng_next(&rng) % 400 == 0)
            op_hostile();
        else if (!M.slots[i].p)
            op_alloc(i);
        else if (test_rng_next(&rng) % 10 < 6)
            op_free(i);
        else
            op_realloc(i);
        if (M.live_bytes > peak_live)
            peak_live = M.live_bytes;
        if (op % check_every == 0)
            compare_with_model(op);
        if (op % 100000 == 0) { /* give pages back under live blocks' feet */
            mp_trim(pool);
            mp_purge_aged(pool);
            for (int k = 0; k < NSLOTS; k += 7)
                if (M.slots[k].p)
                    verify_slot(k, "after trim");
        }
        if (test_failures > 1000)
            break; /* the rest would only repeat the same failure */
    }
    compare_with_model(ops);
    for (int i = 0; i < NSLOTS; i++)
        if (M.slots[i].p)
            op_free(i);
    compare_with_model(ops + 1);
    mp_stats s;
    mp_stats_get(pool, &s);
    CHECK_EQ_U(s.live_bytes, 0);
    CHECK_EQ_U(s.allocated_bytes, 0);
    size_t trimmed = mp_trim(pool);
    mp_stats_get(pool, &s);
    printf("stress seed %" PRIu64 " mode %s: %" PRIu64 " ops in %.1f s; %" PRIu64
           " hostile; peak live %.1f MiB; allocs %" PRIu64 " reallocs %" PRIu64
           " callocs %" PRIu64 "; trim gave %zu; resident after %" PRIu64 "\n",
           seed, mode, ops, now_s() - t0, hostile_ops, (double)peak_live / MiB,
           s.alloc_count, s.realloc_count, s.calloc_count, trimmed, s.resident_bytes);
    CHECK_EQ_U(mp_pool_check(pool), 0);
    mp_pool_destroy(pool);
    tdestroy(M.tree, free_nothing);
    return test_report("test_stress");
}
