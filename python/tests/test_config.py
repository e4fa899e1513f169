"""Experiments as dicts and files: same validation as the CLI, same messages, named fields."""

import copy
import json

import numpy as np
import pytest

import hdsgd
from conftest import REPO, write_toml


def test_dict_and_file_forms_resolve_identically(small, tmp_path):
    path = write_toml(tmp_path / "small.toml", small)
    assert hdsgd.check(small) == hdsgd.check(path) == hdsgd.check(str(path))


def test_check_matches_the_cli_on_shipped_experiments(cli):
    for name in ["quickstart", "quadratic_validation", "erf_validation", "escape_quadratic_p2"]:
        path = REPO / "experiments" / f"{name}.toml"
        assert hdsgd.check(path) == json.loads(cli("check", path).stdout), name


def test_to_toml_round_trips_numbers_exactly(small):
    small["training"]["eta"] = 0.1 + 0.2  # 0.30000000000000004
    small["init"] = {"student_mix": np.array([[0.6], [-1 / 3]])}
    resolved = hdsgd.check(small)
    assert resolved["config"]["training"]["eta"] == 0.1 + 0.2
    assert resolved["config"]["init"]["student_mix"] == [[0.6], [-1 / 3]]


def test_none_means_default(small):
    small["time"]["t_min"] = None
    small["model"]["noise"] = None
    r = hdsgd.check(small)
    assert r["config"]["model"]["noise"] == 0.0
    assert r["grid"][1] == pytest.approx(3.0 / 1000)


def test_record_times_are_the_rounded_grid(small):
    grid = np.array(hdsgd.check(small)["grid"])
    for n in [60, 120]:
        rt = hdsgd.record_times(small, n)
        assert rt[0] == 0.0 and rt[-1] == 3.0
        np.testing.assert_array_equal(rt, np.unique(np.round(grid * n) / n))


def _set(exp, dotted, value):
    *head, last = dotted.split(".")
    d = exp
    for k in head:
        d = d.setdefault(k, {})
    d[last] = value


# (what, key to set, value, field named by the error (None: a parse error), text in the message)
BAD = [
    ("negative N", "simulation.n", [-5], "simulation.n", "must be ≥ 1"),
    ("zero N", "simulation.n", [0, 10], "simulation.n", "must be ≥ 1"),
    ("N < p*", "model.p_star", 100, "simulation.n", None),
    ("empty N list", "simulation.n", [], "simulation.n", "at least one"),
    ("zero seeds", "simulation.seeds", 0, "simulation.seeds", None),
    ("p < 1", "model.p", 0, "model.p", "must be ≥ 1"),
    ("p* < 1", "model.p_star", 0, "model.p_star", None),
    ("eta = 0", "training.eta", 0.0, "training.eta", "must be > 0"),
    ("eta < 0", "training.eta", -0.1, "training.eta", None),
    ("eta NaN", "training.eta", float("nan"), "training.eta", None),
    ("negative weight decay", "training.weight_decay", -1.0, "training.weight_decay", None),
    ("batch 0", "training.batch", 0, "training.batch", None),
    ("negative noise", "model.noise", -0.5, "model.noise", None),
    ("negative sigma0", "init.sigma0", -1.0, "init.sigma0", None),
    ("wrong a length", "model.a", [1.0, 2.0, 3.0], "model.a", "expected 2"),
    ("non-finite v", "model.v", [float("inf")], "model.v", "non-finite"),
    ("student_mix shape", "init.student_mix", [[1.0, 2.0]], "init.student_mix", "2×1"),
    ("q0 without m0", "init.q0", [[1.0, 0.0], [0.0, 1.0]], "init.m0", "missing"),
    ("t_max = 0", "time.t_max", 0.0, "time.t_max", None),
    ("t_min >= t_max", "time.t_min", 5.0, "time.t_min", None),
    ("times beyond t_max", "time.times", [0.5, 4.0], "time.times", "outside"),
    ("times not increasing", "time.times", [1.0, 0.5], "time.times", "increasing"),
    ("bad divergence bound", "simulation.divergence_bound", 0.0, "simulation.divergence_bound", None),
    ("rtol = 0", "ode.rtol", 0.0, "ode.rtol", None),
    ("unknown plot column", "output.plot", ["q_9_9"], "output.plot", "unknown observable"),
    ("explicit without q0", "ode.initial", "explicit", "init.q0", None),
    ("unknown activation", "model.activation", "softplus", None, "softplus"),
    ("unknown key", "simulation.sede", 1, None, "sede"),
    ("unknown section", "bogus.x", 1, None, "bogus"),
    ("float for an integer", "model.p", 2.5, None, "expected i64"),
    ("string for a number", "training.eta", "fast", None, "eta"),
    ("unknown simulator", "simulation.simulator", "gpu", None, "gpu"),
]


@pytest.mark.parametrize("what,key,value,field,needle", BAD, ids=[b[0] for b in BAD])
def test_bad_inputs_raise_config_error_with_the_cli_message(small, tmp_path, cli, what, key, value, field, needle):
    exp = copy.deepcopy(small)
    _set(exp, key, value)
    with pytest.raises(hdsgd.ConfigError) as info:
        hdsgd.check(exp)
    err = info.value
    assert isinstance(err, ValueError)
    assert err.field == field
    message = str(err)
    if field is not None:
        assert f"`{field}`" in message
    if needle is not None:
        assert needle in message
    # The file form gives the same error, and so does the CLI (which prints "error: <message>").
    path = write_toml(tmp_path / "bad.toml", exp)
    with pytest.raises(hdsgd.ConfigError) as from_file:
        hdsgd.check(path)
    p = cli("check", path, check=False)
    assert p.returncode == 1
    cli_message = p.stderr.strip().removeprefix("error: ")
    message = message.strip()
    assert str(from_file.value).strip() == cli_message
    if field is not None:
        assert message == cli_message
    else:  # a parse error: the same text, with the file name replaced by <dict>
        assert message == cli_message.replace(str(path), "<dict>")


def test_bad_python_values_raise_type_errors(small):
    exp = copy.deepcopy(small)
    exp["model"][3] = "x"
    with pytest.raises(TypeError, match="strings"):
        hdsgd.check(exp)
    exp = copy.deepcopy(small)
    exp["training"]["eta"] = object()
    with pytest.raises(TypeError, match="training.eta"):
        hdsgd.check(exp)
    exp = copy.deepcopy(small)
    exp["training"]["batch"] = 2**70
    with pytest.raises(ValueError, match="training.batch"):
        hdsgd.check(exp)
    with pytest.raises(TypeError):
        hdsgd.check(42)


def test_missing_file_raises_os_error(tmp_path):
    with pytest.raises(OSError, match="cannot read experiment file"):
        hdsgd.check(tmp_path / "nope.toml")


def test_missing_required_section(small):
    del small["training"]
    with pytest.raises(hdsgd.ConfigError, match="training"):
        hdsgd.check(small)
