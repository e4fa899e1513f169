#!/usr/bin/env bash
# Self-test of the local SLURM cluster: start, job array + dependent job, a failed job, scancel
# of one array task mid-run and its resubmission alone, final states without accounting, stop.
#
#     scripts/slurm/selftest.sh        (as root; HDSGD_SLURM_KEEP=1 leaves the cluster running)
#
# Exits 0 when every check passed and nothing of the cluster is left running.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=env.sh
source "$HERE/env.sh"
# shellcheck source=lib.sh
source "$HERE/lib.sh"
WAIT="$HERE/wait.sh"

require_root
T0="$(now)"
W="$(mktemp -d /tmp/hdsgd-slurm-selftest.XXXXXX)"
chmod 755 "$W"
TIMINGS=""
timing() { TIMINGS="$TIMINGS$(printf '  %-58s %6s s' "$1" "$2")"$'\n'; }
fail() {
    printf '[selftest] FAIL: %s\n' "$*" >&2
    exit 1
}
ok() { printf '[selftest] ok: %s\n' "$*" >&2; }

cleanup() {
    local rc=$?
    trap - EXIT
    if [ "$rc" != 0 ]; then
        echo "[selftest] failed (exit $rc); queue and logs:" >&2
        squeue -t all -o '%i %T %r' >&2 2>/dev/null || true
        show_logs
    fi
    if [ "${HDSGD_SLURM_KEEP:-0}" != 1 ]; then
        local t
        t="$(now)"
        "$HERE/stop.sh" || rc=1
        timing "stop.sh" "$(elapsed "$t")"
        if left="$(cluster_procs)" && [ -n "$left" ]; then
            echo "[selftest] FAIL: processes left after stop.sh:" >&2
            echo "$left" >&2
            rc=1
        else
            echo "[selftest] ok: no slurmctld/slurmd/slurmstepd/munged left" >&2
        fi
    fi
    cd /
    rm -rf "$W"
    timing "selftest total" "$(elapsed "$T0")"
    echo "[selftest] timings:" >&2
    printf '%s' "$TIMINGS" >&2
    [ "$rc" = 0 ] && echo "[selftest] PASSED" >&2 || echo "[selftest] FAILED" >&2
    exit "$rc"
}
trap cleanup EXIT

# wait_state TIMEOUT JOB STATE: until squeue shows JOB (a job or ID_I task) in STATE.
wait_state() {
    local deadline=$(($(date +%s) + $1)) s
    while :; do
        s="$(squeue -h -t all -j "$2" -o %T 2>/dev/null | head -n 1)"
        [ "$s" = "$3" ] && return 0
        [ "$(date +%s)" -ge "$deadline" ] && fail "job $2 not $3 within $1 s (state '$s')"
        sleep 0.2
    done
}

# --- start ---------------------------------------------------------------------------------
t="$(now)"
"$HERE/start.sh"
timing "start.sh (incl. apt-get install if it was needed)" "$(elapsed "$t")"
t="$(now)"
"$HERE/start.sh" 2>&1 | grep -q 'reusing it' || fail "second start.sh did not reuse the running cluster"
timing "start.sh again (reuse)" "$(elapsed "$t")"
ok "start.sh twice: second call reused the cluster"
CPUS="$(sinfo -h -n "$NODE" -o %c)"
[ "$CPUS" -ge 1 ] || fail "node has no CPUs"
cd "$W"

# --- 1. array of 4 one-CPU tasks + a job that depends on the whole array -------------------
mkdir -p "$W/a"
cat >"$W/a/task.sh" <<EOF
#!/bin/bash
i=\$SLURM_ARRAY_TASK_ID
date +%s.%N >$W/a/start_\$i
sleep 3
echo "task \$i of array \$SLURM_ARRAY_JOB_ID, job \$SLURM_JOB_ID, cpus-per-task \$SLURM_CPUS_PER_TASK" >$W/a/out_\$i
date +%s.%N >$W/a/end_\$i
EOF
t="$(now)"
A="$(sbatch --parsable --array=0-3 --cpus-per-task=1 --job-name=arr -o "$W/a/slurm-%A_%a.out" "$W/a/task.sh")"
M="$(sbatch --parsable --dependency=afterok:"$A" --job-name=merge -o "$W/a/merge.out" \
    --wrap "date +%s.%N >$W/a/merge_start; cat $W/a/out_0 $W/a/out_1 $W/a/out_2 $W/a/out_3 >$W/a/merged")"
echo "[selftest] array job $A, dependent job $M" >&2
states="$("$WAIT" 60 "$A" "$M")" || fail "array or merge job did not complete: $states"
timing "array 0-3 (3 s tasks on $CPUS CPUs) + afterok job" "$(elapsed "$t")"
echo "$states" >&2
[ "$(grep -c ' COMPLETED 0:0$' <<<"$states")" = 5 ] || fail "expected 5 COMPLETED lines"
for i in 0 1 2 3; do
    grep -q "^task $i of array $A, .* cpus-per-task 1$" "$W/a/out_$i" || fail "output of task $i"
done
[ "$(wc -l <"$W/a/merged")" = 4 ] || fail "merged output has not 4 lines"
# The dependent job started after every task ended; tasks ran concurrently, at most CPUS at once.
last_end="$(cat "$W"/a/end_* | sort -g | tail -n 1)"
awk -v s="$(cat "$W/a/merge_start")" -v e="$last_end" 'BEGIN { exit !(s >= e) }' ||
    fail "dependent job started before the array finished"
conc="$(for i in 0 1 2 3; do
    echo "$(cat "$W/a/start_$i") 1"
    echo "$(cat "$W/a/end_$i") -1"
