#!/bin/bash
# tests/multinode/uts_agent.sh — an "ssh" for Open MPI that reaches another host on this
# machine: the host is a UTS namespace (its own hostname), everything else is shared.
#
#   mpirun --mca plm_rsh_agent tests/multinode/uts_agent.sh --host nA:2,nB:2 -np 4 PROG
#
# Open MPI's rsh launcher calls the agent as `AGENT [-options...] HOST COMMAND...`, like
# ssh. We skip the options, take HOST, and run COMMAND (one string for a shell, as ssh
# would: Open MPI quotes its arguments for the remote shell) in a new UTS namespace
# whose hostname is HOST. Open MPI and Slurm tell nodes apart by hostname, so the
# processes started here are on node HOST for them; ranks on different "hosts" talk
# over TCP (loopback), as across real nodes. Needs root (unshare --uts).
set -u
while (($#)) && [[ $1 == -* ]]; do
  case $1 in
    -l | -p | -i | -o | -F) shift 2 ;;   # ssh options with a value, should any appear
    *) shift ;;
  esac
done
(($# >= 2)) || { echo "uts_agent.sh: usage: uts_agent.sh [options] HOST COMMAND..." >&2; exit 255; }
host=$1
shift
[[ $host =~ ^[A-Za-z0-9][A-Za-z0-9.-]*$ ]] || { echo "uts_agent.sh: bad host name '$host'" >&2; exit 255; }
# The command ends up as the shell's argument ("$*", like ssh). A UTS namespace needs no
# fork (unlike a PID namespace), so every step execs: the agent's PID becomes the remote
# command itself (orted), which mpirun signals and waits for as it would an ssh.
exec unshare --uts -- /bin/bash -c 'hostname "$1" && shift && exec /bin/bash -c "$*"' \
  uts_agent "$host" "$@"
