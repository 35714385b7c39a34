/*
 * test_base.c - unit tests of the base layer alone: the intrusive list, the
 * bitmaps, the accounting a lower layer reports into, and the lock ranks
 * (a lock taken out of order aborts, naming both, in checked builds), the
 * process RSS reading (os.c), and the error codes' names and texts
 * (error.c: every code of MP_ERROR_LIST, and unknown ones).
 */
#define _GNU_SOURCE /* MAP_ANONYMOUS under -std=c11 */
#include "base/base.h"
#include "test.h"

#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct item {
    int value;
    mp_link link;
} item;

/* The values of a list head to tail, as a string ("1 2 3"), checking the
 * back links on the way. */
static const char *list_text(mp_list *l) {
    static char buf[128];
    buf[0] = 0;
    mp_link *prev = NULL;
    LIST_FOREACH(it, l, item, link) {
        CHECK(it->link.prev == prev);
        prev = &it->link;
        size_t n = strlen(buf);
        snprintf(buf + n, sizeof buf - n, n ? " %d" : "%d", it->value);
    }
    CHECK(l->tail == prev);
    return buf;
}

static void test_list(void) {
    mp_list l = {0};
    item it[4] = {{.value = 0}, {.value = 1}, {.value = 2}, {.value = 3}};
    CHECK(strcmp(list_text(&l), "") == 0);
    list_push_back(&l, &it[1].link);
    list_push_front(&l, &it[0].link);
    list_push_back(&l, &it[3].link);
    list_insert_after(&l, &it[1].link, &it[2].link);
    CHECK_MSG(strcmp(list_text(&l), "0 1 2 3") == 0, "got %s", list_text(&l));
    list_remove(&l, &it[0].link); /* the head */
    list_remove(&l, &it[3].link); /* the tail */
    CHECK_MSG(strcmp(list_text(&l), "1 2") == 0, "got %s", list_text(&l));
    CHECK(it[0].link.next == NULL && it[0].link.prev == NULL); /* unlinked reads as such */
    list_remove(&l, &it[1].link);
    list_remove(&l, &it[2].link);
    CHECK(l.head == NULL && l.tail == NULL);
}

static void test_bits(void) {
    uint64_t bits[4] = {0};
    CHECK_EQ_U(bits_set(bits, 60, 10), 10); /* across a word */
    CHECK_EQ_U(bits_set(bits, 62, 4), 0);   /* already set */
    CHECK_EQ_U(bits_count(bits, 0, 256), 10);
    CHECK(bits_test(bits, 60) && bits_test(bits, 69) && !bits_test(bits, 70));
    CHECK_EQ_U(bits_clear(bits, 64, 192), 6);
    CHECK_EQ_U(bits_count(bits, 0, 256), 4);
    CHECK_EQ_U(bits_set(bits, 0, 256), 252); /* whole words */
    CHECK_EQ_U(bits_count(bits, 1, 0), 0);
}

static int dirty_reports;
static void on_dirty(mp_acct *acct) {
    (void)acct;
    dirty_reports++;
}

static void test_acct(void) {
    mp_acct a = {0};
    acct_resident(&a, 4096);
    acct_resident(&a, 8192);
    acct_released(&a, 4096);
    CHECK_EQ_U(a.resident, 8192);
    CHECK_EQ_U(a.peak_resident, 12288);
    CHECK_EQ_U(a.released, 4096);
    acct_dirty(&a); /* nobody listens: nothing happens */
    a.on_dirty = on_dirty;
    acct_dirty(&a);
    CHECK_EQ_U(dirty_reports, 1);
    acct_live(&a, 100);
    acct_live(&a, -60);
    acct_live(&a, 10);
    CHECK_EQ_U(atomic_load(&a.live), 50);
    CHECK_EQ_U(atomic_load(&a.peak_live), 100);
}

/* Run `fn` in a child; its exit status. */
static int in_child(void (*fn)(void)) {
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        freopen("/dev/null", "w", stderr); /* the abort message is expected */
        fn();
        _exit(0);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    return status;
}

static mp_mutex pool_lock = MP_MUTEX_INIT(MP_RANK_POOL);
static mp_mutex class3, class5;

static void in_order(void) {
    mutex_lock(&class3);
    mutex_lock(&class5); /* ascending class index */
    mutex_lock(&pool_lock);
    mutex_unlock(&class3); /* any release order */
    mutex_unlock(&pool_lock);
    mutex_unlock(&class5);
}
static void class_after_pool(void) {
    mutex_lock(&pool_lock);
    mutex_lock(&class3);
}
static void descending_classes(void) {
    mutex_lock(&class5);
    mutex_lock(&class3);
}

static void test_lock_ranks(void) {
    mutex_init(&class3, MP_RANK_CLASS, 3);
    mutex_init(&class5, MP_RANK_CLASS, 5);
    int st = in_child(in_order);
    CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 0, "in-order locking failed: status %d", st);
#if MP_CHECK_LEVEL >= 1
    st = in_child(class_after_pool);
    CHECK_MSG(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT, "class after pool: status %d", st);
    st = in_child(descending_classes);
    CHECK_MSG(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT, "descending classes: status %d", st);
#else
    printf("  (release build: lock ranks not checked)\n");
#endif
}

/* mp_process_rss reads the process's resident set: non-zero, and it grows
 * by the pages this test touches (with slack for anything else). */
static void test_process_rss(void) {
    size_t n = 32u << 20;
    uint64_t before = mp_process_rss();
    CHECK(before > 0);
    char *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (!CHECK(p != MAP_FAILED))
        return;
    for (size_t i = 0; i < n; i += 4096)
        p[i] = 1;
    uint64_t after = mp_process_rss();
    CHECK_MSG(after >= before + n / 2, "rss %" PRIu64 " -> %" PRIu64 " after touching %zu bytes",
              before, after, n);
    munmap(p, n);
}

/* mp_error_name / mp_strerror cover every code of the list, and unknown ones. */
static void test_error_names(void)
{
#define CHECK_NAME(name, value, text)                                          \
    CHECK_MSG(strcmp(mp_error_name(-(value)), #name) == 0,                      \
              "mp_error_name(%d) = %s, want %s", -(value), mp_error_name(-(value)), \
              #name);                                                          \
    CHECK_MSG(mp_strerror(-(value)) != NULL && strcmp(mp_strerror(-(value)), text) == 0, \
              "mp_strerror(%d) = %s", -(value),                                \
              mp_strerror(-(value)) ? mp_strerror(-(value)) : "(null)");
    MP_ERROR_LIST(CHECK_NAME)
#undef CHECK_NAME
    int unknown[] = {-MP_ERROR_COUNT, -1000, 1, 77};
    for (size_t i = 0; i < sizeof unknown / sizeof *unknown; i++) {
        CHECK(strcmp(mp_error_name(unknown[i]), "MP_UNKNOWN") == 0);
        CHECK(mp_strerror(unknown[i]) != NULL && mp_strerror(unknown[i])[0] != '\0');
    }
}

int main(void) {
    test_list();
    test_bits();
    test_acct();
    test_lock_ranks();
    test_process_rss();
    test_error_names();
    return test_report("test_base");
}
