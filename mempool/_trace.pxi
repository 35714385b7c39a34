# Cython glue of trace recording (included by _core.pyx).
#
# Holds no algorithm: the recorder is csrc/trace/trace.c; the policy (file
# format, saving, metadata) lives in mempool/trace.py.  Replaying a trace is
# a tool: mempool/tools/_replay.pyx, a separate extension.

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
    pool._ctx.head.bypass = pool._ctx.history != NULL  # a history records on
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
