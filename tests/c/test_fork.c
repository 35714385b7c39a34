/*
 * test_fork.c - fork() while another thread is inside the pool.
 *
 *   test_fork [ROUNDS]      (default 20)
 *
 * The header promises that fork() leaves the child with a working pool.  A
 * helper thread allocates and frees without pause; the main thread forks
 * while it does, so the fork often lands while the helper holds a pool lock.
 * Each child verifies the blocks the parent made, frees some, allocates and
 * frees many more (also from a new thread of its own), runs mp_pool_check,
 * and exits 0 only if all held.  A child that hangs (a lock left held across
 * fork) is killed after 30 s and counted as a failure.
 */
#define _GNU_SOURCE /* nanosleep, kill under -std=c11 */
#include "test.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)
#define NPARENT 40

static mp_pool *pool;
static atomic_int stop_helper;
static _Atomic uint64_t helper_ops;
static uint8_t *parent_blocks[NPARENT];
static size_t parent_sizes[NPARENT];

/* Sleep for ms milliseconds. */
static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* Allocate/verify/free random blocks; `ops` rounds over 32 slots. */
static void churn(uint64_t seed, uint64_t ops, _Atomic uint64_t *progress)
{
    test_rng rng;
    test_rng_seed(&rng, seed);
    struct { uint8_t *p; size_t size; uint64_t id; } held[32] = {{0}};
    for (uint64_t op = 0; op < ops; op++) {
        if (!progress && atomic_load_explicit(&stop_helper, memory_order_relaxed))
            break;
        int i = (int)(test_rng_next(&rng) % 32);
        if (held[i].p) {
            size_t bad = test_block_verify(held[i].p, held[i].id, held[i].size, held[i].size);
            CHECK_MSG(bad == SIZE_MAX, "churn: block of %zu corrupt at %zu", held[i].size, bad);
            CHECK_ERR(mp_free(pool, held[i].p, held[i].size), MP_OK);
            held[i].p = NULL;
        } else {
            uint64_t r = test_rng_next(&rng) % 100;
            size_t size = r < 80 ? (size_t)test_rng_range(&rng, 0, 2048)
                          : r < 97 ? (size_t)test_rng_range(&rng, 2049, 256 * KiB)
                                   : (size_t)test_rng_range(&rng, 256 * KiB, 8 * MiB);
            held[i].p = mp_alloc(pool, size);
            if (!CHECK_MSG(held[i].p != NULL, "churn: mp_alloc(%zu): %s", size,
                           mp_error_name(mp_last_error())))
                continue;
            held[i].size = size;
            held[i].id = seed * 1000003 + op;
            test_block_fill(held[i].p, held[i].id, size);
        }
        if (progress)
            atomic_fetch_add_explicit(progress, 1, memory_order_relaxed);
    }
    for (int i = 0; i < 32; i++)
        if (held[i].p)
            CHECK_ERR(mp_free(pool, held[i].p, held[i].size), MP_OK);
}

/* The helper thread: churns until told to stop. */
static void *helper(void *arg)
{
    (void)arg;
    while (!atomic_load(&stop_helper))
        churn(77 + atomic_load(&helper_ops), 1000, &helper_ops);
    return NULL;
}

#if !defined(__SANITIZE_THREAD__) /* TSan cannot start threads after a threaded fork */
/* A thread inside the child, proving the child can still start threads
 * that use the pool. */
static void *child_thread(void *arg)
{
    churn((uint64_t)(uintptr_t)arg, 3000, NULL);
    return NULL;
}
#endif

/* Everything the child does; returns its exit status. */
static int child_main(int round)
{
    unsigned long failures_before = test_failures;
    for (int i = 0; i < NPARENT; i++) { /* the parent's blocks came along */
        size_t bad = test_block_verify(parent_blocks[i], 500 + i, parent_sizes[i],
                                       parent_sizes[i]);
        CHECK_MSG(bad == SIZE_MAX, "child: parent block %d corrupt at %zu", i, bad);
        CHECK(mp_owns(pool, parent_blocks[i]) == 1);
    }
    for (int i = 0; i < NPARENT; i += 2) /* free half of them here */
        CHECK_ERR(mp_free(pool, parent_blocks[i], parent_sizes[i]), MP_OK);
    churn(9000 + (uint64_t)round, 5000, NULL);
#if !defined(__SANITIZE_THREAD__) /* TSan cannot start threads after a threaded fork */
    pthread_t t;
    if (CHECK(pthread_create(&t, NULL, child_thread, (void *)(uintptr_t)(round + 1)) == 0))
        pthread_join(t, NULL);
#endif
    size_t bad = mp_pool_check(pool);
    CHECK_MSG(bad == 0, "child: mp_pool_check found %zu violations", bad);
    mp_stats s;
    CHECK_ERR(mp_stats_get(pool, &s), MP_OK);
    uint64_t parent_live = 0;
    for (int i = 1; i < NPARENT; i += 2)
        parent_live += parent_sizes[i];
    CHECK_MSG(s.live_bytes >= parent_live, "child: live_bytes %" PRIu64 " < %" PRIu64
              " still held from the parent", s.live_bytes, parent_live);
    return test_failures == failures_before ? 0 : 1;
}

