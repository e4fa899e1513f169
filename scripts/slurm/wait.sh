#!/usr/bin/env bash
# Wait (bounded) until SLURM jobs have finished, without accounting (no sacct): polls squeue.
#
#     scripts/slurm/wait.sh TIMEOUT_SECONDS JOBID...     (after: source scripts/slurm/env.sh)
#
# A JOBID may be a plain job, a whole array (its array job id: all its tasks) or one task
# (ID_I). When all have left the queue it prints one line per job / array task,
#
#     <jobid> <STATE> <exit code:signal>        e.g. "12_3 COMPLETED 0:0", "12_1 CANCELLED 0:15"
#
# from `scontrol show job` (finished jobs stay there for MinJobAge = 600 s), and exits 0 if all
# are COMPLETED, 1 if any ended otherwise (FAILED, CANCELLED, TIMEOUT, NODE_FAIL, ...) or can
# never start (pending with reason DependencyNeverSatisfied), 2 on timeout or an unknown job.
set -uo pipefail
[ $# -ge 2 ] || {
    echo "usage: $0 TIMEOUT_SECONDS JOBID..." >&2
    exit 2
}
limit="$1"
shift
ids="$(
    IFS=,
    echo "$*"
)"
deadline=$(($(date +%s) + limit))
while :; do
    if ! q="$(squeue -h -t all -j "$ids" -o '%i %T %r' 2>&1)"; then
        echo "wait.sh: squeue failed: $q" >&2
        exit 2
    fi
    active="$(awk '$2 !~ /^(COMPLETED|FAILED|CANCELLED|TIMEOUT|NODE_FAIL|PREEMPTED|OUT_OF_MEMORY|BOOT_FAIL|DEADLINE)$/' <<<"$q")"
    [ -z "$active" ] && break
    never="$(awk '$2 == "PENDING" && $3 == "DependencyNeverSatisfied"' <<<"$q")"
    if [ -n "$never" ] && [ "$never" = "$active" ]; then
        echo "wait.sh: can never start (a dependency failed or was cancelled): $(awk '{ print $1 }' <<<"$never" | tr '\n' ' ')" >&2
        break
    fi
    if [ "$(date +%s)" -ge "$deadline" ]; then
        echo "wait.sh: timeout after ${limit}s; still active:" >&2
        echo "$active" >&2
        exit 2
    fi
    sleep 0.5
done
# One record per job / array task: "JobId=.. ArrayJobId=.. ArrayTaskId=.. JobState=.. ExitCode=..";
# a job that can never start shows as PENDING.
rc=0
out=""
while read -r line; do
    [ -n "$line" ] || continue
    id="$(sed -n 's/.*\bJobId=\([0-9]*\).*/\1/p' <<<"$line")"
    aj="$(sed -n 's/.*\bArrayJobId=\([0-9]*\).*/\1/p' <<<"$line")"
    at="$(sed -n 's/.*\bArrayTaskId=\([^ ]*\).*/\1/p' <<<"$line")"
    st="$(sed -n 's/.*\bJobState=\([A-Z_]*\).*/\1/p' <<<"$line")"
    ex="$(sed -n 's/.*\bExitCode=\([0-9:]*\).*/\1/p' <<<"$line")"
    [ -n "$aj" ] && [ -n "$at" ] && id="${aj}_${at}"
    out="$out$id $st $ex"$'\n'
    [ "$st" = COMPLETED ] || rc=1
done < <(for j in "$@"; do scontrol -o show job "$j"; done)
printf '%s' "$out" | sort -V -u
exit "$rc"
