/*
 * map.c - which region (arena or direct mapping) an address is in, and the
 * graves of regions given back.
 *
 * The map is a two-level radix tree over the 48-bit address space in 2 MiB
 * chunks, shared by every pool: a lookup is two dependent loads and never
 * takes a lock, which is what lets mp_free reject a foreign pointer without
 * touching memory the pool does not own.  Leaves are created on demand and
 * never freed.  A leaf also has a table of 4 KiB pages (map_page) that the
 * small layer tags with its slabs: a leaf is reserved address space
 * (os_reserve_table) whose table pages cost memory only once written, one
 * page of table per 2 MiB chunk that holds slabs.
 */
#include "map.h"

_Atomic(map_leaf *) map_root[1u << MAP_ROOT_BITS];
static mp_mutex map_lock = MP_MUTEX_INIT(MP_RANK_MAP);

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
        leaf = os_reserve_table(sizeof(map_leaf));
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
    mutex_lock(&map_lock);
    for (uintptr_t a = begin; a < end; a += MP_CHUNK_SIZE) {
        if (map_slot(a, true) == NULL) {
            for (uintptr_t b = begin; b < a; b += MP_CHUNK_SIZE)
                atomic_store_explicit(map_slot(b, false), NULL, memory_order_release);
            mutex_unlock(&map_lock);
            return -1;
        }
    }
    for (uintptr_t a = begin; a < end; a += MP_CHUNK_SIZE)
        atomic_store_explicit(map_slot(a, false), region, memory_order_release);
    mutex_unlock(&map_lock);
    return 0;
}

/* Forget the region's chunks (before its memory is unmapped). */
void map_remove(mp_region *region) {
    uintptr_t begin = (uintptr_t)region->base, end = begin + region->size;
    mutex_lock(&map_lock);
    for (uintptr_t a = begin; a < end; a += MP_CHUNK_SIZE) {
        _Atomic(mp_region *) *slot = map_slot(a, false);
        if (slot)
            atomic_store_explicit(slot, NULL, memory_order_release);
    }
    mutex_unlock(&map_lock);
}

/* Tag (or untag: tag NULL) pages of a region in the map.  Tagging stores
 * the tag before the owner (release), untagging clears the owner first, so
 * a reader that matches the owner sees the tag and what the tagger wrote
 * before it; a reader racing an untag may see the tag NULL (map_page_tag's
 * callers treat that as untagged). */
void map_tag_pages(const void *base, size_t npages, const void *owner, void *tag) {
    uintptr_t addr = (uintptr_t)base;
    for (size_t i = 0; i < npages; i++, addr += MP_PAGE_SIZE) {
        map_leaf *leaf = map_leaf_of(addr);
        MP_ASSERT(leaf != NULL, "pages are tagged only inside a region in the map");
        map_page *page = map_page_of(leaf, addr);
        if (tag) {
            atomic_store_explicit(&page->tag, tag, memory_order_relaxed);
            atomic_store_explicit(&page->owner, owner, memory_order_release);
        } else {
            atomic_store_explicit(&page->owner, NULL, memory_order_relaxed);
            atomic_store_explicit(&page->tag, NULL, memory_order_relaxed);
        }
    }
}

/* ---- fork ------------------------------------------------------------- */

/* Before fork: no thread is inside map_insert/map_remove. */
void map_prefork(void) { mutex_lock(&map_lock); }

/* After fork, in the parent: release what map_prefork took. */
void map_postfork_parent(void) { mutex_unlock(&map_lock); }

/* After fork, in the child: a fresh lock (its holder may not exist here). */
void map_postfork_child(void) { mutex_init(&map_lock, MP_RANK_MAP, 0); }

/* ---- graves ------------------------------------------------------------- */

/* Remember a region about to be unmapped (the oldest grave is reused). */
void map_bury(map_graves *graves, const mp_region *region) {
    graves->slot[graves->next].base = (uintptr_t)region->base;
    graves->slot[graves->next].size = region->size;
    graves->next = (graves->next + 1) % MAP_GRAVES;
}

/* Whether ptr lies in one of the remembered regions. */
bool map_buried(const map_graves *graves, const void *ptr) {
    for (unsigned i = 0; i < MAP_GRAVES; i++)
        if ((uintptr_t)ptr - graves->slot[i].base < graves->slot[i].size)
            return true;
    return false;
}
