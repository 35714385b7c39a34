/*
 * test_config.c - the settings table (MP_CONFIG_LIST): the exported rows
 * agree with the struct's defaults and the core's own limits; every value
 * out of range is refused with a reason naming the setting, the value and
 * the range; mp_pool_set changes the runtime settings of a live pool (and
 * refuses the others), also while other threads allocate and the purger
 * runs (the TSan build).
 */
#include "base/base.h"
#include "test.h"

#include <pthread.h>
#include <string.h>
#include <time.h>

#define MiB ((size_t)1 << 20)

static void test_table_matches_defaults_and_core_limits(void) {
    size_t n = 0;
    const mp_setting *rows = mp_settings(&n);
#define ONE_ROW(...) +1
    CHECK(rows != NULL && n == (0 MP_CONFIG_LIST(ONE_ROW)) && n >= 11);
#undef ONE_ROW
    mp_config d;
    mp_config_default(&d);
    for (size_t i = 0; i < n; i++) {
        int64_t v = 0;
        CHECK_ERR(mp_config_get(&d, rows[i].name, &v), MP_OK);
        CHECK_MSG(v == rows[i].default_value, "%s: default %lld vs the table's %lld", rows[i].name,
                  (long long)v, (long long)rows[i].default_value);
        CHECK_MSG(rows[i].doc[0] != '\0' && rows[i].unit[0] != '\0', "%s: doc and unit", rows[i].name);
        CHECK_ERR(mp_setting_check(rows[i].name, rows[i].default_value), MP_OK);
    }
    CHECK_ERR(mp_config_check(&d), MP_OK);
    /* the bounds are the core's own limits (base.h) */
    int64_t v;
    CHECK_ERR(mp_setting_check("capacity", (int64_t)MP_CHUNK_SIZE - 1), MP_EINVAL);
    CHECK_ERR(mp_setting_check("capacity", (int64_t)MP_CHUNK_SIZE), MP_OK);
    CHECK_ERR(mp_setting_check("resident_limit", (int64_t)MP_CHUNK_SIZE - 1), MP_EINVAL);
    CHECK_ERR(mp_setting_check("resident_limit", (int64_t)MP_CHUNK_SIZE), MP_OK);
    CHECK_ERR(mp_setting_check("small_max", MP_SMALL_MAX_LIMIT), MP_OK);
    CHECK_ERR(mp_setting_check("small_max", MP_SMALL_MAX_LIMIT + 1), MP_EINVAL);
    CHECK_ERR(mp_setting_check("small_max", MP_MIN_ALIGN), MP_OK);
    CHECK_ERR(mp_setting_check("small_max", MP_MIN_ALIGN - 1), MP_EINVAL);
    CHECK_ERR(mp_setting_check("arena_bytes", (int64_t)MP_CHUNK_SIZE - 1), MP_EINVAL);
    CHECK_ERR(mp_setting_check("huge_pages", MP_HUGE_AUTO), MP_OK);
    CHECK_ERR(mp_setting_check("huge_pages", MP_HUGE_AUTO + 1), MP_EINVAL);
    /* none values: 0 capacity / limit, -1 decay */
    CHECK_ERR(mp_setting_check("capacity", 0), MP_OK);
    CHECK_ERR(mp_setting_check("decay_ms", -1), MP_OK);
    CHECK_ERR(mp_setting_check("decay_ms", -2), MP_EINVAL);
    CHECK_ERR(mp_setting_check("retain_arenas", -1), MP_EINVAL); /* unsigned: no wrap */
    CHECK_ERR(mp_config_get(&d, "no_such", &v), MP_EINVAL);
    CHECK(strstr(mp_config_error(), "no_such") != NULL);
}

