#!/usr/bin/env bash
# tools/test.sh — the whole test suite: install what is missing (the build and run
# packages and those only the tests use: Slurm, munge, Lmod), build, run ctest.
#   bash tools/test.sh [extra ctest arguments, e.g. -L mpi or -E slurm]
# With CI=true (as .ci/run sets) or RBM_SANITIZE_TESTS=1 it then runs the unit and MPI
# tests again under AddressSanitizer + UndefinedBehaviorSanitizer (tools/sanitize.sh).
set -euo pipefail
RBM_WITH_TEST_PACKAGES=1
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
rbm_mpi_env
(cd "$RBM_BUILD" && ctest --output-on-failure --timeout 600 "$@")
if [ "${CI:-}" = "true" ] || [ "${RBM_SANITIZE_TESTS:-0}" = "1" ]; then
  bash "$RBM_ROOT/tools/sanitize.sh"
fi
