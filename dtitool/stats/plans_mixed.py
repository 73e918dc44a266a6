"""The mixed-model plan: the score at both visits on MD, a random intercept.

Where the other plans regress the score *change* on the imaging change, the
``mixed`` plan models both visits' scores as they are, with MD at each visit
as a time-varying covariate, per ROI and outcome::

    score_iv = b0 + b1 visit_v + b2 MD_iv + u_i + e_iv      (REML)

with a random intercept ``u_i`` per participant. By default (``welch``) each
arm is fitted on its own (its own variances; the mixed models' ``--variance
arm``), and the interaction is an arm's ``b2`` minus the control arm's, its
variance the sum and its df Welch's combination of the arms' Satterthwaite df
(:func:`dtitool.stats.inference.welch_df`). ``ols`` fits one model of every arm
(``visit``, the arms, ``arm:visit``, ``MD`` and ``arm:MD``; one covariance)
and tests ``arm:MD`` with its Satterthwaite df. The participants are those
every plan uses (both ratings and every ROI's scan at the primary visit).

The estimand differs from the change-score plans': ``b2`` combines the
association of MD with the score *within* participants (their change, as the
change-score plans' slope) and *between* them (at baseline), weighted by the
fit. In a design where baseline MD does not go with the baseline score (every
shipped design) the between part pulls ``b2`` towards 0.

The power engine fits every trial, ROI and outcome at once
(:func:`mixed_tests`, :func:`dtitool.stats.lmm.fit_lmm`); ``analyze --plan
mixed`` fits one cohort with statsmodels' ``MixedLM``
(:func:`fit_mixed_plan`, tightly, as :mod:`dtitool.stats.mixed` fits), and
``tests/test_plans_mixed.py`` checks that the two agree.
"""

from __future__ import annotations

import numpy as np

__all__ = ["fit_mixed_plan", "mixed_tests"]

def _design(md: np.ndarray, codes=()) -> tuple[np.ndarray, np.ndarray]:
    """Return the fixed-effect design and the contrast rows of one model.

    ``md`` (..., N, 2): MD at the two visits. Without ``codes``, one arm's
    ``[1, visit, MD]`` and its MD slope; with the arms' 0/1 ``codes`` (...,
    N), every arm's ``[1, visit, arms, arm:visit, MD, arm:MD]`` and each
    ``arm:MD`` (module docstring).
    """
    visit = np.array([0.0, 1.0])
    c = len(codes)
    cols = [np.ones_like(md), np.broadcast_to(visit, md.shape),
            *(np.broadcast_to(d[..., None], md.shape) for d in codes),
            *(d[..., None] * visit for d in codes), md,
            *(d[..., None] * md for d in codes)]
    tested = [3 + 2 * c + i for i in range(c)] if c else [2]  # arm:MD, or MD
    L = np.zeros((len(tested), len(cols)))
    L[np.arange(len(tested)), tested] = 1.0
    return np.stack(cols, axis=-1), L


def _fit(y, X, observed, L):
    """Fit with a random intercept; return estimate, variance and df of ``L``."""
    from dtitool.stats import lmm

    Z = np.ones((*y.shape[1:], 1))
    fit = lmm.fit_lmm(y, X, Z, observed)
    t = lmm.contrast_tests(fit, L, np.inf)
    df = lmm.satterthwaite(fit, y, X, Z, observed, L)
    ok = fit.converged & np.all(np.isfinite(t["estimate"]), axis=1)
    return t["estimate"], t["se"] ** 2, df, ok


