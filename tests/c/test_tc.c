/*
 * test_tc.c - tc.c: thread caches, with pools and threads that come and go
 * in awkward orders (and the registry of live pools, registry.c, that the
 * caches key on: it is what tells an exiting thread which pools still live).
 *
 * Thread caches are keyed by pool, and pools and threads have independent
 * lifetimes, which is where allocators usually break:
 *   - a pool destroyed while another thread's cache still holds its blocks,
 *     then that thread uses a new pool (often at the same address) and exits;
 *   - one thread using more pools than a thread caches at once;
 *   - a block freed into thread A's cache, then freed again from thread B
 *     (must be MP_EDOUBLEFREE, not a silent second copy in two caches);
 *   - mp_trim from one thread while another's cache holds free blocks;
 *   - two threads allocating side by side (per-thread slabs: no cache line
 *     of block states is written by both), then one exits (its slabs are
 *     anyone's again).
 * ASan turns any use of a destroyed pool's memory into a report.
 */
#define _GNU_SOURCE /* pthread barriers under -std=c11 */
#include "pool/pool.h"
#include "test.h"

#include <pthread.h>

#define MiB ((size_t)1 << 20)

/* A thread that runs steps on command (so the test can interleave it
 * precisely with the main thread). */
typedef struct stepper {
    pthread_t th;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    void (*step)(void *); /* the next step to run; NULL = none pending */
    void *arg;
    int quit;
} stepper;

/* Thread body: run each posted step, then signal completion. */
static void *stepper_main(void *arg)
{
    stepper *s = arg;
    pthread_mutex_lock(&s->lock);
    for (;;) {
        while (!s->step && !s->quit)
            pthread_cond_wait(&s->cond, &s->lock);
        if (s->step) {
            void (*fn)(void *) = s->step;
            pthread_mutex_unlock(&s->lock);
            fn(s->arg);
            pthread_mutex_lock(&s->lock);
            s->step = NULL;
            pthread_cond_broadcast(&s->cond);
        } else {
            break;
        }
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

/* Start a stepper thread. */
static void stepper_start(stepper *s)
{
    memset(s, 0, sizeof *s);
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->cond, NULL);
    CHECK(pthread_create(&s->th, NULL, stepper_main, s) == 0);
}

/* Run fn(arg) on the stepper thread and wait until it is done. */
static void stepper_run(stepper *s, void (*fn)(void *), void *arg)
{
    pthread_mutex_lock(&s->lock);
    s->step = fn;
    s->arg = arg;
    pthread_cond_broadcast(&s->cond);
    while (s->step)
        pthread_cond_wait(&s->cond, &s->lock);
    pthread_mutex_unlock(&s->lock);
}

/* Let the stepper thread exit (its thread caches are torn down) and join it. */
static void stepper_stop(stepper *s)
{
    pthread_mutex_lock(&s->lock);
    s->quit = 1;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
    pthread_join(s->th, NULL);
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->cond);
}

/* What a step works on. */
typedef struct work {
    mp_pool *pool;
    void *blocks[256];
    size_t n, size;
    int rc;
} work;

/* Step: allocate n small blocks and free them again (warms the cache). */
static void step_churn(void *arg)
{
    work *w = arg;
    for (size_t i = 0; i < w->n; i++) {
        w->blocks[i] = mp_alloc(w->pool, w->size);
        CHECK(w->blocks[i] != NULL);
        if (w->blocks[i])
            memset(w->blocks[i], 0x3C, w->size);
    }
    for (size_t i = 0; i < w->n; i++)
        if (w->blocks[i])
            CHECK_ERR(mp_free(w->pool, w->blocks[i], w->size), MP_OK);
}

/* Step: allocate n blocks and keep them. */
static void step_alloc(void *arg)
{
    work *w = arg;
    for (size_t i = 0; i < w->n; i++) {
        w->blocks[i] = mp_alloc(w->pool, w->size);
        CHECK(w->blocks[i] != NULL);
        if (w->blocks[i])
            test_block_fill(w->blocks[i], i + 1, w->size);
    }
}

/* Step: free the n kept blocks. */
static void step_free(void *arg)
{
    work *w = arg;
    for (size_t i = 0; i < w->n; i++)
        if (w->blocks[i]) {
            CHECK(test_block_verify(w->blocks[i], i + 1, w->size, w->size) == SIZE_MAX);
            CHECK_ERR(mp_free(w->pool, w->blocks[i], w->size), MP_OK);
        }
}

/* Step: free blocks[0] once; its rc is kept. */
static void step_free_first(void *arg)
{
    work *w = arg;
    w->rc = mp_free(w->pool, w->blocks[0], w->size);
}

/* A pool destroyed under a live thread cache; the thread then uses a new
 * pool and exits. */
