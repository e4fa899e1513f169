# shellcheck shell=bash
# shellcheck disable=SC2034  # variables used by the scripts that source this file
# Helpers shared by start.sh, stop.sh and selftest.sh. Sourced after env.sh; not for callers.

D="$HDSGD_SLURM_DIR"
MUNGE_DIR="$D/munge"
MUNGE_SOCKET="$MUNGE_DIR/munge.socket.2"
MUNGE_PIDFILE="$MUNGE_DIR/munged.pid"
CTLD_PIDFILE="$D/run/slurmctld.pid"
SLURMD_PIDFILE="$D/run/slurmd.pid"
CTLD_LOG="$D/log/slurmctld.log"
SLURMD_LOG="$D/log/slurmd.log"
MUNGE_LOG="$D/log/munged.log"
# Marks a folder as ours, so that stop.sh only ever deletes inside a folder start.sh made.
MARKER="$D/.hdsgd-slurm"
NODE="$(hostname -s)"

log() { printf '[slurm %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
    printf '[slurm] error: %s\n' "$*" >&2
    exit 1
}
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

require_root() {
    [ "$(id -u)" = 0 ] || die "must run as root (the local cluster runs slurmctld/slurmd as root and installs packages)"
}

check_dir() {
    case "$D" in
        /?*) ;;
        *) die "HDSGD_SLURM_DIR must be an absolute path other than /, got '$D'" ;;
    esac
    # A unix socket path has at most 107 bytes.
    [ "${#MUNGE_SOCKET}" -lt 108 ] || die "HDSGD_SLURM_DIR too long for the munge socket path ($MUNGE_SOCKET)"
}

# alive PID: the process exists and is not a zombie (a daemon's parent is init, which here
# reaps it only 1-2 s after it exited; kill -0 would call a zombie alive).
alive() {
    local st
    st="$(sed -n 's/^[0-9]* (.*) \(.\) .*/\1/p' "/proc/$1/stat" 2>/dev/null)"
    [ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]
}

# pid_of PIDFILE COMM: the pid in PIDFILE if that process is alive and is COMM, else nothing.
pid_of() {
    local pid
    [ -r "$1" ] || return 0
    pid="$(tr -dc 0-9 <"$1")"
    [ -n "$pid" ] || return 0
    [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$2" ] && alive "$pid" && echo "$pid"
    return 0
}

# daemon_died PIDFILE COMM: the daemon wrote its pid file and that process is gone.
daemon_died() { [ -s "$1" ] && [ -z "$(pid_of "$1" "$2")" ]; }

# Processes of this cluster not named in a pid file: slurmstepd (and, should any survive their
# slurmstepd, job processes), recognised by SLURM_CONF=<our conf> in their environment, which
# they inherit from the slurmd that start.sh launched. Prints pids, one a line.
# shellcheck disable=SC2013
stray_pids() {
    local f p
    for f in $(grep -l -s -z -x -F "SLURM_CONF=$SLURM_CONF" /proc/[0-9]*/environ); do
        p="${f#/proc/}"
        p="${p%/environ}"
        [ "$p" = "$$" ] || [ "$p" = "$BASHPID" ] && continue
        if [ "$(cat "/proc/$p/comm" 2>/dev/null)" = slurmstepd ] ||
            grep -q -s -z '^SLURM_JOB_ID=' "/proc/$p/environ"; then
            echo "$p"
        fi
    done
}

# is_ancestor PID: true if PID is this shell or one of its ancestors (never kill those).
is_ancestor() {
    local p="$BASHPID"
    while [ -n "$p" ] && [ "$p" != 0 ]; do
        [ "$p" = "$1" ] && return 0
        p="$(awk '{ print $4 }' "/proc/$p/stat" 2>/dev/null)"
    done
    return 1
}

# wait_gone SECONDS PID...: true once none of the PIDs is alive.
wait_gone() {
    local limit="$1" start p left
    shift
    start="$(date +%s)"
    while :; do
        left=""
        for p in "$@"; do alive "$p" && left="$left $p"; done
        [ -z "$left" ] && return 0
        [ $(($(date +%s) - start)) -ge "$limit" ] && return 1
        sleep 0.2
    done
}

# terminate NAME SECONDS PID...: SIGTERM, wait up to SECONDS, then SIGKILL and wait again.
terminate() {
    local name="$1" limit="$2"
    shift 2
    [ $# -gt 0 ] || return 0
    kill -TERM "$@" 2>/dev/null || true
    if ! wait_gone "$limit" "$@"; then
        log "$name did not exit within ${limit}s of SIGTERM; sending SIGKILL"
        kill -KILL "$@" 2>/dev/null || true
        wait_gone 10 "$@" || die "$name (pid $*) survived SIGKILL"
    fi
}

show_logs() {
    local f
    for f in "$MUNGE_LOG" "$CTLD_LOG" "$D/log/slurmctld.stderr" "$SLURMD_LOG" "$D/log/slurmd.stderr"; do
        [ -s "$f" ] || continue
        printf '%s\n' "----- last 40 lines of $f -----" >&2
        tail -n 40 "$f" >&2
    done
    if [ -r "$SLURM_CONF" ]; then
        printf '%s\n' "----- $SLURM_CONF -----" >&2
        cat "$SLURM_CONF" >&2
    fi
}

# Live (non-zombie) processes of a SLURM cluster: every slurmctld, slurmd, slurmstepd and
# slurmscriptd, and our munged (a system munged is not ours). "pid comm args", one a line.
cluster_procs() {
    ps -eo pid=,stat=,comm=,args= | awk -v sock="--socket=$MUNGE_SOCKET" '
        $2 ~ /^Z/ { next }
        $3 ~ /^(slurmctld|slurmd|slurmstepd|slurmscriptd)$/ || ($3 == "munged" && index($0, sock)) {
            $2 = ""; print }'
}

node_state() { sinfo -h -n "$NODE" -o %T 2>/dev/null | head -n 1; }

ctld_up() { scontrol ping 2>/dev/null | grep -q 'is UP'; }
