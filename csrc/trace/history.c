/*
 * history.c - the allocation history of a pool (mempool.history): every
 * alloc, free and realloc the binding reports, with the call site it passes
 * (a stack id: the binding captures and interns Python frames, this file
 * knows no Python), the pool's own events as its observer, and where each
 * live block was made.
 *
 * Glossary: ring = a bounded event buffer that grows by doubling up to its
 * maximum, then overwrites its oldest entries (counted as dropped); live =
 * address -> (requested size, site) of every block allocated while recording
 * and not freed (addrmap.c).
 *
 * Locks: `mu` orders allocation events and guards `live`; the binding holds
 * it across the pool's free and realloc (mp_history_lock), so an address
 * freed by one thread and handed to another is recorded free first.
 * `ring_mu` guards the rings and is a leaf: the observer takes it under the
 * pool's locks.  Order: mu -> the pool's locks -> ring_mu.
 *
 * Fork: the child starts with empty rings and a fresh clock, and keeps the
 * live blocks (they are still the child's): prepare takes every recorder's
 * mu (before the pool's handlers take the pool's locks: they were installed
 * first, so they run after), the child makes both locks anew.
 */
#define _GNU_SOURCE
#include "trace.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* One allocation event as kept (32 bytes). */
typedef struct history_event {
    uint64_t t_ns, address, size;
    int32_t stack;
    uint32_t thread : 24; /* Linux thread ids fit in 22 bits (pid_max) */
    uint32_t op : 8;
} history_event;
_Static_assert(sizeof(history_event) == 32, "history events are 32 bytes");

/* One pool event as kept (40 bytes). */
typedef struct history_pool_event {
    uint64_t t_ns, address, size, arg;
    int32_t stack;
    int32_t kind;
} history_pool_event;

typedef struct history_ring {
    char *buf;
    size_t elsize, len, max; /* len entries allocated, at most max */
    uint64_t total;          /* entries ever appended: the next goes at total % max */
    uint64_t lost;           /* appends that found no memory */
} history_ring;

struct mp_history {
    pthread_mutex_t mu, ring_mu;
    _Atomic int active;
    _Atomic int moving;    /* a defragment bracket is open (mu held by `mover`) */
    pthread_t mover;
    uint64_t t0_ns, t0_unix_ns;
    history_ring events, pool_events;
    addrmap live;
    uint64_t no_gil;
    struct mp_history *next; /* the registry, for fork */
};

/* ---- time, threads, fork ---------------------------------------------- */

