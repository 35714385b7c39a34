# What mempool._core shares with the test-only extension mempool._testhooks
# (cimported, through the module's C-API capsule): the native pool of a
# Pool, and the core's functions as pointers.  _testhooks links no C file of
# the core (a second copy of its globals, the chunk map and the pool
# registry, would be a second allocator); it calls this module's copy.
from mempool._mempool cimport mp_corruption_report, mp_pool


ctypedef struct mp_core_api:
    void *(*alloc)(mp_pool *pool, size_t size) noexcept nogil
    void *(*alloc_aligned)(mp_pool *pool, size_t size, size_t align) noexcept nogil
    void *(*calloc)(mp_pool *pool, size_t count, size_t size) noexcept nogil
    void *(*realloc)(mp_pool *pool, void *ptr, size_t old_size,
                     size_t new_size) noexcept nogil
    int (*free)(mp_pool *pool, void *ptr, size_t size) noexcept nogil
    int (*last_error)() noexcept nogil
    int (*owns)(const mp_pool *pool, const void *ptr) noexcept nogil
    size_t (*usable_size)(const mp_pool *pool, const void *ptr) noexcept nogil
    int (*requested_size)(const mp_pool *pool, const void *ptr,
                          size_t *out) noexcept nogil
    size_t (*debug_reports)(mp_pool *pool, mp_corruption_report *out,
                            size_t max) noexcept nogil


cdef const mp_core_api *core_api() noexcept
cdef mp_pool *pool_of(object pool) except NULL
cdef bint pool_debug(object pool) except -1
