/*
 * small.h - the small-block layer: size classes (sc.c), slabs of one class
 * carved from the page heap (slab.c), per-thread caches of free blocks
 * (tc.c), the registry of live pools they key on (registry.c), and meshing
 * (mesh.c).
 *
 * The layer's state is an mp_small, embedded in its pool: the layer sees
 * the page heap, the lock that guards it and the pool's accounting, never
 * the pool.  Reports go up through mp_acct (resident, metadata, live bytes,
 * "dirty memory appeared" when blocks came back to slabs).
 */
#ifndef MEMPOOL_SMALL_H
#define MEMPOOL_SMALL_H

#include "../heap/heap.h"

#define MP_BLOCK_FREE UINT32_MAX         /* slab block state: not live */
#define MP_BLOCK_CACHED (UINT32_MAX - 1) /* transient mark, fork repair only */
#define MP_TLS_SLOTS 8                   /* pools a thread caches for at once */
/* A thread publishes its small-block live delta once it exceeds this, which
 * bounds how far peak_live_bytes can lag behind the truth. */
#define MP_PUBLISH_BYTES ((int64_t)64 << 10)

typedef struct mp_slab mp_slab;
typedef struct mp_tcache mp_tcache;

/* ---- size classes (sc.c) ----------------------------------------------- */
unsigned sc_count(size_t small_max);
/* Class serving `size` (0 is served by class 0); inline: every small
 * allocation computes it. */
static inline unsigned sc_of(size_t size) {
    if (size <= 512)
        return size == 0 ? 0 : (unsigned)((size - 1) >> 6);
    unsigned f = 63u - (unsigned)__builtin_clzll(size - 1); /* 9 for 513..1024 */
    return 8 + (f - 9) * 8 + (unsigned)(((size - 1) - ((size_t)1 << f)) >> (f - 3));
}
/* sc_of by table for 1..MP_SMALL_MAX_LIMIT bytes: the class of `size` is
 * sc_table[(size - 1) >> 6] (every class boundary is a multiple of 64), one
 * load where sc_of takes a dozen instructions above 512 bytes. */
extern const uint8_t sc_table[MP_SMALL_MAX_LIMIT >> 6];
static inline unsigned sc_of_small(size_t size) { return sc_table[(size - 1) >> 6]; }
size_t sc_block(unsigned cls);
uint32_t sc_slab_pages(size_t block_size);
uint32_t sc_slab_grow_pages(size_t block_size, size_t min_bytes);
uint32_t sc_mesh_slab_pages(size_t block_size);
uint32_t sc_magic(uint32_t block_size);

/* Block index of byte offset `off` in a slab; callers verify idx*bs == off. */
static inline uint32_t sc_index(uint64_t off, uint32_t magic) {
    return (uint32_t)((off * magic) >> 32);
}

/* ---- statistics counters ---------------------------------------------------- */
/* What a thread counts without a lock, in its cache (large and direct blocks
 * are the pool's to count, under its lock: pool.h's mp_large_counters). */
typedef struct mp_counters {
    /* calls: small callocs, and every successful realloc (any block: in
     * place, a small block's is lock-free) */
    mp_counter calloc_count, realloc_count;
    /* Small blocks, one counter each way on the fast paths: allocations and
     * frees per class, realloc's internal moves included (those are also in
     * small_internal_*, which the public counts subtract).  A class's live
     * blocks are allocs - frees (ctr_class_live). */
    mp_counter small_internal_allocs, small_internal_frees;
    mp_counter class_allocs[MP_MAX_CLASSES];
    mp_counter class_frees[MP_MAX_CLASSES];
    mp_counter class_live_bytes[MP_MAX_CLASSES];
} mp_counters;

/* Live blocks of class cls as `c` counts them. */
static inline int64_t ctr_class_live(const mp_counters *c, unsigned cls) {
    return ctr_get(&c->class_allocs[cls]) - ctr_get(&c->class_frees[cls]);
}

/* ---- slabs and classes ---------------------------------------------------- */
/* A slab's descriptor, its purged-page bitmap, its block states and its
 * free stack are one allocation of whole cache lines (slab.c), so no two
 * slabs share a line.  Inside it, what every free reads (the first line)
 * is apart from what the class lock's holders write (the second), and the
 * state words, which the threads allocating and freeing the slab's blocks
 * write, start a line of their own. */
