r"""Per-arm variances and the choice of the random slope, shared by the mixed models.

Two choices shape the mixed models of :mod:`dtitool.stats.mixed` (one cohort)
and :mod:`dtitool.stats.mixed_power` (thousands of simulated ones), and both
make them the same way:

``variance``
    ``"arm"`` (default): each arm is fitted on its own participants, with its
    own random-effects covariance, residual variance and covariate effects:
    ``value ~ time + covariates + (1 + time | participant)`` per arm, as SAS's
    ``group=`` option (or nlme's ``varIdent`` beside a blocked random effect)
    fits it. The tested terms are then differences of the arms' coefficients:
    ``time`` is the control arm's slope, ``<arm>`` the difference of the
    intercepts at the covariates' pooled mean, ``<arm>:time`` the difference of
    the slopes, each with its variance the sum of the arms' and Satterthwaite's
    degrees of freedom, which for independent arms is Welch's (1947) formula
    :math:`(v_a + v_c)^2 / (v_a^2 / d_a + v_c^2 / d_c)` of the arms' own
    Satterthwaite df (:func:`dtitool.stats.inference.welch_df`): the REML
    criterion of the joint model with per-arm variance parameters is the sum
    of the arms' criteria, so its Hessian is block diagonal and lmerTest's
    formula splits into the arms' terms. A comparison group that is not
    randomised (healthy controls rated on the patients' scale, at its floor)
    differs in spread from the treated arm; one common covariance then
    mis-states both arms' variances, and the tests drift off their level (in
    ``ect-course``'s null version, with one covariance, the controls' MADRS
    slope never rejects in 10,000 trials and the MADRS interaction tests at
    0.040: docs/model.md, Mixed models).
    ``"common"``: one covariance for every arm, lme4's and statsmodels'
    default model ``value ~ arm * time + covariates + (1 + time | participant)``.

``random``
    ``"select"`` (default): in each fit (each arm's, with ``variance="arm"``)
    the random slope is kept when the REML likelihood-ratio test of ``(1 +
    time | participant)`` against ``(1 | participant)`` (same fixed effects,
    two variance parameters, chi-squared with 2 df) has p below
    :data:`SELECT_ALPHA` = 0.2, else the random-intercept model is used
    (Matuschek et al. 2017, who showed this keeps the fixed-effect tests near
    their level where a slope variance is near zero, with more power than
    the maximal model). ``"slope"``: always ``(1 + time | participant)``, the
    maximal model (Barr et al. 2013), which is conservative where a slope
    variance is near its boundary (healthy controls whose volume does not
    change: 0.036-0.049 at alpha 0.05 in ``ect-course``'s null version).
    With the visit as a factor the model has a random intercept only and
    there is nothing to choose.

References
----------
Barr DJ, Levy R, Scheepers C, Tily HJ (2013). Random effects structure for
confirmatory hypothesis testing: keep it maximal. Journal of Memory and
Language 68(3), 255-278.

Matuschek H, Kliegl R, Vasishth S, Baayen H, Bates D (2017). Balancing Type I
error and power in linear mixed models. Journal of Memory and Language 94,
305-315.

Welch BL (1947). The generalization of "Student's" problem when several
different population variances are involved. Biometrika 34(1-2), 28-35.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "RANDOM",
    "SELECT_ALPHA",
    "VARIANCES",
    "check_choices",
    "keep_slope",
    "random_label",
]

VARIANCES = ("arm", "common")
"""How the mixed models treat the arms' variances (module docstring)."""

RANDOM = ("select", "slope")
"""How the mixed models choose their random effects (module docstring)."""

SELECT_ALPHA = 0.2
"""Level of the likelihood-ratio test that keeps a random slope (Matuschek et
al. 2017's recommendation)."""


def check_choices(variance: str, random: str) -> None:
    """Raise ValueError naming a bad ``variance`` or ``random``."""
    if variance not in VARIANCES:
        raise ValueError(f"variance must be one of {', '.join(VARIANCES)}; got "
                         f"{variance!r}")
    if random not in RANDOM:
        raise ValueError(f"random must be one of {', '.join(RANDOM)}; got {random!r}")


def keep_slope(loglik_slope, loglik_intercept, alpha: float = SELECT_ALPHA):
    """Whether the REML likelihood-ratio test keeps the random slope.

    Parameters
    ----------
    loglik_slope, loglik_intercept : array_like
        REML log-likelihoods of ``(1 + time | participant)`` and ``(1 |
        participant)`` with the same fixed effects.
    alpha : float
        Level of the test (chi-squared with 2 df: the slope's variance and its
        covariance with the intercept).

    Returns
    -------
    ndarray of bool
        True where ``p < alpha``; False where either log-likelihood is NaN.

    Examples
    --------
    >>> keep_slope([-100.0, -100.0], [-100.5, -103.0])
    array([False,  True])
    """
    from scipy.stats import chi2

    a = np.asarray(loglik_slope, dtype=float)
    b = np.asarray(loglik_intercept, dtype=float)
    with np.errstate(invalid="ignore"):
        stat = np.maximum(2.0 * (a - b), 0.0)
        p = chi2.sf(stat, 2)
    return np.isfinite(a) & np.isfinite(b) & (p < alpha)


def random_label(time: str, slope: bool) -> str:
    """Return the random part in lme4's notation, ``(1 + dose | participant)``."""
    return f"(1 + {time} | participant)" if slope else "(1 | participant)"
