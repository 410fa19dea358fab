# tests/multinode/multinode.sh — helpers for the two-nodes-on-one-machine tests.
# Source AFTER ../slurm/cluster.sh (log, die, wait_for, cluster_*) and ../slurm/checks.sh
# (need_binaries, check_model, same_model, h5_attr).
#
# A "node" is a UTS namespace with its own hostname (uts_agent.sh for mpirun, cluster.sh
# with CLUSTER_NODES=2 for Slurm); processes on different nodes share the file system,
# /dev/shm and loopback, and Open MPI connects them over TCP as it would real nodes.

MN_HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
MN_AGENT=$MN_HERE/uts_agent.sh
MN_WORK=""
MN_PIDS=()     # background commands this test started (mpirun), stopped at exit

# Skip (77) unless root with unshare, Open MPI and the HDF5 tools.
mn_require() {
  local missing=() c
  for c in unshare nsenter hostname mpirun h5dump h5diff perl; do
    command -v "$c" >/dev/null 2>&1 || missing+=("$c")
  done
  if ((${#missing[@]})); then
    echo "SKIPPED: multinode test needs: ${missing[*]} (Debian: util-linux openmpi-bin hdf5-tools perl)" >&2
    exit 77
  fi
  if [[ $(id -u) -ne 0 ]]; then
    echo "SKIPPED: the multinode tests emulate nodes with UTS namespaces (unshare --uts): run them as root" >&2
    exit 77
  fi
}

# Open MPI as root, more ranks than cores (only for this test's own commands).
mn_mpi_env() {
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 \
    OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_mpi_yield_when_idle=1 \
    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
}

# mn_begin BIN_DIR: skip checks, a work folder (removed at exit, unless MN_KEEP=1) with
# 600 + 100 synthetic MNIST-style images converted to data.h5; cd into it.
mn_begin() {
  local bin_dir=$1
  mn_require
  need_binaries "$bin_dir"
  mn_mpi_env
  MN_WORK=$(mktemp -d /tmp/rbm-multinode.XXXXXX) || die "mktemp failed"
  trap mn_end EXIT
  trap 'log "interrupted"; exit 130' INT
  trap 'log "terminated"; exit 143' TERM
  cd "$MN_WORK" || die "cannot enter $MN_WORK"
  mkdir -p mnist
  perl "$MN_HERE/../slurm/make_idx.pl" mnist 600 100 || die "make_idx.pl failed"
  "$bin_dir/mnist2h5" mnist data.h5 --validation-size 0 >/dev/null || die "mnist2h5 failed"
}

# The descendants of PID (children first), from /proc.
mn_descendants() {
  local c
  for c in $(cat /proc/"$1"/task/*/children 2>/dev/null); do
    echo "$c"
    mn_descendants "$c"
  done
}

# mn_procs_on HOST PID NAME: the processes named NAME below PID whose hostname (UTS
# namespace) is HOST.
mn_procs_on() {
  local host=$1 root=$2 name=$3 p
  for p in $(mn_descendants "$root"); do
    [[ $(cat /proc/"$p"/comm 2>/dev/null) == "$name" ]] || continue
    [[ $(nsenter -t "$p" -u hostname 2>/dev/null) == "$host" ]] && echo "$p"
  done
}

# mn_procs_in_ns_of PID NAME: the processes named NAME in the UTS namespace (= on the
# node) of PID — e.g. of a slurmd we started, whose slurmstepds daemonize and so are not
# its descendants. Namespace inodes are unique: nobody else's processes can match.
mn_procs_in_ns_of() {
  local ns p
  ns=$(readlink /proc/"$1"/ns/uts) || return 1
  for p in /proc/[0-9]*; do
    [[ $(cat "$p"/comm 2>/dev/null) == "$2" && $(readlink "$p"/ns/uts 2>/dev/null) == "$ns" ]] &&
      echo "${p#/proc/}"
  done
}

# Stops what this test started: each recorded command and whatever still runs below it
# (PIDs collected from /proc, never by name), then removes the work folder.
mn_end() {
  local rc=$? pid p left
  trap - EXIT
  for pid in "${MN_PIDS[@]}"; do
    kill -0 "$pid" 2>/dev/null || continue
    left=$(mn_descendants "$pid")
    log "cleanup: stopping pid $pid and its descendants $(echo $left)"
    kill -TERM "$pid" 2>/dev/null
    wait_for 10 _dead "$pid" || kill -KILL "$pid" 2>/dev/null
    for p in $left; do kill -KILL "$p" 2>/dev/null; done
    wait "$pid" 2>/dev/null
  done
  MN_PIDS=()
  if [[ -n $MN_WORK ]]; then
    if [[ ${MN_KEEP:-0} == 1 ]]; then log "kept $MN_WORK"; else rm -rf -- "$MN_WORK"; fi
  fi
  return "$rc"
}

# "${MN_MPIRUN_2X2[@]}" PROG...: mpirun with 2 ranks on each of the hosts nA and nB (UTS
# namespaces started by uts_agent.sh instead of ssh). --bind-to none: each emulated
# node believes it owns every core, so default binding would pin nA's and nB's rank 0
# to the same core (right answers, misleading timings).
MN_MPIRUN_2X2=(mpirun --mca plm_rsh_agent "$MN_AGENT" --host nA:2,nB:2 -np 4 --bind-to none)
