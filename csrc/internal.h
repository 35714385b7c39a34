/*
 * internal.h - types shared by the core's files; never included by users.
 *
 * Glossary (one prefix per file):
 *   os_     os.c         the only caller of mmap/munmap/madvise/mremap
 *   sc_     size_class.c request size -> class -> block size
 *   map_    chunk_map.c  address -> region lookup (2 MiB chunks), pool registry
 *   arena_  arena.c      reserved address space, per-granule dirty bits
 *   heap_   tlsf.c       TLSF good-fit heap of spans over arenas
 *           decay.c      when free spans' pages go back (decay, hole cap)
 *   slab_   slab.c       small blocks: slabs of one class, per-class lists
 *   tc_     tcache.c     per-thread caches of free small blocks
 *   pool.c               routes requests, owns locks and lifetime
 *   stats.c, check.c, error.c
 *
 *   granule  the heap's unit: 4 KiB (page heap) or 2 MiB (huge heap)
 *   span     a run of granules: free, a large block, or a slab
 *   dirty    a granule that may be resident (handed out since last purge)
 *   purge    madvise(MADV_DONTNEED): the granule goes back to the OS
 *
 * Lock order (never take one to the left while holding one to the right):
 *   registry -> class[i] (ascending i) -> pool -> map
 */
#ifndef MEMPOOL_INTERNAL_H
#define MEMPOOL_INTERNAL_H

#include "mempool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#define MP_PAGE_SHIFT 12
#define MP_PAGE_SIZE ((size_t)1 << MP_PAGE_SHIFT)
#define MP_HUGE_SHIFT 21
#define MP_HUGE_SIZE ((size_t)1 << MP_HUGE_SHIFT)
#define MP_CHUNK_SHIFT 21 /* regions are aligned and sized in 2 MiB chunks */
#define MP_CHUNK_SIZE ((size_t)1 << MP_CHUNK_SHIFT)
#define MP_MIN_ALIGN 64
#define MP_SMALL_MAX_LIMIT 65536
/* Requests above this can never be served (the address space is 48 bits). */
#define MP_MAX_REQUEST ((size_t)1 << 46)
#define MP_BLOCK_FREE UINT32_MAX /* slab block state: not live */
#define MP_BLOCK_CACHED (UINT32_MAX - 1) /* transient mark, fork repair only */
#define MP_TLS_SLOTS 8           /* pools a thread caches for at once */
#define MP_GRAVES 32             /* released regions remembered per pool */
/* A thread publishes its small-block live delta once it exceeds this, which
 * bounds how far peak_live_bytes can lag behind the truth. */
#define MP_PUBLISH_BYTES ((int64_t)64 << 10)

_Static_assert(MP_MIN_ALIGN >= 16, "numpy needs 16-byte alignment");
_Static_assert((MP_CHUNK_SIZE % MP_HUGE_SIZE) == 0, "chunks hold huge pages");

#define MP_ALIGN_UP(x, a) (((x) + ((a)-1)) & ~((size_t)(a)-1))
#define MP_LIKELY(x) __builtin_expect(!!(x), 1)
#define MP_UNLIKELY(x) __builtin_expect(!!(x), 0)
/* Slow paths: kept out of line so the fast paths save fewer registers. */
#define MP_COLD __attribute__((noinline, cold))

typedef struct mp_arena mp_arena;
typedef struct mp_slab mp_slab;
typedef struct mp_tcache mp_tcache;
typedef struct mp_debug mp_debug;

/* ---- single-writer counters ------------------------------------------ */
/* Each counter has one writer at a time (its thread, or the holder of the
 * pool lock), so an add is a relaxed load + store: no locked instruction on
 * the fast path, yet readers in mp_stats_get see no torn values. */
typedef _Atomic int64_t mp_counter;

static inline void ctr_add(mp_counter *c, int64_t delta) {
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + delta,
                          memory_order_relaxed);
}
static inline int64_t ctr_get(const mp_counter *c) {
    return atomic_load_explicit((mp_counter *)c, memory_order_relaxed);
}

