# tests/slurm/checks.sh — assertions on rbm_dist outputs, shared by the slurm tests.
# Needs log/die from cluster.sh.

need_binaries() {
  local d=$1 b
  for b in rbm_dist mnist2h5; do
    [[ -x $d/$b ]] || die "$d/$b not found: build the targets rbm_dist and mnist2h5 first"
  done
}

# h5_attr FILE OBJ/ATTR: the value of a scalar attribute, as h5dump prints it.
h5_attr() {
  h5dump -a "$2" "$1" 2>/dev/null | sed -n 's/^ *(0): *//p' | head -n1 | tr -d '"'
}

# h5_dims FILE DATASET: "784, 32" for a [784, 32] dataset.
h5_dims() {
  h5dump -H -d "$2" "$1" 2>/dev/null | sed -n 's/.*DATASPACE *SIMPLE { ( \([^)]*\) ).*/\1/p' | head -n1
}

h5_type() {
  h5dump -H -d "$2" "$1" 2>/dev/null | sed -n 's/.*DATATYPE *\(H5T_[A-Z0-9_]*\).*/\1/p' | head -n1
}

# check_model FILE V H: the checkpoint is a valid model as every tool reads it.
check_model() {
  local f=$1 V=$2 H=$3
  [[ -s $f ]] || die "$f: missing"
  [[ $(h5_attr "$f" /format) == rbm-checkpoint ]] || die "$f: root attribute format is '$(h5_attr "$f" /format)'"
  [[ $(h5_attr "$f" /format_version) == 1 ]] || die "$f: format_version is '$(h5_attr "$f" /format_version)'"
  [[ $(h5_dims "$f" /model/weights) == "$V, $H" ]] || die "$f: /model/weights is [$(h5_dims "$f" /model/weights)], expected [$V, $H]"
  [[ $(h5_type "$f" /model/weights) == H5T_IEEE_F32LE ]] || die "$f: /model/weights is $(h5_type "$f" /model/weights), not float32"
  [[ $(h5_dims "$f" /model/visible_bias) == "$V" ]] || die "$f: /model/visible_bias is not [$V]"
  [[ $(h5_dims "$f" /model/hidden_bias) == "$H" ]] || die "$f: /model/hidden_bias is not [$H]"
  if h5dump -d /model/weights "$f" | grep -qi 'nan\|inf'; then die "$f: weights not finite"; fi
  log "$f: valid model, /model/weights float32 [$V, $H], format=rbm-checkpoint v1"
}

# same_model A B: bitwise the same /model datasets.
same_model() {
  local a=$1 b=$2 d
  for d in weights visible_bias hidden_bias; do
    h5diff "$a" "$b" "/model/$d" "/model/$d" >/dev/null ||
      die "/model/$d differs between $a and $b: $(h5diff -r "$a" "$b" "/model/$d" "/model/$d" | head -n 5)"
    h5dump -b LE -d "/model/$d" -o "$a.$d.bin" "$a" >/dev/null || die "h5dump -b $a failed"
    h5dump -b LE -d "/model/$d" -o "$b.$d.bin" "$b" >/dev/null || die "h5dump -b $b failed"
    cmp -s "$a.$d.bin" "$b.$d.bin" || die "/model/$d: raw bytes differ between $a and $b"
  done
  log "bitwise identical /model/{weights,visible_bias,hidden_bias}: $a == $b"
}

# cluster_test_setup BIN_DIR: what every Slurm test starts with — skip (77) without
# Slurm, check the programs, start the throw-away cluster, enter $CLUSTER_DIR/work
# and write 600 + 100 synthetic MNIST-format images to mnist/; RBM_BIN for the scripts.
cluster_test_setup() {
  local bin_dir=$1 here
  here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
  cluster_require
  need_binaries "$bin_dir"
  cluster_start
  work=$CLUSTER_DIR/work
  mkdir -p "$work/mnist" || die "cannot create $work"
  cd "$work" || die "cannot enter $work"
  perl "$here/make_idx.pl" mnist 600 100 || die "make_idx.pl failed"
  export RBM_BIN=$bin_dir
}
