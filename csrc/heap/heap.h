/*
 * heap.h - the page-heap layer: arenas of granules (arena.c), a TLSF good-fit
 * heap of spans over them (heap.c, its indexes in sizes.c), and the decay
 * policy that decides when free spans' pages go back (decay.c).
 *
 * One-way inside the layer: decay.c uses heap.c, heap.c uses arena.c, and
 * arena.c knows no heap.  Upward, the layer only reports: figures in the
 * owner's mp_acct, and acct_dirty() when free resident memory appears.
 * Every function here runs under the owner's lock (the pool lock).
 *
 *   granule  the heap's unit: 4 KiB (page heap) or 2 MiB (huge heap)
 *   span     a run of granules: free, a large block, or a slab
 *   dirty    a granule that may be resident (handed out since last purge)
 *   purge    madvise(MADV_DONTNEED): the granule goes back to the OS
 */
#ifndef MEMPOOL_HEAP_H
#define MEMPOOL_HEAP_H

#include "../map/map.h"

typedef struct mp_arena mp_arena;

/* ---- spans ---------------------------------------------------------------- */
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
    mp_link free_link; /* TLSF size list (FREE) */
    mp_link lru_link;  /* dirty LRU (FREE, dirty > 0) */
    mp_arena *arena;
    /* The small layer's slab, on every granule of a SLAB span; NULL
     * otherwise.  Opaque here: the heap only tests it for NULL. */
    _Atomic(void *) slab;
    uint64_t requested;      /* LARGE: bytes asked for */
    int64_t freed_at_ms;     /* FREE: when the newest part became free */
    uint32_t page;           /* index of the first granule in the arena */
    uint32_t npages;
    uint32_t prev_npages; /* length of the physical predecessor, 0 if none */
    uint32_t dirty;       /* FREE: granules that may be resident */
    uint8_t kind;
    uint8_t in_lru;
    uint8_t sizes_set; /* FREE: the index it is in (MP_SIZES_DIRTY/CLEAN) */
    uint8_t movable; /* LARGE: a movable buffer's span (not a block) */
} mp_span;

/* ---- arenas (arena.c) -------------------------------------------------------- */
struct mp_arena {
    mp_region region;
    struct mp_heap *heap; /* the heap it belongs to: set by heap.c, unread by arena.c */
    mp_link link;         /* the heap's list of arenas */
    uint64_t seq;         /* creation order in its heap: compaction packs the oldest */
    uint32_t npages;      /* granules */
    mp_span *spans;
    uint64_t *dirty_bits; /* bit set = granule may be resident */
    uint64_t *small_bits; /* bit set = advised base pages (huge arenas) */
    uint64_t *huge_bits;  /* bit set = 2 MiB extent advised huge pages (extent arenas) */
    bool huge;            /* advised huge pages at creation */
    uint64_t dirty_count;
    size_t metadata_bytes;
    /* A shared arena (the mesh heap's): its pages are the memfd `fd`, also
     * mapped at `alias`; fd is -1 and alias NULL otherwise. */
    int fd;
    char *alias;
    int fork_fd, fork_slot; /* the file's copy and barrier slot during fork */
};

mp_arena *arena_create(const void *owner, mp_acct *acct, unsigned granule_shift,
                       int huge_advice, size_t arena_bytes, size_t min_granules, bool shared);
void arena_destroy(mp_arena *arena, mp_acct *acct, map_graves *graves);
uint32_t arena_mark_dirty(mp_arena *arena, uint32_t page, uint32_t n);
uint32_t arena_count_dirty(const mp_arena *arena, uint32_t page, uint32_t n);
void arena_clear_dirty(mp_arena *arena, uint32_t page, uint32_t n);
void arena_advise_fresh(mp_arena *arena, mp_os_counts *os, uint32_t page, uint32_t n,
                        uint64_t used);
void arena_advise_extents(mp_arena *arena, mp_os_counts *os, uint32_t page, uint32_t n);

/* Give back the pages of [addr, addr+size) in `arena` (an identity-mapped
 * range): a shared arena's must leave its file, not only the page tables. */
static inline void arena_purge(const mp_arena *arena, mp_os_counts *os, void *addr, size_t size) {
    if (arena->fd >= 0)
        shm_purge(os, addr, size);
    else
        os_purge(os, addr, size);
}

/* The span head after `s` in address order, or NULL at the arena's end.  A
 * head of length 0 (a broken heap: heap_check reports it) also ends the
 * walk, so a walk always terminates. */
static inline mp_span *arena_span_next(const mp_arena *arena, const mp_span *s) {
    uint32_t next = s->page + s->npages;
    return s->npages != 0 && next < arena->npages ? &arena->spans[next] : NULL;
}
/* Every span head of an arena, in address order (the one span walk). */
#define ARENA_FOREACH_SPAN(arena, s) \
    for (mp_span *s = &(arena)->spans[0]; s; s = arena_span_next((arena), s))

/* First byte of a span, and (span_bytes) its length in bytes. */
static inline char *span_addr(const mp_span *span) {
    return span->arena->region.base + ((size_t)span->page << span->arena->region.granule_shift);
}
static inline size_t span_bytes(const mp_span *span) {
    return (size_t)span->npages << span->arena->region.granule_shift;
}
/* Compaction order: older arenas first, then address; moving a buffer to an
 * earlier place empties the newest arenas, which can then be released. */
static inline bool span_before(const mp_span *a, const mp_span *b) {
    if (a->arena != b->arena)
        return a->arena->seq < b->arena->seq;
    return a->page < b->page;
}

