/*
 * _stacks.h - Python call sites for mempool.history, captured inside numpy's
 * handler calls and interned into stack ids.  Included once, by _core.pyx
 * (the binding); the core knows no Python and stores only the ids.
 *
 * A capture reads up to `depth` frames of the calling thread, innermost
 * first, as (code object, last instruction offset) pairs: no line number is
 * computed and no string touched until a snapshot symbolizes the frames it
 * uses (mph_frame_info).  The same pairs give the same stack id: a hash
 * table keyed by the pair sequence finds it in one probe run, and only a new
 * stack interns its frames.  Interned frames hold a reference to their code
 * object, so a frame id stays valid for the life of the process.
 *
 * Safety inside a handler call: frames are read only when this thread holds
 * the GIL (numpy now and then calls the handler without it: the id is then
 * MPH_NO_GIL); reading a frame may create its frame object, so the cyclic GC
 * is held off meanwhile (a collection there could run finalizers that free
 * arrays into the pool under our feet) and an exception in flight is kept.
 * The tables have their own lock (free-threaded builds have no GIL).
 */
#ifndef MEMPOOL_STACKS_H
#define MEMPOOL_STACKS_H

#include <Python.h>
#include <frameobject.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MPH_UNKNOWN (-1)
#define MPH_NO_GIL (-2)
#define MPH_MAX_DEPTH 128
/* Interned frame ids across all stacks at most: beyond, captures read
 * MPH_UNKNOWN (a program generating code without end cannot grow this
 * table without end). */
#define MPH_MAX_STACK_FRAMES ((size_t)1 << 24)

typedef struct mph_frame {
    PyObject *code; /* strong reference */
    int lasti;      /* byte offset of the instruction running, or -1 */
} mph_frame;

typedef struct mph_tables {
    pthread_mutex_t mu;
    mph_frame *frames;          /* frame id -> (code, lasti) */
    size_t n_frames, cap_frames;
    int32_t *frame_slots;       /* open addressing: frame ids, -1 empty */
    size_t frame_slots_cap;     /* power of two */
    int32_t *stack_frames;      /* every stack's frame ids, back to back */
    size_t n_stack_frames, cap_stack_frames;
    uint32_t *stack_start;      /* stack id -> first index; n_stacks + 1 entries */
    size_t n_stacks, cap_stacks;
    uint64_t *stack_hashes;     /* stack id -> hash of its pairs */
    size_t cap_hashes;
    int32_t *stack_slots;       /* open addressing: stack ids, -1 empty */
    size_t stack_slots_cap;
    uint64_t full;              /* captures refused: table at its limit */
} mph_tables;

static mph_tables mph_t = {PTHREAD_MUTEX_INITIALIZER};

static uint64_t mph_mix(uint64_t h, uint64_t v) {
    h ^= v + 0x9E3779B97F4A7C15ull + (h << 6) + (h >> 2);
    return h * 0xBF58476D1CE4E5B9ull;
}

static uint64_t mph_pair_hash(const mph_frame *f) {
    return mph_mix((uint64_t)(uintptr_t)f->code >> 4, (uint64_t)(int64_t)f->lasti);
}

/* Grow an array of `*cap` elements of `elsize` to hold `need`; 0 or -1. */
static int mph_reserve(void **buf, size_t *cap, size_t need, size_t elsize) {
    if (need <= *cap)
        return 0;
    size_t cap2 = *cap ? *cap : 256;
    while (cap2 < need)
        cap2 *= 2;
    void *p = realloc(*buf, cap2 * elsize);
    if (p == NULL)
        return -1;
    *buf = p;
    *cap = cap2;
    return 0;
}

static uint64_t mph_frame_hash_of(size_t id);
static uint64_t mph_stack_hash_of(size_t id);

/* Make room for one more of `n` ids in an open-addressing table of ids
 * (-1 empty), kept at most half full: doubled and refilled with hash_of.
 * 0, or -1 when out of memory (table unchanged). */
