/*
 * test_map.c - unit tests of the address map layer alone: regions in, looked
 * up at every chunk and only there, out again; page tags; graves.
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

/* A page tag is seen by its owner only, on the tagged pages only, and is
 * gone once untagged. */
static void test_page_tags(void) {
    mp_acct owner = {0}, other = {0};
    size_t size = 2 * MP_CHUNK_SIZE;
    char *base = os_reserve(&owner.os, size, MP_CHUNK_SIZE);
    CHECK(base != NULL);
    if (base == NULL)
        return;
    mp_region r = {.kind = MP_REGION_ARENA, .owner = &owner, .base = base, .size = size};
    CHECK_EQ_U(map_insert(&r), 0);
    int tag;
    /* 3 pages straddling the chunk boundary */
    char *first = base + MP_CHUNK_SIZE - MP_PAGE_SIZE;
    CHECK(map_page_tag(first, &owner) == NULL);
    map_tag_pages(first, 3, &owner, &tag);
    for (int i = 0; i < 3; i++) {
        CHECK(map_page_tag(first + i * MP_PAGE_SIZE, &owner) == &tag);
        CHECK(map_page_tag(first + i * MP_PAGE_SIZE + MP_PAGE_SIZE - 1, &owner) == &tag);
        CHECK(map_page_tag(first + i * MP_PAGE_SIZE, &other) == NULL); /* another owner */
    }
    CHECK(map_page_tag(first - 1, &owner) == NULL);
    CHECK(map_page_tag(first + 3 * MP_PAGE_SIZE, &owner) == NULL);
    CHECK(map_page_tag((void *)((uintptr_t)1 << 50), &owner) == NULL); /* outside 48 bits */
    CHECK(map_page_tag(NULL, NULL) == NULL); /* untagged pages hold no owner either */
    map_tag_pages(first, 3, &owner, NULL);
    for (int i = 0; i < 3; i++)
        CHECK(map_page_tag(first + i * MP_PAGE_SIZE, &owner) == NULL);
    map_remove(&r);
    os_release(&owner.os, base, size);
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
    test_page_tags();
    test_graves();
    return test_report("test_map");
}
