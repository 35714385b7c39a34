/*
 * sizes.c - one TLSF index of free spans (the heap keeps two: spans holding
 * resident granules and clean ones, heap.c).
 *
 * Free spans sit in one of FL x SL lists (first level: power of two of the
 * length, second level: 32 linear subdivisions) with a bitmap per level, so
 * finding a span that fits is a couple of bit scans: O(1) good fit, worst
 * waste 1/32.  Runs under the owner's lock, as all of the heap layer.
 */
#include "heap.h"

/* Index of the highest set bit (x != 0). */
static inline unsigned fls64(uint64_t x) { return 63u - (unsigned)__builtin_clzll(x); }

/* The list a span of n granules belongs to. */
void sizes_class(uint64_t n, unsigned *fl, unsigned *sl) {
    if (n < MP_SL_COUNT) {
        *fl = 0;
        *sl = (unsigned)n;
    } else {
        unsigned f = fls64(n);
        *sl = (unsigned)(n >> (f - MP_SL_LOG2)) ^ MP_SL_COUNT;
        *fl = f - MP_SL_LOG2 + 1;
    }
}

/* The first list whose every span holds n granules (n rounded up). */
static void sizes_class_above(uint64_t n, unsigned *fl, unsigned *sl) {
    if (n >= MP_SL_COUNT)
        n += ((uint64_t)1 << (fls64(n) - MP_SL_LOG2)) - 1;
    sizes_class(n, fl, sl);
}

/* Put a free span into its list of index z. */
void sizes_insert(mp_sizes *z, mp_span *span) {
    unsigned fl, sl;
    sizes_class(span->npages, &fl, &sl);
    list_push_front(&z->lists[fl][sl], &span->free_link);
    z->fl_bitmap |= 1u << fl;
    z->sl_bitmap[fl] |= 1u << sl;
}

/* Take a free span out of its list of index z. */
void sizes_remove(mp_sizes *z, mp_span *span) {
    unsigned fl, sl;
    sizes_class(span->npages, &fl, &sl);
    list_remove(&z->lists[fl][sl], &span->free_link);
    if (z->lists[fl][sl].head == NULL) {
        z->sl_bitmap[fl] &= ~(1u << sl);
        if (z->sl_bitmap[fl] == 0)
            z->fl_bitmap &= ~(1u << fl);
    }
}

/* A free span of at least n granules in index z, or NULL: bitmap search,
 * then a scan of n's own list, which the rounded search skips. */
mp_span *sizes_find(mp_sizes *z, uint64_t n) {
    unsigned fl, sl;
    sizes_class_above(n, &fl, &sl);
    if (fl < MP_FL_COUNT) {
        uint32_t sl_map = z->sl_bitmap[fl] & (~0u << sl);
        if (sl_map == 0) {
            uint32_t fl_map = fl + 1 < MP_FL_COUNT ? z->fl_bitmap & (~0u << (fl + 1)) : 0;
            if (fl_map) {
                fl = (unsigned)__builtin_ctz(fl_map);
                sl_map = z->sl_bitmap[fl];
            }
        }
        if (sl_map)
            return LIST_ENTRY(z->lists[fl][__builtin_ctz(sl_map)].head, mp_span, free_link);
    }
    sizes_class(n, &fl, &sl);
    for (mp_link *l = z->lists[fl][sl].head; l; l = l->next)
        if (LIST_ENTRY(l, mp_span, free_link)->npages >= n)
            return LIST_ENTRY(l, mp_span, free_link);
    return NULL;
}

/* Count broken invariants of index z (number `set`) into `log`: bitmaps
 * against lists, every span free, in its class and in the index its dirty
 * count says.  *listed counts the spans seen; the walk stops past `limit`
 * (a cycle).  Returns the number found. */
size_t sizes_check(const mp_sizes *z, unsigned set, mp_check_log *log, uint64_t *listed,
                   uint64_t limit) {
    size_t bad = 0;
    for (unsigned fl = 0; fl < MP_FL_COUNT; fl++) {
        bad += check_fail(log, ((z->fl_bitmap >> fl) & 1) != (z->sl_bitmap[fl] != 0),
                          "heap: first-level bitmap disagrees with the second level");
        for (unsigned sl = 0; sl < MP_SL_COUNT; sl++) {
            const mp_list *list = &z->lists[fl][sl];
            bad += check_fail(log, ((z->sl_bitmap[fl] >> sl) & 1) != (list->head != NULL),
                              "heap: second-level bitmap disagrees with its list");
            LIST_FOREACH(s, list, const mp_span, free_link) {
                unsigned f, l;
                sizes_class(s->npages, &f, &l);
                bad += check_fail(log, s->kind != MP_SPAN_FREE || f != fl || l != sl ||
                                           s->sizes_set != set,
                                  "heap: a size list holds a span that does not belong there");
                bad += check_fail(log, (s->dirty == 0) != (set == MP_SIZES_CLEAN),
                                  "heap: a span with resident granules is in the clean index "
                                  "(or a clean one in the other)");
                if (++*listed > limit)
                    return bad + check_fail(log, 1, "heap: a size list has a cycle");
            }
        }
    }
    return bad;
}