static void test_destroy_under_thread_cache(void)
{
    for (int round = 0; round < 20; round++) {
        stepper t;
        stepper_start(&t);
        mp_pool *a = NULL, *b = NULL;
        CHECK_ERR(mp_pool_create(NULL, &a), MP_OK);
        work w = {.pool = a, .n = 100, .size = (size_t)(round % 4) * 200 + 64};
        stepper_run(&t, step_churn, &w); /* t's cache now holds a's blocks */
        if (round % 2) {
            w.n = 10;
            stepper_run(&t, step_alloc, &w); /* and some live ones */
        }
        mp_pool_destroy(a);
        CHECK_ERR(mp_pool_create(NULL, &b), MP_OK); /* often at a's address */
        work v = {.pool = b, .n = 100, .size = w.size};
        stepper_run(&t, step_churn, &v);
        v.n = 50;
        stepper_run(&t, step_alloc, &v);
        for (size_t i = 0; i < v.n; i++)
            CHECK_MSG(mp_owns(b, v.blocks[i]) == 1, "round %d: block of the new pool "
                      "not owned by it (stale thread cache?)", round);
        mp_stats s;
        mp_stats_get(b, &s);
        CHECK_EQ_U(s.live_bytes, v.n * v.size);
        stepper_run(&t, step_free, &v);
        stepper_stop(&t); /* the thread's cache for b (and stale a) goes away */
        mp_stats_get(b, &s);
        CHECK_EQ_U(s.live_bytes, 0);
        CHECK_EQ_U(mp_pool_check(b), 0);
        mp_pool_destroy(b);
    }
}

/* One thread using many more pools than it caches at once, round robin. */
static void test_many_pools_one_thread(void)
{
    enum { NP = 20, ROUNDS = 30, PER = 20 };
    mp_pool *pools[NP];
    void *held[NP][PER];
    for (int i = 0; i < NP; i++)
        CHECK_ERR(mp_pool_create(NULL, &pools[i]), MP_OK);
    for (int r = 0; r < ROUNDS; r++) {
        for (int i = 0; i < NP; i++)
            for (int k = 0; k < PER; k++) {
                held[i][k] = mp_alloc(pools[i], 96);
                CHECK(held[i][k] != NULL);
                test_block_fill(held[i][k], (uint64_t)(i * PER + k), 96);
            }
        for (int i = NP - 1; i >= 0; i--)
            for (int k = 0; k < PER; k++) {
                CHECK(mp_owns(pools[i], held[i][k]) == 1);
                CHECK(test_block_verify(held[i][k], (uint64_t)(i * PER + k), 96, 96) == SIZE_MAX);
                CHECK_ERR(mp_free(pools[(i + 1) % NP], held[i][k], 96), MP_EFOREIGN);
                CHECK_ERR(mp_free(pools[i], held[i][k], 96), MP_OK);
            }
    }
    for (int i = 0; i < NP; i++) {
        mp_stats s;
        mp_stats_get(pools[i], &s);
        CHECK_EQ_U(s.live_bytes, 0);
        CHECK_EQ_U(s.alloc_count, (uint64_t)ROUNDS * PER);
        CHECK_EQ_U(s.free_count, (uint64_t)ROUNDS * PER);
        CHECK_EQ_U(s.errors[-MP_EFOREIGN], (uint64_t)ROUNDS * PER);
        CHECK_EQ_U(mp_pool_check(pools[i]), 0);
    }
    /* destroy in an interleaved order and create new ones in between */
    for (int i = 0; i < NP; i += 2)
        mp_pool_destroy(pools[i]);
    for (int i = 0; i < NP; i += 2) {
        CHECK_ERR(mp_pool_create(NULL, &pools[i]), MP_OK);
        void *p = mp_alloc(pools[i], 96);
        CHECK(mp_owns(pools[i], p) == 1);
        CHECK_ERR(mp_free(pools[i], p, 96), MP_OK);
        mp_stats s;
        mp_stats_get(pools[i], &s);
        CHECK_EQ_U(s.live_bytes, 0);
        CHECK_EQ_U(s.alloc_count, 1);
    }
    for (int i = 0; i < NP; i++)
        mp_pool_destroy(pools[i]);
}

