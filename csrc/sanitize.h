/*
 * sanitize.h - AddressSanitizer / LeakSanitizer annotations of pool memory.
 *
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
#ifndef MEMPOOL_SANITIZE_H
#define MEMPOOL_SANITIZE_H

#include <stddef.h>

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

#endif /* MEMPOOL_SANITIZE_H */
