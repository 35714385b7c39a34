/*
 * base.h - the bottom layer: what every other layer may use and nothing in
 * it knows of a pool.
 *
 *   constants and macros     granules, alignment, likely/cold, MP_TLS
 *   MP_ASSERT                invariants, graded by MP_CHECK_LEVEL (assert.c)
 *   mp_list                  the one intrusive doubly linked list
 *   mp_counter               single-writer statistics counters
 *   mp_acct                  what lower layers report upward (figures and
 *                            one notification); the owner reads and acts
 *   mp_mutex                 locks with ranks, checked in checked builds
 *                            (mutex.c, jemalloc's witness as the model)
 *   bits_*                   runs of bits in a bitmap (bits.c)
 *   os_*                     the only mmap/munmap/madvise/mremap caller (os.c)
 *   shm_*, barrier_*         memfd-backed memory and the write barrier of
 *                            meshing (shm.c, barrier.c)
 *   MP_POISON ...            AddressSanitizer annotations of pool memory
 *
 * The error codes are public (include/mempool.h, one X-macro); error.c
 * names them.
 */
#ifndef MEMPOOL_BASE_H
#define MEMPOOL_BASE_H

#include "../include/mempool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- constants -------------------------------------------------------- */
#define MP_PAGE_SHIFT 12
#define MP_PAGE_SIZE ((size_t)1 << MP_PAGE_SHIFT)
#define MP_HUGE_SHIFT 21
#define MP_HUGE_SIZE ((size_t)1 << MP_HUGE_SHIFT)
#define MP_CHUNK_SHIFT 21 /* regions are aligned and sized in 2 MiB chunks */
#define MP_CHUNK_SIZE ((size_t)1 << MP_CHUNK_SHIFT)
#define MP_MIN_ALIGN 64
#define MP_SMALL_MAX_LIMIT 65536
/* Requests above this can never be served (the address space is 48 bits). */
#define MP_MAX_REQUEST ((size_t)1 << 46)
/* Debug mode's fill patterns: fresh memory and freed memory look different. */
#define MP_FILL_FRESH 0xAB
#define MP_FILL_FREED 0xDF
/* What two threads must not both write to run at full speed. */
#define MP_CACHE_LINE 64

_Static_assert(MP_MIN_ALIGN >= 16, "numpy needs 16-byte alignment");
_Static_assert((MP_CHUNK_SIZE % MP_HUGE_SIZE) == 0, "chunks hold huge pages");

#define MP_ALIGN_UP(x, a) (((x) + ((a)-1)) & ~((size_t)(a)-1))
#define MP_LIKELY(x) __builtin_expect(!!(x), 1)
#define MP_UNLIKELY(x) __builtin_expect(!!(x), 0)
/* Slow paths: kept out of line so the fast paths save fewer registers. */
#define MP_COLD __attribute__((noinline, cold))
#define MP_INLINE static inline __attribute__((always_inline))
/* initial-exec: the core lives in a dlopen'ed extension, where the default
 * TLS model costs a __tls_get_addr call on every access. */
#define MP_TLS _Thread_local __attribute__((tls_model("initial-exec")))
/* The struct that holds `member` at `ptr`. */
#define MP_CONTAINER(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

/* ---- assertions -------------------------------------------------------- */
/* MP_CHECK_LEVEL 0 (release): no check.  1 (the C tests, the sanitizer
 * builds): MP_ASSERT, cheap checks on every path, and lock ranks.  2: also
 * MP_ASSERT_EXPENSIVE, walks that cost O(n) per call.  A failed assertion
 * prints the condition and why it must hold, then aborts: the structures
 * are already wrong, and going on would hide where. */
#ifndef MP_CHECK_LEVEL
#define MP_CHECK_LEVEL 0
#endif

_Noreturn void assert_fail(const char *cond, const char *why, const char *file, int line);

