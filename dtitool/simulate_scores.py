"""The score model of the cohort simulator: integer ratings at every visit.

Per outcome (:class:`~dtitool.design.OutcomeSpec`, Notes): baselines joined by
a Gaussian copula and admitted on the observed rating; the ``"logit"`` model
draws everything on a latent scale mapped into the score range, the
``"additive"`` one adds the change to the baseline and clips; a reliability
below 1 adds occasion error to every rating. :mod:`dtitool.simulate` draws the
random numbers and calls :func:`draw_scores`.
"""

from __future__ import annotations

import copy
import math

import numpy as np
from scipy import special

__all__ = ["ScoreModel", "draw_scores"]


class ScoreModel:
    """Per-outcome constants of the score model (``OutcomeSpec``, Notes).

    Arrays have one entry per outcome; ``logit`` says which outcomes use the
    logit-scale model (:mod:`dtitool.design.scales`), the others the additive
    one.
    """

    def __init__(self, outcomes, arms=None):
        o = outcomes
        # baseline mean, SD and inclusion threshold: (K,), or (arms, K) when
        # an additive outcome gives them per arm (indexed by arm code)
        base = np.array([[x.baseline(a) for x in o] for a in (arms or [None])],
                        dtype=float)
        self.per_arm = bool(np.any(base != base[:1]))
        if not self.per_arm:
            base = base[0]
        self.base_mean, self.base_sd, self.inc = np.moveaxis(base, -1, 0)
        self.lo = np.array([x.scale_min for x in o], dtype=float)
        self.hi = np.array([x.scale_max for x in o], dtype=float)
        rel = np.array([x.reliability for x in o])
        self.rtm = bool(np.any(rel < 1))
        self.logit = np.array([x.change_model == "logit" for x in o])
        # additive: occasion error of one rating, and the part of it predicted by
        # the baseline rating
        self.err_sd = self.base_sd * np.sqrt(1 - rel)
        self.e1_slope = 1 - rel
        self.e1_sd = self.base_sd * np.sqrt(rel * (1 - rel))
        self.base_p_lo = special.ndtr((self.inc - 0.5 - self.base_mean) / self.base_sd)
        self.base_p_hi = special.ndtr((self.hi + 0.5 - self.base_mean) / self.base_sd)
        # logit: latent constants (neutral values for additive outcomes)
        sc = [x.latent_scale() if lg else None
              for x, lg in zip(o, self.logit, strict=True)]
        get = lambda f, default: np.array(  # noqa: E731
            [default if c is None else float(f(c)) for c in sc])
        self.width = get(lambda c: c.width, 1.0)
        self.m = get(lambda c: c.m, 0.0)
        self.sd_rating = get(lambda c: math.sqrt(c.v), 1.0)
        self.beta = get(lambda c: c.beta, 1.0)
        self.resid_sd = get(lambda c: c.resid_sd, 0.0)
        self.tau = get(lambda c: math.sqrt(c.tau2), 0.0)
        self.p_admit_lo = get(lambda c: 1 - c.p_admit, 0.0)


def _for_arms(sm: ScoreModel, arm: np.ndarray) -> ScoreModel:
    """Return a copy of ``sm`` with per-arm constants per participant, (R, N, K)."""
    out = copy.copy(sm)
    for k in ("base_mean", "base_sd", "inc", "err_sd", "e1_sd", "base_p_lo",
              "base_p_hi"):
        setattr(out, k, getattr(sm, k)[arm])
    return out


def _to_score(z: np.ndarray, width: np.ndarray, lo: np.ndarray) -> np.ndarray:
    """``lo + (width expit(z) - 1/2)``, overflow-free (see dtitool.design.scales).

    Computed in place in ``z``. ``scipy.special.expit`` rather than
    ``exp(-logaddexp(0, -z))``: the same function to a few ulps, seven times
    faster (logaddexp was a quarter of a trial's simulation); scores are rounded
    to integers after it.
    """
    special.expit(z, out=z)
    z *= width
    z -= 0.5
    z += lo
    return z


