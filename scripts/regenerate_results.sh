#!/usr/bin/env bash
# Regenerates the committed results under results/ from the shipped experiments.
#   scripts/regenerate_results.sh          the `run` experiments (quickstart, validations; ≈ 5 min on 2 cores)
#   scripts/regenerate_results.sh --all    also the studies (escape, scaling, geometry, chain; ≈ 3 h on 2 idle cores,
#                                          most of it escape_quadratic_chain_full at N = 10⁷)
# The escape studies resume from the escape_runs.csv they find; --all starts them afresh (--force).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release
bin=target/release/hdsgd
"$bin" run experiments/quickstart.toml --out results/quickstart --force --quiet
for exp in quadratic_validation quadratic_validation_2x2 erf_validation; do
  "$bin" run "experiments/$exp.toml" --force --quiet
done
if [[ "${1:-}" == "--all" ]]; then
  for exp in escape_quadratic_p1 escape_quadratic_p2 escape_quadratic_p4 escape_quadratic_p2_chain \
             escape_quadratic_p4_chain escape_quadratic_chain escape_quadratic_chain_full; do
    # Exit code 3: outputs written, some runs diverged (a measured outcome of these studies).
    "$bin" escape "experiments/$exp.toml" --force --quiet || [[ $? -eq 3 ]]
  done
  for exp in scaling_quadratic scaling_erf scaling_quadratic_chain; do
    "$bin" scaling "experiments/$exp.toml" --force --quiet || [[ $? -eq 3 ]]
  done
  for exp in geometry_conserved geometry_conserved_gf geometry_selection overparam_quadratic overparam_quadratic_pstar2; do
    "$bin" run "experiments/$exp.toml" --force --quiet
  done
  for exp in geometry_hessian geometry_hessian_p4_pstar2; do
    "$bin" hessian "experiments/$exp.toml" --force --quiet
  done
  for exp in phase_grid phase_fig2 phase_fig4a; do   # docs/phase_diagram.md; ≈ 2 + 0.5 + 6 min
    "$bin" phase "experiments/$exp.toml" --force --quiet
  done
  python3 scripts/compare_escape.py --direct results/escape_quadratic_p1 \
    --chain results/escape_quadratic_chain results/escape_quadratic_chain_full --out results/escape_quadratic_chain
  python3 scripts/compare_scaling.py results/scaling_quadratic results/scaling_quadratic_chain \
    results/scaling_quadratic_chain/scaling_chain_vs_direct.svg
fi
