/*
 * map.h - the address map layer: which region (arena or direct mapping) an
 * address is in, and the graves of regions given back.  Knows no pool: a
 * region names its owner by an opaque identity, which a lookup only
 * compares.
 */
#ifndef MEMPOOL_MAP_H
#define MEMPOOL_MAP_H

#include "../base/base.h"

typedef enum mp_region_kind { MP_REGION_ARENA = 1, MP_REGION_DIRECT = 2 } mp_region_kind;

/* Common head of an arena or a direct mapping; the map points here. */
typedef struct mp_region {
    int kind;
    unsigned granule_shift; /* arenas: the heap's granule (saves a load on free) */
    const void *owner;      /* the owner's identity: compared, never dereferenced */
    char *base;             /* 2 MiB aligned */
    size_t size;            /* 2 MiB multiple */
} mp_region;

int map_insert(mp_region *region);
void map_remove(mp_region *region);

#define MAP_ADDRESS_BITS 48
#define MAP_LEAF_BITS 13
#define MAP_ROOT_BITS (MAP_ADDRESS_BITS - MP_CHUNK_SHIFT - MAP_LEAF_BITS)
/* 4 KiB pages a leaf covers: its page table has one entry each. */
#define MAP_PAGE_BITS (MAP_LEAF_BITS + MP_CHUNK_SHIFT - MP_PAGE_SHIFT)

/* A 4 KiB page's entry: what a higher layer tagged it with (the small
 * layer: the slab on the page) and the tagger's owner identity, so a free
 * of a pointer on a tagged page reaches its slab in two dependent loads
 * (leaf, then the slab) and a foreign one stops at the owner compare
 * without touching memory of another owner.  Both NULL when untagged. */
typedef struct map_page {
    _Atomic(const void *) owner;
    _Atomic(void *) tag;
} map_page;

typedef struct map_leaf {
    /* first: the fast free path indexes it with no offset to add */
    map_page pages[(size_t)1 << MAP_PAGE_BITS]; /* address space: pages cost only when tagged */
    _Atomic(mp_region *) entries[1u << MAP_LEAF_BITS];
} map_leaf;
extern _Atomic(map_leaf *) map_root[1u << MAP_ROOT_BITS];

/* The leaf covering ptr, or NULL (outside the map or never mapped). */
static inline map_leaf *map_leaf_of(uintptr_t addr) {
    uintptr_t root = addr >> (MP_CHUNK_SHIFT + MAP_LEAF_BITS);
    if (MP_UNLIKELY(root >= (1u << MAP_ROOT_BITS)))
        return NULL;
    return atomic_load_explicit(&map_root[root], memory_order_acquire);
}

/* The region containing ptr, or NULL: two dependent loads, no lock (inline
 * because every free starts here). */
static inline mp_region *map_lookup(const void *ptr) {
    uintptr_t addr = (uintptr_t)ptr;
    map_leaf *leaf = map_leaf_of(addr);
    if (MP_UNLIKELY(leaf == NULL))
        return NULL;
    /* Regions are whole chunks, so a hit in the map is a hit in the region. */
    uintptr_t chunk = addr >> MP_CHUNK_SHIFT;
    return atomic_load_explicit(&leaf->entries[chunk & ((1u << MAP_LEAF_BITS) - 1)],
                                memory_order_acquire);
}

/* The entry of the page at addr in its leaf.  Skewed: unskewed, the entries
 * of pages 1 MiB apart share one set of a 64-set L1 cache, and the pages that
 * start an arena or chunk (where first slabs sit) all share set 0 with every
 * 4 KiB-aligned header (CPython's obmalloc pools): every free then missed
 * L1 and evicted the interpreter's own lines.  Xoring the index's low bits
 * with its 1 MiB range number spreads those entries over the sets. */
static inline map_page *map_page_of(map_leaf *leaf, uintptr_t addr) {
    size_t p = (addr >> MP_PAGE_SHIFT) & (((size_t)1 << MAP_PAGE_BITS) - 1);
    return &leaf->pages[p ^ ((p >> 6) & 0xFC)];
}

/* The tag `owner` put on ptr's page, or NULL (another owner's page, an
 * untagged one, an address outside the map): two dependent loads, no lock.
 * The owner's acquire load makes what the tagger wrote before tagging
 * visible. */
static inline void *map_page_tag(const void *ptr, const void *owner) {
    uintptr_t addr = (uintptr_t)ptr;
    map_leaf *leaf = map_leaf_of(addr);
    if (MP_UNLIKELY(leaf == NULL))
        return NULL;
    map_page *page = map_page_of(leaf, addr);
    if (MP_UNLIKELY(atomic_load_explicit(&page->owner, memory_order_acquire) != owner))
        return NULL;
    return atomic_load_explicit(&page->tag, memory_order_relaxed);
}

/* Tag the `npages` pages from `base` (a region of `owner` in the map holds
 * them) with `tag`, or untag them (tag NULL).  The owner's own lock
 * serialises the writers of a page: the map takes none. */
void map_tag_pages(const void *base, size_t npages, const void *owner, void *tag);

/* Fork: the map's writer lock is taken before fork and released (parent)
 * or re-made (child) after. */
void map_prefork(void);
void map_postfork_parent(void);
void map_postfork_child(void);

/* ---- graves --------------------------------------------------------------- */
/* Regions a pool gave back recently: a free into one is a double free, not a
 * foreign pointer.  The owner's lock guards them. */
#define MAP_GRAVES 32
typedef struct map_graves {
    struct {
        uintptr_t base, size;
    } slot[MAP_GRAVES];
    unsigned next;
} map_graves;

/* Remember a region about to be unmapped. */
void map_bury(map_graves *graves, const mp_region *region);
/* Whether ptr lies in a remembered region. */
bool map_buried(const map_graves *graves, const void *ptr);

#endif /* MEMPOOL_MAP_H */
