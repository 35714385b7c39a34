/*
 * test_threads.c - several threads share one pool and free each other's blocks.
 *
 *   test_threads [THREADS [OPS_PER_THREAD [DECAY_MS]]]   (defaults 4, 200000,
 *       the default decay; a small DECAY_MS keeps the background purge
 *       thread giving pages back while the workers run)
 *
 * Each worker allocates small, medium and large blocks, fills them with a
 * pattern of their id, and frees most itself; ~30% go through a shared queue
 * to whichever thread pops them next, so blocks are freed by threads that did
 * not allocate them, often after their allocating thread has exited; 10% of
 * the time a block is resized instead (its prefix verified).  An observer
 * thread runs mp_pool_check and mp_stats_get throughout, and mp_trim /
 * mp_purge_aged now and then, so pages go back while blocks are in use.  At the
 * end every block is freed: live_bytes must be 0 and the pool healthy.
 * Built also with -fsanitize=thread (make test-c-tsan) to find races.
 */
#define _GNU_SOURCE /* nanosleep under -std=c11 */
#include "test.h"

#include <pthread.h>
#include <time.h>

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)
#define LOCAL_SLOTS 64
#define QUEUE_CAP 4096

/* A block in flight: what its next freer needs to verify it. */
typedef struct item {
    uint8_t *p;
    size_t size;
    uint64_t id;
} item;

/* The producer/consumer queue (a mutex-protected ring). */
static struct {
    pthread_mutex_t lock;
    item ring[QUEUE_CAP];
    size_t head, count;
} queue = {.lock = PTHREAD_MUTEX_INITIALIZER};

static mp_pool *pool;
static uint64_t ops_per_thread = 200000;
static atomic_int workers_done;
static _Atomic uint64_t total_allocs, total_frees, total_passed;

/* Put a block on the queue; 0 if the queue is full (the caller frees it). */
static int queue_push(item it)
{
    pthread_mutex_lock(&queue.lock);
    int ok = queue.count < QUEUE_CAP;
    if (ok) {
        queue.ring[(queue.head + queue.count) % QUEUE_CAP] = it;
        queue.count++;
    }
    pthread_mutex_unlock(&queue.lock);
    return ok;
}

/* Take the oldest block off the queue; 0 if it is empty. */
static int queue_pop(item *out)
{
    pthread_mutex_lock(&queue.lock);
    int ok = queue.count > 0;
    if (ok) {
        *out = queue.ring[queue.head];
        queue.head = (queue.head + 1) % QUEUE_CAP;
        queue.count--;
    }
    pthread_mutex_unlock(&queue.lock);
    return ok;
}

/* Verify a block's pattern and free it (with its size or without). */
static void check_and_free(item it, int with_size)
{
    size_t bad = test_block_verify(it.p, it.id, it.size, it.size);
    CHECK_MSG(bad == SIZE_MAX, "block %p (size %zu, id %" PRIx64 ") corrupt at %zu",
              (void *)it.p, it.size, it.id, bad);
    int rc = mp_free(pool, it.p, with_size ? it.size : 0);
    CHECK_MSG(rc == MP_OK, "free of %p (size %zu) from another thread: %s", (void *)it.p,
              it.size, mp_error_name(rc));
    atomic_fetch_add(&total_frees, 1);
}

/* A worker: its own RNG and slots, a share of its blocks to the queue. */
static void *worker(void *arg)
{
    unsigned tid = (unsigned)(uintptr_t)arg;
    test_rng rng;
    test_rng_seed(&rng, 1000 + tid);
    item local[LOCAL_SLOTS] = {{0}};
    uint64_t counter = 0;
    for (uint64_t op = 0; op < ops_per_thread; op++) {
        int i = (int)(test_rng_next(&rng) % LOCAL_SLOTS);
        if (!local[i].p) {
            uint64_t r = test_rng_next(&rng) % 1000;
            size_t size = r < 850   ? (size_t)test_rng_range(&rng, 0, 1024)
                          : r < 990 ? (size_t)test_rng_range(&rng, 1025, 64 * KiB)
                                    : (size_t)test_rng_range(&rng, 64 * KiB, 4 * MiB);
            uint8_t *p = mp_alloc(pool, size);
            if (!CHECK_MSG(p != NULL, "thread %u: mp_alloc(%zu): %s", tid, size,
                           mp_error_name(mp_last_error())))
                continue;
            CHECK((uintptr_t)p % 64 == 0);
            atomic_fetch_add(&total_allocs, 1);
            uint64_t id = ((uint64_t)tid << 40) | ++counter;
            test_block_fill(p, id, size);
            local[i] = (item){p, size, id};
        } else if (test_rng_next(&rng) % 10 == 0) { /* resize in place or move */
            size_t n = (size_t)test_rng_range(&rng, 0, local[i].size * 2 + 100);
            uint8_t *q = mp_realloc(pool, local[i].p, local[i].size, n);
            if (CHECK_MSG(q != NULL, "thread %u: realloc %zu -> %zu: %s", tid,
                          local[i].size, n, mp_error_name(mp_last_error()))) {
                size_t keep = n < local[i].size ? n : local[i].size;
                size_t bad = test_block_verify(q, local[i].id, local[i].size, keep);
                CHECK_MSG(bad == SIZE_MAX, "thread %u: realloc %zu -> %zu lost byte %zu", tid,
                          local[i].size, n, bad);
                local[i].p = q;
                local[i].size = n;
                test_block_fill(q, local[i].id, n);
            }
        } else if (test_rng_next(&rng) % 10 < 3 && queue_push(local[i])) {
            atomic_fetch_add(&total_passed, 1);
            local[i].p = NULL; /* someone else frees it */
        } else {
            check_and_free(local[i], (int)(op & 1));
            local[i].p = NULL;
        }
        item it;
        if (op % 4 == 0 && queue_pop(&it))
            check_and_free(it, (int)(op & 2));
    }
    for (int i = 0; i < LOCAL_SLOTS; i++)
        if (local[i].p)
            check_and_free(local[i], 1);
    atomic_fetch_add(&workers_done, 1);
    return NULL;
}

