/*
 * sc.c - request size -> size class -> block size.  Pure functions.
 *
 * Classes are multiples of 64 bytes (every block is 64-byte aligned, the
 * promise of mp_alloc): 64..512 in steps of 64, then 8 classes per power of
 * two, so a request above 512 bytes wastes at most 1/8 of its block.
 * Slab lengths: sc_slab_pages is a class's longest slab, sc_slab_grow_pages
 * the shorter ones its first slabs take (slab.c).  The public
 * mp_size_class_* functions are these, for tests and the Python layer.
 */
#include "small.h"

/* The class of 64-byte bucket b (sizes 64b+1 .. 64b+64) as a constant
 * expression: sc_of's formula with L = floor(log2 b), for sc_table. */
#define SC_LOG2(b) ((b) >= 512 ? 9 : (b) >= 256 ? 8 : (b) >= 128 ? 7 : (b) >= 64 ? 6 \
                    : (b) >= 32 ? 5 : (b) >= 16 ? 4 : 3)
#define SC_BUCKET(b) \
    ((b) < 8 ? (b) : 8 * (SC_LOG2(b) - 2) + (((b) - (1 << SC_LOG2(b))) >> (SC_LOG2(b) - 3)))
#define SC_T4(b) SC_BUCKET(b), SC_BUCKET((b) + 1), SC_BUCKET((b) + 2), SC_BUCKET((b) + 3)
#define SC_T16(b) SC_T4(b), SC_T4((b) + 4), SC_T4((b) + 8), SC_T4((b) + 12)
#define SC_T64(b) SC_T16(b), SC_T16((b) + 16), SC_T16((b) + 32), SC_T16((b) + 48)
#define SC_T256(b) SC_T64(b), SC_T64((b) + 64), SC_T64((b) + 128), SC_T64((b) + 192)

_Static_assert(MP_SMALL_MAX_LIMIT >> 6 == 1024, "sc_table's initializer has 1024 buckets");
const uint8_t sc_table[MP_SMALL_MAX_LIMIT >> 6] = {SC_T256(0), SC_T256(256), SC_T256(512),
                                                   SC_T256(768)};

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

/* The length in [lo, hi] pages that wastes the smallest fraction of the
 * slab at its tail (the shortest of equals): the tail holds no block. */
static uint32_t least_waste_pages(size_t block_size, uint32_t lo, uint32_t hi) {
    uint32_t best = lo;
    size_t best_waste = SIZE_MAX;
    for (uint32_t pages = lo; pages <= hi; pages++) {
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

/* Fewest pages holding `bytes`. */
static uint32_t pages_for(size_t bytes) {
    return (uint32_t)(MP_ALIGN_UP(bytes, MP_PAGE_SIZE) >> MP_PAGE_SHIFT);
}

/* Pages of a class's largest slab: at least 64 KiB and 8 blocks, then the
 * length (up to twice that) that wastes the least at the slab's tail.  Long
 * enough that a busy class takes the class lock and the page heap rarely. */
uint32_t sc_slab_pages(size_t block_size) {
    size_t min_bytes = 65536;
    if (block_size * 8 > min_bytes)
        min_bytes = block_size * 8;
    uint32_t lo = pages_for(min_bytes);
    return least_waste_pages(block_size, lo, 2 * lo);
}

/* Pages of a growing slab that must hold `min_bytes`: the fewest pages that
 * do, or up to half again as many when that wastes a smaller fraction at
 * the tail (a narrower window than sc_slab_pages', so a small slab stays
 * small); never more than sc_slab_pages, which it becomes once min_bytes
 * reaches that.  Doubling a min_bytes of whole pages gives a longer slab
 * (the windows [lo, 3lo/2] and [2lo, 3lo] do not overlap) until the cap. */
uint32_t sc_slab_grow_pages(size_t block_size, size_t min_bytes) {
    uint32_t max = sc_slab_pages(block_size);
    if (min_bytes < block_size)
        min_bytes = block_size;
    uint32_t lo = pages_for(min_bytes);
    if (lo >= max)
        return max;
    uint32_t pages = least_waste_pages(block_size, lo, lo + lo / 2);
    return pages < max ? pages : max;
}

/* Pages of every slab of a class when meshing is on: meshing pairs slabs of
 * one length whose live blocks do not overlap, and two random 10% subsets
 * of n blocks are disjoint with a probability of about 0.9^(n/10), so slabs
 * are short: the fewest pages holding a block, or up to four times that
 * when the tail would waste more than 1/8 (then the least waste). */
uint32_t sc_mesh_slab_pages(size_t block_size) {
    uint32_t lo = pages_for(block_size);
    size_t bytes = (size_t)lo << MP_PAGE_SHIFT;
    if ((bytes % block_size) * 8 <= bytes)
        return lo;
    return least_waste_pages(block_size, lo, 4 * lo);
}

/* Multiplier that turns a block's byte offset into its index with one
 * multiply instead of a division: exact for every multiple of the block
 * size below 2^32 (slabs are at most 1 MiB), as the size-class test checks
 * for every block of every class's longest slab.  An offset inside a block
 * may come out one too high near the block's end; callers check that the
 * index's start is the offset, so that stays an interior pointer. */
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
