#!/usr/bin/env bash
# tools/quickstart.sh — the main job on a fresh Debian 12 machine:
# install the missing packages, build, convert a dataset to HDF5, train on 8 MPI ranks.
#
#   bash tools/quickstart.sh [MNIST_DIR] [rbm_dist options...]
#
# MNIST_DIR holds the four MNIST IDX files (raw or .gz); without it the embedded
# Fashion-MNIST from Debian's dataset-fashion-mnist package is used. Outputs go
# to ./runs/quickstart/ (dataset, model.h5, metrics.jsonl).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
rbm_mpi_env

src=/usr/share/datasets/fashion-mnist
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then src="$1"; shift; fi
out="${RBM_OUT:-$RBM_ROOT/runs/quickstart}"
np="${RBM_NP:-8}"
mkdir -p "$out"
data="$out/$(basename "$src").h5"

echo "== converting $src -> $data"
"$RBM_BUILD/mnist2h5" "$src" "$data" --validation-size 10000 --force

echo "== training: mpirun -np $np rbm_dist"
mpirun -np "$np" "$RBM_BUILD/rbm_dist" --data "$data" --hidden 500 --epochs 10 \
  --checkpoint "$out/model.h5" --metrics "$out/metrics.jsonl" "$@"

if [ -x "$RBM_BUILD/rbm_eval" ]; then
  echo "== pictures of what the model learned"
  "$RBM_BUILD/rbm_eval" filters "$out/model.h5" --out "$out/filters.png"
  "$RBM_BUILD/rbm_eval" samples "$out/model.h5" --out "$out/samples.png"
fi
echo "== done: model $out/model.h5, metrics $out/metrics.jsonl"
