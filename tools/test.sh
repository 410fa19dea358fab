#!/usr/bin/env bash
# tools/test.sh — the whole test suite: install what is missing (the build and run
# packages and those only the tests use: Slurm, munge, Lmod), build, run ctest.
#   bash tools/test.sh [extra ctest arguments, e.g. -L mpi or -E slurm]
set -euo pipefail
RBM_WITH_TEST_PACKAGES=1
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
rbm_mpi_env
cd "$RBM_BUILD"
ctest --output-on-failure --timeout 600 "$@"
