r"""What a pooled-variance interaction test's level is when the arms' variances differ.

The ``ols`` interaction test divides the difference of two arms' dMD slopes by a
standard error built from one residual variance pooled over the arms. When the
arms' residual variances differ, that standard error is wrong in a direction set
by the arm sizes: too small (the test rejects too often) when the smaller arm is
the noisier one, too large when the larger arm is. For arm ``a`` with residual
variance :math:`\sigma_a^2`, residual df :math:`\nu_a` and
:math:`c_a = [(X_a' X_a)^{-1}]_{dMD}` from its own fit (``d_score ~ d_md +
baseline``), the slope difference of a treatment arm ``t`` and the control arm
``c`` has variance :math:`V = \sigma_t^2 c_t + \sigma_c^2 c_c`, while the pooled
test estimates it, on average, as :math:`\tilde V = \bar\sigma^2 (c_t + c_c)` with
:math:`\bar\sigma^2 = (\nu_t \sigma_t^2 + \nu_c \sigma_c^2) / (\nu_t + \nu_c)`. The
test statistic is then about normal with variance :math:`V / \tilde V`, so its
level is about

.. math::

    2 \Phi\big(-z_{1 - \alpha/2} \sqrt{\tilde V / V}\big).

:func:`ols_level` evaluates this with each arm's estimated residual variance: an
estimate of the level, for a warning (the Welch test, ``inference="welch"``, needs
no such assumption), not a corrected p-value. The same reasoning is the textbook
one for the pooled two-sample t test (Scheffé 1959, section 10.4).

References
----------
Scheffé H (1959). The Analysis of Variance. Wiley.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import special

from dtitool._constants import DMD_SCALE

__all__ = ["LEVEL_TOLERANCE", "level_warning", "ols_level"]

LEVEL_TOLERANCE = 0.3
"""A level more than this share away from alpha (0.035 or 0.065 at 0.05) is
worth a warning."""


def _arm_fit(y: np.ndarray, x: np.ndarray, b: np.ndarray):
    """Residual variance, its df and ``[(X'X)^-1]_xx`` of ``y ~ 1 + x + b``."""
    X = np.column_stack([np.ones_like(x), x, b])
    df = len(y) - X.shape[1]
    if df < 1:
        return np.nan, 0, np.nan
    xtx_inv = np.linalg.pinv(X.T @ X)
    beta = xtx_inv @ (X.T @ y)
    resid = y - X @ beta
    return float(resid @ resid / df), df, float(xtx_inv[1, 1])


def ols_level(results, *, alpha: float = 0.05) -> pd.DataFrame:
    """Return the approximate level of each ``ols`` interaction test, per model.

    Parameters
    ----------
    results : AnalysisResults
        A complete-case analysis (:func:`dtitool.stats.analysis.fit_models`);
        the participants of each model are its ``rows``.
    alpha : float
        The nominal level.

    Returns
    -------
    DataFrame
        One row per ROI, outcome and non-control arm: ``roi, outcome, arm,
        variance_ratio`` (the arm's residual variance over the control arm's),
        ``level`` (module docstring) and ``off`` (more than
        :data:`LEVEL_TOLERANCE` of alpha away from it).
    """
    names = results.names
    ch = results.changes
    z = float(special.ndtri(1.0 - alpha / 2.0))
    rows = []
    skip = set(getattr(results, "not_estimable", {}) or {})
    for (roi, outcome), idx in results.rows.items():
        if (roi, outcome) in skip:  # a term the data cannot estimate: no level
            continue
        used = ch.loc[idx]
        fits = {}
        for arm in names.arms:
            a = used[used["group"] == arm]
            fits[arm] = _arm_fit(
                a[f"d_{outcome}"].to_numpy(float),
                a["d_md"].to_numpy(float) / DMD_SCALE,
                a[names.score_column(outcome, names.baseline)].to_numpy(float))
        s_c, nu_c, c_c = fits[names.control]
        for arm in names.arms[:-1]:
            s_t, nu_t, c_t = fits[arm]
            pooled = (nu_t * s_t + nu_c * s_c) / (nu_t + nu_c)
            with np.errstate(invalid="ignore", divide="ignore"):
                ratio = np.float64(pooled * (c_t + c_c)) / (s_t * c_t + s_c * c_c)
                level = float(2.0 * special.ndtr(-z * np.sqrt(ratio)))
                var_ratio = float(np.float64(s_t) / s_c)
            rows.append({"roi": roi, "outcome": outcome, "arm": arm,
                         "variance_ratio": var_ratio, "level": level,
                         "off": bool(np.isfinite(level) and abs(level - alpha)
                                     > LEVEL_TOLERANCE * alpha)})
    return pd.DataFrame(rows, columns=["roi", "outcome", "arm", "variance_ratio",
                                       "level", "off"])


def level_warning(results, *, alpha: float = 0.05) -> str | None:
    """One sentence when an ``ols`` interaction test's level is off, else None."""
    t = ols_level(results, alpha=alpha)
    off = t[t["off"]]
    if off.empty:
        return None
    worst = off.loc[(off["level"] - alpha).abs().idxmax()]
    lo, hi = off["level"].min(), off["level"].max()
    ctrl = results.names.control
    return (
        f"the arms' residual variances differ (e.g. {worst['roi']} / "
        f"{worst['outcome']}: {worst['arm']} {worst['variance_ratio']:.2g} times "
        f"{ctrl}), so {len(off)} of {len(t)} pooled-variance (ols) interaction "
        f"tests have an estimated level of {lo:.3f}-{hi:.3f} instead of "
        f"{alpha:g}; --inference welch fits each arm's own variance")
