r"""Design analysis: type S and type M (exaggeration) errors of significant results.

Gelman and Carlin (2014) ask of a design not only how often a test is
significant (power) but what a significant result says: how often its sign is
wrong (**type S error**) and by how much it overstates the true effect on average
(**exaggeration ratio**, type M). A simulation knows each term's true value, so
both follow from the replicates:

- ``type_s`` = (significant estimates with the sign opposite to the true value) /
  (significant estimates);
- ``exaggeration`` = mean |estimate| over significant replicates / |true value|.

The true value of a term is the population value of the estimand that term's
estimator targets in the simulated design, with the observed (noisy,
attenuated) dMD: :func:`true_values` fits the models once to one very large
simulated sample of the design (:data:`REFERENCE_N` subjects, its own random
stream), so the clipping, rounding and regression to the mean of the scores are
included. Where that value is within :data:`ZERO_SE` of its own Monte Carlo
standard error of zero the sign is unknown and type S and exaggeration are not
defined (NaN).

:func:`retrodesign` is the closed form for one normal (or shifted-t) estimate
with a known standard error, as in the R package retrodesign: Gelman and Carlin
(2014) for power and type S; Lu, Qiu and Deng (2019) for the exaggeration ratio
(here also for a t reference, by the partial expectation of Student's t).

References
----------
Gelman A, Carlin J (2014). Beyond power calculations: assessing type S (sign)
and type M (magnitude) errors. Perspect Psychol Sci 9:641.
Lu J, Qiu Y, Deng A (2019). A note on type S/M errors in hypothesis testing.
Br J Math Stat Psychol 72:1.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import special

from dtitool._validation import _NOT_GIVEN, rng_argument
from dtitool.simulate import BLOCK_SIZE, simulate_arrays
from dtitool.stats.inference import batch_models, check_inference

__all__ = [
    "MIN_SIGNIFICANT",
    "REFERENCE_N",
    "ZERO_SE",
    "retrodesign",
    "true_values",
]

REFERENCE_N = 400_000
"""Subjects in the reference sample of :func:`true_values`: the Monte Carlo SE of
a true value is then about ``sqrt(98 / 400000) = 1.6 %`` of the SE of the same
estimate in a 98-patient trial."""

ZERO_SE = 5.0

MIN_SIGNIFICANT = 100
"""Fewest significant trials behind a ``type_s`` or ``exaggeration``: below it
both are left empty (a share of 48 trials has a binomial SE near 0.07)."""
"""A true value within this many of its Monte Carlo SEs of zero has no known sign:
type S and exaggeration are NaN for it (a null term has a 0.00006 chance per test
of being read as non-zero)."""


def true_values(design, *, inference: str = "welch", rng=None, n: int = REFERENCE_N,
                seed=_NOT_GIVEN):
    """Return the population value of every term's estimand in ``design``.

    Parameters
    ----------
    design : StudyDesign
    inference : {"welch", "ols", "hc3"}
        The estimator whose estimand is wanted (only the pooled slope differs:
        per-arm inverse-variance weighting for ``welch``, the default, as in
        :func:`~dtitool.stats.power_run.power`; OLS weighting for ``ols`` and
        ``hc3``).
    rng : SeedSequence, int or None
        Random stream of the reference sample.
    n : int
        Subjects in the reference sample (drawn as one block of
        :data:`~dtitool.simulate.BLOCK_SIZE` trials of ``n / BLOCK_SIZE``
        subjects, pooled into one sample: the simulator draws whole blocks).

    Returns
    -------
    value, se : ndarray, shape (J, K, 4)
        Estimates from the reference sample and their standard errors (the Monte
        Carlo uncertainty of the true values).
    """
    rng = rng_argument(rng, seed, where="true_values")
    check_inference(inference)
    per = max(design.n, math.ceil(n / BLOCK_SIZE))
    arrays = simulate_arrays(design.with_n(per), rng=rng, stop=BLOCK_SIZE,
                             chunk_size=BLOCK_SIZE, lean=True)
    pooled = _Pooled(arrays)
    bm = batch_models(pooled, inference)
    return bm.estimate[0], bm.se[0]


class _Pooled:
    """The replicates of a :class:`CohortArrays` as one large trial (R = 1)."""

    def __init__(self, arrays):
        def one(a):
            a = np.asarray(a)
            return a.reshape(1, a.shape[0] * a.shape[1], *a.shape[2:])

        self.arm = one(arrays.arm)
        self.treated = one(arrays.treated)
        self.md = one(arrays.md)
        self.scores = one(arrays.scores)
        self.observed = self.observed_24h = one(arrays.observed)
        self.primary = arrays.primary
        self.extra = None if arrays.extra is None else one(arrays.extra)
        self.design = arrays.design
        self.roi_names = arrays.roi_names
        self.outcome_names = arrays.outcome_names


def retrodesign(true_value, se, *, alpha: float = 0.05, df=math.inf) -> dict:
    r"""Power, type S error and exaggeration ratio of one estimate.

    The estimate is ``true_value + se * T`` with ``T`` standard normal
    (``df = inf``) or Student t with ``df`` degrees of freedom, declared
    significant when ``|estimate| > se * t_crit``.

    Parameters
    ----------
    true_value : float or array_like
        True effect ``A`` (non-zero).
    se : float or array_like
        Standard error ``s`` of the estimate (> 0).
    alpha : float
        Two-sided significance level.
    df : float
        Degrees of freedom of the reference distribution (inf: normal).

    Returns
    -------
    dict
        ``power``, ``type_s``, ``exaggeration`` (arrays or floats).

    Notes
    -----
    With ``d = A / s`` and critical value ``c``: ``power = P(T > c - d) +
    P(T < -c - d)``; ``type_s = P(T < -c - d) / power`` for ``d > 0`` (mirror for
    ``d < 0``); and, since ``E[T; T > a] = g(a)`` with ``g(a) = phi(a)`` for the
    normal and ``f_df(a) (df + a^2) / (df - 1)`` for Student t,

    .. math::

        \text{exaggeration} = \frac{d\,[P(T > c - d) - P(T < -c - d)]
            + g(c - d) + g(c + d)}{d \cdot \text{power}}

    (Lu, Qiu and Deng 2019 for the normal case; retrodesign's ``retro_design``).

    Examples
    --------
    Gelman and Carlin (2014), the beauty-and-sex-ratio example: true effect 0.1
    percentage points, standard error 3.28.

    >>> r = retrodesign(0.1, 3.28)
    >>> round(float(r["power"]), 4), round(float(r["type_s"]), 2)
    (0.0501, 0.46)
    >>> round(float(r["exaggeration"]))
    77
    """
    a = np.asarray(true_value, dtype=float)
    s = np.asarray(se, dtype=float)
    if np.any(~(s > 0)):
        raise ValueError(f"se must be > 0; got {se!r}")
    if np.any(a == 0) or np.any(~np.isfinite(a)):
        raise ValueError(f"true_value must be finite and non-zero; got {true_value!r}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1); got {alpha!r}")
    df = float(df)
    if not df > 1:
        raise ValueError(f"df must be > 1 (the mean of |estimate| must exist); "
                         f"got {df!r}")
    d = np.abs(a / s)  # the mirror image for a negative effect
    if math.isinf(df):
        c = -special.ndtri(alpha / 2)
        cdf = special.ndtr

        def g(x):
            return np.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)
    else:
        c = special.stdtrit(df, 1 - alpha / 2)

        def cdf(x):
            return special.stdtr(df, x)

        def g(x):
            dens = np.exp(special.gammaln((df + 1) / 2) - special.gammaln(df / 2)
                          - 0.5 * np.log(df * np.pi)
                          - (df + 1) / 2 * np.log1p(x * x / df))
            return dens * (df + x * x) / (df - 1)
    hi = cdf(d - c)  # P(T > c - d)
    lo = cdf(-c - d)  # P(T < -c - d)
    power = hi + lo
    exag = (d * (hi - lo) + g(c - d) + g(c + d)) / (d * power)
    out = {"power": power, "type_s": lo / power, "exaggeration": exag}
    return {k: v[()] if np.ndim(v) == 0 else v for k, v in out.items()}
