#!/usr/bin/env bash
# eco_install: `cmake --install BUILD --prefix P` into a temporary prefix, then use it as a
# cluster user would, in a clean environment: `module use P/share/modulefiles;
# module load rbm_dist` (Debian's Lmod), man pages, the programs, the Slurm scripts.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
: "${PROJECT_VERSION:?}"

lmod_init=""
for f in /usr/share/lmod/lmod/init/bash /usr/share/lmod/*/init/bash; do
  [[ -r $f ]] && { lmod_init=$f; break; }
done
[[ -n $lmod_init ]] || skip "Lmod is not installed (Debian: apt-get install lmod; tools/test.sh installs it)"

prefix=$tmp/prefix
cmake --install "$build" --prefix "$prefix" >"$tmp/install.log" 2>&1 ||
  fail "cmake --install failed: $(tail -n 5 "$tmp/install.log")"
ok "cmake --install $build --prefix $prefix"

# ---- the files ---------------------------------------------------------------------
progs=(rbm_dist rbm_eval mnist2h5 rbm_bench)
for p in "${progs[@]}"; do
  [[ -x $prefix/bin/$p ]] || fail "bin/$p not installed"
  page=$prefix/share/man/man1/$p.1
  [[ -s $page ]] || fail "share/man/man1/$p.1 not installed (help2man missing at configure time?)"
  grep -q '^\.TH ' "$page" || fail "$page: not a man page (no .TH)"
  grep -q -- 'version' "$page" || fail "$page: does not document --version"
done
for s in rbm_dist.sbatch convert.sbatch sweep.sh; do
  [[ -x $prefix/share/rbm_dist/slurm/$s ]] || fail "share/rbm_dist/slurm/$s not installed (or not executable)"
  grep -Fxq "rbm_installed_bin='$prefix/bin'   # written by cmake --install" "$prefix/share/rbm_dist/slurm/$s" ||
    fail "share/rbm_dist/slurm/$s does not name the installed bin folder"
done
modfile=$prefix/share/modulefiles/rbm_dist/$PROJECT_VERSION
[[ -s $modfile ]] || fail "modulefile share/modulefiles/rbm_dist/$PROJECT_VERSION not installed"
head -n 1 "$modfile" | grep -q '^#%Module' || fail "$modfile: no #%Module header (Environment Modules needs it)"
ok "files: bin/, share/man/man1/*.1, share/rbm_dist/slurm/, $(basename "$modfile") modulefile"

# The rest runs in a clean login-like environment: only the system PATH, no build folder.
mkdir -p "$tmp/work"
cp "$src/tests/slurm/make_idx.pl" "$tmp/work/"
cat >"$tmp/user.sh" <<USER
set -euo pipefail
cd "$tmp/work"
source "$lmod_init"
command -v rbm_dist >/dev/null && { echo "rbm_dist on PATH before module load"; exit 1; }
module use "$prefix/share/modulefiles"
module load rbm_dist
module list 2>&1 | grep -q "rbm_dist/$PROJECT_VERSION" || { echo "module list does not show rbm_dist/$PROJECT_VERSION"; exit 1; }
for p in ${progs[*]}; do
  [[ \$(command -v \$p) == "$prefix/bin/\$p" ]] || { echo "\$p resolves to '\$(command -v \$p)', not $prefix/bin/\$p"; exit 1; }
  first=\$(\$p --version | head -n 1)
  [[ \$first == "\$p $PROJECT_VERSION" ]] || { echo "\$p --version: '\$first'"; exit 1; }
done
echo "programs: on PATH from the module, --version ok"
if command -v man >/dev/null; then
  for p in ${progs[*]}; do
    [[ \$(man -w \$p) == "$prefix/share/man/man1/\$p.1" ]] || { echo "man -w \$p: '\$(man -w \$p 2>&1)'"; exit 1; }
  done
  man -w ls >/dev/null 2>&1 || [[ ! -e /usr/share/man/man1/ls.1.gz ]] || { echo "system man pages hidden by the module's MANPATH"; exit 1; }
  echo "man -w finds the pages (MANPATH=\$MANPATH)"
fi
[[ \$RBM_DIST_SLURM == "$prefix/share/rbm_dist/slurm" ]] || { echo "RBM_DIST_SLURM='\$RBM_DIST_SLURM'"; exit 1; }

# A tiny MNIST-format set -> HDF5 -> one epoch, all with the installed programs.
mkdir idx
perl make_idx.pl idx 120 40
mnist2h5 idx tiny.h5 --validation-size 20 | tail -n 1
rbm_dist --data tiny.h5 --hidden 8 --epochs 1 --batch-size 20 --checkpoint model.h5 --progress never | tail -n 1
rbm_eval pseudo model.h5 tiny.h5 --json | tail -n 1 | grep -q '"pseudo_loglik"' || { echo "rbm_eval pseudo: no JSON result"; exit 1; }
echo "mnist2h5, rbm_dist, rbm_eval: a tiny set converted, trained, evaluated"

# The installed Slurm scripts find the installed programs without RBM_BIN (run outside
# Slurm here: they then run the program directly), from a folder without build/.
module unload rbm_dist
command -v mnist2h5 >/dev/null && { echo "mnist2h5 still on PATH after module unload"; exit 1; }
unset RBM_BIN
bash "$prefix/share/rbm_dist/slurm/convert.sbatch" idx via-slurm-script.h5 --validation-size 20 >convert.log 2>&1 ||
  { echo "installed convert.sbatch failed: \$(tail -n 3 convert.log)"; exit 1; }
grep -q ": $prefix/bin/mnist2h5 " convert.log || { echo "convert.sbatch did not run $prefix/bin/mnist2h5: \$(head -n 1 convert.log)"; exit 1; }
bash "$prefix/share/rbm_dist/slurm/rbm_dist.sbatch" tiny.h5 run --hidden 8 --epochs 1 --batch-size 20 >train.log 2>&1 ||
  { echo "installed rbm_dist.sbatch failed: \$(tail -n 3 train.log)"; exit 1; }
grep -q " $prefix/bin/rbm_dist " train.log || { echo "rbm_dist.sbatch did not run $prefix/bin/rbm_dist"; exit 1; }
[[ -s run/model.h5 ]] || { echo "rbm_dist.sbatch wrote no run/model.h5"; exit 1; }
echo "installed Slurm scripts run the installed programs without RBM_BIN"
USER
env -i HOME="$tmp" PATH=/usr/local/bin:/usr/bin:/bin TMPDIR="$tmp" \
  OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1 \
  OMPI_MCA_mpi_yield_when_idle=1 OPENBLAS_NUM_THREADS=1 LMOD_ALLOW_ROOT_USE=yes \
  bash "$tmp/user.sh" >"$tmp/user.log" 2>&1 || { cat "$tmp/user.log" >&2; fail "as a module user (log above)"; }
cat "$tmp/user.log"
ok "installed rbm_dist works through module load"
