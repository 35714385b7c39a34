/*
 * mesh.c - compaction without moving (Mesh, Powers et al., PLDI 2019).
 *
 * With meshing on, slabs come from a heap of memfd-backed arenas (shm.c)
 * and every slab of a class has one short length (sc_mesh_slab_pages).  Two
 * slabs of a class whose occupancy does not overlap are meshed: the source's
 * occupied blocks are copied into the destination's file pages at the same
 * offsets, the source's virtual range is mapped onto those file pages, and
 * the source's own file pages are punched: that is the memory saved.  No
 * pointer changes.  Occupancy is every block not in the slab's free stack:
 * a block in a thread cache may be handed out without the class lock.
 *
 * A meshed group is an owner (whose file pages hold every member's blocks)
 * and members linked from it.  Every member keeps its own block states and
 * free stack, so frees work as before; a group is not allocated from (it is
 * in its class's `groups`, not `partial`), but it takes further slabs while
 * their occupancy misses the union of its members'.  A member that empties
 * is mapped back onto its own (punched, so zero) file pages and leaves; the
 * owner leaves last, since its pages hold the others' blocks.
 *
 * While a source is copied it is read-only and under the write barrier
 * (barrier.c): a writer waits for the copy and its write lands on the new
 * mapping.  Pairs are picked first-fit decreasing over 64-bit occupancy
 * words (a mesh slab has at most 64 blocks), a bounded number of probes per
 * slab and of pages per call.  Every remapped range may split a mapping in
 * two: meshing stops at the process-wide budget (shm_maps_take).
 */
#include "small.h"

#include <stdlib.h>
#include <string.h>

#define MESH_PROBES 1024          /* destinations a slab tries per call */
#define MESH_MAX_CANDIDATES 8192 /* slabs of one class looked at per call */

typedef struct mesh_dest {
    mp_slab *slab; /* a group's owner or a single slab */
    uint64_t occ;  /* union of its group's occupancy */
} mesh_dest;

typedef struct mesh_single {
    mp_slab *slab;
    uint64_t occ;
    uint32_t count;
} mesh_single;

/* A slab's occupancy word (nblocks <= 64). */
static uint64_t occ_of(const mp_slab *slab) {
    uint64_t w;
    slab_occupancy(slab, &w);
    return w;
}

/* Offset of a slab's first byte in its arena's file. */
static uint64_t file_off(const mp_slab *slab) {
    return (uint64_t)(slab->start - slab->span->arena->region.base);
}

/* Record a write-protect window of `ns`. */
static void note_pause(mp_small *s, uint64_t ns) {
    uint64_t cur = atomic_load_explicit(&s->mesh_pause_max_ns, memory_order_relaxed);
    while (ns > cur && !atomic_compare_exchange_weak_explicit(&s->mesh_pause_max_ns, &cur, ns,
                                                              memory_order_relaxed,
                                                              memory_order_relaxed))
        ;
}

/* Copy the source's occupied blocks into the owner's file pages (through
 * the arenas' alias views: the source is read-only, and under ASan free
 * memory is poisoned in the main view). */
static void copy_blocks(const mp_slab *src, const mp_slab *owner, uint64_t occ) {
    const char *from = src->span->arena->alias + file_off(src);
    char *to = owner->span->arena->alias + file_off(owner);
    while (occ) {
        unsigned i = (unsigned)__builtin_ctzll(occ);
        occ &= occ - 1;
        size_t at = (size_t)i * src->block_size;
        memcpy(to + at, from + at, src->block_size);
    }
}

/* The source's pages stopped being its own: not resident (punched), and
 * the owner's purged pages its blocks now lie on are resident again. */
static void account_mesh(mp_small *s, mp_slab *src, mp_slab *owner, uint64_t occ) {
    mp_span *span = src->span;
    mutex_lock(s->heap_lock);
    uint32_t dirty = arena_count_dirty(span->arena, span->page, span->npages);
    arena_clear_dirty(span->arena, span->page, span->npages);
    acct_released(s->acct, (uint64_t)dirty << MP_PAGE_SHIFT);
    s->pages->unbacked += span->npages;
    while (occ && owner->purged_pages) {
        unsigned i = (unsigned)__builtin_ctzll(occ);
        occ &= occ - 1;
        size_t at = (size_t)i * src->block_size;
        for (uint32_t p = (uint32_t)(at >> MP_PAGE_SHIFT);
             p <= (uint32_t)((at + src->block_size - 1) >> MP_PAGE_SHIFT); p++) {
            if (bits_clear(owner->purged, p, 1)) {
                owner->purged_pages--;
                heap_touch(s->pages, owner->span->arena, owner->span->page + p, 1);
            }
        }
    }
    mutex_unlock(s->heap_lock);
    bits_clear(src->purged, 0, span->npages);
    src->purged_pages = 0;
}

