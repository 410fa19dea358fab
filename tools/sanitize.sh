#!/usr/bin/env bash
# tools/sanitize.sh — the unit and MPI tests again, built with AddressSanitizer and
# UndefinedBehaviorSanitizer (-DRBM_SANITIZE=ON) in ./build-san. Run by tools/test.sh
# when CI=true (so by .ci/run), or by hand:
#   bash tools/sanitize.sh [extra ctest arguments, e.g. -R Eval]
#
# Every sanitizer report of every process — the test executables, the programs they
# start, every MPI rank — goes to a file in build-san/sanitizer-logs (log_path), not
# to a stderr no test reads. halt_on_error=1 makes the reporting process exit non-zero
# at its first report, and after ctest this script fails if any report file exists,
# printing the first lines of each (so a report in a rank whose failure a test
# expected, e.g. a bad-input test, still fails CI). Open MPI's own leaks at exit are
# not ours: leak detection is off (detect_leaks=0). Reports whose frames are all in
# third-party libraries are suppressed by tools/sanitizer.supp (see its comments);
# nothing of ours (src/, apps/, include/, tests/) is ever suppressed.
set -euo pipefail
RBM_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SAN_BUILD="${RBM_SAN_BUILD:-$RBM_ROOT/build-san}"
t0=$SECONDS

echo "sanitize: building with -fsanitize=address,undefined in $SAN_BUILD"
mkdir -p "$SAN_BUILD"
cmake -S "$RBM_ROOT" -B "$SAN_BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g" -DRBM_SANITIZE=ON -DRBM_SLURM_TESTS=OFF >"$SAN_BUILD/sanitize-cmake.log" 2>&1 ||
  { cat "$SAN_BUILD/sanitize-cmake.log"; exit 1; }
if ! cmake --build "$SAN_BUILD" -j"$(nproc)" >"$SAN_BUILD/sanitize-build.log" 2>&1; then
  grep -E -A5 "error|Error" "$SAN_BUILD/sanitize-build.log" | head -60
  echo "sanitize: build failed (full log: $SAN_BUILD/sanitize-build.log)"
  exit 1
fi
echo "sanitize: built in $((SECONDS - t0)) s"

logs="$SAN_BUILD/sanitizer-logs"
rm -rf "$logs"
mkdir -p "$logs"
supp="$RBM_ROOT/tools/sanitizer.supp"
export ASAN_OPTIONS="halt_on_error=1:detect_leaks=0:log_path=$logs/asan:verify_asan_link_order=0:suppressions=$supp"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:log_path=$logs/ubsan:suppressions=$supp"
# Open MPI as root and oversubscribed, for these commands only (as tools/setup.sh).
export OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_mpi_yield_when_idle=1
if [ "$(id -u)" -eq 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi

status=0
# Not here: the install/quick-start/multinode script tests (they run programs in clean
# environments without ASAN_OPTIONS, and test scripts, not our memory safety), and the
# LD_PRELOAD fault-injection test (an interposed libc next to the static ASan runtime).
(cd "$SAN_BUILD" && ctest --output-on-failure --timeout 900 -j"$(nproc)" \
   -E '^(eco_|multinode_)|^WriteFailure\.' "$@") || status=$?

# Every report file, and any report that still reached a stderr ctest recorded.
shopt -s nullglob
reports=("$logs"/*)
if ((${#reports[@]})); then
  echo "sanitize: ${#reports[@]} sanitizer report(s) in $logs:"
  for f in "${reports[@]}"; do
    echo "---- $f"
    grep -E "ERROR:|runtime error:|SUMMARY:|#[0-9]+ .*($RBM_ROOT|/src/|/apps/)" "$f" | head -15
  done
  status=1
fi
if grep -E "runtime error:|ERROR: (Address|UndefinedBehavior|Leak)Sanitizer" \
    "$SAN_BUILD/Testing/Temporary/LastTest.log" 2>/dev/null | head -20; then
  echo "sanitize: sanitizer reports in the tests' output ($SAN_BUILD/Testing/Temporary/LastTest.log)"
  status=1
fi
echo "sanitize: $( ((status == 0)) && echo passed || echo FAILED ) in $((SECONDS - t0)) s"
((status == 0)) || exit 1
