#!/bin/bash
#
# sweep.sh — a hyper-parameter sweep over the hidden-layer size, as Slurm job dependencies:
#
#   convert (once) ──afterok──> rbm_dist h256 ─┐
#                  ──afterok──> rbm_dist h500 ─┼─afterany──> summary
#                  ──afterok──> rbm_dist h1000 ┘
#
# Run it on the login node from the repository root (it only submits jobs and returns):
#
#   slurm/sweep.sh MNIST_DIR DATA.h5 SWEEP_DIR [rbm_dist options...]
#   slurm/sweep.sh data/mnist data/mnist.h5 runs/sweep --epochs 20 --batch-size 100
#
#   MNIST_DIR  IDX files; converted to DATA.h5 by slurm/convert.sbatch unless DATA.h5 exists
#   SWEEP_DIR  one OUTDIR per value: SWEEP_DIR/h256, SWEEP_DIR/h500, ... (checkpoint, metrics)
#              and SWEEP_DIR/summary.txt (last metrics line of every run) at the end
#   options    passed to every training job (not --hidden: that is the swept value)
#
# Environment:
#   HIDDEN="256 500 1000"   the values to sweep
#   SBATCH_OPTS="..."       extra sbatch options for the training jobs (e.g. "-n 16 --time=2:00:00
#                           -p gpu -A myproject"); SUMMARY_OPTS / CONVERT_OPTS for the others
#   RBM_BIN, RBM_LAUNCHER   as for rbm_dist.sbatch (RBM_BIN defaults to <repo>/build here,
#                           and to the installed bin/ in the copy `cmake --install` wrote)
#
# Every training job is an ordinary rbm_dist.sbatch job: it checkpoints before its time limit,
# requeues itself and resumes, so `afterok` waits for the run's real end. Watch it with
#   squeue -u $USER -o '%.10i %.12j %.9T %.10M %.6D %R'
# and cancel the whole sweep with `scancel --name=rbm-sweep` (or the job ids it prints).
#
# The same sweep as a job array (one submission, task i takes the i-th value) would be
#   sbatch --array=0-2 --wrap '...'   — but --wrap cannot carry this script's #SBATCH
# defaults and signal trap, so per-value jobs with dependencies are used here.

set -euo pipefail
usage() { echo "usage: $0 MNIST_DIR DATA.h5 SWEEP_DIR [rbm_dist options...]" >&2; exit 2; }
(($# >= 3)) || usage
mnist_dir=$1 data=$2 sweep_dir=$3
shift 3
for a in "$@"; do
  [[ $a == --hidden || $a == --hidden=* ]] && { echo "$0: --hidden is the swept value (set HIDDEN=\"...\")" >&2; exit 2; }
done

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)   # on the login node $0 is the real file
repo=$(dirname "$here")
# The installed copy (cmake --install) names the installed bin folder here; the
# sbatch scripts installed next to it know it too, so RBM_BIN is not needed then.
rbm_installed_bin=
[[ -n ${RBM_BIN:-} || -n $rbm_installed_bin ]] || export RBM_BIN=$repo/build
hidden=${HIDDEN:-256 500 1000}
mkdir -p "$sweep_dir"
read -r -a train_opts <<<"${SBATCH_OPTS:-}"
read -r -a convert_opts <<<"${CONVERT_OPTS:-}"
read -r -a summary_opts <<<"${SUMMARY_OPTS:-}"

dep=()
if [[ -e $data ]]; then
  echo "dataset $data exists: no conversion job"
else
  conv=$(sbatch --parsable --job-name=rbm-sweep "${convert_opts[@]}" \
           --output="$sweep_dir/convert-%j.out" "$here/convert.sbatch" "$mnist_dir" "$data")
  conv=${conv%%;*}
  echo "convert: job $conv ($mnist_dir -> $data)"
  dep=(--dependency="afterok:$conv")
fi

ids=() dirs=()
for h in $hidden; do
  dirs+=("$sweep_dir/h$h")
  id=$(sbatch --parsable --job-name=rbm-sweep "${dep[@]}" "${train_opts[@]}" \
         --output="$sweep_dir/h$h-%j.out" \
         "$here/rbm_dist.sbatch" "$data" "$sweep_dir/h$h" --hidden "$h" "$@")
  id=${id%%;*}
  ids+=("$id")
  echo "hidden $h: job $id -> $sweep_dir/h$h"
done

# One line per run once they have all ended (afterany: also summarise failed runs).
summary=$(sbatch --parsable --job-name=rbm-sweep --dependency="afterany:$(IFS=:; echo "${ids[*]}")" \
            --ntasks=1 --time=00:05:00 "${summary_opts[@]}" --output="$sweep_dir/summary-%j.out" \
            --wrap "cd $(printf %q "$PWD") && for d in $(printf '%q ' "${dirs[@]}"); do \
                      echo \"\$d: \$(tail -n 1 \$d/metrics.jsonl 2>/dev/null || echo 'no metrics')\"; \
                    done > $(printf %q "$sweep_dir/summary.txt")")
summary=${summary%%;*}
echo "summary: job $summary -> $sweep_dir/summary.txt"
