"""What a reported p-value implies: the effect behind it and a replication's power.

Given a two-sided p from the trial's models (``docs/model.md``), the sample size,
the allocation and the reliability of observed dMD, :func:`implied_effect` solves
for the effect size that p implies *if taken at face value* (the observed effect
is the true effect), expressed as

- the observed correlation of dMD with the outcome change (within the treatment
  arm for the interaction and the arm slopes; the partial correlation for
  the pooled slope),
- the true correlation behind it, ``r_true = r_observed / sqrt(reliability)``
  (Spearman's correction for attenuation: measurement noise in dMD shrinks every
  observed correlation by the square root of its reliability),
- Cohen's ``f^2`` and the partial ``R^2`` of the term,

and the power a replication of the same size would have (noncentral F, as
G*Power's "R^2 increase", :func:`dtitool.stats.analytic.analytic_power`), plus the n a
replication needs for 80 % power. When ``r_true`` exceeds 1 the reported p is
impossible at that reliability and the result says so.

Face value is optimistic: a published significant p overestimates its effect
(winner's curse), so the replication power here is an upper bound in that sense;
for p near alpha it is near 50 %, whatever the study.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy import special

from dtitool.stats.analytic import analytic_power

__all__ = ["ImpliedEffect", "implied_effect", "n_for_power"]

# predictors of the model that carries each kind of term: the interaction
# model (group, dMD, group x dMD, baseline) or the additive model
_N_PREDICTORS = {"interaction": 4, "arm": 4, "slope_pooled": 3}


@dataclass(frozen=True, slots=True)
class ImpliedEffect:
    """The effect a reported p implies, taken at face value.

    Parameters
    ----------
    p : float
        Reported two-sided p.
    term : str
        Model term: ``interaction``, ``slope_<arm>`` or ``slope_pooled``.
    n : int
        Total sample size.
    arms : (str, str)
        Names of the treatment and the control arm.
    n_arms : (int, int)
        Sizes of the treatment and the control arm.
    reliability : float
        Reliability of observed dMD.
    df : int
        Residual degrees of freedom of the model.
    t : float
        The absolute t statistic (``|t|``) that gives ``p``.
    partial_r2, f2 : float
        Partial ``R^2`` of the term and Cohen's ``f^2 = t^2 / df``.
    r_observed : float
        Implied observed correlation of dMD with the outcome change (see
        :func:`implied_effect` for which correlation, per term).
    r_true : float
        ``r_observed / sqrt(reliability)``: the correlation with *true* dMD.
    possible : bool
        False when ``r_true >= 1``: no true effect can give this p at this
        reliability.
    min_reliability : float
        The smallest reliability at which the p is possible (``r_observed^2``).
    replication_power : float
        Power of a same-size replication at alpha 0.05 if the observed effect were
        the true one.
    replication_n80 : int or None
        Total n a replication needs for 80 % power at face value (same
        allocation; None above 100,000).
    message : str
        One sentence summarising the above.
    """

    p: float
    term: str
    n: int
    arms: tuple[str, str]
    n_arms: tuple[int, int]
    reliability: float
    df: int
    t: float
    partial_r2: float
    f2: float
    r_observed: float
    r_true: float
    possible: bool
    min_reliability: float
    replication_power: float
    replication_n80: int | None
    message: str

    def summary(self) -> str:
        """Return :attr:`message`, the one sentence that states the result."""
        return self.message


def n_for_power(
    *, f2: float, n_predictors: int, target_power: float = 0.8, alpha: float = 0.05,
    n_max: int = 100_000,
) -> int | None:
    """Smallest total n whose noncentral-F power reaches ``target_power``.

    Parameters
    ----------
    f2 : float
        Cohen's ``f^2`` of the tested term (population value).
    n_predictors : int
        Predictors in the model, intercept excluded.
    target_power, alpha : float
    n_max : int
        Give up above this n (returns None).

    Returns
    -------
    int or None
    """
    if not f2 > 0:
        return None
    lo = n_predictors + 2
    if analytic_power(f2=f2, n=lo, n_predictors=n_predictors, alpha=alpha) >= (
        target_power
    ):
        return lo
    if analytic_power(f2=f2, n=n_max, n_predictors=n_predictors, alpha=alpha) < (
        target_power
    ):
        return None
    hi = n_max
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if analytic_power(f2=f2, n=mid, n_predictors=n_predictors, alpha=alpha) >= (
            target_power
        ):
            hi = mid
        else:
            lo = mid
    return hi


def implied_effect(
    p: float,
    *,
    n: int,
    allocation: tuple[int, int] = (2, 1),
    reliability: float = 1.0,
    term: str = "interaction",
    alpha: float = 0.05,
    arms: tuple[str, str] = ("treatment", "control"),
) -> ImpliedEffect:
    """Solve for the effect size a reported p implies, and a replication's power.

    Parameters
    ----------
    p : float
        Reported two-sided p-value, in (0, 1).
    n : int
        Total sample size of the study.
    allocation : (int, int)
        Allocation ratio treatment:control (arm sizes follow as in the trial:
        ``(2, 1)`` with n = 98 gives 65 and 33).
    reliability : float
        Reliability of observed dMD, in (0, 1] (``StudyDesign.reliability()``).
    term : str
        ``interaction``, ``slope_<arm>`` (one arm's dMD slope) or
        ``slope_pooled``.
    alpha : float
        Level of the replication.
    arms : (str, str)
        Names of the treatment and the control arm (``design.arms``), for the
        ``slope_<arm>`` terms and the message.

    Returns
    -------
    ImpliedEffect

    Raises
    ------
    ValueError
        On a p, n, allocation, reliability or term out of range.

    Notes
    -----
    ``t`` solves ``p = 2 T_df(-|t|)`` with ``df = n - 5`` (interaction model) or
    ``n - 4`` (additive model). Partial ``R^2 = t^2 / (t^2 + df)``,
    ``f^2 = t^2 / df``. The observed correlation, assuming equal outcome and dMD
    SDs in the arms and (for the interaction and one-arm slopes) no dMD-outcome
    association in the other arm, with arm sizes ``n_k``, ``n_s``:

    - interaction: treatment-arm correlation ``rho^2 = c n / (1 + c n_k)`` with
      ``c = t^2 (1/n_k + 1/n_s) / n`` (from ``t = rho / sqrt(((n_k (1 - rho^2) +
      n_s) / n) (1/n_k + 1/n_s))``, the slope difference over its pooled SE);
    - treatment-arm slope: ``rho^2 = t^2 n / (n_k (n + t^2))`` (control arm:
      ``n_s``);
    - slope_pooled: the partial correlation ``t / sqrt(t^2 + df)``.

    These are large-sample approximations; the feasibility check in
    ``docs/model.md`` (an interaction p of 0.03 in 65 vs 33 needs an observed
    correlation of ~0.44) is the first formula.

    Examples
    --------
    >>> e = implied_effect(0.03, n=98, reliability=0.6)
    >>> round(e.r_observed, 2), round(e.r_true, 2), e.possible
    (0.44, 0.57, True)
    >>> implied_effect(1e-6, n=98, reliability=0.3).possible
    False
    """
    if isinstance(p, bool) or not isinstance(p, int | float) or not 0 < p < 1:
        raise ValueError(f"p must be a number in (0, 1), got {p!r}")
    if isinstance(n, bool) or not isinstance(n, int) or n < 8:
        raise ValueError(f"n must be an integer >= 8, got {n!r}")
    try:
        a_k, a_s = (int(x) for x in allocation)
    except (TypeError, ValueError):
        raise ValueError(
            f"allocation must be two positive integers (treatment, control), got "
            f"{allocation!r}"
        ) from None
    if a_k < 1 or a_s < 1:
        raise ValueError(
            f"allocation must be two positive integers, got {allocation!r}"
        )
    if isinstance(reliability, bool) or not isinstance(reliability, int | float) or (
        not 0 < reliability <= 1
    ):
        raise ValueError(f"reliability must be in (0, 1], got {reliability!r}")
    if (not isinstance(arms, tuple | list) or len(arms) != 2
            or not all(isinstance(a, str) and a for a in arms) or arms[0] == arms[1]):
        raise ValueError(f"arms must be two different arm names (treatment, "
                         f"control), got {arms!r}")
    at, ac = arms
    terms = ("interaction", f"slope_{at}", f"slope_{ac}", "slope_pooled")
    if term not in terms:
        raise ValueError(f"unknown term {term!r}; expected one of {list(terms)}")
    share = n * a_k / (a_k + a_s)
    n_k = math.floor(share) + (1 if share - math.floor(share) >= 0.5 else 0)
    n_k = min(max(n_k, 2), n - 2)
    n_s = n - n_k
    k = _N_PREDICTORS[term if term in _N_PREDICTORS else "arm"]
    df = n - k - 1
    t = float(special.stdtrit(df, 1 - p / 2))
    partial_r2 = t * t / (t * t + df)
    f2 = t * t / df
    if term == "interaction":
        c = t * t * (1 / n_k + 1 / n_s) / n
        rho2 = c * n / (1 + c * n_k)
    elif term == f"slope_{at}":
        rho2 = t * t * n / (n_k * (n + t * t))
    elif term == f"slope_{ac}":
        rho2 = t * t * n / (n_s * (n + t * t))
    else:
        rho2 = partial_r2
    r_obs = math.sqrt(min(rho2, 1.0)) if rho2 < 1 else float("inf")
    r_true = r_obs / math.sqrt(reliability)
    possible = r_true < 1
    rep = float(analytic_power(f2=f2, n=n, n_predictors=k, alpha=alpha))
    n80 = n_for_power(f2=f2, n_predictors=k, alpha=alpha)
    what = {"interaction": f"{at}-arm correlation ({ac} slope 0)",
            f"slope_{at}": f"{at}-arm correlation",
            f"slope_{ac}": f"{ac}-arm correlation",
            "slope_pooled": "partial correlation"}[term]
    if possible:
        msg = (
            f"p = {p:g} ({term}, n = {n}: {n_k} {at}, {n_s} {ac}) implies an "
            f"observed {what} of {r_obs:.2f}, {r_true:.2f} with true dMD at "
            f"reliability {reliability:g}; a same-size replication would have power "
            f"{rep:.2f} at face value (n = {n80} for 80%)"
        )
    else:
        msg = (
            f"p = {p:g} ({term}, n = {n}) is impossible at dMD reliability "
            f"{reliability:g}: it implies an observed {what} of {r_obs:.2f}, i.e. a "
            f"correlation of {r_true:.2f} > 1 with true dMD; it needs a reliability "
            f"of at least {r_obs**2:.2f}"
        )
    return ImpliedEffect(
        p=float(p), term=term, n=n, arms=(at, ac), n_arms=(n_k, n_s),
        reliability=float(reliability), df=df, t=t, partial_r2=partial_r2, f2=f2,
        r_observed=r_obs, r_true=r_true, possible=possible,
        min_reliability=min(r_obs**2, float("inf")), replication_power=rep,
        replication_n80=n80, message=msg,
    )
