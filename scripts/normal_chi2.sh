#!/usr/bin/env bash
# χ² goodness of fit of both input generators (Box–Muller and the ziggurat) on 10⁹ numbers each,
# with the tail counts beyond 4σ, 5σ and 6σ (issue 17; not in CI: about a minute per generator on
# one core). The test, its bins and its tolerances: `chi_square_on_a_billion_numbers` in
# tests/normal_generator.rs. Set HDSGD_PORTABLE=1 or HDSGD_NO_AVX512=1 to run another code path
# (the streams are the same on all of them).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --release --test normal_generator -- --ignored --nocapture chi_square_on_a_billion_numbers
