#!/usr/bin/env bash
# Start a private one-node SLURM cluster on this machine (for hdsgd's job-array tests).
#
#     source scripts/slurm/env.sh && scripts/slurm/start.sh   # ... sbatch/squeue ... ; scripts/slurm/stop.sh
#
# Installs slurm-wlm and munge with apt-get if missing, creates /etc/munge/munge.key if
# missing, then starts under HDSGD_SLURM_DIR (see env.sh) its own munged (own socket),
# slurmctld and slurmd with a generated slurm.conf for this host, and waits (bounded) until
# the node is idle. Idempotent: a healthy running cluster is reused; a half-running one is
# stopped and started afresh. Must run as root. stop.sh stops everything again.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=env.sh
source "$HERE/env.sh"
# shellcheck source=lib.sh
source "$HERE/lib.sh"

require_root
check_dir
T0="$(now)"

# --- 1. packages -------------------------------------------------------------------------
need_install() {
    local c
    for c in slurmctld slurmd sbatch squeue scontrol scancel sinfo munged mungekey munge unmunge; do
        command -v "$c" >/dev/null 2>&1 || return 0
    done
    return 1
}
if need_install; then
    log "installing slurm-wlm and munge (apt-get)"
    T=$(now)
    # Keep the packages' maintainer scripts from starting system slurmctld/slurmd/munged
    # services (they would use /etc config, and would be left running): policy-rc.d "exit 101"
    # is honoured by invoke-rc.d and deb-systemd-invoke. Only ours if none existed.
    OWN_POLICY=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        OWN_POLICY=1
        trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    export DEBIAN_FRONTEND=noninteractive
    APT=(apt-get -y -q -o Dpkg::Use-Pty=0 -o DPkg::Lock::Timeout=300 --no-install-recommends)
    if ! "${APT[@]}" install slurm-wlm munge >"/tmp/hdsgd-slurm-apt.log" 2>&1; then
        log "apt-get install failed; running apt-get update and retrying"
        apt-get -q -o DPkg::Lock::Timeout=300 update >>"/tmp/hdsgd-slurm-apt.log" 2>&1 || true
        if ! "${APT[@]}" install slurm-wlm munge >>"/tmp/hdsgd-slurm-apt.log" 2>&1; then
            tail -n 30 /tmp/hdsgd-slurm-apt.log >&2
            die "apt-get install slurm-wlm munge failed (full log: /tmp/hdsgd-slurm-apt.log)"
        fi
    fi
    if [ -n "$OWN_POLICY" ]; then
        rm -f /usr/sbin/policy-rc.d
        trap - EXIT
    fi
    need_install && die "slurm-wlm/munge installed but a command is still missing from PATH"
    log "installed in $(elapsed "$T") s"
fi

# --- 2. reuse a healthy cluster ----------------------------------------------------------
if [ -f "$MARKER" ] && [ -r "$SLURM_CONF" ] &&
    [ -n "$(pid_of "$MUNGE_PIDFILE" munged)" ] &&
    [ -n "$(pid_of "$CTLD_PIDFILE" slurmctld)" ] &&
    [ -n "$(pid_of "$SLURMD_PIDFILE" slurmd)" ] && ctld_up; then
    case "$(node_state)" in
        idle | mixed | allocated | completing)
            log "cluster already running (node $NODE $(node_state)); reusing it"
            exit 0
            ;;
    esac
fi
# Anything of ours half running (or a stale state folder): stop and clean it first.
if [ -e "$D" ]; then
    "$HERE/stop.sh"
fi

# --- 3. folders and munge ----------------------------------------------------------------
T=$(now)
mkdir -p "$D"
chmod 755 "$D"
touch "$MARKER"
mkdir -p "$D/state" "$D/spool" "$D/run" "$D/log" "$MUNGE_DIR"
chmod 700 "$D/state" "$D/spool"
rm -f "$D"/log/*
chown munge:munge "$MUNGE_DIR" "$D/log"
chmod 755 "$MUNGE_DIR" "$D/log"

KEY=/etc/munge/munge.key
if [ ! -s "$KEY" ]; then
    log "creating $KEY"
    install -d -o munge -g munge -m 700 /etc/munge
    mungekey --create --keyfile="$KEY" --force
fi
# munged refuses a key not owned by its user or readable by others.
chown munge:munge "$KEY"
chmod 600 "$KEY"

# munged runs as the munge user, as packaged; it daemonizes and writes its pid file.
runuser -u munge -- munged \
    --socket="$MUNGE_SOCKET" --pid-file="$MUNGE_PIDFILE" \
    --log-file="$MUNGE_LOG" --seed-file="$MUNGE_DIR/munged.seed" \
    </dev/null >/dev/null 2>"$D/log/munged.stderr" || {
    cat "$D/log/munged.stderr" >&2
    show_logs
    die "munged failed to start"
}
for _ in $(seq 50); do
    munge -n -S "$MUNGE_SOCKET" 2>/dev/null | unmunge -S "$MUNGE_SOCKET" >/dev/null 2>&1 && break
    sleep 0.1
done
munge -n -S "$MUNGE_SOCKET" | unmunge -S "$MUNGE_SOCKET" >/dev/null ||
    {
        show_logs
        die "munged does not answer on $MUNGE_SOCKET"
    }
log "munged up in $(elapsed "$T") s"

# --- 4. slurm.conf -----------------------------------------------------------------------
# slurmd -C: "NodeName=vm CPUs=2 Boards=1 SocketsPerBoard=1 CoresPerSocket=2 ThreadsPerCore=1
# RealMemory=24105". Use its topology as is; RealMemory 5 % lower (a node reporting less than
# configured is drained as "Low RealMemory").
HW="$(slurmd -C 2>/dev/null | head -n 1)"
field() { sed -n "s/.*\b$1=\([0-9]*\).*/\1/p" <<<"$HW"; }
CPUS="$(field CPUs)"
CPUS="${CPUS:-$(nproc)}"
MEM="$(field RealMemory)"
MEM="${MEM:-$(awk '/MemTotal/ { print int($2 / 1024) }' /proc/meminfo)}"
MEM=$((MEM * 95 / 100))
TOPO=""
for f in Boards SocketsPerBoard CoresPerSocket ThreadsPerCore; do
    v="$(field "$f")"
    [ -n "$v" ] && TOPO="$TOPO $f=$v"