typedef struct mp_counters {
    mp_counter live_bytes, allocated_bytes; /* large and direct blocks only */
    mp_counter free_count, realloc_count, calloc_count;
    /* alloc_count is their sum: one counter less on the fast path */
    mp_counter small_alloc_count, large_alloc_count, direct_alloc_count;
    mp_counter class_live_blocks[MP_MAX_CLASSES];
    mp_counter class_live_bytes[MP_MAX_CLASSES];
} mp_counters;

/* ---- regions: what an address belongs to ------------------------------ */
typedef enum mp_region_kind { MP_REGION_ARENA = 1, MP_REGION_DIRECT = 2 } mp_region_kind;

/* Common head of an arena or a direct mapping; the chunk map points here. */
typedef struct mp_region {
    int kind;
    unsigned granule_shift; /* arenas: the heap's granule (saves a load on free) */
    mp_pool *pool;
    char *base;  /* 2 MiB aligned */
    size_t size; /* 2 MiB multiple */
} mp_region;

/* A block bigger than an arena: one mapping, one block, grown by mremap. */
typedef struct mp_direct {
    mp_region region;
    struct mp_direct *next, *prev;
    size_t requested;
} mp_direct;

/* ---- spans and arenas ------------------------------------------------- */
typedef enum mp_span_kind {
    MP_SPAN_NONE = 0, /* not the head of a span */
    MP_SPAN_FREE,
    MP_SPAN_LARGE,
    MP_SPAN_SLAB,
} mp_span_kind;

/*
 * A span descriptor lives in arena->spans[first granule], outside the managed
 * memory, so a user overflow cannot corrupt it and a purge cannot zero it.
 * Subtleties: only heads carry kind != NONE (a merge resets absorbed heads);
 * every granule of a slab carries the slab pointer (a free of any block finds
 * its slab in one step); prev_npages is the boundary tag that finds the
 * physical predecessor in O(1).
 */
typedef struct mp_span {
    struct mp_span *next_free, *prev_free; /* TLSF list (FREE) */
    struct mp_span *lru_next, *lru_prev;   /* dirty LRU (FREE, dirty > 0) */
    mp_arena *arena;
    _Atomic(mp_slab *) slab; /* every granule of a slab; NULL otherwise */
    uint64_t requested;      /* LARGE: bytes asked for */
    int64_t freed_at_ms;     /* FREE: when the newest part became free */
    uint32_t page;           /* index of the first granule in the arena */
    uint32_t npages;
    uint32_t prev_npages; /* length of the physical predecessor, 0 if none */
    uint32_t dirty;       /* FREE: granules that may be resident */
    uint8_t kind;
    uint8_t in_lru;
    uint8_t movable; /* LARGE: a movable buffer's span (not a block) */
} mp_span;

#define MP_FL_COUNT 32
#define MP_SL_LOG2 5
#define MP_SL_COUNT (1u << MP_SL_LOG2)

typedef struct mp_heap {
    mp_pool *pool;
    unsigned granule_shift;
    int huge_advice; /* 1: MADV_HUGEPAGE, 0: MADV_NOHUGEPAGE */
    bool lowest_first; /* resident reuse: lowest address (else smallest fit) */
    uint32_t fl_bitmap;
    uint32_t sl_bitmap[MP_FL_COUNT];
    mp_span *lists[MP_FL_COUNT][MP_SL_COUNT];
    mp_arena *arenas;
    size_t arena_count;
    mp_span *lru_head, *lru_tail; /* free spans with dirty granules, oldest first */
    uint64_t granules; /* in all arenas */
    uint64_t arena_seq; /* arenas created so far */
    uint64_t free_granules, dirty_free_granules, free_spans;
    /* Demand: the most granules in use during the current and the previous
     * half-decay period; purging stops at what that peak would need again. */
    uint64_t demand_cur, demand_prev;
    int64_t demand_since_ms;
} mp_heap;