struct mp_slab {
    /* Read by every free; written once, when the slab is made. */
    char *start;
    _Atomic uint32_t *state;  /* per block: MP_BLOCK_FREE or requested size */
    uint32_t block_size, magic;
    uint32_t nblocks;
    uint16_t cls;
    mp_span *span;
    uint16_t *free_stack;     /* indices of free blocks not in a thread cache */
    uint64_t *purged;         /* per page: given back while only free blocks
                                 of the stack covered it (class lock) */
    /* Written under the class lock (refill, return, purge, meshing). */
    _Alignas(MP_CACHE_LINE) uint32_t nfree; /* nfree = entries in free_stack */
    uint8_t in_partial;       /* in a partial list: its class's, or its owner's */
    uint8_t in_groups;        /* a meshed group's owner, in its class's groups */
    uint32_t purged_pages;
    mp_link link;             /* its class's partial (or owned) list */
    /* The thread cache that refills from this slab (NULL: any may).  An
     * owned slab with free blocks is also in its owner's list for its class
     * (own_link), so a thread takes its blocks from its own slabs and two
     * threads' blocks share no state line.  Stale once the owner's gen moved
     * past owner_gen (its thread went away). */
    mp_tcache *owner;
    uint32_t owner_gen;
    mp_link own_link;
    int64_t returned_ms;      /* last time blocks came back to the stack */
    /* Meshing (mesh.c): the slab whose file pages hold this one's blocks
     * (itself for a group's owner), NULL when not meshed; the owner links
     * the group's other members through mesh_next. */
    struct mp_slab *mesh_owner, *mesh_next;
};

/* Room for the slab lengths a class steps through: the first slab is at
 * least a page and 2 blocks, the longest at most 32 times that (64 KiB or
 * 8 blocks, up to twice that), and each length at least doubles the one
 * before, so a class has at most 6. */
#define MP_SLAB_STEPS 8

typedef struct mp_class {
    mp_mutex lock;
    uint32_t block_size, magic, tcache_cap;
    /* The k-th slab the class holds at once (counting from 0) takes
     * slab_pages[min(k, slab_steps - 1)] pages: the first is small, each
     * next one twice the one before, up to sc_slab_pages.  Counting the
     * slabs held now (not ever made) makes a class that gave its slabs
     * back start small again. */
    uint32_t slab_steps;
    uint32_t slab_pages[MP_SLAB_STEPS];
    mp_list partial;  /* slabs with nfree > 0 no live thread cache owns (not meshed) */
    mp_list owned;    /* slabs with nfree > 0 a thread cache owns: each is
                         also in its owner's `owned` list for the class */
    mp_list groups;   /* owners of meshed groups (mesh.c): not allocated from */
    mp_slab *spare;   /* one empty slab kept so a loop does not thrash */
    mp_counter slabs, blocks; /* written under the class lock, read by stats */
} mp_class;

/* ---- thread caches ---------------------------------------------------------- */
typedef struct mp_tcache_entry {
    char *ptr;
    /* &slab->state[index of ptr]: an allocation marks the block live with
     * one store, without going through the slab (the slab itself, needed
     * only when the block goes back, is slab_at(owner, ptr)) */
    _Atomic uint32_t *state;
} mp_tcache_entry;

/* A stack of cached blocks as pointers, so a push or pop is one compare
 * and one pointer bump (no index to scale). */
typedef struct mp_tcache_bin {
    mp_tcache_entry *top;     /* one past the newest entry; == entries: empty */
    mp_tcache_entry *entries; /* the oldest entry */
    mp_tcache_entry *end;     /* entries + cap; top == end: full */
    uint32_t cap;
} mp_tcache_bin;

/* Blocks a bin holds. */
static inline uint32_t tc_bin_count(const mp_tcache_bin *bin) {
    return (uint32_t)(bin->top - bin->entries);
}

/* One allocation of whole cache lines (tc_create): no other thread's data
 * shares a line with it. */
struct mp_tcache {
    struct mp_small *small;
    pthread_t owner;
    mp_link link;           /* the pool's list of caches in use, or of parked ones */
    int64_t unpublished;    /* live delta not yet in acct->live */
    /* Moved on by 2 when the cache is parked (partial_disown; odd while it
     * gives its slabs up): the slabs it owned are anyone's from then on
     * (read under class locks). */
    _Atomic uint32_t gen;
    mp_counters counters;
    /* 16-aligned (the cache is cache-line aligned, so it holds): at 8 mod
     * 16, where the counters' size leaves them, gcc spends a register move
     * on mp_alloc's fast path (a code-generation effect: make count-c) */
    _Alignas(16) mp_tcache_bin bins[MP_MAX_CLASSES];
    /* Per class, the partial slabs this cache owns (class lock). */
    mp_list owned[MP_MAX_CLASSES];
};

