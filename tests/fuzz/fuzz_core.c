/*
 * fuzz_core.c - libFuzzer harness of the C core against a shadow model.
 *
 * Each input is a program: the first bytes pick a small pool config (tight
 * capacity, small small_max and arenas, decay 0/1 s/never, debug on or off),
 * the rest decode into calls - alloc, aligned, calloc, realloc, free with the
 * right, unknown or a wrong size, trim, purge, check, movable buffers and
 * defragment - with hostile values mixed in: sizes near SIZE_MAX, count*size
 * overflow, non-power-of-two alignments, interior, foreign, stale and
 * double-freed pointers, stale buffer handles.
 *
 * The shadow keeps every live block's address, size and content seed.  After
 * every call: the return code is the one the contract promises, content is
 * intact (verified before each free/realloc and after each move), a failed
 * call counted exactly one error and changed nothing else, mp_pool_check is
 * 0 and live_bytes equals the shadow's sum.  Any difference aborts.
 *
 * Build and run: `make fuzz` (clang -fsanitize=fuzzer,address,undefined, with
 * the csrc/ files); replay one input: tests/c/bin/fuzz/fuzz_core FILE (FUZZ_TRACE=1
 * prints the step of each call).
 */
#include "mempool.h"
#include "base/base.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SLOTS 32
#define BUFS 8
#define STALE 8
#define MiB ((size_t)1 << 20)

/* ---- input decoding ---------------------------------------------------- */
typedef struct input {
    const uint8_t *d;
    size_t n, i;
} input;

/* The next `bytes` input bytes, little-endian; zeros past the end. */
static uint64_t take(input *in, int bytes) {
    uint64_t v = 0;
    for (int b = 0; b < bytes; b++)
        v |= (uint64_t)(in->i < in->n ? in->d[in->i++] : 0) << (8 * b);
    return v;
}
/* The next input byte (0 past the end). */
static unsigned u8(input *in) { return (unsigned)take(in, 1); }

/* Sizes the contract must refuse with MP_ESIZE (above 2^46). */
static const size_t HOSTILE_SIZES[] = {SIZE_MAX, SIZE_MAX - 1, SIZE_MAX - 63, SIZE_MAX / 2,
                                       ((size_t)1 << 46) + 1, (size_t)1 << 47, (size_t)1 << 63};
#define NHOSTILE (sizeof HOSTILE_SIZES / sizeof HOSTILE_SIZES[0])

/* A request size: mostly small, sometimes class edges, large, or direct. */
static size_t gen_size(input *in, const mp_config *c) {
    unsigned mode = u8(in) % 16;
    if (mode < 7)
        return take(in, 1) * (mode + 1);
    if (mode < 10) { /* edges of classes and of the small/large split */
        static const size_t edge[] = {0, 1, 63, 64, 65, 512, 513, 1024, 4095, 4096, 4097};
        size_t k = u8(in) % 14;
        if (k < 11)
            return edge[k];
        return c->small_max + k - 12; /* small_max - 1 .. + 1 */
    }
    if (mode < 13)
        return take(in, 2) * (mode == 12 ? 16 : 1); /* up to 1 MiB */
    if (mode < 15)
        return (size_t)(take(in, 3) % (6 * MiB)); /* direct mappings beyond the arena */
    return HOSTILE_SIZES[u8(in) % NHOSTILE];
}

/* ---- the shadow -------------------------------------------------------- */
typedef struct block {
    unsigned char *p;
    size_t size;
    uint8_t seed;
} block;

typedef struct buf {
    mp_buffer h;
    size_t size;
    uint8_t seed;
    unsigned pins;
    unsigned char *pinned; /* address while pinned */
} buf;

typedef struct world {
    mp_pool *pool;
    mp_config cfg;
    block blocks[SLOTS];
    buf bufs[BUFS];
    void *stale[STALE]; /* addresses freed earlier */
    mp_buffer stale_h[STALE];
    unsigned stale_next, stale_h_next;
    uint64_t errors; /* error_total the shadow expects */
} world;

