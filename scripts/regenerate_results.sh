#!/usr/bin/env bash
# Regenerates every committed result under results/ from the shipped experiments.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release
bin=target/release/hdsgd
for exp in quickstart quadratic_validation quadratic_validation_2x2 erf_validation; do
  "$bin" run "experiments/$exp.toml" --force --quiet
done
