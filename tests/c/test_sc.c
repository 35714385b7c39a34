/*
 * test_sc.c - sc.c: table test of the small size classes.
 *
 * Walks every request size 0..small_max and holds the class functions to the
 * promises the slab layer builds on: the class fits the request, blocks are
 * whole cache lines (so every small block is 64-aligned), classes grow with
 * the request, the chosen class is the smallest that fits, and rounding
 * wastes at most 12.5% above 512 bytes.  Then the slab lengths: a class's
 * first slab is small, each next one doubles up to the full length, every
 * length wastes little at its tail, and the one-multiply block index is
 * exact for every offset of the longest slab.  The fast path's class table
 * agrees with the formula at every size it serves.
 */
#include "small/small.h"
#include "test.h"

/* Largest small_max the header allows. */
#define SMALL_MAX_LIMIT 65536u

/* Check every size up to small_max against the class table for that limit. */
static void check_table(size_t small_max)
{
    unsigned count = mp_size_class_count(small_max);
    CHECK_MSG(count >= 1 && count <= MP_MAX_CLASSES,
              "small_max %zu: class count %u outside 1..%d", small_max, count,
              MP_MAX_CLASSES);
    if (count < 1 || count > MP_MAX_CLASSES)
        return;
    unsigned prev_cls = 0;
    for (size_t size = 0; size <= small_max; size++) {
        unsigned cls = mp_size_class_of(size);
        if (!CHECK_MSG(cls < count, "size %zu -> class %u >= count %u (small_max %zu)",
                       size, cls, count, small_max))
            continue;
        size_t block = mp_size_class_block(cls);
        CHECK_MSG(block >= size, "size %zu -> class %u block %zu too small", size,
                  cls, block);
        CHECK_MSG(block % 64 == 0 && block > 0,
                  "class %u block %zu is not a positive multiple of 64", cls, block);
        CHECK_MSG(cls >= prev_cls, "size %zu -> class %u below class %u of size %zu",
                  size, cls, prev_cls, size - 1);
        /* smallest fit: the class below would not hold this size */
        if (cls > 0)
            CHECK_MSG(mp_size_class_block(cls - 1) < size,
                      "size %zu -> class %u (block %zu) but class %u (block %zu) fits",
                      size, cls, block, cls - 1, mp_size_class_block(cls - 1));
        /* waste <= 12.5%: block <= size * 9/8 */
        if (size > 512)
            CHECK_MSG(block * 8 <= size * 9,
                      "size %zu -> block %zu wastes %.1f%% (> 12.5%%)", size, block,
                      100.0 * (double)(block - size) / (double)size);
        prev_cls = cls;
    }
    /* the last class is needed: it serves small_max itself */
    CHECK_MSG(mp_size_class_of(small_max) == count - 1,
              "small_max %zu -> class %u, but count is %u (unused classes?)",
              small_max, mp_size_class_of(small_max), count);
}

/* The fast path's class table (sc_of_small) is sc_of for every size it
 * serves, 1 .. 64 KiB. */
static void check_class_table(void)
{
    unsigned bad = 0;
    for (size_t size = 1; size <= SMALL_MAX_LIMIT; size++)
        if (sc_of_small(size) != sc_of(size) && bad++ < 5)
            (void)CHECK_MSG(0, "size %zu: table class %u, sc_of %u", size, sc_of_small(size),
                            sc_of(size));
    CHECK_MSG(bad == 0, "%u sizes where the class table and sc_of differ", bad);
}

/* Block sizes strictly increase with the class index. */
static void check_blocks_increase(void)
{
    unsigned count = mp_size_class_count(SMALL_MAX_LIMIT);
    for (unsigned c = 1; c < count && c < MP_MAX_CLASSES; c++)
        CHECK_MSG(mp_size_class_block(c) > mp_size_class_block(c - 1),
                  "block(%u)=%zu <= block(%u)=%zu", c, mp_size_class_block(c), c - 1,
                  mp_size_class_block(c - 1));
}

/* A larger small_max never means fewer classes. */
static void check_count_monotonic(void)
{
    unsigned prev = 0;
    for (size_t sm = 64; sm <= SMALL_MAX_LIMIT; sm += 64) {
        unsigned count = mp_size_class_count(sm);
        CHECK_MSG(count >= prev, "count(%zu)=%u < count(%zu)=%u", sm, count, sm - 64,
                  prev);
        prev = count;
    }
}

