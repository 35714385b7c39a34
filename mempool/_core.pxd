# What mempool._core shares with the extensions built beside it, the tests'
# mempool._testhooks and the tools' mempool.tools._replay (cimported, through
# the module's C-API capsule, __pyx_capi__): the native pool of a Pool, and
# the core's functions as pointers.  Neither links a C file of the core (a
# second copy of its globals, the address map and the pool registry, would
# be a second allocator that knows none of this module's pools); they call
# this module's copy.
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