/* A block freed into one thread's cache, then freed from another thread. */
static void test_cross_thread_double_free(void)
{
    mp_pool *pool = NULL;
    CHECK_ERR(mp_pool_create(NULL, &pool), MP_OK);
    stepper t;
    stepper_start(&t);
    size_t sizes[] = {64, 500, 4000, 30000, 3 * MiB};
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
        work w = {.pool = pool, .n = 1, .size = sizes[k]};
        w.blocks[0] = mp_alloc(pool, w.size); /* main allocates */
        stepper_run(&t, step_free_first, &w); /* t frees it (into its cache) */
        CHECK_ERR(w.rc, MP_OK);
        mp_stats before, after;
        mp_stats_get(pool, &before);
        CHECK_MSG(mp_free(pool, w.blocks[0], w.size) == MP_EDOUBLEFREE,
                  "size %zu: a block in another thread's cache was freed again", w.size);
        stepper_run(&t, step_free_first, &w); /* and t frees it once more */
        CHECK_MSG(w.rc == MP_EDOUBLEFREE, "size %zu: second free on the freeing thread: %s",
                  w.size, mp_error_name(w.rc));
        mp_stats_get(pool, &after);
        CHECK_EQ_U(after.live_bytes, before.live_bytes);
        CHECK_EQ_U(after.errors[-MP_EDOUBLEFREE], before.errors[-MP_EDOUBLEFREE] + 2);
        /* the block must come back once, not twice */
        void *a = mp_alloc(pool, w.size), *b = mp_alloc(pool, w.size);
        CHECK(a != NULL && b != NULL && a != b);
        stepper_run(&t, step_churn, &(work){.pool = pool, .n = 8, .size = w.size});
        CHECK_ERR(mp_free(pool, a, w.size), MP_OK);
        CHECK_ERR(mp_free(pool, b, w.size), MP_OK);
        CHECK_EQ_U(mp_pool_check(pool), 0);
    }
    stepper_stop(&t);
    mp_stats s;
    mp_stats_get(pool, &s);
    CHECK_EQ_U(s.live_bytes, 0);
    CHECK_EQ_U(mp_pool_check(pool), 0);
    mp_pool_destroy(pool);
}

/* mp_trim on one thread while another thread's cache holds free blocks,
 * and while that thread keeps live blocks whose content must survive. */
static void test_trim_with_foreign_caches(void)
{
    mp_config cfg;
    mp_config_default(&cfg);
    cfg.decay_ms = -1;
    cfg.background_purge = 0;
    mp_pool *pool = NULL;
    CHECK_ERR(mp_pool_create(&cfg, &pool), MP_OK);
    stepper t;
    stepper_start(&t);
    work churn = {.pool = pool, .n = 256, .size = 2000};
    work keep = {.pool = pool, .n = 64, .size = 3000};
    work big = {.pool = pool, .n = 4, .size = 9 * MiB};
    stepper_run(&t, step_churn, &churn);
    stepper_run(&t, step_alloc, &keep);
    stepper_run(&t, step_alloc, &big);
    mp_trim(pool); /* from main: must not drop t's cache or live data */
    CHECK_EQ_U(mp_pool_check(pool), 0);
    stepper_run(&t, step_churn, &churn); /* t's cache still works */
    stepper_run(&t, step_free, &keep);    /* verifies the content */
    stepper_run(&t, step_free, &big);
    mp_stats s;
    mp_stats_get(pool, &s);
    CHECK_EQ_U(s.live_bytes, 0);
    stepper_stop(&t);
    CHECK_EQ_U(mp_pool_check(pool), 0);
    size_t given = mp_trim(pool);
    mp_stats_get(pool, &s);
    CHECK_MSG(given > 36 * MiB, "trim after everything was freed gave back %zu", given);
    CHECK_EQ_U(mp_pool_check(pool), 0);
    mp_pool_destroy(pool);
}

/* What a replacing step works on: a random working set of small blocks. */
typedef struct churn_set {
    mp_pool *pool;
    test_rng rng;
    void *slot[256];
    size_t size[256];
} churn_set;

/* Step: replace random blocks of the set 4000 times, 16-512 bytes (the
 * first call fills it). */
static void step_replace(void *arg)
{
    churn_set *w = arg;
    for (int i = 0; i < 256; i++)
        if (w->slot[i] == NULL) {
            w->size[i] = (size_t)test_rng_range(&w->rng, 16, 512);
            w->slot[i] = mp_alloc(w->pool, w->size[i]);
            CHECK(w->slot[i] != NULL);
        }
    for (int k = 0; k < 4000; k++) {
        int i = (int)(test_rng_next(&w->rng) % 256);
        CHECK_ERR(mp_free(w->pool, w->slot[i], w->size[i]), MP_OK);
        w->size[i] = (size_t)test_rng_range(&w->rng, 16, 512);
        w->slot[i] = mp_alloc(w->pool, w->size[i]);
        CHECK(w->slot[i] != NULL);
    }
}

/* Step: free the whole set. */
static void step_drop(void *arg)
{
    churn_set *w = arg;
    for (int i = 0; i < 256; i++)
        if (w->slot[i]) {
            CHECK_ERR(mp_free(w->pool, w->slot[i], w->size[i]), MP_OK);
            w->slot[i] = NULL;
        }
}

