# tests/slurm/cluster.sh — a throw-away Slurm cluster for the tests: one node, or with
# CLUSTER_NODES=N several nodes on this one machine (tests/multinode).
#
# Source it from a bash test script, then:
#
#   cluster_require        # exit 77 (ctest SKIP) when Slurm/munge/Open MPI are not installed
#   cluster_start          # munged + slurmctld + slurmd under $CLUSTER_DIR, waits for `idle`
#   ...                    # sbatch/squeue/scontrol talk to it through $SLURM_CONF
#   (cluster_stop runs from the EXIT trap: cancels jobs, waits for squeue to empty,
#    stops exactly the PIDs it started, removes $CLUSTER_DIR)
#
# Everything lives under one temporary folder: munge key, socket and seed, the generated
# slurm.conf, slurmctld state, slurmd spool, logs. Ports are picked free at start, so a
# leftover cluster, or a real slurmctld on 6817, does not get in the way. No systemd,
# no files outside $CLUSTER_DIR, no daemons stopped by name.
#
# The facts this relies on (Debian 12, Slurm 22.05, Open MPI 4.1) are in
# ../shared/notes/slurm-and-mpi-facts.md: SlurmdParameters=config_overrides lets the node
# declare 8 CPUs on a 2-core machine; MinJobAge=5 makes finished jobs leave squeue quickly.
#
# Several nodes (CLUSTER_NODES=N > 1): nodes n1..nN, one slurmd each (`slurmd -N nK`) on
# its own port, each in its own UTS namespace whose hostname is nK (`unshare --uts`), so
# Slurm, PMIx and Open MPI see N hosts; file system, /dev/shm and loopback stay shared.
# Per-node paths use Slurm's %n: SlurmdSpoolDir, SlurmdPidFile, SlurmdLogFile and TmpFS.
# TmpFS matters: Slurm's PMIx plugin puts each step's client folder
# TmpFS/spmix_appdir_<uid>_<job>.<step> there (default TmpFS=/tmp), and two slurmstepds
# of one step on one machine would otherwise both create the same folder ("File exists").
# Needs root for unshare (cluster_require already requires root).

CLUSTER_DIR=""
CLUSTER_PIDS=()           # munged slurmctld slurmd, in start order
CLUSTER_CPUS=${CLUSTER_CPUS:-8}    # per node
CLUSTER_NODES=${CLUSTER_NODES:-1}  # 1: node "localhost"; N > 1: n1..nN (see above)
CLUSTER_NODE_NAMES=()
CLUSTER_KEEP=${CLUSTER_KEEP:-0}   # 1 = keep $CLUSTER_DIR after the test (debugging)
CLUSTER_BUDGET=${CLUSTER_BUDGET:-270}  # seconds before the watchdog ends the test (< ctest TIMEOUT)
CLUSTER_WATCHDOG=""

