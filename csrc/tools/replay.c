/*
 * replay.c - the trace replay engine (see tools.h).
 *
 * Why C: a replay must measure the allocator, not an interpreter; per event
 * this does one table lookup, one allocator call and the page writes.
 */
#define _DEFAULT_SOURCE
#include "tools.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define TOUCH_STRIDE 4096u

struct mp_replay {
    uint32_t n_ids;
    void **ptr;     /* live block of each id, NULL when not live */
    uint64_t *size; /* its requested size */
    uint8_t *live;  /* 1 while the id is live (a 0-byte block may be NULL) */
};

/* libc backend: malloc. */
static void *libc_alloc(void *ctx, size_t size)
{
    (void)ctx;
    return malloc(size);
}

/* libc backend: calloc. */
static void *libc_calloc(void *ctx, size_t count, size_t size)
{
    (void)ctx;
    return calloc(count, size);
}

/* libc backend: realloc. */
static void *libc_realloc(void *ctx, void *ptr, size_t old, size_t size)
{
    (void)ctx;
    (void)old;
    return realloc(ptr, size);
}

/* libc backend: free. */
static void libc_free(void *ctx, void *ptr, size_t size)
{
    (void)ctx;
    (void)size;
    free(ptr);
}

/* libc's four calls. */
void mp_replay_backend_libc(mp_replay_backend *b)
{
    b->alloc = libc_alloc;
    b->calloc = libc_calloc;
    b->realloc = libc_realloc;
    b->free = libc_free;
    b->ctx = NULL;
}

/* Monotonic clock in nanoseconds. */
static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* RSS from an open statm descriptor; 0 when the read fails. */
static uint64_t rss_of(int fd)
{
    char buf[128];
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    char *p = buf;
    strtoull(p, &p, 10); /* total program size: skipped */
    unsigned long long pages = strtoull(p, NULL, 10);
    return (uint64_t)pages * (uint64_t)sysconf(_SC_PAGESIZE);
}

/* Write one byte in every 4 KiB of the block, as numpy's writes would. */
static void touch(void *p, uint64_t size)
{
    volatile unsigned char *c = p;
    for (uint64_t off = 0; off < size; off += TOUCH_STRIDE)
        c[off] = 1;
}

/* Tables for n_ids blocks, all not live. */
mp_replay *mp_replay_create(uint32_t n_ids)
{
    mp_replay *r = calloc(1, sizeof *r);
    if (r == NULL)
        return NULL;
    size_t n = n_ids ? n_ids : 1;
    r->n_ids = n_ids;
    r->ptr = calloc(n, sizeof *r->ptr);
    r->size = calloc(n, sizeof *r->size);
    r->live = calloc(n, 1);
    if (r->ptr == NULL || r->size == NULL || r->live == NULL) {
        mp_replay_destroy(r);
        return NULL;
    }
    return r;
}

/* Free the tables. */
void mp_replay_destroy(mp_replay *r)
{
    if (r == NULL)
        return;
    free(r->ptr);
    free(r->size);
    free(r->live);
    free(r);
}

/* Replay the events; see tools.h for what is measured. */
int mp_replay_run(mp_replay *r, const mp_trace_event *events, size_t n,
                  const mp_replay_backend *b, const mp_replay_options *opt,
                  mp_replay_result *out)
{
    uint32_t every = opt && opt->sample_every ? opt->sample_every : 64;
    int do_touch = opt ? opt->touch : 1;
    memset(out, 0, sizeof *out);
    int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
    uint64_t live = 0, live_blocks = 0, peak_live = 0, sampled_live = 0;
    for (uint32_t id = 0; id < r->n_ids; id++)
        if (r->live[id]) {
            live += r->size[id];
            live_blocks++;
        }
    peak_live = sampled_live = live;
    out->rss_start = out->rss_peak = fd >= 0 ? rss_of(fd) : 0;
    uint64_t t0 = now_ns();
    uint32_t since_sample = 0;
    for (size_t k = 0; k < n; k++) {
        const mp_trace_event *e = &events[k];
        uint32_t id = e->id;
        if (id >= r->n_ids) {
            out->bad_events++;
            continue;
        }
        void *p;
        switch (e->op) {
        case MP_TRACE_ALLOC:
        case MP_TRACE_CALLOC:
            if (r->live[id]) {
                out->bad_events++;
                continue;
            }
            p = e->op == MP_TRACE_ALLOC ? b->alloc(b->ctx, e->size)
                                        : b->calloc(b->ctx, 1, e->size);
            if (p == NULL && e->size != 0) {
                out->failed++;
                continue;
            }
            if (do_touch && p != NULL)
                touch(p, e->size);
            r->ptr[id] = p;
            r->size[id] = e->size;
            r->live[id] = 1;
            live += e->size;
            live_blocks++;
            break;
        case MP_TRACE_REALLOC:
            if (!r->live[id]) {
                out->bad_events++;
                continue;
            }
            p = b->realloc(b->ctx, r->ptr[id], r->size[id], e->size);
            if (p == NULL && e->size != 0) {
                out->failed++; /* the old block is still live */
                continue;
            }
            if (do_touch && p != NULL)
                touch(p, e->size);
            live = live - r->size[id] + e->size;
            r->ptr[id] = p;
            r->size[id] = e->size;
            break;
        case MP_TRACE_FREE:
            if (!r->live[id]) {
                out->bad_events++;
                continue;
            }
            b->free(b->ctx, r->ptr[id], r->size[id]);
            live -= r->size[id];
            live_blocks--;
            r->ptr[id] = NULL;
            r->live[id] = 0;
            break;
        default:
            out->bad_events++;
            continue;
        }
        out->ops++;
        if (live > peak_live)
            peak_live = live;
        /* Sample on schedule, and when live bytes climb to a new high. */
        if (fd >= 0 && (++since_sample >= every ||
                        live > sampled_live + sampled_live / 100)) {
            uint64_t rss = rss_of(fd);
            if (rss > out->rss_peak)
                out->rss_peak = rss;
            if (live > sampled_live)
                sampled_live = live;
            since_sample = 0;
            out->samples++;
        }
    }
    out->elapsed_ns = now_ns() - t0;
    out->live_bytes = live;
    out->live_blocks = live_blocks;
    out->peak_live_bytes = peak_live;
    if (fd >= 0) {
        out->rss_end = rss_of(fd);
        if (out->rss_end > out->rss_peak)
            out->rss_peak = out->rss_end;
        close(fd);
        return 0;
    }
    return -1;
}

/* Free the blocks left live by earlier runs. */
uint64_t mp_replay_release(mp_replay *r, const mp_replay_backend *b)
{
    uint64_t n = 0;
    for (uint32_t id = 0; id < r->n_ids; id++)
        if (r->live[id]) {
            b->free(b->ctx, r->ptr[id], r->size[id]);
            r->ptr[id] = NULL;
            r->live[id] = 0;
            n++;
        }
    return n;
}
