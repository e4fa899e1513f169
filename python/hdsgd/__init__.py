"""hdsgd from Python: online SGD in two-layer teacher-student networks in high dimension.

The numbers come from the same Rust code as the ``hdsgd`` command line (bit for bit); this
package adds NumPy arrays, pandas DataFrames and Python exceptions around it.

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

import json
from dataclasses import dataclass, field
from typing import Any, List, Optional, Tuple

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
    "ConfigError",
    "DirectSimulator",
    "Diverged",
    "OdeSolution",
    "Simulator",
    "__version__",
    "check",
    "columns",
    "integrate_ode",
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
        """A pandas DataFrame with the columns of ``ode.csv`` after ``n, seed`` (t, eg,
        train_loss, q_i_j..., m_i_k...)."""
        import pandas as pd

        df = pd.DataFrame(self.state, columns=self.columns)
        df.insert(0, "train_loss", self.train_loss)
        df.insert(0, "eg", self.eg)
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