#define EXPECT(cond, ...)                                                                  \
    do {                                                                                   \
        if (!(cond)) {                                                                     \
            fprintf(stderr, "fuzz_core: %s:%d: %s: ", __FILE__, __LINE__, #cond);          \
            fprintf(stderr, __VA_ARGS__);                                                  \
            fputc('\n', stderr);                                                           \
            abort();                                                                       \
        }                                                                                  \
    } while (0)

/* Byte i of the content the shadow expects for a block with `seed`. */
static inline unsigned char pat(uint8_t seed, size_t i) {
    return (unsigned char)(seed + i * 31 + (i >> 8));
}

/* Fill or verify a block's content: every byte of the first 64 KiB, then
 * every 4093rd (the same positions whatever the size, so a prefix of a
 * block verifies after a realloc). */
static void walk(unsigned char *p, size_t size, uint8_t seed, int verify) {
    for (size_t i = 0; i < size; i += i < 65536 ? 1 : 4093) {
        if (verify)
            EXPECT(p[i] == pat(seed, i), "content of %p (%zu bytes) changed at %zu", (void *)p,
                   size, i);
        else
            p[i] = pat(seed, i);
    }
}

/* Bytes live in the shadow: blocks and buffers. */
static uint64_t live_sum(const world *w) {
    uint64_t s = 0;
    for (int i = 0; i < SLOTS; i++)
        if (w->blocks[i].p)
            s += w->blocks[i].size;
    for (int i = 0; i < BUFS; i++)
        if (w->bufs[i].h)
            s += w->bufs[i].size;
    return s;
}

/* After every call: the pool is healthy and agrees with the shadow. */
static void verify_world(world *w) {
    EXPECT(mp_pool_check(w->pool) == 0, "mp_pool_check found broken invariants");
    mp_stats st;
    EXPECT(mp_stats_get(w->pool, &st) == MP_OK, "stats");
    EXPECT(st.live_bytes == live_sum(w), "live_bytes %llu, shadow %llu",
           (unsigned long long)st.live_bytes, (unsigned long long)live_sum(w));
    EXPECT(st.error_total == w->errors, "error_total %llu, expected %llu",
           (unsigned long long)st.error_total, (unsigned long long)w->errors);
}

/* Bit of an error code in a set of allowed codes. */
#define E(code) (1u << -(code))

/* A call failed with `rc`: it must be one of the `allowed` codes (E() bits). */
static void expect_error(world *w, int rc, unsigned allowed, const char *what) {
    EXPECT(rc < 0 && -rc < 32 && (allowed & E(rc)), "%s: got %s", what, mp_error_name(rc));
    w->errors++;
}

/* Remember a freed address for later stale-pointer calls. */
static void forget(world *w, void *p) {
    w->stale[w->stale_next++ % STALE] = p;
}

/* The live shadow block containing address a (start included), or NULL. */
static block *owner_of(world *w, const unsigned char *a) {
    for (int i = 0; i < SLOTS; i++) {
        block *b = &w->blocks[i];
        if (b->p && a >= b->p && a < b->p + (b->size ? b->size : 1))
            return b;
    }
    return NULL;
}

/* The pinned buffer containing address a, or NULL. */
static buf *buffer_at(world *w, const unsigned char *a) {
    for (int i = 0; i < BUFS; i++) {
        buf *b = &w->bufs[i];
        if (b->h && b->pinned && a >= b->pinned && a < b->pinned + (b->size ? b->size : 1))
            return b;
    }
    return NULL;
}

/* A fresh block was handed out for `size` bytes: record and fill it. */
static void adopt(world *w, block *slot, void *p, size_t size, uint8_t seed, int zeroed) {
    EXPECT(((uintptr_t)p & 63) == 0, "%p not 64-aligned", p);
    EXPECT(owner_of(w, p) == NULL && buffer_at(w, p) == NULL, "%p handed out twice", p);
    size_t req = 1;
    EXPECT(mp_requested_size(w->pool, p, &req) == MP_OK && req == size, "requested %zu != %zu",
           req, size);
    EXPECT(mp_usable_size(w->pool, p) >= size && mp_owns(w->pool, p), "usable/owns");
    if (zeroed)
        for (size_t i = 0; i < size; i += size <= 65536 ? 1 : 4093)
            EXPECT(((unsigned char *)p)[i] == 0, "calloc byte %zu not zero", i);
    *slot = (block){.p = p, .size = size, .seed = seed};
    walk(p, size, seed, 0);
}

/* ---- operations ---------------------------------------------------------- */
/* Sizes above MP_MAX_REQUEST (2^46): the contract refuses them (MP_ESIZE). */
static int must_refuse(size_t size) { return size > ((size_t)1 << 46); }

/* mp_alloc (kind 0), mp_alloc_aligned (1) or mp_calloc (2) into a slot. */
static void op_alloc(world *w, input *in, int kind) {
    block *slot = &w->blocks[u8(in) % SLOTS];
    size_t size = gen_size(in, &w->cfg), align = 64, count = 1, total = size;
    int overflow = 0, bad_align = 0;
    void *p;
    if (kind == 1) { /* aligned */
        unsigned a = u8(in);
        if (a < 200)
            align = (size_t)1 << (a % 31);
        else
            align = (size_t[]){0, 3, 48, 96, 1000, (size_t)1 << 31, SIZE_MAX}[a % 7];
        bad_align = align == 0 || (align & (align - 1)) || align > ((size_t)1 << 30);
        if (!bad_align && align > 4 * MiB && u8(in) % 4)
            align = 4 * MiB; /* keep most huge alignments affordable */
        p = mp_alloc_aligned(w->pool, size, align);
    } else if (kind == 2) { /* calloc */
        unsigned m = u8(in);
        /* hostile counts: the product overflows or exceeds 2^46 (or is 0) */
        count = m < 240 ? m % 17 : SIZE_MAX / (m % 7 + 1);
        overflow = __builtin_mul_overflow(count, size, &total);
        p = mp_calloc(w->pool, count, size);
    } else {
        p = mp_alloc(w->pool, size);
    }
    if (p == NULL) {
        int rc = mp_last_error();
        if (bad_align)
            expect_error(w, rc, E(MP_EALIGN), "bad alignment");
        else if (overflow)
            expect_error(w, rc, E(MP_EOVERFLOW), "calloc overflow");
        else if (must_refuse(total))
            expect_error(w, rc, E(MP_ESIZE), "huge size");
        else
            /* the capacity, or the OS, may refuse any request */
            expect_error(w, rc, E(MP_ENOMEM), "alloc refused");
        return;
    }
    EXPECT(!bad_align && !overflow && !must_refuse(total), "accepted a hostile request");
    EXPECT(((uintptr_t)p & (align - 1)) == 0, "%p not aligned to %zu", p, align);
    if (slot->p) { /* the slot's old block goes first, verified */
        walk(slot->p, slot->size, slot->seed, 1);
        EXPECT(mp_free(w->pool, slot->p, slot->size) == MP_OK, "free of a live block");
        forget(w, slot->p);
        slot->p = NULL;
    }
    adopt(w, slot, p, total, (uint8_t)w->stale_next + 7 * (uint8_t)total, kind == 2);
}

/* mp_realloc of a slot with an unknown, right or wrong old size. */
static void op_realloc(world *w, input *in) {
    block *slot = &w->blocks[u8(in) % SLOTS];
    size_t size = gen_size(in, &w->cfg);
    unsigned how = u8(in) % 4; /* 0: unknown old size, 1-2: right, 3: wrong */
    if (slot->p == NULL) {
        void *p = mp_realloc(w->pool, NULL, 0, size);
        if (p == NULL) {
            expect_error(w, mp_last_error(), must_refuse(size) ? E(MP_ESIZE) : E(MP_ENOMEM),
                         "realloc(NULL)");
            return;
        }
        adopt(w, slot, p, size, (uint8_t)size, 0);
        return;
    }
    walk(slot->p, slot->size, slot->seed, 1);
    size_t old = how == 0 ? 0 : how == 3 ? slot->size + 1 + (size & 7) : slot->size;
    unsigned char *p = mp_realloc(w->pool, slot->p, old, size);
    if (p == NULL) {
        int rc = mp_last_error();
        if (how == 3)
            expect_error(w, rc, E(MP_ESIZE), "realloc with a wrong old size");
        else
            expect_error(w, rc, must_refuse(size) ? E(MP_ESIZE) : E(MP_ENOMEM), "realloc refused");
        walk(slot->p, slot->size, slot->seed, 1); /* untouched and still live */
        return;
    }
    EXPECT(how != 3 && !must_refuse(size), "realloc accepted a wrong old size or huge size");
    size_t keep = slot->size < size ? slot->size : size;
    walk(p, keep, slot->seed, 1);
    if (p != slot->p)
        forget(w, slot->p);
    slot->p = NULL;
    adopt(w, slot, p, size, (uint8_t)(slot->seed + 1), 0);
}

/* mp_free of a slot with an unknown, right or wrong size. */
static void op_free(world *w, input *in) {
    block *slot = &w->blocks[u8(in) % SLOTS];
    unsigned how = u8(in) % 4; /* 0: unknown size, 1-2: right, 3: wrong */
    if (slot->p == NULL)
        return;
    walk(slot->p, slot->size, slot->seed, 1);
    size_t size = how == 0 ? 0 : how == 3 ? slot->size ^ ((size_t)1 << (u8(in) % 20)) : slot->size;
    if (size == 0 && how == 3)
        size = 1;
    int rc = mp_free(w->pool, slot->p, size);
    if (how == 3 && size != slot->size) {
        expect_error(w, rc, E(MP_ESIZE), "free with a wrong size");
        return;
    }
    EXPECT(rc == MP_OK, "free: %s", mp_error_name(rc));
    forget(w, slot->p);
    slot->p = NULL;
}

/* Interior, stale, foreign and wild pointers: refused, nothing changes. */
static void op_bad_pointer(world *w, input *in) {
    static char not_pool[256];
    unsigned what = u8(in) % 6;
    unsigned char *p = NULL;
    if (what == 0) { /* interior pointer of a live block */
        block *b = &w->blocks[u8(in) % SLOTS];
        if (b->p == NULL || b->size < 2)
            return;
        p = b->p + 1 + take(in, 3) % (b->size - 1);
    } else if (what == 1) {
        p = w->stale[u8(in) % STALE];
    } else if (what == 2) {
        p = (unsigned char *)not_pool + u8(in) % 64;
    } else if (what == 3) {
        p = (unsigned char *)(uintptr_t)(take(in, 8) | 1);
    } else if (what == 4) {
        p = (unsigned char *)(uintptr_t)((uint64_t)1 << (47 + u8(in) % 17));
    } else { /* a pinned buffer's address is not a block */
        buf *b = &w->bufs[u8(in) % BUFS];
        p = b->h ? b->pinned : NULL;
    }
    if (p == NULL || (owner_of(w, p) && owner_of(w, p)->p == p))
        return; /* a stale address that is live again, or nothing */
    int interior = owner_of(w, p) != NULL, pinned = buffer_at(w, p) != NULL;
    int realloc_it = u8(in) & 1;
    int rc;
    if (realloc_it) {
        EXPECT(mp_realloc(w->pool, p, 0, 64) == NULL, "realloc of a bad pointer %p", (void *)p);
        rc = mp_last_error();
    } else {
        rc = mp_free(w->pool, p, 0);
    }
    if (interior)
        expect_error(w, rc, E(MP_EINTERIOR), "interior pointer");
    else if (pinned)
        expect_error(w, rc, E(MP_EINVAL) | E(MP_EINTERIOR), "buffer address");
    else
        /* an unpinned buffer may now start at a stale address: EINVAL */
        expect_error(w, rc, E(MP_EDOUBLEFREE) | E(MP_EFOREIGN) | E(MP_EINTERIOR) | E(MP_EINVAL),
                     "stale/foreign pointer");
}

/* Debug mode: one byte past the end is reported on free, and the block goes. */
static void op_overrun(world *w, input *in) {
    block *b = &w->blocks[u8(in) % SLOTS];
    if (!w->cfg.debug || b->p == NULL)
        return;
    MP_UNPOISON(b->p + b->size, 1);
    b->p[b->size] ^= 0x5A;
    mp_corruption_report r[MP_DEBUG_REPORTS];
    int rc = mp_free(w->pool, b->p, 0);
    expect_error(w, rc, E(MP_ECORRUPT), "broken canary");
    EXPECT(mp_debug_reports(w->pool, r, MP_DEBUG_REPORTS) == 1 && r[0].address == (uintptr_t)b->p &&
               r[0].requested == b->size && r[0].kind == MP_CORRUPT_CANARY,
           "report of the broken canary");
    forget(w, b->p);
    b->p = NULL;
}

/* ---- movable buffers (mp_buffer_*, mp_defragment) ---------------------- */
/* One buffer call: create, pin, unpin, destroy, dead handles, defragment. */
static void op_buffer(world *w, input *in) {
    buf *b = &w->bufs[u8(in) % BUFS];
    unsigned what = u8(in) % 8;
    int rc;
    if (what == 0 || b->h == 0) { /* create (over an unpinned old one) */
        if (b->h && b->pins)
            return;
        size_t size = gen_size(in, &w->cfg);
        mp_buffer h = 0;
        rc = mp_buffer_create(w->pool, size, &h);
        if (rc != MP_OK) {
            expect_error(w, rc, must_refuse(size) ? E(MP_ESIZE) : E(MP_ENOMEM), "buffer create");
            return;
        }
        if (b->h) {
            EXPECT(mp_buffer_destroy(w->pool, b->h) == MP_OK, "destroy unpinned buffer");
            w->stale_h[w->stale_h_next++ % STALE] = b->h;
        }
        *b = (buf){.h = h, .size = size, .seed = (uint8_t)(h * 13)};
        void *p;
        EXPECT(mp_buffer_pin(w->pool, h, &p) == MP_OK, "pin a new buffer");
        walk(p, size, b->seed, 0);
        EXPECT(mp_buffer_unpin(w->pool, h) == MP_OK, "unpin");
    } else if (what <= 2) { /* pin: the content is where the buffer is */
        void *p;
        EXPECT(mp_buffer_pin(w->pool, b->h, &p) == MP_OK, "pin");
        EXPECT(b->pins == 0 || p == b->pinned, "a pinned buffer moved");
        b->pinned = p;
        b->pins++;
        walk(p, b->size, b->seed, 1);
    } else if (what == 3) {
        rc = mp_buffer_unpin(w->pool, b->h);
        if (b->pins == 0) {
            expect_error(w, rc, E(MP_EINVAL), "unpin of an unpinned buffer");
        } else {
            EXPECT(rc == MP_OK, "unpin");
            if (--b->pins == 0)
                b->pinned = NULL;
        }
    } else if (what == 4) {
        rc = mp_buffer_destroy(w->pool, b->h);
        if (b->pins) {
            expect_error(w, rc, E(MP_EBUSY), "destroy of a pinned buffer");
        } else {
            EXPECT(rc == MP_OK, "destroy");
            w->stale_h[w->stale_h_next++ % STALE] = b->h;
            *b = (buf){0};
        }
    } else if (what == 5) { /* stale or forged handles */
        mp_buffer h = u8(in) & 1 ? w->stale_h[u8(in) % STALE] : take(in, 8);
        for (int i = 0; i < BUFS; i++)
            if (h == w->bufs[i].h)
                return;
        void *p;
        expect_error(w, mp_buffer_pin(w->pool, h, &p), E(MP_EINVAL), "pin of a dead handle");
        expect_error(w, mp_buffer_destroy(w->pool, h), E(MP_EINVAL), "destroy of a dead handle");
    } else { /* compaction keeps every buffer's content */
        mp_defrag_result res;
        EXPECT(mp_defragment(w->pool, &res) == MP_OK, "defragment");
        for (int i = 0; i < BUFS; i++) {
            buf *x = &w->bufs[i];
            if (x->h == 0)
                continue;
            void *p;
            EXPECT(mp_buffer_pin(w->pool, x->h, &p) == MP_OK, "pin after defragment");
            EXPECT(x->pins == 0 || p == x->pinned, "a pinned buffer moved in defragment");
            walk(p, x->size, x->seed, 1);
            EXPECT(mp_buffer_unpin(w->pool, x->h) == MP_OK, "unpin");
        }
    }
}

/* Many blocks of one small size, all but every k-th freed at once, then
 * mp_trim: in a meshing pool, slabs whose survivors do not overlap are
 * meshed.  Survivors go into free shadow slots (checked from then on) or
 * are freed too. */
static void op_scatter(world *w, input *in) {
    size_t size = 64 * (1 + u8(in) % 48);
    if (size > w->cfg.small_max)
        size = w->cfg.small_max;
    unsigned n = 16 + u8(in) % 240, every = 2 + u8(in) % 14;
    uint8_t seed = (uint8_t)u8(in);
    void *ps[256];
    for (unsigned i = 0; i < n; i++)
        if ((ps[i] = mp_alloc(w->pool, size)) == NULL) {
            expect_error(w, mp_last_error(), E(MP_ENOMEM), "scatter alloc refused");
            n = i; /* the capacity may refuse */
        }
    for (unsigned i = 0; i < n; i++) {
        block *slot = NULL;
        for (int k = 0; k < SLOTS && i % every == 0 && slot == NULL; k++)
            if (w->blocks[k].p == NULL)
                slot = &w->blocks[k];
        if (slot)
            adopt(w, slot, ps[i], size, (uint8_t)(seed + i), 0);
        else
            EXPECT(mp_free(w->pool, ps[i], size) == MP_OK, "scatter free");
    }
    mp_trim(w->pool);
}

/* ---- the program --------------------------------------------------------- */
/* A small pool config from two input bytes. */
static void config_from(input *in, mp_config *c) {
    mp_config_default(c);
    unsigned a = u8(in), b = u8(in);
    static const size_t caps[] = {0, 4 * MiB, 8 * MiB, 16 * MiB, 64 * MiB};
    static const size_t smax[] = {64, 256, 1024, 4096, 32768, 65536};
    c->capacity = caps[a % 5];
    c->small_max = smax[(a / 5) % 6];
    c->arena_bytes = (b & 1) ? 2 * MiB : 4 * MiB;
    c->decay_ms = (int64_t[]){0, 1000, -1}[(b >> 1) % 3];
    c->debug = (b >> 3) & 1;
    c->huge_pages = (b >> 4) % 3;
    c->huge_min = (b & 0x80) ? 1 * MiB : c->huge_min;
    c->background_purge = 0; /* one thread: every result is deterministic */
    c->mesh = (a / 30) & 1;  /* meshing: mp_trim (op 11) meshes what it can */
}

/* One input = one pool and up to 400 calls, checked after each. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    input in = {.d = data, .n = size};
    world w;
    memset(&w, 0, sizeof w);
    config_from(&in, &w.cfg);
    static int trace = -1; /* FUZZ_TRACE=1: say which call each step made */
    if (trace < 0)
        trace = getenv("FUZZ_TRACE") != NULL;
    EXPECT(mp_pool_create(&w.cfg, &w.pool) == MP_OK, "create");
    mp_pool_config(w.pool, &w.cfg);
    for (unsigned steps = 0; in.i < in.n && steps < 400; steps++) {
        unsigned op = u8(&in) % 17;
        if (trace)
            fprintf(stderr, "step %u op %u at byte %zu\n", steps, op, in.i - 1);
        switch (op) {
        case 0: case 1: case 2: op_alloc(&w, &in, 0); break;
        case 3: op_alloc(&w, &in, 1); break;
        case 4: op_alloc(&w, &in, 2); break;
        case 5: case 6: op_realloc(&w, &in); break;
        case 7: case 8: op_free(&w, &in); break;
        case 9: case 10: op_bad_pointer(&w, &in); break;
        case 11: mp_trim(w.pool); break;
        case 12: mp_purge_aged(w.pool); break;
        case 13: op_overrun(&w, &in); break;
        case 14: case 15: op_buffer(&w, &in); break;
        case 16: op_scatter(&w, &in); break;
        }
        verify_world(&w);
    }
    /* Everything the shadow holds is still intact and freeable. */
    for (int i = 0; i < SLOTS; i++)
        if (w.blocks[i].p) {
            walk(w.blocks[i].p, w.blocks[i].size, w.blocks[i].seed, 1);
            EXPECT(mp_free(w.pool, w.blocks[i].p, w.blocks[i].size) == MP_OK, "final free");
        }
    for (int i = 0; i < BUFS; i++) {
        while (w.bufs[i].h && w.bufs[i].pins--)
            mp_buffer_unpin(w.pool, w.bufs[i].h);
        if (w.bufs[i].h)
            EXPECT(mp_buffer_destroy(w.pool, w.bufs[i].h) == MP_OK, "final destroy");
    }
    memset(w.blocks, 0, sizeof w.blocks);
    memset(w.bufs, 0, sizeof w.bufs);
    verify_world(&w);
    mp_pool_destroy(w.pool);
    return 0;
}
