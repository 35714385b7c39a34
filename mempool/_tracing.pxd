# Extern-only declarations of csrc/trace/trace.h (the recorder and its record
# format; the replay engine's, csrc/tools/tools.h, are in
# mempool/tools/_replay.pyx).  Nothing here is implemented: keep it a mirror.
from libc.stdint cimport uint8_t, uint32_t, uint64_t


cdef extern from "trace.h" nogil:
    enum:
        MP_TRACE_ALLOC
        MP_TRACE_CALLOC
        MP_TRACE_REALLOC
        MP_TRACE_FREE

    ctypedef struct mp_trace_event:
        uint64_t t_ns
        uint64_t size
        uint32_t id
        uint8_t op

    ctypedef struct mp_trace:
        pass

    mp_trace *mp_trace_create()
    void mp_trace_destroy(mp_trace *t)
    int mp_trace_start(mp_trace *t)
    void mp_trace_stop(mp_trace *t)
    void mp_trace_note_alloc(mp_trace *t, int op, const void *ptr, size_t size)
    void mp_trace_lock(mp_trace *t)
    void mp_trace_note_free(mp_trace *t, const void *old, int ok)
    void mp_trace_note_realloc(mp_trace *t, const void *old, const void *ptr,
                               size_t size)
    size_t mp_trace_count(mp_trace *t)
    size_t mp_trace_copy(mp_trace *t, size_t first, mp_trace_event *out,
                         size_t max)
    void mp_trace_counters(mp_trace *t, uint64_t *skipped, uint64_t *lost)
