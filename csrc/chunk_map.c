/*
 * chunk_map.c - which region (arena or direct mapping) an address is in, and
 * the registry of live pools.
 *
 * The map is a two-level radix tree over the 48-bit address space in 2 MiB
 * chunks, shared by every pool: a lookup is two dependent loads and never
 * takes a lock, which is what lets mp_free reject a foreign pointer without
 * touching memory the pool does not own.  Leaves are created on demand and
 * never freed (they stay reachable from a static root, so leak checkers are
 * content).
 *
 * The registry lists live pools by a never-reused uid: thread caches and the
 * fork handlers use it to tell a live pool from a destroyed one.
 */
#include "internal.h"

#include <stdlib.h>

_Atomic(map_leaf *) map_root[1u << MAP_ROOT_BITS];
static pthread_mutex_t map_lock = PTHREAD_MUTEX_INITIALIZER;

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static mp_pool *reg_head;
static uint64_t reg_uid;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

/* Slot of the chunk holding `addr`, creating its leaf when `create`; NULL
 * for addresses outside the map or (when !create) not yet mapped. */
static _Atomic(mp_region *) *map_slot(uintptr_t addr, bool create) {
    if (addr >> MAP_ADDRESS_BITS)
        return NULL;
    uintptr_t chunk = addr >> MP_CHUNK_SHIFT;
    size_t root = chunk >> MAP_LEAF_BITS, leaf_idx = chunk & ((1u << MAP_LEAF_BITS) - 1);
    map_leaf *leaf = atomic_load_explicit(&map_root[root], memory_order_acquire);
    if (leaf == NULL) {
        if (!create)
            return NULL;
        leaf = calloc(1, sizeof(map_leaf));
        if (leaf == NULL)
            return NULL;
        atomic_store_explicit(&map_root[root], leaf, memory_order_release);
    }
    return &leaf->entries[leaf_idx];
}

/* Point every chunk of the region at it; -1 if a leaf could not be made
 * (the map is then unchanged). */
int map_insert(mp_region *region) {
    uintptr_t begin = (uintptr_t)region->base, end = begin + region->size;
    pthread_mutex_lock(&map_lock);
    for (uintptr_t a = begin; a < end; a += MP_CHUNK_SIZE) {
        if (map_slot(a, true) == NULL) {
            for (uintptr_t b = begin; b < a; b += MP_CHUNK_SIZE)
                atomic_store_explicit(map_slot(b, false), NULL, memory_order_release);
            pthread_mutex_unlock(&map_lock);
            return -1;
        }
    }
    for (uintptr_t a = begin; a < end; a += MP_CHUNK_SIZE)
        atomic_store_explicit(map_slot(a, false), region, memory_order_release);
    pthread_mutex_unlock(&map_lock);
    return 0;
}

/* Forget the region's chunks (before its memory is unmapped). */
void map_remove(mp_region *region) {
    uintptr_t begin = (uintptr_t)region->base, end = begin + region->size;
    pthread_mutex_lock(&map_lock);
    for (uintptr_t a = begin; a < end; a += MP_CHUNK_SIZE) {
        _Atomic(mp_region *) *slot = map_slot(a, false);
        if (slot)
            atomic_store_explicit(slot, NULL, memory_order_release);
    }
    pthread_mutex_unlock(&map_lock);
}

/* ---- registry and fork ------------------------------------------------ */

/* Before fork: take every lock in the documented order, so the child starts
 * with no lock held by a thread that does not exist there. */
static void atfork_prepare(void) {
    pthread_mutex_lock(&reg_lock);
    for (mp_pool *p = reg_head; p; p = p->reg_next)
        pool_lock_all(p);
    pthread_mutex_lock(&map_lock);
}

/* After fork, in the parent: release what prepare took. */
static void atfork_parent(void) {
    pthread_mutex_unlock(&map_lock);
    for (mp_pool *p = reg_head; p; p = p->reg_next)
        pool_unlock_all(p);
    pthread_mutex_unlock(&reg_lock);
}

/* After fork, in the child: fresh locks, and the blocks cached by threads
 * that did not survive the fork go back to their slabs. */
static void atfork_child(void) {
    pthread_mutex_init(&map_lock, NULL);
    pthread_mutex_init(&reg_lock, NULL);
    for (mp_pool *p = reg_head; p; p = p->reg_next)
        pool_reinit_locks(p);
    for (mp_pool *p = reg_head; p; p = p->reg_next)
        tc_reclaim_foreign(p);
}

/* Install the fork handlers once per process. */
static void atfork_install(void) {
    pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
}

/* Make a pool known: it gets a fresh uid and fork protection. */
void registry_add(mp_pool *pool) {
    pthread_once(&atfork_once, atfork_install);
    pthread_mutex_lock(&reg_lock);
    pool->uid = ++reg_uid;
    pool->reg_prev = NULL;
    pool->reg_next = reg_head;
    if (reg_head)
        reg_head->reg_prev = pool;
    reg_head = pool;
    pthread_mutex_unlock(&reg_lock);
}

/* Forget a pool; afterwards no thread cache will flush into it. */
void registry_remove(mp_pool *pool) {
    pthread_mutex_lock(&reg_lock);
    if (pool->reg_prev)
        pool->reg_prev->reg_next = pool->reg_next;
    else
        reg_head = pool->reg_next;
    if (pool->reg_next)
        pool->reg_next->reg_prev = pool->reg_prev;
    pthread_mutex_unlock(&reg_lock);
}

/* The registry's lock, for callers that must keep a pool alive while they
 * use it from outside (thread exit, cache eviction). */
pthread_mutex_t *registry_lock(void) { return &reg_lock; }

/* The live pool with this uid, or NULL; caller holds registry_lock(). */
mp_pool *registry_find(uint64_t uid) {
    for (mp_pool *p = reg_head; p; p = p->reg_next)
        if (p->uid == uid)
            return p;
    return NULL;
}
