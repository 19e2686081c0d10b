#!/usr/bin/env bash
# A single-node SLURM cluster on this machine, for the SLURM tests and for trying `hydra/launcher=slurm`.
#
#   scripts/ci/slurm.sh install   apt-get install slurmctld, slurmd, slurm-client, munge if missing
#   scripts/ci/slurm.sh start     install if missing, write the config, start munged, slurmctld and slurmd,
#                                 wait until `sinfo` shows this node idle (does nothing if it already is)
#   scripts/ci/slurm.sh status    exit 0 iff the node is up (idle, mixed or allocated)
#   scripts/ci/slurm.sh stop      cancel the jobs still queued and wait (30 s at most) until they have ended,
#                                 then stop every daemon `start` started (slurmd, slurmctld, and munged if
#                                 `start` launched it), by their pid files, and wait until they are gone
#
# Needs root (daemons, /etc/slurm, /run/munge). The cluster: one node named after `hostname -s` at 127.0.0.1
# with CPUs = nproc and RealMemory = 90 % of MemTotal, one default partition `debug`, no accounting
# (submitit falls back to its result files when `sacct` is unavailable), no cgroups (works in containers).
# State and logs live in $RAMDA_SLURM_STATE (default /var/lib/ramda-slurm). Every mode is idempotent.
set -euo pipefail

STATE=${RAMDA_SLURM_STATE:-/var/lib/ramda-slurm}
CONF=/etc/slurm/slurm.conf
MARK="# written by ramda scripts/ci/slurm.sh"
PARTITION=debug
MUNGE_PID=/run/munge/munged.pid

die() {
    echo "slurm.sh: $*" >&2
    exit 1
}

have_slurm() {
    command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sbatch >/dev/null \
        && command -v munged >/dev/null
}

need_root() {
    [ "$(id -u)" -eq 0 ] || die "must run as root to $1 (current uid $(id -u))"
}

install() {
    if have_slurm; then
        return 0
    fi
    need_root "install slurm"
    command -v apt-get >/dev/null || die "slurm is not installed and apt-get is not available to install it"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null
    have_slurm || die "apt-get finished but slurmctld/slurmd/sbatch/munged are still missing"
}

node_state() {
    sinfo -h -N -p "$PARTITION" -o %T 2>/dev/null | head -n1 || true
}

alive() {
    [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null
}

write_conf() {
    local host cpus mem_kb mem_mb
    host=$(hostname -s)
    cpus=$(nproc)
    mem_kb=$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)
    mem_mb=$((mem_kb * 9 / 10 / 1024))
    mkdir -p /etc/slurm "$STATE/ctld" "$STATE/d"
    local tmp="$CONF.tmp.$$"
    cat >"$tmp" <<EOF
$MARK
ClusterName=ramda-ci
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/slurmctld.log
SlurmdLogFile=$STATE/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmdParameters=config_overrides
ReturnToService=2
MinJobAge=600
KillWait=5
SchedulerParameters=sched_interval=2
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=$PARTITION Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
    mv "$tmp" "$CONF"
}

start_munge() {
    if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
        return 0
    fi
    if [ ! -s /etc/munge/munge.key ]; then
        mkdir -p /etc/munge
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
    fi
    chown -R munge:munge /etc/munge
    chmod 0700 /etc/munge
    chmod 0400 /etc/munge/munge.key
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown munge:munge /run/munge /var/log/munge /var/lib/munge
    chmod 0755 /run/munge
    runuser -u munge -- /usr/sbin/munged
    for _ in $(seq 50); do
        if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
            mkdir -p "$STATE"
            cp "$MUNGE_PID" "$STATE/munged.pid" # ours to stop; a munged that was already running is not
            return 0
        fi
        sleep 0.1
    done
    die "munged did not come up (see /var/log/munge/munged.log)"
}

ours() {
    [ -f "$CONF" ] && grep -qF "$MARK" "$CONF"
}

start() {
    if [ -f "$CONF" ] && ! ours; then
        die "$CONF exists and was not written by this script (a real cluster?); not starting a test cluster"
    fi
    if ours; then
        case "$(node_state)" in
            idle* | mixed* | allocated*) return 0 ;;
        esac
    fi
    install
    need_root "start the cluster"
    write_conf
    start_munge
    alive "$STATE/slurmctld.pid" || slurmctld -f "$CONF"
    alive "$STATE/slurmd.pid" || slurmd -f "$CONF"
    local state
    for _ in $(seq 120); do
        state=$(node_state)
        case "$state" in
            idle* | mixed* | allocated*) return 0 ;;
            down* | drain*) scontrol update NodeName="$(hostname -s)" State=RESUME 2>/dev/null || true ;;
        esac
        sleep 0.5
    done
    die "node did not become idle within 60 s (state '${state:-none}'); logs: $STATE/slurmctld.log $STATE/slurmd.log"
}

status() {
    local state
    state=$(node_state)
    echo "${state:-not running}"
    case "$state" in
        idle* | mixed* | allocated*) return 0 ;;
        *) return 1 ;;
    esac
}

stop() {
    local f pid jobs
    if alive "$STATE/slurmctld.pid" && alive "$STATE/slurmd.pid"; then
        # Jobs first (their slurmstepd would outlive slurmd, unable to report the end of the job).
        jobs=$(squeue -h -o %A 2>/dev/null | sort -u | tr '\n' ' ')
        if [ -n "${jobs// /}" ]; then
            # shellcheck disable=SC2086
            scancel $jobs 2>/dev/null || true
        fi
        for _ in $(seq 60); do
            [ -z "$(squeue -h -o %A 2>/dev/null)" ] && break
            sleep 0.5
        done
    fi
    for f in "$STATE/slurmd.pid" "$STATE/slurmctld.pid" "$STATE/munged.pid"; do
        if alive "$f"; then
            pid=$(cat "$f")
            kill "$pid"
            for _ in $(seq 100); do
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.1
            done
            kill -0 "$pid" 2>/dev/null && die "pid $pid (from $f) still running 10 s after SIGTERM"
        fi
        rm -f "$f"
    done
}

case "${1:-}" in
    install) install ;;
    start) start ;;
    status) status ;;
    stop) stop ;;
    *) die "usage: $0 install|start|status|stop (got '${1:-}')" ;;
esac
