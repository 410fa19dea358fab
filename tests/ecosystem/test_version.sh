#!/usr/bin/env bash
# eco_version: `--version` of every program (and of an rbm_eval subcommand).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
: "${PROJECT_VERSION:?}" "${RBM_ARCH_DESCRIPTION:?}"

check_version() {   # check_version NAME OUTPUT_FILE
  local name=$1 f=$2
  local first
  first=$(head -n 1 "$f")
  [[ $first == "$name $PROJECT_VERSION" ]] || fail "$name --version: first line '$first', expected '$name $PROJECT_VERSION'"
  grep -Eq '^GEMM: .*(OpenBLAS|BLAS|oneDNN|Eigen).*kernel' "$f" || fail "$name --version: no GEMM backend/kernel line: $(cat "$f")"
  grep -Eq '^MPI: .+\(MPI [0-9]+\.[0-9]+\)$' "$f" || fail "$name --version: no MPI library line: $(cat "$f")"
  grep -Eq '^HDF5: [0-9]+\.[0-9]+\.[0-9]+ ' "$f" || fail "$name --version: no HDF5 version line: $(cat "$f")"
  grep -Fxq "target architecture: $RBM_ARCH_DESCRIPTION" "$f" ||
    fail "$name --version: target architecture is not the configured '$RBM_ARCH_DESCRIPTION': $(grep target "$f" || true)"
}

for p in rbm_dist rbm_eval mnist2h5 rbm_bench; do
  [[ -x $build/$p ]] || fail "$build/$p not built"
  "$build/$p" --version >"$tmp/$p.out" 2>"$tmp/$p.err" || fail "$p --version exited with $?: $(cat "$tmp/$p.err")"
  check_version "$p" "$tmp/$p.out"
  ok "$p --version: $(head -n 1 "$tmp/$p.out")"
done

# The MPI library line names the library the program runs with: the same as mpirun's.
mpi_line=$(grep '^MPI: ' "$tmp/rbm_dist.out")
if command -v ompi_info >/dev/null 2>&1; then
  v=$(ompi_info --version 2>/dev/null | grep -Eo 'v[0-9]+\.[0-9]+\.[0-9]+' | head -n 1)
  [[ -z $v || $mpi_line == *"$v"* ]] || fail "MPI line '$mpi_line' does not name Open MPI $v (ompi_info)"
fi
ok "$mpi_line"

# A subcommand's --version is the program's.
"$build/rbm_eval" loglik --version >"$tmp/sub.out" || fail "rbm_eval loglik --version exited with $?"
check_version rbm_eval "$tmp/sub.out"
ok "rbm_eval loglik --version"

# Under MPI only rank 0 speaks.
mpirun -np 2 "$build/rbm_dist" --version >"$tmp/np2.out" 2>"$tmp/np2.err" ||
  fail "mpirun -np 2 rbm_dist --version exited with $?: $(cat "$tmp/np2.err")"
n=$(grep -c "^rbm_dist $PROJECT_VERSION\$" "$tmp/np2.out" || true)
[[ $n == 1 ]] || fail "mpirun -np 2 rbm_dist --version printed the version $n times"
ok "mpirun -np 2 rbm_dist --version: printed once"

# --version is listed by --help (so the man pages show it).
"$build/mnist2h5" --help | grep -q -- '--version' || fail "mnist2h5 --help does not list --version"
ok "--help lists --version"