def draw_scores(sm: ScoreModel, raw: dict[str, np.ndarray], z_copula: np.ndarray,
                 change: np.ndarray, visits=(2, 1, (), None), arm=None) -> np.ndarray:
    """Integer scores at every visit, shape (R, N, K, V).

    ``z_copula``: correlated standard normals of the baselines (R, N, K);
    ``change``: each subject's outcome change by the primary visit on its
    generative scale (R, N, K). ``visits``: ``(V, primary index, other
    follow-up indices, fractions (R, N, others) of the change reached there)``.
    Uses ``raw["z_e1"]``, ``raw["z_e2"]`` (and ``raw["z_ev"]`` at the other
    follow-ups) when a scale's reliability is below 1, and overwrites them, as
    it does ``z_copula``. The arithmetic is done in place, each operation in
    the order the formulas give it (the same values as forming every
    temporary, a third faster). ``arm``: arm codes (R, N), used when the
    baselines differ between arms (``sm.per_arm``).
    """
    nv, primary, others, fr = visits
    if sm.per_arm:
        sm = _for_arms(sm, arm)
    extra = [None] * len(others)
    u = special.ndtr(z_copula, out=z_copula)
    lg = sm.logit
    base_cont = post_cont = None
    if not lg.all():
        # additive: truncated-normal baseline rating, follow-up = baseline + change
        p = sm.base_p_lo + u * (sm.base_p_hi - sm.base_p_lo)
        add_base = sm.base_mean + sm.base_sd * special.ndtri(p)
        start = np.clip(np.rint(add_base), sm.inc, sm.hi)
        add_post = start + change
        extra = [start + change * fr[..., i, None] for i in range(len(others))]
        if sm.rtm:
            # occasion errors of the ratings; e1 given the observed baseline
            e1 = (sm.e1_slope * (add_base - sm.base_mean)
                  + sm.e1_sd * raw["z_e1"])
            add_post = add_post - e1 + sm.err_sd * raw["z_e2"]
            extra = [v - e1 + sm.err_sd * raw["z_ev"][..., i]
                     for i, v in enumerate(extra)]
        base_cont, post_cont = add_base, add_post
    if lg.any():
        # logit: the latent baseline rating is normal, truncated at admission;
        # latent severity given the rating is normal too.
        # x = sd_rating ndtri(p_admit_lo + u (1 - p_admit_lo)), in u
        u *= 1 - sm.p_admit_lo
        u += sm.p_admit_lo
        x = special.ndtri(u, out=u)
        x *= sm.sd_rating  # latent rating minus its mean
        if sm.rtm:
            # z_post = (m + beta x + resid_sd e1) + change + tau e2
            z_post = sm.beta * x
            z_post += sm.m
            e = raw["z_e1"]
            e *= sm.resid_sd
            z_post += e
            pre = z_post.copy() if others else None  # latent baseline severity
            z_post += change
            e = raw["z_e2"]
            e *= sm.tau
            z_post += e
            lg_extra = [pre + change * fr[..., i, None]
                        + sm.tau * raw["z_ev"][..., i] for i in range(len(others))]
            x += sm.m  # the baseline's latent value m + x
        else:
            x += sm.m
            z_post = x + change
            lg_extra = [x + change * fr[..., i, None] for i in range(len(others))]
        lg_base = _to_score(x, sm.width, sm.lo)
        lg_post = _to_score(z_post, sm.width, sm.lo)
        lg_extra = [_to_score(v, sm.width, sm.lo) for v in lg_extra]
        if base_cont is None:
            base_cont, post_cont, extra = lg_base, lg_post, lg_extra
        else:
            base_cont = np.where(lg, lg_base, base_cont)
            post_cont = np.where(lg, lg_post, post_cont)
            extra = [np.where(lg, a, b) for a, b in zip(lg_extra, extra, strict=True)]
    out = np.empty((*base_cont.shape, nv))
    np.clip(np.rint(base_cont, out=base_cont), sm.inc, sm.hi, out=out[..., 0])
    np.clip(np.rint(post_cont, out=post_cont), sm.lo, sm.hi, out=out[..., primary])
    for v, values in zip(others, extra, strict=True):
        np.clip(np.rint(values, out=values), sm.lo, sm.hi, out=out[..., v])
    return out