def mixed_tests(v: dict, pairs, n_arms: int, inference: str = "welch") -> list:
    """Interaction tests of the mixed plan on every trial, per (ROI, outcome).

    Parameters
    ----------
    v : dict
        :func:`dtitool.stats.plans_engine.plan_variables` of the trials.
    pairs : sequence of (int, int)
        ``(roi index, outcome index)`` of each model.
    n_arms : int
        Arms, the control arm last (its code ``n_arms - 1``).
    inference : {"welch", "ols"}
        Each arm fitted on its own, or one model of every arm (module
        docstring).

    Returns
    -------
    list of tuple
        Per pair ``(estimate, variance, df, ok)``: arrays (R, arms - 1) of each
        arm's interaction and ``ok`` (R,), False where a fit did not converge.
    """
    pairs = list(pairs)
    R, N = v["arm"].shape
    P, A = len(pairs), n_arms
    mask = v["mask"]
    y = np.empty((P, R, N, 2))
    md = np.empty((P, R, N, 2))
    for i, (j, k) in enumerate(pairs):
        y[i, ..., 0] = v["b"][..., k]
        y[i, ..., 1] = v["b"][..., k] + v["y"][..., k]
        md[i, ..., 0] = v["mdb"][..., j]
        md[i, ..., 1] = v["mdb"][..., j] + v["dmd"][..., j]
    # centred on each trial's mean (the slope is the same; the fit better
    # conditioned than at MD of about 90 per 1e-5 mm^2/s)
    used = np.broadcast_to(mask[None, ..., None], md.shape)
    centre = np.where(used, md, 0.0).sum(axis=(2, 3)) / np.maximum(
        used.sum(axis=(2, 3)), 1)
    md -= centre[..., None, None]
    md = np.where(used, md, 0.0)
    y = np.where(used, y, np.nan)
    B = P * R
    y, md = y.reshape(B, N, 2), md.reshape(B, N, 2)
    arm = np.broadcast_to(v["arm"][None], (P, R, N)).reshape(B, N)
    c = A - 1
    if inference == "welch":
        X, L = _design(md)
        per = []
        for a in range(A):
            obs = np.broadcast_to((arm == a)[..., None], (B, N, 2))
            est, var, df, ok = _fit(np.where(obs, y, np.nan), X, obs, L)
            per.append((est[:, 0], var[:, 0], df[:, 0], ok))
        from dtitool.stats.inference import welch_df

        ec, vc, dc, _ = per[c]
        est = np.stack([per[a][0] - ec for a in range(c)], axis=1)
        var = np.stack([per[a][1] + vc for a in range(c)], axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            df = np.stack([welch_df(per[a][1], per[a][2], vc, dc)
                           for a in range(c)], axis=1)
        ok = np.logical_and.reduce([p[3] for p in per])
    else:
        X, L = _design(md, [(arm == a).astype(float) for a in range(c)])
        est, var, df, ok = _fit(y, X, None, L)
    out = []
    for i in range(P):
        s = slice(i * R, (i + 1) * R)
        out.append((est[s], var[s], df[s], ok[s]))
    return out


def fit_mixed_plan(w, roi: str, outcome: str, arms, control: str,
                   inference: str = "welch") -> list:
    """Fit the mixed plan to one cohort with statsmodels' MixedLM.

    Parameters
    ----------
    w : DataFrame
        One row per participant: ``group``, ``x:<roi>`` (dMD) and ``mb:<roi>``
        (baseline MD) per 1e-5 mm^2/s, ``b:<outcome>`` and ``y:<outcome>``
        (baseline score and change); :func:`dtitool.stats.plans_fit._wide`.
    roi, outcome : str
    arms : sequence of str
        The trial's arms; ``control`` one of them.
    inference : {"welch", "ols"}

    Returns
    -------
    list of tuple
        ``(estimate, se, df)`` of each interaction (every arm but the
        control, in ``arms`` order): REML fits polished as
        :mod:`dtitool.stats.mixed` polishes them, the df Satterthwaite's at
        statsmodels' estimates (as lmerTest's).
    """
    from statsmodels.regression.mixed_linear_model import MixedLM

    from dtitool.stats import lmm
    from dtitool.stats.inference import welch_df
    from dtitool.stats.mixed import _engine_fit, _fit_statsmodels

    group = w["group"].to_numpy()
    mb = w[f"mb:{roi}"].to_numpy()
    md = np.stack([mb, mb + w[f"x:{roi}"].to_numpy()], axis=1)
    md = md - md.mean()
    b = w[f"b:{outcome}"].to_numpy()
    y = np.stack([b, b + w[f"y:{outcome}"].to_numpy()], axis=1)
    others = [a for a in arms if a != control]

    def fit(sel, X):
        n = int(sel.sum())
        Xs = X[sel]  # (n, 2, p)
        ys = y[sel]
        model = MixedLM(ys.reshape(-1), Xs.reshape(-1, Xs.shape[-1]),
                        groups=np.repeat(np.arange(n), 2),
                        exog_re=np.ones((2 * n, 1)))
        res = _fit_statsmodels(model).res
        Z = np.ones((n, 2, 1))
        eng = _engine_fit(res, ys[None], Xs, Z)
        return eng, ys[None], Xs, Z

    def test(eng, ys, Xs, Z, L):
        t = lmm.contrast_tests(eng, L, np.inf)
        df = lmm.satterthwaite(eng, ys, Xs, Z, None, L)
        return t["estimate"][0], t["se"][0] ** 2, df[0]

    if inference == "welch":
        X, L = _design(md)
        per = {a: test(*fit(group == a, X), L) for a in arms}
        ec, vc, dc = (float(x[0]) for x in per[control])
        out = []
        for a in others:
            ea, va, da = (float(x[0]) for x in per[a])
            out.append((ea - ec, float(np.sqrt(va + vc)),
                        float(welch_df(np.array(va), np.array(da), np.array(vc),
                                       np.array(dc)))))
        return out
    X, L = _design(md, [(group == a).astype(float) for a in others])
    c = len(others)
    est, var, df = test(*fit(np.ones(len(group), bool), X), L)
    return [(float(est[i]), float(np.sqrt(var[i])), float(df[i]))
            for i in range(c)]