/* The reason names the setting, the value and the range. */
static void test_reasons_name_setting_value_and_range(void) {
    mp_config c;
    mp_config_default(&c);
    c.capacity = MiB;
    mp_pool *out = NULL;
    CHECK_ERR(mp_pool_create(&c, &out), MP_EINVAL);
    CHECK(out == NULL);
    const char *why = mp_config_error();
    CHECK_MSG(strstr(why, "capacity = 1048576 bytes (1 MiB) is out of range: at least 2097152 "
                          "bytes (2 MiB), or 0 bytes") == why, "%s", why);
    CHECK_MSG(strstr(why, "0 = unlimited") != NULL, "%s", why);
    CHECK_ERR(mp_setting_check("huge_pages", 7), MP_EINVAL);
    why = mp_config_error();
    CHECK_MSG(strstr(why, "huge_pages = 7 is out of range: 0 (off) to 2 (auto)") == why, "%s", why);
    CHECK_ERR(mp_setting_check("capacity", -1), MP_EINVAL); /* SIZE_MAX from C */
    why = mp_config_error();
    CHECK_MSG(strstr(why, "capacity = 18446744073709551615 (-1) is out of range") == why, "%s", why);
    CHECK_ERR(mp_setting_check("decay_ms", -5), MP_EINVAL);
    CHECK_MSG(strstr(mp_config_error(), "0 ms to 31536000000 ms, or -1 ms") != NULL, "%s",
              mp_config_error());
    /* mp_config_set refuses and leaves the field */
    mp_config_default(&c);
    CHECK_ERR(mp_config_set(&c, "small_max", 1 << 20), MP_EINVAL);
    CHECK(c.small_max == 32768);
    CHECK_ERR(mp_config_set(&c, "small_max", 1024), MP_OK);
    CHECK(c.small_max == 1024 && mp_config_error()[0] == '\0');
}

/* Allocate, touch and free large blocks, leaving dirty free pages. */
static void churn(mp_pool *pool, size_t bytes) {
    void *p = mp_alloc(pool, bytes);
    CHECK(p != NULL);
    if (p) {
        memset(p, 1, bytes);
        CHECK_ERR(mp_free(pool, p, bytes), MP_OK);
    }
}

