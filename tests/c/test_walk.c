/*
 * test_walk.c - mp_pool_walk, the pool's observer, mp_pool_reset_peak and
 * the history recorder (trace/history.c): the walk's live blocks are the
 * blocks handed out, exactly; blocks tile their segments; events reach the
 * observer; the history's ring is bounded and keeps sites across moves.
 */
#include <pthread.h>

#include "test.h"
#include "../trace/trace.h"

#define MAXB 20000

typedef struct walk_out {
    mp_walk_segment segs[4096];
    size_t nsegs;
    mp_walk_block *blocks;
    size_t nblocks;
} walk_out;

static int on_segment(void *ctx, const mp_walk_segment *seg) {
    walk_out *w = ctx;
    if (w->nsegs == 4096)
        return 1;
    w->segs[w->nsegs++] = *seg;
    return 0;
}

static int on_block(void *ctx, const mp_walk_block *b) {
    walk_out *w = ctx;
    if (w->nblocks == 4 * MAXB)
        return 2;
    w->blocks[w->nblocks++] = *b;
    return 0;
}

static void walk(mp_pool *pool, walk_out *w) {
    w->nsegs = w->nblocks = 0;
    mp_walker walker = {on_segment, on_block, w};
    CHECK_ERR(mp_pool_walk(pool, &walker), MP_OK);
}

/* Live blocks of the walk are exactly `ptrs` with `sizes`; blocks tile. */
static void test_walk_exact(void) {
    mp_pool *pool;
    CHECK_ERR(mp_pool_create(NULL, &pool), MP_OK);
    static void *ptrs[MAXB];
    static size_t sizes[MAXB];
    size_t n = 0, live = 0;
    for (size_t i = 0; i < MAXB; i++) {
        size_t size = i % 97 == 0 ? 100000 + i : i % 1000 == 1 ? ((size_t)5 << 20) : 16 + i % 3000;
        void *p = mp_alloc(pool, size);
        CHECK(p != NULL);
        if (i % 3 == 0) {
            mp_free(pool, p, 0);
            continue;
        }
        ptrs[n] = p;
        sizes[n++] = size;
        live += size;
    }
    void *direct = mp_alloc(pool, (size_t)300 << 20);
    ptrs[n] = direct;
    sizes[n++] = (size_t)300 << 20;
    live += (size_t)300 << 20;
    walk_out *w = calloc(1, sizeof *w);
    w->blocks = calloc(4 * MAXB, sizeof *w->blocks);
    walk(pool, w);
    mp_stats st;
    mp_stats_get(pool, &st);
    size_t walked_live = 0, walked_n = 0, found = 0;
    for (size_t i = 0; i < w->nblocks; i++) {
        const mp_walk_block *b = &w->blocks[i];
        CHECK(b->segment < w->nsegs);
        CHECK(b->state < MP_WALK_STATE_COUNT);
        if (b->state != MP_WALK_LIVE)
            continue;
        walked_live += b->requested;
        walked_n++;
        for (size_t k = 0; k < n; k++)
            if (ptrs[k] == (void *)b->address) {
                found += sizes[k] == b->requested;
                break;
            }
    }
    CHECK_EQ_U(walked_live, live);
    CHECK_EQ_U(walked_live, st.live_bytes);
    CHECK_EQ_U(walked_n, n);
    CHECK_EQ_U(found, n);
    /* each segment: its blocks and its slabs cover it once, in order */
    uint64_t reserved = 0;
    for (size_t s = 0; s < w->nsegs; s++) {
        const mp_walk_segment *seg = &w->segs[s];
        CHECK_EQ_U(seg->index, s);
        uint64_t covered = 0;
        for (size_t i = 0; i < w->nblocks; i++)
            if (w->blocks[i].segment == s)
                covered += w->blocks[i].size;
        for (size_t c = 0; c < w->nsegs; c++)
            if (w->segs[c].parent == (int32_t)s)
                covered += w->segs[c].size;
        CHECK_MSG(covered == seg->size, "segment %zu: %" PRIu64 " of %" PRIu64, s, covered,
                  seg->size);
        if (seg->parent < 0)
            reserved += seg->size;
    }
    CHECK_EQ_U(reserved, st.reserved_bytes);
    /* by layer: the live bytes add up */
    uint64_t layers = 0;
    for (int l = 0; l < MP_LAYER_COUNT; l++)
        layers += st.layers[l].live_bytes;
    CHECK_EQ_U(layers, st.live_bytes);
    CHECK_EQ_U(st.layers[MP_LAYER_DIRECT].live_bytes, (size_t)300 << 20);
    for (size_t k = 0; k < n; k++)
        CHECK_ERR(mp_free(pool, ptrs[k], 0), MP_OK);
    walk(pool, w);
    for (size_t i = 0; i < w->nblocks; i++)
        CHECK(w->blocks[i].state != MP_WALK_LIVE);
    /* a callback's nonzero return stops the walk and is returned */
    mp_walker stop = {on_segment, on_block, w};
    w->nsegs = 4096;
    CHECK_ERR(mp_pool_walk(pool, &stop), 1);
    mp_walker bad = {NULL, on_block, w};
    CHECK_ERR(mp_pool_walk(pool, &bad), MP_EINVAL);
    CHECK_ERR(mp_pool_walk(NULL, &stop), MP_EINVAL);
    free(w->blocks);
    free(w);
    mp_pool_destroy(pool);
}

