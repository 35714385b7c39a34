/*
 * arena.c - address space reserved in 2 MiB-aligned chunks, used lazily.
 *
 * An arena is one reservation plus the bookkeeping kept outside it: a span
 * descriptor per granule and a bit per granule saying whether it may be
 * resident ("dirty").  The bits make the resident estimate exact up to what
 * the program touched: a granule turns dirty when it is handed out and clean
 * when the pool purges it.  An arena knows no heap: heap.c adds it to one.
 */
#include "heap.h"

#include <stdlib.h>

/* Bytes of bookkeeping for an arena of `npages` granules: the arena, a
 * span descriptor per granule, two bitmaps of a bit per granule (dirty,
 * base-page advice) and one of a bit per 2 MiB extent (huge advice). */
static size_t arena_metadata_size(uint32_t npages, size_t *bits_words, size_t *extent_words) {
    *bits_words = ((size_t)npages + 63) / 64;
    *extent_words = (((size_t)npages >> (MP_HUGE_SHIFT - MP_PAGE_SHIFT)) + 64) / 64;
    return sizeof(mp_arena) + (size_t)npages * sizeof(mp_span) +
           (2 * *bits_words + *extent_words) * 8;
}

/* Give an arena's address space (and a shared arena's file) back. */
static void arena_unmap(mp_arena *arena, mp_acct *acct) {
    if (arena->fd >= 0)
        shm_release(&acct->os, arena->region.base, arena->alias, arena->region.size, arena->fd);
    else
        os_release(&acct->os, arena->region.base, arena->region.size);
}

/* Reserve a new arena of `arena_bytes` (more when `min_granules` needs it)
 * within the owner's capacity; NULL (and nothing changed) when the capacity
 * or the OS says no.  The caller adds it to a heap.  `shared`: the pages are
 * a memfd's (shm.c), so meshing can remap them. */
mp_arena *arena_create(const void *owner, mp_acct *acct, unsigned granule_shift,
                       int huge_advice, size_t arena_bytes, size_t min_granules, bool shared) {
    size_t need = MP_ALIGN_UP(min_granules << granule_shift, MP_CHUNK_SIZE);
    size_t size = arena_bytes > need ? arena_bytes : need;
    if (acct->capacity) {
        size_t room = acct->capacity > acct->reserved ? acct->capacity - acct->reserved : 0;
        room &= ~(MP_CHUNK_SIZE - 1);
        if (room < need)
            return NULL;
        if (size > room)
            size = room;
    }
    size_t npages = size >> granule_shift;
    if (npages > UINT32_MAX)
        return NULL;
    size_t bits_words, extent_words;
    size_t meta = arena_metadata_size((uint32_t)npages, &bits_words, &extent_words);
    /* calloc of this size is an untouched zero mapping: the descriptors cost
     * memory only for the granules that become span heads. */
    mp_arena *arena = calloc(1, meta);
    if (arena == NULL)
        return NULL;
    int fd = -1;
    char *alias = NULL;
    char *base = shared ? shm_reserve(&acct->os, size, MP_CHUNK_SIZE, &fd, &alias)
                        : os_reserve(&acct->os, size, MP_CHUNK_SIZE);
    if (base == NULL) {
        free(arena);
        return NULL;
    }
    arena->region = (mp_region){.kind = MP_REGION_ARENA, .granule_shift = granule_shift,
                                .owner = owner, .base = base, .size = size};
    arena->npages = (uint32_t)npages;
    arena->spans = (mp_span *)(arena + 1);
    arena->dirty_bits = (uint64_t *)(arena->spans + npages);
    arena->small_bits = arena->dirty_bits + bits_words;
    arena->huge_bits = arena->small_bits + bits_words;
    arena->huge = huge_advice == 1 && granule_shift == MP_HUGE_SHIFT;
    arena->metadata_bytes = meta;
    arena->fd = fd;
    arena->alias = alias;
    arena->fork_fd = arena->fork_slot = -1;
    if (map_insert(&arena->region) != 0) {
        arena_unmap(arena, acct);
        free(arena);
        return NULL;
    }
    os_advise_huge(&acct->os, base, size, huge_advice);
    acct->reserved += size;
    acct->metadata += meta;
    return arena;
}

/* Unmap an arena and drop its bookkeeping; its heap has already unlinked it
 * and its pages are no longer counted as resident.  Its range goes to the
 * graves, so a late free into it reads as a double free. */
void arena_destroy(mp_arena *arena, mp_acct *acct, map_graves *graves) {
    map_bury(graves, &arena->region);
    map_remove(&arena->region);
    arena_unmap(arena, acct);
    acct->reserved -= arena->region.size;
    acct->metadata -= arena->metadata_bytes;
    free(arena);
}

