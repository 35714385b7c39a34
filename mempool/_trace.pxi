# Cython glue of trace recording and replay (included by _core.pyx).
#
# Holds no algorithm: the recorder is csrc/trace.c, the replay engine
# csrc/replay.c; the policy (file format, subprocesses, reports) lives in
# mempool/trace.py, mempool/replay.py and mempool/stress.py.

TRACE_RECORD_BYTES = sizeof(mp_trace_event)


def _trace_start(_PoolBase pool):
    """Start recording the handler calls of ``pool`` (one recording at a
    time per pool)."""
    cdef int failed = 0   # 1 already recording, 2 no recorder, 3 no buffer
    cdef mp_pool *p = pool._lock()
    if p != NULL:
        if pool._ctx.trace != NULL:
            failed = 1
        elif pool._ctx.recorder == NULL:
            pool._ctx.recorder = mp_trace_create()
            failed = 2 if pool._ctx.recorder == NULL else 0
        if failed == 0 and mp_trace_start(pool._ctx.recorder) != 0:
            failed = 3
        if failed == 0:
            mph_ptr_store(<void **>&pool._ctx.trace, pool._ctx.recorder)
            # every call through _h_malloc/_h_free, which record
            mph_int_store(&pool._ctx.head.bypass, 1)
    pool._unlock()
    if p == NULL:
        pool._require()
    if failed == 1:
        raise RuntimeError("this pool is already being recorded")
    if failed == 2:
        raise MemoryError("cannot create the trace recorder")
    if failed == 3:
        raise MemoryError("cannot allocate the trace buffer")


def _trace_stop(_PoolBase pool):
    """Stop recording; return ``(records, skipped, lost)``: the events as
    bytes of packed 24-byte records, frees/reallocs of blocks allocated
    before the recording (skipped), events the recorder could not store."""
    cdef uint64_t skipped = 0, lost = 0
    cdef size_t n = 0
    cdef mp_trace_event *copy = NULL
    pool._lock()
    cdef mp_trace *t = pool._ctx.trace
    if t != NULL:
        mph_int_store(&pool._ctx.head.bypass, 0)
        mph_ptr_store(<void **>&pool._ctx.trace, NULL)
        mp_trace_stop(t)
        n = mp_trace_count(t)
        copy = <mp_trace_event *>c_malloc(n * sizeof(mp_trace_event) or 1)
        if copy != NULL:
            mp_trace_copy(t, 0, copy, n)
        mp_trace_counters(t, &skipped, &lost)
    pool._unlock()
    if t == NULL:
        raise RuntimeError("this pool is not being recorded")
    if copy == NULL:
        raise MemoryError(f"cannot copy the {n} recorded events")
    try:
        out = PyBytes_FromStringAndSize(<char *>copy, n * sizeof(mp_trace_event))
    finally:
        c_free(copy)
    return out, skipped, lost


def _trace_count(_PoolBase pool):
    """Events recorded so far on ``pool`` (0 when not recording)."""
    cdef mp_trace *t = _trace_of(&pool._ctx)
    return 0 if t == NULL else mp_trace_count(t)


def process_rss():
    """This process's resident set in bytes, read from /proc/self/statm."""
    return mp_replay_rss()


cdef class ReplayState:
    """Blocks of one replay: ids -> live blocks on one backend.

    ``ReplayState(n_ids, pool)`` replays into ``pool`` (a Pool); with
    ``pool=None`` into libc malloc (or whatever LD_PRELOAD put there).
    ``run`` can be called more than once (later events see the blocks of
    earlier runs); blocks still live stay allocated until ``release``.
    """

    cdef mp_replay *_r
    cdef mp_replay_backend _b
    cdef _PoolBase _pool

    def __cinit__(self, uint32_t n_ids, _PoolBase pool=None):
        self._r = mp_replay_create(n_ids)
        if self._r == NULL:
            raise MemoryError(f"cannot allocate replay tables for {n_ids} blocks")
        if pool is None:
            mp_replay_backend_libc(&self._b)
        else:
            mp_replay_backend_pool(&self._b, pool._require())
        self._pool = pool

    def __dealloc__(self):
        if self._r != NULL:
            # Free what is left, unless the pool was closed under us (then
            # its memory is already gone).
            if self._pool is None or not self._pool.closed:
                mp_replay_release(self._r, &self._b)
            mp_replay_destroy(self._r)
            self._r = NULL

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
        if self._pool is not None:
            self._pool._require()
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
        if self._pool is not None:
            self._pool._require()
        return mp_replay_release(self._r, &self._b)
