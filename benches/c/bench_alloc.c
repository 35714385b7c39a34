/*
 * bench_alloc.c - ns per alloc+free pair: the pool vs whatever malloc is.
 *
 *   bench_alloc [SCALE [WORKLOAD [THREADS [pool|malloc]]]]
 *                           SCALE (default 1.0) multiplies the pair counts;
 *                           the others pick one run (benches/c/c2c.py)
 *
 * Workloads (each with 1 and 2 threads, each for "pool" = mp_alloc/mp_free
 * on one default-config pool, and "malloc" = malloc/free, which LD_PRELOAD
 * turns into jemalloc, mimalloc or tcmalloc):
 *   small   replace a random one of 256 live blocks, 16-256 B
 *   nep49   the same with 16-512 B through the NEP 49 entry points numpy
 *           calls (mp_handler_malloc / mp_handler_free, as the binding
 *           installs them; malloc/free for the peers)
 *   medium  replace a random one of 64 live blocks, 1-32 KiB
 *   large   alloc 1-64 MiB, write every page, free (numpy's temporaries)
 *   drift   a working set of 64 blocks (4-256 KiB) whose sizes grow 1% per
 *           round (70 rounds, then back), every page written
 * Each line printed is
 *   RESULT <workload> <threads> <pool|malloc> <ns per pair per thread> <faults per pair>
 * Each thread times itself and counts its own page faults (RUSAGE_THREAD)
 * over its timed part.  BENCH_CPU_TIME=1 in the environment times each
 * thread's own CPU time instead of the monotonic clock: on a loaded machine
 * it leaves out the time the thread waited for a core (it still counts what
 * other processes did to the caches).
 * Warm-up runs before timing.  No assertions: benches/c/run_bench.sh
 * interleaves runs, takes medians and prints the comparison.
 */
#define _GNU_SOURCE /* clock_gettime, getrusage under -std=c11 */
#include "mempool.h"

#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)

enum { USE_MALLOC = 0, USE_POOL = 1, USE_HANDLER = 2 };

static mp_pool *g_pool;
static mp_handler_head g_head; /* the NEP 49 context, as a binding fills it */
static double g_scale = 1.0;

/* The binding's full functions behind the NEP 49 entry points. */
static void *full_malloc(void *ctx, size_t n) { return mp_alloc(((mp_handler_head *)ctx)->pool, n); }
static void full_free(void *ctx, void *p, size_t n)
{
    (void)n;
    mp_free(((mp_handler_head *)ctx)->pool, p, 0);
}

/* Allocate from the pool, its NEP 49 entry point or malloc (predictable
 * branches). */
static inline void *b_alloc(int use, size_t n)
{
    if (use == USE_HANDLER)
        return mp_handler_malloc(&g_head, n);
    return use == USE_POOL ? mp_alloc(g_pool, n) : malloc(n);
}

/* Free to the pool (with the size, as numpy does), its NEP 49 entry point
 * or free(). */
static inline void b_free(int use, void *p, size_t n)
{
    if (use == USE_HANDLER)
        mp_handler_free(&g_head, p, n);
    else if (use == USE_POOL)
        mp_free(g_pool, p, n);
    else
        free(p);
}

/* xorshift64*: the same stream for both allocators. */
static inline uint64_t rnd(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1Dull;
}

static clockid_t g_clock = CLOCK_MONOTONIC;

