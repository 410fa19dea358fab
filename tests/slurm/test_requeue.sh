#!/bin/bash
# tests/slurm/test_requeue.sh BIN_DIR [SOURCE_DIR]
#
# Preemption on a throw-away single-node Slurm cluster (cluster.sh):
#   1. submits slurm/rbm_dist.sbatch with 8 tasks; once two epochs are done, sends the
#      batch shell SIGUSR1 — `scancel --batch --signal=USR1`, exactly what
#      `#SBATCH --signal=B:USR1@120` delivers before the time limit;
#   2. asserts the trainer wrote a checkpoint (mid-run) and exited 75, the script requeued
#      the job (scontrol: Restarts=1), the requeued run resumed from OUTDIR/model.h5 and
#      COMPLETED, and
#   3. its final weights are BITWISE those of the same run uninterrupted (`mpirun -np 8`
#      directly, same options; h5diff and raw bytes);
#   4. a plain `scancel` (SIGTERM) ends the job CANCELLED: the script does not requeue it.
# Slurm holds a requeued job for the credential lifetime (AuthInfo cred_expire, default
# 120 s: EligibleTime = requeue + 121 s); cluster.sh sets cred_expire=5 so the test stays
# quick. (Starting it earlier, e.g. `scontrol update StartTime=now`, fails: "Job credential
# revoked".) Exit 77 (ctest SKIP) when Slurm is not installed.
#
# The layout is a parameter (tests/multinode runs this on two nodes): RBM_TEST_TASKS =
# the job's sbatch options (default "-n 8"), RBM_TEST_REF_MPIRUN = mpirun's options for the
# uninterrupted reference of the SAME layout (default "-np 8"); CLUSTER_NODES (cluster.sh)
# = the number of nodes, all of which the job must use.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
bin_dir=${1:?usage: test_requeue.sh BIN_DIR [SOURCE_DIR]}
src=${2:-$(cd "$here/../.." && pwd)}
# shellcheck source=cluster.sh
source "$here/cluster.sh"
# shellcheck source=checks.sh
source "$here/checks.sh"

cluster_test_setup "$bin_dir"  # cluster up, cd into $CLUSTER_DIR/work, mnist/ written
"$bin_dir/mnist2h5" mnist data.h5 --validation-size 0 >/dev/null || die "mnist2h5 failed"

# ~600 images, batch 10: 60 steps per epoch; 60 epochs take 3-8 s with 8 ranks on 2 cores,
# long enough to interrupt after epoch 2, short enough for the test budget.
H=32 EPOCHS=${RBM_TEST_EPOCHS:-60} STEPS_PER_EPOCH=60
opts=(--hidden "$H" --epochs "$EPOCHS" --batch-size 10 --seed 11 --checkpoint-every 5
      --monitor-size 100)
read -r -a tasks <<<"${RBM_TEST_TASKS:--n 8}"
read -r -a ref_mpirun <<<"${RBM_TEST_REF_MPIRUN:--np 8}"
# The job's first line names its nodes: all of the cluster's (n[1-2] for two).
nodelist=localhost
((CLUSTER_NODES > 1)) && nodelist="n[1-$CLUSTER_NODES]"

# ---- 1. the batch job, interrupted after epoch 2 -------------------------------------------
job=$(sbatch --parsable "${tasks[@]}" -o train.out "$src/slurm/rbm_dist.sbatch" data.h5 run "${opts[@]}") ||
  die "sbatch failed"
log "submitted job $job (${tasks[*]}, launcher ${RBM_LAUNCHER:-mpirun})"
metrics_lines() { [[ -f run/metrics.jsonl ]] && wc -l <run/metrics.jsonl || echo 0; }
two_epochs() { (($(metrics_lines) >= 2)); }
wait_for 60 two_epochs || { cat train.out >&2; die "job $job: no 2 epochs of metrics within 60 s"; }
[[ $(job_field "$job" JobState) == RUNNING ]] || die "job $job is $(job_field "$job" JobState), not RUNNING"
scancel --batch --signal=USR1 "$job" || die "scancel --signal failed"
log "sent SIGUSR1 to the batch shell of job $job after $(metrics_lines) epochs"

# ---- 2. checkpoint written, job requeued ---------------------------------------------------
requeued() { [[ $(job_field "$job" Restarts) == 1 ]]; }
wait_for 60 requeued || { cat train.out >&2; die "job $job was not requeued (Restarts=$(job_field "$job" Restarts))"; }
log "job $job requeued: $(scontrol -o show job "$job" | grep -o 'JobState=[^ ]*\|Reason=[^ ]*\|Restarts=[^ ]*\|EligibleTime=[^ ]*' | tr '\n' ' ')"
grep -qF "rbm_dist.sbatch: job $job restart 0 on $nodelist " train.out ||
  { head -n 3 train.out >&2; die "job $job did not run on $nodelist"; }
