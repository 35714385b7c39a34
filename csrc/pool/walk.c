/*
 * walk.c - mp_pool_walk: the pool's layout, segment by segment and block by
 * block (TLSF's pool walker as the model), for snapshots.
 *
 * The layers report, this file assembles: the heaps' span walk gives arenas
 * and their large blocks and free spans (split where the dirty bits say some
 * granules were given back), the small layer's census gives each slab's
 * blocks (small/census.c), the buffer table says which movable spans are
 * pinned, the pool's list gives direct mappings.  Everything runs with every
 * lock of the pool held (pool_lock_all): a slab's free stack, the heaps and
 * the buffer table cannot change under the walk; only threads' own caches
 * keep working (census.c says how their blocks read).
 *
 * Adjacent blocks of one segment in the same mergeable state go out as one
 * run: `pending` holds the run being grown.
 */
#include "pool.h"

#include <stdlib.h>
#include <string.h>

typedef struct walk_state {
    const mp_walker *w;
    uint32_t next_index;  /* index of the next segment reported */
    uint32_t segment;     /* the segment blocks are reported for now */
    mp_walk_block pending;
    bool has_pending;
    int rc;               /* the first nonzero callback return */
    const mp_span **pinned; /* sorted: spans of pinned buffers */
    size_t n_pinned;
} walk_state;

/* Send the pending run to the block callback. */
static void walk_flush(walk_state *st) {
    if (st->has_pending && st->rc == 0)
        st->rc = st->w->block(st->w->ctx, &st->pending);
    st->has_pending = false;
}

/* A block of the current segment: merged into the pending run when both are
 * free-ish and touch, else reported after it. */
static int walk_block(walk_state *st, int state, uintptr_t address, uint64_t size,
                      uint64_t requested) {
    mp_walk_block *p = &st->pending;
    bool single = state == MP_WALK_LIVE || state == MP_WALK_BUFFER || state == MP_WALK_PINNED;
    if (st->has_pending && !single && p->state == state && p->segment == st->segment &&
        p->address + p->size == address) {
        p->size += size;
        return st->rc;
    }
    walk_flush(st);
    *p = (mp_walk_block){.address = address, .size = size, .requested = requested,
                         .segment = st->segment, .state = (uint8_t)state};
    st->has_pending = true;
    return st->rc;
}

/* census_fn over walk_block. */
static int walk_census(void *ctx, int state, const char *address, uint64_t size,
                       uint64_t requested) {
    return walk_block(ctx, state, (uintptr_t)address, size, requested);
}

/* Report a segment; blocks reported next belong to it.  Returns its index. */
static uint32_t walk_segment(walk_state *st, mp_walk_segment *seg) {
    walk_flush(st);
    seg->index = st->next_index++;
    st->segment = seg->index;
    if (st->rc == 0)
        st->rc = st->w->segment(st->w->ctx, seg);
    return seg->index;
}

/* Order of span pointers, for bsearch. */
static int by_pointer(const void *a, const void *b) {
    uintptr_t x = (uintptr_t) * (const mp_span *const *)a;
    uintptr_t y = (uintptr_t) * (const mp_span *const *)b;
    return x < y ? -1 : x > y;
}

/* Whether a movable span is a pinned buffer's. */
static bool walk_is_pinned(const walk_state *st, const mp_span *span) {
    return st->n_pinned &&
           bsearch(&span, st->pinned, st->n_pinned, sizeof *st->pinned, by_pointer) != NULL;
}

/* The slab span `span` of arena number `arena_index`: its segment, then its
 * blocks. */
static void walk_slab(walk_state *st, const mp_span *span, uint32_t arena_index, int heap) {
    const mp_slab *slab = atomic_load_explicit(&((mp_span *)span)->slab, memory_order_relaxed);
    MP_ASSERT(slab != NULL && slab->span == span, "a slab span's slab points back at it");
    const mp_arena *arena = span->arena;
    mp_walk_segment seg = {
        .address = (uintptr_t)slab->start,
        .size = span_bytes(span),
        .resident = (uint64_t)arena_count_dirty(arena, span->page, span->npages)
                    << arena->region.granule_shift,
        .mesh_owner = (uintptr_t)(slab->mesh_owner ? slab->mesh_owner->start : NULL),
        .parent = (int32_t)arena_index,
        .size_class = slab->cls,
        .block_size = slab->block_size,
        .granule = (uint32_t)1 << arena->region.granule_shift,
        .kind = MP_SEG_SLAB,
        .heap = (uint8_t)heap,
    };
    walk_segment(st, &seg);
    if (st->rc == 0)
        census_slab(slab, walk_census, st);
    walk_flush(st);
}

