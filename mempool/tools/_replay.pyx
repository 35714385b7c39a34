# cython: language_level=3, boundscheck=False, wraparound=False
# cython: freethreading_compatible = True
"""The replay engine (csrc/tools/replay.c), for the tools: ``ReplayState``.

A tool, so not in the runtime extension ``mempool._core``.  This extension
compiles no file of the core: it replays into a pool through the core's
public calls as ``mempool._core`` exports them (``core_api()``, a table of
function pointers that Cython hands over in the module's ``__pyx_capi__``
capsule), the same copy of the core every ``Pool`` lives in.  A second copy
linked in here would be a second allocator, with its own address map and
pool registry, that knows none of the pools ``mempool.Pool`` makes.

Free-threading: declared safe to import without the GIL.  A ``ReplayState``
belongs to one thread at a time (each tool run makes its own): ``run``
works without the GIL on either build, so sharing one was never safe.
"""
from libc.stdint cimport uint32_t, uint64_t

from mempool._core cimport core_api, mp_core_api, pool_of
from mempool._mempool cimport mp_pool
from mempool._tracing cimport mp_trace_event


cdef extern from "tools.h" nogil:
    ctypedef struct mp_replay_backend:
        void *(*alloc)(void *ctx, size_t size) noexcept nogil
        void *(*calloc)(void *ctx, size_t count, size_t size) noexcept nogil
        void *(*realloc)(void *ctx, void *ptr, size_t old_size,
                         size_t new_size) noexcept nogil
        void (*free)(void *ctx, void *ptr, size_t size) noexcept nogil
        void *ctx

    void mp_replay_backend_libc(mp_replay_backend *b)

    ctypedef struct mp_replay_options:
        uint32_t sample_every
        int touch

    ctypedef struct mp_replay_result:
        uint64_t ops
        uint64_t bad_events
        uint64_t failed
        uint64_t elapsed_ns
        uint64_t live_bytes
        uint64_t live_blocks
        uint64_t peak_live_bytes
        uint64_t rss_start
        uint64_t rss_peak
        uint64_t rss_end
        uint64_t samples

    ctypedef struct mp_replay:
        pass

    mp_replay *mp_replay_create(uint32_t n_ids)
    void mp_replay_destroy(mp_replay *r)
    int mp_replay_run(mp_replay *r, const mp_trace_event *events, size_t n,
                      const mp_replay_backend *b, const mp_replay_options *opt,
                      mp_replay_result *out)
    uint64_t mp_replay_release(mp_replay *r, const mp_replay_backend *b)


cdef const mp_core_api *api = core_api()


# The pool backend: the pool's public calls, sizes passed as 0 (unknown), as
# the numpy handler passes them.
cdef void *_pool_alloc(void *ctx, size_t size) noexcept nogil:
    return api.alloc(<mp_pool *>ctx, size)


cdef void *_pool_calloc(void *ctx, size_t count, size_t size) noexcept nogil:
    return api.calloc(<mp_pool *>ctx, count, size)


cdef void *_pool_realloc(void *ctx, void *ptr, size_t old_size,
                         size_t new_size) noexcept nogil:
    return api.realloc(<mp_pool *>ctx, ptr, 0, new_size)


cdef void _pool_free(void *ctx, void *ptr, size_t size) noexcept nogil:
    api.free(<mp_pool *>ctx, ptr, 0)


cdef class ReplayState:
    """Blocks of one replay: ids -> live blocks on one backend.

    ``ReplayState(n_ids, pool)`` replays into ``pool`` (a Pool); with
    ``pool=None`` into libc malloc (or whatever LD_PRELOAD put there).
    ``run`` can be called more than once (later events see the blocks of
    earlier runs); blocks still live stay allocated until ``release``.
    """

    cdef mp_replay *_r
    cdef mp_replay_backend _b
    cdef object _pool

    def __cinit__(self, uint32_t n_ids, pool=None):
        self._r = NULL
        if pool is None:
            mp_replay_backend_libc(&self._b)
        else:
            self._b.ctx = pool_of(pool)   # TypeError / PoolClosed
            self._b.alloc = _pool_alloc
            self._b.calloc = _pool_calloc
            self._b.realloc = _pool_realloc
            self._b.free = _pool_free
        self._pool = pool
        self._r = mp_replay_create(n_ids)
        if self._r == NULL:
            raise MemoryError(f"cannot allocate replay tables for {n_ids} blocks")

    def __dealloc__(self):
        if self._r != NULL:
            # Free what is left, unless the pool was closed under us (then
            # its memory is already gone).
            if self._pool is None or not self._pool.closed:
                mp_replay_release(self._r, &self._b)
            mp_replay_destroy(self._r)
            self._r = NULL

    cdef _check_pool(self):
        if self._pool is not None:
            pool_of(self._pool)   # PoolClosed once the pool is closed

    def run(self, const unsigned char[::1] records not None,
            uint32_t sample_every=64, bint touch=True):
        """Perform the packed records (bytes-like, a multiple of 24 bytes)
        and return the measurements as a dict (see csrc/tools/tools.h)."""
        cdef mp_replay_options opt
        cdef mp_replay_result res
        cdef size_t nbytes = records.shape[0]
        if nbytes % sizeof(mp_trace_event):
            raise ValueError(f"trace records: {nbytes} bytes is not a "
                             f"multiple of {sizeof(mp_trace_event)}")
        self._check_pool()
        cdef size_t n = nbytes // sizeof(mp_trace_event)
        cdef const mp_trace_event *ev = <const mp_trace_event *>(
            &records[0] if nbytes else NULL)
        opt.sample_every = sample_every
        opt.touch = touch
        with nogil:
            mp_replay_run(self._r, ev, n, &self._b, &opt, &res)
        return res

    def release(self):
        """Free every block still live; return how many."""
        self._check_pool()
        return mp_replay_release(self._r, &self._b)
