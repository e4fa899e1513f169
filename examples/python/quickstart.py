"""hdsgd from Python, first steps: finite-N online SGD against the overlap ODE.

    pip install ./python matplotlib pandas      # once, from the repository root
    python examples/python/quickstart.py        # writes examples/python/quickstart.png

The model is the shipped quickstart's (experiments/quickstart.toml): quadratic activation, p = 2
students learning a p* = 1 teacher, an uninformed start (M0 ~ N^-1/2), hence a plateau at
e_g ≈ 1.5 whose escape comes later for larger N. The script

1. runs a small study with the low-level loop: for each N and seed, a DirectSimulator advanced
   from record time to record time (the GIL is released meanwhile, Ctrl-C stops it), collecting
   one row per record exactly as `hdsgd run` writes trajectories.csv;
2. integrates the overlap ODE from each run's own initial overlaps ("matched" initial condition);
3. plots e_g(t), SGD (mean ± 1 s.d. over seeds) against the ODE (dashed), and ‖M‖, tr Q.
"""

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

import hdsgd

# The experiment as a dict: the same sections and keys as an experiment file (README.md), validated
# by the same Rust code. A path to a TOML file works everywhere a dict does.
exp = {
    "name": "quickstart_python",
    "model": {"activation": "quadratic", "p": 2, "p_star": 1, "a": "uniform", "v": "ones"},
    "init": {"teacher": "orthonormal", "sigma0": 1.0},
    "training": {"eta": 0.2},
    "simulation": {"n": [250, 1000], "seeds": 4, "base_seed": 2026},
    "time": {"t_max": 100.0, "grid": "log", "t_min": 0.01, "points": 60},
    "ode": {"rtol": 1e-9, "atol": 1e-12},
}
print("resolved experiment:", hdsgd.check(exp)["name"], "| grid of", len(hdsgd.check(exp)["grid"]), "times")

# 1. SGD, one row per (N, seed, record time): the columns of the CLI's trajectories.csv.
rows, odes = [], []
for n in exp["simulation"]["n"]:
    times = hdsgd.record_times(exp, n)  # the grid rounded to whole steps, as the CLI records it
    for seed in range(exp["simulation"]["seeds"]):
        sim = hdsgd.DirectSimulator(exp, n, seed)  # seeded as `hdsgd run` seeds run (N, seed)
        for t in times:
            train_loss = sim.advance_to(t)  # mean ½(y − ŷ)² since the previous record
            rows.append(sim.record(train_loss))
        # 2. The matched ODE: from this run's exact initial overlaps, on the same times.
        q0, m0, p = sim.initial_overlaps()
        sol = hdsgd.integrate_ode(exp["model"], exp["training"], q0, m0, p, times, rtol=1e-9, atol=1e-12)
        odes.append(sol.to_frame().assign(n=n, seed=seed))
    print(f"N = {n}: {exp['simulation']['seeds']} runs, last {sim!r}")
sgd = pd.DataFrame(rows)
ode = pd.concat(odes, ignore_index=True)

# 3. The figure.
fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4.2))
colors = {250: "tab:blue", 1000: "tab:red"}
for n, c in colors.items():
    g = sgd[sgd.n == n].groupby("t").eg
    mean, sd = g.mean(), g.std()
    ax.plot(mean.index, mean, color=c, label=f"SGD N = {n} (mean of {exp['simulation']['seeds']} seeds)")
    ax.fill_between(mean.index, (mean - sd).clip(lower=1e-12), mean + sd, color=c, alpha=0.2, lw=0)
    o = ode[ode.n == n].groupby("t").eg.mean()
    ax.plot(o.index, o, color=c, ls="--", label=f"ODE, matched to the N = {n} runs")
ax.set(xscale="log", yscale="log", xlabel="t = samples / N", ylabel="$e_g$", title="SGD against the overlap ODE")
ax.legend(fontsize=8)

# ‖M‖_F and tr Q: invariant under the sign symmetry w_i → −w_i of g(z) = z² (which sign a run picks
# at the escape is random, so single entries of M are not comparable between SGD and the ODE).
for df in (sgd, ode):
    df["norm_m"] = np.hypot(df.m_0_0, df.m_1_0)
    df["tr_q"] = df.q_0_0 + df.q_1_1
for n, c in colors.items():
    for col, ls_sgd in [("norm_m", "-"), ("tr_q", ":")]:
        s_mean = sgd[sgd.n == n].groupby("t")[col].mean()
        o_mean = ode[ode.n == n].groupby("t")[col].mean()
        bx.plot(s_mean.index, s_mean, color=c, ls=ls_sgd, label=f"{col} SGD N = {n}")
        bx.plot(o_mean.index, o_mean, color=c, ls="--", lw=1, label=f"{col} ODE N = {n}")
bx.set(xscale="log", xlabel="t = samples / N", ylabel="overlap", title="‖M‖ (solid) and tr Q (dotted); ODE dashed")
bx.legend(fontsize=7, ncol=2)
fig.tight_layout()
out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).with_suffix(".png")
fig.savefig(out, dpi=120)
print("wrote", out)

# The student weights themselves (a copy, p × N) are there for custom measurements:
w = sim.weights()
print("student weights", w.shape, "| Q from the weights equals sim.overlaps():",
      np.allclose(w @ w.T / sim.n, sim.overlaps()[0]))