#if MP_CHECK_LEVEL >= 1
#define MP_ASSERT(cond, why) \
    (MP_LIKELY(cond) ? (void)0 : assert_fail(#cond, why, __FILE__, __LINE__))
#else
#define MP_ASSERT(cond, why) ((void)0)
#endif
#if MP_CHECK_LEVEL >= 2
#define MP_ASSERT_EXPENSIVE(cond, why) MP_ASSERT(cond, why)
#else
#define MP_ASSERT_EXPENSIVE(cond, why) ((void)0)
#endif

/* ---- the intrusive list ----------------------------------------------- */
/* NULL-terminated both ways, with head and tail; an all-zero list is empty
 * and an all-zero link is in no list, so zeroed descriptors need no setup. */
typedef struct mp_link {
    struct mp_link *next, *prev;
} mp_link;
typedef struct mp_list {
    mp_link *head, *tail;
} mp_list;

/* The entry holding `link`, or NULL for a NULL link. */
#define LIST_ENTRY(link, type, member) \
    ((link) ? MP_CONTAINER(link, type, member) : (type *)NULL)

/* Every entry of a list, head to tail (the loop body may not unlink `pos`). */
#define LIST_FOREACH(pos, list, type, member)                         \
    for (type *pos = LIST_ENTRY((list)->head, type, member); pos;     \
         pos = LIST_ENTRY(pos->member.next, type, member))

/* Link `n` after `after` (NULL: at the head). */
static inline void list_insert_after(mp_list *l, mp_link *after, mp_link *n) {
    n->prev = after;
    n->next = after ? after->next : l->head;
    if (n->next)
        n->next->prev = n;
    else
        l->tail = n;
    if (after)
        after->next = n;
    else
        l->head = n;
}
/* Link `n` at the head, or (list_push_back) at the tail. */
static inline void list_push_front(mp_list *l, mp_link *n) { list_insert_after(l, NULL, n); }
static inline void list_push_back(mp_list *l, mp_link *n) { list_insert_after(l, l->tail, n); }

/* Unlink `n` from `l` (it must be there); its link reads as in no list. */
static inline void list_remove(mp_list *l, mp_link *n) {
    MP_ASSERT(n->prev ? n->prev->next == n : l->head == n, "a linked entry's predecessor points back");
    MP_ASSERT(n->next ? n->next->prev == n : l->tail == n, "a linked entry's successor points back");
    if (n->prev)
        n->prev->next = n->next;
    else
        l->head = n->next;
    if (n->next)
        n->next->prev = n->prev;
    else
        l->tail = n->prev;
    n->next = n->prev = NULL;
}

/* ---- single-writer counters ------------------------------------------- */
/* Each counter has one writer at a time (its thread, or the holder of the
 * pool lock), so an add is a relaxed load + store: no locked instruction on
 * the fast path, yet readers of statistics see no torn values. */
typedef _Atomic int64_t mp_counter;

#if defined(__SANITIZE_THREAD__)
#define MP_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define MP_TSAN 1
#endif
#endif
#ifndef MP_TSAN
#define MP_TSAN 0
#endif

/* Add to a counter (its one writer only); read it from anywhere with ctr_get. */
static inline void ctr_add(mp_counter *c, int64_t delta) {
#if defined(__x86_64__) && !MP_TSAN
    /* One add to memory, not a locked one: the store half is a single
     * aligned 8-byte store, so a reader never sees a torn value, and the
     * one writer loses no update.  The compiler emits a relaxed load + store
     * as three instructions with the address computed apart; the fast paths
     * make three of these each way.  ThreadSanitizer sees no asm: its builds
     * take the atomic form. */
    __asm__ volatile("addq %1, %0" : "+m"(*(int64_t *)c) : "er"(delta));
#else
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + delta,
                          memory_order_relaxed);
#endif
}
static inline int64_t ctr_get(const mp_counter *c) {
    return atomic_load_explicit((mp_counter *)c, memory_order_relaxed);
}

/* ---- what lower layers report ------------------------------------------ */
/* System calls made (os.c counts every one). */
typedef struct mp_os_counts {
    _Atomic uint64_t mmap, munmap, madvise, mremap;
} mp_os_counts;

/* One per pool.  The heaps, arenas and slabs below the pool write their
 * figures here (under the pool lock, except `live`/`peak_live` and `os`,
 * which are atomic) and call on_dirty when free resident memory appears
 * that nobody is yet due to give back: the owner (the pool) installs it
 * and wakes its purger.  A lower layer thus reports; it never calls up. */
typedef struct mp_acct {
    size_t capacity; /* reservations stay within it; 0 = unlimited */
    size_t resident_limit; /* resident stays within it; 0 = none (over_limit) */
    uint64_t reserved, resident, peak_resident, released, metadata;
    /* What the last mp_pool_reset_peak saw: the peak then (reported peaks
     * restart below it) and the highest resident since (see stats.c). */
    uint64_t peak_at_reset, resident_since_reset;
    _Atomic int64_t live;       /* published live bytes (threads publish late) */
    _Atomic uint64_t peak_live; /* highest `live` seen */
    mp_os_counts os;
    void (*on_dirty)(struct mp_acct *acct); /* pool lock held; NULL: nobody listens */
    /* Resident memory passed resident_limit: the owner gives back what free
     * pages it can reach under the pool lock (held). */
    void (*over_limit)(struct mp_acct *acct);
    /* Fresh pages took resident `excess` bytes above its peak before the
     * allocation: the owner gives back free resident pages, so that pages
     * it holds for reuse never raise the peak.  Lock held; NULL: none. */
    void (*over_peak)(struct mp_acct *acct, uint64_t excess);
    /* Something an observer of the pool may want to know happened (an
     * MP_EV_* of mempool.h: an arena mapped, pages given back...).  Called
     * under the lock the reporter holds for its figures; NULL: nobody
     * listens, and reporting costs one load. */
    void (*on_event)(struct mp_acct *acct, int kind, uintptr_t address, uint64_t size,
                     uint64_t arg);
} mp_acct;

/* Report an event (see on_event). */
static inline void acct_event(mp_acct *a, int kind, const void *address, uint64_t size,
                              uint64_t arg) {
    if (MP_UNLIKELY(a->on_event != NULL))
        a->on_event(a, kind, (uintptr_t)address, size, arg);
}

/* Bytes turning resident (or, negative, no longer counted).  Lock held. */
static inline void acct_resident(mp_acct *a, int64_t delta) {
    MP_ASSERT(delta >= 0 || a->resident >= (uint64_t)-delta, "resident never goes below zero");
    a->resident += (uint64_t)delta;
    if (a->resident > a->peak_resident)
        a->peak_resident = a->resident;
    if (a->resident > a->resident_since_reset)
        a->resident_since_reset = a->resident;
}
/* Resident bytes given back to the OS.  Lock held. */
static inline void acct_released(mp_acct *a, uint64_t bytes) {
    acct_resident(a, -(int64_t)bytes);
    a->released += bytes;
}
/* Free resident memory appeared that the purger should look at.  Lock held. */
static inline void acct_dirty(mp_acct *a) {
    if (a->on_dirty)
        a->on_dirty(a);
}
/* Whether `more` bytes turning resident would pass the limit: if so, the
 * owner first gives back what it can; true when that was not enough.
 * Lock held. */
static inline bool acct_over_limit(mp_acct *a, uint64_t more) {
    if (MP_LIKELY(a->resident_limit == 0 || a->resident + more <= a->resident_limit))
        return false;
    acct_event(a, MP_EV_LIMIT, NULL, more, a->resident_limit);
    if (a->over_limit)
        a->over_limit(a);
    return a->resident + more > a->resident_limit;
}

/* An allocation that turned fresh pages resident is done with them: if
 * resident passed `peak_before`, the owner gives back held pages first, and
 * the peak records what is left (the pages given back were never touched
 * together with the fresh ones).  Lock held. */
static inline void acct_after_growth(mp_acct *a, uint64_t peak_before) {
    if (a->resident <= peak_before || a->over_peak == NULL)
        return;
    a->over_peak(a, a->resident - peak_before);
    a->peak_resident = a->resident > peak_before ? a->resident : peak_before;
}

/* Add a live-bytes delta to the published figure and raise the peak. */
static inline void acct_live(mp_acct *a, int64_t delta) {
    int64_t now = atomic_fetch_add_explicit(&a->live, delta, memory_order_relaxed) + delta;
    uint64_t peak = atomic_load_explicit(&a->peak_live, memory_order_relaxed);
    while (now > 0 && (uint64_t)now > peak &&
           !atomic_compare_exchange_weak_explicit(&a->peak_live, &peak, (uint64_t)now,
                                                  memory_order_relaxed, memory_order_relaxed))
        ;
}

/* ---- checkers ------------------------------------------------------------ */
/* What a structure walk found: how many invariants broke, and the first
 * few of them named (static texts), so a failed check says what broke. */
#define MP_CHECK_NAMED 8
typedef struct mp_check_log {
    size_t bad;
    size_t named;
    const char *what[MP_CHECK_NAMED];
} mp_check_log;

/* Count `n` broken instances of the invariant `what`; returns n. */
static inline size_t check_fail(mp_check_log *log, size_t n, const char *what) {
    if (MP_UNLIKELY(n != 0)) {
        log->bad += n;
        if (log->named < MP_CHECK_NAMED)
            log->what[log->named++] = what;
    }
    return n;
}

/* ---- ranked locks ------------------------------------------------------- */
/* Lock order: a thread takes locks in increasing (rank, sub) order only.
 * Checked builds (MP_CHECK_LEVEL >= 1) keep each thread's held locks and
 * abort, naming both, when a lock is taken out of order (mutex.c);
 * release builds compile to the plain pthread calls. */
enum mp_rank {
    MP_RANK_REGISTRY = 1, /* the registry of live pools (small/registry.c) */
    MP_RANK_CLASS = 2,    /* a size class's lock; sub = class index, ascending */
    MP_RANK_POOL = 3,     /* a pool's lock: heaps, accounting, buffers */
    MP_RANK_DEBUG = 4,    /* debug mode's report ring: a leaf */
    MP_RANK_MAP = 5,      /* the address map's writers: a leaf */
};

typedef struct mp_mutex {
    pthread_mutex_t m;
    uint16_t rank, sub;
    /* Acquisitions that found the lock held (they waited): the contention
     * figure of the pool's stats, kept across a fork child's re-make. */
    _Atomic uint64_t waits;
} mp_mutex;

#define MP_MUTEX_INIT(rank) {PTHREAD_MUTEX_INITIALIZER, (rank), 0, 0}

/* A fresh unlocked mutex of the given rank (also: re-made in a fork child,
 * which keeps its wait count). */
static inline void mutex_init(mp_mutex *mu, unsigned rank, unsigned sub) {
    pthread_mutex_init(&mu->m, NULL);
    mu->rank = (uint16_t)rank;
    mu->sub = (uint16_t)sub;
}
/* Destroy an unlocked mutex. */
static inline void mutex_destroy(mp_mutex *mu) { pthread_mutex_destroy(&mu->m); }

/* Take the pthread mutex, counting the acquisitions that had to wait: a
 * free lock costs the one atomic exchange pthread_mutex_lock makes anyway. */
static inline void mutex_acquire(mp_mutex *mu) {
    if (MP_UNLIKELY(pthread_mutex_trylock(&mu->m) != 0)) {
        atomic_fetch_add_explicit(&mu->waits, 1, memory_order_relaxed);
        pthread_mutex_lock(&mu->m);
    }
}
/* The acquisitions of `mu` that waited so far. */
static inline uint64_t mutex_waits(const mp_mutex *mu) {
    return atomic_load_explicit(&mu->waits, memory_order_relaxed);
}

#if MP_CHECK_LEVEL >= 1
void mutex_lock(mp_mutex *mu);
void mutex_unlock(mp_mutex *mu);
void mutex_forget_all(void);
void mutex_forking(bool on);
#else
/* Take / release a lock: plain pthread calls in release builds. */
static inline void mutex_lock(mp_mutex *mu) { mutex_acquire(mu); }
static inline void mutex_unlock(mp_mutex *mu) { pthread_mutex_unlock(&mu->m); }
/* In a fork child: the calling thread holds no lock any more (all re-made). */
static inline void mutex_forget_all(void) {}
/* Entering or leaving the fork handlers (checked builds stop checking ranks
 * there: they hold the locks of every pool at once). */
static inline void mutex_forking(bool on) { (void)on; }
#endif

/* ---- bitmaps (bits.c) ---------------------------------------------------- */
/* Set bits [first, first+n); returns how many were clear before. */
uint32_t bits_set(uint64_t *bits, uint32_t first, uint32_t n);
/* Clear bits [first, first+n); returns how many were set before. */
uint32_t bits_clear(uint64_t *bits, uint32_t first, uint32_t n);
/* Number of set bits in [first, first+n). */
uint32_t bits_count(const uint64_t *bits, uint32_t first, uint32_t n);
/* Whether bit i is set. */
static inline bool bits_test(const uint64_t *bits, uint32_t i) { return bits[i / 64] >> (i % 64) & 1; }

/* ---- the kernel (os.c) ----------------------------------------------------- */
void *os_reserve(mp_os_counts *os, size_t size, size_t align);
void os_release(mp_os_counts *os, void *addr, size_t size);
void os_purge(mp_os_counts *os, void *addr, size_t size);
void os_advise_huge(mp_os_counts *os, void *addr, size_t size, int huge);
void *os_remap_grow(mp_os_counts *os, void *addr, size_t old_size, size_t new_size,
                    size_t align);
int os_remap_shrink(mp_os_counts *os, void *addr, size_t old_size, size_t new_size);
void *os_reserve_table(size_t size);
int64_t os_now_ms(void);
int64_t os_now_ns(void);

/* ---- memfd-backed memory, for meshing (shm.c) ------------------------------ */
void *shm_reserve(mp_os_counts *os, size_t size, size_t align, int *fd_out, char **alias_out);
void shm_release(mp_os_counts *os, void *base, char *alias, size_t size, int fd);
int shm_map(mp_os_counts *os, void *addr, size_t size, int fd, uint64_t offset);
int shm_map_as(mp_os_counts *os, void *addr, size_t size, int fd, uint64_t offset,
               bool private_map);
int shm_protect(mp_os_counts *os, void *addr, size_t size, bool writable);
void shm_punch(mp_os_counts *os, int fd, uint64_t offset, size_t size);
void shm_purge(mp_os_counts *os, void *addr, size_t size);
void shm_unview(mp_os_counts *os, void *addr, size_t size);
int shm_copy(int fd, const char *view, size_t size);
void shm_close(int fd);
bool shm_maps_take(int64_t n);
void shm_maps_give(int64_t n);
int64_t shm_maps_held(void);

/* ---- the write barrier of meshing (barrier.c) ------------------------------ */
bool barrier_install(void);
void barrier_postfork_child(void);
int barrier_enter(void *addr, size_t size);
void barrier_leave(int slot);

/* ---- AddressSanitizer annotations ---------------------------------------- */
/*
 * ASan cannot see inside the pool's own mappings: to it an arena is one big
 * addressable range.  Under ASan the core therefore keeps this invariant:
 * inside an arena only the first `requested` bytes of each live block are
 * addressable; free memory and each block's tail are poisoned, so a read past
 * the end of an array or after its free is reported like one on malloc'ed
 * memory.  Arenas and direct mappings are LSan root regions: a pointer kept
 * in pool memory (an object array's elements) keeps its malloc'ed target
 * alive, while poisoned (free) pool memory keeps nothing alive (LSan ignores
 * pointers in poisoned memory unless use_poisoned=1).
 *
 * Every macro compiles to nothing without ASan.
 */
#if defined(__SANITIZE_ADDRESS__)
#define MP_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define MP_ASAN 1
#endif
#endif
#ifndef MP_ASAN
#define MP_ASAN 0
#endif

#if MP_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/lsan_interface.h>
#define MP_POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define MP_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#define MP_ROOT_ADD(p, n) __lsan_register_root_region((p), (n))
#define MP_ROOT_DEL(p, n) __lsan_unregister_root_region((p), (n))
/* For the debug checks that must read poisoned (free or tail) bytes. */
#define MP_NO_ASAN __attribute__((no_sanitize_address))
#else
#define MP_POISON(p, n) ((void)(p), (void)(n))
#define MP_UNPOISON(p, n) ((void)(p), (void)(n))
#define MP_ROOT_ADD(p, n) ((void)(p), (void)(n))
#define MP_ROOT_DEL(p, n) ((void)(p), (void)(n))
#define MP_NO_ASAN
#endif

/* A live block at p of `requested` bytes inside `bytes` of room: the
 * requested part addressable, the tail poisoned. */
static inline void mp_asan_live(void *p, size_t requested, size_t bytes) {
    MP_UNPOISON(p, requested);
    if (bytes > requested)
        MP_POISON((char *)p + requested, bytes - requested);
}

#endif /* MEMPOOL_BASE_H */
