# Cython glue of trace recording and replay (included by _core.pyx).
#
# Holds no algorithm: the recorder is csrc/trace.c, the replay engine
# csrc/replay.c; the policy (file format, subprocesses, reports) lives in
# mempool/trace.py, mempool/replay.py and mempool/stress.py.

TRACE_RECORD_BYTES = sizeof(mp_trace_event)


def _trace_start(_PoolBase pool):
    """Start recording the handler calls of ``pool`` (one recording at a
    time per pool)."""
    pool._require()
    if pool._ctx.trace != NULL:
        raise RuntimeError("this pool is already being recorded")
    if pool._ctx.recorder == NULL:
        pool._ctx.recorder = mp_trace_create()
        if pool._ctx.recorder == NULL:
            raise MemoryError("cannot create the trace recorder")
    if mp_trace_start(pool._ctx.recorder) != 0:
        raise MemoryError("cannot allocate the trace buffer")
    pool._ctx.trace = pool._ctx.recorder
    pool._ctx.head.bypass = 1  # every call through _h_malloc/_h_free, which record


def _trace_stop(_PoolBase pool):
    """Stop recording; return ``(records, skipped, lost)``: the events as
    bytes of packed 24-byte records, frees/reallocs of blocks allocated
    before the recording (skipped), events the recorder could not store."""
    cdef mp_trace *t = pool._ctx.trace
    cdef uint64_t skipped = 0, lost = 0
    if t == NULL:
        raise RuntimeError("this pool is not being recorded")
    pool._ctx.head.bypass = 0
    pool._ctx.trace = NULL
    mp_trace_stop(t)
    cdef size_t n = mp_trace_count(t)
    out = PyBytes_FromStringAndSize(NULL, n * sizeof(mp_trace_event))
    mp_trace_copy(t, 0, <mp_trace_event *>PyBytes_AS_STRING(out), n)
    mp_trace_counters(t, &skipped, &lost)
    return out, skipped, lost


def _trace_count(_PoolBase pool):
    """Events recorded so far on ``pool`` (0 when not recording)."""
    if pool._ctx.trace == NULL:
        return 0
    return mp_trace_count(pool._ctx.trace)


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
