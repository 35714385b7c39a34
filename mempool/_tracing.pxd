# Extern-only declarations of csrc/tools/tools.h and csrc/tools/tools.h (the recorder
# and the replay engine).  Nothing here is implemented: keep it a mirror.
from libc.stdint cimport uint8_t, uint32_t, uint64_t

from mempool._mempool cimport mp_pool


cdef extern from "tools.h" nogil:
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


cdef extern from "tools.h" nogil:
    ctypedef struct mp_replay_backend:
        void *ctx

    void mp_replay_backend_pool(mp_replay_backend *b, mp_pool *pool)
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
