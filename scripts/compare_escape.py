#!/usr/bin/env python3
"""Chain vs direct plateau-escape times (issue 4): KS tests, ln N fits, one figure.

Python standard library only. Reads the `escape_times.csv` and `escape_fit.json` written by
`hdsgd escape` in each results folder, and writes to OUT:

* `comparison.csv`  per N present in both the direct and the chain results: counts, means ± s.e.,
  the difference in units of its standard error, and the two-sample Kolmogorov-Smirnov statistic
  of the escape times with its asymptotic p-value;
* `fits.csv`        weighted least-squares fits mean t_esc = slope ln N + intercept (weights 1/se^2,
  the same estimator as `hdsgd escape`) over several N ranges, next to the theory slope 1/(2 mu);
* `escape_chain_vs_direct.svg`  mean escape time ± s.e. vs ln N of both simulators on the same axes,
  with the theory slope drawn through the chain points.

Means are over escaped runs only, as in `hdsgd escape`; the KS tests also use only escaped runs
(the censored and diverged counts are reported next to them). Usage:

    python3 scripts/compare_escape.py --direct results/escape_quadratic_p1 \
        --chain results/escape_quadratic_chain results/escape_quadratic_chain_full \
        --out results/escape_quadratic_chain
"""

import argparse
import csv
import json
import math
import os


def read_times(folder):
    """{N: (escaped times, censored count, diverged count)} from escape_times.csv."""
    by_n = {}
    with open(os.path.join(folder, "escape_times.csv")) as f:
        for row in csv.DictReader(f):
            n = int(row["n"])
            t, c, d = by_n.setdefault(n, ([], [0], [0]))
            if row["censored"] == "1":
                c[0] += 1
                if row["status"] == "diverged":
                    d[0] += 1
            else:
                t.append(float(row["t_escape"]))
    return {n: (sorted(t), c[0], d[0]) for n, (t, c, d) in by_n.items()}


def mean_se(x):
    n = len(x)
    m = sum(x) / n
    var = sum((v - m) ** 2 for v in x) / (n - 1)
    return m, math.sqrt(var), math.sqrt(var / n)


def ks_two_sample(a, b):
    """Two-sample KS statistic D and its asymptotic p-value (Kolmogorov distribution with the
    small-sample correction of Stephens 1970, as in Numerical Recipes' kstwo)."""
    a, b = sorted(a), sorted(b)
    i = j = 0
    d = 0.0
    while i < len(a) and j < len(b):
        x = min(a[i], b[j])
        while i < len(a) and a[i] <= x:
            i += 1
        while j < len(b) and b[j] <= x:
            j += 1
        d = max(d, abs(i / len(a) - j / len(b)))
    ne = len(a) * len(b) / (len(a) + len(b))
    lam = (math.sqrt(ne) + 0.12 + 0.11 / math.sqrt(ne)) * d
    if lam < 1e-3:
        return d, 1.0
    p = 2.0 * sum((-1) ** (k - 1) * math.exp(-2.0 * k * k * lam * lam) for k in range(1, 101))
    return d, min(max(p, 0.0), 1.0)


def wls(points):
    """Weighted straight line through (x, y, se): slope, se, intercept, se, chi2, dof."""
    w = [1.0 / s**2 for _, _, s in points]
    sw = sum(w)
    sx = sum(wi * x for wi, (x, _, _) in zip(w, points))
    sy = sum(wi * y for wi, (_, y, _) in zip(w, points))
    sxx = sum(wi * x * x for wi, (x, _, _) in zip(w, points))
    sxy = sum(wi * x * y for wi, (x, y, _) in zip(w, points))
    det = sw * sxx - sx * sx
    slope = (sw * sxy - sx * sy) / det
    icpt = (sxx * sy - sx * sxy) / det
    chi2 = sum(wi * (y - slope * x - icpt) ** 2 for wi, (x, y, _) in zip(w, points))
    return slope, math.sqrt(sw / det), icpt, math.sqrt(sxx / det), chi2, len(points) - 2


def summaries(times):
    """[(N, ln N, mean, se, count_escaped, censored)] for N with no censored run (usable for fits)."""
    out = []
    for n, (t, c, d) in sorted(times.items()):
        if len(t) >= 2:
            m, _, se = mean_se(t)
            out.append((n, math.log(n), m, se, len(t), c, d))
    return out