/* Nanoseconds on the monotonic clock (or of the thread's CPU time). */
static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(g_clock, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Minor + major page faults of the calling thread so far. */
static uint64_t faults(void)
{
    struct rusage ru;
    getrusage(RUSAGE_THREAD, &ru);
    return (uint64_t)ru.ru_minflt + (uint64_t)ru.ru_majflt;
}

/* Write one byte in every page, as a numpy temporary would. */
static inline void touch(void *p, size_t n)
{
    volatile uint8_t *b = p;
    for (size_t i = 0; i < n; i += 4096)
        b[i] = 1;
}

/* What one thread is told, and what it reports. */
typedef struct job {
    const char *workload;
    int use;
    unsigned tid;
    pthread_barrier_t *start, *warm;
    uint64_t pairs;  /* pairs done in the timed part */
    uint64_t t0, t1; /* the thread's own clock around its timed part */
    uint64_t f0, f1; /* the thread's own page faults around it */
} job;

/* Start the timed part: wait for every thread, then read clock and faults
 * here, in the worker (a main thread that reads them is often scheduled
 * late on a busy machine and misses part of the work). */
static void timed_begin(job *j)
{
    pthread_barrier_wait(j->warm);
    j->f0 = faults();
    j->t0 = now_ns();
}

/* End the timed part (then wait for the other threads). */
static void timed_end(job *j)
{
    j->t1 = now_ns();
    j->f1 = faults();
    pthread_barrier_wait(j->start);
}

/* Replace a random live block `pairs` times; sizes lo..hi from a table. */
static uint64_t run_replace(job *j, size_t nslots, size_t lo, size_t hi, uint64_t pairs)
{
    enum { NSIZES = 4096 };
    size_t *sizes = malloc(NSIZES * sizeof *sizes);
    void **slot = calloc(nslots, sizeof *slot);
    size_t *slot_size = calloc(nslots, sizeof *slot_size);
    uint64_t s = 12345 + j->tid;
    for (int i = 0; i < NSIZES; i++)
        sizes[i] = lo + rnd(&s) % (hi - lo + 1);
    for (size_t i = 0; i < nslots; i++) {
        slot_size[i] = sizes[i % NSIZES];
        slot[i] = b_alloc(j->use, slot_size[i]);
    }
    for (uint64_t k = 0; k < pairs / 10; k++) { /* warm-up */
        size_t i = rnd(&s) % nslots, n = sizes[k % NSIZES];
        b_free(j->use, slot[i], slot_size[i]);
        slot[i] = b_alloc(j->use, n);
        slot_size[i] = n;
        *(volatile char *)slot[i] = 1;
    }
    timed_begin(j);
    for (uint64_t k = 0; k < pairs; k++) {
        size_t i = rnd(&s) % nslots, n = sizes[k % NSIZES];
        b_free(j->use, slot[i], slot_size[i]);
        slot[i] = b_alloc(j->use, n);
        slot_size[i] = n;
        *(volatile char *)slot[i] = 1;
    }
    timed_end(j);
    for (size_t i = 0; i < nslots; i++)
        b_free(j->use, slot[i], slot_size[i]);
    free(sizes);
    free(slot);
    free(slot_size);
    return pairs;
}

/* Allocate, touch every page, free: a cycle of 16 sizes of 1-64 MiB. */
static uint64_t run_large(job *j, uint64_t pairs)
{
    size_t sizes[16];
    uint64_t s = 777 + j->tid;
    for (int i = 0; i < 16; i++)
        sizes[i] = 1 * MiB + rnd(&s) % (63 * MiB);
    for (int k = 0; k < 16; k++) { /* warm-up: every size of the cycle once */
        size_t n = sizes[(k * 7) % 16];
        void *p = b_alloc(j->use, n);
        touch(p, n);
        b_free(j->use, p, n);
    }
    timed_begin(j);
    for (uint64_t k = 0; k < pairs; k++) {
        size_t n = sizes[(k * 7) % 16];
        void *p = b_alloc(j->use, n);
        touch(p, n);
        b_free(j->use, p, n);
    }
    timed_end(j);
    return pairs;
}

/* 64 blocks whose sizes grow 1% a round for 70 rounds, then start over. */
static uint64_t run_drift(job *j, uint64_t rounds)
{
    enum { N = 64, CYCLE = 70 };
    size_t base[N], cur[N];
    void *p[N];
    uint64_t s = 4242 + j->tid;
    for (int i = 0; i < N; i++) {
        base[i] = 4 * KiB + rnd(&s) % (252 * KiB);
        cur[i] = base[i];
        p[i] = b_alloc(j->use, cur[i]);
        touch(p[i], cur[i]);
    }
    uint64_t pairs = 0;
    for (int phase = 0; phase < 2; phase++) { /* warm-up, then timed */
        uint64_t nr = phase == 0 ? CYCLE : rounds;
        if (phase == 1)
            timed_begin(j);
        for (uint64_t r = 0; r < nr; r++) {
            double grow = pow(1.01, (double)(r % CYCLE));
            for (int i = 0; i < N; i++) {
                b_free(j->use, p[i], cur[i]);
                cur[i] = (size_t)((double)base[i] * grow);
                p[i] = b_alloc(j->use, cur[i]);
                touch(p[i], cur[i]);
            }
            if (phase == 1)
                pairs += N;
        }
    }
    timed_end(j);
    for (int i = 0; i < N; i++)
        b_free(j->use, p[i], cur[i]);
    return pairs;
}

/* Thread body: run the job's workload. */
static void *worker(void *arg)
{
    job *j = arg;
    double sc = g_scale;
    if (strcmp(j->workload, "small") == 0)
        j->pairs = run_replace(j, 256, 16, 256, (uint64_t)(2000000 * sc));
    else if (strcmp(j->workload, "nep49") == 0)
        j->pairs = run_replace(j, 256, 16, 512, (uint64_t)(2000000 * sc));
    else if (strcmp(j->workload, "medium") == 0)
        j->pairs = run_replace(j, 64, 1 * KiB, 32 * KiB, (uint64_t)(400000 * sc));
    else if (strcmp(j->workload, "large") == 0)
        j->pairs = run_large(j, (uint64_t)(48 * sc) + 1);
    else
        j->pairs = run_drift(j, (uint64_t)(70 * sc) + 1);
    return NULL;
}

/* Run one workload on `nthreads` threads with one allocator; print RESULT:
 * the mean over threads of each thread's ns per pair, and page faults per
 * pair (all threads' faults over all threads' pairs). */
static void bench(const char *workload, int nthreads, int use)
{
    pthread_barrier_t warm, start;
    pthread_barrier_init(&warm, NULL, (unsigned)nthreads);
    pthread_barrier_init(&start, NULL, (unsigned)nthreads);
    pthread_t th[2];
    job jobs[2];
    for (int t = 0; t < nthreads; t++) {
        int how = use == USE_POOL && strcmp(workload, "nep49") == 0 ? USE_HANDLER : use;
        jobs[t] = (job){.workload = workload, .use = how, .tid = (unsigned)t,
                        .start = &start, .warm = &warm};
        pthread_create(&th[t], NULL, worker, &jobs[t]);
    }
    double ns = 0;
    uint64_t pairs = 0, nfaults = 0;
    for (int t = 0; t < nthreads; t++) {
        pthread_join(th[t], NULL);
        ns += (double)(jobs[t].t1 - jobs[t].t0) / (double)jobs[t].pairs / nthreads;
        pairs += jobs[t].pairs;
        nfaults += jobs[t].f1 - jobs[t].f0;
    }
    pthread_barrier_destroy(&warm);
    pthread_barrier_destroy(&start);
    printf("RESULT %s %d %s %.2f %.3f\n", workload, nthreads,
           use == USE_POOL ? "pool" : "malloc", ns, (double)nfaults / (double)pairs);
    fflush(stdout);
}

int main(int argc, char **argv)
{
    if (argc > 1)
        g_scale = atof(argv[1]);
    if (g_scale <= 0)
        g_scale = 1.0;
    const char *cpu = getenv("BENCH_CPU_TIME");
    if (cpu && strcmp(cpu, "1") == 0)
        g_clock = CLOCK_THREAD_CPUTIME_ID;
    if (mp_pool_create(NULL, &g_pool) != MP_OK) {
        fprintf(stderr, "bench_alloc: mp_pool_create failed\n");
        return 1;
    }
    g_head = (mp_handler_head){.pool = g_pool, .malloc_full = full_malloc, .free_full = full_free};
    const char *workloads[] = {"small", "nep49", "medium", "large", "drift"};
    const char *only = argc > 2 ? argv[2] : NULL;
    int only_nt = argc > 3 ? atoi(argv[3]) : 0;
    int only_use = argc > 4 ? strcmp(argv[4], "malloc") != 0 : -1;
    for (int w = 0; w < 5; w++)
        for (int nt = 1; nt <= 2; nt++)
            for (int use = 0; use < 2; use++) /* malloc first, then the pool */
                if ((!only || strcmp(only, workloads[w]) == 0) && (!only_nt || only_nt == nt) &&
                    (only_use < 0 || only_use == use))
                    bench(workloads[w], nt, use);
    mp_stats s;
    mp_stats_get(g_pool, &s);
    printf("POOL peak_resident_mib %.1f resident_mib %.1f mmap %" PRIu64 " madvise %" PRIu64
           " errors %" PRIu64 "\n",
           (double)s.peak_resident_bytes / MiB, (double)s.resident_bytes / MiB, s.mmap_count,
           s.madvise_count, s.error_total);
    mp_pool_destroy(g_pool);
    return 0;
}
