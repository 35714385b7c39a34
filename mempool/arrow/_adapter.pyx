# cython: language_level=3, freethreading_compatible=True
# distutils: language = c++
"""Cython glue of the Arrow adapter (built on first use, see _build.py): boxes
an ``mpa::Pool`` (adapter.h) in a ``pyarrow.MemoryPool`` and exposes the
redirect of Arrow's default pool.  Policy lives in mempool/arrow/__init__.py.
"""
from libc.stdint cimport int64_t, uint8_t, uintptr_t
from libcpp.string cimport string
from cpython.ref cimport PyObject

from pyarrow.includes.common cimport CStatus
from pyarrow.includes.libarrow cimport CMemoryPool
from pyarrow.lib cimport MemoryPool as _ArrowMemoryPool, check_status


cdef extern from "adapter.h" namespace "mpa" nogil:
    cdef cppclass Share:
        int64_t bytes_allocated, max_memory, total_bytes_allocated, num_allocations
        int64_t frees, reallocs, refused, errors

    cdef cppclass Pool:
        CStatus Allocate(int64_t size, int64_t alignment, uint8_t **out)
        CStatus Reallocate(int64_t old_size, int64_t new_size, int64_t alignment,
                           uint8_t **ptr)
        void Free(uint8_t *buffer, int64_t size, int64_t alignment)
        Share share()
        void last_report(int *code, uintptr_t *address, int64_t *size)


cdef extern from "adapter.h":
    Pool *mpa_pool_from_capsule(object capsule, PyObject *owner, string *err)
    CMemoryPool *mpa_as_arrow(Pool *pool)
    int mpa_resolve_core(const char *core_path, string *err) nogil
    int mpa_redirect_default(Pool *target, string *err) nogil
    int mpa_redirect_active() nogil
    void mpa_default_backend_stats(int64_t *bytes, int64_t *total, int64_t *count,
                                   string *name) nogil
    int mpa_compiled_arrow_version() nogil
    int mpa_runtime_arrow_version() nogil


def resolve_core(str core_path):
    """Resolve the core's functions in the loaded mempool._core (its file)."""
    cdef string err
    if mpa_resolve_core(core_path.encode(), &err) != 0:
        raise ImportError(err.decode())


def compiled_arrow_version():
    """Arrow C++ version the adapter was compiled against (packed, 26000001)."""
    return mpa_compiled_arrow_version()


def runtime_arrow_version():
    """Arrow C++ version loaded in this process (packed)."""
    return mpa_runtime_arrow_version()


cdef class Adapter:
    """One ``mpa::Pool`` on a mempool pool, and its ``pyarrow.MemoryPool``.

    Never freed: Arrow keeps raw pointers to its memory pool in buffers and
    objects that outlive any Python reference (pyarrow does not keep pool
    objects alive), so the C++ pool, and the handler capsule that keeps the
    mempool pool alive, stay until the process ends.
    """

    cdef Pool *_pool
    cdef readonly object capsule
    cdef readonly object arrow_pool
    cdef object _report

    def __cinit__(self, capsule, report):
        cdef string err
        self.capsule = capsule
        self._report = report
        self._pool = mpa_pool_from_capsule(capsule, <PyObject *>self, &err)
        if self._pool == NULL:
            raise ValueError(err.decode())
        cdef _ArrowMemoryPool box = _ArrowMemoryPool.__new__(_ArrowMemoryPool)
        box.init(mpa_as_arrow(self._pool))
        self.arrow_pool = box

    def share(self):
        """Arrow's share of the pool: a dict of its counters."""
        cdef Share s = self._pool.share()
        return {"bytes_allocated": s.bytes_allocated, "max_memory": s.max_memory,
                "total_bytes_allocated": s.total_bytes_allocated,
                "num_allocations": s.num_allocations, "frees": s.frees,
                "reallocs": s.reallocs, "refused": s.refused, "errors": s.errors}

    def _on_arrow_report(self):
        # Py_AddPendingCall from the C++ side (main thread, GIL held)
        cdef int code = 0
        cdef uintptr_t address = 0
        cdef int64_t size = 0
        self._pool.last_report(&code, &address, &size)
        self._report(code, address, size)

    # Test hooks: the MemoryPool calls Arrow makes, with any pointer (the
    # tests reach misuse Arrow itself never commits).
    def _test_allocate(self, int64_t size, int64_t alignment=64):
        """Allocate(size, alignment); the address (Arrow's error raised)."""
        cdef uint8_t *out = NULL
        with nogil:
            check_status(self._pool.Allocate(size, alignment, &out))
        return <uintptr_t>out

    def _test_reallocate(self, uintptr_t address, int64_t old_size, int64_t new_size,
                         int64_t alignment=64):
        """Reallocate(old_size, new_size, alignment, &address); the new address."""
        cdef uint8_t *ptr = <uint8_t *>address
        with nogil:
            check_status(self._pool.Reallocate(old_size, new_size, alignment, &ptr))
        return <uintptr_t>ptr

    def _test_free(self, uintptr_t address, int64_t size, int64_t alignment=64):
        """Free(address, size, alignment): never raises, as Arrow's."""
        with nogil:
            self._pool.Free(<uint8_t *>address, size, alignment)

    def redirect_default(self):
        """Make arrow::default_memory_pool() allocate from this pool."""
        cdef string err
        if mpa_redirect_default(self._pool, &err) != 0:
            raise RuntimeError(err.decode())


def unredirect_default():
    """Arrow's default pool allocates from its own backend again (blocks
    the pools handed out still go back to them)."""
    cdef string err
    if mpa_redirect_default(NULL, &err) != 0:
        raise RuntimeError(err.decode())


def redirect_active():
    """True while Arrow's default pool allocates from a mempool pool."""
    return bool(mpa_redirect_active())


def default_backend_stats():
    """Counters of Arrow's original default backend itself (what it
    allocated, not what the redirect sent to mempool), and its name."""
    cdef int64_t nbytes = 0, total = 0, count = 0
    cdef string name
    mpa_default_backend_stats(&nbytes, &total, &count, &name)
    return {"backend_name": name.decode(), "bytes_allocated": nbytes,
            "total_bytes_allocated": total, "num_allocations": count}
