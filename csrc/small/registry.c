/*
 * registry.c - the registry of live pools: every pool's small-block state,
 * under a never-reused uid.
 *
 * Threads and pools have independent lifetimes.  A thread's cache slots key
 * on a pool's uid (tc.c), so a destroyed pool whose address is reused is
 * never mistaken for the new one; a thread that exits hands its cached
 * blocks back only to pools the registry still holds.  The pool layer's
 * fork handlers walk the registry to take, and re-make, every pool's locks.
 */
#include "small.h"

static mp_mutex reg_lock = MP_MUTEX_INIT(MP_RANK_REGISTRY);
static mp_list reg_list;
static uint64_t reg_uid;

/* Make a pool's small-block state known under a fresh, never-reused uid. */
void registry_add(mp_small *s) {
    mutex_lock(&reg_lock);
    s->uid = ++reg_uid;
    s->fast_uid = s->debug ? UINT64_MAX : s->uid;
    list_push_front(&reg_list, &s->reg_link);
    mutex_unlock(&reg_lock);
}

/* Forget it; afterwards no thread cache will flush into it. */
void registry_remove(mp_small *s) {
    mutex_lock(&reg_lock);
    list_remove(&reg_list, &s->reg_link);
    mutex_unlock(&reg_lock);
}

/* Hold the registry: the pools in it stay alive until registry_unlock. */
void registry_lock(void) { mutex_lock(&reg_lock); }

/* Release the registry taken by registry_lock. */
void registry_unlock(void) { mutex_unlock(&reg_lock); }

/* In a fork child: a fresh registry lock (its holder may not exist here). */
void registry_reinit(void) { mutex_init(&reg_lock, MP_RANK_REGISTRY, 0); }

/* The registered state after `prev` (NULL: the first); registry held. */
mp_small *registry_next(mp_small *prev) {
    mp_link *l = prev ? prev->reg_link.next : reg_list.head;
    return LIST_ENTRY(l, mp_small, reg_link);
}

/* The live state with this uid, or NULL; registry held. */
mp_small *registry_find(uint64_t uid) {
    LIST_FOREACH(s, &reg_list, mp_small, reg_link)
        if (s->uid == uid)
            return s;
    return NULL;
}
