/*
 * os.c - the only file that talks to the kernel about memory.
 *
 * Every call is counted (mp_os_counts, shown in the pool's statistics), so a
 * user can see how many system calls the pool spent (the point of a pool is
 * to spend few).
 */
#define _GNU_SOURCE /* MAP_ANONYMOUS, MREMAP_*, MADV_HUGEPAGE under -std=c11 */
#include "base.h"

#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#ifndef MADV_HUGEPAGE
#define MADV_HUGEPAGE 14
#endif
#ifndef MADV_NOHUGEPAGE
#define MADV_NOHUGEPAGE 15
#endif

/* Count one system call. */
static void count(_Atomic uint64_t *counter) {
    atomic_fetch_add_explicit(counter, 1, memory_order_relaxed);
}

/* Reserve `size` bytes of zeroed, readable/writable address space aligned to
 * `align` (a power of two >= page size); NULL when the kernel refuses.  The
 * pages cost no memory until touched. */
void *os_reserve(mp_os_counts *os, size_t size, size_t align) {
    if (size == 0 || size > MP_MAX_REQUEST * 2)
        return NULL;
    size_t span = size + align - MP_PAGE_SIZE; /* room to slide to alignment */
    if (span < size)
        return NULL;
    count(&os->mmap);
    char *raw = mmap(NULL, span, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (raw == MAP_FAILED)
        return NULL;
    char *aligned = (char *)MP_ALIGN_UP((uintptr_t)raw, align);
    size_t head = (size_t)(aligned - raw);
    size_t tail = span - head - size;
    /* Trimming the slack keeps the reservation exactly `size`, so two
     * regions never share a 2 MiB chunk of the chunk map. */
    if (head) {
        count(&os->munmap);
        munmap(raw, head);
    }
    if (tail) {
        count(&os->munmap);
        munmap(aligned + size, tail);
    }
    /* ASan: nothing in a new region is a live block yet (base.h, MP_POISON). */
    MP_POISON(aligned, size);
    MP_ROOT_ADD(aligned, size);
    return aligned;
}

/* Zeroed address space for a lock-free table of the process that is never
 * given back (the address map's leaves): not a pool's memory, so neither
 * counted nor poisoned, and not a leak-checker root (what its entries point
 * at is reachable from the pools).  Only the pages written cost memory.
 * NULL when the kernel refuses. */
void *os_reserve_table(size_t size) {
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

/* Return a reservation to the kernel entirely. */
void os_release(mp_os_counts *os, void *addr, size_t size) {
    /* The shadow outlives the mapping: a later mmap at this address must
     * not inherit our poison. */
    MP_ROOT_DEL(addr, size);
    MP_UNPOISON(addr, size);
    count(&os->munmap);
    munmap(addr, size);
}

/* Drop the pages of a range: they stop counting as resident and read back
 * as zeros.  MADV_DONTNEED rather than MADV_FREE: RSS drops at once (what
 * users measure) and the zero guarantee lets calloc skip its memset. */
void os_purge(mp_os_counts *os, void *addr, size_t size) {
    count(&os->madvise);
    madvise(addr, size, MADV_DONTNEED);
}

/* Ask for (huge=1) or against (huge=0) transparent huge pages on a range. */
void os_advise_huge(mp_os_counts *os, void *addr, size_t size, int huge) {
    count(&os->madvise);
    madvise(addr, size, huge ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
}

/* Grow a mapping to new_size keeping its content and `align` alignment:
 * in place when the kernel can, otherwise the pages are moved (not copied)
 * into a fresh aligned reservation.  NULL when that fails; the old mapping
 * is then untouched. */
void *os_remap_grow(mp_os_counts *os, void *addr, size_t old_size, size_t new_size,
                    size_t align) {
    count(&os->mremap);
    void *same = mremap(addr, old_size, new_size, 0);
    if (same != MAP_FAILED) {
        MP_ROOT_DEL(addr, old_size);
        MP_ROOT_ADD(addr, new_size);
        MP_POISON((char *)addr + old_size, new_size - old_size);
        return same;
    }
    void *target = os_reserve(os, new_size, align);
    if (target == NULL)
        return NULL;
    count(&os->mremap);
    void *moved = mremap(addr, old_size, new_size, MREMAP_MAYMOVE | MREMAP_FIXED, target);
    if (moved == MAP_FAILED) {
        os_release(os, target, new_size);
        return NULL;
    }
    /* target was registered and poisoned by os_reserve; the old range is
     * gone.  The caller marks the live block. */
    MP_ROOT_DEL(addr, old_size);
    MP_UNPOISON(addr, old_size);
    return moved;
}

/* Shrink a mapping in place; 0 on success. */
int os_remap_shrink(mp_os_counts *os, void *addr, size_t old_size, size_t new_size) {
    count(&os->mremap);
    if (mremap(addr, old_size, new_size, 0) == MAP_FAILED)
        return -1;
    MP_ROOT_DEL(addr, old_size);
    MP_ROOT_ADD(addr, new_size);
    MP_UNPOISON((char *)addr + new_size, old_size - new_size);
    return 0;
}

/* Monotonic milliseconds, from the cheap coarse clock (decay needs ms, not ns). */
int64_t os_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Monotonic nanoseconds (meshing's pause statistics). */
int64_t os_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* The process's resident set from /proc/self/statm (its second field, in
 * pages); 0 when it cannot be read.  Not a pool figure: what a resident
 * limit of "auto" is measured against, and what a pool's own estimate is
 * shown next to. */
uint64_t mp_process_rss(void) {
    int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    char buf[128];
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    char *p = buf;
    strtoull(p, &p, 10); /* total program size: skipped */
    return (uint64_t)strtoull(p, NULL, 10) * (uint64_t)sysconf(_SC_PAGESIZE);
}
