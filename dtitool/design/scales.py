"""Bounded rating scales: the logit model of an outcome's scores and their change.

A rating on an integer scale ``lo .. hi`` is modelled on the logit of its position
in the scale. With ``width = hi - lo + 1`` a latent value ``z`` maps to the
continuous score

    score = lo + width * expit(z) - 1/2,

which lies in ``(lo - 1/2, hi + 1/2)``: rounded, it is always a valid integer
score, so nothing is clipped and nothing piles up at either end. Near the floor
a change of ``z`` is a proportional change of the score above the floor.

Every quantity is normal on the latent scale:

- one rating of a patient ``Z_B = Z + e``: stable severity ``Z ~ N(m, s2)`` plus
  an occasion error ``e ~ N(0, v - s2)``;
- admission keeps patients whose rounded baseline rating is at least the
  inclusion threshold, i.e. ``Z_B >= z_min``;
- the true 24 h severity is ``Z + d`` with ``d ~ N(mu, sigma^2)`` per arm, and the
  24 h rating adds a fresh occasion error.

A patient's *true score* is the mean of their ratings, ``E[score(z + e)]``
(classical test theory), so an observed change is the true change plus rating
error of mean 0 plus regression to the mean.

The user states everything on the score scale (what sources report): the mean
and SD of one baseline rating before admission, its test-retest reliability
(intraclass correlation of two ratings of one patient), and the mean and SD of
the true 24 h change among admitted patients. This module solves for the latent
parameters by Gauss quadrature (exact to ~1e-9 for these smooth integrands) and
caches the results, so a design is converted once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from statistics import NormalDist

import numpy as np

__all__ = [
    "LogitScale",
    "admitted_change_moments",
    "logit_change",
    "logit_scale",
    "regression_to_mean",
    "to_latent",
    "to_score",
    "true_score",
]

_STD = NormalDist()
# Gauss-Hermite (probabilists') nodes and weights for E[f(X)], X ~ N(0, 1).
_HX, _HW = np.polynomial.hermite_e.hermegauss(40)
_HW = _HW / math.sqrt(2 * math.pi)
# Gauss-Legendre on (0, 1), for the truncated baseline (inverse-CDF nodes).
_LX, _LW = np.polynomial.legendre.leggauss(64)
_LU, _LW = (_LX + 1) / 2, _LW / 2


def to_score(z, width: float):
    """Continuous score above the floor, ``width * expit(z) - 1/2``."""
    z = np.asarray(z, dtype=float)
    return width * np.exp(-np.logaddexp(0.0, -z)) - 0.5


def to_latent(y, width: float):
    """Inverse of :func:`to_score` for ``-1/2 < y < width - 1/2``."""
    q = (np.asarray(y, dtype=float) + 0.5) / width
    return np.log(q) - np.log1p(-q)


@dataclass(frozen=True, slots=True)
class LogitScale:
    """Latent parameters of one outcome's ratings (see the module docstring).

    Parameters
    ----------
    width : int
        ``scale_max - scale_min + 1``.
    m, v : float
        Mean and variance of one latent baseline rating ``Z_B`` before admission.
    s2 : float
        Variance of latent stable severity ``Z`` (``v - s2`` is the occasion error).
    a : float
        Admission bound of the standardised rating ``(Z_B - m) / sqrt(v)``
        (``-inf`` when every rating is admitted).
    """

    width: int
    m: float
    v: float
    s2: float
    a: float

    @property
    def tau2(self) -> float:
        """Variance of one rating's latent occasion error."""
        return max(self.v - self.s2, 0.0)

    @property
    def beta(self) -> float:
        """Slope of ``E[Z | Z_B]`` on ``Z_B``: ``s2 / v``."""
        return self.s2 / self.v

    @property
    def resid_sd(self) -> float:
        """SD of ``Z`` given ``Z_B``: ``sqrt(s2 (v - s2) / v)``."""
        return math.sqrt(self.s2 * self.tau2 / self.v)

    @property
    def p_admit(self) -> float:
        """Share of the screened population admitted."""
        return 1.0 - _cdf(self.a)

    def admitted_nodes(self) -> tuple[np.ndarray, np.ndarray]:
        """Quadrature nodes and weights of the admitted standardised rating."""
        pa = _cdf(self.a)
        x = np.array([_STD.inv_cdf(min(pa + u * (1 - pa), 1 - 1e-16))
                      for u in _LU])
        return x, _LW


