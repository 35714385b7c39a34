/*
 * pair_count.c - a fixed number of mp_alloc+mp_free pairs, for instruction
 * counting under callgrind (deterministic where timings on a shared machine
 * are not).
 *
 *   pair_count SIZE PAIRS [MODE]   MODE 0 (default): mp_alloc + mp_free with
 *                                  size 0 (unknown, as numpy's handler frees);
 *                                  1: mp_free with SIZE; 2: the NEP 49 entry
 *                                  points mp_handler_malloc/mp_handler_free
 *
 * benches/c/count_pairs.sh runs it twice (PAIRS and 2*PAIRS) and prints the
 * difference per pair, which cancels start-up and warm-up.
 */
#include "mempool.h"

#include <stdio.h>
#include <stdlib.h>

/* The binding's full functions, as a binding would have them. */
static void *full_malloc(void *ctx, size_t size) { return mp_alloc(*(mp_pool **)ctx, size); }
static void full_free(void *ctx, void *ptr, size_t size) {
    (void)size;
    mp_free(*(mp_pool **)ctx, ptr, 0);
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: pair_count SIZE PAIRS [FREESIZE]\n");
        return 2;
    }
    size_t size = strtoull(argv[1], NULL, 10);
    long pairs = strtol(argv[2], NULL, 10);
    int mode = argc > 3 ? atoi(argv[3]) : 0;
    mp_pool *pool;
    if (mp_pool_create(NULL, &pool) != MP_OK)
        return 1;
    mp_handler_head head = {.pool = pool, .malloc_full = full_malloc, .free_full = full_free};
    for (long i = 0; i < pairs; i++) {
        if (mode == 2) {
            void *p = mp_handler_malloc(&head, size);
            if (p == NULL)
                return 1;
            mp_handler_free(&head, p, size);
            continue;
        }
        void *p = mp_alloc(pool, size);
        if (p == NULL || mp_free(pool, p, mode == 1 ? size : 0) != MP_OK)
            return 1;
    }
    mp_pool_destroy(pool);
    return 0;
}
