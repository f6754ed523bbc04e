"""A point fit of a profile's time constants: the objective of ``rust/core/src/fit.rs``, minimized by
Levenberg-Marquardt.

``fit.rs`` (``calibrate.fit_time``) always adds a leave-one-out pass, one refit per row, and its
Nelder-Mead runs a fixed number of iterations from several starts: about 1 s per 50-row fit and
O(rows^2) in all (50 s for seeds/002's H100 table). The validation report needs a dozen plain fits on
pools of up to a few hundred rows, so this module minimizes the *same* function, sum of squared log
errors ``ln(pred_i / meas_i)^2`` plus ``RIDGE * ((x_j - start_j) / width_j)^2`` over the free constants
inside ``TIME_BOUNDS``, by damped Gauss-Newton with forward-difference derivatives (a few tens of
evaluations of each row). ``tests/test_validate_sources.py`` checks it reaches the Rust fit's loss.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from toposcan import _core, api, spec
from toposcan.calibrate import TIME_KEYS

#: ``Profile::TIME_BOUNDS`` and ``fit::RIDGE`` of the core (rust/core/src/profile.rs, fit.rs), in
#: :data:`TIME_KEYS` order; a test checks the core accepts the bounds and rejects values past them.
TIME_BOUNDS = ((0.2, 0.9), (0.2, 1.0), (0.05, 1.0), (0.02, 1.0), (0.0, 5e-2), (0.0, 1.0), (0.0, 2.0), (0.05, 0.9),
               (0.0, 1.0))
RIDGE = 1e-3
#: What ``fit.rs`` charges a row whose prediction is not a positive number (a log error of 10).
FAILED_LOG_ERROR = 10.0

Run = tuple[dict[str, Any], dict[str, Any], dict[str, Any]]


def step_times(runs: list[Run], prof: dict[str, Any]) -> np.ndarray:
    """Predicted step time of each run under the core profile dict ``prof`` (inf where it fails)."""
    opts = spec.options_dict(0.0, 1e12, False, False)
    out = np.empty(len(runs))
    for i, (m, c, s) in enumerate(runs):
        try:
            cols, *_ = api._core_call(_core.evaluate, m, c, s, prof, opts)
            out[i] = float(cols["step_time_s"][0])
        except Exception:  # noqa: BLE001 - the fit charges a failed row, as fit.rs does
            out[i] = math.inf
    return out


def loss(runs: list[Run], steps: np.ndarray, prof: dict[str, Any], start: dict[str, Any], free: list[bool]) -> float:
    """``fit.rs``'s objective at ``prof``: squared log errors plus the ridge toward ``start``."""
    r = _residuals(step_times(runs, prof), steps)
    ridge = sum(RIDGE * ((prof[k] - start[k]) / (hi - lo)) ** 2
                for k, f, (lo, hi) in zip(TIME_KEYS, free, TIME_BOUNDS) if f)
    return float(r @ r + ridge)


def _residuals(pred: np.ndarray, steps: np.ndarray) -> np.ndarray:
    ok = np.isfinite(pred) & (pred > 0)
    return np.where(ok, np.log(np.where(ok, pred, 1.0) / steps), FAILED_LOG_ERROR)


def fit(runs: list[Run], steps: list[float], free: list[bool], start: dict[str, Any],
        init: dict[str, Any] | None = None, max_iter: int = 30, tol: float = 1e-7) -> dict[str, Any]:
    """The profile (a copy of ``start`` with the free time constants fitted) minimizing
    :func:`loss` over ``runs`` with measured ``steps``; ``init`` is where the search begins (``start``
    by default; the ridge always pulls toward ``start``). With no runs, ``start`` itself."""
    keys = [k for k, f in zip(TIME_KEYS, free) if f]
    if not runs or not keys:
        return dict(start)
    lo = np.array([b[0] for k, b in zip(TIME_KEYS, TIME_BOUNDS) if k in keys])
    width = np.array([b[1] - b[0] for k, b in zip(TIME_KEYS, TIME_BOUNDS) if k in keys])
    meas = np.asarray(steps, dtype=float)
    u_start = np.clip((np.array([start[k] for k in keys]) - lo) / width, 0.0, 1.0)
    u = np.clip((np.array([(init or start)[k] for k in keys]) - lo) / width, 0.0, 1.0)
    sqrt_ridge = math.sqrt(RIDGE)

    def prof_at(v: np.ndarray) -> dict[str, Any]:
        return {**start, **{k: float(x) for k, x in zip(keys, lo + v * width)}}

    def resid(v: np.ndarray) -> np.ndarray:
        return np.concatenate([_residuals(step_times(runs, prof_at(v)), meas), sqrt_ridge * (v - u_start)])

    r = resid(u)
    cost = float(r @ r)
    lam, h = 1e-3, 1e-4
    for _ in range(max_iter):
        jac = np.empty((r.size, u.size))
        for j in range(u.size):
            step = h if u[j] + h <= 1.0 else -h
            v = u.copy()
            v[j] += step
            jac[:, j] = (resid(v) - r) / step
        grad = jac.T @ r
        # Constants at a bound that the descent direction pushes outward stay there this iteration.
        active = ~(((u <= 0.0) & (grad > 0)) | ((u >= 1.0) & (grad < 0)))
        if not active.any():
            break
        a = jac[:, active].T @ jac[:, active]
        improved = False
        while lam < 1e8:
            delta = np.zeros_like(u)
            delta[active] = np.linalg.solve(a + lam * (np.diag(np.diag(a)) + 1e-12 * np.eye(a.shape[0])),
                                            -grad[active])
            v = np.clip(u + delta, 0.0, 1.0)
            r_new = resid(v)
            c_new = float(r_new @ r_new)
            if c_new < cost:
                gain = cost - c_new
                u, r, cost, improved = v, r_new, c_new, True
                lam = max(lam / 3.0, 1e-9)
                break
            lam *= 4.0
        if not improved or gain <= tol * max(cost, 1e-12):
            break
    return prof_at(u)