static int mph_slots_room(int32_t **slots, size_t *cap, size_t n, uint64_t (*hash_of)(size_t)) {
    if ((n + 1) * 2 <= *cap)
        return 0;
    size_t cap2 = *cap ? *cap * 2 : 1024;
    int32_t *s = malloc(cap2 * sizeof *s);
    if (s == NULL)
        return -1;
    memset(s, 0xff, cap2 * sizeof *s);
    for (size_t id = 0; id < n; id++) {
        size_t i = hash_of(id) & (cap2 - 1);
        while (s[i] >= 0)
            i = (i + 1) & (cap2 - 1);
        s[i] = (int32_t)id;
    }
    free(*slots);
    *slots = s;
    *cap = cap2;
    return 0;
}

static uint64_t mph_frame_hash_of(size_t id) { return mph_pair_hash(&mph_t.frames[id]); }
static uint64_t mph_stack_hash_of(size_t id) { return mph_t.stack_hashes[id]; }

/* The id of frame f, interned if new (code gets a reference); -1 when out
 * of memory.  mu held. */
static int32_t mph_frame_id(const mph_frame *f) {
    mph_tables *t = &mph_t;
    if (mph_slots_room(&t->frame_slots, &t->frame_slots_cap, t->n_frames, mph_frame_hash_of))
        return -1;
    size_t mask = t->frame_slots_cap - 1;
    size_t i = mph_pair_hash(f) & mask;
    for (; t->frame_slots[i] >= 0; i = (i + 1) & mask) {
        const mph_frame *g = &t->frames[t->frame_slots[i]];
        if (g->code == f->code && g->lasti == f->lasti)
            return t->frame_slots[i];
    }
    if (mph_reserve((void **)&t->frames, &t->cap_frames, t->n_frames + 1, sizeof *t->frames))
        return -1;
    Py_INCREF(f->code);
    t->frames[t->n_frames] = *f;
    t->frame_slots[i] = (int32_t)t->n_frames;
    return (int32_t)t->n_frames++;
}

/* Whether stack `id` is the pair sequence pairs[0..n).  mu held. */
static int mph_stack_is(size_t id, const mph_frame *pairs, int n) {
    mph_tables *t = &mph_t;
    uint32_t a = t->stack_start[id], b = t->stack_start[id + 1];
    if ((int)(b - a) != n)
        return 0;
    for (int k = 0; k < n; k++) {
        const mph_frame *g = &t->frames[t->stack_frames[a + k]];
        if (g->code != pairs[k].code || g->lasti != pairs[k].lasti)
            return 0;
    }
    return 1;
}

/* The id of the stack pairs[0..n), interned if new.  mu held. */
static int32_t mph_stack_id(const mph_frame *pairs, int n, uint64_t hash) {
    mph_tables *t = &mph_t;
    if (mph_slots_room(&t->stack_slots, &t->stack_slots_cap, t->n_stacks, mph_stack_hash_of))
        return MPH_UNKNOWN;
    size_t mask = t->stack_slots_cap - 1;
    size_t i = hash & mask;
    for (; t->stack_slots[i] >= 0; i = (i + 1) & mask) {
        int32_t id = t->stack_slots[i];
        if (t->stack_hashes[id] == hash && mph_stack_is((size_t)id, pairs, n))
            return id;
    }
    if (t->n_stack_frames + (size_t)n > MPH_MAX_STACK_FRAMES) {
        t->full++;
        return MPH_UNKNOWN;
    }
    if (mph_reserve((void **)&t->stack_frames, &t->cap_stack_frames,
                    t->n_stack_frames + (size_t)n, sizeof *t->stack_frames) ||
        mph_reserve((void **)&t->stack_start, &t->cap_stacks, t->n_stacks + 2,
                    sizeof *t->stack_start) ||
        mph_reserve((void **)&t->stack_hashes, &t->cap_hashes, t->n_stacks + 2,
                    sizeof *t->stack_hashes))
        return MPH_UNKNOWN;
    size_t at = t->n_stack_frames;
    for (int k = 0; k < n; k++) {
        int32_t fid = mph_frame_id(&pairs[k]);
        if (fid < 0)
            return MPH_UNKNOWN; /* frames interned so far stay: harmless */
        t->stack_frames[at + (size_t)k] = fid;
    }
    int32_t id = (int32_t)t->n_stacks;
    t->stack_start[id] = (uint32_t)at;
    t->stack_start[id + 1] = (uint32_t)(at + (size_t)n);
    t->stack_hashes[id] = hash;
    t->n_stack_frames += (size_t)n;
    t->n_stacks++;
    t->stack_slots[i] = id;
    return id;
}

