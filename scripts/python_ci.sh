#!/usr/bin/env bash
# The Python package's CI: builds the CLI (the tests compare against it), installs the package with
# the documented command `pip install ./python` into its own virtual environment, and runs the
# pytest suite python/tests/ against the installed wheel.
#
#   scripts/python_ci.sh            (idempotent; the venv is target/pyvenv, reused between runs)
#
# Needs Rust (cargo) and Python ≥ 3.9 with venv; downloads only from PyPI and crates.io. The binding
# crate python/ shares the top-level target/ (CARGO_TARGET_DIR), so its dependencies common with
# the CLI are built once.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
export CARGO_TARGET_DIR="$root/target"
python=${PYTHON:-python3}
venv="$root/target/pyvenv"

cargo build --release --quiet
if cargo fmt --version >/dev/null 2>&1; then cargo fmt --manifest-path python/Cargo.toml -- --check; fi
if cargo clippy --version >/dev/null 2>&1; then
  cargo clippy --quiet --release --manifest-path python/Cargo.toml -- -D warnings
fi

if [[ ! -x "$venv/bin/python" ]]; then
  "$python" -m venv "$venv"
fi
export PIP_DISABLE_PIP_VERSION_CHECK=1
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet pytest numpy pandas
# The documented install command (maturin comes from PyPI in pip's isolated build environment).
"$venv/bin/python" -m pip install --quiet "$root/python"

# Run from outside the source tree so that `import hdsgd` is the installed package.
cd "$root/target"
HDSGD_CLI="$root/target/release/hdsgd" "$venv/bin/python" -m pytest -q -p no:cacheprovider "$root/python/tests"
