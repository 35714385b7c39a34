/*
 * buffer.c - movable buffers and their compaction (mp_buffer_*, mp_defragment).
 *
 * A numpy array allocated through the handler holds a raw pointer, so the
 * pool can never move it.  A movable buffer is the one kind of memory the
 * pool may move: the user holds a handle, and asks for the address only for
 * as long as a pin lasts.  mp_defragment then moves unpinned buffers into
 * the earliest holes that hold them (oldest arena, lowest address), so the
 * holes collect at the top of the arenas and in the newest ones, where they
 * merge into long free runs and go back to the OS.
 *
 * Handles are (generation << 32) | (slot + 1) into a table under the pool
 * lock.  A slot's generation is odd while live and bumped on destroy, so a
 * handle outliving its buffer names nothing (MP_EINVAL), even after the slot
 * is reused.  Buffers take whole pages of the page heap and their spans are
 * marked movable: mp_free/mp_realloc refuse their addresses.
 */
#include "pool.h"

#include <stdlib.h>
#include <string.h>

/* Slot of a live handle, or NULL.  Lock held. */
static mp_buffer_slot *slot_of(mp_pool *pool, mp_buffer handle) {
    uint64_t index = (handle & UINT32_MAX) - 1;
    uint32_t generation = (uint32_t)(handle >> 32);
    if ((handle & UINT32_MAX) == 0 || index >= pool->buffers.count)
        return NULL;
    mp_buffer_slot *slot = &pool->buffers.slots[index];
    if (slot->generation != generation || !(generation & 1))
        return NULL;
    return slot;
}

/* A free slot (the table grows by doubling), or NULL.  Lock held. */
static mp_buffer_slot *slot_take(mp_pool *pool) {
    mp_buffer_table *table = &pool->buffers;
    if (table->free_head) {
        mp_buffer_slot *slot = &table->slots[table->free_head - 1];
        table->free_head = slot->next_free;
        return slot;
    }
    if (table->count == table->cap) {
        uint32_t cap = table->cap ? table->cap * 2 : 64;
        if (cap <= table->cap) /* 2^32 slots: the handle has no more room */
            return NULL;
        mp_buffer_slot *slots = realloc(table->slots, (size_t)cap * sizeof *slots);
        if (slots == NULL)
            return NULL;
        pool->acct.metadata += (size_t)(cap - table->cap) * sizeof *slots;
        table->slots = slots;
        table->cap = cap;
    }
    mp_buffer_slot *slot = &table->slots[table->count++];
    *slot = (mp_buffer_slot){0};
    return slot;
}

/* The handle naming a live slot. */
static mp_buffer handle_of(const mp_pool *pool, const mp_buffer_slot *slot) {
    return ((uint64_t)slot->generation << 32) | (uint64_t)(slot - pool->buffers.slots + 1);
}

int mp_buffer_create(mp_pool *pool, size_t nbytes, mp_buffer *out) {
    if (pool == NULL || out == NULL)
        return pool_error(pool, MP_EINVAL);
    if (nbytes > MP_MAX_REQUEST || (pool->config.capacity && nbytes > pool->config.capacity))
        return pool_error(pool, nbytes > MP_MAX_REQUEST ? MP_ESIZE : MP_ENOMEM);
    /* Always the page heap: 4 KiB granules waste at most a page per buffer
     * and let compaction close holes to the page, where 2 MiB granules
     * would leave ~1 MiB of rounding per buffer (10% of a 10 MiB one). */
    mp_heap *heap = &pool->heaps[MP_HEAP_PAGES];
    size_t granule = (size_t)1 << heap->granule_shift;
    size_t need = MP_ALIGN_UP(nbytes ? nbytes : 1, granule);
    mutex_lock(&pool->lock);
    mp_buffer_slot *slot = slot_take(pool);
    uint32_t clean;
    mp_span *span = slot ? decay_alloc(heap, need >> heap->granule_shift, 1, &clean) : NULL;
    if (span == NULL) {
        if (slot) { /* give the slot back untouched */
            slot->next_free = pool->buffers.free_head;
            pool->buffers.free_head = (uint32_t)(slot - pool->buffers.slots + 1);
        }
        mutex_unlock(&pool->lock);
        return pool_error(pool, MP_ENOMEM);
    }
    span->requested = nbytes;
    span->movable = 1;
    mp_asan_live(span_addr(span), nbytes, span_bytes(span));
    slot->span = span;
    slot->nbytes = nbytes;
    slot->pins = 0;
    slot->generation |= 1;
    pool_account_large(pool, (int64_t)nbytes, (int64_t)need, CALL_ALLOC, LARGE_SPAN);
    acct_live(&pool->acct, (int64_t)nbytes);
    pool->buffers.live++;
    pool->buffers.bytes += nbytes;
    *out = handle_of(pool, slot);
    mutex_unlock(&pool->lock);
    return MP_OK;
}