static uint64_t dirty(mp_pool *pool) {
    mp_stats st;
    mp_stats_get(pool, &st);
    return st.dirty_free_bytes;
}

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void test_set_on_a_live_pool(void) {
    mp_config c;
    mp_config_default(&c);
    c.decay_ms = -1; /* pages stay until told */
    mp_pool *pool = NULL;
    CHECK_ERR(mp_pool_create(&c, &pool), MP_OK);
    churn(pool, 8 * MiB);
    CHECK(dirty(pool) >= 8 * MiB);
    /* decay 0: what is free goes back now */
    CHECK_ERR(mp_pool_set(pool, "decay_ms", 0), MP_OK);
    CHECK_MSG(dirty(pool) == 0, "dirty %llu after decay 0", (unsigned long long)dirty(pool));
    int64_t v = 7;
    CHECK_ERR(mp_pool_get(pool, "decay_ms", &v), MP_OK);
    CHECK(v == 0);
    /* a decay of 50 ms with the purger on: pages go back by themselves */
    CHECK_ERR(mp_pool_set(pool, "decay_ms", 50), MP_OK);
    churn(pool, 8 * MiB);
    for (int i = 0; i < 200 && dirty(pool) > 0; i++)
        sleep_ms(10);
    CHECK_MSG(dirty(pool) == 0, "purger left %llu dirty", (unsigned long long)dirty(pool));
    /* background purge off: they stay; on again: they go */
    CHECK_ERR(mp_pool_set(pool, "background_purge", 0), MP_OK);
    churn(pool, 8 * MiB);
    sleep_ms(200);
    CHECK_MSG(dirty(pool) >= 8 * MiB, "purger ran while off: %llu", (unsigned long long)dirty(pool));
    CHECK_ERR(mp_pool_set(pool, "background_purge", 1), MP_OK);
    for (int i = 0; i < 200 && dirty(pool) > 0; i++)
        sleep_ms(10);
    CHECK_MSG(dirty(pool) == 0, "purger on again left %llu", (unsigned long long)dirty(pool));
    /* fixed at creation, unknown, out of range: refused, nothing changes */
    CHECK_ERR(mp_pool_set(pool, "capacity", 64 * MiB), MP_EINVAL);
    CHECK(strstr(mp_config_error(), "capacity is fixed when the pool is created") != NULL);
    CHECK_ERR(mp_pool_set(pool, "decay", 5), MP_EINVAL);
    CHECK(strstr(mp_config_error(), "no setting named 'decay'") != NULL);
    CHECK_ERR(mp_pool_set(pool, "retain_arenas", -3), MP_EINVAL);
    CHECK_ERR(mp_pool_set(pool, "retain_arenas", 4), MP_OK);
    mp_pool_config(pool, &c);
    CHECK(c.retain_arenas == 4 && c.decay_ms == 50 && c.capacity == 0);
    /* the resident limit: not below the live bytes */
    void *p = mp_alloc(pool, 6 * MiB);
    CHECK_ERR(mp_pool_set(pool, "resident_limit", 4 * MiB), MP_EINVAL);
    CHECK_MSG(strstr(mp_config_error(), "is below the 6291456 bytes (6 MiB) live") != NULL, "%s",
              mp_config_error());
    CHECK_ERR(mp_pool_set(pool, "resident_limit", 16 * MiB), MP_OK);
    CHECK_ERR(mp_pool_get(pool, "resident_limit", &v), MP_OK);
    CHECK(v == (int64_t)(16 * MiB));
    CHECK_ERR(mp_free(pool, p, 6 * MiB), MP_OK);
    /* decay -1 again: pages stay */
    CHECK_ERR(mp_pool_set(pool, "decay_ms", -1), MP_OK);
    churn(pool, 8 * MiB);
    sleep_ms(100);
    CHECK(dirty(pool) >= 8 * MiB);
    CHECK_EQ_U(mp_pool_check(pool), 0);
    mp_pool_destroy(pool);
}

/* Settings change while other threads allocate and free (TSan: no race). */
typedef struct {
    mp_pool *pool;
    _Atomic int stop;
} shared;

static void *worker(void *arg) {
    shared *sh = arg;
    while (!atomic_load(&sh->stop)) {
        void *small[32];
        for (int i = 0; i < 32; i++)
            small[i] = mp_alloc(sh->pool, 64 + 97 * i);
        for (int i = 0; i < 32; i++)
            mp_free(sh->pool, small[i], 0);
        void *big = mp_alloc(sh->pool, 3 * MiB);
        if (big) {
            memset(big, 2, 4096);
            mp_free(sh->pool, big, 0);
        }
    }
    return NULL;
}

static void test_set_while_threads_allocate(void) {
    shared sh = {.pool = NULL};
    CHECK_ERR(mp_pool_create(NULL, &sh.pool), MP_OK);
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        pthread_create(&t[i], NULL, worker, &sh);
    static const int64_t decays[] = {0, 5, -1, 20, 1000};
    for (int round = 0; round < 50; round++) {
        CHECK_ERR(mp_pool_set(sh.pool, "decay_ms", decays[round % 5]), MP_OK);
        CHECK_ERR(mp_pool_set(sh.pool, "background_purge", round & 1), MP_OK);
        CHECK_ERR(mp_pool_set(sh.pool, "retain_arenas", round % 3), MP_OK);
        mp_purge_aged(sh.pool);
        sleep_ms(2);
    }
    atomic_store(&sh.stop, 1);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    CHECK_EQ_U(mp_pool_check(sh.pool), 0);
    mp_pool_destroy(sh.pool);
}

int main(void) {
    test_table_matches_defaults_and_core_limits();
    test_reasons_name_setting_value_and_range();
    test_set_on_a_live_pool();
    test_set_while_threads_allocate();
    return test_report("test_config");
}
