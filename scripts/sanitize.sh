#!/usr/bin/env bash
# Builds everything with AddressSanitizer + UndefinedBehaviorSanitizer into
# build-asan and runs the whole test suite there; any report fails the test.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
if [ ! -f build-asan/build.ninja ]; then
  meson setup build-asan -Db_sanitize=address,undefined -Db_lundef=false -Dcuda=disabled >/dev/null
fi
ninja -C build-asan >build-asan/build-output.txt 2>&1 || { tail -50 build-asan/build-output.txt; exit 1; }
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
export CKPT_SANITIZED=1
# Fewer kills and races than test.sh runs (200 each): enough to exercise the
# instrumented code paths, and CI stays within its time.
export CKPT_KILL_TRIALS=40 CKPT_RACE_ROUNDS=40
status=0
# Memory and UB checks of our code: the suites that install packages or run
# other interpreters against them (packaging, the Python package, the real
# OneFlow) run in scripts/test.sh; instrumented code runs a few times slower.
meson test -C build-asan --print-errorlogs --num-processes 2 --timeout-multiplier 3 \
  --no-suite packaging --no-suite python --no-suite oneflow "$@" >build-asan/test-output.txt 2>&1 || status=$?
[ $status -eq 0 ] || tail -60 build-asan/test-output.txt
/usr/bin/python3 scripts/test_summary.py build-asan/meson-logs/testlog.json sanitizers: || status=1
exit "$status"
