/*
 * test_fork.c - fork() while another thread is inside the pool.
 *
 *   test_fork [ROUNDS [mesh]]   (default 20; mesh: the pool meshes, and
 *                               every fork comes after an mp_trim that meshed)
 *
 * The header promises that fork() leaves the child with a working pool.  A
 * helper thread allocates and frees without pause; the main thread forks
 * while it does, so the fork often lands while the helper holds a pool lock.
 * Each child verifies the blocks the parent made, frees some, allocates and
 * frees many more (also from a new thread of its own), runs mp_pool_check,
 * and exits 0 only if all held.  A child that hangs (a lock left held across
 * fork) is killed after 30 s and counted as a failure.
 *
 * test_fork_meshed: slab memory of a meshing pool is MAP_SHARED; the child
 * must still get its own copy: its writes stay in it, the parent's arrays
 * are unchanged, and the parent's writes after fork do not reach it.
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

#define MESH_BLOCKS 20000

/* Block i's expected first word in the parent (who = 1) or the child (2),
 * generation g. */
static uint64_t mesh_word(size_t i, int who, int g) { return (uint64_t)i * 1000003u + who * 10 + g; }

/* Whether every survivor's words read as `who`/`g` would have written. */
static size_t mesh_wrong(uint64_t **blocks, int who, int g)
{
    size_t wrong = 0;
    for (size_t i = 0; i < MESH_BLOCKS; i++)
        if (blocks[i])
            for (int k = 0; k < 16; k++)
                wrong += blocks[i][k] != mesh_word(i, who, g) + (uint64_t)k;
    return wrong;
}

/* Write who/g into every survivor. */
static void mesh_write(uint64_t **blocks, int who, int g)
{
    for (size_t i = 0; i < MESH_BLOCKS; i++)
        if (blocks[i])
            for (int k = 0; k < 16; k++)
                blocks[i][k] = mesh_word(i, who, g) + (uint64_t)k;
}

/* Fork with meshed slabs: both sides keep their own memory. */
static void test_fork_meshed(void)
{
    mp_config c;
    mp_config_default(&c);
    c.mesh = 1;
    mp_pool *p = NULL;
    CHECK_ERR(mp_pool_create(&c, &p), MP_OK);
    static uint64_t *blocks[MESH_BLOCKS];
    for (size_t i = 0; i < MESH_BLOCKS; i++)
        blocks[i] = mp_alloc(p, 128 + (i % 3) * 64);
    for (size_t i = 0; i < MESH_BLOCKS; i++)
        if (i % 10 != 3) {
            mp_free(p, blocks[i], 0);
            blocks[i] = NULL;
        }
    mesh_write(blocks, 1, 0);
    mp_trim(p);
    mp_stats st;
    mp_stats_get(p, &st);
    CHECK_MSG(st.mesh_pages > 0, "the pool meshed before fork (%" PRIu64 " pages)", st.mesh_pages);
    int to_child[2], to_parent[2];
    CHECK(pipe(to_child) == 0 && pipe(to_parent) == 0);
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        char token = 0;
        int bad = mesh_wrong(blocks, 1, 0) != 0; /* the parent's content came along */
        mesh_write(blocks, 2, 0);
        bad |= (write(to_parent[1], "w", 1) != 1) << 1;
        bad |= (read(to_child[0], &token, 1) != 1) << 2; /* the parent wrote meanwhile */
        bad |= (mesh_wrong(blocks, 2, 0) != 0) << 3;
        void *q = mp_alloc(p, 200);
        bad |= (q == NULL || mp_free(p, q, 200) != MP_OK) << 4;
        mp_trim(p); /* meshing in the child works on its copy */
        bad |= (mesh_wrong(blocks, 2, 0) != 0) << 5;
        bad |= (mp_pool_check(p) != 0) << 6;
        _exit(bad);
    }
    char token = 0;
    CHECK(pid > 0 && read(to_parent[0], &token, 1) == 1); /* the child wrote */
    CHECK_EQ_U(mesh_wrong(blocks, 1, 0), 0);
    mesh_write(blocks, 1, 1);
    CHECK(write(to_child[1], "p", 1) == 1);
    int status = 0;
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "meshed child status %#x", status);
    CHECK_EQ_U(mesh_wrong(blocks, 1, 1), 0);
    for (size_t i = 0; i < MESH_BLOCKS; i++)
        if (blocks[i])
            mp_free(p, blocks[i], 0);
    CHECK_EQ_U(mp_pool_check(p), 0);
    mp_pool_destroy(p);
    for (int i = 0; i < 2; i++) {
        close(to_child[i]);
        close(to_parent[i]);
    }
}

int main(int argc, char **argv)
{
    int rounds = argc > 1 ? atoi(argv[1]) : 20;
    int mesh = argc > 2 && strcmp(argv[2], "mesh") == 0;
    test_fork_meshed();
#if defined(__SANITIZE_THREAD__)
    /* TSan's deadlock detector holds at most 64 locks per thread; the fork
     * handlers hold ~50 per pool. */
    printf("(TSan: several pools across fork not run)\n");
#else
    test_fork_with_several_pools();
#endif
    mp_config config;
    mp_config_default(&config);
    config.mesh = mesh;
    CHECK_ERR(mp_pool_create(&config, &pool), MP_OK);
    if (!pool)
        return test_report("test_fork");
    for (int i = 0; i < NPARENT; i++) {
        parent_sizes[i] = i % 4 == 3 ? 3 * MiB + (size_t)i : 100 * (size_t)i;
        parent_blocks[i] = mp_alloc(pool, parent_sizes[i]);
        if (!CHECK(parent_blocks[i] != NULL))
            return test_report("test_fork");
        test_block_fill(parent_blocks[i], 500 + i, parent_sizes[i]);
    }
    static uint64_t *scatter[MESH_BLOCKS]; /* mesh: survivors to mesh */
    for (size_t i = 0; mesh && i < MESH_BLOCKS; i++)
        scatter[i] = mp_alloc(pool, 128 + (i % 3) * 64);
    for (size_t i = 0; mesh && i < MESH_BLOCKS; i++)
        if (i % 10 != 3) {
            mp_free(pool, scatter[i], 0);
            scatter[i] = NULL;
        }
    if (mesh)
        mesh_write(scatter, 1, 0);
    pthread_t th;
    if (!CHECK(pthread_create(&th, NULL, helper, NULL) == 0))
        return test_report("test_fork");
    int hung = 0;
    for (int round = 0; round < rounds && !hung; round++) {
        uint64_t seen = atomic_load(&helper_ops);
        while (atomic_load(&helper_ops) < seen + 200) /* the helper is busy now */
            sleep_ms(1);
        if (mesh)
            mp_trim(pool); /* meshes what the helper's holes allow */
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
    if (mesh) {
        CHECK_EQ_U(mesh_wrong(scatter, 1, 0), 0);
        for (size_t i = 0; i < MESH_BLOCKS; i++)
            if (scatter[i])
                mp_free(pool, scatter[i], 0);
    }
    mp_stats s;
    CHECK_ERR(mp_stats_get(pool, &s), MP_OK);
    CHECK_EQ_U(s.live_bytes, 0);
    CHECK_EQ_U(mp_pool_check(pool), 0);
    printf("fork: %d rounds while the helper ran %" PRIu64 " ops; %" PRIu64 " pages meshed\n",
           rounds, atomic_load(&helper_ops), s.mesh_pages_total);
    mp_pool_destroy(pool);
    return test_report("test_fork");
}