/* Mesh the single slab `src` (occupancy `occ`) into `dst` (a single slab or
 * a group's owner, whose union misses occ).  Class lock held.  False (and
 * nothing changed) when the mapping budget, the barrier table or the kernel
 * says no. */
static bool mesh_pair(mp_small *s, mp_class *c, mp_slab *src, uint64_t occ, mp_slab *dst) {
    mp_os_counts *os = &s->acct->os;
    size_t bytes = span_bytes(src->span);
    if (!shm_maps_take(2))
        return false;
    int slot = barrier_enter(src->start, bytes);
    if (slot < 0) {
        shm_maps_give(2);
        return false;
    }
    int64_t t0 = os_now_ns();
    int rc = shm_protect(os, src->start, bytes, false);
    if (rc == 0) {
        copy_blocks(src, dst, occ);
        rc = shm_map(os, src->start, bytes, dst->span->arena->fd, file_off(dst));
        if (rc != 0)
            shm_protect(os, src->start, bytes, true);
    }
    barrier_leave(slot);
    note_pause(s, (uint64_t)(os_now_ns() - t0));
    if (rc != 0) {
        shm_maps_give(2);
        return false;
    }
    shm_punch(os, src->span->arena->fd, file_off(src), bytes);
    account_mesh(s, src, dst, occ);
    if (dst->mesh_owner == NULL) { /* a single slab starts a group */
        if (dst->in_partial)
            partial_remove(c, dst);
        dst->mesh_owner = dst;
        list_push_front(&c->groups, &dst->link);
        dst->in_groups = 1;
    }
    if (src->in_partial)
        partial_remove(c, src);
    src->mesh_owner = dst;
    src->mesh_next = dst->mesh_next;
    dst->mesh_next = src;
    atomic_fetch_add_explicit(&s->mesh_pages, src->span->npages, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->mesh_pages_total, src->span->npages, memory_order_relaxed);
    return true;
}

/* A group whose last other member left: its owner is a plain slab again,
 * back in the partial list, or gone when empty.  Class lock held. */
static void dissolve(mp_small *s, mp_class *c, mp_slab *owner) {
    list_remove(&c->groups, &owner->link);
    owner->in_groups = 0;
    owner->mesh_owner = NULL;
    if (owner->nfree == owner->nblocks)
        slab_release_empty(s, owner);
    else if (owner->nfree > 0)
        partial_push(c, owner);
}

/* Map a member (not the owner) back onto its own file pages and take it
 * out of its group; false when the kernel refuses (it then stays).  Its
 * own pages were punched: they count as purged.  Class lock held. */
static bool detach(mp_small *s, mp_class *c, mp_slab *m) {
    mp_slab *owner = m->mesh_owner;
    mp_arena *arena = m->span->arena;
    if (shm_map(&s->acct->os, m->start, span_bytes(m->span), arena->fd, file_off(m)) != 0)
        return false;
    shm_maps_give(2);
    mutex_lock(s->heap_lock);
    s->pages->unbacked -= m->span->npages;
    mutex_unlock(s->heap_lock);
    mp_slab **pp = &owner->mesh_next;
    while (*pp != m)
        pp = &(*pp)->mesh_next;
    *pp = m->mesh_next;
    m->mesh_owner = m->mesh_next = NULL;
    bits_set(m->purged, 0, m->span->npages);
    m->purged_pages = m->span->npages;
    atomic_fetch_sub_explicit(&s->mesh_pages, m->span->npages, memory_order_relaxed);
    if (owner->mesh_next == NULL)
        dissolve(s, c, owner);
    return true;
}

/* A meshed slab's last block came back (slab_return).  A member leaves its
 * group and goes the way of any empty slab; the owner stays until the
 * others have left.  Returns whether the slab left.  Class lock held. */