typedef struct seen {
    int kinds[16];
} seen;

static void observe(void *ctx, const mp_event *ev) {
    seen *s = ctx;
    if (ev->kind > 0 && ev->kind < 16)
        s->kinds[ev->kind]++;
}

/* Arenas, purges, direct maps and the limit reach the observer. */
static void test_observer(void) {
    mp_config cfg;
    mp_config_default(&cfg);
    cfg.decay_ms = 0;
    cfg.resident_limit = (size_t)64 << 20;
    mp_pool *pool;
    CHECK_ERR(mp_pool_create(&cfg, &pool), MP_OK);
    seen s = {{0}};
    CHECK_ERR(mp_pool_observe(pool, observe, &s), MP_OK);
    void *a = mp_alloc(pool, (size_t)8 << 20);
    void *d = mp_alloc(pool, (size_t)300 << 20); /* over the limit: refused */
    CHECK(d == NULL);
    mp_free(pool, a, 0);
    mp_trim(pool);
    CHECK(s.kinds[MP_EV_ARENA_MAP] >= 1);
    CHECK(s.kinds[MP_EV_PURGE] >= 1);
    CHECK(s.kinds[MP_EV_LIMIT] >= 1);
    CHECK_ERR(mp_pool_set_resident_limit(pool, 0), MP_OK);
    d = mp_alloc(pool, (size_t)300 << 20);
    mp_free(pool, d, 0);
    CHECK_EQ_U(s.kinds[MP_EV_DIRECT_MAP], 1);
    CHECK_EQ_U(s.kinds[MP_EV_DIRECT_UNMAP], 1);
    CHECK(strcmp(mp_event_name(MP_EV_PURGE), "purge") == 0);
    CHECK(strcmp(mp_event_name(99), "unknown") == 0);
    CHECK_ERR(mp_pool_observe(pool, NULL, NULL), MP_OK);
    mp_pool_destroy(pool);
}

/* reset_peak: the peaks restart from the current figures. */
static void test_reset_peak(void) {
    mp_pool *pool;
    CHECK_ERR(mp_pool_create(NULL, &pool), MP_OK);
    void *big = mp_alloc(pool, (size_t)16 << 20);
    void *small = mp_alloc(pool, 100000);
    mp_free(pool, big, 0);
    mp_stats st;
    mp_stats_get(pool, &st);
    CHECK(st.peak_live_bytes >= (size_t)16 << 20);
    mp_pool_reset_peak(pool);
    mp_stats_get(pool, &st);
    CHECK_EQ_U(st.peak_live_bytes, st.live_bytes);
    CHECK_EQ_U(st.peak_resident_bytes, st.resident_bytes);
    mp_free(pool, small, 0);
    mp_pool_reset_peak(NULL);
    mp_pool_destroy(pool);
}

/* The history: a bounded ring, sites kept in the live map and across a
 * buffer's move. */
