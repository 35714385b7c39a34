/*
 * assert.c - what a failed MP_ASSERT does (base.h): say which invariant broke
 * and why the code needs it, then abort.  Only checked builds reach it.
 */
#include "base.h"

#include <stdio.h>
#include <stdlib.h>

/* Print the broken invariant with its reason and location, and abort. */
_Noreturn void assert_fail(const char *cond, const char *why, const char *file, int line) {
    fprintf(stderr, "mempool: invariant broken at %s:%d: %s (%s)\n", file, line, cond, why);
    fflush(stderr);
    abort();
}
