#!/usr/bin/env bash
# Issue 12 catalogue: every bad input or degenerate design of the issue, run through the CLI, with its
# exit code and the first error or warning line. Takes a few seconds after the build:
#   scripts/bad_inputs_catalogue.sh            (uses target/release/hdsgd; BIN=... to choose another)
set -uo pipefail
cd "$(dirname "$0")/.."
bin=${BIN:-target/release/hdsgd}
w=$(mktemp -d)
trap 'rm -rf "$w"' EXIT
cat > "$w/base.toml" <<'T'
name = "cat"
[model]
activation = "quadratic"
p = 2
p_star = 1
v = "ones"
[training]
eta = 0.2
[simulation]
n = [100, 200]
seeds = 3
[time]
t_max = 5.0
points = 10
T
cat > "$w/esc.toml" <<'T'
name = "esc"
[model]
activation = "quadratic"
p = 1
p_star = 1
a = "ones"
v = "ones"
[init]
sigma0 = 0.1
[training]
eta = 0.15
[simulation]
n = [100, 200]
seeds = 4
[time]
t_max = 1.0
points = 20
[escape]
fraction = 0.5
T
# tc NAME SED-EXPR COMMAND [ARGS...]: the case, its command, exit code, first error/warning (2 lines).
tc() {
  local name=$1 expr=$2 cmd=$3; shift 3
  local base=${BASE:-$w/base.toml}
  sed -e "$expr" "$base" > "$w/c.toml"
  rm -rf "$w/out"
  timeout 120 "$bin" "$cmd" "$w/c.toml" --out "${OUT:-$w/out}" "$@" > "$w/stdout" 2> "$w/stderr"
  local rc=$?
  local msg
  msg=$(grep -E "^(error|warning)" -A1 "$w/stderr" | head -2 | cut -c1-300 | tr '\n' ' ')
  printf '%s | `hdsgd %s%s` | exit %s | %s\n' "$name" "$cmd" "${*:+ $*}" "$rc" "$msg"
}
OUT=/etc/hostname/sub tc "unwritable --out (a file as parent), run" "" run
OUT=/etc/hostname/sub tc "unwritable --out, escape" "" escape
OUT=/proc/sys/x tc "unwritable --out (read-only /proc), scaling" "" scaling
OUT=/tmp tc "existing non-empty output without --force" "" run
tc "N = 1e12" 's/n = \[100, 200\]/n = [1000000000000]/' run
tc "N = 1e10" 's/n = \[100, 200\]/n = [10000000000]/' run
tc "N = 1e12, chain simulator" 's/n = \[100, 200\]/n = [1000000000000]\nsimulator = "chain"/' run
tc "batch = 1e12" 's/eta = 0.2/eta = 0.2\nbatch = 1000000000000/' run
tc "points = 1e9" 's/points = 10/points = 1000000000/' run
tc "p = 10000" 's/^p = 2/p = 10000/' run
tc "p = 300 (plateau)" 's/^p = 2/p = 300/' plateau
tc "seeds = 1e9" 's/seeds = 3/seeds = 1000000000/' run
tc "--threads 100000" '' run --threads 100000
tc "batch > samples of a whole run" 's/eta = 0.2/eta = 0.2\nbatch = 1001/' run
tc "record times past t_max (t_max = 5, B/N = 2)" 's/eta = 0.2/eta = 0.2\nbatch = 200/; s/n = \[100, 200\]/n = [100]/' run
tc "small overshoot (B = 3, N = 200, t_max = 1)" 's/eta = 0.2/eta = 0.2\nbatch = 3/; s/t_max = 5.0/t_max = 1.0/' run
tc "duplicated N" 's/n = \[100, 200\]/n = [100, 100]/' run
tc "scaling window beyond t_max" 's/points = 10/points = 10\n[scaling]\nwindows = [[1.0, 50.0]]/' scaling
tc "scaling window with no record time" 's/points = 10/points = 10\n[scaling]\nwindows = [[1.1, 1.2]]/' scaling
tc 'a = "twos" (message on the 2nd..4th lines)' 's/v = "ones"/v = "ones"\na = "twos"/' check
tc "diverging runs" 's/^p = 2/p = 1/; s/v = "ones"/v = "ones"\na = "ones"/; s/eta = 0.2/eta = 0.5/; s/t_max = 5.0/t_max = 20.0/' run
tc "usage error" '' run --bogus
BASE=$w/esc.toml tc "escape, every run censored" '' escape
echo "  escape_summary.csv: $(sed -n 2p "$w/out/escape_summary.csv")"
echo "  escape header: $(grep 'μ =' "$w/stderr")"
echo "  escape_runs.csv first line: $(head -1 "$w/out/escape_runs.csv"); hash in escape_runs.json: $(grep -m1 config_hash "$w/out/escape_runs.json" | tr -d ' ,')"
grep -o "invalid value: [^|]*" <("$bin" check <(sed 's/v = "ones"/v = "ones"\na = "twos"/' "$w/base.toml") 2>&1 | tr '\n' '|') | head -1 | sed 's/^/  a = "twos": /'