static void test_history(void) {
    mp_history *h = mp_history_create();
    CHECK(h != NULL);
    CHECK(mp_history_start(h, 0) == -1);
    CHECK(mp_history_start(h, 100) == 0);
    for (uintptr_t i = 1; i <= 1000; i++) {
        mp_history_lock(h);
        mp_history_note_alloc(h, MP_HIST_ALLOC, (void *)(i * 64), i, (int32_t)(i % 7));
        mp_history_unlock(h);
    }
    mp_history_info info;
    mp_history_counts(h, &info);
    CHECK_EQ_U(info.recorded, 1000);
    CHECK_EQ_U(info.held, 100);
    CHECK_EQ_U(info.dropped, 900);
    uint64_t t[100], addr[100], size[100];
    uint8_t op[100];
    int32_t stack[100];
    uint32_t thread[100];
    size_t n = mp_history_copy_events(h, 100, t, op, addr, size, stack, thread);
    CHECK_EQ_U(n, 100);
    CHECK_EQ_U(addr[0], 901 * 64); /* the oldest kept */
    CHECK_EQ_U(addr[99], 1000 * 64);
    uint64_t sz;
    int32_t site;
    mp_history_lock(h);
    CHECK(mp_history_take(h, (void *)(5 * 64), &sz, &site) == 1); /* dropped from the ring */
    CHECK(sz == 5 && site == 5);
    CHECK(mp_history_take(h, (void *)(5 * 64), &sz, &site) == 0);
    mp_history_note_free(h, MP_HIST_FREE, (void *)(5 * 64), sz, site);
    mp_history_unlock(h);
    CHECK_EQ_U(mp_history_live_count(h), 999);
    /* a move inside the bracket keeps the site */
    mp_history_moves_begin(h);
    mp_event mv = {.kind = MP_EV_MOVE, .address = 7 * 64, .size = 7, .arg = 100000};
    mp_history_observe(h, &mv);
    mp_history_moves_end(h);
    mp_history_lock(h);
    CHECK(mp_history_take(h, (void *)100000, &sz, &site) == 1 && site == 0 && sz == 7);
    mp_history_unlock(h);
    mp_event purge = {.kind = MP_EV_PURGE, .address = 4096, .size = 8192};
    mp_history_observe(h, &purge);
    mp_history_counts(h, &info);
    CHECK_EQ_U(info.pool_held, 1);
    mp_history_stop(h);
    mp_history_observe(h, &purge);
    mp_history_counts(h, &info);
    CHECK_EQ_U(info.pool_held, 1);
    mp_history_destroy(h);
}

typedef struct churn {
    mp_pool *pool;
    _Atomic int stop;
} churn;

/* Small and large blocks made and freed, as fast as it goes. */
static void *churn_thread(void *arg) {
    churn *c = arg;
    void *keep[64] = {0};
    for (unsigned i = 0; !atomic_load(&c->stop); i++) {
        unsigned k = i % 64;
        if (keep[k])
            mp_free(c->pool, keep[k], 0);
        keep[k] = mp_alloc(c->pool, i % 5 == 0 ? 70000 : 16 + i % 900);
    }
    for (unsigned k = 0; k < 64; k++)
        mp_free(c->pool, keep[k], 0);
    return NULL;
}

/* Walks while other threads allocate: every walk completes and reports
 * consistent segments (TSan: no race with the fast paths). */
static void test_walk_while_threads_allocate(void) {
    churn c = {0};
    CHECK_ERR(mp_pool_create(NULL, &c.pool), MP_OK);
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        pthread_create(&t[i], NULL, churn_thread, &c);
    walk_out *w = calloc(1, sizeof *w);
    w->blocks = calloc(4 * MAXB, sizeof *w->blocks);
    for (int round = 0; round < 50; round++) {
        walk(c.pool, w);
        for (size_t i = 0; i < w->nblocks; i++)
            CHECK(w->blocks[i].segment < w->nsegs);
    }
    atomic_store(&c.stop, 1);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    free(w->blocks);
    free(w);
    mp_pool_destroy(c.pool);
}

int main(void) {
    test_walk_exact();
    test_walk_while_threads_allocate();
    test_observer();
    test_reset_peak();
    test_history();
    return test_report("test_walk");
}
