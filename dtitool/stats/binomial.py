"""Binomial intervals and bands of Monte Carlo rates (power, size).

:func:`wilson_interval` gives the interval of a rate estimated from simulated
trials; :func:`size_band` the band of rejection counts a test at its nominal
level stays inside (Bonferroni over the tests checked together), which flags a
test whose size is off.
"""

from __future__ import annotations

import numpy as np
from scipy import special

__all__ = ["SIZE_LEVEL", "size_band", "wilson_interval"]


SIZE_LEVEL = 0.99
"""Coverage of the binomial size band: a run whose tests are all at their
nominal level flags at least one of them with probability at most 1 %."""


def size_band(trials, alpha: float, tests: int, *, level: float = SIZE_LEVEL,
              sided: str = "two"):
    """Binomial band of rejection counts of ``tests`` tests at their nominal level.

    Parameters
    ----------
    trials : int or array_like of int
        Replicates per test.
    alpha : float
        Nominal level.
    tests : int
        Tests checked together (Bonferroni).
    level : float
        Probability that no nominal test falls outside its band.
    sided : {"two", "upper"}
        ``upper`` flags only counts above the band (family-wise error control is
        a claim "at most alpha").

    Returns
    -------
    low, high : ndarray of float
        A count ``k`` is within the band when ``low <= k <= high``. Each side has
        binomial tail probability at most ``(1 - level) / tests`` (halved for two
        sides), computed exactly with ``scipy.stats.binom``.
    """
    if sided not in ("two", "upper"):
        raise ValueError(f"sided must be 'two' or 'upper'; got {sided!r}")
    q = (1 - level) / max(int(tests), 1) / (2 if sided == "two" else 1)
    n = np.asarray(trials)
    lo, hi = _binom_quantiles(q, n, alpha)
    if sided != "two":
        lo = np.zeros(n.shape)
    return np.asarray(lo, float), np.asarray(hi, float)


def _binom_quantiles(q: float, n, p: float):
    """``scipy.stats.binom.ppf(q, n, p)`` and ``binom.isf(q, n, p)``, for q in (0, 1).

    The same Boost-based functions scipy.stats calls, taken from
    ``scipy.special`` so that a power run does not import ``scipy.stats`` (a
    third of a second, a tenth of a short run); scipy.stats itself where
    they are not there.
    """
    try:
        from scipy.special import _ufuncs as scu

        ppf, isf = scu._binom_ppf, scu._binom_isf
    except (ImportError, AttributeError):  # pragma: no cover - other scipy
        from scipy import stats

        return stats.binom.ppf(q, n, p), stats.binom.isf(q, n, p)
    n = np.asarray(n, dtype=float)
    return ppf(q, n, p), isf(q, n, p)


def wilson_interval(successes, trials, *, level: float = 0.95):
    """Wilson score interval of a binomial proportion.

    Parameters
    ----------
    successes, trials : array_like of int
    level : float
        Confidence level.

    Returns
    -------
    low, high : ndarray
        Bounds (NaN where ``trials`` is 0).

    Notes
    -----
    Wilson (1927), JASA 22:209. Unlike the Wald interval it stays inside [0, 1]
    and keeps close to nominal coverage at power near 0 or 1.
    """
    k = np.asarray(successes, dtype=float)
    n = np.asarray(trials, dtype=float)
    z = float(-special.ndtri((1 - level) / 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        ph = k / n
        den = 1 + z * z / n
        centre = (ph + z * z / (2 * n)) / den
        half = z * np.sqrt(ph * (1 - ph) / n + z * z / (4 * n * n)) / den
    # The bounds are exactly 0 with no successes and 1 with no failures; the
    # formula gives them only up to rounding (e.g. 1.7e-18 for 0).
    lo = np.where(k == 0, 0.0, np.clip(centre - half, 0, 1))
    hi = np.where(k == n, 1.0, np.clip(centre + half, 0, 1))
    empty = n == 0
    return np.where(empty, np.nan, lo), np.where(empty, np.nan, hi)
