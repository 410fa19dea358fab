#!/usr/bin/env bash
# tools/setup.sh — sourced by tools/quickstart.sh and tools/test.sh (and so by CI).
# Installs the Debian 12 packages that are missing (quietly, only what is missing),
# then configures and builds rbm_dist in ./build (Release). Idempotent.
#
# RBM_PACKAGES are what building and running need (the quick start installs only
# these); RBM_TEST_PACKAGES are for the tests only — the Slurm daemons and munge for the
# `slurm` tests, Lmod for the `install` test — and come in when RBM_WITH_TEST_PACKAGES=1
# (tools/test.sh). RBM_NO_SETUP=1: install and build nothing (use the existing build).
set -euo pipefail

RBM_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RBM_BUILD="${RBM_BUILD:-$RBM_ROOT/build}"

RBM_PACKAGES=(
  build-essential cmake pkg-config git procps perl
  openmpi-bin libopenmpi-dev
  libeigen3-dev libopenblas-dev libdnnl-dev
  libhdf5-dev hdf5-tools
  libboost-program-options-dev
  libgtest-dev googletest
  zlib1g-dev librandom123-dev libpng-dev liblbfgspp-dev
  help2man gnuplot-nox
  dataset-fashion-mnist
)
RBM_TEST_PACKAGES=(
  slurmctld slurmd slurm-client munge
  lmod man-db
)

rbm_install_packages() {
  local missing=() wanted=("${RBM_PACKAGES[@]}")
  [ "${RBM_WITH_TEST_PACKAGES:-0}" != 1 ] || wanted+=("${RBM_TEST_PACKAGES[@]}")
  for p in "${wanted[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if ((${#missing[@]})); then
    echo "setup: installing ${#missing[@]} Debian packages: ${missing[*]}"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

rbm_build() {
  echo "setup: building in $RBM_BUILD"
  mkdir -p "$RBM_BUILD"
  cmake -S "$RBM_ROOT" -B "$RBM_BUILD" -DCMAKE_BUILD_TYPE=Release >"$RBM_BUILD/setup-cmake.log" 2>&1 ||
    { cat "$RBM_BUILD/setup-cmake.log"; return 1; }
  if ! cmake --build "$RBM_BUILD" -j"$(nproc)" >"$RBM_BUILD/setup-build.log" 2>&1; then
    grep -E -A5 "error|Error" "$RBM_BUILD/setup-build.log" | head -60
    echo "setup: build failed (full log: $RBM_BUILD/setup-build.log)"
    return 1
  fi
  grep -E "warning:" "$RBM_BUILD/setup-build.log" || true
}

# Open MPI as root, and more ranks than cores: for our commands only, never global.
rbm_mpi_env() {
  export OMPI_MCA_rmaps_base_oversubscribe=1
  export OMPI_MCA_mpi_yield_when_idle=1
  if [ "$(id -u)" -eq 0 ]; then
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
  fi
}

if [ "${RBM_NO_SETUP:-0}" = 1 ]; then
  [ -x "$RBM_BUILD/rbm_dist" ] || { echo "setup: RBM_NO_SETUP=1 but $RBM_BUILD has no build" >&2; return 1 2>/dev/null || exit 1; }
else
  mkdir -p "$(dirname "$RBM_BUILD")"
  rbm_install_packages
  rbm_build
fi
