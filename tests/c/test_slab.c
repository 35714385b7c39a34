/*
 * test_slab.c - slab.c: a class's slabs grow from a small first one, each
 * next one twice the one before, up to the class's full length, in plain
 * and debug pools.
 */
#define _GNU_SOURCE /* getrusage, sysconf, nanosleep under -std=c11 */
#include "pool_helpers.h"

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

int main(void)
{
    helpers_init();
    static const test_case tests[] = {
        {"slab_growth", test_slab_growth},
    };
    return TEST_RUN("test_slab", tests);
}