struct mp_arena {
    mp_region region;
    mp_heap *heap;
    mp_arena *next, *prev;
    uint64_t seq;    /* creation order in its heap: compaction packs the oldest */
    uint32_t npages; /* granules */
    mp_span *spans;
    uint64_t *dirty_bits; /* bit set = granule may be resident */
    uint64_t dirty_count;
    size_t metadata_bytes;
};

/* ---- slabs and classes ------------------------------------------------ */
struct mp_slab {
    mp_slab *next, *prev; /* class partial list */
    char *start;
    mp_span *span;
    uint32_t nblocks, nfree; /* nfree = entries in free_stack */
    uint32_t block_size, magic;
    uint16_t cls;
    uint8_t in_partial;
    uint16_t *free_stack;     /* indices of free blocks not in a thread cache */
    _Atomic uint32_t *state;  /* per block: MP_BLOCK_FREE or requested size */
    uint64_t *purged;         /* per page: given back while only free blocks
                                 of the stack covered it (class lock) */
    uint32_t purged_pages;
    int64_t returned_ms;      /* last time blocks came back to the stack */
};

/* Room for the slab lengths a class steps through: the first slab is at
 * least a page and 2 blocks, the longest at most 32 times that (64 KiB or
 * 8 blocks, up to twice that), and each length at least doubles the one
 * before, so a class has at most 6. */
#define MP_SLAB_STEPS 8

typedef struct mp_class {
    pthread_mutex_t lock;
    uint32_t block_size, magic, tcache_cap;
    /* The k-th slab the class holds at once (counting from 0) takes
     * slab_pages[min(k, slab_steps - 1)] pages: the first is small, each
     * next one twice the one before, up to sc_slab_pages.  Counting the
     * slabs held now (not ever made) makes a class that gave its slabs
     * back start small again. */
    uint32_t slab_steps;
    uint32_t slab_pages[MP_SLAB_STEPS];
    mp_slab *partial; /* slabs with nfree > 0 */
    mp_slab *spare;   /* one empty slab kept so a loop does not thrash */
    mp_counter slabs, blocks; /* written under the class lock, read by stats */
} mp_class;

/* ---- thread caches ---------------------------------------------------- */
typedef struct mp_tcache_entry {
    char *ptr;
    mp_slab *slab;
} mp_tcache_entry;

typedef struct mp_tcache_bin {
    uint32_t count, cap;
    mp_tcache_entry *entries;
} mp_tcache_bin;

struct mp_tcache {
    mp_pool *pool;
    pthread_t owner;
    mp_tcache *next, *prev; /* pool's list of caches in use */
    int64_t unpublished;    /* live delta not yet in pool->published_live */
    mp_counters counters;
    mp_tcache_bin bins[MP_MAX_CLASSES];
};

/* ---- movable buffers -------------------------------------------------- */
/* One slot of the pool's buffer table.  A handle is (generation << 32) |
 * (index + 1); a slot's generation changes when it is freed, so an old handle
 * never names the slot's next buffer. */
typedef struct mp_buffer_slot {
    mp_span *span;      /* the heap span holding the bytes (live slots) */
    uint64_t nbytes;
    uint32_t pins;
    uint32_t generation; /* odd: live, even: free */
    uint32_t next_free;  /* free slots form a list (index + 1, 0 = end) */
} mp_buffer_slot;

typedef struct mp_buffer_table {
    mp_buffer_slot *slots;
    uint32_t count, cap, free_head;
    uint64_t live, bytes, pinned; /* statistics */
    uint64_t defrag_count, defrag_moved_bytes;
} mp_buffer_table;

/* ---- the pool --------------------------------------------------------- */
enum { MP_HEAP_PAGES = 0, MP_HEAP_HUGE = 1, MP_HEAP_COUNT = 2 };

