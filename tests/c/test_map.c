/*
 * test_map.c - unit tests of the address map layer alone: regions in, looked
 * up at every chunk and only there, out again; graves.
 */
#include "map/map.h"
#include "test.h"

#include <sys/mman.h>

static void test_insert_lookup_remove(void) {
    mp_acct owner = {0};
    size_t size = 3 * MP_CHUNK_SIZE;
    char *base = os_reserve(&owner.os, size, MP_CHUNK_SIZE);
    CHECK(base != NULL && ((uintptr_t)base & (MP_CHUNK_SIZE - 1)) == 0);
    mp_region r = {.kind = MP_REGION_DIRECT, .owner = &owner, .base = base, .size = size};
    CHECK(map_lookup(base) == NULL);
    CHECK_EQ_U(map_insert(&r), 0);
    CHECK(map_lookup(base) == &r);
    CHECK(map_lookup(base + size / 2) == &r);
    CHECK(map_lookup(base + size - 1) == &r);
    CHECK(map_lookup(base + size) == NULL);
    CHECK(map_lookup(base - 1) == NULL);
    CHECK(map_lookup((void *)((uintptr_t)1 << 50)) == NULL); /* outside 48 bits */
    CHECK(map_lookup(NULL) == NULL);
    map_remove(&r);
    CHECK(map_lookup(base) == NULL && map_lookup(base + size - 1) == NULL);
    os_release(&owner.os, base, size);
    CHECK_EQ_U(atomic_load(&owner.os.mmap), 1);
}

static void test_graves(void) {
    map_graves g = {0};
    mp_region r = {.base = (char *)((uintptr_t)64 << 21), .size = MP_CHUNK_SIZE};
    CHECK(!map_buried(&g, r.base));
    map_bury(&g, &r);
    CHECK(map_buried(&g, r.base) && map_buried(&g, r.base + MP_CHUNK_SIZE - 1));
    CHECK(!map_buried(&g, r.base + MP_CHUNK_SIZE));
    /* the ring forgets the oldest after MAP_GRAVES more burials */
    for (unsigned i = 0; i < MAP_GRAVES; i++) {
        mp_region other = {.base = (char *)((uintptr_t)(128 + i) << 21), .size = MP_CHUNK_SIZE};
        map_bury(&g, &other);
    }
    CHECK(!map_buried(&g, r.base));
}

int main(void) {
    test_insert_lookup_remove();
    test_graves();
    return test_report("test_map");
}
