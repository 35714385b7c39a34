/*
 * trace.h - the runtime's recorders: the allocation-event recorder (trace.c)
 * and the record format a replay reads (tools/tools.h); the allocation
 * history of mempool.history (history.c, over addrmap.c).  Beside the core,
 * not in it: they know no pool's insides and include only the public header
 * (the history is a pool's observer, mp_event).  Runtime features
 * (mempool.trace.record, mempool.history.record), compiled into mempool._core
 * with the binding that calls them; the replay engine is a tool, compiled
 * elsewhere.
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

#include "../include/mempool.h" /* mp_event: the history observes a pool */

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

/* ---- address map (addrmap.c) ----------------------------------------------
 * Live block address -> (requested size, call site) for the history, and
 * -> block id (in `site`) for the trace recorder.  Not thread-safe: the
 * owner's lock guards it. */
typedef struct addrmap_slot {
    uintptr_t key; /* 0 = empty (a NULL pointer is never a live block) */
    uint64_t size;
    int32_t site;
} addrmap_slot;

typedef struct addrmap {
    addrmap_slot *slots;
    size_t cap, used; /* cap is a power of two */
} addrmap;

int addrmap_init(addrmap *m);
void addrmap_free(addrmap *m);
void addrmap_clear(addrmap *m);
int addrmap_put(addrmap *m, uintptr_t key, uint64_t size, int32_t site);
int addrmap_take(addrmap *m, uintptr_t key, addrmap_slot *out);

/* ---- history (history.c) ---------------------------------------------------
 * The allocation history of one pool (mempool.history): allocation events
 * with the call site the caller passes as a stack id, the pool's own events
 * (install mp_history_observe with mp_pool_observe), and the site of every
 * block allocated while recording.  Both event buffers are rings of at most
 * max_entries entries: beyond that the oldest are overwritten and counted.
 *
 * Ops of allocation events: the values are the indexes of the snapshot
 * format's `ops` list (docs/snapshot-schema.md). */
enum {
    MP_HIST_ALLOC = 0,        /* + a block */
    MP_HIST_CALLOC = 1,       /* + a zeroed block */
    MP_HIST_REALLOC = 2,      /* + the block a realloc returned */
    MP_HIST_FREE = 3,         /* - a block */
    MP_HIST_REALLOC_FREE = 4, /* - the block a realloc replaced (just before its REALLOC) */
    MP_HIST_MOVE = 5,         /* + a buffer at the address defragment moved it to */
    MP_HIST_MOVE_FREE = 6,    /* - its old address (just before its MOVE) */
    MP_HIST_OP_COUNT = 7
};
/* Pool events the binding adds to the core's MP_EVENT_LIST kinds. */
enum {
    MP_HIST_EXHAUSTED = 9, /* size = request, arg = capacity or limit */
    MP_HIST_ERROR = 10,    /* address = pointer, arg = error code */
};
/* Stack ids that are not stacks. */
enum { MP_STACK_UNKNOWN = -1, MP_STACK_NO_GIL = -2 };

typedef struct mp_history mp_history;

typedef struct mp_history_info {
    uint64_t recorded;     /* allocation events since start, dropped included */
    uint64_t held;         /* events the ring holds now */
    uint64_t dropped;      /* overwritten by the ring, or lost for want of memory */
    uint64_t no_gil;       /* events of threads without the GIL (no stack) */
    uint64_t pool_held, pool_dropped; /* the same for pool events */
    uint64_t max_entries;
    uint64_t t0_unix_ns;   /* wall clock when recording started */
    uint64_t now_t_ns;     /* now, on the recording's clock */
    int active;
} mp_history_info;

/* A new, inactive recorder; NULL when out of memory. */
mp_history *mp_history_create(void);
/* Free it (the pool it observed must not report to it any more). */
void mp_history_destroy(mp_history *h);
/* Forget every event and live block, restart the clock, record; -1 when
 * max_entries is 0.  Rings grow as events come. */
int mp_history_start(mp_history *h, size_t max_entries);
/* Stop recording (events stay readable; notes are ignored). */
void mp_history_stop(mp_history *h);
/* Whether recording. */
int mp_history_active(mp_history *h);

/* The lock ordering allocation events; held by the caller across a free or
 * realloc of the pool and the notes that record it. */
void mp_history_lock(mp_history *h);
void mp_history_unlock(mp_history *h);
/* With the lock held: record a block made (alloc, calloc, realloc, move). */
void mp_history_note_alloc(mp_history *h, int op, const void *ptr, uint64_t size, int32_t stack);
/* With the lock held: take ptr's live entry (1) or say it has none (0). */
int mp_history_take(mp_history *h, const void *ptr, uint64_t *size, int32_t *stack);
/* With the lock held: put back an entry taken for a free that failed. */
void mp_history_untake(mp_history *h, const void *ptr, uint64_t size, int32_t stack);
/* With the lock held: record a block removed (free, realloc_free). */
void mp_history_note_free(mp_history *h, int op, const void *ptr, uint64_t size, int32_t stack);
/* Any lock state: record a pool event (an MP_EV_* or MP_HIST_* kind). */
void mp_history_note_pool(mp_history *h, int kind, uintptr_t address, uint64_t size, uint64_t arg,
                          int32_t stack);
/* Bracket a call of mp_defragment (takes and releases the lock): the
 * buffers it moves keep their sites and are recorded move_free + move. */
void mp_history_moves_begin(mp_history *h);
void mp_history_moves_end(mp_history *h);
/* The pool's observer (an mp_observer_fn; ctx = the recorder). */
void mp_history_observe(void *ctx, const mp_event *event);

/* Reading, at any time: figures, events oldest first into columns (up to
 * max; returns how many), the live blocks' (address, size, site). */
void mp_history_counts(mp_history *h, mp_history_info *out);
size_t mp_history_copy_events(mp_history *h, size_t max, uint64_t *t_ns, uint8_t *op,
                              uint64_t *address, uint64_t *size, int32_t *stack,
                              uint32_t *thread);
size_t mp_history_copy_pool_events(mp_history *h, size_t max, uint64_t *t_ns, int32_t *kind,
                                   uint64_t *address, uint64_t *size, uint64_t *arg,
                                   int32_t *stack);
size_t mp_history_live_count(mp_history *h);
size_t mp_history_copy_live(mp_history *h, size_t max, uint64_t *address, uint64_t *size,
                            int32_t *stack);

#ifdef __cplusplus
}
#endif

#endif /* MEMPOOL_TRACE_H */
