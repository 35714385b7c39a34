# Makefile - builds and runs the C core's tests and its microbenchmark.
#
#   make test-c        every C test, -O2 -g
#   make test-c-asan   the same under ASan + UBSan (leaks included)
#   make test-c-tsan   the threaded tests under ThreadSanitizer
#   make bench-c       the allocation microbenchmark vs malloc and its peers
#   make count-c       callgrind instructions per small alloc+free pair (release
#                      flags, as setup.py builds): mp_alloc/mp_free and the
#                      NEP 49 entry points
#   make fuzz          libFuzzer on the core (clang), FUZZ_SECONDS (default 60)
#
# Each test is one file with its own main, linked straight against every
# csrc/*/*.c but the tools' (a wildcard, so core files added later are
# picked up; csrc/tools/ is the replay engine, tested from Python).  A target
# fails when any test fails or a sanitizer reports anything.  Tests build
# with the core's checks on: MP_CHECK_LEVEL=1 (assertions, lock ranks), 2
# under the sanitizers (expensive assertions too).

CC      ?= cc
CORE_SRC := $(filter-out csrc/tools/%,$(wildcard csrc/*/*.c))
CORE_HDR := $(filter-out csrc/tools/%,$(wildcard csrc/*/*.h))

BASE_CFLAGS := -std=c11 -Wall -Wextra -pthread -Icsrc -Icsrc/include
OPT_CFLAGS  := -O2 -g -DMP_CHECK_LEVEL=1
# the benchmarks measure the core as setup.py ships it: no assertions (the
# core grades them by MP_CHECK_LEVEL; it reads no NDEBUG)
REL_CFLAGS  := -O2 -g -DMP_CHECK_LEVEL=0
ASAN_CFLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -g -O1 \
               -fno-sanitize-recover=all -DMP_CHECK_LEVEL=2
TSAN_CFLAGS := -fsanitize=thread -fno-omit-frame-pointer -g -O1 -DMP_CHECK_LEVEL=2
LDLIBS      := -lpthread -lm

# One test per module of the core, bottom up (test_X.c tests csrc/*/X.c;
# test_base.c the base layer's small files), then the whole-core scenarios:
# a random walk against a model, threads freeing each other's blocks, fork
# while another thread allocates.  tests/test_layers.py checks the naming.
UNIT_TESTS  := test_base test_map test_heap test_decay test_sc test_slab test_tc test_mesh \
               test_pool test_purge test_stats test_debug test_buffer test_alloc test_realloc \
               test_resolve test_config
WHOLE_TESTS := test_stress test_threads test_fork
TESTS       := $(UNIT_TESTS) $(WHOLE_TESTS)
TSAN_TESTS  := test_threads test_fork test_tc test_mesh test_config

TBIN := tests/c/bin
BBIN := benches/c/bin

OPT_BINS  := $(addprefix $(TBIN)/,$(TESTS))
ASAN_BINS := $(addprefix $(TBIN)/asan/,$(TESTS))
TSAN_BINS := $(addprefix $(TBIN)/tsan/,$(TSAN_TESTS))

# Sanitizer settings: stop at the first report and exit non-zero.
# die_after_fork=0: the pool restarts its background purge thread in a forked
# child, which TSan otherwise refuses outright (test_fork).
ASAN_ENV := ASAN_OPTIONS=detect_leaks=1:halt_on_error=1:exitcode=23 \
            UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
TSAN_ENV := TSAN_OPTIONS=halt_on_error=1:exitcode=66:second_deadlock_stack=1:die_after_fork=0

# libFuzzer harness (tests/fuzz/fuzz_core.c): clang, ASan + UBSan.
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 60
FUZZ_CFLAGS  := -std=c11 -g -O1 -Icsrc -Icsrc/include -DMP_CHECK_LEVEL=2 \
                -fsanitize=fuzzer,address,undefined \
                -fno-sanitize-recover=all -fno-omit-frame-pointer

.PHONY: test-c test-c-asan test-c-tsan bench-c build-c clean-c fuzz count-c

build-c: $(OPT_BINS) $(ASAN_BINS) $(TSAN_BINS) $(BBIN)/bench_alloc

test-c: $(OPT_BINS)
	tests/c/run_tests.sh opt $(TBIN) $(TESTS)

test-c-asan: $(ASAN_BINS)
	$(ASAN_ENV) tests/c/run_tests.sh asan $(TBIN)/asan $(TESTS)

test-c-tsan: $(TSAN_BINS)
	$(TSAN_ENV) tests/c/run_tests.sh tsan $(TBIN)/tsan $(TSAN_TESTS)

fuzz: $(TBIN)/fuzz/fuzz_core
	tests/fuzz/run_fuzz.sh $(TBIN)/fuzz/fuzz_core $(FUZZ_SECONDS)

$(TBIN)/fuzz/fuzz_core: tests/fuzz/fuzz_core.c $(CORE_SRC) $(CORE_HDR)
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $< $(CORE_SRC) -o $@ $(LDLIBS)

bench-c: $(BBIN)/bench_alloc
	benches/c/run_bench.sh $(BBIN)/bench_alloc

COUNT_SIZES ?= 8 64 512 1024 4096 16384 32768
count-c: $(BBIN)/pair_count
	@echo "mp_alloc + mp_free(size 0):"; benches/c/count_pairs.sh $< $(COUNT_SIZES)
	@echo "mp_handler_malloc + mp_handler_free:"; MODE=2 benches/c/count_pairs.sh $< $(COUNT_SIZES)

$(BBIN)/pair_count: benches/c/pair_count.c $(CORE_SRC) $(CORE_HDR)
	@mkdir -p $(@D)
	$(CC) $(BASE_CFLAGS) $(REL_CFLAGS) $< $(CORE_SRC) -o $@ $(LDLIBS)

TEST_HDR := $(wildcard tests/c/*.h)

$(TBIN)/asan/%: tests/c/%.c $(TEST_HDR) $(CORE_SRC) $(CORE_HDR)
	@mkdir -p $(@D)
	$(CC) $(BASE_CFLAGS) $(ASAN_CFLAGS) $< $(CORE_SRC) -o $@ $(LDLIBS)

$(TBIN)/tsan/%: tests/c/%.c $(TEST_HDR) $(CORE_SRC) $(CORE_HDR)
	@mkdir -p $(@D)
	$(CC) $(BASE_CFLAGS) $(TSAN_CFLAGS) $< $(CORE_SRC) -o $@ $(LDLIBS)

$(TBIN)/%: tests/c/%.c $(TEST_HDR) $(CORE_SRC) $(CORE_HDR)
	@mkdir -p $(@D)
	$(CC) $(BASE_CFLAGS) $(OPT_CFLAGS) $< $(CORE_SRC) -o $@ $(LDLIBS)

$(BBIN)/bench_alloc: benches/c/bench_alloc.c $(CORE_SRC) $(CORE_HDR)
	@mkdir -p $(@D)
	$(CC) $(BASE_CFLAGS) $(REL_CFLAGS) $< $(CORE_SRC) -o $@ $(LDLIBS)

clean-c:
	rm -rf $(TBIN) $(BBIN)
