#!/usr/bin/env bash
# A real single-node SLURM on this machine, for testing `deepscope sweep --executor slurm`.
#
#   sudo bash scripts/slurm-local.sh start    # munged, slurmctld, slurmd; waits for the node to be idle
#   bash scripts/slurm-local.sh status        # daemons and `sinfo`
#   sudo bash scripts/slurm-local.sh stop     # cancels jobs, stops the three daemons
#
# Installs nothing: it needs Debian's packages `slurmctld slurmd slurm-client munge`
# (.ci/run installs them). Needs root. No systemd: the daemons run in the background,
# tracked by their pid files. No cgroups (proctrack/linuxproc, task/none) and no accounting
# database, so it also runs inside a container. start and stop are idempotent.
#
# The config goes to $SLURM_CONF (default /etc/slurm/slurm.conf, where Debian's slurm reads
# it); the node's CPUs and memory come from `slurmd -C`. Partition: `debug`, this node only.
# Logs: /var/log/slurm/{slurmctld,slurmd}.log and /var/log/munge/munged.log.
set -euo pipefail

CONF=${SLURM_CONF:-/etc/slurm/slurm.conf}
STATE=/var/lib/slurm
LOGS=/var/log/slurm
RUN=/run/slurm
CTLD_PID=$RUN/slurmctld.pid
SLURMD_PID=$RUN/slurmd.pid
MUNGE_PID=/run/munge/munged.pid
WAIT_S=${SLURM_LOCAL_WAIT_S:-60}

die() { echo "slurm-local: $*" >&2; exit 1; }
alive() { [[ -f $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

need_root() {
    [[ $(id -u) == 0 ]] || die "$1 needs root (daemons, /etc/slurm, /run): run it with sudo"
    local missing=()
    for cmd in munged slurmctld slurmd sinfo scontrol; do
        command -v "$cmd" >/dev/null || missing+=("$cmd")
    done
    ((${#missing[@]} == 0)) || die "missing ${missing[*]}: apt-get install slurmctld slurmd slurm-client munge"
}

write_conf() {
    local node line
    node=$(hostname -s)
    # `slurmd -C` prints the real hardware line, e.g.
    # NodeName=vm CPUs=2 Boards=1 SocketsPerBoard=1 CoresPerSocket=2 ThreadsPerCore=1 RealMemory=24105
    line=$(slurmd -C | grep '^NodeName=') || die "slurmd -C printed no NodeName line"
    mkdir -p "$(dirname "$CONF")"
    local tmp
    tmp=$(mktemp)
    cat >"$tmp" <<EOF
# Written by deepscope's scripts/slurm-local.sh: a single-node SLURM for tests.
ClusterName=deepscope-local
SlurmctldHost=$node
SlurmUser=slurm
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
SwitchType=switch/none
# No cgroups (containers): track job processes through /proc, bind no tasks.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
# No accounting database.
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
# scancel: SIGTERM, then SIGKILL after KillWait seconds (submitit's jobs ignore SIGTERM).
KillWait=2
SlurmctldTimeout=30
SlurmdTimeout=60
MinJobAge=300
StateSaveLocation=$STATE/slurmctld
SlurmdSpoolDir=$STATE/slurmd
SlurmctldPidFile=$CTLD_PID
SlurmdPidFile=$SLURMD_PID
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
$line State=UNKNOWN
PartitionName=debug Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF
    if [[ -f $CONF ]] && cmp -s "$tmp" "$CONF"; then
        rm -f "$tmp"
        return 1 # unchanged
    fi
    install -m 0644 "$tmp" "$CONF"
    rm -f "$tmp"
    echo "slurm-local: wrote $CONF"
}

start_munge() {
    if alive "$MUNGE_PID"; then return; fi
    install -d -o munge -g munge -m 0700 /etc/munge /var/log/munge
    install -d -o munge -g munge -m 0711 /var/lib/munge
    install -d -o munge -g munge -m 0755 /run/munge
    if [[ ! -s /etc/munge/munge.key ]]; then
        if command -v mungekey >/dev/null; then
            runuser -u munge -- mungekey --create --keyfile=/etc/munge/munge.key
        else
            dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
        fi
        echo "slurm-local: created /etc/munge/munge.key"
    fi
    chown munge:munge /etc/munge/munge.key
    chmod 0400 /etc/munge/munge.key
    runuser -u munge -- munged
    munge -n | unmunge >/dev/null || die "munge does not round-trip a credential (see /var/log/munge/munged.log)"
}

start() {
    need_root start
    local changed=0
    write_conf && changed=1
    install -d -o slurm -g slurm -m 0755 "$STATE" "$STATE/slurmctld" "$STATE/slurmd" "$LOGS" "$RUN"
    start_munge
    if ((changed)) && { alive "$CTLD_PID" || alive "$SLURMD_PID"; }; then
        echo "slurm-local: config changed, restarting the daemons"
        stop_daemons
    fi
    alive "$CTLD_PID" || slurmctld
    alive "$SLURMD_PID" || slurmd
    local node state="" t0=$SECONDS
    node=$(hostname -s)
    while ((SECONDS - t0 < WAIT_S)); do
        state=$(sinfo -h -n "$node" -o %t 2>/dev/null || true)
        case $state in
            idle | mix | alloc) break ;;
            drain* | down*) scontrol update nodename="$node" state=resume 2>/dev/null || true ;;
        esac
        sleep 1
    done
    case $state in
        idle | mix | alloc) ;;
        *) die "node $node is '${state:-unknown}' after ${WAIT_S}s (see $LOGS/slurmctld.log, $LOGS/slurmd.log)" ;;
    esac
    sinfo
}

# Send SIGTERM to the daemon in pid file $1 and wait for it to exit (SIGKILL after 10 s).
stop_pid() {
    local pidfile=$1 pid i
    alive "$pidfile" || { rm -f "$pidfile"; return 0; }
    pid=$(cat "$pidfile")
    kill "$pid" 2>/dev/null || true
    for i in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.2
    done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null || true
    rm -f "$pidfile"
}

stop_daemons() {
    stop_pid "$SLURMD_PID"
    stop_pid "$CTLD_PID"
}

stop() {
    need_root stop
    if alive "$CTLD_PID"; then
        # Cancel what is left so that no job's processes outlive slurmd.
        local jobs i
        jobs=$(squeue -h -o %A 2>/dev/null || true)
        if [[ -n $jobs ]]; then
            # shellcheck disable=SC2086
            scancel $jobs || true
            for i in $(seq 30); do
                [[ -z $(squeue -h -t R,CG -o %A 2>/dev/null) ]] && break
                sleep 0.5
            done
        fi
    fi
    stop_daemons
    if alive "$MUNGE_PID"; then
        runuser -u munge -- munged --stop >/dev/null 2>&1 || stop_pid "$MUNGE_PID"
    fi
    echo "slurm-local: stopped"
}

status() {
    local name pidfile rc=0
    for name in munged slurmctld slurmd; do
        case $name in
            munged) pidfile=$MUNGE_PID ;;
            slurmctld) pidfile=$CTLD_PID ;;
            slurmd) pidfile=$SLURMD_PID ;;
        esac
        if alive "$pidfile"; then
            echo "$name: running (pid $(cat "$pidfile"))"
        else
            echo "$name: stopped"
            rc=1
        fi
    done
    ((rc == 0)) && sinfo
    return $rc
}

case ${1:-} in
    start) start ;;
    stop) stop ;;
    status) status ;;
    *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
