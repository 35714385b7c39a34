/*
 * debug.h - debug mode (debug.c): canaries, fill patterns, corruption
 * reports.  Internal to the core; the public part is in mempool.h.
 */
#ifndef MEMPOOL_DEBUG_H
#define MEMPOOL_DEBUG_H

#include "internal.h"

/* Fill patterns: fresh memory and freed memory look different. */
#define DEBUG_FRESH 0xAB
#define DEBUG_FREED 0xDF

int debug_init(mp_pool *pool);
void debug_destroy(mp_pool *pool);
void debug_reinit_lock(mp_pool *pool);
int debug_canary_check(mp_pool *pool, const char *ptr, uint64_t requested, uint64_t bytes,
                       int cls);
void debug_canary_set(char *ptr, uint64_t requested);
void debug_small_fresh(mp_pool *pool, mp_slab *slab, char *ptr, size_t size, int call);
int debug_small_freed(mp_pool *pool, mp_slab *slab, char *ptr, uint32_t requested);
void debug_slab_fill(mp_slab *slab);
void debug_large_fresh(char *ptr, size_t size, int call);
int debug_large_freed(mp_pool *pool, char *ptr, uint64_t requested, uint64_t bytes, int cls);
void debug_resized(mp_pool *pool, char *ptr, uint64_t old_req, uint64_t new_req,
                   uint64_t bytes, int cls);
size_t debug_check_pool(mp_pool *pool);

#endif /* MEMPOOL_DEBUG_H */
