#!/bin/bash
# tests/slurm/test_submit.sh BIN_DIR [SOURCE_DIR]
#
# On a throw-away single-node Slurm cluster (cluster.sh): converts a small synthetic
# MNIST-style dataset with slurm/convert.sbatch, submits slurm/rbm_dist.sbatch with 8 tasks
# chained to it (--dependency=afterok), waits (bounded), and asserts:
#   - both jobs COMPLETED with exit code 0 (scontrol show job; no accounting needed),
#   - rank 0's start-up line reports 8 ranks,
#   - OUTDIR/model.h5 is a valid model: /model/weights float32 [784, H], the biases,
#     root attributes format="rbm-checkpoint", format_version=1; metrics has one line per epoch.
# Exit 77 (ctest SKIP) when Slurm is not installed.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
bin_dir=${1:?usage: test_submit.sh BIN_DIR [SOURCE_DIR]}
src=${2:-$(cd "$here/../.." && pwd)}
# shellcheck source=cluster.sh
source "$here/cluster.sh"
# shellcheck source=checks.sh
source "$here/checks.sh"

cluster_test_setup "$bin_dir"  # cluster up, cd into $CLUSTER_DIR/work, mnist/ written
H=32 EPOCHS=3

conv=$(sbatch --parsable -o convert.out "$src/slurm/convert.sbatch" mnist data/data.h5) ||
  die "sbatch convert.sbatch failed"
train=$(sbatch --parsable -n 8 --dependency="afterok:$conv" -o train.out \
          "$src/slurm/rbm_dist.sbatch" data/data.h5 run \
          --hidden $H --epochs $EPOCHS --batch-size 50 --seed 7 --monitor-size 100) ||
  die "sbatch rbm_dist.sbatch failed"
log "submitted: convert job $conv, training job $train (afterok:$conv, 8 tasks)"

read -r st ec < <(wait_job_done "$conv" 60)
log "convert job $conv: $st exit $ec"
[[ $st == COMPLETED && $ec == 0:0 ]] || { cat convert.out >&2; die "convert job: $st $ec"; }
grep -q "wrote data/data.h5" convert.out || { cat convert.out >&2; die "convert.out has no 'wrote data/data.h5'"; }

read -r st ec < <(wait_job_done "$train" 90)
log "training job $train: $st exit $ec"
[[ $st == COMPLETED && $ec == 0:0 ]] || { cat train.out >&2; die "training job: $st $ec"; }

# The trainer's own start-up line (not the batch script's lines) reports 8 ranks.
grep -v '^rbm_dist.sbatch:' train.out | grep -q '\b8 ranks\b' ||
  { cat train.out >&2; die "the log does not show '8 ranks' from rbm_dist"; }
grep -q '^rbm_dist.sbatch: fresh run' train.out || die "the script did not report a fresh run"

check_model run/model.h5 784 $H
n=$(wc -l <run/metrics.jsonl)
((n == EPOCHS)) || die "run/metrics.jsonl has $n lines, expected $EPOCHS"
grep -q '"epoch": 3' run/metrics.jsonl || die "metrics: no epoch 3"
log "job $train completed, 8 ranks, model.h5 [784, $H] valid, $n metrics lines"

# ---- resubmitting the same command continues the run (--epochs is the total) --------------
more=$(sbatch --parsable -n 8 -o more.out "$src/slurm/rbm_dist.sbatch" data/data.h5 run \
         --hidden $H --epochs 5 --batch-size 50 --seed 7 --monitor-size 100) || die "sbatch failed"
read -r st ec < <(wait_job_done "$more" 90)
log "resubmitted job $more (--epochs 5): $st exit $ec"
[[ $st == COMPLETED && $ec == 0:0 ]] || { cat more.out >&2; die "resubmitted job: $st $ec"; }
grep -q '^rbm_dist.sbatch: resuming from run/model.h5' more.out || { cat more.out >&2; die "the resubmitted job did not resume"; }
n=$(wc -l <run/metrics.jsonl)
((n == 5)) || die "run/metrics.jsonl has $n lines after resuming to 5 epochs"
[[ $(h5_attr run/model.h5 /train/epoch) == 5 ]] || die "resumed checkpoint at epoch $(h5_attr run/model.h5 /train/epoch), expected 5"
check_model run/model.h5 784 $H
log "PASS: submit, 8 ranks, valid model, resubmission resumed to epoch 5 (${SECONDS}s)"