struct mp_pool {
    mp_config config;
    uint64_t uid; /* never reused: lets threads detect a destroyed pool */
    /* Largest request the inlined fast paths of mp_alloc/mp_free take: the
     * slab limit, or 0 in debug mode (canaries take the full path).  Set
     * once at creation, next to uid: the two reads every call makes. */
    size_t fast_small_max;
    pthread_mutex_t lock;
    mp_heap heaps[MP_HEAP_COUNT];
    mp_direct *directs;
    unsigned class_count;
    mp_class classes[MP_MAX_CLASSES];
    mp_tcache *tcaches, *tcache_free;
    /* statistics written under the lock (large blocks, folded caches) */
    mp_counters central;
    _Atomic int64_t published_live;
    _Atomic uint64_t peak_live;
    uint64_t reserved_bytes, resident_bytes, peak_resident_bytes;
    uint64_t released_bytes, metadata_bytes, direct_count, tcache_count;
    _Atomic uint64_t os_mmap, os_munmap, os_madvise, os_mremap;
    _Atomic uint64_t errors[MP_ERROR_COUNT];
    /* background purge */
    pthread_cond_t purge_cond;
    pthread_t purger;
    bool purger_running, purger_waiting, stopping;
    /* when slabs first got free blocks back since the last slab sweep (0:
     * none): the purger gives their whole free pages back a decay later */
    _Atomic int64_t slab_sweep_due_ms;
    /* registry */
    mp_pool *reg_next, *reg_prev;
    /* regions given back recently: a free into one is a double free, not a
     * foreign pointer (lock held) */
    struct { uintptr_t base, size; } graves[MP_GRAVES];
    unsigned grave_next;
    bool use_huge_heap;
    struct mp_debug *dbg; /* debug mode: the corruption reports (debug.c) */
    mp_buffer_table buffers; /* lock held */
};

/* Debug mode's canary bytes after every block, 0 when off (debug_init makes
 * config.debug 0 or 1).  Derived from the config rather than stored: the
 * config shares its cache line with nothing a lock holder writes. */
static inline size_t pool_pad(const mp_pool *pool) {
    return (size_t)pool->config.debug * MP_CANARY_BYTES;
}
/* Largest request the slabs serve: small_max less the canary. */
static inline size_t pool_small_limit(const mp_pool *pool) {
    return pool->config.small_max - pool_pad(pool);
}

/* ---- os.c ------------------------------------------------------------- */
void *os_reserve(mp_pool *pool, size_t size, size_t align);
void os_release(mp_pool *pool, void *addr, size_t size);
void os_purge(mp_pool *pool, void *addr, size_t size);
void os_advise_huge(mp_pool *pool, void *addr, size_t size, int huge);
void *os_remap_grow(mp_pool *pool, void *addr, size_t old_size, size_t new_size,
                    size_t align);
int os_remap_shrink(mp_pool *pool, void *addr, size_t old_size, size_t new_size);
int64_t os_now_ms(void);

/* ---- size_class.c ----------------------------------------------------- */
unsigned sc_count(size_t small_max);
/* Class serving `size` (0 is served by class 0); inline: every small
 * allocation computes it. */
static inline unsigned sc_of(size_t size) {
    if (size <= 512)
        return size == 0 ? 0 : (unsigned)((size - 1) >> 6);
    unsigned f = 63u - (unsigned)__builtin_clzll(size - 1); /* 9 for 513..1024 */
    return 8 + (f - 9) * 8 + (unsigned)(((size - 1) - ((size_t)1 << f)) >> (f - 3));
}
size_t sc_block(unsigned cls);
uint32_t sc_slab_pages(size_t block_size);
uint32_t sc_slab_grow_pages(size_t block_size, size_t min_bytes);
uint32_t sc_magic(uint32_t block_size);

/* Block index of byte offset `off` in a slab; callers verify idx*bs == off. */
static inline uint32_t sc_index(uint64_t off, uint32_t magic) {
    return (uint32_t)((off * magic) >> 32);
}

/* ---- chunk_map.c ------------------------------------------------------ */
int map_insert(mp_region *region);
void map_remove(mp_region *region);

#define MAP_ADDRESS_BITS 48
#define MAP_LEAF_BITS 13
#define MAP_ROOT_BITS (MAP_ADDRESS_BITS - MP_CHUNK_SHIFT - MAP_LEAF_BITS)
typedef struct map_leaf {
    _Atomic(mp_region *) entries[1u << MAP_LEAF_BITS];
} map_leaf;
extern _Atomic(map_leaf *) map_root[1u << MAP_ROOT_BITS];

