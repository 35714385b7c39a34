/*
 * addrmap.c - a hash map from a live block's address to what a recorder
 * keeps about it (the history: requested size and call site; the trace:
 * the block's id, in the site field).
 *
 * Open addressing with linear probing; deletion by backward shift (no
 * tombstones, so a long recording never degrades); Fibonacci hashing of the
 * address without its always-zero low bits.  Not thread-safe: its owner's
 * lock guards it.
 */
#include "trace.h"

#include <stdlib.h>
#include <string.h>

/* Slot index of a key's home position. */
static size_t addrmap_home(const addrmap *m, uintptr_t key) {
    uint64_t h = (uint64_t)(key >> 4) * 0x9E3779B97F4A7C15ull;
    return (size_t)(h >> 20) & (m->cap - 1);
}

/* Index of key's slot, or of the empty slot where it would go. */
static size_t addrmap_find(const addrmap *m, uintptr_t key) {
    size_t i = addrmap_home(m, key);
    while (m->slots[i].key != 0 && m->slots[i].key != key)
        i = (i + 1) & (m->cap - 1);
    return i;
}

/* An empty map of 1024 slots; 0, or -1 when out of memory. */
int addrmap_init(addrmap *m) {
    m->cap = 1024;
    m->used = 0;
    m->slots = calloc(m->cap, sizeof *m->slots);
    return m->slots ? 0 : -1;
}

/* Free the slots. */
void addrmap_free(addrmap *m) {
    free(m->slots);
    m->slots = NULL;
    m->cap = m->used = 0;
}

/* Forget every entry, keeping the memory. */
void addrmap_clear(addrmap *m) {
    memset(m->slots, 0, m->cap * sizeof *m->slots);
    m->used = 0;
}

/* Double the table; -1 (table unchanged) when out of memory. */
static int addrmap_grow(addrmap *m) {
    addrmap bigger = {.cap = m->cap * 2, .used = m->used};
    bigger.slots = calloc(bigger.cap, sizeof *bigger.slots);
    if (bigger.slots == NULL)
        return -1;
    for (size_t i = 0; i < m->cap; i++)
        if (m->slots[i].key != 0)
            bigger.slots[addrmap_find(&bigger, m->slots[i].key)] = m->slots[i];
    free(m->slots);
    *m = bigger;
    return 0;
}

/* Set key's entry (inserting it or replacing what it held); -1 when the
 * table could not grow (nothing changed). */
int addrmap_put(addrmap *m, uintptr_t key, uint64_t size, int32_t site) {
    if ((m->used + 1) * 2 > m->cap && addrmap_grow(m) != 0)
        return -1;
    size_t i = addrmap_find(m, key);
    if (m->slots[i].key == 0)
        m->used++;
    m->slots[i] = (addrmap_slot){.key = key, .size = size, .site = site};
    return 0;
}

/* Take key's entry out into *out; 0 when the map did not hold it. */
int addrmap_take(addrmap *m, uintptr_t key, addrmap_slot *out) {
    if (key == 0)
        return 0;
    size_t i = addrmap_find(m, key);
    if (m->slots[i].key != key)
        return 0;
    *out = m->slots[i];
    /* Shift later members of the probe run back over the hole, so lookups
     * never stop early at it: j's entry may move to i only if its home is
     * not in (i, j]. */
    size_t mask = m->cap - 1, j = i;
    for (;;) {
        j = (j + 1) & mask;
        if (m->slots[j].key == 0)
            break;
        size_t home = addrmap_home(m, m->slots[j].key);
        int between = (i <= j) ? (home > i && home <= j) : (home > i || home <= j);
        if (!between) {
            m->slots[i] = m->slots[j];
            i = j;
        }
    }
    m->slots[i].key = 0;
    m->used--;
    return 1;
}
