"""The low-level API against the CLI: a Python loop of advance calls reproduces `hdsgd run` bit for
bit (trajectories.csv), integrate_ode reproduces `hdsgd ode`, seeds and divergences agree."""

import copy
import json
import math

import numpy as np
import pandas as pd
import pytest

import hdsgd
from conftest import REPO, assert_frames_identical, read_csv, write_toml


def rust_round(x):
    """f64::round (half away from zero) for x ≥ 0; Python's round() rounds half to even."""
    f = math.floor(x)
    return f + (1 if x - f >= 0.5 else 0)


def nominal_times(resolved, n):
    """The CLI's t column: a record at step s stands for the first grid time that rounds to s
    (its exact time is the t_exact column)."""
    b = resolved["training"]["batch"]
    by_step = {}
    for g in resolved["grid"]:
        by_step.setdefault(rust_round(g * n / b), g)
    return lambda t: by_step.get(rust_round(t * n / b), t)


def python_trajectories(exp, kind="direct", threads=1):
    """trajectories.csv of an experiment, computed by a Python loop over the low-level API."""
    resolved = hdsgd.check(exp)
    cls = hdsgd.ChainSimulator if kind == "chain" else hdsgd.DirectSimulator
    rows = []
    for n in resolved["ns"]:
        nominal = nominal_times(resolved, n)
        for seed in range(resolved["seeds"]):
            kw = {"threads": threads} if kind == "direct" else {}
            sim = cls(exp, n, seed, **kw)
            for t in hdsgd.record_times(exp, n):
                loss = sim.advance_to(t)
                row = sim.record(loss)
                row["t_exact"] = row["t"]
                row["t"] = nominal(row["t"])
                rows.append(row)
    cols = ["n", "seed", "t", "t_exact", "eg", "train_loss"]
    cols += hdsgd.columns(len(resolved["model"]["a"]), len(resolved["model"]["v"]))
    return pd.DataFrame(rows)[cols]


def cli_run(cli, tmp_path, exp, *extra):
    path = write_toml(tmp_path / "exp.toml", exp)
    out = tmp_path / "out"
    cli("run", path, "--out", out, "--quiet", "--force", *extra)
    return out