/* ---- the TLSF heap (heap.c) ------------------------------------------------- */
#define MP_FL_COUNT 32
#define MP_SL_LOG2 5
#define MP_SL_COUNT (1u << MP_SL_LOG2)

/* One TLSF index of free spans: a list per (first level, second level) size
 * class and a bitmap per level. */
typedef struct mp_sizes {
    uint32_t fl_bitmap;
    uint32_t sl_bitmap[MP_FL_COUNT];
    mp_list lists[MP_FL_COUNT][MP_SL_COUNT];
} mp_sizes;

/* The heap's two indexes: free spans that hold resident granules, searched
 * first (reusing them touches no fresh page), and clean ones. */
enum { MP_SIZES_DIRTY = 0, MP_SIZES_CLEAN = 1 };

typedef struct mp_heap {
    const void *owner;   /* the identity its arenas' regions carry (map.h) */
    mp_acct *acct;       /* the owner's figures: reserved, resident, released */
    map_graves *graves;  /* the owner's graves: arenas given back go there */
    size_t arena_bytes;  /* a new arena's size (larger when a request needs it) */
    unsigned retain_arenas; /* wholly free arenas kept mapped by decay */
    unsigned granule_shift;
    int huge_advice;     /* 1: MADV_HUGEPAGE, 0: MADV_NOHUGEPAGE */
    bool lowest_first;   /* resident reuse: lowest address (else smallest fit) */
    bool shared;         /* arenas are memfd-backed (the mesh heap: slabs only) */
    /* Base-page granules whose 2 MiB extents earn huge pages: an extent
     * handed out whole while clean is advised huge, one handed out in part
     * base pages (arena_advise_extents). */
    bool huge_extents;
    mp_sizes sizes[2]; /* MP_SIZES_DIRTY, MP_SIZES_CLEAN */
    mp_list arenas;
    size_t arena_count;
    mp_list lru; /* free spans with dirty granules, oldest first */
    uint64_t granules; /* in all arenas */
    uint64_t arena_seq; /* arenas created so far */
    uint64_t free_granules, dirty_free_granules, free_spans;
    /* Granules handed out but mapped onto other spans' memory (meshed
     * slabs): in use, yet no demand for memory, so decay does not keep
     * dirty holes for them. */
    uint64_t unbacked;
    /* Demand: the most granules in use during the current and the previous
     * half-decay period; purging stops at what that peak would need again. */
    uint64_t demand_cur, demand_prev;
    int64_t demand_since_ms;
} mp_heap;

#define HEAP_FOREACH_ARENA(heap, a) LIST_FOREACH(a, &(heap)->arenas, mp_arena, link)

/* Granules in use that have memory of their own (decay's demand). */
static inline uint64_t heap_in_use(const mp_heap *heap) {
    return heap->granules - heap->free_granules - heap->unbacked;
}

/* The free span whose dirty granules have been free longest, or NULL. */
static inline mp_span *heap_lru_oldest(const mp_heap *heap) {
    return LIST_ENTRY(heap->lru.head, mp_span, lru_link);
}

/* ---- one TLSF index (sizes.c) ------------------------------------------- */
void sizes_class(uint64_t n, unsigned *fl, unsigned *sl);
void sizes_insert(mp_sizes *z, mp_span *span);
void sizes_remove(mp_sizes *z, mp_span *span);
mp_span *sizes_find(mp_sizes *z, uint64_t n);
size_t sizes_check(const mp_sizes *z, unsigned set, mp_check_log *log, uint64_t *listed,
                   uint64_t limit);

void heap_init(mp_heap *heap, const void *owner, mp_acct *acct, map_graves *graves,
               unsigned granule_shift, int huge_advice, size_t arena_bytes,
               unsigned retain_arenas);
void heap_destroy(mp_heap *heap);
mp_span *heap_alloc(mp_heap *heap, size_t npages, size_t align_pages, uint32_t *clean_out);
mp_span *heap_alloc_from(mp_heap *heap, mp_span *free_span, size_t npages, uint32_t *clean_out);
void heap_free(mp_heap *heap, mp_span *span, int64_t now_ms);
bool heap_grow_in_place(mp_heap *heap, mp_span *span, size_t npages, uint32_t *clean_out);
void heap_shrink_in_place(mp_heap *heap, mp_span *span, size_t npages, int64_t now_ms);
void heap_lru_remove(mp_heap *heap, mp_span *span);
void heap_span_cleaned(mp_heap *heap, mp_span *span);
void heap_release_arena(mp_heap *heap, mp_arena *arena);
uint64_t heap_largest_free(const mp_heap *heap);
size_t heap_check(const mp_heap *heap, mp_check_log *log);
mp_span *heap_lowest_fit(const mp_heap *heap, size_t npages);
mp_span *heap_slide_down(mp_heap *heap, mp_span *span, int64_t now_ms);
void heap_free_histogram(const mp_heap *heap, uint64_t *count, uint64_t *bytes);
uint32_t heap_touch(mp_heap *heap, mp_arena *arena, uint32_t page, uint32_t n);

/* ---- when pages go back (decay.c) ---------------------------------------------- */
mp_span *decay_alloc(mp_heap *heap, size_t npages, size_t align_pages, uint32_t *clean_out);
uint64_t decay_purge_oldest(mp_heap *heap, uint64_t max_granules);
size_t decay_purge(mp_heap *heap, int64_t now_ms, int64_t decay_ms, bool release_arenas);
int64_t decay_next_deadline(const mp_heap *heap, int64_t decay_ms);
void decay_purge_tail(mp_heap *heap, mp_span *span, uint32_t n);

#endif /* MEMPOOL_HEAP_H */