/* The cache line of a live small block's state word, the block's slab in
 * *slab (white box: what per-thread slabs promise is about these). */
static uintptr_t state_line(mp_pool *pool, void *p, mp_slab **slab)
{
    *slab = slab_at(pool, p);
    if (*slab == NULL)
        return 0;
    uint32_t idx = sc_index((uint64_t)((char *)p - (*slab)->start), (*slab)->magic);
    return (uintptr_t)&(*slab)->state[idx] / MP_CACHE_LINE;
}

/* Slabs the pool holds, over every class. */
static uint64_t slabs_held(mp_pool *pool)
{
    mp_stats s;
    mp_stats_get(pool, &s);
    uint64_t n = 0;
    for (unsigned c = 0; c < MP_MAX_CLASSES; c++)
        n += s.classes[c].slabs;
    return n;
}

/* Two threads replacing blocks in turns: no slab holds both threads' live
 * blocks, no state word line is written by both; blocks freed by the other
 * thread are fine; once one thread exits, the other reuses its slabs. */
static void test_threads_own_their_slabs(void)
{
    mp_pool *pool = NULL;
    CHECK_ERR(mp_pool_create(NULL, &pool), MP_OK);
    stepper t[2];
    churn_set *set = calloc(2, sizeof *set);
    for (int k = 0; k < 2; k++) {
        stepper_start(&t[k]);
        set[k].pool = pool;
        test_rng_seed(&set[k].rng, 77 + (uint64_t)k);
    }
    for (int round = 0; round < 8; round++)
        for (int k = 0; k < 2; k++)
            stepper_run(&t[k], step_replace, &set[k]);
    size_t shared_slabs = 0, shared_lines = 0;
    for (int i = 0; i < 256; i++) {
        mp_slab *si, *sj;
        uintptr_t li = state_line(pool, set[0].slot[i], &si);
        CHECK(si != NULL);
        for (int j = 0; j < 256; j++) {
            uintptr_t lj = state_line(pool, set[1].slot[j], &sj);
            shared_slabs += si == sj;
            shared_lines += li == lj;
        }
    }
    CHECK_MSG(shared_slabs == 0 && shared_lines == 0,
              "two threads' live blocks: %zu pairs on one slab, %zu on one state line",
              shared_slabs, shared_lines);
    CHECK_EQ_U(mp_pool_check(pool), 0);
    /* the first thread frees a quarter of the second's blocks (into its own
     * cache) and goes on; the second replaces what it lost */
    work cross = {.pool = pool, .n = 64, .size = 0};
    for (int i = 0; i < 64; i++) {
        cross.blocks[0] = set[1].slot[4 * i];
        cross.size = set[1].size[4 * i];
        stepper_run(&t[0], step_free_first, &cross);
        CHECK_ERR(cross.rc, MP_OK);
        set[1].slot[4 * i] = NULL;
    }
    stepper_run(&t[0], step_replace, &set[0]);
    stepper_run(&t[1], step_replace, &set[1]);
    CHECK_EQ_U(mp_pool_check(pool), 0);
    /* the first thread leaves: its slabs are anyone's, so the second takes
     * the first's share without the pool making a slab */
    stepper_run(&t[0], step_drop, &set[0]);
    stepper_stop(&t[0]);
    CHECK_EQ_U(mp_pool_check(pool), 0);
    uint64_t held = slabs_held(pool);
    work more = {.pool = pool, .n = 128, .size = 200};
    stepper_run(&t[1], step_alloc, &more);
    CHECK_MSG(slabs_held(pool) <= held, "a thread made slabs (%" PRIu64 " -> %" PRIu64
              ") while a gone thread's had room", held, slabs_held(pool));
    stepper_run(&t[1], step_free, &more);
    stepper_run(&t[1], step_drop, &set[1]);
    stepper_stop(&t[1]);
    mp_stats s;
    mp_stats_get(pool, &s);
    CHECK_EQ_U(s.live_bytes, 0);
    CHECK_EQ_U(mp_pool_check(pool), 0);
    free(set);
    mp_pool_destroy(pool);
}

int main(void)
{
    struct { const char *name; void (*fn)(void); } tests[] = {
        {"destroy_under_thread_cache", test_destroy_under_thread_cache},
        {"many_pools_one_thread", test_many_pools_one_thread},
        {"cross_thread_double_free", test_cross_thread_double_free},
        {"trim_with_foreign_caches", test_trim_with_foreign_caches},
        {"threads_own_their_slabs", test_threads_own_their_slabs},
    };
    for (size_t i = 0; i < sizeof tests / sizeof *tests; i++) {
        unsigned long before = test_failures;
        tests[i].fn();
        printf("  %-28s %s\n", tests[i].name, test_failures == before ? "ok" : "FAIL");
        fflush(stdout);
    }
    return test_report("test_tc");
}
