#!/usr/bin/env python3
"""Largest simulation-vs-ODE deviation per N in an hdsgd results folder.

Reads RESULTS/trajectories.csv (SGD) and RESULTS/ode.csv (matched ODE: one ODE per run, same
`seed`, same record times), pairs rows on (n, seed, t) and prints, for every N, the largest
|sim - ode| over seeds and times for e_g and each overlap column (q_i_j, m_i_k), the maximum over
all overlap columns, and sqrt(N) times these (constant across N if the deviations are O(N^-1/2)).
Also prints, per N, the root-mean-square deviation over seeds and times of each column (the typical
size of the fluctuations, as opposed to the largest one), and the N^-1/2 amplitude
sigma_k = sqrt(mean over all N and seeds of N·(sim - ode)^2) at the k-th record time, maximised over
k: the O(1) standard deviation that a k/sqrt(N) tolerance band should be a multiple of.

Generic over columns: every column other than n, seed, t and train_loss is compared, unless
--columns is given. Standard library only.

Usage:
  python3 scripts/max_deviation.py results/erf_validation [--t-max 30] [--columns eg,q_0_0]
"""

import argparse
import csv
import math
import os
import sys
from collections import defaultdict

SKIP = {"n", "seed", "t", "t_exact", "train_loss"}


def load(path):
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
        return reader.fieldnames, rows


def key(row):
    # Times are written by the same code for both files; rounding only guards the float text.
    return int(row["n"]), int(row["seed"]), round(float(row["t"]), 9)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", help="results folder holding trajectories.csv and ode.csv")
    ap.add_argument("--t-max", type=float, default=math.inf, help="only compare times t <= T")
    ap.add_argument("--t-min", type=float, default=0.0, help="only compare times t >= T")
    ap.add_argument("--columns", help="comma-separated columns (default: eg and every overlap column)")
    args = ap.parse_args()

    fields, sim = load(os.path.join(args.results, "trajectories.csv"))
    _, ode = load(os.path.join(args.results, "ode.csv"))
    if args.columns:
        cols = [c.strip() for c in args.columns.split(",") if c.strip()]
        missing = [c for c in cols if c not in fields]
        if missing:
            sys.exit(f"unknown column(s): {', '.join(missing)}; available: {', '.join(fields)}")
    else:
        cols = [c for c in fields if c not in SKIP]
    overlap_cols = [c for c in cols if c != "eg"]

    ode_by_key = {key(r): r for r in ode}
    worst = defaultdict(lambda: {c: (0.0, None) for c in cols})  # n -> col -> (dev, (seed, t))
    sumsq = defaultdict(lambda: {c: 0.0 for c in cols})  # n -> col -> sum of squared deviations
    pairs = defaultdict(int)
    # (n, seed) -> list of (t, {col: dev}) for the per-record-index amplitude.
    runs = defaultdict(list)
    unmatched = 0
    for r in sim:
        k = key(r)
        if not (args.t_min <= k[2] <= args.t_max):
            continue
        o = ode_by_key.get(k)
        if o is None:
            unmatched += 1
            continue
        pairs[k[0]] += 1
        devs = {}
        runs[(k[0], k[1])].append((k[2], devs))
        for c in cols:
            d = abs(float(r[c]) - float(o[c]))
            sumsq[k[0]][c] += d * d
            devs[c] = d
            if not math.isfinite(d):
                d = math.inf
            if d > worst[k[0]][c][0] or worst[k[0]][c][1] is None:
                worst[k[0]][c] = (d, (k[1], k[2]))
    if not pairs:
        sys.exit("no (n, seed, t) rows in common between trajectories.csv and ode.csv in the chosen time range")

    rng = f"{args.t_min} <= t <= {args.t_max}"
    print(f"# max |sim - ode| over seeds and times ({rng}), {args.results}")
    head = ["N", "pairs"] + cols + (["overlaps (max)", "sqrt(N)*eg", "sqrt(N)*overlaps"] if overlap_cols else [])
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for n in sorted(pairs):
        w = worst[n]
        row = [str(n), str(pairs[n])] + [f"{w[c][0]:.3g}" for c in cols]
        if overlap_cols:
            ov = max(w[c][0] for c in overlap_cols)
            eg = w["eg"][0] if "eg" in w else float("nan")
            row += [f"{ov:.3g}", f"{math.sqrt(n) * eg:.3g}", f"{math.sqrt(n) * ov:.3g}"]
        print("| " + " | ".join(row) + " |")
    print()
    print("# where the maximum is reached (seed index, t)")
    for n in sorted(pairs):
        print(f"N = {n}: " + ", ".join(f"{c} @ seed {w[1][0]}, t = {w[1][1]:.4g}" for c, w in worst[n].items()))
    print()
    print(f"# root-mean-square sim - ode over seeds and times ({rng})")
    head = ["N"] + cols + ["sqrt(N)*max rms"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for n in sorted(pairs):
        rms = {c: math.sqrt(sumsq[n][c] / pairs[n]) for c in cols}
        row = [str(n)] + [f"{rms[c]:.3g}" for c in cols] + [f"{math.sqrt(n) * max(rms.values()):.3g}"]
        print("| " + " | ".join(row) + " |")
    # Amplitude per record index (the k-th recorded time of every run; times differ across N only
    # by the rounding to whole steps).
    amp = defaultdict(lambda: defaultdict(float))
    count = defaultdict(int)
    t_of = {}
    for (n, _seed), recs in sorted(runs.items()):
        for idx, (t, devs) in enumerate(sorted(recs, key=lambda x: x[0])):
            count[idx] += 1
            t_of[idx] = t
            for c, d in devs.items():
                amp[idx][c] += n * d * d
    print()
    print(f"# sqrt(N)-scaled standard deviation over all N and seeds, maximised over record times ({rng})")
    best = {}
    for c in cols:
        vals = [(math.sqrt(amp[i][c] / count[i]), t_of[i]) for i in count]
        best[c] = max(vals)
    print("| " + " | ".join(cols + ["max"]) + " |")
    print("|" + "---|" * (len(cols) + 1))
    top = max(best.values())
    print("| " + " | ".join([f"{best[c][0]:.3g} (t={best[c][1]:.3g})" for c in cols] + [f"{top[0]:.3g}"]) + " |")
    if unmatched:
        print(f"\nnote: {unmatched} simulation rows had no ODE row (diverged or stopped runs)", file=sys.stderr)


if __name__ == "__main__":
    main()
