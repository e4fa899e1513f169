#!/usr/bin/env python3
"""First time each run's column falls below (or rises above) a threshold, for the simulation and
its matched ODE, from an hdsgd results folder (trajectories.csv, ode.csv). Linear interpolation
between record times. Standard library only.

Usage:
  python3 scripts/crossing_times.py results/erf_validation --column eg --below 0.01 [--t-min 10]
"""

import argparse
import csv
import math
import os
import statistics
from collections import defaultdict


def crossings(path, col, thr, below, t_min):
    runs = defaultdict(list)
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            # The exact step time (t_exact) where the file has it; t is the nominal grid time.
            t = float(r.get("t_exact") or r["t"])
            runs[(int(r["n"]), int(r["seed"]))].append((t, float(r[col])))
    out = {}
    for key, pts in runs.items():
        pts.sort()
        out[key] = math.nan
        for (t0, y0), (t1, y1) in zip(pts, pts[1:]):
            if t1 < t_min:
                continue
            hit = (y1 < thr) if below else (y1 > thr)
            if hit:
                was = (y0 < thr) if below else (y0 > thr)
                out[key] = t1 if was or y1 == y0 else t0 + (thr - y0) * (t1 - t0) / (y1 - y0)
                break
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results")
    ap.add_argument("--column", default="eg")
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--below", type=float)
    g.add_argument("--above", type=float)
    ap.add_argument("--t-min", type=float, default=0.0, help="ignore crossings before this time")
    a = ap.parse_args()
    below = a.below is not None
    thr = a.below if below else a.above
    sim = crossings(os.path.join(a.results, "trajectories.csv"), a.column, thr, below, a.t_min)
    ode = crossings(os.path.join(a.results, "ode.csv"), a.column, thr, below, a.t_min)
    rel = "<" if below else ">"
    print(f"# first t >= {a.t_min} with {a.column} {rel} {thr} (nan: never), {a.results}")
    print("| N | seed | t_sim | t_ode | t_sim - t_ode |")
    print("|---|---|---|---|---|")
    by_n = defaultdict(list)
    for key in sorted(sim):
        ts, to = sim[key], ode.get(key, math.nan)
        by_n[key[0]].append((ts, to))
        print(f"| {key[0]} | {key[1]} | {ts:.4g} | {to:.4g} | {ts - to:.3g} |")
    print()
    print("| N | mean t_sim | sd t_sim | mean t_ode | sd t_ode |")
    print("|---|---|---|---|---|")
    for n, v in sorted(by_n.items()):
        s = [x for x, _ in v if not math.isnan(x)]
        o = [y for _, y in v if not math.isnan(y)]
        sd = lambda xs: statistics.stdev(xs) if len(xs) > 1 else math.nan  # noqa: E731
        ms = statistics.mean(s) if s else math.nan
        mo = statistics.mean(o) if o else math.nan
        print(f"| {n} | {ms:.4g} | {sd(s):.3g} | {mo:.4g} | {sd(o):.3g} |")


if __name__ == "__main__":
    main()