/* The pool's default small_max and the class of its largest request agree. */
static void check_default_config(void)
{
    mp_config cfg;
    mp_config_default(&cfg);
    CHECK_MSG(cfg.small_max > 0 && cfg.small_max <= SMALL_MAX_LIMIT,
              "default small_max %zu outside 1..65536", cfg.small_max);
    if (cfg.small_max > 0 && cfg.small_max <= SMALL_MAX_LIMIT)
        check_table(cfg.small_max);
}

/* The slab lengths of one block size, as slab.c steps through them: the
 * first holds 2 blocks in the fewest pages (or up to half again as many
 * when that wastes less), each next one at least doubles the one before,
 * and they reach sc_slab_pages (>= 64 KiB and 8 blocks) within
 * MP_SLAB_STEPS.  The first wastes less than a page at its tail (a page
 * or two of 4 KiB cannot always be cut to the block), every later one at
 * most 1/8 of the slab. */
static void check_slab_lengths(size_t bs)
{
    uint32_t max = sc_slab_pages(bs);
    size_t max_bytes = (size_t)max << MP_PAGE_SHIFT;
    CHECK_MSG(max_bytes >= 65536 && max_bytes / bs >= 8, "block %zu: longest slab %zu bytes", bs,
              max_bytes);
    uint32_t fewest = (uint32_t)((2 * bs + MP_PAGE_SIZE - 1) >> MP_PAGE_SHIFT);
    uint32_t pages = sc_slab_grow_pages(bs, 2 * bs);
    CHECK_MSG(pages >= fewest && pages <= fewest + fewest / 2,
              "block %zu: first slab %u pages, the fewest holding 2 blocks is %u", bs, pages,
              fewest);
    unsigned steps = 1;
    for (;;) {
        size_t bytes = (size_t)pages << MP_PAGE_SHIFT, waste = bytes % bs;
        CHECK_MSG(bytes / bs >= 2 && bytes / bs <= UINT16_MAX, "block %zu: %u pages hold %zu",
                  bs, pages, bytes / bs);
        CHECK_MSG(steps == 1 ? waste < MP_PAGE_SIZE : waste * 8 <= bytes,
                  "block %zu: %u pages waste %zu bytes at the tail", bs, pages, waste);
        if (pages >= max)
            break;
        uint32_t next = sc_slab_grow_pages(bs, bytes * 2);
        CHECK_MSG(next >= 2 * pages || next == max,
                  "block %zu: slab after %u pages has %u (max %u)", bs, pages, next, max);
        CHECK_MSG(next <= max, "block %zu: %u pages beyond the longest %u", bs, next, max);
        pages = next;
        steps++;
    }
    CHECK_MSG(pages == max && steps <= MP_SLAB_STEPS, "block %zu: %u steps to %u pages", bs,
              steps, max);
}

/* sc_index(off, sc_magic(bs)) == off / bs for every block start of the
 * longest slab of every class: the fast paths' division by multiply.  (An
 * offset inside a block may map to the next index: callers check that the
 * index's start is the offset, so it is caught as interior all the same.) */
static void check_index_exact(size_t bs)
{
    uint32_t magic = sc_magic((uint32_t)bs);
    size_t bytes = (size_t)sc_slab_pages(bs) << MP_PAGE_SHIFT;
    size_t bad = 0;
    for (uint64_t off = 0; off < bytes; off += bs)
        bad += sc_index(off, magic) != off / bs;
    for (uint64_t off = 1; off < bytes; off++) /* every offset: never past the next block */
        bad += sc_index(off, magic) > off / bs + 1;
    CHECK_MSG(bad == 0, "block %zu: %zu offsets of a %zu-byte slab get the wrong index", bs, bad,
              bytes);
}

int main(void)
{
    check_table(SMALL_MAX_LIMIT);
    check_table(1024);
    check_table(4096);
    check_default_config();
    check_class_table();
    check_blocks_increase();
    check_count_monotonic();
    for (unsigned c = 0; c < mp_size_class_count(SMALL_MAX_LIMIT) && c < MP_MAX_CLASSES; c++) {
        check_slab_lengths(mp_size_class_block(c));
        check_index_exact(mp_size_class_block(c));
    }
    printf("size classes for small_max 65536: %u; blocks:", mp_size_class_count(SMALL_MAX_LIMIT));
    for (unsigned c = 0; c < mp_size_class_count(SMALL_MAX_LIMIT) && c < MP_MAX_CLASSES; c++)
        printf(" %zu", mp_size_class_block(c));
    printf("\n");
    return test_report("test_sc");
}
