# cython: language_level=3, boundscheck=False, wraparound=False
# cython: freethreading_compatible = True
"""Test hooks: the core's C API on a Pool, straight through, errors mapped.

Only the tests use these (``hooks.alloc(pool, n)``...): they reach blocks
and misuse paths numpy never takes.  Built from this file alone: the core's
functions are called through :mod:`mempool._core`'s pointers (``core_api()``),
never linked a second time.
"""
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from libc.stdint cimport uintptr_t
from libc.string cimport memcpy

from mempool._core cimport core_api, mp_core_api, pool_debug, pool_of
from mempool._mempool cimport MP_ECORRUPT, MP_EFOREIGN, MP_ESIZE, MP_OK, mp_pool

cdef const mp_core_api *api = core_api()


cdef _poll_corruption(pool, mp_pool *p, uintptr_t addr, size_t size):
    # As the handler does: a call that succeeded may still have found
    # corruption (debug mode); the pool turns the reports into warnings.
    if pool_debug(pool) and api.debug_reports(p, NULL, 0) > 0:
        pool._on_handler_error(MP_ECORRUPT, addr, size)


def alloc(pool, size_t n, size_t align=0):
    """mp_alloc (or mp_alloc_aligned when align); return the address."""
    cdef mp_pool *p = pool_of(pool)
    cdef void *out
    with nogil:
        out = api.alloc(p, n) if align == 0 else api.alloc_aligned(p, n, align)
    if out == NULL:
        pool._raise(api.last_error(), size=n, align=align or None)
    _poll_corruption(pool, p, <uintptr_t>out, n)
    return <uintptr_t>out


def calloc(pool, size_t count, size_t size):
    """mp_calloc; return the address."""
    cdef mp_pool *p = pool_of(pool)
    cdef void *out
    with nogil:
        out = api.calloc(p, count, size)
    if out == NULL:
        pool._raise(api.last_error(), count=count, size=size)
    _poll_corruption(pool, p, <uintptr_t>out, count * size)
    return <uintptr_t>out


def realloc(pool, uintptr_t addr, size_t old, size_t new):
    """mp_realloc(addr, old, new); return the new address."""
    cdef mp_pool *p = pool_of(pool)
    cdef void *out
    with nogil:
        out = api.realloc(p, <void *>addr, old, new)
    _poll_corruption(pool, p, addr, new)
    if out == NULL:
        pool._raise(api.last_error(), address=addr, old_size=old or None,
                    new_size=new)
    return <uintptr_t>out


def free(pool, uintptr_t addr, size_t size=0):
    """mp_free(addr, size); raise the mapped error on failure."""
    cdef mp_pool *p = pool_of(pool)
    cdef int code
    with nogil:
        code = api.free(p, <void *>addr, size)
    if code == MP_ECORRUPT:
        # Freed all the same: a warning, as from numpy's free.
        pool._on_handler_error(code, addr, size)
    elif code != MP_OK:
        pool._raise(code, address=addr, size=size or None)


def usable_size(pool, uintptr_t addr):
    """mp_usable_size: bytes usable at addr, 0 when not a live block."""
    return api.usable_size(pool_of(pool), <void *>addr)


def requested_size(pool, uintptr_t addr):
    """mp_requested_size: the size the live block at addr was asked with."""
    cdef size_t out = 0
    cdef int code = api.requested_size(pool_of(pool), <void *>addr, &out)
    if code != MP_OK:
        pool._raise(code, address=addr)
    return out


def owns(pool, uintptr_t addr):
    """mp_owns: True when addr is the start of a live block."""
    return bool(api.owns(pool_of(pool), <void *>addr))


cdef size_t _span(pool, uintptr_t addr, size_t n) except? 0:
    # Reads and writes stay inside one live block: never touch memory the
    # pool does not vouch for.
    cdef mp_pool *p = pool_of(pool)
    cdef size_t usable = api.usable_size(p, <void *>addr)
    if usable == 0 and not api.owns(p, <void *>addr):
        pool._raise(MP_EFOREIGN, address=addr, length=n)
    if n > usable:
        pool._raise(MP_ESIZE, address=addr, length=n, block_size=usable)
    return n


def write(pool, uintptr_t addr, bytes data):
    """Copy ``data`` to the start of the live block at ``addr``."""
    cdef size_t n = len(data)
    _span(pool, addr, n)
    memcpy(<void *>addr, PyBytes_AS_STRING(data), n)


def read(pool, uintptr_t addr, size_t n):
    """Return the first ``n`` bytes of the live block at ``addr``."""
    _span(pool, addr, n)
    return PyBytes_FromStringAndSize(<char *>addr, n)


cdef extern from "numpy/arrayobject.h":
    ctypedef struct PyDataMemAllocator:
        void *ctx
        void *(*malloc)(void *ctx, size_t size) noexcept nogil
        void (*free)(void *ctx, void *ptr, size_t size) noexcept nogil
    ctypedef struct PyDataMem_Handler:
        char name[127]
        unsigned char version
        PyDataMemAllocator allocator

from cpython.pycapsule cimport PyCapsule_GetPointer


def handler_malloc_nogil(pool, size_t size):
    """Call the pool's numpy handler malloc with the GIL released (as numpy
    now and then does); return the address (0 on failure)."""
    cdef PyDataMem_Handler *h = <PyDataMem_Handler *>PyCapsule_GetPointer(
        pool._handler_capsule(), "mem_handler")
    cdef void *p
    with nogil:
        p = h.allocator.malloc(h.allocator.ctx, size)
    return <uintptr_t>p


def handler_free_nogil(pool, uintptr_t addr, size_t size):
    """Call the pool's numpy handler free with the GIL released."""
    cdef PyDataMem_Handler *h = <PyDataMem_Handler *>PyCapsule_GetPointer(
        pool._handler_capsule(), "mem_handler")
    with nogil:
        h.allocator.free(h.allocator.ctx, <void *>addr, size)
