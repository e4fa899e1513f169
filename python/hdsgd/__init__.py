"""hdsgd from Python: online SGD in two-layer teacher-student networks in high dimension.

The numbers come from the same Rust code as the ``hdsgd`` command line (bit for bit); this
package adds NumPy arrays, pandas DataFrames and Python exceptions around it.

High level (one function per CLI command; results identical to the CLI's files)::

    res = hdsgd.run("experiments/quickstart.toml")      # or a dict with the file's sections
    res.trajectories, res.ode                           # pandas DataFrames (the CSV columns)
    res.summary                                         # dict (summary.json)
    res.save("results/quickstart_py")                   # the CLI's exact files

Low level (custom experiments)::

    sim = hdsgd.DirectSimulator(exp, n=1000, seed=0)   # exp: dict of sections, or a TOML path
    for t in hdsgd.record_times(exp, 1000):
        loss = sim.advance_to(t)                        # GIL released, Ctrl-C stops it
        q, m, p = sim.overlaps()

    sol = hdsgd.integrate_ode(model, training, q0, m0, times=[0, 1, 2])

Experiments are given as a path to an experiment file or as a dict with the same sections and keys
(``{"model": {...}, "training": {...}, ...}``); a dict is serialised to TOML and validated by the
CLI's loader, so invalid input raises :class:`ConfigError` (a ``ValueError``) with the CLI's
message and ``.field`` naming the key.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from . import _hdsgd
from ._hdsgd import (
    ChainSimulator,
    ConfigError,
    DirectSimulator,
    Diverged,
    Simulator,
    __version__,
    columns,
    record_times,
    run_seed,
    to_toml,
)

__all__ = [
    "ChainSimulator",
    "DivergedWarning",
    "Result",
    "ConfigError",
    "DirectSimulator",
    "Diverged",
    "OdeSolution",
    "Simulator",
    "__version__",
    "check",
    "columns",
    "escape",
    "hessian",
    "integrate_ode",
    "ode",
    "plateau",
    "run",
    "scaling",
    "record_times",
    "run_seed",
    "to_toml",
]


def check(exp) -> dict:
    """Validates an experiment (path or dict) and returns the resolved configuration, as
    ``hdsgd check EXP.toml`` prints it (every default filled in; ``grid`` holds the record times)."""
    return json.loads(_hdsgd.check_json(exp))


@dataclass
class OdeSolution:
    """The overlap ODE on (a prefix of) the requested times.

    ``q`` is T x p x p, ``m`` is T x p x p*, ``p`` the (constant) teacher overlap, ``eg`` the
    population error (label noise excluded) and ``train_loss`` = eg + noise/2, as in ``ode.csv``.
    ``stop`` is None when every time was reached, else ``(reason, t, message)`` with reason
    ``"diverged"`` or ``"failed"``.
    """

    t: np.ndarray
    q: np.ndarray
    m: np.ndarray
    p: np.ndarray
    eg: np.ndarray
    train_loss: np.ndarray
    columns: List[str]
    state: np.ndarray = field(repr=False)
    stop: Optional[Tuple[str, float, str]] = None

    def to_frame(self):
        """A pandas DataFrame with the columns of ``ode.csv`` after ``n, seed`` (t, t_exact, eg,
        train_loss, q_i_j..., m_i_k...); t and t_exact are both the solution's times (in
        ``ode.csv`` of a matched ODE, t is the nominal grid time of each record, t_exact its step time)."""
        import pandas as pd

        df = pd.DataFrame(self.state, columns=self.columns)
        df.insert(0, "train_loss", self.train_loss)
        df.insert(0, "eg", self.eg)
        df.insert(0, "t_exact", self.t)
        df.insert(0, "t", self.t)
        return df


def integrate_ode(
    model: dict,
    training: dict,
    q0: Any,
    m0: Any,
    p: Any = None,
    times: Any = None,
    *,
    rtol: Optional[float] = None,
    atol: Optional[float] = None,
    gradient_flow: Optional[bool] = None,
    divergence_bound: Optional[float] = None,
    on_divergence: str = "raise",
) -> OdeSolution:
    """Integrates the overlap ODEs from Q(0) = q0 (p x p), M(0) = m0 (p x p*), P = p (default:
    identity) and returns them at ``times`` (increasing, >= 0; the start is t = 0).

    ``model`` and ``training`` are the experiment file's ``[model]`` and ``[training]`` sections
    as dicts; ``rtol``, ``atol``, ``gradient_flow`` are those of ``[ode]`` (defaults 1e-8, 1e-10,
    False). This is ``hdsgd ode`` with ``initial = "explicit"``: same integrator, same numbers.

    On divergence (an overlap non-finite or beyond ``divergence_bound``, default 1e6) or an
    integrator failure, raises :class:`Diverged` (``.t``; ``.partial`` holds the solution up to
    there), or returns the partial solution with ``.stop`` set if ``on_divergence="return"``.
    """
    if on_divergence not in ("raise", "return"):
        raise ValueError('on_divergence must be "raise" or "return"')
    if times is None:
        raise TypeError("integrate_ode needs `times`")
    raw = _hdsgd.integrate_ode_raw(
        model,
        training,
        q0,
        m0,
        p,
        times,
        rtol=rtol,
        atol=atol,
        gradient_flow=gradient_flow,
        divergence_bound=divergence_bound,
    )
    sol = OdeSolution(**raw)
    if sol.stop is not None and on_divergence == "raise":
        reason, t, message = sol.stop
        err = Diverged(message)
        err.t = t
        err.partial = sol
        raise err
    return sol


# ---------------------------------------------------------------------------------------------
# High level: the CLI's commands
# ---------------------------------------------------------------------------------------------


class DivergedWarning(RuntimeWarning):
    """Outputs were written, but some runs diverged (the CLI's exit code 3)."""


def _read_csv(data: bytes):
    """A CSV of the CLI as a DataFrame, every number parsed exactly (the files hold shortest
    round-trip decimal forms; pandas < 3 needs float_precision="round_trip" for that)."""
    import io

    import pandas as pd

    kw = {}
    if int(pd.__version__.split(".")[0]) < 3:
        kw["float_precision"] = "round_trip"
    return pd.read_csv(io.BytesIO(data), **kw)


class Result:
    """The output folder of a command, held in memory.

    ``files`` maps each file name (relative path) to its bytes, exactly as the CLI writes them.
    ``tables`` / ``table(name)``: the CSV files as pandas DataFrames (``trajectories``, ``ode``
    for ``run``/``ode``); ``summary``: the JSON summary as a dict; ``report``: what the command
    printed; ``divergences``: the runs that diverged (empty if none); ``save(dir)`` writes the
    files."""

    def __init__(self, command: str, files: Dict[str, bytes], report: str, divergence: Optional[str]):
        self.command = command
        self.files = files
        self.report = report
        self.divergence_message = divergence
        self._tables: Dict[str, Any] = {}

    def __repr__(self):
        names = ", ".join(sorted(self.files))
        div = f", {len(self.divergences)} divergence(s)" if self.divergence_message else ""
        return f"<hdsgd.Result of {self.command}: {names}{div}>"

    def table(self, name: str):
        """The CSV file ``name`` (e.g. "trajectories.csv" or "trajectories") as a DataFrame."""
        if not name.endswith(".csv"):
            name += ".csv"
        if name not in self.files:
            raise KeyError(f"{self.command} wrote no {name} (files: {', '.join(sorted(self.files))})")
        if name not in self._tables:
            self._tables[name] = _read_csv(self.files[name])
        return self._tables[name].copy()

    @property
    def tables(self):
        """Every CSV file, by name without ".csv"."""
        return {n[:-4]: self.table(n) for n in sorted(self.files) if n.endswith(".csv")}

    @property
    def trajectories(self):
        """trajectories.csv: one row per (N, seed, record time)."""
        return self.table("trajectories.csv")

    @property
    def ode(self):
        """ode.csv: the ODE on the same columns."""
        return self.table("ode.csv")

    @property
    def json(self) -> Dict[str, Any]:
        """Every JSON file, parsed, by name without ".json"."""
        return {n[:-5]: json.loads(self.files[n]) for n in sorted(self.files) if n.endswith(".json")}

    @property
    def summary(self) -> Dict[str, Any]:
        """summary.json (``plateau``: plateau.json; other commands: their JSON file)."""
        js = self.json
        if "summary" in js:
            return js["summary"]
        if len(js) == 1:
            return next(iter(js.values()))
        return js

    @property
    def divergences(self) -> List[Any]:
        s = self.json.get("summary", {})
        return s.get("divergences", []) if isinstance(s, dict) else []

    def save(self, directory, force: bool = False) -> Path:
        """Writes the files into ``directory`` (the CLI's exact bytes). A non-empty existing
        folder is refused unless ``force``, as the CLI does."""
        d = Path(directory)
        if d.exists():
            if not d.is_dir():
                raise FileExistsError(f"output path {d} exists and is not a folder")
            if any(d.iterdir()) and not force:
                raise FileExistsError(
                    f"output folder {d} already exists and is not empty: pass force=True to overwrite it"
                )
        for name, data in self.files.items():
            path = d / name
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            tmp.write_bytes(data)
            os.replace(tmp, path)
        return d


@contextlib.contextmanager
def _capture_fd1(holder: dict):
    """Captures what native code prints on file descriptor 1 (the commands' reports)."""
    try:
        sys.stdout.flush()
    except Exception:
        pass
    try:
        saved = os.dup(1)
    except OSError:  # no fd 1 (some embedded interpreters): nothing to capture
        holder["text"] = ""
        yield
        return
    with tempfile.TemporaryFile() as f:
        os.dup2(f.fileno(), 1)
        try:
            yield
        finally:
            os.dup2(saved, 1)
            os.close(saved)
            f.seek(0)
            holder["text"] = f.read().decode("utf-8", "replace")


def _load_folder(d: Path) -> Dict[str, bytes]:
    return {
        p.relative_to(d).as_posix(): p.read_bytes()
        for p in sorted(d.rglob("*"))
        if p.is_file() and not p.name.endswith(".tmp")
    }


def _command(name, exp, threads, progress, out, force, on_divergence) -> Result:
    if on_divergence not in ("warn", "raise", "ignore"):
        raise ValueError('on_divergence must be "warn", "raise" or "ignore"')
    if isinstance(exp, dict):
        exp = dict(exp)
    holder: Dict[str, str] = {}
    tmp = None
    try:
        if out is None:
            tmp = tempfile.mkdtemp(prefix=f"hdsgd-{name}-")
            folder = Path(tmp) / "out"
        else:
            folder = Path(out)
        with _capture_fd1(holder):
            divergence = _hdsgd.run_command(
                name, exp, folder, threads=threads, force=force, progress=progress,
                cleanup_if_abandoned=tmp is not None,
            )
        files = _load_folder(folder) if folder.exists() else {}
    except KeyboardInterrupt:
        tmp = None  # a worker still stopping removes it when it is done
        raise
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    result = Result(name, files, holder.get("text", ""), divergence)
    if divergence is not None:
        if on_divergence == "raise":
            err = Diverged(divergence)
            err.result = result
            t = [d.get("t") for d in result.divergences]
            err.t = min(t) if t else None
            raise err
        if on_divergence == "warn":
            warnings.warn(divergence, DivergedWarning, stacklevel=3)
    return result


_COMMON_DOC = """

    ``exp`` is a path to an experiment file or a dict with its sections and keys (validated by the
    CLI's loader: invalid input raises :class:`ConfigError`). ``threads``: worker threads (None:
    all cores; results do not depend on it). ``progress``: progress bars on stderr when it is a
    terminal. ``out``: also keep the files in this folder (as ``--out``; ``force`` as
    ``--force``); by default they are written to a temporary folder, read into the Result and
    removed. If some runs diverge, the outputs are still returned and a :class:`DivergedWarning`
    is issued (``on_divergence="raise"``: raise :class:`Diverged` with ``.result``; "ignore").
    Ctrl-C raises KeyboardInterrupt within ~0.1 s and cancels the computation: every running
    simulation stops at its next record time, nothing is written (an ``escape`` study keeps the
    runs it finished, and resumes from them).
    """


def run(exp, threads=None, progress=False, *, out=None, force=False, on_divergence="warn") -> Result:
    """``hdsgd run``: simulate every (N, seed), integrate the matched ODE; ``.trajectories``,
    ``.ode``, ``.summary``, figures in ``.files`` (eg.svg, overlaps.svg)."""
    return _command("run", exp, threads, progress, out, force, on_divergence)


def ode(exp, threads=None, progress=False, *, out=None, force=False, on_divergence="warn") -> Result:
    """``hdsgd ode``: the ODE only (matched, from each run's exact initial overlaps, or explicit);
    ``.ode``, ``.summary``, ode.svg."""
    return _command("ode", exp, threads, progress, out, force, on_divergence)


def plateau(exp, threads=None, progress=False, *, out=None, force=False, on_divergence="warn") -> Result:
    """``hdsgd plateau``: plateau fixed point of the ODE and its stability; ``.summary`` is
    plateau.json, ``.report`` the printed table."""
    return _command("plateau", exp, threads, progress, out, force, on_divergence)


def escape(exp, threads=None, progress=False, *, out=None, force=False, on_divergence="warn") -> Result:
    """``hdsgd escape``: plateau-escape times over seeds and N and their fit against ln N
    (``.tables``; resumable when ``out`` holds a previous run's files)."""
    return _command("escape", exp, threads, progress, out, force, on_divergence)


def scaling(exp, threads=None, progress=False, *, out=None, force=False, on_divergence="warn") -> Result:
    """``hdsgd scaling``: finite-size scaling of fluctuations and deviations from the ODE."""
    return _command("scaling", exp, threads, progress, out, force, on_divergence)


def hessian(exp, threads=None, progress=False, *, out=None, force=False, on_divergence="warn") -> Result:
    """``hdsgd hessian``: Hessian spectra of the population loss (quadratic network)."""
    return _command("hessian", exp, threads, progress, out, force, on_divergence)


for _f in (run, ode, plateau, escape, scaling, hessian):
    _f.__doc__ += _COMMON_DOC
del _f
