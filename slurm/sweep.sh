#!/bin/bash
#
# sweep.sh — a hyper-parameter sweep over any rbm_dist option, as Slurm job dependencies:
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
#   SWEEP_DIR  one OUTDIR per value: SWEEP_DIR/hidden-256, SWEEP_DIR/hidden-500, ... (checkpoint,
#              metrics) and SWEEP_DIR/summary.txt at the end: the runs RANKED by their last
#              validation pseudo-log-likelihood (best first), with their last metrics line
#   options    passed to every training job (not the swept option)
#
# Environment:
#   SWEEP_OPTION=--hidden   the option to sweep (any rbm_dist option: --lr, --cd-k, ...)
#   SWEEP_VALUES="256 500 1000"  its values (HIDDEN="..." is the old spelling for --hidden)
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
option=${SWEEP_OPTION:---hidden}
[[ $option == --* ]] || { echo "$0: SWEEP_OPTION=$option: give an rbm_dist option such as --lr" >&2; exit 2; }
values=${SWEEP_VALUES:-${HIDDEN:-256 500 1000}}
for a in "$@"; do
  [[ $a == "$option" || $a == "$option="* ]] &&
    { echo "$0: $option is the swept option (its values come from SWEEP_VALUES)" >&2; exit 2; }
done

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)   # on the login node $0 is the real file
repo=$(dirname "$here")
# The installed copy (cmake --install) names the installed bin folder here; the
# sbatch scripts installed next to it know it too, so RBM_BIN is not needed then.
rbm_installed_bin=
[[ -n ${RBM_BIN:-} || -n $rbm_installed_bin ]] || export RBM_BIN=$repo/build
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
name=${option#--}
for v in $values; do
  run="$name-$v"
  dirs+=("$sweep_dir/$run")
  id=$(sbatch --parsable --job-name=rbm-sweep "${dep[@]}" "${train_opts[@]}" \
         --output="$sweep_dir/$run-%j.out" \
         "$here/rbm_dist.sbatch" "$data" "$sweep_dir/$run" "$option" "$v" "$@")
  id=${id%%;*}
  ids+=("$id")
  echo "$option $v: job $id -> $sweep_dir/$run"
done

# Once they have all ended (afterany: failed runs are listed too): the runs ranked by
# their last validation pseudo-log-likelihood, best first. The summary step is a small
# script written here (no quoting through --wrap).
cat >"$sweep_dir/summarize.sh" <<'SUMMARY'
#!/bin/bash
# summarize.sh SUMMARY_FILE RUN_DIR... : rank runs by their last pseudo_loglik_valid
out=$1
shift
{
  echo "# rank | pseudo_loglik_valid (last epoch) | run | last metrics line"
  for d in "$@"; do
    line=$(tail -n 1 "$d/metrics.jsonl" 2>/dev/null || echo "no metrics")
    pll=$(sed -n 's/.*"pseudo_loglik_valid": \([-0-9.e+]*\).*/\1/p' <<<"$line")
    echo "${pll:--inf} $d: $line"
  done | sort -g -r -k1,1 | awk '{ print NR, $0 }'
} >"$out"
SUMMARY
summary=$(sbatch --parsable --job-name=rbm-sweep --dependency="afterany:$(IFS=:; echo "${ids[*]}")" \
            --ntasks=1 --time=00:05:00 "${summary_opts[@]}" --output="$sweep_dir/summary-%j.out" \
            --wrap "cd $(printf %q "$PWD") && bash $(printf %q "$sweep_dir/summarize.sh") \
                    $(printf %q "$sweep_dir/summary.txt") $(printf '%q ' "${dirs[@]}")")
summary=${summary%%;*}
echo "summary: job $summary -> $sweep_dir/summary.txt"
