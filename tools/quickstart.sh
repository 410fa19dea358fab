#!/usr/bin/env bash
# tools/quickstart.sh — the main job on a fresh Debian 12 machine:
# install the missing packages, build, convert a dataset to HDF5, train on 8 MPI ranks,
# draw what the model learned and its learning curves.
#
#   bash tools/quickstart.sh [MNIST_DIR] [rbm_dist options...]
#
# MNIST_DIR holds MNIST-format IDX files (train-images-idx3-ubyte, train-labels-idx1-ubyte,
# t10k-*, raw or .gz) of any size; without it the embedded Fashion-MNIST from Debian's
# dataset-fashion-mnist package is used. The last sixth of the training images (at most
# 10,000, as MNIST's usual 50,000/10,000 split) becomes the validation set that the
# free-energy monitor uses. Options go to rbm_dist and replace the defaults
# (--hidden 500 --epochs 10). Outputs go to ./runs/quickstart/ (dataset, model.h5,
# metrics.jsonl, filters.png, samples.png, curves.png).
#
# Environment: RBM_OUT (output folder), RBM_NP (MPI ranks, default 8),
# RBM_VALIDATION_SIZE (instead of the sixth), RBM_NO_SETUP=1 (use the existing build:
# no package installation, no build; the tests use it).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
rbm_mpi_env

src=/usr/share/datasets/fashion-mnist
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then src="$1"; shift; fi
out="${RBM_OUT:-$RBM_ROOT/runs/quickstart}"
np="${RBM_NP:-8}"
[ -d "$src" ] || { echo "quickstart.sh: $src: no such folder (give a folder of MNIST-format IDX files)" >&2; exit 2; }
mkdir -p "$out"
data="$out/$(basename "$src").h5"

# Validation split from the data: a sixth of the training images, at most 10,000.
train_images() {   # number of images in DIR's train-images IDX3 file (raw or gzip), or nothing
  local f
  for f in "$1"/train-images-idx3-ubyte{,.gz} "$1"/train-images.idx3-ubyte{,.gz}; do
    [ -r "$f" ] || continue
    perl -MIO::Uncompress::Gunzip=gunzip -e '
      my $z = IO::Uncompress::Gunzip->new($ARGV[0], Transparent => 1) or exit 1;
      $z->read(my $h, 8) == 8 or exit 1;
      my ($magic, $n) = unpack("N2", $h);
      exit 1 unless $magic == 0x803;
      print "$n\n";' "$f" && return 0
    return 0   # not an IDX3 file: mnist2h5 says what is wrong with it
  done
}
n_train=$(train_images "$src")
if [ -n "${RBM_VALIDATION_SIZE:-}" ]; then
  validation=$RBM_VALIDATION_SIZE
elif [ -n "$n_train" ]; then
  validation=$((n_train / 6))
  ((validation <= 10000)) || validation=10000
else
  validation=0   # no readable training file: mnist2h5 names the problem
fi

echo "== converting $src -> $data (${n_train:-?} training images, the last $validation for validation)"
"$RBM_BUILD/mnist2h5" "$src" "$data" --validation-size "$validation" --force

# The defaults, unless the options given replace them (an option may appear only once).
defaults=()
has_opt() { local a; for a in "${@:2}"; do [ "$a" = "$1" ] || [ "${a%%=*}" = "$1" ] && return 0; done; return 1; }
has_opt --hidden "$@" || defaults+=(--hidden 500)
has_opt --epochs "$@" || defaults+=(--epochs 10)
# --force: the quick start replaces its own previous run in $out (rbm_dist never
# replaces an existing checkpoint or metrics file without it).
has_opt --force "$@" || defaults+=(--force)

echo "== training: mpirun -np $np rbm_dist"
mpirun -np "$np" "$RBM_BUILD/rbm_dist" --data "$data" "${defaults[@]}" \
  --checkpoint "$out/model.h5" --metrics "$out/metrics.jsonl" "$@"

echo "== pictures of what the model learned"
if [ -x "$RBM_BUILD/rbm_eval" ]; then
  "$RBM_BUILD/rbm_eval" filters "$out/model.h5" --data "$data" --out "$out/filters.png"
  "$RBM_BUILD/rbm_eval" samples "$out/model.h5" --data "$data" --out "$out/samples.png"
fi
bash "$RBM_ROOT/tools/plot_metrics.sh" "$out/metrics.jsonl" "$out/curves.png" \
  "rbm_dist on $(basename "$src"): learning curves"
echo "== done: model $out/model.h5, metrics $out/metrics.jsonl, pictures $out/{filters,samples,curves}.png"
