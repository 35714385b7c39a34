/*
 * trace.h - the allocation-event recorder (trace.c) and the record format
 * a replay reads (tools/tools.h).  Beside the core, not in it: it knows
 * nothing of pools and includes no header of the core.  It is a runtime
 * feature (mempool.trace.record), compiled into mempool._core with the
 * binding that calls it; the replay engine is a tool, compiled elsewhere.
 *
 * The recorder records allocation events (alloc/calloc/realloc/free).
 *
 * The recorder knows nothing of Python or of the pool: the handler glue
 * calls it around each allocator call, and it appends fixed-size records to
 * a growable buffer.  Blocks are named by small ids, not pointers: the
 * recorder maps each live pointer to the id it handed out when the block was
 * allocated (an open-addressing hash), so a trace can be replayed by any
 * allocator, whose pointers differ.  A realloc keeps its block's id.  A free
 * or realloc of a pointer the recorder never saw allocated (a block made
 * before recording began) is skipped and counted, so a trace never frees a
 * block it did not allocate.
 *
 * Thread safety: every function may be called from any thread; one mutex
 * per recorder orders the events.  mp_trace_lock / mp_trace_note_free /
 * mp_trace_note_realloc let the caller hold that mutex across the real
 * free or realloc, so another thread cannot be handed the freed address
 * and record its allocation before the free is recorded.
 */
#ifndef MEMPOOL_TRACE_H
#define MEMPOOL_TRACE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Event kinds (the op byte of a record). */
enum {
    MP_TRACE_ALLOC = 1,   /* size = requested bytes */
    MP_TRACE_CALLOC = 2,  /* size = nelem * elsize (zeroed) */
    MP_TRACE_REALLOC = 3, /* size = new size; the block keeps its id */
    MP_TRACE_FREE = 4,    /* size = 0 */
};

/* One record, 24 bytes, the same in memory and (little-endian) on disk. */
typedef struct mp_trace_event {
    uint64_t t_ns;  /* nanoseconds since recording started */
    uint64_t size;  /* bytes asked for (0 for a free) */
    uint32_t id;    /* block id: 0, 1, 2... in order of first allocation */
    uint8_t op;     /* an MP_TRACE_* value */
    uint8_t pad[3]; /* zero */
} mp_trace_event;

typedef struct mp_trace mp_trace;

/* A new, inactive recorder; NULL when out of memory. */
mp_trace *mp_trace_create(void);

/* Free the recorder and its buffers.  NULL is a no-op. */
void mp_trace_destroy(mp_trace *t);

/* Forget every event and block, restart the clock, and start recording.
 * Returns 0, or -1 when out of memory (then the recorder stays inactive). */
int mp_trace_start(mp_trace *t);

/* Stop recording: later notes are ignored.  The events stay readable. */
void mp_trace_stop(mp_trace *t);

/* Record an allocation (op MP_TRACE_ALLOC or MP_TRACE_CALLOC) that returned
 * ptr; a NULL ptr (a failed call) is not recorded. */
void mp_trace_note_alloc(mp_trace *t, int op, const void *ptr, size_t size);

/* Take the recorder's mutex, to be held across a real free/realloc and
 * released by the matching note call below. */
void mp_trace_lock(mp_trace *t);

/* With the mutex held: record the free of ptr (skipped when ptr is unknown
 * or ok is 0, i.e. the free failed), then release the mutex. */
void mp_trace_note_free(mp_trace *t, const void *old, int ok);

/* With the mutex held: record realloc(old) -> ptr of size bytes, then
 * release the mutex.  ptr NULL (failure) records nothing; old NULL or
 * unknown records an allocation of a new block. */
void mp_trace_note_realloc(mp_trace *t, const void *old, const void *ptr,
                           size_t size);

/* Number of events recorded so far. */
size_t mp_trace_count(mp_trace *t);

/* Copy up to max events starting at index first into out; returns how many
 * were copied.  Takes the mutex, so it is safe while recording. */
size_t mp_trace_copy(mp_trace *t, size_t first, mp_trace_event *out,
                     size_t max);

/* Counters: frees/reallocs of unknown pointers skipped, and events lost
 * because the recorder itself ran out of memory. */
void mp_trace_counters(mp_trace *t, uint64_t *skipped, uint64_t *lost);

#ifdef __cplusplus
}
#endif

#endif /* MEMPOOL_TRACE_H */