/* Several live pools across fork: the handlers hold every lock of every
 * pool at once (checked builds check lock ranks everywhere else), and the
 * child allocates from each. */
static __attribute__((unused)) void test_fork_with_several_pools(void)
{
    mp_pool *pools[3] = {NULL, NULL, NULL};
    void *kept[3];
    for (int i = 0; i < 3; i++) {
        CHECK_ERR(mp_pool_create(NULL, &pools[i]), MP_OK);
        kept[i] = pools[i] ? mp_alloc(pools[i], 1000 + (size_t)i) : NULL;
        CHECK(kept[i] != NULL);
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        int bad = 0;
        for (int i = 0; i < 3; i++) {
            void *p = mp_alloc(pools[i], 5000);
            bad |= p == NULL || mp_free(pools[i], p, 5000) != MP_OK ||
                   mp_free(pools[i], kept[i], 1000 + (size_t)i) != MP_OK ||
                   mp_pool_check(pools[i]) != 0;
        }
        _exit(bad);
    }
    int status = 0;
    CHECK(pid > 0 && waitpid(pid, &status, 0) == pid);
    CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %d", status);
    for (int i = 0; i < 3; i++) {
        CHECK_ERR(mp_free(pools[i], kept[i], 1000 + (size_t)i), MP_OK);
        CHECK_EQ_U(mp_pool_check(pools[i]), 0);
        mp_pool_destroy(pools[i]);
    }
}

int main(int argc, char **argv)
{
    int rounds = argc > 1 ? atoi(argv[1]) : 20;
#if defined(__SANITIZE_THREAD__)
    /* TSan's deadlock detector holds at most 64 locks per thread; the fork
     * handlers hold ~50 per pool. */
    printf("(TSan: several pools across fork not run)\n");
#else
    test_fork_with_several_pools();
#endif
    CHECK_ERR(mp_pool_create(NULL, &pool), MP_OK);
    if (!pool)
        return test_report("test_fork");
    for (int i = 0; i < NPARENT; i++) {
        parent_sizes[i] = i % 4 == 3 ? 3 * MiB + (size_t)i : 100 * (size_t)i;
        parent_blocks[i] = mp_alloc(pool, parent_sizes[i]);
        if (!CHECK(parent_blocks[i] != NULL))
            return test_report("test_fork");
        test_block_fill(parent_blocks[i], 500 + i, parent_sizes[i]);
    }
    pthread_t th;
    if (!CHECK(pthread_create(&th, NULL, helper, NULL) == 0))
        return test_report("test_fork");
    int hung = 0;
    for (int round = 0; round < rounds && !hung; round++) {
        uint64_t seen = atomic_load(&helper_ops);
        while (atomic_load(&helper_ops) < seen + 200) /* the helper is busy now */
            sleep_ms(1);
        fflush(NULL);
        pid_t pid = fork();
        if (pid == 0)
            _exit(child_main(round));
        if (!CHECK_MSG(pid > 0, "fork failed"))
            break;
        int status = 0, waited = 0;
        for (int ms = 0; ms < 30000; ms += 10) {
            pid_t r = waitpid(pid, &status, WNOHANG);
            if (r == pid) {
                waited = 1;
                break;
            }
            sleep_ms(10);
        }
        if (!waited) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            FAIL("round %d: child hung for 30 s (a lock held across fork?)", round);
            hung = 1;
            continue;
        }
        if (WIFSIGNALED(status))
            FAIL("round %d: child killed by signal %d", round, WTERMSIG(status));
        else
            CHECK_MSG(WEXITSTATUS(status) == 0, "round %d: child exited %d", round,
                      WEXITSTATUS(status));
    }
    atomic_store(&stop_helper, 1);
    pthread_join(th, NULL);
    for (int i = 0; i < NPARENT; i++) {
        size_t bad = test_block_verify(parent_blocks[i], 500 + i, parent_sizes[i],
                                       parent_sizes[i]);
        CHECK_MSG(bad == SIZE_MAX, "parent block %d corrupt at %zu", i, bad);
        CHECK_ERR(mp_free(pool, parent_blocks[i], parent_sizes[i]), MP_OK);
    }
    mp_stats s;
    CHECK_ERR(mp_stats_get(pool, &s), MP_OK);
    CHECK_EQ_U(s.live_bytes, 0);
    CHECK_EQ_U(mp_pool_check(pool), 0);
    printf("fork: %d rounds while the helper ran %" PRIu64 " ops\n", rounds,
           atomic_load(&helper_ops));
    mp_pool_destroy(pool);
    return test_report("test_fork");
}
