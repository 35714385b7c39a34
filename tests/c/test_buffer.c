/*
 * test_buffer.c - movable buffers and mp_defragment.
 *
 * Promises under test: a handle names its buffer and nothing else (stale,
 * forged and zero handles are MP_EINVAL, destroy while pinned is MP_EBUSY);
 * a buffer's address is not a block (mp_free refuses it); defragment moves
 * only unpinned buffers, never loses a byte, closes holes so resident memory
 * falls to within 10% of live, and leaves the pool's check clean.
 */
#include "test.h"

/* Deterministic xorshift, so a failure repeats. */
static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t rng(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* Fill a buffer with bytes derived from its seed (one word per 4 KiB and the
 * edges, enough to see any misplaced page). */
static void stamp(unsigned char *p, size_t n, uint64_t seed) {
    for (size_t off = 0; off < n; off += 4096)
        p[off] = (unsigned char)(seed + off / 4096);
    p[n - 1] = (unsigned char)(seed * 7);
}

static int stamp_ok(const unsigned char *p, size_t n, uint64_t seed) {
    for (size_t off = 0; off < n; off += 4096)
        if (p[off] != (unsigned char)(seed + off / 4096))
            return 0;
    return p[n - 1] == (unsigned char)(seed * 7);
}

static mp_pool *new_pool(int64_t decay_ms) {
    mp_config c;
    mp_config_default(&c);
    c.decay_ms = decay_ms;
    c.background_purge = 0;
    mp_pool *pool = NULL;
    CHECK_ERR(mp_pool_create(&c, &pool), MP_OK);
    return pool;
}

static void test_handles(void) {
    mp_pool *pool = new_pool(-1);
    mp_buffer a = 0, b = 0;
    CHECK_ERR(mp_buffer_create(pool, 10000, &a), MP_OK);
    CHECK(a != 0);
    void *p = NULL;
    CHECK_ERR(mp_buffer_pin(pool, a, &p), MP_OK);
    CHECK(p != NULL && ((uintptr_t)p % 4096) == 0);
    memset(p, 0x5A, 10000);
    /* The address is the buffer's, not a block: no free, no realloc. */
    CHECK_ERR(mp_free(pool, p, 0), MP_EINVAL);
    CHECK(mp_realloc(pool, p, 0, 20) == NULL);
    CHECK_ERR(mp_last_error(), MP_EINVAL);
    CHECK(!mp_owns(pool, p));
    CHECK_ERR(mp_buffer_destroy(pool, a), MP_EBUSY);
    void *again = NULL;
    CHECK_ERR(mp_buffer_pin(pool, a, &again), MP_OK); /* pins nest */
    CHECK(again == p);
    size_t nbytes = 0;
    uint32_t pins = 0;
    CHECK_ERR(mp_buffer_info(pool, a, &nbytes, &pins), MP_OK);
    CHECK_EQ_U(nbytes, 10000);
    CHECK_EQ_U(pins, 2);
    CHECK_ERR(mp_buffer_unpin(pool, a), MP_OK);
    CHECK_ERR(mp_buffer_unpin(pool, a), MP_OK);
    CHECK_ERR(mp_buffer_unpin(pool, a), MP_EINVAL);
    mp_stats st;
    mp_stats_get(pool, &st);
    CHECK_EQ_U(st.buffer_count, 1);
    CHECK_EQ_U(st.buffer_bytes, 10000);
    CHECK_EQ_U(st.live_bytes, 10000);
    CHECK_ERR(mp_buffer_destroy(pool, a), MP_OK);
    /* Stale handle: also after its slot is reused by a new buffer. */
    CHECK_ERR(mp_buffer_destroy(pool, a), MP_EINVAL);
    CHECK_ERR(mp_buffer_create(pool, 100, &b), MP_OK);
    CHECK(b != a);
    CHECK_ERR(mp_buffer_pin(pool, a, &p), MP_EINVAL);
    CHECK_ERR(mp_buffer_info(pool, a, NULL, NULL), MP_EINVAL);
    CHECK_ERR(mp_buffer_destroy(pool, 0), MP_EINVAL);
    CHECK_ERR(mp_buffer_destroy(pool, ~(mp_buffer)0), MP_EINVAL);
    CHECK_ERR(mp_buffer_create(pool, SIZE_MAX, &a), MP_ESIZE);
    CHECK_ERR(mp_buffer_create(pool, 1, NULL), MP_EINVAL);
    CHECK_ERR(mp_buffer_destroy(pool, b), MP_OK);
    mp_stats_get(pool, &st);
    CHECK_EQ_U(st.buffer_count, 0);
    CHECK_EQ_U(st.live_bytes, 0);
    CHECK_EQ_U(mp_pool_check(pool), 0);
    mp_pool_destroy(pool);
}

/* Defragment with no buffers, and with only pinned ones: nothing moves. */
static void test_defragment_nothing(void) {
    mp_pool *pool = new_pool(-1);
    mp_defrag_result r;
    CHECK_ERR(mp_defragment(pool, &r), MP_OK);
    CHECK_EQ_U(r.moved_buffers, 0);
    mp_buffer b;
    void *p;
    CHECK_ERR(mp_buffer_create(pool, 1 << 20, &b), MP_OK);
    CHECK_ERR(mp_buffer_pin(pool, b, &p), MP_OK);
    CHECK_ERR(mp_defragment(pool, NULL), MP_OK);
    CHECK_ERR(mp_defragment(pool, &r), MP_OK);
    CHECK_EQ_U(r.pinned_skipped, 1);
    CHECK_EQ_U(r.moved_buffers, 0);
    CHECK_ERR(mp_buffer_unpin(pool, b), MP_OK);
    CHECK_ERR(mp_buffer_destroy(pool, b), MP_OK);
    CHECK_ERR(mp_defragment(NULL, &r), MP_EINVAL);
    CHECK_EQ_U(mp_pool_check(pool), 0);
    mp_pool_destroy(pool);
}

static void test_capacity(void) {
    mp_config c;
    mp_config_default(&c);
    c.capacity = 8u << 20;
    c.arena_bytes = 4u << 20;
    mp_pool *pool = NULL;
    CHECK_ERR(mp_pool_create(&c, &pool), MP_OK);
    mp_buffer a;
    CHECK_ERR(mp_buffer_create(pool, 16u << 20, &a), MP_ENOMEM);
    mp_buffer held[8];
    unsigned made = 0;
    while (made < 8 && mp_buffer_create(pool, 3u << 20, &held[made]) == MP_OK)
        made++;
    CHECK(made >= 1 && made < 8);
    for (unsigned i = 0; i < made; i++)
        CHECK_ERR(mp_buffer_destroy(pool, held[i]), MP_OK);
    CHECK_EQ_U(mp_pool_check(pool), 0);
    mp_pool_destroy(pool);
}

/* Many buffers, half destroyed at random, one in ten of the rest pinned:
 * defragment moves only unpinned ones, keeps every byte, and resident falls
 * to within 10% of live. */
static void defragment_holes(size_t min_bytes, size_t max_bytes, unsigned count) {
    mp_pool *pool = new_pool(-1); /* no decay: only trim and defragment purge */
    mp_buffer *handles = calloc(count, sizeof *handles);
    size_t *sizes = calloc(count, sizeof *sizes);
    void **pinned_at = calloc(count, sizeof *pinned_at);
    for (unsigned i = 0; i < count; i++) {
        sizes[i] = min_bytes + rng() % (max_bytes - min_bytes + 1);
        CHECK_ERR(mp_buffer_create(pool, sizes[i], &handles[i]), MP_OK);
        void *p;
        mp_buffer_pin(pool, handles[i], &p);
        stamp(p, sizes[i], i);
        mp_buffer_unpin(pool, handles[i]);
    }
    for (unsigned i = 0; i < count; i++)
        if (rng() % 2) {
            CHECK_ERR(mp_buffer_destroy(pool, handles[i]), MP_OK);
            handles[i] = 0;
        } else if (rng() % 10 == 0) {
            mp_buffer_pin(pool, handles[i], &pinned_at[i]);
        }
    mp_stats before, after;
    mp_stats_get(pool, &before);
    mp_defrag_result r;
    CHECK_ERR(mp_defragment(pool, &r), MP_OK);
    mp_stats_get(pool, &after);
    CHECK(r.moved_buffers > 0);
    CHECK_EQ_U(after.live_bytes, before.live_bytes);
    CHECK_MSG(after.resident_bytes <= after.live_bytes + after.live_bytes / 10,
              "resident %ju > live %ju + 10%%", (uintmax_t)after.resident_bytes,
              (uintmax_t)after.live_bytes);
    /* The holes merged: fewer, longer free runs (or whole arenas given back). */
    CHECK_MSG(after.largest_free_bytes >= before.largest_free_bytes ||
                  after.arena_count < before.arena_count,
              "largest free %ju < %ju before, arenas %ju", (uintmax_t)after.largest_free_bytes,
              (uintmax_t)before.largest_free_bytes, (uintmax_t)after.arena_count);
    CHECK(after.free_span_count <= before.free_span_count);
    CHECK_EQ_U(mp_pool_check(pool), 0);
    uint64_t pinned = 0;
    for (unsigned i = 0; i < count; i++) {
        if (!handles[i])
            continue;
        void *p;
        CHECK_ERR(mp_buffer_pin(pool, handles[i], &p), MP_OK);
        if (pinned_at[i]) {
            pinned++;
            CHECK(p == pinned_at[i]); /* pinned buffers never move */
            mp_buffer_unpin(pool, handles[i]);
        }
        CHECK_MSG(stamp_ok(p, sizes[i], i), "buffer %u (%zu bytes) lost content", i, sizes[i]);
        mp_buffer_unpin(pool, handles[i]);
        CHECK_ERR(mp_buffer_destroy(pool, handles[i]), MP_OK);
    }
    CHECK_EQ_U(r.pinned_skipped, pinned);
    mp_stats_get(pool, &after);
    CHECK_EQ_U(after.live_bytes, 0);
    CHECK_EQ_U(after.defrag_count, 1);
    CHECK_EQ_U(mp_pool_check(pool), 0);
    free(handles);
    free(sizes);
    free(pinned_at);
    mp_pool_destroy(pool);
}

static void test_defragment_pages(void) { defragment_holes(4096, 256 << 10, 2000); }
static void test_defragment_large(void) { defragment_holes(4u << 20, 24u << 20, 60); }

/* Compaction across arenas: buffers in a second arena move down into the
 * holes of the first, and the emptied arena is given back. */
static void test_defragment_releases_arena(void) {
    mp_config c;
    mp_config_default(&c);
    c.arena_bytes = 4u << 20;
    c.decay_ms = -1;
    c.background_purge = 0;
    c.huge_pages = MP_HUGE_OFF;
    mp_pool *pool = NULL;
    CHECK_ERR(mp_pool_create(&c, &pool), MP_OK);
    enum { N = 32 }; /* 32 x 256 KiB = two arenas of 4 MiB */
    mp_buffer h[N];
    for (unsigned i = 0; i < N; i++)
        CHECK_ERR(mp_buffer_create(pool, 256u << 10, &h[i]), MP_OK);
    mp_stats st;
    mp_stats_get(pool, &st);
    CHECK_EQ_U(st.arena_count, 2);
    for (unsigned i = 0; i < N; i += 2)
        CHECK_ERR(mp_buffer_destroy(pool, h[i]), MP_OK);
    mp_defrag_result r;
    CHECK_ERR(mp_defragment(pool, &r), MP_OK);
    mp_stats_get(pool, &st);
    CHECK_EQ_U(st.arena_count, 1);
    CHECK_EQ_U(st.free_span_count, 0);
    CHECK_EQ_U(mp_pool_check(pool), 0);
    for (unsigned i = 1; i < N; i += 2)
        CHECK_ERR(mp_buffer_destroy(pool, h[i]), MP_OK);
    mp_pool_destroy(pool);
}

static void test_histogram(void) {
    mp_pool *pool = new_pool(-1);
    void *a = mp_alloc(pool, 1u << 20), *b = mp_alloc(pool, 64u << 10), *c = mp_alloc(pool, 1u << 20);
    CHECK_ERR(mp_free(pool, b, 0), MP_OK);
    mp_stats st;
    mp_stats_get(pool, &st);
    uint64_t spans = 0, bytes = 0;
    for (unsigned i = 0; i < MP_FREE_BINS; i++) {
        spans += st.free_histogram_count[i];
        bytes += st.free_histogram_bytes[i];
    }
    CHECK_EQ_U(spans, st.free_span_count);
    CHECK_EQ_U(bytes, st.free_bytes);
    CHECK(st.free_histogram_count[4] >= 1); /* the 64 KiB hole: [64, 128) KiB */
    mp_free(pool, a, 0);
    mp_free(pool, c, 0);
    void *small = mp_alloc(pool, 100);
    mp_stats_get(pool, &st);
    CHECK(st.slab_free_bytes > 0);
    mp_free(pool, small, 0);
    mp_pool_destroy(pool);
}

int main(void) {
    test_handles();
    test_defragment_nothing();
    test_capacity();
    test_defragment_pages();
    test_defragment_large();
    test_defragment_releases_arena();
    test_histogram();
    return test_report("test_buffer");
}