/* The region containing ptr, or NULL: two dependent loads, no lock (inline
 * because every free starts here). */
static inline mp_region *map_lookup(const void *ptr) {
    uintptr_t addr = (uintptr_t)ptr;
    if (MP_UNLIKELY(addr >> MAP_ADDRESS_BITS))
        return NULL;
    uintptr_t chunk = addr >> MP_CHUNK_SHIFT;
    map_leaf *leaf = atomic_load_explicit(&map_root[chunk >> MAP_LEAF_BITS], memory_order_acquire);
    if (MP_UNLIKELY(leaf == NULL))
        return NULL;
    mp_region *region = atomic_load_explicit(
        &leaf->entries[chunk & ((1u << MAP_LEAF_BITS) - 1)], memory_order_acquire);
    /* Regions are whole chunks, so a hit in the map is a hit in the region. */
    return region;
}
void registry_add(mp_pool *pool);
void registry_remove(mp_pool *pool);
pthread_mutex_t *registry_lock(void);
mp_pool *registry_find(uint64_t uid); /* caller holds registry_lock() */

/* ---- arena.c ---------------------------------------------------------- */
mp_arena *arena_create(mp_heap *heap, size_t min_granules);
void arena_destroy(mp_arena *arena);
uint32_t arena_mark_dirty(mp_arena *arena, uint32_t page, uint32_t n);
uint32_t arena_count_dirty(const mp_arena *arena, uint32_t page, uint32_t n);
void arena_clear_dirty(mp_arena *arena, uint32_t page, uint32_t n);
static inline char *span_addr(const mp_span *span) {
    return span->arena->region.base +
           ((size_t)span->page << span->arena->heap->granule_shift);
}
static inline size_t span_bytes(const mp_span *span) {
    return (size_t)span->npages << span->arena->heap->granule_shift;
}
/* Compaction order: older arenas first, then address; moving a buffer to an
 * earlier place empties the newest arenas, which can then be released. */
static inline bool span_before(const mp_span *a, const mp_span *b) {
    if (a->arena != b->arena)
        return a->arena->seq < b->arena->seq;
    return a->page < b->page;
}

/* ---- tlsf.c ----------------------------------------------------------- */
void heap_init(mp_heap *heap, mp_pool *pool, unsigned granule_shift, int huge_advice);
void heap_destroy(mp_heap *heap);
mp_span *heap_alloc(mp_heap *heap, size_t npages, size_t align_pages, uint32_t *clean_out);
void heap_free(mp_heap *heap, mp_span *span, int64_t now_ms);
bool heap_grow_in_place(mp_heap *heap, mp_span *span, size_t npages, uint32_t *clean_out);
void heap_shrink_in_place(mp_heap *heap, mp_span *span, size_t npages, int64_t now_ms);
void heap_lru_remove(mp_heap *heap, mp_span *span);
void heap_release_arena(mp_heap *heap, mp_arena *arena);

/* ---- decay.c ---------------------------------------------------------- */
void heap_cap_dirty(mp_heap *heap);
size_t heap_purge(mp_heap *heap, int64_t now_ms, int64_t decay_ms, bool release_arenas);
int64_t heap_next_deadline(const mp_heap *heap, int64_t decay_ms);
uint64_t heap_largest_free(const mp_heap *heap);
size_t heap_check(const mp_heap *heap);
mp_span *heap_lowest_fit(const mp_heap *heap, size_t npages);
mp_span *heap_slide_down(mp_heap *heap, mp_span *span, int64_t now_ms);
mp_span *heap_alloc_from(mp_heap *heap, mp_span *free_span, size_t npages, uint32_t *clean_out);
void heap_free_histogram(const mp_heap *heap, uint64_t *count, uint64_t *bytes);
void heap_register_arena(mp_heap *heap, mp_arena *arena);

