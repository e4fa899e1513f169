#!/usr/bin/env bash
# The SLURM tests of issue 13 (tests/cluster.rs) against a real local one-node cluster:
# builds the tests, starts the cluster (scripts/slurm/start.sh, installs slurm-wlm + munge if
# missing), runs the ignored tests of tests/cluster.rs one at a time, and stops the cluster
# again on any exit (scripts/slurm/stop.sh), leaving nothing running. As root:
#
#     scripts/cluster_test.sh            (≈ 35 s on 2 cores after the build)
#
# Exit code: that of the tests (or of start.sh), 1 if stop.sh failed.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=slurm/env.sh
source scripts/slurm/env.sh
T0=$(date +%s)
# Build first: no cluster runs while cargo compiles, and a build error starts nothing.
cargo test --release --test cluster --no-run
stop() {
    local rc=$?
    trap - EXIT INT TERM
    scripts/slurm/stop.sh || rc=1
    echo "[cluster_test] total $(($(date +%s) - T0)) s, exit $rc" >&2
    exit "$rc"
}
trap stop EXIT INT TERM
scripts/slurm/start.sh
cargo test --release --test cluster -- --ignored --test-threads=1 --nocapture