done | sort -g | awk '{ c += $2; if (c > m) m = c } END { print m }')"
want=$((CPUS < 4 ? CPUS : 4))
[ "$conc" = "$want" ] || fail "expected $want array tasks at once, saw $conc"
ok "array 0-3: all COMPLETED, outputs present, $conc tasks ran at once on $CPUS CPUs, afterok job ran last"

# --- 2. a failing job and a job that depends on it -----------------------------------------
t="$(now)"
F="$(sbatch --parsable -o /dev/null --wrap 'exit 3')"
FD="$(sbatch --parsable --dependency=afterok:"$F" -o /dev/null --wrap true)"
if states="$("$WAIT" 30 "$F" "$FD")"; then fail "wait.sh succeeded on a failed job"; fi
echo "$states" >&2
grep -qx "$F FAILED 3:0" <<<"$states" || fail "job $F not 'FAILED 3:0'"
grep -qx "$FD PENDING 0:0" <<<"$states" || fail "dependent job $FD not left pending"
scontrol -o show job "$FD" | grep -q 'Reason=DependencyNeverSatisfied' || fail "no DependencyNeverSatisfied"
scancel "$FD"
wait_state 10 "$FD" CANCELLED
timing "failed job + its never-satisfied dependent" "$(elapsed "$t")"
ok "failed job: FAILED 3:0; afterok dependent stays PENDING (DependencyNeverSatisfied) until scancel"

# --- 3. scancel one array task mid-run, resubmit that index alone ---------------------------
mkdir -p "$W/c"
cat >"$W/c/task.sh" <<EOF
#!/bin/bash
i=\$SLURM_ARRAY_TASK_ID
echo \$\$ >$W/c/pid_\$i
# Task 2 hangs while the file hang_2 exists (the first time), so that it can be cancelled.
if [ -e $W/c/hang_\$i ]; then
    sleep 300 &
    echo \$! >$W/c/sleeppid_\$i
    touch $W/c/hanging_\$i
    wait
fi
sleep 1
echo "task \$i job \$SLURM_JOB_ID" >$W/c/out_\$i
EOF
touch "$W/c/hang_2"
C="$(sbatch --parsable --array=0-3 --cpus-per-task=1 -o "$W/c/slurm-%A_%a.out" "$W/c/task.sh")"
MC="$(sbatch --parsable --dependency=afterok:"$C" -o "$W/c/merge.out" \
    --wrap "cat $W/c/out_0 $W/c/out_1 $W/c/out_2 $W/c/out_3 >$W/c/merged")"
echo "[selftest] array job $C, dependent job $MC" >&2
wait_state 30 "${C}_2" RUNNING
deadline=$(($(date +%s) + 10))
until [ -e "$W/c/hanging_2" ]; do
    [ "$(date +%s)" -lt "$deadline" ] || fail "task 2 did not start hanging"
    sleep 0.1
done
pids2="$(cat "$W/c/pid_2" "$W/c/sleeppid_2")"
t="$(now)"
scancel "${C}_2"
wait_state 15 "${C}_2" CANCELLED
deadline=$(($(date +%s) + 15))
while alive "${pids2%%[[:space:]]*}" || alive "${pids2##*[[:space:]]}"; do
    [ "$(date +%s)" -lt "$deadline" ] || fail "task 2's processes survive scancel"
    sleep 0.1
done
timing "scancel of a running array task (state + processes gone)" "$(elapsed "$t")"
if states="$("$WAIT" 60 "$C" "$MC")"; then fail "wait.sh succeeded despite a cancelled task"; fi
echo "$states" >&2
grep -qx "${C}_2 CANCELLED 0:15" <<<"$states" || fail "task ${C}_2 not 'CANCELLED 0:15'"
[ "$(grep -c ' COMPLETED 0:0$' <<<"$states")" = 3 ] || fail "the other 3 tasks did not complete"
[ ! -e "$W/c/out_2" ] || fail "cancelled task wrote its output"
scontrol -o show job "$MC" | grep -q 'JobState=PENDING Reason=DependencyNeverSatisfied' ||
    fail "merge job not pending on DependencyNeverSatisfied"
ok "scancel ${C}_2: CANCELLED 0:15, its processes gone, other tasks COMPLETED, merge job stuck"

# Resubmit only index 2 (same script, now without the hang) and point the merge job at it.
rm -f "$W/c/hang_2"
t="$(now)"
R="$(sbatch --parsable --array=2 --cpus-per-task=1 -o "$W/c/slurm-%A_%a.out" "$W/c/task.sh")"
scontrol update JobId="$MC" Dependency=afterok:"$R"
states="$("$WAIT" 60 "$R" "$MC")" || fail "resubmitted task or merge did not complete: $states"
echo "$states" >&2
grep -qx "${R}_2 COMPLETED 0:0" <<<"$states" || fail "resubmitted task not '${R}_2 COMPLETED 0:0'"
grep -qx "task 2 job [0-9]*" "$W/c/out_2" || fail "resubmitted task 2 output"
[ "$(wc -l <"$W/c/merged")" = 4 ] || fail "merged output after resubmission has not 4 lines"
timing "resubmit --array=2 + re-pointed merge job" "$(elapsed "$t")"
ok "sbatch --array=2 resubmission: ${R}_2 COMPLETED with SLURM_ARRAY_TASK_ID=2; merge re-pointed with scontrol update ran"

# --- 4. final states without accounting ----------------------------------------------------
scontrol -o show job "${C}_2" | grep -q 'JobState=CANCELLED .*ExitCode=0:15' || fail "scontrol show job ${C}_2"
[ "$(squeue -h -t all -j "$F" -o %T)" = FAILED ] || fail "squeue -t all -j $F"
ok "final states readable via 'scontrol -o show job ID' and 'squeue -t all -j ID -o %T' (MinJobAge=600 s)"