/* ---- the layer's state -------------------------------------------------------- */
typedef struct mp_small {
    /* The two reads every mp_alloc/mp_free makes, first: the pool embeds
     * this state at its start, so &pool->small is the pool's own address. */
    uint64_t uid;        /* never reused: lets threads detect a destroyed pool */
    /* uid, or in debug mode a value no cache slot holds: the fast free
     * path's one compare both finds this thread's cache and keeps debug
     * mode's frees (canary checks) on the full path */
    uint64_t fast_uid;
    /* Largest request the inlined fast paths of mp_alloc/mp_free take: the
     * slab limit, or 0 in debug mode (canaries take the full path). */
    size_t fast_max;
    mp_acct *acct;       /* the pool's figures */
    mp_heap *pages;      /* the page heap slabs are carved from */
    mp_mutex *heap_lock; /* the lock that guards `pages` and `acct` (the pool lock) */
    unsigned class_count;
    bool debug;          /* debug mode: slabs filled with MP_FILL_FREED, never purged */
    _Atomic int64_t decay_ms; /* free slab pages go back this long after blocks came
                                 back (changed on a live pool by mp_pool_set) */
    mp_link reg_link;    /* the registry of live pools (registry.c) */
    mp_list tcaches, tcache_free; /* caches in use; parked for the next thread */
    uint64_t tcache_count;
    /* the counts no live cache holds (heap_lock held): those of caches that
     * went away, and of calls whose thread could get no cache */
    mp_counters uncached;
    /* when slabs first got free blocks back since the last slab sweep (0:
     * none): the purger gives their whole free pages back a decay later */
    _Atomic int64_t slab_sweep_due_ms;
    /* Meshing (mesh.c): slabs come from a heap of memfd-backed arenas and
     * the purger and mp_trim mesh their pages.  Figures are atomics: meshing
     * runs under one class lock at a time, from any thread. */
    bool mesh;
    _Atomic int64_t mesh_pages;      /* pages of slabs mapped onto another's now */
    _Atomic uint64_t mesh_pages_total, mesh_calls, mesh_pause_max_ns;
    _Atomic int64_t mesh_last_ms;    /* when the purger last meshed */
    mp_class classes[MP_MAX_CLASSES];
} mp_small;

/* ---- slab.c ------------------------------------------------------------------ */
void slab_classes_init(mp_small *s, size_t small_max);
void slab_classes_destroy(mp_small *s);
uint32_t slab_refill(mp_small *s, mp_tcache *tc, unsigned cls, mp_tcache_entry *out,
                     uint32_t want);
void slab_return(mp_small *s, unsigned cls, const mp_tcache_entry *blocks, uint32_t n);
void slab_drop_spares(mp_small *s);
size_t slab_purge_free_pages(mp_small *s, int64_t now_ms, int64_t decay_ms,
                             int64_t *next_due_ms);
void slab_repair_after_fork(mp_small *s);
size_t slab_check(const mp_small *s, const mp_slab *slab, mp_check_log *log,
                  uint64_t *live_blocks, uint64_t *live_bytes, uint64_t *cached);
void slab_lock_all(mp_small *s);
void slab_release_empty(mp_small *s, mp_slab *slab);
uint32_t slab_occupancy(const mp_slab *slab, uint64_t *bits);
void slab_unlock_all(mp_small *s);
void slab_reinit_locks(mp_small *s);

/* ---- partial.c --------------------------------------------------------------- */
enum { LISTED_NONE, LISTED_PARTIAL, LISTED_OWNED }; /* mp_slab.in_partial */
mp_tcache *partial_owner(const mp_slab *slab);
void partial_push(mp_class *c, mp_slab *slab);
void partial_remove(mp_class *c, mp_slab *slab);
void partial_claim(mp_small *s, mp_slab *slab, mp_tcache *tc);
bool partial_owner_lost(const mp_slab *slab);
void partial_disown(mp_small *s, mp_tcache *tc);

/* ---- mesh.c ------------------------------------------------------------------ */
size_t mesh_run(mp_small *s, size_t max_pages);
bool mesh_member_empty(mp_small *s, mp_slab *slab);
void mesh_forget_all(mp_small *s);
size_t mesh_check(const mp_small *s, unsigned cls, mp_check_log *log);
int mesh_prefork(mp_small *s);
void mesh_postfork(mp_small *s, bool child);

/* The slab of `owner` (its page heap's owner identity) on ptr's page, or
 * NULL (not a slab page, or another owner's): the address map's page
 * table, two dependent loads (map.h). */