/* Mark granules as handed out; return how many were clean (new resident). */
uint32_t arena_mark_dirty(mp_arena *arena, uint32_t page, uint32_t n) {
    MP_ASSERT((uint64_t)page + n <= arena->npages, "dirty bits stay inside the arena");
    uint32_t fresh = bits_set(arena->dirty_bits, page, n);
    arena->dirty_count += fresh;
    return fresh;
}

/* Number of dirty granules in [page, page+n). */
uint32_t arena_count_dirty(const mp_arena *arena, uint32_t page, uint32_t n) {
    MP_ASSERT((uint64_t)page + n <= arena->npages, "dirty bits stay inside the arena");
    return bits_count(arena->dirty_bits, page, n);
}

/* Mark granules as given back (after the purge itself). */
void arena_clear_dirty(mp_arena *arena, uint32_t page, uint32_t n) {
    MP_ASSERT((uint64_t)page + n <= arena->npages, "dirty bits stay inside the arena");
    arena->dirty_count -= bits_clear(arena->dirty_bits, page, n);
}

/* Page-size advice for a block of `used` bytes handed out on granules
 * [page, page+n) that were all clean (so nothing of them is resident yet):
 * in a huge-page arena, its last granule is faulted in base pages when the
 * block leaves at least a quarter of it unused (a huge page there would make
 * the unused part resident: numpy's default, an mmap per block, faults its
 * tail in base pages too), and every other granule in huge pages.  Granules
 * keep their advice until it must change, so a reused layout costs no call. */
void arena_advise_fresh(mp_arena *arena, mp_os_counts *os, uint32_t page, uint32_t n,
                        uint64_t used) {
    MP_ASSERT(n > 0 && (uint64_t)page + n <= arena->npages, "advice stays inside the arena");
    if (!arena->huge)
        return;
    unsigned shift = arena->region.granule_shift;
    uint64_t granule = (uint64_t)1 << shift;
    uint64_t body = (uint64_t)(n - 1) << shift;
    uint64_t tail_used = used > body ? used - body : 0;
    bool tail_small = granule - (tail_used < granule ? tail_used : granule) >= granule / 4;
    char *base = arena->region.base;
    if (n > 1 && bits_count(arena->small_bits, page, n - 1) != 0) {
        bits_clear(arena->small_bits, page, n - 1);
        os_advise_huge(os, base + ((size_t)page << shift), (size_t)body, 1);
    }
    uint32_t last = page + n - 1;
    bool is_small = bits_count(arena->small_bits, last, 1) != 0;
    if (tail_small == is_small)
        return;
    if (tail_small)
        bits_set(arena->small_bits, last, 1);
    else
        bits_clear(arena->small_bits, last, 1);
    os_advise_huge(os, base + ((size_t)last << shift), (size_t)granule, !tail_small);
}

/* Page-size advice for granules [page, page+n) of a base-page arena about to
 * turn resident (heap.huge_extents): every 2 MiB extent they touch that is
 * still wholly clean (so its first fault decides its page size) is advised
 * huge pages when the range covers it whole, base pages when only in part
 * (a huge page there would make resident what no block uses, as the tail
 * of a 4.6 MiB block would).  So a large block's interior faults 2 MiB at a
 * time and its ends 4 KiB at a time, whatever else shares their extents,
 * and resident memory stays what the dirty bits say.  Extents keep their
 * advice until it must change, so a reused layout costs no call. */
void arena_advise_extents(mp_arena *arena, mp_os_counts *os, uint32_t page, uint32_t n) {
    MP_ASSERT(n > 0 && (uint64_t)page + n <= arena->npages, "advice stays inside the arena");
    unsigned shift = MP_HUGE_SHIFT - arena->region.granule_shift;
    uint32_t per = 1u << shift, end = page + n;
    uint32_t run_first = 0, run_len = 0;
    int run_huge = -1;
    for (uint32_t e = page >> shift; e <= (end - 1) >> shift; e++) {
        uint32_t first = e << shift;
        int want = -1; /* -1: leave it (resident already, or the arena's end) */
        if (first + per <= arena->npages && arena_count_dirty(arena, first, per) == 0) {
            want = page <= first && end >= first + per;
            bool is_huge = bits_count(arena->huge_bits, e, 1) != 0;
            if (want == (int)is_huge)
                want = -1;
            else if (want)
                bits_set(arena->huge_bits, e, 1);
            else
                bits_clear(arena->huge_bits, e, 1);
        }
        if (want == run_huge && want >= 0 && run_first + run_len == e) {
            run_len++;
            continue;
        }
        if (run_huge >= 0)
            os_advise_huge(os, arena->region.base + ((size_t)run_first << MP_HUGE_SHIFT),
                           (size_t)run_len << MP_HUGE_SHIFT, run_huge);
        run_huge = want;
        run_first = e;
        run_len = 1;
    }
    if (run_huge >= 0)
        os_advise_huge(os, arena->region.base + ((size_t)run_first << MP_HUGE_SHIFT),
                       (size_t)run_len << MP_HUGE_SHIFT, run_huge);
}