/* One arena: its segment, its spans' blocks, its slabs' segments. */
static void walk_arena(walk_state *st, const mp_arena *arena, int heap) {
    unsigned shift = arena->region.granule_shift;
    mp_walk_segment seg = {
        .address = (uintptr_t)arena->region.base,
        .size = arena->region.size,
        .resident = arena->dirty_count << shift,
        .parent = -1,
        .size_class = -1,
        .granule = (uint32_t)1 << shift,
        .kind = MP_SEG_ARENA,
        .heap = (uint8_t)heap,
    };
    uint32_t index = walk_segment(st, &seg);
    ARENA_FOREACH_SPAN(arena, span) {
        if (st->rc != 0)
            return;
        uintptr_t base = (uintptr_t)span_addr(span);
        if (span->kind == MP_SPAN_SLAB) {
            walk_slab(st, span, index, heap);
            st->segment = index;
        } else if (span->kind == MP_SPAN_LARGE) {
            int state = !span->movable ? MP_WALK_LIVE
                        : walk_is_pinned(st, span) ? MP_WALK_PINNED
                                                   : MP_WALK_BUFFER;
            walk_block(st, state, base, span_bytes(span), span->requested);
        } else {
            for (uint32_t done = 0; done < span->npages;) {
                bool dirty;
                uint32_t run = arena_dirty_run(arena, span->page + done, span->npages - done,
                                               &dirty);
                walk_block(st, dirty ? MP_WALK_FREE : MP_WALK_RELEASED,
                           base + ((uintptr_t)done << shift), (uint64_t)run << shift, 0);
                done += run;
            }
        }
    }
    walk_flush(st);
}

/* The spans of pinned buffers, sorted (NULL with n 0 when none, or when out
 * of memory: pinned buffers then read as unpinned). */
static void walk_collect_pinned(walk_state *st, const mp_pool *pool) {
    const mp_buffer_table *table = &pool->buffers;
    st->pinned = NULL;
    st->n_pinned = 0;
    if (table->pinned == 0 || (st->pinned = malloc(table->pinned * sizeof *st->pinned)) == NULL)
        return;
    for (uint32_t i = 0; i < table->count && st->n_pinned < table->pinned; i++) {
        const mp_buffer_slot *slot = &table->slots[i];
        if ((slot->generation & 1) && slot->pins)
            st->pinned[st->n_pinned++] = slot->span;
    }
    qsort(st->pinned, st->n_pinned, sizeof *st->pinned, by_pointer);
}

int mp_pool_walk(mp_pool *pool, const mp_walker *walker) {
    if (pool == NULL || walker == NULL || walker->segment == NULL || walker->block == NULL)
        return pool_error(pool, MP_EINVAL);
    static const int heap_ids[MP_HEAP_COUNT] = {
        [MP_HEAP_PAGES] = MP_WALK_HEAP_PAGE,
        [MP_HEAP_HUGE] = MP_WALK_HEAP_HUGE,
        [MP_HEAP_MESH] = MP_WALK_HEAP_MESH,
    };
    walk_state st = {.w = walker};
    pool_lock_all(pool);
    walk_collect_pinned(&st, pool);
    for (int h = 0; h < MP_HEAP_COUNT && st.rc == 0; h++)
        HEAP_FOREACH_ARENA(&pool->heaps[h], arena) {
            if (st.rc == 0)
                walk_arena(&st, arena, heap_ids[h]);
        }
    LIST_FOREACH(d, &pool->directs, const mp_direct, link) {
        if (st.rc != 0)
            break;
        mp_walk_segment seg = {
            .address = (uintptr_t)d->region.base,
            .size = d->region.size,
            .resident = d->region.size,
            .parent = -1,
            .size_class = -1,
            .granule = (uint32_t)MP_PAGE_SIZE,
            .kind = MP_SEG_DIRECT,
            .heap = MP_WALK_HEAP_DIRECT,
        };
        walk_segment(&st, &seg);
        walk_block(&st, MP_WALK_LIVE, (uintptr_t)d->region.base, d->region.size, d->requested);
        walk_flush(&st);
    }
    pool_unlock_all(pool);
    free(st.pinned);
    return st.rc;
}
