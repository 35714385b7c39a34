#!/bin/sh
# run_tests.sh VARIANT BINDIR TEST... - run the C tests of one build variant.
#
# Runs every test (even after one failed, so a run shows all failures), each
# with the arguments its variant needs (sanitizers make the stress test
# slower, so it gets fewer operations there), and exits 1 if any failed.
variant=$1
dir=$2
shift 2

# args_for VARIANT TEST: one line of arguments per run of TEST.
args_for() {
    case "$1:$2" in
        opt:test_stress)  printf '%s\n' "1 1000000 default" "2 100000 debug-decay0" \
                                 "3 200000 arena=4M,small_max=65536" ;;
        opt:test_threads) printf '%s\n' "4 200000" "4 100000 2" ;;
        asan:test_stress) printf '%s\n' "1 700000 default" "2 60000 debug-decay0" ;;
        tsan:test_threads) printf '%s\n' "4 20000" "4 10000 2" ;;
        asan:test_threads) printf '%s\n' "4 200000" "4 50000 2" ;;
        tsan:test_fork)    printf '%s\n' "5" "3 mesh" ;;
        opt:test_fork)     printf '%s\n' "" "20 mesh" ;;
        asan:test_fork)    printf '%s\n' "" "10 mesh" ;;
        asan:test_mesh)    printf '%s\n' "50000" ;;
        tsan:test_mesh)    printf '%s\n' "20000" ;;
        *) printf '\n' ;;
    esac
}

fail=0
failed=""
for t in "$@"; do
    args_for "$variant" "$t" > "${TMPDIR:-/tmp}/mp_test_args.$$"
    while IFS= read -r args; do
        echo "== [$variant] $t $args"
        start=$(date +%s)
        # shellcheck disable=SC2086  # args are words on purpose
        "$dir/$t" $args
        rc=$?
        echo "   ($(( $(date +%s) - start )) s, exit $rc)"
        if [ "$rc" -ne 0 ]; then
            fail=1
            failed="$failed $t($args)"
        fi
    done < "${TMPDIR:-/tmp}/mp_test_args.$$"
    rm -f "${TMPDIR:-/tmp}/mp_test_args.$$"
done
if [ "$fail" -ne 0 ]; then
    echo "[$variant] FAILED:$failed"
    exit 1
fi
echo "[$variant] all passed"
