#!/usr/bin/env bash
# shellcheck disable=SC2086,SC2013  # pid lists are split on purpose; pids and paths have no blanks
# Stop the private SLURM cluster started by start.sh and wipe its state.
#
#     scripts/slurm/stop.sh
#
# Cancels all jobs of the cluster, stops slurmd, slurmctld and munged (by their pid files
# under HDSGD_SLURM_DIR), kills any of its slurmstepd or job processes still alive, waits
# until all are gone, and deletes state, spool, pid files, socket and slurm.conf (the logs of
# the last run stay in $HDSGD_SLURM_DIR/log until the next start). Safe to run when nothing
# runs. Exit status 1 if a process of the cluster could not be stopped.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=env.sh
source "$HERE/env.sh"
# shellcheck source=lib.sh
source "$HERE/lib.sh"

require_root
check_dir
T0="$(now)"
if [ ! -e "$D" ]; then
    log "nothing to stop ($D does not exist)"
    exit 0
fi
[ -f "$MARKER" ] || die "$D exists but was not made by start.sh (no $MARKER); not touching it"

ctld="$(pid_of "$CTLD_PIDFILE" slurmctld)"
slurmd="$(pid_of "$SLURMD_PIDFILE" slurmd)"
munged="$(pid_of "$MUNGE_PIDFILE" munged)"

# 1. Cancel every job while slurmctld and slurmd still run, so that the slurmstepds end their
#    jobs' processes themselves (KillWait=5 s between SIGTERM and SIGKILL). Without a slurmd
#    nobody would end them: step 3 kills them.
if [ -n "$ctld" ] && [ -n "$slurmd" ] && [ -n "$munged" ] && [ -r "$SLURM_CONF" ] && ctld_up; then
    if [ -n "$(squeue -h -o %i 2>/dev/null | head -n 1)" ]; then
        log "cancelling remaining jobs"
        scancel --partition="$HDSGD_SLURM_PARTITION" 2>/dev/null || true
        deadline=$(($(date +%s) + 15))
        while [ -n "$(stray_pids)" ] && [ "$(date +%s)" -lt "$deadline" ]; do sleep 0.2; done
    fi
fi

# 2. slurmd and slurmctld, munged last (both slurm daemons authenticate through it while
#    shutting down).
terminate "slurmd/slurmctld" "$HDSGD_SLURM_STOP_TIMEOUT" $slurmd $ctld

# 3. Leftover slurmstepd / job processes of this cluster (e.g. after a crash of slurmd).
stray=""
for p in $(stray_pids); do is_ancestor "$p" || stray="$stray $p"; done
if [ -n "$stray" ]; then
    log "killing leftover slurmstepd/job processes:$stray"
    kill -KILL $stray 2>/dev/null || true
    wait_gone 10 $stray || die "leftover processes survived SIGKILL:$stray"
fi

terminate munged "$HDSGD_SLURM_STOP_TIMEOUT" $munged

# 4. A daemon whose pid file got lost but that runs with our slurm.conf / socket.
left=""
for f in $(grep -l -s -z -x -F -e "$SLURM_CONF" -e "--socket=$MUNGE_SOCKET" /proc/[0-9]*/cmdline); do
    p="${f#/proc/}"
    p="${p%/cmdline}"
    case "$(cat "/proc/$p/comm" 2>/dev/null)" in
        slurmctld | slurmd | munged) left="$left $p" ;;
    esac
done
if [ -n "$left" ]; then
    log "stopping daemons of this cluster without a pid file:$left"
    terminate "daemons" 10 $left
fi

# 5. The dead daemons are zombies until init reaps them (here 1-2 s later), and `pgrep -x
#    slurmd` still lists zombies: wait (bounded, 10 s) until they are gone from /proc.
deadline=$(($(date +%s) + 10))
for p in $slurmd $ctld $stray $munged $left; do
    while [ -e "/proc/$p" ] && [ "$(date +%s)" -lt "$deadline" ]; do sleep 0.1; done
done

# 6. State.
rm -rf "$D/state" "$D/spool" "$D/run" "$MUNGE_DIR" "$SLURM_CONF" "$SLURM_CONF.tmp"
log "cluster stopped in $(elapsed "$T0") s"
