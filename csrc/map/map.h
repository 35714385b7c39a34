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
    /* Regions are whole chunks, so a hit in the map is a hit in the region. */
    return atomic_load_explicit(&leaf->entries[chunk & ((1u << MAP_LEAF_BITS) - 1)],
                                memory_order_acquire);
}

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