/* A clock in nanoseconds. */
static uint64_t history_clock(clockid_t id) {
    struct timespec ts;
    clock_gettime(id, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static pthread_mutex_t registry_mu = PTHREAD_MUTEX_INITIALIZER;
static mp_history *registry;
static _Atomic uint64_t fork_generation = 1;

/* This thread's OS id, asked of the kernel once per thread (and again in a
 * fork child, where the forking thread has a new one). */
static uint32_t history_thread(void) {
    static _Thread_local uint64_t gen;
    static _Thread_local uint32_t tid;
    uint64_t now = atomic_load_explicit(&fork_generation, memory_order_relaxed);
    if (gen != now) {
        tid = (uint32_t)syscall(SYS_gettid);
        gen = now;
    }
    return tid;
}

static void history_prefork(void) {
    pthread_mutex_lock(&registry_mu);
    for (mp_history *h = registry; h; h = h->next)
        pthread_mutex_lock(&h->mu);
}

static void history_postfork_parent(void) {
    for (mp_history *h = registry; h; h = h->next)
        pthread_mutex_unlock(&h->mu);
    pthread_mutex_unlock(&registry_mu);
}

/* The child: fresh locks (another thread may have held ring_mu), empty
 * rings, a fresh clock; the live blocks stay. */
static void history_postfork_child(void) {
    atomic_fetch_add(&fork_generation, 1);
    for (mp_history *h = registry; h; h = h->next) {
        pthread_mutex_init(&h->mu, NULL);
        pthread_mutex_init(&h->ring_mu, NULL);
        h->events.total = h->events.lost = 0;
        h->pool_events.total = h->pool_events.lost = 0;
        h->no_gil = 0;
        atomic_store(&h->moving, 0);
        h->t0_ns = history_clock(CLOCK_MONOTONIC);
        h->t0_unix_ns = history_clock(CLOCK_REALTIME);
    }
    pthread_mutex_init(&registry_mu, NULL);
}

static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

/* Install the fork handlers once. */
static void history_atfork_install(void) {
    pthread_atfork(history_prefork, history_postfork_parent, history_postfork_child);
}

/* ---- rings ---------------------------------------------------------------- */

/* Where the next entry goes, growing the buffer while it is below its
 * maximum; NULL when no memory could be had (counted).  ring_mu held. */
static void *history_ring_slot(history_ring *r) {
    if (r->total < r->max && r->total == r->len) {
        size_t len = r->len ? r->len * 2 : 4096;
        if (len > r->max)
            len = r->max;
        /* a fresh buffer, assigned before the old one is freed: a fork
         * child never sees a pointer to freed memory */
        char *buf = malloc(len * r->elsize);
        if (buf == NULL) {
            r->lost++;
            return NULL;
        }
        if (r->len)
            memcpy(buf, r->buf, r->len * r->elsize);
        char *old = r->buf;
        r->buf = buf;
        r->len = len;
        free(old);
    }
    return r->buf + (size_t)(r->total++ % r->max) * r->elsize;
}

/* Entries the ring holds now, and the index of the oldest. */
static size_t history_ring_held(const history_ring *r, size_t *oldest) {
    if (r->total <= r->max) {
        *oldest = 0;
        return (size_t)r->total;
    }
    *oldest = (size_t)(r->total % r->max);
    return r->max;
}

/* The i-th oldest entry held. */
static const void *history_ring_at(const history_ring *r, size_t oldest, size_t i) {
    return r->buf + ((oldest + i) % (r->max ? r->max : 1)) * r->elsize;
}

/* ---- recording ------------------------------------------------------------ */

/* Append an allocation event.  mu held (ring_mu taken here). */
static void history_push(mp_history *h, int op, uintptr_t address, uint64_t size, int32_t stack) {
    uint32_t thread = history_thread();
    pthread_mutex_lock(&h->ring_mu);
    history_event *e = history_ring_slot(&h->events);
    if (e) {
        *e = (history_event){.t_ns = history_clock(CLOCK_MONOTONIC) - h->t0_ns,
                             .address = address, .size = size, .stack = stack,
                             .thread = thread & 0xFFFFFF, .op = (uint32_t)op};
        h->no_gil += stack == MP_STACK_NO_GIL;
    }
    pthread_mutex_unlock(&h->ring_mu);
}

mp_history *mp_history_create(void) {
    mp_history *h = calloc(1, sizeof *h);
    if (h == NULL)
        return NULL;
    if (addrmap_init(&h->live) != 0) {
        free(h);
        return NULL;
    }
    pthread_mutex_init(&h->mu, NULL);
    pthread_mutex_init(&h->ring_mu, NULL);
    h->events.elsize = sizeof(history_event);
    h->pool_events.elsize = sizeof(history_pool_event);
    pthread_once(&atfork_once, history_atfork_install);
    pthread_mutex_lock(&registry_mu);
    h->next = registry;
    registry = h;
    pthread_mutex_unlock(&registry_mu);
    return h;
}

void mp_history_destroy(mp_history *h) {
    if (h == NULL)
        return;
    pthread_mutex_lock(&registry_mu);
    for (mp_history **p = &registry; *p; p = &(*p)->next)
        if (*p == h) {
            *p = h->next;
            break;
        }
    pthread_mutex_unlock(&registry_mu);
    pthread_mutex_destroy(&h->mu);
    pthread_mutex_destroy(&h->ring_mu);
    free(h->events.buf);
    free(h->pool_events.buf);
    addrmap_free(&h->live);
    free(h);
}

int mp_history_start(mp_history *h, size_t max_entries) {
    if (max_entries == 0)
        return -1;
    pthread_mutex_lock(&h->mu);
    pthread_mutex_lock(&h->ring_mu);
    for (history_ring *r = &h->events; r; r = r == &h->events ? &h->pool_events : NULL) {
        if (r->max != max_entries) { /* a new size: a new buffer */
            free(r->buf);
            r->buf = NULL;
            r->len = 0;
            r->max = max_entries;
        }
        r->total = r->lost = 0;
    }
    h->no_gil = 0;
    addrmap_clear(&h->live);
    h->t0_ns = history_clock(CLOCK_MONOTONIC);
    h->t0_unix_ns = history_clock(CLOCK_REALTIME);
    atomic_store(&h->active, 1);
    pthread_mutex_unlock(&h->ring_mu);
    pthread_mutex_unlock(&h->mu);
    return 0;
}

void mp_history_stop(mp_history *h) {
    pthread_mutex_lock(&h->mu);
    atomic_store(&h->active, 0);
    pthread_mutex_unlock(&h->mu);
}

int mp_history_active(mp_history *h) {
    return atomic_load_explicit(&h->active, memory_order_relaxed);
}

void mp_history_lock(mp_history *h) { pthread_mutex_lock(&h->mu); }

void mp_history_unlock(mp_history *h) { pthread_mutex_unlock(&h->mu); }

void mp_history_note_alloc(mp_history *h, int op, const void *ptr, uint64_t size, int32_t stack) {
    if (!atomic_load_explicit(&h->active, memory_order_relaxed) || ptr == NULL)
        return;
    history_push(h, op, (uintptr_t)ptr, size, stack);
    addrmap_put(&h->live, (uintptr_t)ptr, size, stack); /* no room: its free reads unknown */
}

int mp_history_take(mp_history *h, const void *ptr, uint64_t *size, int32_t *stack) {
    addrmap_slot slot;
    if (!atomic_load_explicit(&h->active, memory_order_relaxed) ||
        !addrmap_take(&h->live, (uintptr_t)ptr, &slot))
        return 0;
    *size = slot.size;
    *stack = slot.site;
    return 1;
}

void mp_history_untake(mp_history *h, const void *ptr, uint64_t size, int32_t stack) {
    addrmap_put(&h->live, (uintptr_t)ptr, size, stack);
}

void mp_history_note_free(mp_history *h, int op, const void *ptr, uint64_t size, int32_t stack) {
    if (atomic_load_explicit(&h->active, memory_order_relaxed) && ptr != NULL)
        history_push(h, op, (uintptr_t)ptr, size, stack);
}

void mp_history_note_pool(mp_history *h, int kind, uintptr_t address, uint64_t size, uint64_t arg,
                          int32_t stack) {
    if (!atomic_load_explicit(&h->active, memory_order_relaxed))
        return;
    pthread_mutex_lock(&h->ring_mu);
    history_pool_event *e = history_ring_slot(&h->pool_events);
    if (e)
        *e = (history_pool_event){.t_ns = history_clock(CLOCK_MONOTONIC) - h->t0_ns,
                                  .address = address, .size = size, .arg = arg,
                                  .stack = stack, .kind = kind};
    pthread_mutex_unlock(&h->ring_mu);
}

void mp_history_moves_begin(mp_history *h) {
    pthread_mutex_lock(&h->mu);
    h->mover = pthread_self();
    atomic_store(&h->moving, 1);
}

void mp_history_moves_end(mp_history *h) {
    atomic_store(&h->moving, 0);
    pthread_mutex_unlock(&h->mu);
}

/* A buffer moved inside a moves bracket: its live entry (site kept) follows
 * it, and the events stream says move_free, then move.  mu is held by this
 * very thread (the bracket), so the map may be touched. */
static void history_moved(mp_history *h, const mp_event *ev) {
    addrmap_slot slot = {.size = ev->size, .site = MP_STACK_UNKNOWN};
    addrmap_take(&h->live, ev->address, &slot);
    history_push(h, MP_HIST_MOVE_FREE, ev->address, slot.size, slot.site);
    history_push(h, MP_HIST_MOVE, (uintptr_t)ev->arg, slot.size, slot.site);
    addrmap_put(&h->live, (uintptr_t)ev->arg, slot.size, slot.site);
}

void mp_history_observe(void *ctx, const mp_event *ev) {
    mp_history *h = ctx;
    if (!atomic_load_explicit(&h->active, memory_order_relaxed))
        return;
    if (ev->kind == MP_EV_MOVE) {
        /* outside a bracket (a C caller of mp_defragment) the map's lock
         * cannot be taken here, under the pool's: the move is not recorded */
        if (atomic_load(&h->moving) && pthread_equal(h->mover, pthread_self()))
            history_moved(h, ev);
        return;
    }
    mp_history_note_pool(h, ev->kind, ev->address, ev->size, ev->arg, MP_STACK_UNKNOWN);
}

/* ---- reading ---------------------------------------------------------------- */

void mp_history_counts(mp_history *h, mp_history_info *out) {
    pthread_mutex_lock(&h->ring_mu);
    size_t oldest;
    *out = (mp_history_info){
        .recorded = h->events.total + h->events.lost,
        .held = history_ring_held(&h->events, &oldest),
        .dropped = (h->events.total > h->events.max ? h->events.total - h->events.max : 0) +
                   h->events.lost,
        .no_gil = h->no_gil,
        .pool_held = history_ring_held(&h->pool_events, &oldest),
        .pool_dropped = (h->pool_events.total > h->pool_events.max
                             ? h->pool_events.total - h->pool_events.max
                             : 0) + h->pool_events.lost,
        .max_entries = h->events.max,
        .t0_unix_ns = h->t0_unix_ns,
        .now_t_ns = history_clock(CLOCK_MONOTONIC) - h->t0_ns,
        .active = atomic_load(&h->active),
    };
    pthread_mutex_unlock(&h->ring_mu);
}

size_t mp_history_copy_events(mp_history *h, size_t max, uint64_t *t_ns, uint8_t *op,
                              uint64_t *address, uint64_t *size, int32_t *stack,
                              uint32_t *thread) {
    pthread_mutex_lock(&h->ring_mu);
    size_t oldest, n = history_ring_held(&h->events, &oldest);
    if (n > max)
        n = max;
    for (size_t i = 0; i < n; i++) {
        const history_event *e = history_ring_at(&h->events, oldest, i);
        t_ns[i] = e->t_ns;
        op[i] = (uint8_t)e->op;
        address[i] = e->address;
        size[i] = e->size;
        stack[i] = e->stack;
        thread[i] = e->thread;
    }
    pthread_mutex_unlock(&h->ring_mu);
    return n;
}

size_t mp_history_copy_pool_events(mp_history *h, size_t max, uint64_t *t_ns, int32_t *kind,
                                   uint64_t *address, uint64_t *size, uint64_t *arg,
                                   int32_t *stack) {
    pthread_mutex_lock(&h->ring_mu);
    size_t oldest, n = history_ring_held(&h->pool_events, &oldest);
    if (n > max)
        n = max;
    for (size_t i = 0; i < n; i++) {
        const history_pool_event *e = history_ring_at(&h->pool_events, oldest, i);
        t_ns[i] = e->t_ns;
        kind[i] = e->kind;
        address[i] = e->address;
        size[i] = e->size;
        arg[i] = e->arg;
        stack[i] = e->stack;
    }
    pthread_mutex_unlock(&h->ring_mu);
    return n;
}

size_t mp_history_live_count(mp_history *h) {
    pthread_mutex_lock(&h->mu);
    size_t n = h->live.used;
    pthread_mutex_unlock(&h->mu);
    return n;
}

size_t mp_history_copy_live(mp_history *h, size_t max, uint64_t *address, uint64_t *size,
                            int32_t *stack) {
    pthread_mutex_lock(&h->mu);
    size_t n = 0;
    for (size_t i = 0; i < h->live.cap && n < max; i++) {
        const addrmap_slot *s = &h->live.slots[i];
        if (s->key == 0)
            continue;
        address[n] = s->key;
        size[n] = s->size;
        stack[n] = s->site;
        n++;
    }
    pthread_mutex_unlock(&h->mu);
    return n;
}
