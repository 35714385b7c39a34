# Extern-only declarations of csrc/trace/trace.h (the recorder and its record
# format, the history; the replay engine's, csrc/tools/tools.h, are in
# mempool/tools/_replay.pyx).  Nothing here is implemented: keep it a mirror.
from libc.stdint cimport int32_t, uint8_t, uint32_t, uint64_t, uintptr_t

from mempool._mempool cimport mp_event


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


cdef extern from "trace.h" nogil:
    enum:
        MP_HIST_ALLOC
        MP_HIST_CALLOC
        MP_HIST_REALLOC
        MP_HIST_FREE
        MP_HIST_REALLOC_FREE
        MP_HIST_MOVE
        MP_HIST_MOVE_FREE
        MP_HIST_OP_COUNT
        MP_HIST_EXHAUSTED
        MP_HIST_ERROR
        MP_STACK_UNKNOWN
        MP_STACK_NO_GIL

    ctypedef struct mp_history:
        pass

    ctypedef struct mp_history_info:
        uint64_t recorded
        uint64_t held
        uint64_t dropped
        uint64_t no_gil
        uint64_t pool_held
        uint64_t pool_dropped
        uint64_t max_entries
        uint64_t t0_unix_ns
        uint64_t now_t_ns
        int active

    mp_history *mp_history_create()
    void mp_history_destroy(mp_history *h)
    int mp_history_start(mp_history *h, size_t max_entries)
    void mp_history_stop(mp_history *h)
    int mp_history_active(mp_history *h)
    void mp_history_lock(mp_history *h)
    void mp_history_unlock(mp_history *h)
    void mp_history_note_alloc(mp_history *h, int op, const void *ptr, uint64_t size,
                               int32_t stack)
    int mp_history_take(mp_history *h, const void *ptr, uint64_t *size, int32_t *stack)
    void mp_history_untake(mp_history *h, const void *ptr, uint64_t size, int32_t stack)
    void mp_history_note_free(mp_history *h, int op, const void *ptr, uint64_t size,
                              int32_t stack)
    void mp_history_note_pool(mp_history *h, int kind, uintptr_t address, uint64_t size,
                              uint64_t arg, int32_t stack)
    void mp_history_moves_begin(mp_history *h)
    void mp_history_moves_end(mp_history *h)
    void mp_history_observe(void *ctx, const mp_event *event) noexcept
    void mp_history_counts(mp_history *h, mp_history_info *out)
    size_t mp_history_copy_events(mp_history *h, size_t max, uint64_t *t_ns, uint8_t *op,
                                  uint64_t *address, uint64_t *size, int32_t *stack,
                                  uint32_t *thread)
    size_t mp_history_copy_pool_events(mp_history *h, size_t max, uint64_t *t_ns,
                                       int32_t *kind, uint64_t *address, uint64_t *size,
                                       uint64_t *arg, int32_t *stack)
    size_t mp_history_live_count(mp_history *h)
    size_t mp_history_copy_live(mp_history *h, size_t max, uint64_t *address,
                                uint64_t *size, int32_t *stack)

