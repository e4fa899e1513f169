"""The high-level API (one function per CLI command) against the CLI: the same files, byte for byte
(summary.json up to its timings), DataFrames parsed exactly, dict and file forms alike."""

import copy
import json
import warnings

import numpy as np
import pytest

import hdsgd
from conftest import REPO, assert_frames_identical, read_csv, write_toml

TIMINGS = {"wall_seconds", "samples_per_second", "wall_seconds_this_invocation", "cpu_seconds_all_runs"}


def strip_timings(x):
    """summary.json without its timings (the only part that differs between two identical runs)."""
    if isinstance(x, dict):
        return {k: strip_timings(v) for k, v in x.items() if k not in TIMINGS}
    if isinstance(x, list):
        return [strip_timings(v) for v in x]
    return x


def assert_same_as_cli_folder(result, folder):
    names = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    assert sorted(result.files) == names
    for name in names:
        data = (folder / name).read_bytes()
        if name.endswith(".json"):
            assert strip_timings(json.loads(result.files[name])) == strip_timings(json.loads(data)), name
        elif name == "escape_runs.csv":
            # Rows in completion order, with each run's wall time: compare the rest, by (n, seed).
            # (A plain CSV: header, then rows; its configuration hash is in escape_runs.json.)
            def rows(b):
                lines = b.decode().splitlines()
                head = lines[0].split(",")
                keep = [i for i, h in enumerate(head) if h != "wall_seconds"]
                return lines[0], sorted(tuple(line.split(",")[i] for i in keep) for line in lines[1:])

            assert rows(result.files[name]) == rows(data)
        else:
            assert result.files[name] == data, name


def cli_command(cli, command, exp, tmp_path, *extra, check=True):
    path = write_toml(tmp_path / "exp.toml", exp) if isinstance(exp, dict) else exp
    out = tmp_path / f"cli_{command}"
    p = cli(command, path, "--out", out, "--quiet", *extra, check=check)
    return out, p


def test_run_equals_the_cli_files_and_frames(small, tmp_path, cli):
    out, _ = cli_command(cli, "run", small, tmp_path)
    res = hdsgd.run(small)
    assert_same_as_cli_folder(res, out)
    assert_frames_identical(res.trajectories, read_csv(out / "trajectories.csv"))
    assert_frames_identical(res.ode, read_csv(out / "ode.csv"))
    assert res.trajectories["n"].dtype.kind == "i" and np.isnan(res.trajectories["train_loss"][0])
    assert res.summary["experiment"]["name"] == "small"
    assert res.divergences == []
    assert "trajectories" in res.tables and "Result of run" in repr(res)


def test_file_and_dict_forms_give_the_same_result(small, tmp_path):
    path = write_toml(tmp_path / "small.toml", small)
    a, b = hdsgd.run(small, threads=1), hdsgd.run(path, threads=2)
    for name in ["trajectories.csv", "ode.csv", "eg.svg", "overlaps.svg"]:
        assert a.files[name] == b.files[name]
    assert strip_timings(a.summary) == {**strip_timings(b.summary), "threads": 1}


def test_thread_count_independence(small):
    results = [hdsgd.run(small, threads=k) for k in (1, 2, None)]
    for r in results[1:]:
        assert r.files["trajectories.csv"] == results[0].files["trajectories.csv"]
        assert r.files["ode.csv"] == results[0].files["ode.csv"]


def test_save_writes_the_cli_files(small, tmp_path, cli):
    out, _ = cli_command(cli, "run", small, tmp_path)
    res = hdsgd.run(small)
    saved = res.save(tmp_path / "saved")
    assert_same_as_cli_folder(res, saved)
    with pytest.raises(FileExistsError, match="force"):
        res.save(saved)
    res.save(saved, force=True)


def test_out_keeps_the_folder_and_refuses_to_overwrite(small, tmp_path):
    res = hdsgd.run(small, out=tmp_path / "kept")
    assert_same_as_cli_folder(res, tmp_path / "kept")
    with pytest.raises(OSError, match="already exists"):
        hdsgd.run(small, out=tmp_path / "kept")
    hdsgd.run(small, out=tmp_path / "kept", force=True)


def test_run_the_shipped_quickstart_like_the_cli(cli_quickstart):
    """hdsgd.run on experiments/quickstart.toml writes the CLI's files. (On a machine of the kind
    that generated it, both equal the committed results/quickstart/ too; the direct simulator's
    numbers depend on the instruction set, so that is not asserted here.)"""
    res = hdsgd.run(REPO / "experiments" / "quickstart.toml")
    assert_same_as_cli_folder(res, cli_quickstart)


