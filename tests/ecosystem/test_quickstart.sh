#!/usr/bin/env bash
# eco_quickstart: tools/quickstart.sh on a small MNIST-format folder (900 training images,
# gzip'd), with the existing build (RBM_NO_SETUP=1), 2 ranks, a small model.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
command -v gnuplot >/dev/null || skip "gnuplot is not installed (Debian: apt-get install gnuplot-nox)"
command -v h5dump >/dev/null || skip "h5dump is not installed (Debian: apt-get install hdf5-tools)"

dir=$tmp/small-mnist
mkdir -p "$dir"
perl "$src/tests/slurm/make_idx.pl" "$dir" 900 100
gzip "$dir"/*-ubyte
out=$tmp/run
RBM_NO_SETUP=1 RBM_BUILD="$build" RBM_OUT="$out" RBM_NP=2 \
  bash "$src/tools/quickstart.sh" "$dir" --hidden 16 --epochs 2 --batch-size 50 --progress never \
  >"$tmp/log" 2>&1 || { cat "$tmp/log" >&2; fail "quickstart.sh exited with an error (log above)"; }
cat "$tmp/log"

# The validation split comes from the data: 900 / 6 = 150 (not the fixed 10000).
grep -q "900 training images, the last 150 for validation" "$tmp/log" || fail "no 150-image validation split announced"
h5=$out/small-mnist.h5
dims() { h5dump -H -d "$1" "$h5" | grep -o 'DATASPACE  SIMPLE { ( [0-9, ]* )' | grep -o '( [0-9, ]* )'; }
[[ $(dims /validation/images) == "( 150, 784 )" ]] || fail "/validation/images is $(dims /validation/images), expected ( 150, 784 )"
[[ $(dims /train/images) == "( 750, 784 )" ]] || fail "/train/images is $(dims /train/images), expected ( 750, 784 )"
ok "validation split 150 of 900"

# The options replaced the defaults; the run trained and wrote its metrics and pictures.
grep -Eq '^\| hidden +\| 16 +\| command line' "$tmp/log" || fail "--hidden 16 did not replace the default"
[[ $(wc -l <"$out/metrics.jsonl") == 2 ]] || fail "metrics.jsonl has $(wc -l <"$out/metrics.jsonl") lines, expected 2 epochs"
[[ -s $out/model.h5 ]] || fail "no model.h5"
for p in filters samples; do ok "$p.png $(png_check "$out/$p.png")"; done
ok "curves.png $(png_check "$out/curves.png" 900 760)"
