r"""The omnibus test of a trial with three or more arms: whether the slopes differ.

With ``k >= 3`` arms the models report one interaction per arm but the control
(its dMD slope minus the control arm's) and an ``omnibus`` F test of all of them
at once (``k - 1`` numerator df): that every arm has the control arm's slope.
Under ``ols`` and ``hc3`` it is the Wald F test of the ``k - 1`` interaction
contrasts with the model's covariance (pooled-variance or HC3) and the residual
df, as statsmodels ``results.f_test``. Under ``welch`` the arms are fitted on
their own, so it is Welch's (1951) heteroscedastic test of equal means applied to
the arm slopes ``b_a`` with variances ``v_a`` and residual df ``f_a``:

.. math::

    w_a = 1 / v_a, \quad \bar b = \sum_a w_a b_a / \sum_a w_a, \quad
    \Lambda = \sum_a (1 - w_a / \textstyle\sum w)^2 / f_a,

    F = \frac{\sum_a w_a (b_a - \bar b)^2 / (k - 1)}
             {1 + 2 (k - 2) \Lambda / (k^2 - 1)},
    \qquad df = \big(k - 1,\; (k^2 - 1) / (3 \Lambda)\big).

For arm means (``v_a = s_a^2 / n_a``, ``f_a = n_a - 1``) this is statsmodels'
``anova_oneway(use_var="unequal")``, against which it is tested.

The F statistic is what results tables hold in the ``omnibus`` row's
``estimate`` column (its ``se`` and ``t`` are empty, its ``df`` the denominator
df).

References
----------
Welch BL (1951). On the comparison of several mean values: an alternative
approach. Biometrika 38:330.
"""

from __future__ import annotations

import numpy as np
from scipy import special

__all__ = ["f_sf", "wald_f", "welch_omnibus"]


def f_sf(F, df1, df2) -> np.ndarray:
    """Upper tail ``P(F_{df1, df2} >= F)``; NaN where an input is NaN."""
    F, df1, df2 = (np.asarray(v, float) for v in (F, df1, df2))
    with np.errstate(invalid="ignore"):
        return special.fdtrc(df1, df2, F)


def wald_f(est, cov) -> np.ndarray:
    """Wald F of ``H0: est = 0``: ``est' cov^{-1} est / q``, batched.

    Parameters
    ----------
    est : ndarray, shape (..., q)
        The contrasts' estimates.
    cov : ndarray, shape (..., q, q)
        Their covariance matrix.

    Returns
    -------
    ndarray, shape (...)
        NaN where ``cov`` is singular or not finite.
    """
    est, cov = np.asarray(est, float), np.asarray(cov, float)
    q = est.shape[-1]
    ok = np.all(np.isfinite(cov), axis=(-2, -1)) & np.all(np.isfinite(est), axis=-1)
    safe = np.where(ok[..., None, None], cov, np.eye(q))
    with np.errstate(invalid="ignore", divide="ignore"):
        try:
            sol = np.linalg.solve(safe, np.where(ok[..., None], est, 0.0)[..., None])
        except np.linalg.LinAlgError:
            sol = np.einsum("...ij,...j->...i", np.linalg.pinv(safe),
                            np.where(ok[..., None], est, 0.0))[..., None]
            ok = ok & (np.linalg.matrix_rank(safe) == q)
        F = np.einsum("...i,...i->...", est, sol[..., 0]) / q
    return np.where(ok, F, np.nan)


def welch_omnibus(est, var, df):
    """Welch's heteroscedastic F test that ``k`` independent estimates are equal.

    Parameters
    ----------
    est, var, df : ndarray, shape (..., k)
        Per group (arm): estimate, its variance and the df of that variance.

    Returns
    -------
    F, df1, df2 : ndarray, shape (...)
        The statistic and its numerator and denominator df (NaN where a
        variance is not positive and finite).
    """
    est, var, df = (np.asarray(v, float) for v in (est, var, df))
    k = est.shape[-1]
    if k < 2:
        raise ValueError(f"welch_omnibus needs two or more groups; got {k}")
    with np.errstate(invalid="ignore", divide="ignore"):
        w = 1.0 / var
        W = w.sum(axis=-1, keepdims=True)
        mean = (w * est).sum(axis=-1, keepdims=True) / W
        between = (w * (est - mean) ** 2).sum(axis=-1) / (k - 1)
        lam = ((1.0 - w / W) ** 2 / df).sum(axis=-1)
        F = between / (1.0 + 2.0 * (k - 2) * lam / (k * k - 1))
        df2 = (k * k - 1) / (3.0 * lam)
    bad = ~(np.all(np.isfinite(w) & (var > 0) & (df > 0), axis=-1)
            & np.isfinite(F))
    F = np.where(bad, np.nan, F)
    df2 = np.where(bad, np.nan, df2)
    return F, np.full(F.shape, float(k - 1)), df2
