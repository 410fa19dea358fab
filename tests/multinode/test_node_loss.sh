#!/bin/bash
# tests/multinode/test_node_loss.sh BIN_DIR
#
# Losing a node: a 2x2 rbm_dist job (`mpirun --mca plm_rsh_agent uts_agent.sh --host
# nA:2,nB:2`) is training; the test SIGKILLs every rank on node nB (the rbm_dist processes
# below our mpirun whose hostname is nB) and asserts that
#   - mpirun exits non-zero within 10 s of the kill,
#   - its output has exactly one line naming the lost node (Open MPI's
#     "mpirun noticed that process rank R with PID P on node nB exited on signal 9 (Killed).")
#     and none naming nA as the failed node,
#   - no process of the job is left (rbm_dist ranks on nA, orted daemons).
# Nothing in rbm_dist is needed for this: the orted on nB sees its children die and
# mpirun tears the job down (the ranks on nA also print Open MPI's "peer ... disconnected"
# block naming "Peer host: nB"). Exit 77 (ctest SKIP) when not root.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
bin_dir=${1:?usage: test_node_loss.sh BIN_DIR}
# shellcheck source=../slurm/cluster.sh
source "$here/../slurm/cluster.sh"
# shellcheck source=../slurm/checks.sh
source "$here/../slurm/checks.sh"
# shellcheck source=multinode.sh
source "$here/multinode.sh"
LIMIT_S=10

mn_begin "$bin_dir"

# Long enough never to finish on its own during the test (~30 epochs/s here).
"${MN_MPIRUN_2X2[@]}" "$bin_dir/rbm_dist" --progress never --data data.h5 --hidden 32 \
  --epochs 100000 --batch-size 20 --seed 5 --monitor-size 100 --checkpoint-every 1000 \
  --checkpoint model.h5 --metrics metrics.jsonl >job.out 2>&1 &
mp=$!
MN_PIDS+=("$mp")
trained() { [[ -s metrics.jsonl ]]; }
wait_for 60 trained || { cat job.out >&2; die "no epoch within 60 s"; }
on_a=$(mn_procs_on nA "$mp" rbm_dist | tr '\n' ' ')
on_b=$(mn_procs_on nB "$mp" rbm_dist | tr '\n' ' ')
job_procs=$(mn_descendants "$mp" | tr '\n' ' ')
[[ $(wc -w <<<"$on_a") == 2 && $(wc -w <<<"$on_b") == 2 ]] ||
  die "expected 2 ranks per node, found nA: '$on_a' nB: '$on_b'"
log "training; ranks on nA: $on_a, on nB: $on_b; killing nB's ranks (SIGKILL)"

t0=$(date +%s%N)
# shellcheck disable=SC2086  # one word per PID
kill -KILL $on_b
ended() { ! kill -0 "$mp" 2>/dev/null; }
wait_for $((LIMIT_S + 20)) ended
t1=$(date +%s%N)
ms=$(((t1 - t0) / 1000000))
ended || die "mpirun still running $ms ms after node nB lost its ranks"
wait "$mp"
rc=$?
MN_PIDS=()
log "mpirun exited with $rc, $ms ms after the kill"
((rc != 0)) || die "mpirun exited 0 after losing a node"
((ms <= LIMIT_S * 1000)) || { cat job.out >&2; die "the job took $ms ms (> ${LIMIT_S} s) to end"; }

pattern='^mpirun noticed that process rank [23] with PID [0-9]+ on node nB exited on signal 9 \(Killed\)\.$'
n=$(grep -cE "$pattern" job.out)
((n == 1)) || { cat job.out >&2; die "$n lines like 'mpirun noticed ... on node nB exited on signal 9', expected 1"; }
if grep -E 'on node nA (exited|has)' job.out >/dev/null; then
  cat job.out >&2; die "a line names nA as the failed node"
fi
log "the line: $(grep -E "$pattern" job.out)"

# mpirun does not wait for its orteds: they and their ranks may be zombies for a moment
# (reparented to init, not yet reaped); a zombie has ended, anything else has not.
living() {
  local p st out=""
  for p in $job_procs; do
    st=$(sed 's/^.*) //' /proc/"$p"/stat 2>/dev/null | cut -d' ' -f1)
    [[ -n $st && $st != Z && $st != X ]] && out+=" $p($(cat /proc/"$p"/comm 2>/dev/null),$st)"
  done
  echo "$out"
}
none_living() { [[ -z $(living) ]]; }
wait_for 5 none_living || die "processes of the job still running 5 s after mpirun ended:$(living)"
log "PASS: node nB lost -> job ended in $ms ms (limit ${LIMIT_S} s), exit $rc, one line naming nB, nothing left (${SECONDS}s)"
