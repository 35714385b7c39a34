# Cython glue of trace recording (included by _core.pyx).
#
# Holds no algorithm: the recorder is csrc/trace/trace.c; the policy (file
# format, saving, metadata) lives in mempool/trace.py.  Replaying a trace is
# a tool: mempool/tools/_replay.pyx, a separate extension.

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
            _set_bypass(&pool._ctx)   # every call through _h_malloc/_h_free
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
        mph_ptr_store(<void **>&pool._ctx.trace, NULL)
        _set_bypass(&pool._ctx)   # stays on while a history records
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