def svg(path, direct, chain, theory_slope, title):
    """Mean ± s.e. vs ln N, both simulators; theory slope through the chain points' weighted centroid."""
    W, H, L, R, T, B = 720, 480, 70, 20, 40, 55
    pts = direct + chain
    xs = [p[1] for p in pts]
    ys = [p[2] + s * p[3] for p in pts for s in (-1, 1)]
    x0, x1 = min(xs) - 0.3, max(xs) + 0.3
    y0, y1 = min(ys) - 0.5, max(ys) + 0.5
    X = lambda x: L + (x - x0) / (x1 - x0) * (W - L - R)
    Y = lambda y: H - B - (y - y0) / (y1 - y0) * (H - T - B)
    o = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="13">',
         f'<rect width="{W}" height="{H}" fill="white"/>',
         f'<text x="{W / 2}" y="22" text-anchor="middle" font-size="15">{title}</text>',
         f'<rect x="{L}" y="{T}" width="{W - L - R}" height="{H - T - B}" fill="none" stroke="black"/>']
    for k in range(math.ceil(x0), math.floor(x1) + 1):
        o.append(f'<line x1="{X(k):.1f}" y1="{H - B}" x2="{X(k):.1f}" y2="{H - B + 5}" stroke="black"/>')
        o.append(f'<text x="{X(k):.1f}" y="{H - B + 19}" text-anchor="middle">{k}</text>')
    step = 2 if y1 - y0 > 8 else 1
    for k in range(math.ceil(y0 / step) * step, math.floor(y1) + 1, step):
        o.append(f'<line x1="{L - 5}" y1="{Y(k):.1f}" x2="{L}" y2="{Y(k):.1f}" stroke="black"/>')
        o.append(f'<text x="{L - 8}" y="{Y(k) + 4:.1f}" text-anchor="end">{k}</text>')
    for n in (1e3, 1e4, 1e5, 1e6, 1e7):
        x = math.log(n)
        if x0 < x < x1:
            o.append(f'<text x="{X(x):.1f}" y="{T + 14}" text-anchor="middle" fill="#777">N=10^{round(math.log10(n))}</text>')
            o.append(f'<line x1="{X(x):.1f}" y1="{T + 18}" x2="{X(x):.1f}" y2="{H - B}" stroke="#ddd"/>')
    o.append(f'<text x="{(L + W - R) / 2}" y="{H - 12}" text-anchor="middle">ln N</text>')
    o.append(f'<text transform="translate(18,{(T + H - B) / 2}) rotate(-90)" text-anchor="middle">mean t_escape (± s.e.)</text>')
    if theory_slope is not None and chain:
        w = [1 / p[3] ** 2 for p in chain]
        xm = sum(wi * p[1] for wi, p in zip(w, chain)) / sum(w)
        ym = sum(wi * p[2] for wi, p in zip(w, chain)) / sum(w)
        a, b = x0 + 0.1, x1 - 0.1
        o.append(f'<line x1="{X(a):.1f}" y1="{Y(ym + theory_slope * (a - xm)):.1f}" x2="{X(b):.1f}" '
                 f'y2="{Y(ym + theory_slope * (b - xm)):.1f}" stroke="#2ca02c" stroke-dasharray="6,4"/>')
    for pts_, colour, shape in ((chain, "#1f77b4", "circle"), (direct, "#d62728", "square")):
        for _, x, m, se, *_ in pts_:
            o.append(f'<line x1="{X(x):.1f}" y1="{Y(m - se):.1f}" x2="{X(x):.1f}" y2="{Y(m + se):.1f}" stroke="{colour}"/>')
            if shape == "circle":
                o.append(f'<circle cx="{X(x):.1f}" cy="{Y(m):.1f}" r="4" fill="none" stroke="{colour}" stroke-width="1.5"/>')
            else:
                o.append(f'<rect x="{X(x) - 3:.1f}" y="{Y(m) - 3:.1f}" width="6" height="6" fill="{colour}"/>')
    legend = [("#1f77b4", "chain simulator", "circle"), ("#d62728", "direct simulator", "square")]
    if theory_slope is not None:
        legend.append(("#2ca02c", f"theory slope 1/(2μ) = {theory_slope:.3f}", "dash"))
    for i, (c, label, shape) in enumerate(legend):
        y = T + 36 + 20 * i
        if shape == "circle":
            o.append(f'<circle cx="{L + 22}" cy="{y - 4}" r="4" fill="none" stroke="{c}" stroke-width="1.5"/>')
        elif shape == "square":
            o.append(f'<rect x="{L + 19}" y="{y - 7}" width="6" height="6" fill="{c}"/>')
        else:
            o.append(f'<line x1="{L + 10}" y1="{y - 4}" x2="{L + 34}" y2="{y - 4}" stroke="{c}" stroke-dasharray="6,4"/>')
        o.append(f'<text x="{L + 42}" y="{y}">{label}</text>')
    o.append("</svg>\n")
    with open(path, "w") as f:
        f.write("\n".join(o))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--direct", nargs="+", required=True, help="results folders of the direct simulator")
    ap.add_argument("--chain", nargs="+", required=True, help="results folders of the chain simulator")
    ap.add_argument("--out", required=True)
    ap.add_argument("--fit-from", type=float, nargs="*", default=[0, 1e4, 1e5],
                    help="fit the chain means over N >= each of these")
    args = ap.parse_args()

    def merge(folders):
        out = {}
        for f in folders:
            for n, v in read_times(f).items():
                # The same (N, seed) runs may be shipped in two folders (a study and its
                # extension reuse runs through the configuration hash): accept identical copies.
                if n in out and out[n] != v:
                    raise SystemExit(f"N = {n} appears twice with different runs ({f})")
                out[n] = v
        return out

    direct, chain = merge(args.direct), merge(args.chain)
    with open(os.path.join(args.chain[0], "escape_fit.json")) as f:
        theory = json.load(f)["theory_slope"]
    os.makedirs(args.out, exist_ok=True)

    rows = []
    for n in sorted(set(direct) & set(chain)):
        (td, cd, dd), (tc, cc, dc) = direct[n], chain[n]
        md, _, sd = mean_se(td)
        mc, _, sc = mean_se(tc)
        d, p = ks_two_sample(td, tc)
        rows.append([n, len(td), cd, dd, len(tc), cc, dc, md, sd, mc, sc, (mc - md) / math.hypot(sd, sc), d, p])
    header = ["n", "direct_escaped", "direct_censored", "direct_diverged", "chain_escaped", "chain_censored",
              "chain_diverged", "direct_mean", "direct_se", "chain_mean", "chain_se", "diff_in_se", "ks_d", "ks_p"]
    with open(os.path.join(args.out, "comparison.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    print("chain vs direct (escaped runs):")
    print("  N      n_dir n_chain  direct mean ± se    chain mean ± se   diff/se   KS D    KS p")
    for r in rows:
        print(f"  {r[0]:<6} {r[1]:>5} {r[4]:>7}  {r[7]:7.3f} ± {r[8]:.3f}   {r[9]:7.3f} ± {r[10]:.3f}  {r[11]:+6.2f}  {r[12]:.4f}  {r[13]:.3f}")

    cs, ds = summaries(chain), summaries(direct)
    fit_rows = []
    for name, pts in [("direct", ds)] + [(f"chain N>={int(lo)}", [p for p in cs if p[0] >= lo]) for lo in args.fit_from]:
        usable = [p for p in pts if p[5] == p[6]]  # no run censored at t_max (diverged runs excluded)
        if len(usable) >= 3:
            s, ss, i, si, chi2, dof = wls([(p[1], p[2], p[3]) for p in usable])
            fit_rows.append([name, ";".join(str(p[0]) for p in usable), s, ss, i, si, chi2, dof, theory, (s - theory) / ss])
    with open(os.path.join(args.out, "fits.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["set", "n_used", "slope", "se_slope", "intercept", "se_intercept", "chi2", "dof",
                    "theory_slope", "slope_minus_theory_in_se"])
        w.writerows(fit_rows)
    print(f"fits of mean t_esc = slope·ln N + intercept (theory slope 1/(2μ) = {theory:.4f}):")
    for r in fit_rows:
        print(f"  {r[0]:<14} N = {r[1]:<40} slope {r[2]:.4f} ± {r[3]:.4f}  ({r[9]:+.2f} se)  χ²/dof = {r[6]:.2f}/{r[7]}")
    svg(os.path.join(args.out, "escape_chain_vs_direct.svg"), ds, cs, theory,
        "Quadratic p = p* = 1: mean escape time, chain vs direct")
    print(f"wrote {args.out}/comparison.csv, fits.csv, escape_chain_vs_direct.svg")


if __name__ == "__main__":
    main()
