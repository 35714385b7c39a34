/*
 * bits.c - runs of bits in a bitmap of 64-bit words: the arenas' dirty bits
 * and the slabs' purged-page bits.
 */
#include "base.h"

/* Mask of bits [lo, hi) within one 64-bit word (0 <= lo < hi <= 64). */
static inline uint64_t word_mask(unsigned lo, unsigned hi) {
    uint64_t upper = hi == 64 ? ~(uint64_t)0 : (((uint64_t)1 << hi) - 1);
    return upper & ~(((uint64_t)1 << lo) - 1);
}

enum { BITS_COUNT, BITS_SET, BITS_CLEAR };

/* Apply `op` to bits [first, first+n); return the number of bits that were
 * set before (count, clear) or clear before (set). */
static uint32_t bits_apply(uint64_t *bits, uint32_t first, uint32_t n, int op) {
    uint32_t changed = 0;
    uint64_t pos = first, end = (uint64_t)first + n;
    while (pos < end) {
        size_t w = pos / 64;
        unsigned lo = pos % 64;
        unsigned hi = (end - (uint64_t)w * 64) < 64 ? (unsigned)(end - (uint64_t)w * 64) : 64;
        uint64_t mask = word_mask(lo, hi);
        if (op == BITS_SET) {
            changed += (uint32_t)__builtin_popcountll(~bits[w] & mask);
            bits[w] |= mask;
        } else {
            changed += (uint32_t)__builtin_popcountll(bits[w] & mask);
            if (op == BITS_CLEAR)
                bits[w] &= ~mask;
        }
        pos = (uint64_t)w * 64 + hi;
    }
    return changed;
}

/* Set bits [first, first+n); returns how many were clear before. */
uint32_t bits_set(uint64_t *bits, uint32_t first, uint32_t n) {
    return bits_apply(bits, first, n, BITS_SET);
}

/* Clear bits [first, first+n); returns how many were set before. */
uint32_t bits_clear(uint64_t *bits, uint32_t first, uint32_t n) {
    return bits_apply(bits, first, n, BITS_CLEAR);
}

/* Number of set bits in [first, first+n). */
uint32_t bits_count(const uint64_t *bits, uint32_t first, uint32_t n) {
    return bits_apply((uint64_t *)bits, first, n, BITS_COUNT);
}
