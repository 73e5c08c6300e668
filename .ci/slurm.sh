#!/usr/bin/env bash
# A throw-away single-node SLURM cluster (Debian's slurm-wlm and munge) for tests/test_slurm.py
# and for trying profiles/slurm by hand. The daemons run as plain processes (no systemd); the
# config, munge key, state, logs and PID files live in DIR, nothing under /etc is written, and the
# ports are picked free, so a SLURM or munge already on the machine is left alone. Needs root.
#
#   .ci/slurm.sh install      apt-get install slurm-wlm and munge unless slurmctld is there already
#   .ci/slurm.sh start DIR    write DIR/slurm.conf, start munged, slurmctld and slurmd, wait for
#                             the node to be idle, print the two exports clients need:
#                             SLURM_CONF=DIR/slurm.conf and PATH=DIR/bin:$PATH
#   .ci/slurm.sh stop DIR     cancel the jobs of that cluster, stop the daemons that `start DIR`
#                             started (by the PIDs it recorded), and nothing else
#
# Clients (sbatch, squeue, snakemake's SLURM executor) find the cluster through SLURM_CONF. Inside
# a job, snakemake-executor-plugin-slurm-jobstep (0.6) runs `srun` with every SLURM_* variable but
# the job's identity removed, SLURM_CONF included, so that srun would look for /etc/slurm/slurm.conf;
# DIR/bin/srun puts SLURM_CONF back and calls the real srun (a real cluster has its slurm.conf in
# the default place and needs no such thing).
# The node offers every core of this machine and declares (config_overrides) enough memory for
# the per-rule requests of profiles/slurm; memory is not enforced (no cgroups). Slurm 22.05
# runs here with proctrack/linuxproc and task/none, and without slurmdbd: use
# `--slurm-status-command squeue` (sacct has no accounting data here).
set -euo pipefail

die() { echo "slurm.sh: $*" >&2; exit 1; }

install() {
    if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null; then
        return
    fi
    local sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

alive() {  # alive PIDFILE: the recorded process is still running
    [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null
}

wait_for() {  # wait_for SECONDS WHAT COMMAND...: retry COMMAND every 0.2 s
    local seconds=$1 what=$2 i
    shift 2
    for ((i = 0; i < seconds * 5; i++)); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    die "timed out after ${seconds}s waiting for $what (logs in $DIR)"
}

node_ready() {
    local state
    state=$(sinfo --noheader --nodes=localhost --format=%t)
    [ "$state" = idle ] || [ "$state" = mix ] || [ "$state" = alloc ]
}

start() {
    [ "$(id -u)" = 0 ] || die "start needs root (slurmd launches jobs as their users)"
    for tool in munged mungekey slurmctld slurmd sinfo; do
        command -v "$tool" >/dev/null || die "$tool not found: run '$0 install'"
    done
    mkdir -p "$DIR"
    DIR=$(cd "$DIR" && pwd)
    for pidfile in munged slurmctld slurmd; do
        ! alive "$DIR/$pidfile.pid" || die "a $pidfile started from $DIR is running: '$0 stop $DIR' first"
    done
    mkdir -p "$DIR/state" "$DIR/spool" "$DIR/log"
    # munged insists that every directory above its socket is executable by all: a fresh one in /tmp
    local munge_dir
    munge_dir=$(mktemp -d /tmp/munge.XXXXXX)
    chmod 755 "$munge_dir"
    echo "$munge_dir" >"$DIR/munge_dir"
    mungekey --create --force --keyfile="$DIR/munge.key"

    local cpus memory ctld_port slurmd_port
    cpus=$(nproc)
    # the node declares at least 64 GB so that profiles/slurm's requests fit on any test machine
    memory=$(awk '/MemTotal/ {print int($2 / 1024)}' /proc/meminfo)
    [ "$memory" -ge 65536 ] || memory=65536
    ctld_port=$(free_port)
    slurmd_port=$(free_port)
    [ "$ctld_port" != "$slurmd_port" ] || slurmd_port=$(free_port)
    cat >"$DIR/slurm.conf" <<EOF
# written by .ci/slurm.sh: a single-node cluster for tests
ClusterName=minimaxdd-test
SlurmctldHost=$(hostname -s)(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$munge_dir/munge.socket
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/log/slurmctld.pid
SlurmdPidFile=$DIR/log/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
SlurmdParameters=config_overrides
DefMemPerCPU=1000
ReturnToService=2
MinJobAge=300
KillWait=5
InactiveLimit=0
MailProg=/bin/true
NodeName=localhost NodeHostname=$(hostname -s) NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$memory State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
    export SLURM_CONF="$DIR/slurm.conf"
    mkdir -p "$DIR/bin"
    printf '#!/bin/sh\nSLURM_CONF=%s exec %s "$@"\n' "$DIR/slurm.conf" "$(command -v srun)" >"$DIR/bin/srun"
    chmod 755 "$DIR/bin/srun"

    setsid munged --foreground --force --socket="$munge_dir/munge.socket" --key-file="$DIR/munge.key" \
        --pid-file="$DIR/log/munged-own.pid" --log-file="$DIR/log/munged.log" --seed-file="$DIR/munged.seed" \
        </dev/null >>"$DIR/log/munged.out" 2>&1 &
    echo $! >"$DIR/munged.pid"
    wait_for 10 munged test -S "$munge_dir/munge.socket"

    setsid slurmctld -D -c -f "$DIR/slurm.conf" </dev/null >>"$DIR/log/slurmctld.out" 2>&1 &
    echo $! >"$DIR/slurmctld.pid"
    wait_for 30 slurmctld scontrol ping

    setsid slurmd -D -N localhost -f "$DIR/slurm.conf" </dev/null >>"$DIR/log/slurmd.out" 2>&1 &
    echo $! >"$DIR/slurmd.pid"
    wait_for 60 "the node to be idle" node_ready
    for pidfile in munged slurmctld slurmd; do
        alive "$DIR/$pidfile.pid" || die "$pidfile exited (logs in $DIR/log)"
    done
    echo "export SLURM_CONF=$DIR/slurm.conf"
    echo "export PATH=$DIR/bin:\$PATH"
}

stop_pid() {  # stop_pid PIDFILE: TERM, then KILL after 10 s, only the process recorded there
    local pidfile=$1 pid i
    alive "$pidfile" || { rm -f "$pidfile"; return 0; }
    pid=$(cat "$pidfile")
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.2
    done
    ! kill -0 "$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    rm -f "$pidfile"
}

stop() {
    [ -d "$DIR" ] || return 0
    DIR=$(cd "$DIR" && pwd)
    export SLURM_CONF="$DIR/slurm.conf"
    if alive "$DIR/slurmctld.pid"; then
        # every job of this private cluster is ours; slurmd kills their processes
        scancel --partition=debug 2>/dev/null || true
        local i
        for ((i = 0; i < 50; i++)); do
            [ -z "$(squeue --noheader --states=RUNNING,COMPLETING,PENDING 2>/dev/null)" ] && break
            sleep 0.2
        done
    fi
    stop_pid "$DIR/slurmd.pid"
    stop_pid "$DIR/slurmctld.pid"
    stop_pid "$DIR/munged.pid"
    if [ -s "$DIR/munge_dir" ]; then
        rm -rf -- "$(cat "$DIR/munge_dir")"
        rm -f "$DIR/munge_dir"
    fi
}

case "${1:-}" in
    install) install ;;
    start | stop)
        [ $# -eq 2 ] || die "usage: $0 $1 DIR"
        DIR=$2
        "$1"
        ;;
    *) die "usage: $0 install | start DIR | stop DIR" ;;
esac
