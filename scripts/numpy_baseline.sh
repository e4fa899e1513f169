#!/bin/sh
# Runs scripts/numpy_baseline.py in a local virtual environment (scripts/.venv, gitignored),
# creating it and installing numpy on first use. BLAS is pinned to one thread: the comparison
# with `hdsgd bench` is one core against one core. Arguments are passed to the script.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
venv="$here/.venv"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --upgrade pip
    "$venv/bin/python" -m pip install --quiet numpy
fi
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
exec "$venv/bin/python" "$here/numpy_baseline.py" "$@"
