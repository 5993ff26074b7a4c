#!/usr/bin/env bash
# A one-node SLURM cluster on localhost, to try `unitgrad grid run --backend slurm` and to test it.
#
#   scripts/slurm_localhost.sh start STATE_DIR   # prints `export SLURM_CONF=STATE_DIR/slurm.conf`
#   scripts/slurm_localhost.sh stop STATE_DIR    # stops the daemons it started, by PID
#
# Everything (config, munge key and socket, state, logs, PID files) lives in STATE_DIR, so a system SLURM or
# munge is neither used nor disturbed; clients find the cluster through SLURM_CONF. Jobs run as the user who
# started it (root in CI). If slurmctld, slurmd or munged is missing and we are root with apt-get, it installs
# Debian's packages (SLURM 22.05); otherwise it exits 3 with the reason. It needs 2 CPUs (NodeName CPUs=2).
set -euo pipefail

action=${1:?usage: $0 start|stop STATE_DIR}
dir=$(realpath -m "${2:?usage: $0 start|stop STATE_DIR}")

stop() {
  local name pid
  # jobs first: slurmstepd and a job's processes outlive slurmd
  if [[ -f $dir/slurmctld.pid ]]; then
    SLURM_CONF=$dir/slurm.conf scancel --user "$(id -un)" 2>/dev/null || true
    for _ in $(seq 30); do
      [[ -z $(SLURM_CONF=$dir/slurm.conf squeue -h -o %i 2>/dev/null) ]] && break
      sleep 0.5
    done
  fi
  for name in slurmd slurmctld munged; do
    [[ -f $dir/$name.pid ]] || continue
    pid=$(cat "$dir/$name.pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    rm -f "$dir/$name.pid"
  done
}

install() {
  if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null; then
    return
  fi
  if [[ $(id -u) != 0 ]] || ! command -v apt-get >/dev/null; then
    echo "slurmctld, slurmd and munged are not installed, and installing them needs root and apt-get" >&2
    exit 3
  fi
  echo "installing slurmctld slurmd munge with apt-get" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurmctld slurmd munge >/dev/null ||
    { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurmctld slurmd munge >/dev/null; }
}

start() {
  install
  mkdir -p "$dir/ctld" "$dir/spool"
  chmod 700 "$dir"
  # munged wants a key only its owner can read and refuses to start on a group-writable directory
  [[ -f $dir/munge.key ]] || { head -c 1024 /dev/urandom >"$dir/munge.key"; chmod 400 "$dir/munge.key"; }
  local user
  user=$(id -un)
  cat >"$dir/slurm.conf" <<EOF
ClusterName=localhost
SlurmctldHost=localhost
SlurmUser=$user
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$dir/munge.socket,cred_expire=5
CredType=cred/munge
StateSaveLocation=$dir/ctld
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
SlurmctldPort=${SLURMCTLD_PORT:-6817}
SlurmdPort=${SLURMD_PORT:-6818}
# no cgroups: processes are tracked by parent PID, tasks are not bound to cores (works in containers)
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
# CPUs are the consumable, so two 1-CPU array tasks run at once on the 2-CPU node
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
# short grace between SIGTERM and SIGKILL, and finished jobs stay visible to scontrol for 5 minutes
KillWait=5
MinJobAge=300
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,bf_interval=1
NodeName=localhost NodeAddr=127.0.0.1 CPUs=2 State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
  stop  # a previous start in this directory
  munged --key-file="$dir/munge.key" --socket="$dir/munge.socket" --pid-file="$dir/munged.pid" \
    --log-file="$dir/munged.log" --seed-file="$dir/munged.seed" --force
  slurmctld -f "$dir/slurm.conf" -i  # -i: ignore state left by an earlier cluster in this directory
  slurmd -f "$dir/slurm.conf" -N localhost
  export SLURM_CONF=$dir/slurm.conf
  for _ in $(seq 60); do
    if sinfo -h -o %T 2>/dev/null | grep -qx idle; then
      echo "export SLURM_CONF=$dir/slurm.conf"
      return
    fi
    sleep 0.5
  done
  echo "the node did not come up within 30 s; see $dir/slurmctld.log and $dir/slurmd.log" >&2
  stop
  exit 1
}

case $action in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop STATE_DIR" >&2; exit 2 ;;
esac
