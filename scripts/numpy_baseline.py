#!/usr/bin/env python3
"""The direct simulator's SGD step as a numpy per-sample loop (what one would write by hand).

Same step as `hdsgd bench` (theory.md §2, B = 1, no weight decay, no noise): x ~ N(0, I_N),
lambda = W x/sqrt(N), nu = W* x/sqrt(N), r = v.g(nu) - a.g(lambda), delta = a g'(lambda) r,
W += (eta/sqrt(N)) delta x^T, with p = p* = 4, a = v = 1/p, eta = 0.01.

Prints ns per sample for each N, on the process CPU clock (time.process_time, comparable to the
thread CPU clock of `hdsgd bench` since BLAS is pinned to one thread by the wrapper) and on the wall
clock. Run it through scripts/numpy_baseline.sh, which installs numpy into scripts/.venv.
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np


def g_and_dg(activation):
    if activation == "quadratic":
        return (lambda z: z * z), (lambda z: 2.0 * z)
    if activation == "erf":
        erf = np.vectorize(math.erf)
        c = math.sqrt(2.0 / math.pi)
        return (lambda z: erf(z / math.sqrt(2.0))), (lambda z: c * np.exp(-0.5 * z * z))
    raise SystemExit(f"unknown activation {activation!r}")


def bench(n, p, activation, budget, seed=1):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((p, n))
    ws = rng.standard_normal((p, n))
    a = np.full(p, 1.0 / p)
    v = np.full(p, 1.0 / p)
    eta = 0.01
    g, dg = g_and_dg(activation)
    sq = math.sqrt(n)

    def steps(k):
        nonlocal w
        for _ in range(k):
            x = rng.standard_normal(n)
            lam = w @ x / sq
            nu = ws @ x / sq
            r = v @ g(nu) - a @ g(lam)
            delta = a * dg(lam) * r
            w += (eta / sq) * np.outer(delta, x)

    steps(10)  # warm-up
    batches = []
    for _ in range(5):
        k, c0, t0 = 0, time.process_time(), time.perf_counter()
        while time.process_time() - c0 < budget / 5:
            steps(10)
            k += 10
        batches.append(((time.process_time() - c0) / k * 1e9, (time.perf_counter() - t0) / k * 1e9))
    # best of 5 batches, as `hdsgd bench` does
    cpu = min(b[0] for b in batches)
    wall = min(b[1] for b in batches)
    assert np.all(np.isfinite(w)), "the benchmarked run diverged"
    return cpu, wall


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", default="1000,10000,100000", help="comma-separated N")
    ap.add_argument("--p", type=int, default=4, help="p = p*")
    ap.add_argument("--activation", default="quadratic", choices=["quadratic", "erf"])
    ap.add_argument("--budget", type=float, default=2.0, help="CPU seconds per N")
    ap.add_argument("--json", help="also write the results as JSON to this file")
    args = ap.parse_args()
    print(f"numpy {np.__version__}, python {sys.version.split()[0]}, "
          f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS')}, "
          f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"{'activation':<10} {'N':>8} {'p':>3} {'cpu_us/sample':>14} {'wall_us/sample':>15}")
    rows = []
    for n in (int(s) for s in args.n.split(",")):
        cpu, wall = bench(n, args.p, args.activation, args.budget)
        rows.append({"activation": args.activation, "n": n, "p": args.p, "cpu_ns": cpu, "wall_ns": wall})
        print(f"{args.activation:<10} {n:>8} {args.p:>3} {cpu / 1e3:>14.1f} {wall / 1e3:>15.1f}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"numpy": np.__version__, "rows": rows}, f, indent=2)
            f.write("\n")


if __name__ == "__main__":
    main()