/* Runs the pool's own checks while the workers hammer it. */
static void *observer(void *arg)
{
    int nworkers = (int)(intptr_t)arg;
    unsigned rounds = 0;
    while (atomic_load(&workers_done) < nworkers) {
        const char *what[8];
        size_t named = 0;
        size_t bad = mp_pool_check_named(pool, what, 8, &named);
        for (size_t w = 0; w < named; w++) /* which invariant, when one breaks */
            fprintf(stderr, "violation: %s\n", what[w]);
        CHECK_MSG(bad == 0, "mp_pool_check during the run: %zu violations", bad);
        mp_stats s;
        CHECK_ERR(mp_stats_get(pool, &s), MP_OK);
        if (rounds % 16 == 15) { /* give pages back under the workers' feet */
            mp_trim(pool);
            mp_purge_aged(pool);
        }
        rounds++;
        struct timespec ts = {0, 2000000};
        nanosleep(&ts, NULL);
    }
    printf("observer: %u concurrent checks\n", rounds);
    return NULL;
}

int main(int argc, char **argv)
{
    int nthreads = argc > 1 ? atoi(argv[1]) : 4;
    if (argc > 2)
        ops_per_thread = strtoull(argv[2], NULL, 0);
    if (nthreads < 1 || nthreads > 64)
        nthreads = 4;
    mp_config cfg;
    mp_config_default(&cfg);
    if (argc > 3) {
        cfg.decay_ms = strtoll(argv[3], NULL, 0);
        cfg.background_purge = 1;
    }
    CHECK_ERR(mp_pool_create(&cfg, &pool), MP_OK);
    if (!pool)
        return test_report("test_threads");
    pthread_t th[64], obs;
    for (int t = 0; t < nthreads; t++)
        CHECK(pthread_create(&th[t], NULL, worker, (void *)(uintptr_t)t) == 0);
    CHECK(pthread_create(&obs, NULL, observer, (void *)(intptr_t)nthreads) == 0);
    for (int t = 0; t < nthreads; t++)
        pthread_join(th[t], NULL);
    pthread_join(obs, NULL);
    item it; /* what the workers left on the queue, freed by main */
    while (queue_pop(&it))
        check_and_free(it, 1);

    /* a second wave: short-lived threads, each leaving a warm thread cache */
    for (int wave = 0; wave < 8; wave++) {
        uint64_t saved = ops_per_thread;
        ops_per_thread = 500;
        atomic_store(&workers_done, 0);
        for (int t = 0; t < nthreads; t++)
            CHECK(pthread_create(&th[t], NULL, worker, (void *)(uintptr_t)(100 + t)) == 0);
        for (int t = 0; t < nthreads; t++)
            pthread_join(th[t], NULL);
        ops_per_thread = saved;
    }
    while (queue_pop(&it))
        check_and_free(it, 0);

    mp_stats s;
    CHECK_ERR(mp_stats_get(pool, &s), MP_OK);
    uint64_t allocs = atomic_load(&total_allocs), frees = atomic_load(&total_frees);
    CHECK_EQ_U(allocs, frees);
    CHECK_EQ_U(s.live_bytes, 0);
    CHECK_EQ_U(s.allocated_bytes, 0);
    CHECK_MSG(s.alloc_count - s.free_count == 0 && s.alloc_count >= allocs,
              "alloc_count %" PRIu64 ", free_count %" PRIu64 ", test allocs %" PRIu64,
              s.alloc_count, s.free_count, allocs);
    for (unsigned c = 0; c < s.class_count && c < MP_MAX_CLASSES; c++)
        CHECK_MSG(s.classes[c].live_blocks == 0, "class %u still has %" PRIu64 " live blocks",
                  c, s.classes[c].live_blocks);
    CHECK_EQ_U(s.error_total, 0);
    CHECK_EQ_U(mp_pool_check(pool), 0);
    size_t trimmed = mp_trim(pool);
    CHECK_EQ_U(mp_pool_check(pool), 0);
    printf("threads %d x %" PRIu64 " ops, decay %" PRId64 " ms: %" PRIu64 " blocks, %" PRIu64
           " passed between threads; %" PRIu64 " bytes given back meanwhile; thread caches %"
           PRIu64 "; trim gave %zu\n",
           nthreads, ops_per_thread, cfg.decay_ms, allocs, atomic_load(&total_passed),
           s.released_bytes, s.thread_cache_count, trimmed);
    mp_pool_destroy(pool);
    return test_report("test_threads");
}
