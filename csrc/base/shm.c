/*
 * shm.c - memory backed by a memfd, the kind meshing can remap.
 *
 * A shared arena is a reservation whose pages are a MAP_SHARED mapping of a
 * memfd, one file offset per virtual page (offset = address - base), plus
 * a second view of the same file ("alias") through which the mesher copies
 * blocks without going through the write-protected or poisoned main view.
 * Meshing maps a virtual range onto other file offsets (shm_map) and punches
 * the offsets it no longer uses (shm_punch: that is the memory saved).
 * Every call is counted like os.c's.  shm_maps_* keep the mappings meshing
 * added under a budget drawn from vm.max_map_count.
 */
#define _GNU_SOURCE /* memfd_create, fallocate, SEEK_DATA, MADV_REMOVE */
#include "base.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

/* ThreadSanitizer takes an mmap for a write to the whole range, and cannot
 * see that a thread reading a remapped block is ordered after the remap by
 * the page tables (the write barrier made writers wait): the shadow of a
 * range mapped anew is reset instead. */
#if defined(__SANITIZE_THREAD__)
void __tsan_ignore_thread_begin(void);
void __tsan_ignore_thread_end(void);
#define TSAN_IGNORE_BEGIN() __tsan_ignore_thread_begin()
#define TSAN_IGNORE_END() __tsan_ignore_thread_end()
#else
#define TSAN_IGNORE_BEGIN() ((void)0)
#define TSAN_IGNORE_END() ((void)0)
#endif

/* Count one system call. */
static void count(_Atomic uint64_t *counter) {
    atomic_fetch_add_explicit(counter, 1, memory_order_relaxed);
}

/* Reserve `size` bytes aligned to `align` as a shared mapping of a fresh
 * memfd of that size (*fd_out), plus its alias view (*alias_out); NULL (and
 * nothing left behind) when the kernel refuses. */
void *shm_reserve(mp_os_counts *os, size_t size, size_t align, int *fd_out, char **alias_out) {
    int fd = memfd_create("mempool-slabs", MFD_CLOEXEC);
    if (fd < 0)
        return NULL;
    if (ftruncate(fd, (off_t)size) != 0) {
        close(fd);
        return NULL;
    }
    char *base = os_reserve(os, size, align);
    if (base == NULL) {
        close(fd);
        return NULL;
    }
    count(&os->mmap);
    char *alias = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, 0);
    if (alias == MAP_FAILED || shm_map(os, base, size, fd, 0) != 0) {
        if (alias != MAP_FAILED)
            munmap(alias, size);
        os_release(os, base, size);
        close(fd);
        return NULL;
    }
    *fd_out = fd;
    *alias_out = alias;
    return base;
}

/* Unmap a shared arena's two views and close its file. */
void shm_release(mp_os_counts *os, void *base, char *alias, size_t size, int fd) {
    count(&os->munmap);
    munmap(alias, size);
    os_release(os, base, size);
    close(fd);
}

/* Map [addr, addr+size) read/write onto the file's bytes at `offset`,
 * replacing what was mapped there in one step; 0 on success. */
int shm_map(mp_os_counts *os, void *addr, size_t size, int fd, uint64_t offset) {
    return shm_map_as(os, addr, size, fd, offset, false);
}

/* shm_map, or (private_map) a copy-on-write mapping of the file whose
 * writes stay in this process (a fork child's fallback). */
int shm_map_as(mp_os_counts *os, void *addr, size_t size, int fd, uint64_t offset,
               bool private_map) {
    count(&os->mmap);
    int flags = (private_map ? MAP_PRIVATE : MAP_SHARED) | MAP_FIXED | MAP_NORESERVE;
    TSAN_IGNORE_BEGIN();
    void *p = mmap(addr, size, PROT_READ | PROT_WRITE, flags, fd, (off_t)offset);
    TSAN_IGNORE_END();
    return p == MAP_FAILED ? -1 : 0;
}

/* Make a range read-only (writable=false: the write barrier) or writable
 * again; 0 on success. */