log() { printf '[%s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "FAIL: $*"; exit 1; }

# Skip (exit 77) only when the software is not there at all.
cluster_require() {
  local missing=()
  local c
  for c in munged slurmctld slurmd sbatch scontrol squeue sinfo scancel srun mpirun h5dump h5diff \
           $( ((CLUSTER_NODES > 1)) && echo unshare); do
    command -v "$c" >/dev/null 2>&1 || missing+=("$c")
  done
  if ((${#missing[@]})); then
    echo "SKIPPED: Slurm test needs: ${missing[*]} (Debian: apt-get install slurmctld slurmd" \
         "slurm-client munge openmpi-bin hdf5-tools; .ci/run installs them)" >&2
    exit 77
  fi
  if [[ $(id -u) -ne 0 ]]; then
    echo "SKIPPED: the throw-away Slurm cluster runs slurmd as root; run the slurm tests as root" >&2
    exit 77
  fi
}

# A TCP port nobody listens on, other than $1 (the one picked before).
_free_port() {
  local p tries=0
  while ((tries++ < 200)); do
    p=$((20000 + RANDOM % 30000))
    [[ $p == "${1:-}" ]] && continue
    if ! ss -Htanl "( sport = :$p )" 2>/dev/null | grep -q .; then
      echo "$p"
      return 0
    fi
  done
  return 1
}

# wait_for SECONDS CMD...: polls CMD every 0.2 s until it succeeds; 1 on timeout.
wait_for() {
  local limit=$1; shift
  local end=$((SECONDS + limit))
  while ((SECONDS < end)); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  "$@" >/dev/null 2>&1
}

# Every node (sinfo -N: one line per node) idle.
_node_idle() {
  local states
  states=$(sinfo -h -N -o %T 2>/dev/null) || return 1
  [[ $(grep -cx idle <<<"$states") == "$CLUSTER_NODES" && $(wc -l <<<"$states") == "$CLUSTER_NODES" ]]
}

_alive() { kill -0 "$1" 2>/dev/null; }

cluster_start() {
  CLUSTER_DIR=$(mktemp -d /tmp/rbm-slurm.XXXXXX)
  chmod 0755 "$CLUSTER_DIR"
  trap cluster_stop EXIT
  trap 'log "interrupted"; exit 130' INT
  trap 'log "terminated (budget ${CLUSTER_BUDGET}s exceeded?)"; exit 143' TERM
  # Watchdog: SIGTERM ourselves before ctest's TIMEOUT would SIGKILL us, so the EXIT trap
  # still stops the daemons. Its sleep dies with it (no process left holding ctest's pipe).
  local self=$$
  ( trap 'kill "$sp" 2>/dev/null; exit 0' TERM
    sleep "$CLUSTER_BUDGET" & sp=$!
    wait "$sp" && kill -TERM "$self" ) </dev/null >/dev/null 2>&1 &
  CLUSTER_WATCHDOG=$!
  local d=$CLUSTER_DIR
  mkdir -p "$d/munge" "$d/ctld" "$d/spool" "$d/log"
  chmod 0755 "$d/munge"   # the socket's folder must be 0755

  # ---- munge: private key, socket, pid and seed files ------------------------------
  mungekey --create --keyfile="$d/munge/munge.key" >/dev/null 2>&1 ||
    { dd if=/dev/urandom of="$d/munge/munge.key" bs=1024 count=1 status=none; }
  chmod 0600 "$d/munge/munge.key"
  munged -F --force --socket="$d/munge/munge.socket" --key-file="$d/munge/munge.key" \
    --pid-file="$d/munge/munged.pid" --seed-file="$d/munge/munged.seed" \
    --log-file="$d/log/munged.log" </dev/null >>"$d/log/munged.out" 2>&1 &
  CLUSTER_PIDS+=($!)
  wait_for 10 test -S "$d/munge/munge.socket" || die "munged did not start: $(tail -5 "$d/log/munged.log" "$d/log/munged.out" 2>&1)"

  # ---- slurm.conf ------------------------------------------------------------------
  local ctld_port slurmd_port node_lines spool=spool pidf=slurmd.pid logf=slurmd.log tmpfs="" n k port
  ctld_port=$(_free_port) || die "no free TCP port found"
  slurmd_port=$(_free_port "$ctld_port") || die "no free TCP port found"
  if ((CLUSTER_NODES == 1)); then
    CLUSTER_NODE_NAMES=(localhost)
    node_lines="NodeName=localhost NodeAddr=127.0.0.1 CPUs=$CLUSTER_CPUS RealMemory=1000 State=UNKNOWN"
  else
    # One port per slurmd (they share 127.0.0.1); %n = the node name, per node.
    CLUSTER_NODE_NAMES=()
    node_lines=""
    port=$slurmd_port
    for ((k = 1; k <= CLUSTER_NODES; k++)); do
      n=n$k
      CLUSTER_NODE_NAMES+=("$n")
      ((k > 1)) && { port=$(_free_port "$port") || die "no free TCP port found"; }
      node_lines+="NodeName=$n NodeAddr=127.0.0.1 Port=$port CPUs=$CLUSTER_CPUS RealMemory=1000 State=UNKNOWN"$'\n'
      mkdir -p "$d/spool/$n" "$d/tmp/$n"
    done
    node_lines+="# a per-node TmpFS keeps the slurmstepds' PMIx folders apart (header of cluster.sh)"$'\n'
    node_lines+="TmpFS=$d/tmp/%n"
    spool=spool/%n pidf=slurmd-%n.pid logf=slurmd-%n.log
  fi
  local nodes_csv
  nodes_csv=$(IFS=,; echo "${CLUSTER_NODE_NAMES[*]}")
  cat >"$d/slurm.conf" <<EOF
# generated by tests/slurm/cluster.sh — throw-away cluster, nodes: $nodes_csv
ClusterName=rbmtest
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# cred_expire also sets how long a requeued job waits before it may start again (default
# 120 s: EligibleTime = requeue + 121 s); 5 s keeps the requeue test quick.
AuthInfo=socket=$d/munge/munge.socket,cred_expire=${CLUSTER_CRED_EXPIRE:-5}
StateSaveLocation=$d/ctld
SlurmdSpoolDir=$d/$spool
SlurmctldPidFile=$d/slurmctld.pid
SlurmdPidFile=$d/$pidf
SlurmctldLogFile=$d/log/slurmctld.log
SlurmdLogFile=$d/log/$logf
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/builtin
SchedulerParameters=batch_sched_delay=0,sched_interval=1
SlurmdParameters=config_overrides
EnforcePartLimits=ALL
ReturnToService=2
JobRequeue=1
MinJobAge=5
# Job ids unlike another throw-away cluster's (PMIx names temp folders by job id).
FirstJobId=$((1000 + RANDOM % 50000))
KillWait=10
InactiveLimit=0
MailProg=/bin/true
$node_lines
PartitionName=test Nodes=$nodes_csv Default=YES MaxTime=INFINITE State=UP
EOF
  export SLURM_CONF=$d/slurm.conf
  # Our clients must not pick up a caller's cluster settings, and the jobs (sbatch exports
  # this environment) must get their MPI/threading settings from the batch script alone.
  unset SLURM_JOB_ID SLURM_JOBID SQUEUE_FORMAT SBATCH_PARTITION SBATCH_ACCOUNT SBATCH_TIMELIMIT \
    OMPI_ALLOW_RUN_AS_ROOT OMPI_ALLOW_RUN_AS_ROOT_CONFIRM OMPI_MCA_rmaps_base_oversubscribe \
    OMPI_MCA_mpi_yield_when_idle OMP_NUM_THREADS OPENBLAS_NUM_THREADS

  # ---- the daemons, in the foreground, in the background -----------------------------
  slurmctld -D -f "$SLURM_CONF" </dev/null >>"$d/log/slurmctld.out" 2>&1 &
  CLUSTER_PIDS+=($!)
  if ((CLUSTER_NODES == 1)); then
    slurmd -D -f "$SLURM_CONF" </dev/null >>"$d/log/slurmd.out" 2>&1 &
    CLUSTER_PIDS+=($!)
    log "cluster: $d (slurmctld :$ctld_port pid ${CLUSTER_PIDS[1]}, slurmd :$slurmd_port pid ${CLUSTER_PIDS[2]})"
  else
    # A new UTS namespace per node, hostname = node name. unshare --uts needs no fork,
    # so unshare -> bash -> slurmd is one process: the recorded PID is slurmd itself.
    for n in "${CLUSTER_NODE_NAMES[@]}"; do
      unshare --uts -- bash -c 'hostname "$1" && exec slurmd -D -N "$1" -f "$2"' slurmd-uts "$n" "$SLURM_CONF" \
        </dev/null >>"$d/log/slurmd-$n.out" 2>&1 &
      CLUSTER_PIDS+=($!)
    done
    log "cluster: $d (slurmctld :$ctld_port pid ${CLUSTER_PIDS[1]}; slurmd ${CLUSTER_NODE_NAMES[*]}" \
        "pids ${CLUSTER_PIDS[*]:2}, each in its own UTS namespace)"
  fi

  if ! wait_for 30 _node_idle; then
    log "nodes never became idle: $(sinfo -h -N -o '%N %T %E' 2>&1 | tr '\n' ';')"
    cluster_dump_logs
    die "cluster start failed"
  fi
  local p
  for p in "${CLUSTER_PIDS[@]}"; do _alive "$p" || { cluster_dump_logs; die "a daemon died at start"; }; done
  log "cluster: $(IFS=,; echo "${CLUSTER_NODE_NAMES[*]}") idle after ${SECONDS}s"
}

cluster_dump_logs() {
  [[ -n $CLUSTER_DIR && -d $CLUSTER_DIR/log ]] || return 0
  local f
  for f in "$CLUSTER_DIR"/log/*; do
    [[ -s $f ]] || continue
    echo "----- $f (last 30 lines)" >&2
    tail -n 30 "$f" >&2
  done
}

# Stops what cluster_start started; safe to call twice, runs from the EXIT trap.
cluster_stop() {
  local rc=$?
  trap - EXIT
  [[ -n $CLUSTER_DIR ]] || return "$rc"
  if ((rc != 0)); then
    cluster_dump_logs
  fi
  if ((${#CLUSTER_PIDS[@]} >= 3)) && _alive "${CLUSTER_PIDS[1]}"; then
    # Cancel leftover jobs and let slurmd clean them up, or their processes outlive it.
    if [[ -n $(squeue -h -o %i 2>/dev/null) ]]; then
      log "cluster: cancelling leftover jobs: $(squeue -h -o '%i %T' 2>/dev/null | tr '\n' ' ')"
      local ids
      ids=$(squeue -h -o %i 2>/dev/null)
      # shellcheck disable=SC2086  # one word per job id
      scancel $ids 2>/dev/null
      wait_for 30 _queue_empty || log "cluster: WARNING: squeue not empty after 30 s"
    fi
  fi
  # Stop in reverse order: slurmd(s), slurmctld, munged — exactly these PIDs.
  local i p
  for ((i = ${#CLUSTER_PIDS[@]} - 1; i >= 0; i--)); do
    p=${CLUSTER_PIDS[i]}
    _alive "$p" || continue
    kill -TERM "$p" 2>/dev/null
    wait_for 15 _dead "$p" || { log "cluster: pid $p ignores SIGTERM, killing"; kill -KILL "$p" 2>/dev/null; }
    wait "$p" 2>/dev/null
  done
  CLUSTER_PIDS=()
  if [[ -n $CLUSTER_WATCHDOG ]]; then
    kill -TERM "$CLUSTER_WATCHDOG" 2>/dev/null
    wait "$CLUSTER_WATCHDOG" 2>/dev/null
    CLUSTER_WATCHDOG=""
  fi
  if [[ $CLUSTER_KEEP == 1 ]]; then
    log "cluster: state kept in $CLUSTER_DIR"
  else
    rm -rf -- "$CLUSTER_DIR"
  fi
  CLUSTER_DIR=""
  return "$rc"
}

_dead() { ! kill -0 "$1" 2>/dev/null; }
_queue_empty() { [[ -z $(squeue -h -o %i 2>/dev/null) ]] && squeue >/dev/null 2>&1; }

# ---- job helpers ------------------------------------------------------------------

# job_field JOBID FIELD: one field of `scontrol show job` (e.g. JobState, Restarts, ExitCode).
job_field() {
  scontrol -o show job "$1" 2>/dev/null | tr ' ' '\n' | sed -n "s/^$2=//p" | head -n1
}

# wait_job_state JOBID SECONDS STATE...: until the job is in one of the states.
wait_job_state() {
  local id=$1 limit=$2; shift 2
  local end=$((SECONDS + limit)) st
  while ((SECONDS < end)); do
    st=$(job_field "$id" JobState)
    for s in "$@"; do [[ $st == "$s" ]] && return 0; done
    sleep 0.2
  done
  log "job $id: state '${st:-gone}' after ${limit}s, wanted $*"
  return 1
}

# wait_job_done JOBID SECONDS: until the job ended (a terminal state); prints "STATE EXITCODE"
# (e.g. "COMPLETED 0:0"). Polls often: with MinJobAge=5 a finished job leaves within 5 s.
wait_job_done() {
  local id=$1 limit=$2
  local end=$((SECONDS + limit)) line st ec
  while ((SECONDS < end)); do
    line=$(scontrol -o show job "$id" 2>/dev/null)
    st=$(sed -n 's/.* JobState=\([^ ]*\).*/\1/p' <<<"$line")
    ec=$(sed -n 's/.* ExitCode=\([^ ]*\).*/\1/p' <<<"$line")
    case $st in
      COMPLETED | FAILED | CANCELLED | TIMEOUT | NODE_FAIL | OUT_OF_MEMORY | BOOT_FAIL | DEADLINE | PREEMPTED)
        echo "$st $ec"; return 0 ;;
      "") echo "GONE ?"; return 0 ;;
    esac
    sleep 0.3
  done
  echo "STILL_${st:-UNKNOWN} ?"
  return 1
}
