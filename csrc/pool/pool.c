/*
 * pool.c - a pool's lifetime: creation and destruction, its error counters
 * and large-block accounting, and the fork protocol.  The allocation paths
 * are the front layer's (front/); the purger is purge.c; the settings
 * config.c.
 */
#include "pool.h"

#include <stdlib.h>
#include <string.h>

static MP_TLS int tls_last_error;

int mp_last_error(void) { return tls_last_error; }

/* Count an error against the pool and remember it for mp_last_error. */
MP_COLD int pool_error(const mp_pool *pool, int code) {
    if (pool && code < 0 && -code < MP_ERROR_COUNT)
        atomic_fetch_add_explicit(&((mp_pool *)pool)->errors[-code], 1, memory_order_relaxed);
    tls_last_error = code;
    return code;
}

/* ---- locks and fork ------------------------------------------------------ */

/* Take every lock of the pool in rank order (fork prepare, the checker). */
void pool_lock_all(mp_pool *pool) {
    slab_lock_all(&pool->small);
    mutex_lock(&pool->lock);
}

/* Release what pool_lock_all took. */
void pool_unlock_all(mp_pool *pool) {
    mutex_unlock(&pool->lock);
    slab_unlock_all(&pool->small);
}

/* The pool a registered small-block state belongs to. */
static mp_pool *pool_of(mp_small *s) { return MP_CONTAINER(s, mp_pool, small); }

/* Before fork: take every lock in rank order (registry, each pool's class
 * locks and lock, the map), so the child starts with no lock held by a
 * thread that does not exist there. */
static void atfork_prepare(void) {
    registry_lock();
    mutex_forking(true); /* ranks: every pool's class locks after another's pool lock */
    for (mp_small *s = registry_next(NULL); s; s = registry_next(s))
        pool_lock_all(pool_of(s));
    for (mp_small *s = registry_next(NULL); s; s = registry_next(s))
        mesh_prefork(s); /* shared slab memory: the child gets copies */
    map_prefork();
}

/* After fork, in the parent: release what prepare took. */
static void atfork_parent(void) {
    map_postfork_parent();
    for (mp_small *s = registry_next(NULL); s; s = registry_next(s))
        mesh_postfork(s, false);
    for (mp_small *s = registry_next(NULL); s; s = registry_next(s))
        pool_unlock_all(pool_of(s));
    mutex_forking(false);
    registry_unlock();
}

/* After fork, in the child: every lock made anew, no purger thread (it did
 * not survive), and the blocks cached by threads that did not survive the
 * fork go back to their slabs (tc_reclaim_foreign). */
static void atfork_child(void) {
    map_postfork_child();
    registry_reinit();
    barrier_postfork_child();
    mutex_forget_all();
    for (mp_small *s = registry_next(NULL); s; s = registry_next(s)) {
        mp_pool *pool = pool_of(s);
        mesh_postfork(s, true);
        slab_reinit_locks(s);
        mutex_init(&pool->lock, MP_RANK_POOL, 0);
        purge_reinit(pool);
        debug_reinit_lock(pool);
    }
    for (mp_small *s = registry_next(NULL); s; s = registry_next(s))
        tc_reclaim_foreign(s);
}

static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

/* Install the fork handlers once per process. */
static void atfork_install(void) { pthread_atfork(atfork_prepare, atfork_parent, atfork_child); }

/* ---- large-block accounting --------------------------------------------- */

/* The heap serving a request of `size` bytes. */
mp_heap *pool_heap_for(mp_pool *pool, size_t size) {
    if (pool->use_huge_heap && size >= pool->config.huge_min)
        return &pool->heaps[MP_HEAP_HUGE];
    return &pool->heaps[MP_HEAP_PAGES];
}

/* Count a large block of `kind` (LARGE_SPAN, LARGE_DIRECT) turning live
 * (deltas > 0), not live (< 0), or resized (CALL_INTERNAL: bytes only).
 * Lock held. */
void pool_account_large(mp_pool *pool, int64_t requested, int64_t rounded, int call, int kind) {
    mp_large_counters *large = &pool->large;
    large->live_bytes += requested;
    large->allocated_bytes += rounded;
    if (call == CALL_INTERNAL)
        return;
    if (requested > 0 || rounded > 0) {
        if (kind == LARGE_DIRECT)
            large->direct_allocs++;
        else
            large->large_allocs++;
        large->callocs += call == CALL_CALLOC;
    } else {
        large->frees++;
    }
}

