/*
 * tools.h - the tools beside the core: the replay engine (replay.c).
 *
 * Compiled into the tools' extension (mempool.tools._replay), never into
 * the runtime one (mempool._core): it knows the records of trace/trace.h
 * and nothing of the pool, which it reaches only through a backend of four
 * function pointers (the Cython glue fills one with the pool's public calls,
 * taken from mempool._core's table of function pointers).
 */
#ifndef MEMPOOL_TOOLS_H
#define MEMPOOL_TOOLS_H

#include <stddef.h>
#include <stdint.h>

#include "../trace/trace.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- replay (replay.c) ----------------------------------------------------
 * Replay a recorded or generated allocation trace (trace/trace.h's records)
 * against an allocator, and measure it.
 *
 * The engine performs each event on a backend (the pool's four calls, or
 * libc malloc/calloc/realloc/free, which LD_PRELOAD redirects to a peer
 * allocator), writes one byte per 4 KiB page of every block it allocates (as
 * numpy writes an array's data, so resident memory is real), and measures
 * wall time, live and peak live bytes, and the process's resident set from
 * /proc/self/statm every `sample_every` operations and whenever live bytes
 * reach a new high (1% above the last high sampled).
 *
 * Blocks still live at the end of a run stay allocated until
 * mp_replay_release, so the caller can watch memory come back while they
 * are held (the pool's decay) before releasing them.
 */

/* An allocator: four calls and their context.  Sizes passed to realloc and
 * free are the block's requested size (backends may ignore them). */
typedef struct mp_replay_backend {
    void *(*alloc)(void *ctx, size_t size);
    void *(*calloc)(void *ctx, size_t count, size_t size);
    void *(*realloc)(void *ctx, void *ptr, size_t old_size, size_t new_size);
    void (*free)(void *ctx, void *ptr, size_t size);
    void *ctx;
} mp_replay_backend;

/* Fill *b with libc malloc/calloc/realloc/free (whatever LD_PRELOAD put
 * in their place). */
void mp_replay_backend_libc(mp_replay_backend *b);

typedef struct mp_replay_options {
    uint32_t sample_every; /* RSS sample period in ops; 0 = 64 */
    int touch;             /* 1: write one byte per 4 KiB of each block */
} mp_replay_options;

typedef struct mp_replay_result {
    uint64_t ops;             /* events performed */
    uint64_t bad_events;      /* skipped: id out of range, double alloc,
                                 free of a block not live */
    uint64_t failed;          /* allocations that returned NULL */
    uint64_t elapsed_ns;      /* wall time of the run, touching included */
    uint64_t live_bytes;      /* requested bytes live at the end */
    uint64_t live_blocks;     /* blocks live at the end */
    uint64_t peak_live_bytes; /* max of live bytes during the run */
    uint64_t rss_start;       /* process RSS before the first event */
    uint64_t rss_peak;        /* max RSS sampled during the run */
    uint64_t rss_end;         /* RSS after the last event */
    uint64_t samples;         /* RSS samples taken */
} mp_replay_result;

typedef struct mp_replay mp_replay;

/* A replay state for block ids 0 .. n_ids-1; NULL when out of memory. */
mp_replay *mp_replay_create(uint32_t n_ids);

/* Free the state (live blocks are NOT freed: call mp_replay_release
 * first).  NULL is a no-op. */
void mp_replay_destroy(mp_replay *r);

/* Perform events[0..n) on backend b and fill *out.  Returns 0, or -1 when
 * /proc/self/statm cannot be read (RSS figures are then 0). */
int mp_replay_run(mp_replay *r, const mp_trace_event *events, size_t n,
                  const mp_replay_backend *b, const mp_replay_options *opt,
                  mp_replay_result *out);

/* Free every block still live on backend b; returns how many. */
uint64_t mp_replay_release(mp_replay *r, const mp_replay_backend *b);

#ifdef __cplusplus
}
#endif

#endif /* MEMPOOL_TOOLS_H */