done
cat >"$SLURM_CONF.tmp" <<EOF
# Generated by scripts/slurm/start.sh ($(date -u +%FT%TZ)); rewritten at every fresh start.
ClusterName=hdsgd
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$HDSGD_SLURM_CTLD_PORT
SlurmdPort=$HDSGD_SLURM_SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$MUNGE_SOCKET
StateSaveLocation=$D/state
SlurmdSpoolDir=$D/spool
SlurmctldPidFile=$CTLD_PIDFILE
SlurmdPidFile=$SLURMD_PIDFILE
SlurmctldLogFile=$CTLD_LOG
SlurmdLogFile=$SLURMD_LOG
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MailProg=/bin/true
ReturnToService=2
# Start batch jobs at once (default batch_sched_delay=3 s: each sbatch job waited ~3 s).
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0
# Finished jobs stay visible to squeue -t all / scontrol show job for 10 minutes (no
# accounting here, so this is how tests read a job's final state and exit code).
MinJobAge=600
KillWait=5
InactiveLimit=0
SlurmctldTimeout=30
SlurmdTimeout=30
MessageTimeout=10
Waittime=0
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$CPUS$TOPO RealMemory=$MEM State=UNKNOWN
PartitionName=$HDSGD_SLURM_PARTITION Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
mv "$SLURM_CONF.tmp" "$SLURM_CONF"

# --- 5. daemons --------------------------------------------------------------------------
T=$(now)
# Both daemonize and write their pid files; SLURM_CONF (exported by env.sh) is inherited by
# slurmd's slurmstepd processes, which lets stop.sh find them.
slurmctld -f "$SLURM_CONF" </dev/null >/dev/null 2>"$D/log/slurmctld.stderr" || {
    show_logs
    die "slurmctld failed to start"
}
deadline=$(($(date +%s) + HDSGD_SLURM_START_TIMEOUT))
until ctld_up; do
    if [ "$(date +%s)" -ge "$deadline" ] || daemon_died "$CTLD_PIDFILE" slurmctld; then
        show_logs
        die "slurmctld not answering 'scontrol ping' (waited up to ${HDSGD_SLURM_START_TIMEOUT}s)"
    fi
    sleep 0.2
done
log "slurmctld up in $(elapsed "$T") s"

T=$(now)
slurmd -f "$SLURM_CONF" </dev/null >/dev/null 2>"$D/log/slurmd.stderr" || {
    show_logs
    die "slurmd failed to start"
}
state=""
while :; do
    state="$(node_state)"
    case "$state" in idle | mixed | allocated) break ;; esac
    if [ "$(date +%s)" -ge "$deadline" ]; then
        sinfo -N -l >&2 || true
        scontrol show node "$NODE" >&2 || true
        show_logs
        die "node $NODE not idle within ${HDSGD_SLURM_START_TIMEOUT}s (state: '${state:-none}')"
    fi
    if daemon_died "$SLURMD_PIDFILE" slurmd; then
        show_logs
        die "slurmd exited"
    fi
    sleep 0.2
done
log "slurmd up, node $NODE $state in $(elapsed "$T") s"
# slurmctld's main scheduler makes its first pass ~3 s after the controller starts (it logs
# its SchedulerParameters then); jobs submitted earlier wait for it. Wait for that pass so
# that "ready" means jobs start at once (bounded; not an error if the line never shows up).
T=$(now)
for _ in $(seq 50); do
    grep -q 'SchedulerParameters=' "$CTLD_LOG" 2>/dev/null && break
    sleep 0.2
done
log "scheduler active after $(elapsed "$T") s more"
log "cluster ready: $CPUS CPUs, RealMemory=$MEM MB, partition '$HDSGD_SLURM_PARTITION', SLURM_CONF=$SLURM_CONF (total $(elapsed "$T0") s)"