def _cdf(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2.0)) if math.isfinite(x) else (
        0.0 if x < 0 else 1.0)


def _rating_moments(width, m, v):
    y = to_score(m + math.sqrt(v) * _HX, width)
    mean = float(_HW @ y)
    return mean, math.sqrt(max(float(_HW @ (y - mean) ** 2), 0.0))


def _icc(width, m, v, s2):
    """ICC of two ratings: var(E[score | Z]) / var(score)."""
    z = m + math.sqrt(s2) * _HX[:, None]
    h = to_score(z + math.sqrt(max(v - s2, 0.0)) * _HX[None, :], width) @ _HW
    mh = float(_HW @ h)
    _, sd = _rating_moments(width, m, v)
    return float(_HW @ (h - mh) ** 2) / (sd * sd)


@lru_cache(maxsize=512)
def logit_scale(lo: int, hi: int, mean: float, sd: float, reliability: float,
                inclusion_min: int) -> LogitScale:
    """Solve the latent parameters that give the stated rating distribution.

    Parameters
    ----------
    lo, hi : int
        Scale range.
    mean, sd : float
        Mean and SD of one (continuous) baseline rating before admission.
    reliability : float
        Intraclass correlation of two ratings of the same patient, in (0, 1].
    inclusion_min : int
        Lowest admitted (rounded) baseline score.

    Raises
    ------
    ValueError
        If no logit-normal rating has that mean and SD on the scale.
    """
    width = hi - lo + 1
    target = np.array([mean - lo, sd])
    half = width / 2 - 0.5
    if not (-0.5 < target[0] < width - 0.5) or not 0 < sd < half:
        raise ValueError(f"no rating on a {lo}-{hi} scale has mean {mean:g} and "
                         f"SD {sd:g} under the logit model (the SD must be below "
                         f"{half:g} and the mean inside the scale)")
    # Newton on (m, log v) from the delta-method start.
    m = float(to_latent(target[0], width))
    q = (target[0] + 0.5) / width
    lv = math.log((sd / (width * q * (1 - q))) ** 2)
    for _ in range(100):
        f = np.array(_rating_moments(width, m, math.exp(lv))) - target
        if np.max(np.abs(f)) < 1e-10:
            break
        jac = np.empty((2, 2))
        for j, (dm, dl) in enumerate(((1e-6, 0.0), (0.0, 1e-6))):
            fj = np.array(_rating_moments(width, m + dm, math.exp(lv + dl))) - target
            jac[:, j] = (fj - f) / 1e-6
        step = np.linalg.solve(jac, -f)
        step *= min(1.0, 1.0 / max(np.max(np.abs(step)), 1e-12))  # damped
        m, lv = m + step[0], lv + step[1]
    else:
        bound = math.sqrt((mean - lo + 0.5) * (hi + 0.5 - mean))
        raise ValueError(f"no rating on the {lo}-{hi} scale has mean {mean:g} and SD "
                         f"{sd:g} under the logit model: the SD must be well below "
                         f"{bound:.3g}, the SD of all-or-nothing ratings at that mean")
    v = math.exp(lv)
    # reliability: the ICC rises monotonically with the stable share s2 / v
    if reliability >= 1:
        s2 = v
    else:
        lo_f, hi_f = 0.0, 1.0
        for _ in range(60):
            mid = (lo_f + hi_f) / 2
            if _icc(width, m, v, mid * v) < reliability:
                lo_f = mid
            else:
                hi_f = mid
        s2 = (lo_f + hi_f) / 2 * v
    edge = inclusion_min - 0.5 - lo
    a = (float(to_latent(edge, width)) - m) / math.sqrt(v) if edge > -0.5 else (
        -math.inf)
    return LogitScale(width=width, m=float(m), v=float(v), s2=float(s2), a=float(a))


@lru_cache(maxsize=256)
def _true_score_table(width: int, tau2: float) -> tuple[np.ndarray, np.ndarray]:
    z = np.linspace(-30.0, 30.0, 6001)
    if tau2 <= 0:
        return z, to_score(z, width)
    h = to_score(z[:, None] + math.sqrt(tau2) * _HX[None, :], width) @ _HW
    return z, h


