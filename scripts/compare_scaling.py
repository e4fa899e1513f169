#!/usr/bin/env python3
"""Chain vs direct finite-size fluctuations (issue 4), Python standard library only.

For each N present in both `scaling.csv` files (written by `hdsgd scaling`) and each time window,
prints the window-averaged standard deviation over seeds, sqrt(mean_t Var[x(t)]), of a few
observables for the chain and the direct simulator, and their ratio. The record times of a given N
are the same for both simulators. With S seeds the relative standard error of one std is about
1/sqrt(2(S - 1)) (0.10 for S = 48), so a ratio has a relative spread of about 0.15 (more for the
heavy-tailed late windows); the ratios should scatter around 1.

With a third argument OUT.svg it also draws that window-averaged std of e_g, tr Q and ||M||_F in the
window [2, 5] against N (log-log) for both simulators on the same axes, with the slope -1/2 of the
theory drawn through the chain's first point of each observable. Usage:

    python3 scripts/compare_scaling.py results/scaling_quadratic results/scaling_quadratic_chain \
        [results/scaling_quadratic_chain/scaling_chain_vs_direct.svg]
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


def window_std(d, n, obs, w):
    tt = [t for t in d[(n, obs)] if w[0] <= t <= w[1]]
    return math.sqrt(sum(d[(n, obs)][t] for t in tt) / len(tt))


def svg(path, direct, chain, w):
    """Window-averaged std vs N, log-log, both simulators, with N^(-1/2) guides."""
    obs = [("eg", "e_g", "#1f77b4"), ("tr_q", "tr Q", "#d62728"), ("norm_m", "‖M‖_F", "#2ca02c")]
    series = []
    for key, label, colour in obs:
        c = [(math.log10(n), math.log10(window_std(chain, n, key, w))) for n in sorted({n for n, o in chain if o == key})]
        d = [(math.log10(n), math.log10(window_std(direct, n, key, w))) for n in sorted({n for n, o in direct if o == key})]
        series.append((label, colour, c, d))
    xs = [p[0] for _, _, c, d in series for p in c + d]
    ys = [p[1] for _, _, c, d in series for p in c + d]
    x0, x1, y0, y1 = min(xs) - 0.2, max(xs) + 0.2, math.floor(min(ys) - 0.1), math.ceil(max(ys) + 0.1)
    W, H, L, R, T, B = 720, 480, 70, 20, 40, 55
    X = lambda x: L + (x - x0) / (x1 - x0) * (W - L - R)
    Y = lambda y: H - B - (y - y0) / (y1 - y0) * (H - T - B)
    o = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="13">',
         f'<rect width="{W}" height="{H}" fill="white"/>',
         f'<text x="{W / 2}" y="22" text-anchor="middle" font-size="15">Std over seeds, t in [{w[0]}, {w[1]}]: chain (circles) vs direct (squares)</text>',
         f'<rect x="{L}" y="{T}" width="{W - L - R}" height="{H - T - B}" fill="none" stroke="black"/>']
    for k in range(math.ceil(x0), math.floor(x1) + 1):
        o.append(f'<line x1="{X(k):.1f}" y1="{H - B}" x2="{X(k):.1f}" y2="{H - B + 5}" stroke="black"/>')
        o.append(f'<text x="{X(k):.1f}" y="{H - B + 19}" text-anchor="middle">10^{k}</text>')
    for k in range(y0, y1 + 1):
        o.append(f'<line x1="{L - 5}" y1="{Y(k):.1f}" x2="{L}" y2="{Y(k):.1f}" stroke="black"/>')
        o.append(f'<text x="{L - 8}" y="{Y(k) + 4:.1f}" text-anchor="end">10^{k}</text>')
    o.append(f'<text x="{(L + W - R) / 2}" y="{H - 12}" text-anchor="middle">N</text>')
    o.append(f'<text transform="translate(18,{(T + H - B) / 2}) rotate(-90)" text-anchor="middle">window-averaged std</text>')
    for i, (label, colour, c, d) in enumerate(series):
        a, b = c[0], c[-1]
        o.append(f'<line x1="{X(a[0]):.1f}" y1="{Y(a[1]):.1f}" x2="{X(b[0]):.1f}" y2="{Y(a[1] - 0.5 * (b[0] - a[0])):.1f}" '
                 f'stroke="{colour}" stroke-dasharray="6,4" stroke-opacity="0.6"/>')
        for x, y in c:
            o.append(f'<circle cx="{X(x):.1f}" cy="{Y(y):.1f}" r="4.5" fill="none" stroke="{colour}" stroke-width="1.5"/>')
        for x, y in d:
            o.append(f'<rect x="{X(x) - 3:.1f}" y="{Y(y) - 3:.1f}" width="6" height="6" fill="{colour}"/>')
        yy = T + 20 + 20 * i
        o.append(f'<circle cx="{W - R - 200}" cy="{yy - 4}" r="4.5" fill="none" stroke="{colour}" stroke-width="1.5"/>')
        o.append(f'<rect x="{W - R - 190}" y="{yy - 7}" width="6" height="6" fill="{colour}"/>')
        o.append(f'<text x="{W - R - 176}" y="{yy}">{label}</text>')
    o.append(f'<text x="{W - R - 200}" y="{T + 20 + 20 * len(series)}" fill="#555">dashed: slope −1/2 (theory)</text>')
    o.append("</svg>\n")
    with open(path, "w") as f:
        f.write("\n".join(o))


def main():
    if len(sys.argv) not in (3, 4):
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
    if len(sys.argv) == 4:
        svg(sys.argv[3], direct, chain, (2.0, 5.0))
        print("wrote", sys.argv[3])


if __name__ == "__main__":
    main()