/* The calling thread's Python stack, at most `depth` frames, as a stack
 * id; MPH_NO_GIL without the GIL; MPH_UNKNOWN with no frame (or depth 0). */
static int32_t mph_capture(int depth) {
    if (!PyGILState_Check())
        return MPH_NO_GIL;
    if (depth <= 0)
        return MPH_UNKNOWN;
    if (depth > MPH_MAX_DEPTH)
        depth = MPH_MAX_DEPTH;
    mph_frame pairs[MPH_MAX_DEPTH];
    int n = 0;
    PyObject *et, *ev, *etb;
    PyErr_Fetch(&et, &ev, &etb);
    int gc_was_on = PyGC_Disable();
    PyFrameObject *f = PyEval_GetFrame(); /* borrowed */
    Py_XINCREF(f);
    while (f != NULL && n < depth) {
        PyCodeObject *code = PyFrame_GetCode(f);
        pairs[n].code = (PyObject *)code;
#if PY_VERSION_HEX >= 0x030B0000
        pairs[n].lasti = PyFrame_GetLasti(f);
#else
        pairs[n].lasti = PyFrame_GetLineNumber(f) | (1 << 30); /* a line, marked */
#endif
        n++;
        Py_DECREF(code); /* the frame keeps it alive through this capture */
        PyFrameObject *back = PyFrame_GetBack(f);
        Py_DECREF(f);
        f = back;
    }
    Py_XDECREF(f);
    PyErr_Clear(); /* a frame object that could not be made ends the walk */
    if (gc_was_on)
        PyGC_Enable();
    PyErr_Restore(et, ev, etb);
    if (n == 0)
        return MPH_UNKNOWN;
    uint64_t hash = 0x51ED27u;
    for (int k = 0; k < n; k++)
        hash = mph_mix(hash, mph_pair_hash(&pairs[k]));
    pthread_mutex_lock(&mph_t.mu);
    int32_t id = mph_stack_id(pairs, n, hash);
    pthread_mutex_unlock(&mph_t.mu);
    return id;
}

/* Frame ids of stack `id` into out (at most max); how many, or -1 for an
 * id that is not a stack. */
static int mph_stack_frames(int32_t id, int32_t *out, int max) {
    int n = -1;
    pthread_mutex_lock(&mph_t.mu);
    if (id >= 0 && (size_t)id < mph_t.n_stacks) {
        uint32_t a = mph_t.stack_start[id], b = mph_t.stack_start[id + 1];
        n = 0;
        for (uint32_t k = a; k < b && n < max; k++)
            out[n++] = mph_t.stack_frames[k];
    }
    pthread_mutex_unlock(&mph_t.mu);
    return n;
}

/* (file, line, function) of frame `id` as a new tuple; None when unknown.
 * GIL held. */
static PyObject *mph_frame_info(int32_t id) {
    PyObject *code = NULL;
    int lasti = -1;
    pthread_mutex_lock(&mph_t.mu);
    if (id >= 0 && (size_t)id < mph_t.n_frames) {
        code = mph_t.frames[id].code;
        lasti = mph_t.frames[id].lasti;
        Py_INCREF(code);
    }
    pthread_mutex_unlock(&mph_t.mu);
    if (code == NULL)
        Py_RETURN_NONE;
    PyCodeObject *co = (PyCodeObject *)code;
#if PY_VERSION_HEX >= 0x030B0000
    int line = PyCode_Addr2Line(co, lasti);
    PyObject *name = co->co_qualname;
#else
    int line = lasti & ~(1 << 30);
    PyObject *name = co->co_name;
#endif
    PyObject *out = Py_BuildValue("(OiO)", co->co_filename, line, name);
    Py_DECREF(code);
    return out;
}

/* (stacks, stack frames, frames) interned so far, and captures refused. */
static PyObject *mph_table_sizes(void) {
    pthread_mutex_lock(&mph_t.mu);
    PyObject *out = Py_BuildValue("(nnnK)", (Py_ssize_t)mph_t.n_stacks,
                                  (Py_ssize_t)mph_t.n_stack_frames,
                                  (Py_ssize_t)mph_t.n_frames, (unsigned long long)mph_t.full);
    pthread_mutex_unlock(&mph_t.mu);
    return out;
}

#endif /* MEMPOOL_STACKS_H */