int mp_buffer_destroy(mp_pool *pool, mp_buffer buffer) {
    if (pool == NULL)
        return pool_error(pool, MP_EINVAL);
    mutex_lock(&pool->lock);
    mp_buffer_slot *slot = slot_of(pool, buffer);
    if (slot == NULL || slot->pins) {
        mutex_unlock(&pool->lock);
        return pool_error(pool, slot ? MP_EBUSY : MP_EINVAL);
    }
    mp_span *span = slot->span;
    mp_heap *heap = span->arena->heap;
    span->movable = 0;
    MP_POISON(span_addr(span), span_bytes(span));
    pool_account_large(pool, -(int64_t)slot->nbytes, -(int64_t)span_bytes(span), CALL_ALLOC,
                       LARGE_SPAN);
    acct_live(&pool->acct, -(int64_t)slot->nbytes);
    heap_free(heap, span, os_now_ms());
    purge_after_free(pool);
    pool->buffers.live--;
    pool->buffers.bytes -= slot->nbytes;
    slot->span = NULL;
    slot->generation++; /* even: free; the old handle no longer matches */
    slot->next_free = pool->buffers.free_head;
    pool->buffers.free_head = (uint32_t)(slot - pool->buffers.slots + 1);
    mutex_unlock(&pool->lock);
    return MP_OK;
}

int mp_buffer_pin(mp_pool *pool, mp_buffer buffer, void **out) {
    if (pool == NULL || out == NULL)
        return pool_error(pool, MP_EINVAL);
    mutex_lock(&pool->lock);
    mp_buffer_slot *slot = slot_of(pool, buffer);
    if (slot == NULL || slot->pins == UINT32_MAX) {
        mutex_unlock(&pool->lock);
        return pool_error(pool, MP_EINVAL);
    }
    if (slot->pins++ == 0)
        pool->buffers.pinned++;
    *out = span_addr(slot->span);
    mutex_unlock(&pool->lock);
    return MP_OK;
}

int mp_buffer_unpin(mp_pool *pool, mp_buffer buffer) {
    if (pool == NULL)
        return pool_error(pool, MP_EINVAL);
    mutex_lock(&pool->lock);
    mp_buffer_slot *slot = slot_of(pool, buffer);
    if (slot == NULL || slot->pins == 0) {
        mutex_unlock(&pool->lock);
        return pool_error(pool, MP_EINVAL);
    }
    if (--slot->pins == 0)
        pool->buffers.pinned--;
    mutex_unlock(&pool->lock);
    return MP_OK;
}

int mp_buffer_info(mp_pool *pool, mp_buffer buffer, size_t *out_nbytes, uint32_t *out_pins) {
    if (pool == NULL)
        return pool_error(pool, MP_EINVAL);
    mutex_lock(&pool->lock);
    mp_buffer_slot *slot = slot_of(pool, buffer);
    if (slot) {
        if (out_nbytes)
            *out_nbytes = slot->nbytes;
        if (out_pins)
            *out_pins = slot->pins;
    }
    mutex_unlock(&pool->lock);
    return slot ? MP_OK : pool_error(pool, MP_EINVAL);
}

/* Latest in compaction order first. */
static int by_place_desc(const void *a, const void *b) {
    const mp_span *x = (*(mp_buffer_slot *const *)a)->span;
    const mp_span *y = (*(mp_buffer_slot *const *)b)->span;
    return span_before(x, y) ? 1 : span_before(y, x) ? -1 : 0;
}

/* Earliest in compaction order first. */
static int by_place_asc(const void *a, const void *b) { return by_place_desc(b, a); }

/* Move one buffer into the earliest hole before it that holds it; true if
 * moved.  Lock held.  The old span is freed dirty and goes back with the trim
 * that ends the pass. */
static bool buffer_move_to_hole(mp_buffer_slot *slot) {
    mp_span *old = slot->span;
    mp_heap *heap = old->arena->heap;
    mp_span *hole = heap_lowest_fit(heap, old->npages);
    if (hole == NULL || !span_before(hole, old))
        return false;
    uint32_t clean;
    mp_span *moved = heap_alloc_from(heap, hole, old->npages, &clean);
    if (moved == NULL)
        return false;
    mp_asan_live(span_addr(moved), slot->nbytes, span_bytes(moved));
    memcpy(span_addr(moved), span_addr(old), slot->nbytes);
    MP_POISON(span_addr(old), span_bytes(old));
    acct_event(heap->acct, MP_EV_MOVE, span_addr(old), slot->nbytes,
               (uint64_t)(uintptr_t)span_addr(moved));
    moved->requested = old->requested;
    moved->movable = 1;
    old->movable = 0;
    heap_free(heap, old, os_now_ms());
    slot->span = moved;
    return true;
}