grep -q '^rbm_dist.sbatch: got SIGUSR1' train.out || die "the script did not see SIGUSR1"
grep -qE 'checkpoint (.*/)?run/model.h5 written \(stop signal' train.out || { cat train.out >&2; die "no stop-signal checkpoint in the log"; }
grep -q '^rbm_dist.sbatch: rbm_dist exited with 75' train.out || { cat train.out >&2; die "rbm_dist did not exit with 75"; }
grep -q '^rbm_dist.sbatch: checkpoint written; requeueing' train.out || die "the script did not requeue"
stop_step=$(sed -n 's/^stopped by a signal at step \([0-9]*\).*/\1/p' train.out | head -n1)
total=$((EPOCHS * STEPS_PER_EPOCH))
if [[ -z $stop_step ]] || ((stop_step >= total)); then
  die "stopped at step '${stop_step}', not before the end ($total)"
fi
cp run/model.h5 interrupted.h5
check_model interrupted.h5 784 $H
[[ $(h5_attr interrupted.h5 /train/step) == "$stop_step" ]] || die "checkpoint step $(h5_attr interrupted.h5 /train/step) != $stop_step"
log "interrupted at step $stop_step of $total; checkpoint valid"

# ---- the uninterrupted reference, same rank count and options, run while the requeued job
# waits out cred_expire. The timeout only guards against a hang: 100 epochs on two emulated
# nodes take ~10 s on an idle machine but took > 90 s (300 samples/s) while two AIS
# evaluations shared the two cores, so it is 180 s. -----------------------------------------
t0=$SECONDS
env OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1 \
    OMPI_MCA_mpi_yield_when_idle=1 OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 \
  timeout 180 mpirun "${ref_mpirun[@]}" --bind-to none "$bin_dir/rbm_dist" --data data.h5 --checkpoint ref.h5 \
    --progress never "${opts[@]}" >ref.out 2>&1 ||
  { tail -n 20 ref.out >&2; die "reference run failed"; }
log "reference: mpirun ${ref_mpirun[*]}, $EPOCHS epochs in $((SECONDS - t0))s"

read -r st ec < <(wait_job_done "$job" 180)
restarts=$(grep -c '^rbm_dist.sbatch: job .* restart' train.out)
log "job $job: $st exit $ec, $restarts runs in the log"
# On a busy machine the reference run can outlast the job, and slurmctld forgets a finished
# job MinJobAge (5 s) after it ends: then the script's own log is the record of how it ended.
if [[ $st == GONE ]] && grep -q '^rbm_dist.sbatch: rbm_dist exited with 0 ' train.out; then
  st=COMPLETED ec=0:0
  log "job $job already purged by slurmctld; its log shows rbm_dist exited with 0"
fi
[[ $st == COMPLETED && $ec == 0:0 ]] || { cat train.out >&2; die "resumed job: $st $ec"; }
grep -qF "rbm_dist.sbatch: job $job restart 1 on $nodelist " train.out || die "no 'restart 1' run on $nodelist in the log"
grep -q '^rbm_dist.sbatch: resuming from run/model.h5' train.out || die "the requeued run did not resume from run/model.h5"
[[ $(h5_attr run/model.h5 /train/step) == "$total" ]] || die "final checkpoint at step $(h5_attr run/model.h5 /train/step), expected $total"

# ---- 3. bitwise the same as the uninterrupted run -------------------------------------------
check_model run/model.h5 784 $H
same_model run/model.h5 ref.h5
log "checkpoint at step $stop_step, requeued (Restarts=1), resumed to step $total, weights bitwise equal"

# ---- 4. a plain scancel stays a cancel: the job ends CANCELLED and is not requeued ------------
job2=$(sbatch --parsable "${tasks[@]}" -o cancel.out "$src/slurm/rbm_dist.sbatch" data.h5 run2 "${opts[@]}") ||
  die "sbatch failed"
started() { [[ -f run2/metrics.jsonl ]] && (($(wc -l <run2/metrics.jsonl) >= 1)); }
wait_for 60 started || { cat cancel.out >&2; die "job $job2: no epoch within 60 s"; }
scancel "$job2" || die "scancel failed"
read -r st ec < <(wait_job_done "$job2" 60)
log "scancel'ed job $job2: $st exit $ec, Restarts=$(job_field "$job2" Restarts)"
[[ $st == CANCELLED ]] || { cat cancel.out >&2; die "cancelled job $job2 ended $st (requeued?)"; }
if grep -q '^rbm_dist.sbatch: checkpoint written; requeueing' cancel.out; then
  cat cancel.out >&2; die "the script requeued a cancelled job"
fi
log "PASS: preemption signal -> checkpoint, requeue, bitwise resume; scancel -> CANCELLED (${SECONDS}s)"
