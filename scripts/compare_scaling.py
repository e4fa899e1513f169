#!/usr/bin/env python3
"""Chain vs direct finite-size fluctuations (issue 4), Python standard library only.

For each N present in both `scaling.csv` files (written by `hdsgd scaling`) and each time window,
prints the window-averaged standard deviation over seeds, sqrt(mean_t Var[x(t)]), of a few
observables for the chain and the direct simulator, and their ratio. The record times of a given N
are the same for both simulators. With S seeds the relative standard error of one std is about
1/sqrt(2(S - 1)) (0.10 for S = 48), so a ratio has a relative spread of about 0.15 (more for the
heavy-tailed late windows); the ratios should scatter around 1. Usage:

    python3 scripts/compare_scaling.py results/scaling_quadratic results/scaling_quadratic_chain
"""

import csv
import math
import sys


def load(folder):
    d = {}
    with open(f"{folder}/scaling.csv") as f:
        for r in csv.DictReader(f):
            d.setdefault((int(r["n"]), r["observable"]), {})[float(r["t"])] = float(r["variance"])
    return d


def main():
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    direct, chain = load(sys.argv[1]), load(sys.argv[2])
    ns = sorted({n for n, _ in direct} & {n for n, _ in chain})
    windows = [(0.1, 1.0), (2.0, 5.0), (30.0, 40.0)]
    print("window-averaged std over seeds: chain/direct = ratio, for N =", ns)
    for obs in ("eg", "q_0_0", "m_0_0", "tr_q", "norm_m"):
        for w in windows:
            row = []
            for n in ns:
                tt = [t for t in direct[(n, obs)] if w[0] <= t <= w[1]]
                if tt != [t for t in chain[(n, obs)] if w[0] <= t <= w[1]]:
                    raise SystemExit(f"record times differ at N = {n}")
                sc = math.sqrt(sum(chain[(n, obs)][t] for t in tt) / len(tt))
                sd = math.sqrt(sum(direct[(n, obs)][t] for t in tt) / len(tt))
                row.append(f"{sc:.3g}/{sd:.3g}={sc / sd:.2f}")
            print(f"{obs:7s} t in [{w[0]}, {w[1]}]:", "  ".join(row))


if __name__ == "__main__":
    main()