def true_score(z, sc: LogitScale) -> np.ndarray:
    """Classical true score above the floor: the mean rating of latent ``z``.

    ``E[score(z + e)]`` over the occasion error ``e``, so that an observed change
    is the true change plus rating error (mean 0) and regression to the mean.
    Tabulated once per scale and interpolated (error below 1e-4 points).
    """
    grid, h = _true_score_table(sc.width, sc.tau2)
    return np.interp(z, grid, h)


def _admitted_grid(sc: LogitScale):
    """Admitted (x, eta) grid: baseline rating and true severity, with weights."""
    x, wx = sc.admitted_nodes()
    zb = sc.m + math.sqrt(sc.v) * x
    z = (sc.m + sc.beta * (zb - sc.m))[:, None] + sc.resid_sd * _HX[None, :]
    w = wx[:, None] * _HW[None, :]
    return zb, z, w


def admitted_change_moments(sc: LogitScale, mu: float, sigma: float
                            ) -> tuple[float, float]:
    """Mean and SD of the true change ``true(Z + d) - true(Z)`` of the admitted.

    ``true`` is :func:`true_score`: the change of the mean rating.
    """
    _, z, w = _admitted_grid(sc)
    t0 = true_score(z, sc)[..., None]
    t1 = true_score(z[..., None] + mu + sigma * _HX, sc)
    dd = t1 - t0
    ww = w[..., None] * _HW
    mean = float(np.sum(ww * dd))
    var = float(np.sum(ww * dd * dd)) - mean * mean
    return mean, math.sqrt(max(var, 0.0))


def regression_to_mean(sc: LogitScale) -> float:
    """``E[true(Z) - score(Z_B) | admitted]``: the untreated change, in points.

    The mean 24 h minus baseline score of admitted patients with no true change:
    their baseline ratings were selected high, their next ratings are not.
    """
    zb, z, w = _admitted_grid(sc)
    return float(np.sum(w * (true_score(z, sc) - to_score(zb, sc.width)[:, None])))


@lru_cache(maxsize=1024)
def logit_change(sc: LogitScale, mean: float, sd: float) -> tuple[float, float]:
    """Solve ``(mu, sigma)`` of the latent change for a true change mean and SD.

    Parameters
    ----------
    sc : LogitScale
    mean, sd : float
        Mean and SD of the true 24 h change among admitted patients (points).

    Returns
    -------
    (mu, sigma) : tuple of float

    Raises
    ------
    ValueError
        If no latent change gives that mean and SD on the scale; the message
        gives the attainable bound.
    """
    target = np.array([mean, sd])
    # start: the change of an average admitted patient, by the delta method
    _, z, w = _admitted_grid(sc)
    t0 = float(np.sum(w * true_score(z, sc)))
    if not -0.5 < t0 + mean < sc.width - 0.5:
        raise ValueError(f"a mean change of {mean:g} takes the average admitted "
                         f"score ({t0:.3g} above the floor) off the scale")
    mu = float(to_latent(t0 + mean, sc.width) - to_latent(t0, sc.width))
    q = (t0 + mean / 2 + 0.5) / sc.width
    ls = math.log(max(sd / (sc.width * q * (1 - q)), 1e-3))
    smallest = admitted_change_moments(sc, mu, 1e-6)[1]
    if not sd > smallest:
        raise ValueError(f"the SD of a true change with mean {mean:g} must exceed "
                         f"{smallest:.3g} points (the spread a uniform shift on "
                         f"the logit scale already gives); got {sd:g}")
    for _ in range(100):
        f = np.array(admitted_change_moments(sc, mu, math.exp(ls))) - target
        if np.max(np.abs(f)) < 1e-9:
            return float(mu), math.exp(ls)
        jac = np.empty((2, 2))
        for j, (dm, dl) in enumerate(((1e-6, 0.0), (0.0, 1e-6))):
            fj = np.array(admitted_change_moments(sc, mu + dm, math.exp(ls + dl)))
            jac[:, j] = (fj - target - f) / 1e-6
        step = np.linalg.solve(jac, -f)
        step *= min(1.0, 0.5 / max(np.max(np.abs(step)), 1e-12))  # damped
        mu, ls = mu + step[0], ls + step[1]
    raise ValueError(f"no latent change gives a true change of mean {mean:g} and "
                     f"SD {sd:g} on this scale (the SD may be beyond what the "
                     "bounded scale allows)")