/* ---- slab.c ----------------------------------------------------------- */
void slab_classes_init(mp_pool *pool);
void slab_classes_destroy(mp_pool *pool);
uint32_t slab_refill(mp_pool *pool, unsigned cls, mp_tcache_entry *out, uint32_t want);
void slab_return(mp_pool *pool, unsigned cls, const mp_tcache_entry *blocks, uint32_t n);
void slab_drop_spares(mp_pool *pool);
size_t slab_purge_free_pages(mp_pool *pool, int64_t now_ms, int64_t decay_ms,
                             int64_t *next_due_ms);
void slab_repair_after_fork(mp_pool *pool);
size_t slab_check(const mp_pool *pool, const mp_slab *slab, uint64_t *live_blocks,
                  uint64_t *live_bytes, uint64_t *cached);

/* ---- tcache.c --------------------------------------------------------- */
mp_tcache *tc_get_slow(mp_pool *pool);
void tc_release(mp_pool *pool, mp_tcache *tc);
void tc_flush_bin(mp_pool *pool, mp_tcache *tc, unsigned cls, uint32_t keep);
void tc_publish(mp_pool *pool, mp_tcache *tc);
void tc_release_all(mp_pool *pool);
void tc_reclaim_foreign(mp_pool *pool);

/* initial-exec: the core lives in a dlopen'ed extension, where the default
 * TLS model costs a __tls_get_addr call on every access. */
#define MP_TLS _Thread_local __attribute__((tls_model("initial-exec")))

extern MP_TLS struct mp_tls_slot {
    mp_pool *pool;
    uint64_t uid;
    mp_tcache *tcache;
} tls_slots[MP_TLS_SLOTS];

/* This thread's cache of `pool` if it is the most recent one, else NULL
 * (the fast paths then take the full path, which finds or makes it). */
static inline mp_tcache *tc_peek(const mp_pool *pool) {
    if (MP_LIKELY(tls_slots[0].pool == pool && tls_slots[0].uid == pool->uid))
        return tls_slots[0].tcache;
    return NULL;
}
/* This thread's cache for `pool`, made if need be: one compare on the hot path. */
static inline mp_tcache *tc_get(mp_pool *pool) {
    mp_tcache *tc = tc_peek(pool);
    return MP_LIKELY(tc != NULL) ? tc : tc_get_slow(pool);
}

/* ---- pool.c / resize.c / stats.c -------------------------------------- */
enum { CALL_ALLOC, CALL_CALLOC, CALL_INTERNAL }; /* which counters a call feeds */
void *alloc_routed(mp_pool *pool, size_t size, size_t align, int call);
int free_routed(mp_pool *pool, void *ptr, size_t size, int call);
int small_locate(mp_slab *slab, const void *ptr, size_t size, uint32_t *idx_out,
                 uint32_t *state_out);
int large_locate(mp_arena *arena, const void *ptr, size_t size, mp_span **out);
void large_account(mp_pool *pool, int64_t requested, int64_t rounded, int call,
                   mp_counter *kind_count);
mp_heap *heap_for(mp_pool *pool, size_t size);
int direct_free_unlock(mp_pool *pool, mp_direct *d, int call);
void after_free_locked(mp_pool *pool);
void pool_bury(mp_pool *pool, const mp_region *region); /* lock held */
int foreign_or_freed(mp_pool *pool, const void *ptr);
void pool_note_live(mp_pool *pool, int64_t delta); /* publish + peak */
void pool_note_resident(mp_pool *pool, int64_t delta_bytes); /* lock held */
void pool_wake_purger(mp_pool *pool);   /* lock held */
void pool_lock_all(mp_pool *pool);
void pool_unlock_all(mp_pool *pool);
void pool_reinit_locks(mp_pool *pool);
int pool_error(const mp_pool *pool, int code); /* count + remember, returns code */
void counters_fold(mp_counters *into, mp_counters *from);
void buffers_destroy(mp_pool *pool); /* pool teardown: the table only */
size_t buffers_check(const mp_pool *pool); /* lock held */

#endif /* MEMPOOL_INTERNAL_H */