/* Slide one buffer down over the free granules just before it (a hole too
 * short to take it whole); true if moved.  Lock held. */
static bool buffer_slide(mp_buffer_slot *slot) {
    mp_span *old = slot->span;
    char *from = span_addr(old);
    size_t bytes = span_bytes(old);
    mp_span *moved = heap_slide_down(old->arena->heap, old, os_now_ms());
    if (moved == NULL)
        return false;
    char *to = span_addr(moved);
    MP_UNPOISON(to, (size_t)(from - to) + slot->nbytes);
    memmove(to, from, slot->nbytes);
    mp_asan_live(to, slot->nbytes, bytes);
    acct_event(moved->arena->heap->acct, MP_EV_MOVE, from, slot->nbytes, (uint64_t)(uintptr_t)to);
    MP_POISON(to + bytes, (size_t)(from - to)); /* the free granules after it */
    slot->span = moved;
    return true;
}

/* One pass over `order` (n unpinned buffers) sorted by `cmp`, moving each
 * with `move`; adds what moved to *result. */
static void defrag_pass(const mp_pool *pool, mp_buffer_slot **order, size_t n,
                        int (*cmp)(const void *, const void *),
                        bool (*move)(mp_buffer_slot *), mp_defrag_result *result,
                        bool *was_moved) {
    if (n == 0) /* order may be NULL: qsort must not see it */
        return;
    qsort(order, n, sizeof *order, cmp);
    for (size_t i = 0; i < n; i++) {
        if (!move(order[i]))
            continue;
        result->moved_bytes += order[i]->nbytes;
        size_t index = (size_t)(order[i] - pool->buffers.slots);
        if (!was_moved[index]) {
            was_moved[index] = true;
            result->moved_buffers++;
        }
    }
}

int mp_defragment(mp_pool *pool, mp_defrag_result *out) {
    if (pool == NULL)
        return pool_error(pool, MP_EINVAL);
    mp_defrag_result result = {0};
    mutex_lock(&pool->lock);
    mp_buffer_table *table = &pool->buffers;
    mp_buffer_slot **order = NULL;
    bool *was_moved = NULL;
    if (table->live) {
        order = malloc(table->live * sizeof *order);
        was_moved = calloc(table->count, sizeof *was_moved);
        if (order == NULL || was_moved == NULL) {
            mutex_unlock(&pool->lock);
            free(order);
            free(was_moved);
            return pool_error(pool, MP_ENOMEM);
        }
    }
    size_t n = 0;
    for (uint32_t i = 0; i < table->count; i++) {
        mp_buffer_slot *slot = &table->slots[i];
        if (!(slot->generation & 1))
            continue;
        if (slot->pins)
            result.pinned_skipped++;
        else
            order[n++] = slot;
    }
    /* Three passes, each linear in the bytes moved: slide every buffer down
     * within its arena (the holes gather at the arena's top), move the latest
     * buffers into the earliest holes that hold them (emptying the newest
     * arenas), then slide again to close what those moves left. */
    defrag_pass(pool, order, n, by_place_asc, buffer_slide, &result, was_moved);
    defrag_pass(pool, order, n, by_place_desc, buffer_move_to_hole, &result, was_moved);
    defrag_pass(pool, order, n, by_place_asc, buffer_slide, &result, was_moved);
    free(order);
    free(was_moved);
    table->defrag_count++;
    table->defrag_moved_bytes += result.moved_bytes;
    mutex_unlock(&pool->lock);
    /* The holes are now long runs at the top: give every free page back. */
    result.released_bytes = mp_trim(pool);
    if (out)
        *out = result;
    return MP_OK;
}

/* Free the handle table at pool teardown (the buffers' memory goes with the
 * arenas). */
void buffer_table_destroy(mp_pool *pool) {
    free(pool->buffers.slots);
    pool->buffers = (mp_buffer_table){0};
}

/* Count broken invariants of the buffer table: every live slot owns a live
 * movable span of its size, and the counters match.  Lock held. */
size_t buffer_check(const mp_pool *pool) {
    const mp_buffer_table *table = &pool->buffers;
    size_t bad = 0;
    uint64_t live = 0, bytes = 0, pinned = 0;
    for (uint32_t i = 0; i < table->count; i++) {
        const mp_buffer_slot *slot = &table->slots[i];
        if (!(slot->generation & 1))
            continue;
        live++;
        bytes += slot->nbytes;
        pinned += slot->pins > 0;
        const mp_span *span = slot->span;
        bad += span == NULL || span->kind != MP_SPAN_LARGE || !span->movable ||
               span->requested != slot->nbytes || span_bytes(span) < slot->nbytes;
    }
    bad += live != table->live || bytes != table->bytes || pinned != table->pinned;
    return bad;
}
