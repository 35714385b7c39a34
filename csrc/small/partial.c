/*
 * partial.c - the lists of slabs with free blocks, and which thread cache
 * owns which slab (per-thread slabs).
 *
 * A thread cache refills from slabs it owns, then claims one no live cache
 * owns (or the class's spare, or a new slab: slab.c's refill).  Every
 * allocation and free writes its block's state word; were two threads'
 * blocks on one slab, their state words would share cache lines and every
 * pair would move a line between cores.  A block freed by another thread
 * goes to that thread's cache as any free does (a cross-thread free costs
 * what a local one does) and back to its own slab when that cache flushes.
 *
 * A slab with free blocks is in its class's `partial` list when no live
 * cache owns it, else in its class's `owned` list and its owner's `owned`
 * list for the class (so the purger and the checker see every one, and a
 * refill finds its own in O(1)).  A full slab is in no list and keeps its
 * owner.  A cache that is parked (its thread exited, or it left a slot)
 * bumps its gen: its slabs are anyone's from then on.  Meshing pools own
 * nothing: the mesher pairs slabs of the class's partial list.  Every
 * function here but partial_disown runs under the class lock of the slab's
 * class.
 */
#include "small.h"

/* The live thread cache owning `slab`, or NULL (none, or its cache was
 * parked since).  Class lock held. */
mp_tcache *partial_owner(const mp_slab *slab) {
    mp_tcache *tc = slab->owner;
    if (tc && atomic_load_explicit(&tc->gen, memory_order_relaxed) == slab->owner_gen)
        return tc;
    return NULL;
}

/* Link a slab with free blocks into its owner's lists, or into its class's
 * partial list when no live cache owns it.  Class lock held. */
void partial_push(mp_class *c, mp_slab *slab) {
    MP_ASSERT(!slab->in_partial, "a slab is in its class's partial list once");
    mp_tcache *owner = partial_owner(slab);
    if (owner) {
        list_push_front(&c->owned, &slab->link);
        list_push_front(&owner->owned[slab->cls], &slab->own_link);
        slab->in_partial = LISTED_OWNED;
    } else {
        slab->owner = NULL;
        list_push_front(&c->partial, &slab->link);
        slab->in_partial = LISTED_PARTIAL;
    }
}

/* Unlink a slab from the partial lists it is in.  Class lock held. */
void partial_remove(mp_class *c, mp_slab *slab) {
    MP_ASSERT(slab->in_partial, "only a listed slab leaves the partial list");
    if (slab->in_partial == LISTED_OWNED) {
        list_remove(&c->owned, &slab->link);
        list_remove(&slab->owner->owned[slab->cls], &slab->own_link);
    } else {
        list_remove(&c->partial, &slab->link);
    }
    slab->in_partial = LISTED_NONE;
}

/* Make `tc` the owner of a slab in no list (NULL, or a meshing pool's:
 * nobody).  Class lock held. */
void partial_claim(mp_small *s, mp_slab *slab, mp_tcache *tc) {
    MP_ASSERT(!slab->in_partial, "a slab changes owner outside the lists");
    slab->owner = s->mesh ? NULL : tc;
    slab->owner_gen = tc ? atomic_load_explicit(&tc->gen, memory_order_relaxed) : 0;
    MP_ASSERT((slab->owner_gen & 1) == 0, "a cache being parked claims no slab");
}

/* True when `slab` is in its owner's list though the owner was parked and
 * has finished giving its slabs up (a lost slab).  A slab whose owner is
 * mid-disown (odd gen) is not: it moves once partial_disown takes its
 * class lock.  Class lock held. */
bool partial_owner_lost(const mp_slab *slab) {
    if (slab->in_partial != LISTED_OWNED || partial_owner(slab) != NULL)
        return false;
    return (atomic_load_explicit(&slab->owner->gen, memory_order_relaxed) & 1) == 0;
}

/* A cache being parked gives up its slabs: its gen moves on first, to odd
 * (so a full slab of its that gets a block back from now on goes to the
 * class's partial list), then its partial slabs move there, class by class
 * (other threads' flushes may be adding to its lists until the gen moved),
 * then its gen moves on to even: done.  Takes each class lock in turn: call
 * with no class lock held. */
void partial_disown(mp_small *s, mp_tcache *tc) {
    atomic_fetch_add_explicit(&tc->gen, 1, memory_order_relaxed);
    for (unsigned cls = 0; cls < s->class_count; cls++) {
        mp_class *c = &s->classes[cls];
        mutex_lock(&c->lock);
        mp_slab *slab;
        while ((slab = LIST_ENTRY(tc->owned[cls].head, mp_slab, own_link)) != NULL) {
            partial_remove(c, slab);
            partial_push(c, slab); /* the gen moved: the class's list */
        }
        mutex_unlock(&c->lock);
    }
    atomic_fetch_add_explicit(&tc->gen, 1, memory_order_relaxed);
}

