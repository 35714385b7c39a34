#!/bin/sh
# run_fuzz.sh FUZZ_BINARY SECONDS - replay the regression inputs, then fuzz.
#
# 1. Every file in tests/fuzz/crashes/ (inputs that once failed) is run once:
#    any of them failing again fails the target.
# 2. libFuzzer runs for SECONDS from the seed corpus, in a scratch copy so
#    the repository's corpus stays a handful of files.  A crash, leak,
#    timeout or out-of-memory input is written to tests/fuzz/crashes/ (keep it:
#    it becomes a regression input) and fails the target.
set -u
bin=${1:?usage: run_fuzz.sh FUZZ_BINARY SECONDS}
seconds=${2:-60}
here=$(dirname "$0")
crashes=$here/crashes
work=$(mktemp -d "${TMPDIR:-/tmp}/mempool_fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$crashes" "$work/corpus"
cp "$here"/corpus/* "$work/corpus/" 2>/dev/null

# The pool maps and unmaps arenas: a 2 GiB RSS ceiling is far above what a
# 512-byte program can keep live (32 blocks of <= 6 MiB, 8 buffers).
# len_control=0: long programs (deep pool states) from the first minute.
opts="-rss_limit_mb=2048 -max_len=512 -len_control=0 -timeout=30 -print_final_stats=1"

if ls "$crashes"/* >/dev/null 2>&1; then
    echo "== replaying $(ls "$crashes" | wc -l) regression input(s) from $crashes"
    "$bin" $opts "$crashes"/* || { echo "FAIL: a regression input fails again"; exit 1; }
fi

echo "== fuzzing for $seconds s"
"$bin" $opts -max_total_time="$seconds" -artifact_prefix="$crashes/" "$work/corpus" \
    2> "$work/log"
rc=$?
grep -E "(INITED|DONE) +cov|stat::|SUMMARY|fuzz_core:" "$work/log" | tail -20
if [ $rc -ne 0 ]; then
    tail -60 "$work/log"
    echo "FAIL: fuzzer exit $rc; the input is in $crashes/ (replay: $bin $crashes/<file>)"
    exit 1
fi
echo "fuzz: ok"