static inline mp_slab *slab_at(const void *owner, const void *ptr) {
    return (mp_slab *)map_page_tag(ptr, owner);
}

/* The live block of `slab` that starts at ptr: its index and state (the
 * requested size), or why not (an interior pointer, a free block, a size
 * that is not the one the block was asked with; size 0 checks none).  By
 * arithmetic only: a multiply by the class's reciprocal, an exactness test,
 * one state load. */
MP_INLINE int slab_locate(const mp_slab *slab, const void *ptr, size_t size, uint32_t *idx_out,
                          uint32_t *state_out) {
    uint64_t off = (uint64_t)((const char *)ptr - slab->start);
    uint32_t idx = sc_index(off, slab->magic);
    if ((uint64_t)idx * slab->block_size != off || idx >= slab->nblocks)
        return MP_EINTERIOR;
    uint32_t state = atomic_load_explicit(&slab->state[idx], memory_order_relaxed);
    if (state == MP_BLOCK_FREE)
        return MP_EDOUBLEFREE;
    if (size && size != state)
        return MP_ESIZE;
    *idx_out = idx;
    *state_out = state;
    return MP_OK;
}

/* ---- tc.c ---------------------------------------------------------------------- */
mp_tcache *tc_get_slow(mp_small *s);
void tc_release(mp_small *s, mp_tcache *tc);
void tc_flush_bin(mp_small *s, mp_tcache *tc, unsigned cls, uint32_t keep);
void tc_publish(mp_small *s, mp_tcache *tc);
void tc_release_all(mp_small *s);
void tc_reclaim_foreign(mp_small *s);
void tc_fold(mp_counters *into, mp_counters *from);

/* ---- registry.c ------------------------------------------------------------------ */
void registry_add(mp_small *s);
void registry_remove(mp_small *s);
void registry_lock(void);
void registry_unlock(void);
void registry_reinit(void);
mp_small *registry_next(mp_small *prev);
mp_small *registry_find(uint64_t uid);

extern MP_TLS struct mp_tls_slot {
    mp_small *small;
    uint64_t uid;
    mp_tcache *tcache;
} tc_tls_slots[MP_TLS_SLOTS];

/* This thread's cache keyed `uid` if it is the most recent one, else NULL
 * (the fast paths then take the full path, which finds or makes it). */
MP_INLINE mp_tcache *tc_peek_uid(uint64_t uid) {
    /* uids are never reused (and never 0): an equal uid is this pool */
    if (MP_LIKELY(tc_tls_slots[0].uid == uid)) {
        mp_tcache *tc = tc_tls_slots[0].tcache;
        /* a slot with a uid has its cache (tc_get_slow sets both) */
        if (tc == NULL)
            __builtin_unreachable();
        return tc;
    }
    return NULL;
}
/* This thread's cache of `s` if it is the most recent one, else NULL. */
static inline mp_tcache *tc_peek(const mp_small *s) { return tc_peek_uid(s->uid); }
/* This thread's cache for `s`, made if need be: one compare on the hot path. */
static inline mp_tcache *tc_get(mp_small *s) {
    mp_tcache *tc = tc_peek(s);
    return MP_LIKELY(tc != NULL) ? tc : tc_get_slow(s);
}

/* The counters a small-block call counts on: its thread's cache's (`tc`, no
 * lock), or, when the thread could get no cache (tc NULL), the layer's
 * uncached ones, with heap_lock taken.  The one place that knows that
 * fallback; tc_counters_put ends the count. */
static inline mp_counters *tc_counters_take(mp_small *s, mp_tcache *tc) {
    if (MP_LIKELY(tc != NULL))
        return &tc->counters;
    mutex_lock(s->heap_lock);
    return &s->uncached;
}

/* End a count begun by tc_counters_take: `live_delta` (requested bytes that
 * turned live, or stopped being) joins the cache's unpublished delta, which
 * is published once large; without a cache, the lock is released and the
 * delta published at once. */
static inline void tc_counters_put(mp_small *s, mp_tcache *tc, int64_t live_delta) {
    if (MP_LIKELY(tc != NULL)) {
        int64_t unpublished = tc->unpublished + live_delta;
        tc->unpublished = unpublished;
        if (MP_UNLIKELY(unpublished >= MP_PUBLISH_BYTES || unpublished <= -MP_PUBLISH_BYTES))
            tc_publish(s, tc);
        return;
    }
    mutex_unlock(s->heap_lock);
    acct_live(s->acct, live_delta);
}

#endif /* MEMPOOL_SMALL_H */
