/*
 * config.c - a pool's settings, from the one table (MP_CONFIG_LIST in
 * mempool.h): the table exported to bindings, the defaults, the checks that
 * name what is wrong, and changing a setting of a live pool (mp_pool_set).
 * Nothing here is on an allocation path.
 */
#include "pool.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* Row indices, in table order. */
enum {
#define CONFIG_INDEX(name, type, unit, def, min, max, none, runtime, doc) CONFIG_I_##name,
    MP_CONFIG_LIST(CONFIG_INDEX)
#undef CONFIG_INDEX
    CONFIG_COUNT
};

static const mp_setting config_table[CONFIG_COUNT] = {
#define CONFIG_ROW(name, type, unit, def, min, max, none, runtime, doc) \
    {#name, unit, doc, (int64_t)(def), (int64_t)(min), (int64_t)(max), (int64_t)(none), runtime},
    MP_CONFIG_LIST(CONFIG_ROW)
#undef CONFIG_ROW
};

/* Whether the row's C type is unsigned (a negative int64 then stands for a
 * value above INT64_MAX, which the check refuses and the message shows). */
static const bool config_unsigned[CONFIG_COUNT] = {
#define CONFIG_UNSIGNED(name, type, unit, def, min, max, none, runtime, doc) ((type)-1 > 0),
    MP_CONFIG_LIST(CONFIG_UNSIGNED)
#undef CONFIG_UNSIGNED
};

/* Every row's bounds, none and default fit its C type, and the default is
 * allowed: a wrong line fails to compile. */
#define CONFIG_FITS(type, v) ((int64_t)(type)(v) == (int64_t)(v))
#define CONFIG_ASSERT_ROW(name, type, unit, def, min, max, none, runtime, doc)                  \
    _Static_assert(CONFIG_FITS(type, min) && CONFIG_FITS(type, max) &&                        \
                       (int64_t)(min) <= (int64_t)(max),                                      \
                   #name ": bounds fit its type");                                            \
    _Static_assert((int64_t)(none) == MP_SETTING_NO_NONE ||                                   \
                       (CONFIG_FITS(type, none) &&                                            \
                        ((int64_t)(none) < (int64_t)(min) || (int64_t)(none) > (int64_t)(max))), \
                   #name ": none fits its type and lies outside the bounds");                 \
    _Static_assert((int64_t)(def) == (int64_t)(none) ||                                       \
                       ((int64_t)(def) >= (int64_t)(min) && (int64_t)(def) <= (int64_t)(max)), \
                   #name ": the default is allowed");
MP_CONFIG_LIST(CONFIG_ASSERT_ROW)
#undef CONFIG_ASSERT_ROW

const mp_setting *mp_settings(size_t *count) {
    if (count)
        *count = CONFIG_COUNT;
    return config_table;
}

/* A field of `c` by row index, widened to int64_t. */
static int64_t config_get(const mp_config *c, int i) {
    switch (i) {
#define CONFIG_GET(name, type, unit, def, min, max, none, runtime, doc) \
    case CONFIG_I_##name:                                            \
        return (int64_t)c->name;
        MP_CONFIG_LIST(CONFIG_GET)
#undef CONFIG_GET
    }
    return 0;
}

/* Store a field of `c` by row index.  Relaxed atomic stores: a live pool's
 * setting may be read without the pool lock (pool_decay_ms). */
static void config_put(mp_config *c, int i, int64_t v) {
    switch (i) {
#define CONFIG_PUT(name, type, unit, def, min, max, none, runtime, doc) \
    case CONFIG_I_##name:                                            \
        __atomic_store_n(&c->name, (type)v, __ATOMIC_RELAXED);       \
        break;
        MP_CONFIG_LIST(CONFIG_PUT)
#undef CONFIG_PUT
    }
}

void mp_config_default(mp_config *config) {
    for (int i = 0; i < CONFIG_COUNT; i++)
        config_put(config, i, config_table[i].default_value);
}

/* The row named `name`, or -1. */
static int config_find(const char *name) {
    for (int i = 0; name && i < CONFIG_COUNT; i++)
        if (strcmp(config_table[i].name, name) == 0)
            return i;
    return -1;
}

/* ---- the reason for a refusal ------------------------------------------ */

/* Not MP_TLS (initial-exec): a buffer this size in static TLS could exhaust
 * the surplus glibc keeps for dlopen'ed modules; this is never hot. */
static _Thread_local char config_why[320];

const char *mp_config_error(void) { return config_why; }

/* Append printf-style text to config_why. */
static void config_say(const char *fmt, ...) {
    size_t used = strlen(config_why);
    if (used + 1 >= sizeof config_why)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(config_why + used, sizeof config_why - used, fmt, ap);
    va_end(ap);
}

/* Append value v of row i in its unit: "1048576 bytes (1 MiB)", "500 ms",
 * "2 (auto)", a flag or count as a number. */
static void config_say_value(int i, int64_t v) {
    const mp_setting *row = &config_table[i];
    if (v < 0 && config_unsigned[i]) { /* from C a huge size, from Python a negative one */
        config_say("%" PRIu64 " (%" PRId64 ")", (uint64_t)v, v);
        return;
    } else {
        config_say("%" PRId64, v);
    }
    if (strcmp(row->unit, "bytes") == 0) {
        config_say(" bytes");
        uint64_t u = (uint64_t)v;
        static const char *const units[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
        if (v != row->none && u >= 1024) {
            int k = 0;
            double x = (double)u / 1024;
            while (k < 5 && x >= 1024) {
                x /= 1024;
                k++;
            }
            if (u % ((uint64_t)1 << (10 * (k + 1))) == 0)
                config_say(" (%.0f %s)", x, units[k]);
            else
                config_say(" (%.1f %s)", x, units[k]);
        }
    } else if (strcmp(row->unit, "ms") == 0) {
        config_say(" ms");
    } else if (strchr(row->unit, '|') != NULL && v >= row->min && v <= row->max) {
        /* the v-th word of "off|on|auto" */
        const char *w = row->unit;
        for (int64_t k = 0; k < v && w; k++) {
            w = strchr(w, '|');
            w = w ? w + 1 : NULL;
        }
        if (w) {
            const char *end = strchr(w, '|');
            config_say(" (%.*s)", (int)(end ? end - w : (ptrdiff_t)strlen(w)), w);
        }
    }
}

/* Start a new reason: "name = value". */
static void config_say_setting(int i, int64_t v) {
    config_why[0] = '\0';
    config_say("%s = ", config_table[i].name);
    config_say_value(i, v);
}

/* Check value v for row i: MP_OK, or MP_EINVAL with the reason. */
static int config_check_value(int i, int64_t v) {
    const mp_setting *row = &config_table[i];
    bool fits = !(v < 0 && config_unsigned[i]);
    if (fits && ((v >= row->min && v <= row->max) || (row->none != MP_SETTING_NO_NONE && v == row->none)))
        return MP_OK;
    config_say_setting(i, v);
    config_say(" is out of range: ");
    if (row->max == INT64_MAX) {
        config_say("at least ");
        config_say_value(i, row->min);
    } else {
        config_say_value(i, row->min);
        config_say(" to ");
        config_say_value(i, row->max);
    }
    if (row->none != MP_SETTING_NO_NONE) {
        config_say(", or ");
        config_say_value(i, row->none);
    }
    config_say(" (%s: %s)", row->name, row->doc);
    return MP_EINVAL;
}

int mp_config_check(const mp_config *config) {
    config_why[0] = '\0';
    if (config == NULL)
        return MP_OK; /* the defaults */
    for (int i = 0; i < CONFIG_COUNT; i++)
        if (config_check_value(i, config_get(config, i)) != MP_OK)
            return MP_EINVAL;
    return MP_OK;
}

int mp_setting_check(const char *name, int64_t value) {
    config_why[0] = '\0';
    int i = config_find(name);
    if (i < 0) {
        config_say("no setting named '%s'", name ? name : "(null)");
        return MP_EINVAL;
    }
    return config_check_value(i, value);
}

int mp_config_set(mp_config *config, const char *name, int64_t value) {
    int rc = mp_setting_check(name, value);
    if (rc == MP_OK && config != NULL)
        config_put(config, config_find(name), value);
    return rc;
}

int mp_config_get(const mp_config *config, const char *name, int64_t *out) {
    config_why[0] = '\0';
    int i = config_find(name);
    if (i < 0 || config == NULL || out == NULL) {
        if (i < 0)
            config_say("no setting named '%s'", name ? name : "(null)");
        return MP_EINVAL;
    }
    *out = config_get(config, i);
    return MP_OK;
}

/* A checked config made usable: arena_bytes rounded up to whole chunks,
 * a huge_min (0: none) above small_max. */
void config_normalise(mp_config *c) {
    c->arena_bytes = MP_ALIGN_UP(c->arena_bytes, MP_CHUNK_SIZE);
    if (c->huge_min != 0 && c->huge_min <= c->small_max)
        c->huge_min = c->small_max + 1;
}

/* ---- a live pool's settings -------------------------------------------- */

void mp_pool_config(const mp_pool *pool, mp_config *out) {
    if (pool == NULL || out == NULL)
        return;
    mp_pool *p = (mp_pool *)pool; /* the lock is not the pool's state */
    mutex_lock(&p->lock);
    *out = p->config;
    mutex_unlock(&p->lock);
}

int mp_pool_get(const mp_pool *pool, const char *name, int64_t *out) {
    if (pool == NULL)
        return pool_error(NULL, MP_EINVAL);
    mp_config c;
    mp_pool_config(pool, &c);
    return mp_config_get(&c, name, out);
}

/* The resident limit may not go below the live bytes (they cannot be given
 * back).  MP_OK or MP_EINVAL with the reason. */
static int config_limit_allowed(mp_pool *pool, int i, int64_t limit) {
    if (limit == 0)
        return MP_OK;
    mp_stats st;
    mp_stats_get(pool, &st);
    if ((uint64_t)limit >= st.live_bytes)
        return MP_OK;
    config_say_setting(i, limit);
    config_say(" is below the ");
    config_say_value(i, (int64_t)st.live_bytes);
    config_say(" live in the pool (live memory cannot be given back); nothing changed");
    return MP_EINVAL;
}

int mp_pool_set(mp_pool *pool, const char *name, int64_t value) {
    config_why[0] = '\0';
    int i = config_find(name);
    if (pool == NULL)
        return pool_error(NULL, MP_EINVAL);
    if (i < 0) {
        config_say("no setting named '%s'", name ? name : "(null)");
        return pool_error(pool, MP_EINVAL);
    }
    if (!config_table[i].runtime) {
        config_say("%s is fixed when the pool is created; it cannot change on a live pool",
                   config_table[i].name);
        return pool_error(pool, MP_EINVAL);
    }
    if (config_check_value(i, value) != MP_OK)
        return pool_error(pool, MP_EINVAL);
    if (i == CONFIG_I_resident_limit && config_limit_allowed(pool, i, value) != MP_OK)
        return pool_error(pool, MP_EINVAL);
    mp_small *s = &pool->small;
    mutex_lock(&pool->lock);
    config_put(&pool->config, i, value);
    /* What a change needs beyond the new value, which the core reads where
     * it acts (a setting read only there needs nothing here). */
    switch (i) {
    case CONFIG_I_decay_ms:
        atomic_store_explicit(&s->decay_ms, value, memory_order_relaxed);
        if (value < 0) /* a sweep already due would purge with the old decay */
            atomic_store_explicit(&s->slab_sweep_due_ms, 0, memory_order_relaxed);
        purge_after_free(pool); /* what aged past a shorter decay goes now */
        if (pool->purger_waiting) /* its deadline changed */
            pthread_cond_signal(&pool->purge_cond);
        break;
    case CONFIG_I_background_purge:
        if (value)
            acct_dirty(&pool->acct); /* start or wake the purger */
        else if (pool->purger_waiting)
            pthread_cond_signal(&pool->purge_cond); /* it idles */
        break;
    case CONFIG_I_retain_arenas:
        for (int h = 0; h < MP_HEAP_COUNT; h++)
            pool->heaps[h].retain_arenas = (unsigned)value;
        break;
    case CONFIG_I_resident_limit:
        pool->acct.resident_limit = (size_t)value;
        acct_over_limit(&pool->acct, 0); /* cached pages over it go back now */
        break;
    default:
        break;
    }
    mutex_unlock(&pool->lock);
    return MP_OK;
}

int mp_pool_set_resident_limit(mp_pool *pool, size_t resident_limit) {
    if (resident_limit > (size_t)INT64_MAX) {
        config_why[0] = '\0';
        config_say("resident_limit = %zu bytes is out of range", resident_limit);
        return pool_error(pool, MP_EINVAL);
    }
    return mp_pool_set(pool, "resident_limit", (int64_t)resident_limit);
}