def test_ode_matched_and_explicit(small, tmp_path, cli):
    out, _ = cli_command(cli, "ode", small, tmp_path / "m")
    assert_same_as_cli_folder(hdsgd.ode(small), out)
    explicit = copy.deepcopy(small)
    del explicit["simulation"]
    explicit["init"] = {"q0": [[1.0, 0.0], [0.0, 1.0]], "m0": [[0.01], [0.0]]}
    explicit["ode"] = {"initial": "explicit"}
    out, _ = cli_command(cli, "ode", explicit, tmp_path / "e")
    res = hdsgd.ode(explicit)
    assert_same_as_cli_folder(res, out)
    assert (res.ode["seed"] == -1).all()


def test_plateau(tmp_path, cli):
    path = REPO / "experiments" / "escape_quadratic_p2.toml"
    out, p = cli_command(cli, "plateau", path, tmp_path)
    res = hdsgd.plateau(path)
    assert_same_as_cli_folder(res, out)
    assert res.summary["mu"] > 0
    # The printed report is captured (not printed), the same as the CLI's but for the file path.
    assert res.report.splitlines()[:-1] == p.stdout.splitlines()[:-1]


ESCAPE = {
    "name": "escape_small",
    "model": {"activation": "quadratic", "p": 1, "p_star": 1, "a": "uniform", "v": "ones"},
    "init": {"sigma0": 0.1},
    "training": {"eta": 0.15},
    "simulation": {"n": [100, 200], "seeds": 6, "base_seed": 3},
    "time": {"t_max": 30.0, "points": 300},
    "escape": {"criterion": "eg", "fraction": 0.5, "plateau_tolerance": 0.05},
}


def test_escape(tmp_path, cli):
    # Two of its runs diverge (a measured outcome): outputs written, exit code 3, a DivergedWarning.
    out, p = cli_command(cli, "escape", ESCAPE, tmp_path, check=False)
    assert p.returncode == 3, p.stderr
    with pytest.warns(hdsgd.DivergedWarning, match="diverged"):
        res = hdsgd.escape(ESCAPE, threads=2)
    assert_same_as_cli_folder(res, out)
    assert set(res.tables) >= {"escape_times", "escape_summary"}


def test_scaling(small, tmp_path, cli):
    exp = copy.deepcopy(small)
    exp["simulation"]["seeds"] = 4
    exp["scaling"] = {"windows": [[0.1, 1.0], [1.0, 3.0]]}
    out, _ = cli_command(cli, "scaling", exp, tmp_path)
    res = hdsgd.scaling(exp)
    assert_same_as_cli_folder(res, out)
    assert "scaling" in res.tables


def test_hessian(tmp_path, cli):
    path = REPO / "experiments" / "geometry_hessian.toml"
    out, _ = cli_command(cli, "hessian", path, tmp_path)
    assert_same_as_cli_folder(hdsgd.hessian(path), out)


def test_divergence_warns_raises_or_is_ignored(small, tmp_path, cli):
    exp = copy.deepcopy(small)
    exp["training"]["eta"] = 8.0
    out, p = cli_command(cli, "run", exp, tmp_path, check=False)
    assert p.returncode == 3
    with pytest.warns(hdsgd.DivergedWarning, match="diverged"):
        res = hdsgd.run(exp)
    assert_same_as_cli_folder(res, out)
    assert len(res.divergences) == len(json.loads((out / "summary.json").read_text())["divergences"]) > 0
    with pytest.raises(hdsgd.Diverged) as info:
        hdsgd.run(exp, on_divergence="raise")
    assert info.value.result.files["trajectories.csv"] == res.files["trajectories.csv"]
    assert info.value.t == min(d["t"] for d in res.divergences)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        hdsgd.run(exp, on_divergence="ignore")


def test_command_errors(small):
    no_sim = copy.deepcopy(small)
    del no_sim["simulation"]
    no_sim["init"] = {"q0": [[1.0, 0.0], [0.0, 1.0]], "m0": [[0.0], [0.0]]}
    no_sim["ode"] = {"initial": "explicit"}
    with pytest.raises(hdsgd.ConfigError, match="needs a \\[simulation\\] section"):
        hdsgd.run(no_sim)
    relu = copy.deepcopy(small)
    relu["model"]["activation"] = "relu"
    with pytest.raises(hdsgd.ConfigError) as info:
        hdsgd.ode(relu)
    assert info.value.field == "model.activation"
    bad = copy.deepcopy(small)
    bad["training"]["eta"] = -1.0
    with pytest.raises(hdsgd.ConfigError) as info:
        hdsgd.run(bad)
    assert info.value.field == "training.eta"
    with pytest.raises(ValueError):
        hdsgd.run(small, threads=0)
    with pytest.raises(ValueError):
        hdsgd.run(small, on_divergence="explode")