bool mesh_member_empty(mp_small *s, mp_slab *slab) {
    mp_class *c = &s->classes[slab->cls];
    if (slab->mesh_owner == slab || !detach(s, c, slab))
        return false;
    slab_release_empty(s, slab);
    return true;
}

/* Order singles by occupancy, most blocks first (first-fit decreasing). */
static int by_count_desc(const void *a, const void *b) {
    const mesh_single *x = a, *y = b;
    return (int)y->count - (int)x->count;
}

/* Mesh what one class can, up to *budget pages (decremented); false when
 * meshing must stop (mapping budget or memory).  Class lock held. */
static bool mesh_class(mp_small *s, mp_class *c, size_t *budget) {
    mesh_single *singles = malloc(MESH_MAX_CANDIDATES * sizeof *singles);
    mesh_dest *dests = malloc(MESH_MAX_CANDIDATES * sizeof *dests);
    bool go_on = singles != NULL && dests != NULL;
    size_t ns = 0, nd = 0;
    uint64_t full = 0;
    LIST_FOREACH(o, &c->groups, mp_slab, link) {
        if (!go_on || nd == MESH_MAX_CANDIDATES)
            break;
        uint64_t occ = 0;
        for (mp_slab *m = o; m; m = m->mesh_next)
            occ |= occ_of(m);
        dests[nd++] = (mesh_dest){o, occ};
    }
    LIST_FOREACH(sl, &c->partial, mp_slab, link) {
        if (!go_on || ns == MESH_MAX_CANDIDATES)
            break;
        if (sl->nblocks <= 64)
            singles[ns++] = (mesh_single){sl, occ_of(sl), sl->nblocks - sl->nfree};
    }
    if (go_on && ns > 0) {
        full = singles[0].slab->nblocks == 64 ? ~(uint64_t)0
                                              : ((uint64_t)1 << singles[0].slab->nblocks) - 1;
        qsort(singles, ns, sizeof *singles, by_count_desc);
    }
    for (size_t i = 0; go_on && i < ns && *budget > 0; i++) {
        mesh_single *x = &singles[i];
        size_t tried = 0, hit = nd;
        for (size_t d = 0; d < nd && tried < MESH_PROBES; d++, tried++)
            if ((dests[d].occ & x->occ) == 0) {
                hit = d;
                break;
            }
        if (hit == nd) { /* nothing fits: it may take others later */
            if (nd < MESH_MAX_CANDIDATES)
                dests[nd++] = (mesh_dest){x->slab, x->occ};
            continue;
        }
        if (!mesh_pair(s, c, x->slab, x->occ, dests[hit].slab)) {
            go_on = false;
            break;
        }
        *budget = *budget > x->slab->span->npages ? *budget - x->slab->span->npages : 0;
        dests[hit].occ |= x->occ;
        if (dests[hit].occ == full) /* full: takes nobody any more */
            dests[hit] = dests[--nd];
    }
    free(singles);
    free(dests);
    return go_on;
}

/* Mesh the slabs of every class, up to `max_pages` pages meshed; returns
 * pages meshed.  Takes each class lock in turn (and the pool lock inside):
 * call without the pool lock. */
size_t mesh_run(mp_small *s, size_t max_pages) {
    if (!s->mesh || s->debug || !barrier_install())
        return 0;
    atomic_fetch_add_explicit(&s->mesh_calls, 1, memory_order_relaxed);
    size_t budget = max_pages;
    for (unsigned cls = 0; cls < s->class_count && budget > 0; cls++) {
        mp_class *c = &s->classes[cls];
        mutex_lock(&c->lock);
        bool go_on = mesh_class(s, c, &budget);
        mutex_unlock(&c->lock);
        if (!go_on)
            break;
    }
    /* What the copies touched through the alias views would count twice in
     * the process's RSS (shared pages stay in the file). */
    mutex_lock(s->heap_lock);
    HEAP_FOREACH_ARENA(s->pages, a)
        shm_unview(&s->acct->os, a->alias, a->region.size);
    mutex_unlock(s->heap_lock);
    return max_pages - budget;
}

/* Pool teardown: the mappings meshing holds leave the process-wide budget
 * (the arenas themselves are unmapped next). */