int shm_protect(mp_os_counts *os, void *addr, size_t size, bool writable) {
    count(&os->madvise);
    return mprotect(addr, size, writable ? PROT_READ | PROT_WRITE : PROT_READ);
}

/* Free the file's pages at [offset, offset+size): they read back as zeros
 * through every mapping of them. */
void shm_punch(mp_os_counts *os, int fd, uint64_t offset, size_t size) {
    count(&os->madvise);
    fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)offset, (off_t)size);
}

/* Drop the page tables of a range of an alias view, keeping the file's
 * pages: what the mesher touched through the alias would otherwise count
 * twice in the process's RSS (once per view). */
void shm_unview(mp_os_counts *os, void *addr, size_t size) {
    count(&os->madvise);
    madvise(addr, size, MADV_DONTNEED);
}

/* os_purge for an identity-mapped range of a shared arena: MADV_DONTNEED
 * would only drop the page tables and keep the file's pages (and their
 * content); MADV_REMOVE frees them, so they read back as zeros. */
void shm_purge(mp_os_counts *os, void *addr, size_t size) {
    count(&os->madvise);
    madvise(addr, size, MADV_REMOVE);
}

/* A new memfd of `size` bytes holding the data of `fd` (holes stay holes),
 * read through its view `view`; -1 when the kernel refuses.  For fork. */
int shm_copy(int fd, const char *view, size_t size) {
    int copy = memfd_create("mempool-slabs", MFD_CLOEXEC);
    if (copy < 0)
        return -1;
    if (ftruncate(copy, (off_t)size) != 0)
        goto fail;
    off_t pos = 0;
    while ((size_t)pos < size) {
        off_t data = lseek(fd, pos, SEEK_DATA);
        if (data < 0)
            break; /* ENXIO: no data past pos */
        off_t hole = lseek(fd, data, SEEK_HOLE);
        if (hole < 0 || (size_t)hole > size)
            hole = (off_t)size;
        for (off_t at = data; at < hole;) {
            ssize_t n = pwrite(copy, view + at, (size_t)(hole - at), at);
            if (n <= 0) {
                if (n < 0 && errno == EINTR)
                    continue;
                goto fail;
            }
            at += n;
        }
        pos = hole;
    }
    return copy;
fail:
    close(copy);
    return -1;
}

/* Close a file descriptor (a memfd no longer used). */
void shm_close(int fd) { close(fd); }

/* ---- the mapping budget --------------------------------------------------- */
static _Atomic int64_t maps_added;
static _Atomic int64_t maps_budget = -1;

/* Mappings meshing may add process-wide: a quarter of vm.max_map_count (the
 * rest stays for the program, its libraries and the pool's own arenas). */
static int64_t budget(void) {
    int64_t b = atomic_load_explicit(&maps_budget, memory_order_relaxed);
    if (b >= 0)
        return b;
    long max = 65530; /* the kernel's default */
    FILE *f = fopen("/proc/sys/vm/max_map_count", "r");
    if (f) {
        if (fscanf(f, "%ld", &max) != 1)
            max = 65530;
        fclose(f);
    }
    b = max / 4;
    atomic_store_explicit(&maps_budget, b, memory_order_relaxed);
    return b;
}

/* Reserve room for `n` more mappings; false (nothing taken) past the budget. */
bool shm_maps_take(int64_t n) {
    int64_t limit = budget();
    int64_t cur = atomic_load_explicit(&maps_added, memory_order_relaxed);
    do {
        if (cur + n > limit)
            return false;
    } while (!atomic_compare_exchange_weak_explicit(&maps_added, &cur, cur + n,
                                                    memory_order_relaxed, memory_order_relaxed));
    return true;
}

/* Give back room taken by shm_maps_take. */
void shm_maps_give(int64_t n) { atomic_fetch_sub_explicit(&maps_added, n, memory_order_relaxed); }

/* Mappings meshing holds now, process-wide (statistics, tests). */
int64_t shm_maps_held(void) { return atomic_load_explicit(&maps_added, memory_order_relaxed); }