/* ---- lifetime --------------------------------------------------------------- */

int mp_pool_create(const mp_config *config, mp_pool **out) {
    if (out == NULL)
        return pool_error(NULL, MP_EINVAL);
    mp_config c;
    if (config)
        c = *config;
    else
        mp_config_default(&c);
    int rc = mp_config_check(&c); /* mp_config_error() says why */
    if (rc != MP_OK)
        return pool_error(NULL, rc);
    config_normalise(&c);
    mp_pool *pool = calloc(1, sizeof *pool);
    if (pool == NULL)
        return pool_error(NULL, MP_ENOMEM);
    pool->config = c;
    pool->acct.capacity = c.capacity;
    pool->acct.resident_limit = c.resident_limit;
    if (debug_init(pool) != MP_OK) {
        free(pool);
        return pool_error(NULL, MP_ENOMEM);
    }
    /* A 2 MiB-granule heap only when huge_min asks for one; under a tight
     * capacity one heap serves every large block: a second heap's arena
     * would take address space the first one may need. */
    pool->use_huge_heap = c.huge_min != 0 && c.huge_pages != MP_HUGE_OFF &&
                          (c.capacity == 0 || c.capacity / 4 >= c.arena_bytes);
    mutex_init(&pool->lock, MP_RANK_POOL, 0);
    purge_init(pool); /* installs acct.on_dirty: the purger acts on reports */
    heap_init(&pool->heaps[MP_HEAP_PAGES], pool, &pool->acct, &pool->graves, MP_PAGE_SHIFT,
              c.huge_pages == MP_HUGE_ON, c.arena_bytes, c.retain_arenas);
    heap_init(&pool->heaps[MP_HEAP_HUGE], pool, &pool->acct, &pool->graves, MP_HUGE_SHIFT,
              c.huge_pages != MP_HUGE_OFF, c.arena_bytes, c.retain_arenas);
    heap_init(&pool->heaps[MP_HEAP_MESH], pool, &pool->acct, &pool->graves, MP_PAGE_SHIFT, 0,
              c.arena_bytes, c.retain_arenas);
    pool->heaps[MP_HEAP_MESH].shared = true;
    pool->heaps[MP_HEAP_PAGES].lowest_first = true; /* see heap.c's lru_find */
    pool->heaps[MP_HEAP_MESH].lowest_first = true;
    /* huge_pages "auto": a large block's whole 2 MiB extents fault as huge
     * pages wherever it lies (arena_advise_extents). */
    pool->heaps[MP_HEAP_PAGES].huge_extents = c.huge_pages == MP_HUGE_AUTO;
    mp_small *s = &pool->small;
    s->acct = &pool->acct;
    s->mesh = c.mesh && !pool->config.debug; /* free blocks keep debug mode's fill */
    pool->config.mesh = s->mesh;
    s->pages = &pool->heaps[s->mesh ? MP_HEAP_MESH : MP_HEAP_PAGES];
    s->heap_lock = &pool->lock;
    s->debug = pool->config.debug;
    s->decay_ms = pool->config.decay_ms;
    slab_classes_init(s, pool->config.small_max);
    pool->small.fast_max = pool->config.debug ? 0 : pool_small_limit(pool);
    pool->acct.metadata += sizeof *pool; /* debug_init counted its ring */
    pthread_once(&atfork_once, atfork_install);
    registry_add(s);
    *out = pool;
    return MP_OK;
}

void mp_pool_destroy(mp_pool *pool) {
    if (pool == NULL)
        return;
    registry_remove(&pool->small); /* exiting threads no longer flush into it */
    purge_stop(pool);
    tc_release_all(&pool->small);
    buffer_table_destroy(pool);
    mesh_forget_all(&pool->small);
    slab_classes_destroy(&pool->small);
    for (int h = 0; h < MP_HEAP_COUNT; h++)
        heap_destroy(&pool->heaps[h]);
    mp_link *l;
    while ((l = pool->directs.head) != NULL) {
        mp_direct *d = LIST_ENTRY(l, mp_direct, link);
        list_remove(&pool->directs, l);
        map_remove(&d->region);
        os_release(&pool->acct.os, d->region.base, d->region.size);
        free(d);
    }
    mutex_destroy(&pool->lock);
    debug_destroy(pool);
    free(pool);
}
