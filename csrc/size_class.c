/*
 * size_class.c - request size -> size class -> block size.  Pure functions.
 *
 * Classes are multiples of 64 bytes (every block is 64-byte aligned, the
 * promise of mp_alloc): 64..512 in steps of 64, then 8 classes per power of
 * two, so a request above 512 bytes wastes at most 1/8 of its block.
 */
#include "internal.h"

/* Bytes per block of class `cls`. */
size_t sc_block(unsigned cls) {
    if (cls < 8)
        return (size_t)(cls + 1) * 64;
    unsigned group = (cls - 8) / 8, step = (cls - 8) % 8;
    size_t base = (size_t)512 << group;
    return base + (step + 1) * (base >> 3);
}

/* Number of classes needed to serve every size up to small_max. */
unsigned sc_count(size_t small_max) { return sc_of(small_max) + 1; }

/* Pages per slab for a block size: at least 64 KiB and 8 blocks, then the
 * length (up to twice that) that wastes the least at the slab's tail. */
uint32_t sc_slab_pages(size_t block_size) {
    size_t min_bytes = 65536;
    if (block_size * 8 > min_bytes)
        min_bytes = block_size * 8;
    uint32_t lo = (uint32_t)(MP_ALIGN_UP(min_bytes, MP_PAGE_SIZE) >> MP_PAGE_SHIFT);
    uint32_t best = lo;
    size_t best_waste = SIZE_MAX;
    for (uint32_t pages = lo; pages <= 2 * lo; pages++) {
        size_t bytes = (size_t)pages << MP_PAGE_SHIFT;
        /* compare waste as a fraction: waste/bytes, cross-multiplied */
        size_t waste = bytes % block_size;
        if (best_waste == SIZE_MAX ||
            waste * ((size_t)best << MP_PAGE_SHIFT) < best_waste * bytes) {
            best = pages;
            best_waste = waste;
        }
        if (waste == 0)
            break;
    }
    return best;
}

/* Multiplier that turns a byte offset into a block index with one multiply
 * instead of a division: exact for every offset below 2^32 / 64 (slabs are
 * at most 512 KiB), as the size-class test checks exhaustively. */
uint32_t sc_magic(uint32_t block_size) {
    return (uint32_t)(((uint64_t)1 << 32) / block_size + 1);
}

unsigned mp_size_class_count(size_t small_max) {
    if (small_max > MP_SMALL_MAX_LIMIT)
        small_max = MP_SMALL_MAX_LIMIT;
    return sc_count(small_max);
}

unsigned mp_size_class_of(size_t size) { return sc_of(size); }

size_t mp_size_class_block(unsigned cls) { return sc_block(cls); }