void mesh_forget_all(mp_small *s) {
    for (unsigned cls = 0; cls < s->class_count; cls++)
        LIST_FOREACH(o, &s->classes[cls].groups, mp_slab, link)
            for (mp_slab *m = o->mesh_next; m; m = m->mesh_next)
                shm_maps_give(2);
}

/* Count broken invariants of one class's meshed groups into `log`: every
 * member names the owner, is of the class and the owner's length, and no
 * two members' occupancy overlaps (they share the owner's pages).  Class
 * lock held. */
size_t mesh_check(const mp_small *s, unsigned cls, mp_check_log *log) {
    const mp_class *c = &s->classes[cls];
    size_t bad = 0;
    LIST_FOREACH(o, &c->groups, const mp_slab, link) {
        bad += check_fail(log, o->mesh_owner != o || !o->in_groups || o->in_partial,
                          "mesh: a group's owner is not marked as its own owner");
        bad += check_fail(log, o->mesh_next == NULL, "mesh: a group of one slab");
        uint64_t uni = 0;
        size_t members = 0;
        for (const mp_slab *m = o; m && members < ((size_t)1 << 24); m = m->mesh_next, members++) {
            uint64_t occ = occ_of(m);
            bad += check_fail(log, (uni & occ) != 0,
                              "mesh: two members of a group have overlapping occupancy");
            uni |= occ;
            bad += check_fail(log, m->mesh_owner != o || m->cls != cls ||
                                       m->span->npages != o->span->npages || m->in_partial,
                              "mesh: a member of another owner, class or length");
        }
    }
    return bad;
}

/* ---- fork ----------------------------------------------------------------- */
/* The slab arenas are MAP_SHARED: a child would share them with its parent.
 * Before fork (every lock held) each arena turns read-only under the
 * barrier (a writer waits) and its file is copied; the child maps the
 * copies where the parent maps the originals (meshed members too), the
 * parent makes its arenas writable again.  Returns 0, or -1 when a copy
 * could not be made (that child then maps the parent's file privately:
 * its writes stay its own, but pages it has not written show the parent's
 * later writes; it meshes no more). */
int mesh_prefork(mp_small *s) {
    int rc = 0;
    if (!s->mesh)
        return 0;
    HEAP_FOREACH_ARENA(s->pages, a) {
        a->fork_slot = barrier_enter(a->region.base, a->region.size);
        if (a->fork_slot >= 0)
            shm_protect(&s->acct->os, a->region.base, a->region.size, false);
        a->fork_fd = shm_copy(a->fd, a->alias, a->region.size);
        shm_unview(&s->acct->os, a->alias, a->region.size); /* the copy read through it */
        rc |= a->fork_fd < 0 ? -1 : 0;
    }
    return rc;
}

/* Map every meshed member onto its owner's pages again (in a child, after
 * its arenas were mapped onto their copies). */
static void remap_members(mp_small *s, bool private_map) {
    for (unsigned cls = 0; cls < s->class_count; cls++)
        LIST_FOREACH(o, &s->classes[cls].groups, mp_slab, link)
            for (mp_slab *m = o->mesh_next; m; m = m->mesh_next)
                shm_map_as(&s->acct->os, m->start, span_bytes(m->span), o->span->arena->fd,
                           file_off(o), private_map);
}

/* After fork: the child maps the copies (identity, then meshed members),
 * the parent makes its arenas writable again; both drop what is not
 * theirs. */
void mesh_postfork(mp_small *s, bool child) {
    if (!s->mesh)
        return;
    bool private_map = false;
    HEAP_FOREACH_ARENA(s->pages, a) {
        mp_os_counts *os = &s->acct->os;
        if (child && a->fork_fd >= 0) {
            shm_map(os, a->region.base, a->region.size, a->fork_fd, 0);
            shm_map(os, a->alias, a->region.size, a->fork_fd, 0);
            shm_close(a->fd);
            a->fd = a->fork_fd;
        } else if (child) {
            shm_map_as(os, a->region.base, a->region.size, a->fd, 0, true);
            private_map = true;
        } else {
            if (a->fork_slot >= 0)
                shm_protect(os, a->region.base, a->region.size, true);
            if (a->fork_fd >= 0)
                shm_close(a->fork_fd);
        }
        barrier_leave(a->fork_slot);
        a->fork_fd = a->fork_slot = -1;
    }
    if (child) {
        remap_members(s, private_map);
        if (private_map)
            s->mesh = false;
    }
}
