/*
 * barrier.c - the write barrier of meshing: a thread that writes into a
 * range made read-only while its blocks are copied waits for the copy, then
 * its write is retried on the new mapping.
 *
 * A range under the barrier sits in a slot of a fixed table (barrier_enter
 * .. barrier_leave).  The SIGSEGV handler (installed by barrier_install,
 * and put back in front whenever another handler replaced it) waits while
 * the faulting address lies in a slot, then returns: the faulting
 * instruction runs again.  Any other fault goes to the handler that was
 * installed before (Python's faulthandler, ASan's), or to the default
 * action.  A fault that finds no slot is retried once when the table changed
 * since (the range may have left it just before the handler looked), so a
 * real crash costs one extra fault and a raced one costs nothing.
 *
 * The kernel writing into such a range (read() into a buffer) does not
 * fault: the call fails with EFAULT.  Ranges stay read-only for one copy of
 * one slab (microseconds), so only a system call landing in that window is
 * affected.  A thread that blocks SIGSEGV gets the default action instead
 * (the kernel's rule for a blocked synchronous signal): the pool's purger
 * blocks every signal, and it never writes through a main view.
 */
#define _GNU_SOURCE /* SA_ONSTACK, SA_NODEFER */
#include "base.h"

#include <sched.h>
#include <signal.h>
#include <string.h>

#define BARRIER_SLOTS 256

static struct {
    _Atomic uintptr_t start, end;
} slots[BARRIER_SLOTS];
static _Atomic uint64_t epoch; /* bumped by every enter and leave */
static struct sigaction previous;
static pthread_mutex_t install_lock = PTHREAD_MUTEX_INITIALIZER;
static MP_TLS uintptr_t retried_addr;
static MP_TLS uint64_t retried_epoch;

/* Whether address a lies in a range under the barrier. */
static bool under_barrier(uintptr_t a) {
    for (unsigned i = 0; i < BARRIER_SLOTS; i++) {
        uintptr_t s = atomic_load_explicit(&slots[i].start, memory_order_acquire);
        if (s != 0 && s <= a && a < atomic_load_explicit(&slots[i].end, memory_order_acquire))
            return true;
    }
    return false;
}

/* The handler: wait out a barrier, else chain to the previous handler. */
static void barrier_handler(int sig, siginfo_t *info, void *ctx) {
    uintptr_t a = (uintptr_t)info->si_addr;
    uint64_t now = atomic_load_explicit(&epoch, memory_order_acquire);
    if (under_barrier(a)) {
        while (under_barrier(a))
            sched_yield();
        return; /* the write runs again, on the new mapping */
    }
    if (a != retried_addr || now != retried_epoch) {
        retried_addr = a;
        retried_epoch = now;
        return; /* maybe raced with a leave: one retry */
    }
    retried_addr = 0;
    if (previous.sa_flags & SA_SIGINFO) {
        if (previous.sa_sigaction) {
            previous.sa_sigaction(sig, info, ctx);
            return;
        }
    } else if (previous.sa_handler != SIG_DFL && previous.sa_handler != SIG_IGN) {
        previous.sa_handler(sig);
        return;
    }
    /* No handler before ours: the default action, on the retried fault. */
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigaction(sig, &dfl, NULL);
}

/* Make sure the barrier's handler is the one SIGSEGV runs (installing it,
 * or putting it back in front of a handler installed since, which it then
 * chains to); false when the kernel refuses. */
bool barrier_install(void) {
    struct sigaction cur;
    pthread_mutex_lock(&install_lock);
    bool ok = sigaction(SIGSEGV, NULL, &cur) == 0;
    if (ok && !((cur.sa_flags & SA_SIGINFO) && cur.sa_sigaction == barrier_handler)) {
        struct sigaction mine;
        memset(&mine, 0, sizeof mine);
        mine.sa_sigaction = barrier_handler;
        mine.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER | SA_RESTART;
        sigemptyset(&mine.sa_mask);
        ok = sigaction(SIGSEGV, &mine, &previous) == 0;
    }
    pthread_mutex_unlock(&install_lock);
    return ok;
}

/* In a fork child: a fresh table lock (a thread that held it in
 * barrier_install does not exist here). */
void barrier_postfork_child(void) { pthread_mutex_init(&install_lock, NULL); }

/* Put [addr, addr+size) under the barrier; returns its slot, or -1 when the
 * table is full (the caller then must not write-protect the range). */
int barrier_enter(void *addr, size_t size) {
    int slot = -1;
    pthread_mutex_lock(&install_lock); /* one writer of the table at a time */
    for (int i = 0; i < BARRIER_SLOTS && slot < 0; i++) {
        if (atomic_load_explicit(&slots[i].start, memory_order_relaxed) != 0)
            continue;
        atomic_store_explicit(&slots[i].end, (uintptr_t)addr + size, memory_order_release);
        atomic_store_explicit(&slots[i].start, (uintptr_t)addr, memory_order_release);
        atomic_fetch_add_explicit(&epoch, 1, memory_order_acq_rel);
        slot = i;
    }
    pthread_mutex_unlock(&install_lock);
    return slot;
}

/* Take the range of `slot` out of the barrier: writers waiting on it retry. */
void barrier_leave(int slot) {
    if (slot < 0)
        return;
    atomic_fetch_add_explicit(&epoch, 1, memory_order_acq_rel);
    atomic_store_explicit(&slots[slot].start, 0, memory_order_release);
}
