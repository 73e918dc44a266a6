"""Analytic power of the regression F test (noncentral F), the check on Monte Carlo.

:func:`analytic_power` is what G*Power and R's ``pwr.f2.test`` compute for a
fixed-design regression; the tests hold the simulated power of the batched
engine against it where the two must agree.
"""

from __future__ import annotations

import numpy as np

__all__ = ["analytic_power"]


def analytic_power(
    *, f2, n, n_predictors: int, df1: int = 1, alpha: float = 0.05
):
    """Power of the F test of ``df1`` predictors in a fixed-design regression.

    What G*Power computes for "Linear multiple regression: Fixed model, R^2
    increase" (Faul et al. 2009): noncentrality ``lambda = f2 * n``, numerator
    df ``df1`` (predictors tested), denominator df ``n - n_predictors - 1``
    (``n_predictors`` counts all predictors, tested ones included, without the
    intercept).

    Parameters
    ----------
    f2 : float or array_like
        Cohen's effect size ``f^2 = R^2_partial / (1 - R^2_partial)``.
    n : int or array_like
        Total sample size.
    n_predictors : int
        Predictors in the full model (4 for the interaction model:
        treated, dMD, treated x dMD, baseline).
    df1 : int
        Predictors tested (1 for a single coefficient).
    alpha : float
        Significance level.

    Returns
    -------
    float or ndarray

    Notes
    -----
    For a *fixed* design the t statistic of a coefficient has a noncentral t
    distribution and ``t^2`` a noncentral F with ``lambda = b^2 SSR_x / sigma^2``
    (``SSR_x``: the tested column's residual sum of squares on the others), i.e.
    ``f2 * n`` with ``f2`` defined in-sample. With *random* predictors (the
    simulated trial: dMD differs between replicates) ``lambda`` itself varies
    from sample to sample, and since power is a concave function of ``lambda``
    over the range that matters, the average power is slightly lower than the
    power at the average ``lambda`` (Jensen); the exact random-X distribution is
    given by Gatsonis & Sampson (1989), Psychol Bull 106:516. Measurement error
    in dMD lowers the effective ``f2`` further (attenuation by the reliability).

    References
    ----------
    Faul F, Erdfelder E, Buchner A, Lang AG (2009). Statistical power analyses
    using G*Power 3.1. Behav Res Methods 41:1149.
    Cohen J (1988). Statistical Power Analysis for the Behavioral Sciences, ch. 9.

    Examples
    --------
    R ``pwr::pwr.f2.test(u = 5, v = 199, f2 = 0.09, sig.level = 0.01)`` gives
    power 0.7967 (``lambda = f2 * (u + v + 1)``, i.e. ``n = 205``):

    >>> round(float(analytic_power(f2=0.09, n=205, n_predictors=5, df1=5,
    ...                            alpha=0.01)), 4)
    0.7967
    """
    f2 = np.asarray(f2, dtype=float)
    n = np.asarray(n, dtype=float)
    if np.any(f2 < 0):
        raise ValueError(f"f2 must be >= 0, got {f2}")
    df2 = n - n_predictors - 1
    if np.any(df2 < 1):
        raise ValueError(f"n must exceed n_predictors + 1 = {n_predictors + 1}, "
                         f"got {n}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    from scipy import stats  # scipy.stats is slow to import: only here

    crit = stats.f.isf(alpha, df1, df2)
    out = stats.ncf.sf(crit, df1, df2, f2 * n)
    return out[()] if out.ndim == 0 else out
