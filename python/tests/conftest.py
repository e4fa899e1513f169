"""Shared fixtures: the repository, the CLI binary, small experiments, CSV comparison."""

import copy
import os
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[2]
CLI = Path(os.environ.get("HDSGD_CLI", REPO / "target" / "release" / "hdsgd"))

# A small quadratic experiment (the CLI test's SMALL): 2 x 3 runs, a log grid.
SMALL = {
    "name": "small",
    "model": {"activation": "quadratic", "p": 2, "p_star": 1, "v": "ones"},
    "training": {"eta": 0.2},
    "simulation": {"n": [60, 120], "seeds": 3, "base_seed": 7},
    "time": {"t_max": 3.0, "grid": "log", "t_min": 0.05, "points": 8},
}


@pytest.fixture
def small():
    return copy.deepcopy(SMALL)


@pytest.fixture(scope="session")
def cli():
    """Runs the CLI binary; returns the CompletedProcess."""
    if not CLI.exists():
        pytest.fail(f"CLI binary {CLI} not found: run `cargo build --release` at the top (scripts/python_ci.sh does)")

    def run(*args, check=True):
        p = subprocess.run([str(CLI), *map(str, args)], capture_output=True, text=True)
        if check and p.returncode != 0:
            raise AssertionError(f"hdsgd {' '.join(map(str, args))} exited {p.returncode}: {p.stderr}")
        return p

    return run


def write_toml(path, exp):
    import hdsgd

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(hdsgd.to_toml(exp))
    return path


def read_csv(path):
    """A trajectories/ode CSV with every number parsed exactly by Python's float() (the files hold
    Rust's shortest round-trip forms; an empty train_loss becomes NaN)."""
    raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    return raw.apply(lambda col: col.map(lambda x: float(x) if x != "" else float("nan")))


def assert_frames_identical(a: pd.DataFrame, b: pd.DataFrame):
    """Same columns, same rows, every number bit for bit (NaN == NaN for empty train_loss)."""
    assert list(a.columns) == list(b.columns)
    assert len(a) == len(b), (len(a), len(b))
    for c in a.columns:
        x = a[c].to_numpy(dtype=float)
        y = b[c].to_numpy(dtype=float)
        same = np.array_equal(x, y, equal_nan=True)
        assert same, f"column {c} differs: max |diff| = {np.nanmax(np.abs(x - y))}"


@pytest.fixture(scope="session")
def cli_quickstart(cli, tmp_path_factory):
    """The CLI's output folder for the shipped experiments/quickstart.toml (run once per session)."""
    out = tmp_path_factory.mktemp("quickstart") / "out"
    cli("run", REPO / "experiments" / "quickstart.toml", "--out", out, "--quiet")
    return out