VARIANTS = {
    "quadratic": {},
    "erf_batch_noise_decay": {
        "model": {"activation": "erf", "p": 2, "p_star": 2, "a": "ones", "v": "ones", "noise": 0.01},
        "training": {"eta": 0.5, "batch": 3, "weight_decay": 0.01},
        "init": {"teacher": "gaussian", "sigma0": 0.5},
    },
    "linear_informed_explicit_times": {
        "model": {"activation": "linear", "p": 1, "p_star": 1},
        "training": {"eta": 0.3},
        "init": {"student_mix": [[0.5]], "sigma0": 0.2},
        "time": {"t_max": 2.0, "times": [0.013, 0.5, 1.0, 2.0]},
    },
    "relu": {"model": {"activation": "relu", "p": 2, "p_star": 1}, "training": {"eta": 0.1}},
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_python_loop_matches_cli_run_bit_for_bit(small, tmp_path, cli, variant):
    exp = copy.deepcopy(small)
    exp.update(copy.deepcopy(VARIANTS[variant]))
    out = cli_run(cli, tmp_path, exp)
    assert_frames_identical(python_trajectories(exp), read_csv(out / "trajectories.csv"))


def test_chain_loop_matches_cli_run_bit_for_bit(small, tmp_path, cli):
    exp = copy.deepcopy(small)
    exp["simulation"]["simulator"] = "chain"
    exp["simulation"]["n"] = [60, 100000]
    out = cli_run(cli, tmp_path, exp)
    assert_frames_identical(python_trajectories(exp, kind="chain"), read_csv(out / "trajectories.csv"))


def test_shipped_quickstart_matches_cli(cli_quickstart):
    """The issue's acceptance check: every run of experiments/quickstart.toml, CLI against Python."""
    path = REPO / "experiments" / "quickstart.toml"
    assert_frames_identical(python_trajectories(path), read_csv(cli_quickstart / "trajectories.csv"))


def test_split_threads_give_the_same_numbers(small):
    """A direct step split over 2 threads (N ≥ 32768) is bit-identical to one thread."""
    sims = [hdsgd.DirectSimulator(small, 40000, 1, threads=k) for k in (1, 2)]
    for s in sims:
        s.advance(4000)
    (q1, m1, _), (q2, m2, _) = (s.overlaps() for s in sims)
    np.testing.assert_array_equal(q1, q2)
    np.testing.assert_array_equal(m1, m2)


def test_cli_thread_count_does_not_change_the_loop_comparison(small, tmp_path, cli):
    a = cli_run(cli, tmp_path / "a", small, "--threads", "1")
    b = cli_run(cli, tmp_path / "b", small, "--threads", "2")
    assert_frames_identical(read_csv(a / "trajectories.csv"), read_csv(b / "trajectories.csv"))


def test_advance_in_pieces_equals_one_call(small):
    """Where the calls stop does not change the numbers (only the training-loss sums)."""
    a = hdsgd.DirectSimulator(small, 120, 0)
    b = hdsgd.DirectSimulator(small, 120, 0)
    a.advance(360)
    for k in [1, 7, 100, 52, 200]:
        b.advance(k)
    assert a.steps == b.steps == 360 and a.t == b.t == 3.0
    for x, y in zip(a.overlaps(), b.overlaps()):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(a.weights(), b.weights())


def test_seeds_match_the_cli_summary(small, tmp_path, cli):
    out = cli_run(cli, tmp_path, small)
    summary = json.loads((out / "summary.json").read_text())
    for run in summary["runs"]:
        sim = hdsgd.DirectSimulator(small, run["n"], run["seed"])
        assert sim.run_seed == run["run_seed"] == hdsgd.run_seed(7, run["n"], run["seed"])
        assert sim.base_seed == 7
    # base_seed overrides the experiment's.
    assert hdsgd.DirectSimulator(small, 60, 0, base_seed=8).run_seed == hdsgd.run_seed(8, 60, 0)


def test_minimal_dict_needs_only_model_and_training():
    sim = hdsgd.DirectSimulator({"model": {"activation": "quadratic", "p": 1, "p_star": 1}, "training": {"eta": 0.1}}, 50)
    assert (sim.n, sim.p, sim.p_star, sim.batch, sim.seed, sim.base_seed, sim.t) == (50, 1, 1, 1, 0, 0, 0.0)
    assert sim.advance(0) is None
    assert sim.advance(10) > 0 and sim.samples == 10 and sim.t == 0.2


def test_weights_are_copies_consistent_with_the_overlaps(small):
    sim = hdsgd.DirectSimulator(small, 120, 2)
    sim.advance(50)
    w, ws = sim.weights(), sim.teacher_weights()
    assert w.shape == (2, 120) and ws.shape == (1, 120)
    assert w.flags.writeable and w.flags.c_contiguous and not np.shares_memory(w, sim.weights())
    q, m, p = sim.overlaps()
    np.testing.assert_allclose(q, w @ w.T / 120, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(m, w @ ws.T / 120, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(p, np.eye(1), atol=1e-14)  # orthonormal teacher
    w[:] = 0.0
    np.testing.assert_array_equal(sim.overlaps()[0], q)
    assert not hasattr(hdsgd.ChainSimulator(small, 120), "weights")


def test_eg_and_initial_overlaps(small):
    sim = hdsgd.DirectSimulator(small, 60, 0)
    q0 = sim.initial_overlaps()
    e0 = sim.eg()
    sim.advance(60)
    for x, y in zip(q0, sim.initial_overlaps()):
        np.testing.assert_array_equal(x, y)
    assert sim.eg() != e0
    sol = hdsgd.integrate_ode(small["model"], small["training"], q0[0], q0[1], q0[2], [0.0])
    assert sol.eg[0] == e0


def test_matched_ode_from_python_equals_cli_ode_csv(small, tmp_path, cli):
    """The CLI's matched ODE (from each run's initial overlaps, on its record times) from Python."""
    out = cli_run(cli, tmp_path, small)
    ode = read_csv(out / "ode.csv")
    rows = []
    resolved = hdsgd.check(small)
    for n in [60, 120]:
        nominal = nominal_times(resolved, n)
        for seed in range(3):
            q, m, p = hdsgd.DirectSimulator(small, n, seed).initial_overlaps()
            times = hdsgd.record_times(small, n)
            sol = hdsgd.integrate_ode(small["model"], small["training"], q, m, p, times)
            df = sol.to_frame()
            df["t"] = [nominal(t) for t in df["t_exact"]]
            df.insert(0, "seed", seed)
            df.insert(0, "n", n)
            rows.append(df)
    assert_frames_identical(pd.concat(rows, ignore_index=True), ode)


def test_integrate_ode_equals_cli_explicit_ode(tmp_path, cli):
    model = {"activation": "erf", "p": 2, "p_star": 2, "a": "ones", "v": "ones"}
    training = {"eta": 0.5, "weight_decay": 0.001}
    q0 = [[0.3, 0.01], [0.01, 0.2]]
    m0 = [[0.01, 0.0], [0.0, 0.02]]
    times = [0.0, 1.0, 10.0, 50.0, 200.0]
    exp = {
        "model": model,
        "training": training,
        "init": {"q0": q0, "m0": m0},
        "time": {"t_max": 200.0, "times": times},
        "ode": {"initial": "explicit", "rtol": 1e-10, "atol": 1e-12},
    }
    path = write_toml(tmp_path / "ode.toml", exp)
    cli("ode", path, "--out", tmp_path / "out", "--quiet")
    ref = read_csv(tmp_path / "out" / "ode.csv")
    sol = hdsgd.integrate_ode(model, training, np.array(q0), np.array(m0), times=np.array(times), rtol=1e-10, atol=1e-12)
    assert sol.stop is None and sol.q.shape == (5, 2, 2) and sol.m.shape == (5, 2, 2)
    df = sol.to_frame()
    df.insert(0, "seed", -1)
    df.insert(0, "n", 0)
    assert_frames_identical(df, ref)
    # Times without t = 0: integrated from 0, which is left out.
    later = hdsgd.integrate_ode(model, training, q0, m0, times=times[1:], rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(later.t, times[1:])
    np.testing.assert_array_equal(later.q, sol.q[1:])


def test_ode_divergence_raises_with_the_partial_solution():
    model = {"activation": "quadratic", "p": 1, "p_star": 1, "a": "ones", "v": "ones"}
    args = (model, {"eta": 5.0}, [[1.0]], [[0.0]])
    with pytest.raises(hdsgd.Diverged) as info:
        hdsgd.integrate_ode(*args, times=[0.0, 1.0, 100.0])
    assert 0 < info.value.t < 100 and info.value.partial.t[0] == 0.0
    sol = hdsgd.integrate_ode(*args, times=[0.0, 1.0, 100.0], on_divergence="return")
    assert sol.stop[0] == "diverged" and len(sol.t) < 3


def test_simulation_divergence_matches_the_cli(small, tmp_path, cli):
    exp = copy.deepcopy(small)
    exp["training"]["eta"] = 8.0
    exp["simulation"]["n"] = [60]
    exp["simulation"]["seeds"] = 1
    path = write_toml(tmp_path / "div.toml", exp)
    p = cli("run", path, "--out", tmp_path / "out", "--quiet", check=False)
    assert p.returncode == 3, p.stderr
    at = json.loads((tmp_path / "out" / "summary.json").read_text())["runs"][0]["diverged_at"]
    sim = hdsgd.DirectSimulator(exp, 60, 0)
    with pytest.raises(hdsgd.Diverged) as info:
        for t in hdsgd.record_times(exp, 60):
            sim.advance_to(t)
    assert isinstance(info.value, RuntimeError)
    assert info.value.t == at == sim.diverged_at
    assert "diverged" in str(info.value)
    with pytest.raises(hdsgd.Diverged):  # a diverged run stays diverged
        sim.advance(1)
    # What the CLI wrote before the divergence is what the loop recorded.
    ref = read_csv(tmp_path / "out" / "trajectories.csv")
    assert (ref["t"] < at).all()


BAD_CALLS = [
    ("n = 0", lambda e: hdsgd.DirectSimulator(e, 0), "simulation.n"),
    ("n < p*", lambda e: hdsgd.DirectSimulator({**e, "model": {**e["model"], "p_star": 3}}, 2), "simulation.n"),
    ("negative seed", lambda e: hdsgd.DirectSimulator(e, 10, -1), "seed"),
    ("zero threads", lambda e: hdsgd.DirectSimulator(e, 10, threads=0), "threads"),
    ("bad model", lambda e: hdsgd.ChainSimulator({**e, "model": {**e["model"], "p": 0}}, 10), "model.p"),
    ("negative samples", lambda e: hdsgd.DirectSimulator(e, 10).advance(-1), "samples"),
    (
        "samples not a multiple of B",
        lambda e: hdsgd.DirectSimulator({**e, "training": {"eta": 0.1, "batch": 2}}, 10).advance(3),
        "samples",
    ),
    ("negative time", lambda e: hdsgd.DirectSimulator(e, 10).advance_to(-1.0), "t"),
    ("NaN time", lambda e: hdsgd.DirectSimulator(e, 10).advance_to(float("nan")), "t"),
    ("ODE q0 not symmetric", lambda e: hdsgd.integrate_ode(e["model"], e["training"], [[1, 0.5], [0, 1]], [[0], [0]], times=[1.0]), "init.q0"),
    ("ODE q0 not PSD", lambda e: hdsgd.integrate_ode(e["model"], e["training"], [[1, 2], [2, 1]], [[0], [0]], times=[1.0]), "init.q0"),
    ("ODE m0 shape", lambda e: hdsgd.integrate_ode(e["model"], e["training"], np.eye(2), [[0, 0]], times=[1.0]), "init.m0"),
    ("ODE times", lambda e: hdsgd.integrate_ode(e["model"], e["training"], np.eye(2), [[0], [0]], times=[2.0, 1.0]), "time.times"),
    ("ODE rtol", lambda e: hdsgd.integrate_ode(e["model"], e["training"], np.eye(2), [[0], [0]], times=[1.0], rtol=-1.0), "ode.rtol"),
    (
        "ODE for relu",
        lambda e: hdsgd.integrate_ode({**e["model"], "activation": "relu"}, e["training"], np.eye(2), [[0], [0]], times=[1.0]),
        "ode.initial",
    ),
    ("ODE divergence bound", lambda e: hdsgd.integrate_ode(e["model"], e["training"], np.eye(2), [[0], [0]], times=[1.0], divergence_bound=0.0), "divergence_bound"),
]


@pytest.mark.parametrize("what,call,field", BAD_CALLS, ids=[b[0] for b in BAD_CALLS])
def test_bad_low_level_calls_raise_value_errors_naming_the_field(small, what, call, field):
    with pytest.raises(ValueError) as info:
        call(small)
    assert isinstance(info.value, hdsgd.ConfigError)
    assert info.value.field == field
    assert f"`{field}`" in str(info.value)


def test_advance_to_the_past_is_an_error(small):
    sim = hdsgd.DirectSimulator(small, 60)
    sim.advance_to(1.0)
    assert sim.advance_to(1.0) is None
    with pytest.raises(hdsgd.ConfigError, match="before the current time"):
        sim.advance_to(0.5)


def test_repr(small):
    r = repr(hdsgd.ChainSimulator(small, 60, 1))
    assert r.startswith("<hdsgd.ChainSimulator N=60 seed=1")
