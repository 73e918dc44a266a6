"""Every plan's tests on many simulated trials at once (the batched engine of plans).

The linear plans (change score, ANCOVA, follow-up MD, composites, one ROI)
are all regressions of a score change on linear combinations of the same
per-participant variables: each ROI's dMD and baseline MD (per 1e-5 mm^2/s),
each outcome's baseline score and change. Per trial and arm, one matrix of
within-arm centred cross-products of those variables (:func:`arm_moments`)
therefore serves every linear plan: a plan's model is a few ``p x p`` solves
on it (``p`` at most 3), so adding plans costs almost nothing beside the
simulation they share. The responder plan is logistic and is fitted by
batched Newton-Raphson, every trial at once
(:func:`dtitool.stats.plans_logistic.responder_tests`).

Each test is an interaction: an arm's slope of the outcome on the imaging
variable minus the control arm's. ``welch``: each arm fitted on its own
(its own intercept, slope and covariate effects), the interaction's variance
the sum of the arms' and its df Welch-Satterthwaite's; ``ols``: one model
with an intercept and a slope per arm and common covariate effects, its
residual df. Logistic: one model with an intercept and a slope per arm and
the baseline score, Wald z from the inverse Fisher information (what
statsmodels' ``Logit`` reports). ``tests/test_plans.py`` checks every plan
against statsmodels fits of single trials.
"""

from __future__ import annotations

import functools

import numpy as np
from scipy import special

from dtitool._constants import DMD_SCALE
from dtitool.stats.inference import welch_df
from dtitool.stats.ols import ols_from_crossproducts, solve_gram
from dtitool.stats.plans import Plan
from dtitool.stats.plans_logistic import logistic_batch, responder_tests

__all__ = ["arm_moments", "logistic_batch", "plan_tests", "plan_variables"]

RESPONSE_FRACTION = 0.5
"""A responder's score at the primary visit is at most this fraction of the
baseline score (a 50 % reduction, the usual definition for MADRS and QIDS)."""


def plan_variables(arrays) -> dict:
    """Per-participant variables of the plans from simulated trials.

    Returns ``dmd`` and ``mdb`` (R, N, J) per 1e-5 mm^2/s, ``b`` (baseline
    score), ``y`` (change to the primary visit) and ``resp`` (responder, 0/1)
    (R, N, K), ``arm`` (R, N) codes (control last) and ``mask`` (R, N): the
    participants every model uses (primary scan and ratings observed).
    """
    md = arrays.md
    p = arrays.primary
    dmd = (md[..., p] - md[..., 0]) / DMD_SCALE
    mdb = md[..., 0] / DMD_SCALE
    scores = arrays.scores.astype(float)
    b, f = scores[..., 0], scores[..., p]
    mask = np.asarray(arrays.observed, bool) & np.all(np.isfinite(dmd), axis=-1)
    if arrays.scored is not None:
        mask &= np.asarray(arrays.scored, bool)
    return {"dmd": np.where(mask[..., None], dmd, 0.0),
            "mdb": np.where(mask[..., None], mdb, 0.0), "b": b, "y": f - b,
            "resp": (f <= RESPONSE_FRACTION * b).astype(float),
            "arm": np.asarray(arrays.arm), "mask": mask}


def arm_moments(v: dict, n_arms: int) -> tuple[list, list]:
    """Within-arm centred cross-products of ``[dmd, mdb, b, y]`` per arm.

    Returns ``S`` (one (R, V, V) per arm, control last) and ``n`` (one (R,)
    per arm).
    """
    X = np.concatenate([v["dmd"], v["mdb"], v["b"], v["y"]], axis=-1)
    S, n = [], []
    for a in range(n_arms):
        m = (v["mask"] & (v["arm"] == a)).astype(float)
        na = m.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.einsum("rn,rnv->rv", m, X) / na[:, None]
        C = (X - mean[:, None, :]) * m[..., None]
        S.append(np.swapaxes(C, 1, 2) @ C)
        n.append(na)
    return S, n


def _combos(plan: Plan, J: int, K: int, j, k: int, S_pooled=None) -> np.ndarray:
    """Columns (V, p) or (R, V, p) of a linear plan's regressors.

    The imaging variable first, then the covariates, over the variables
    ``[dmd (J), mdb (J), b (K), y (K)]``.
    """
    V = 2 * J + 2 * K
    cols = []
    x = np.zeros(V)
    if plan.imaging == "roi":
        x[j] = 1.0
        if plan.model == "ancova-md":
            x[J + j] = 1.0  # follow-up MD = baseline MD + dMD
    elif plan.imaging == "composite-mean":
        x[:J] = 1.0 / J
    cols.append(x)
    if plan.model == "ancova-md":
        c = np.zeros(V)
        c[J + j] = 1.0
        cols.append(c)
    if plan.baseline:
        c = np.zeros(V)
        c[2 * J + k] = 1.0
        cols.append(c)
    W = np.stack(cols, axis=-1)
    if plan.imaging == "composite-pc1":
        # each trial's first principal component of the pooled within-arm
        # covariance of dMD; loadings of unit length with a positive sum
        _, vecs = np.linalg.eigh(S_pooled[:, :J, :J])
        w = vecs[..., -1]
        w = w * np.where(w.sum(axis=-1, keepdims=True) < 0, -1.0, 1.0)
        W = np.broadcast_to(W, (w.shape[0], *W.shape)).copy()
        W[:, :J, 0] = w
    return W


def _picks(W):
    """Return the variables a (V, p) ``W`` selects (each column a unit vector).

    None when ``W`` is anything else (a composite, per-trial loadings).
    """
    if W.ndim != 2:
        return None
    return _picks_of(W.shape, W.tobytes())


@functools.lru_cache(maxsize=256)
def _picks_of(shape, data: bytes):
    W = np.frombuffer(data).reshape(shape)
    if not (np.count_nonzero(W, axis=0) == 1).all():
        return None
    rows = W.argmax(axis=0)
    return rows if (W[rows, np.arange(W.shape[1])] == 1.0).all() else None


def _quad(W, S, U):
    """``W' S U`` per trial, ``W`` and ``U`` (V, p) or (R, V, p).

    Columns that only select variables (the ROI plans') index ``S`` instead of
    multiplying it: the same numbers, without a batched matrix product.
    """
    iw, iu = _picks(W), _picks(U)
    if iw is not None and iu is not None:
        return S[:, iw[:, None], iu[None, :]]
    return np.swapaxes(W, -1, -2) @ S @ U


def _linear(plan: Plan, S: list, n: list, W, yi: int, inference: str):
    """Interactions (R, k - 1) of one linear model: estimate, variance, df."""
    k = len(S)
    c = k - 1
    e = np.zeros((S[0].shape[-1], 1))
    e[yi, 0] = 1.0
    if inference == "welch":
        slope, var, dfa = [], [], []
        p = W.shape[-1]
        for Sa, na in zip(S, n, strict=True):
            G = _quad(W, Sa, W)
            g = _quad(W, Sa, e)[..., 0]
            coef, inv, ok = solve_gram(G, g)
            rss = Sa[:, yi, yi] - np.einsum("ri,ri->r", g, coef)
            df = na - 1 - p
            with np.errstate(invalid="ignore", divide="ignore"):
                s2 = np.where(df > 0, rss / df, np.nan)
            bad = ~ok | (df <= 0)
            slope.append(np.where(bad, np.nan, coef[:, 0]))
            var.append(np.where(bad, np.nan, s2 * inv[:, 0, 0]))
            dfa.append(np.where(df > 0, df, np.nan).astype(float))
        est = np.stack([slope[a] - slope[c] for a in range(c)], axis=-1)
        v = np.stack([var[a] + var[c] for a in range(c)], axis=-1)
        d = np.stack([welch_df(var[a], dfa[a], var[c], dfa[c]) for a in range(c)],
                     axis=-1)
        return est, v, d
    # ols: a slope of the imaging variable per arm, common covariates
    p = W.shape[-1]
    R = S[0].shape[0]
    q = k + p - 1
    G = np.zeros((R, q, q))
    g = np.zeros((R, q))
    x, cov = W[..., :1], W[..., 1:]
    for a, Sa in enumerate(S):
        G[:, a, a] = _quad(x, Sa, x)[:, 0, 0]
        g[:, a] = _quad(x, Sa, e)[:, 0, 0]
        if p > 1:
            xc = _quad(x, Sa, cov)[:, 0, :]
            G[:, a, k:] = xc
            G[:, k:, a] = xc
            G[:, k:, k:] += _quad(cov, Sa, cov)
            g[:, k:] += _quad(cov, Sa, e)[..., 0]
    yty = sum(Sa[:, yi, yi] for Sa in S)
    fit = ols_from_crossproducts(G, g, yty, sum(n), absorbed=k)
    inv = fit.xtx_inv
    est = np.stack([fit.coef[:, a] - fit.coef[:, c] for a in range(c)], axis=-1)
    v = np.stack([(inv[:, a, a] + inv[:, c, c] - 2 * inv[:, a, c]) * fit.sigma2
                  for a in range(c)], axis=-1)
    d = np.repeat(np.where(fit.df_resid > 0, fit.df_resid, np.nan).astype(float)
                  [:, None], c, axis=1)
    return est, v, d


def _t_or_z(t, df, alpha: float):
    """Two-sided p of ``t`` and the ``1 - alpha / 2`` quantile, t(df) or z (df inf).

    Only the distribution a test uses is evaluated (the t quantile is costly).
    """
    finite = np.isfinite(df)
    if not finite.any():
        q = np.full(t.shape, special.ndtri(1 - alpha / 2))
        return 2 * special.ndtr(-np.abs(t)), q
    d1 = np.where(finite, df, 1.0)
    p = 2 * special.stdtr(d1, -np.abs(t))
    q = special.stdtrit(d1, 1 - alpha / 2)
    if not finite.all():
        p = np.where(finite, p, 2 * special.ndtr(-np.abs(t)))
        q = np.where(finite, q, special.ndtri(1 - alpha / 2))
    return p, q


def plan_tests(arrays, plans, *, alpha: float = 0.05) -> dict:
    """Every plan's interaction tests on every simulated trial of ``arrays``.

    Parameters
    ----------
    arrays : CohortArrays
        Simulated trials (:func:`dtitool.simulate.simulate_arrays`).
    plans : sequence of Plan
    alpha : float
        Confidence intervals are ``100 (1 - alpha)`` %.

    Returns
    -------
    dict
        plan name -> ``{"labels": [(roi, outcome, term), ...], "estimate",
        "se", "df", "p", "ci_low", "ci_high": (R, tests), "failed": (R,)
        fits that did not converge (logistic)}``; ``roi`` is the ROI, or the
        composite's name.
    """
    design = arrays.design
    v = plan_variables(arrays)
    J, K, A = len(design.rois), len(design.outcomes), len(design.arms)
    terms = design.names.interactions
    S = n = S_pooled = None
    out = {}
    for plan in plans:
        if plan.imaging == "roi":
            imaging = [(design.roi_names.index(r), r) for r in
                       plan.roi_list(design)]
        else:
            imaging = [(None, plan.imaging)]
        labels, ests, vars_, dfs = [], [], [], []
        failed = np.zeros(arrays.arm.shape[0], dtype=bool)
        logit = None
        if plan.model == "responder":
            logit = iter(responder_tests(v, [(j, ki) for ki in range(K)
                                             for j, _ in imaging], A,
                                         plan.baseline))
        elif plan.model == "mixed":
            from dtitool.stats.plans_mixed import mixed_tests

            logit = iter(mixed_tests(v, [(j, ki) for ki in range(K)
                                         for j, _ in imaging], A, plan.inference))
        for ki, outcome in enumerate(design.outcome_names):
            for j, label in imaging:
                if logit is not None:
                    est, var, df, ok = next(logit)
                    failed |= ~ok
                else:
                    if S is None:
                        S, n = arm_moments(v, A)
                    if plan.imaging == "composite-pc1" and S_pooled is None:
                        S_pooled = sum(S)
                    W = _combos(plan, J, K, j, ki, S_pooled=S_pooled)
                    est, var, df = _linear(plan, S, n, W, 2 * J + K + ki,
                                           plan.inference)
                labels += [(label, outcome, t) for t in terms]
                ests.append(est)
                vars_.append(var)
                dfs.append(df)
        est = np.concatenate(ests, axis=1)
        with np.errstate(invalid="ignore"):
            se = np.sqrt(np.concatenate(vars_, axis=1))
        df = np.concatenate(dfs, axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            t = est / se
            p, q = _t_or_z(t, df, alpha)
        out[plan.name] = {"labels": labels, "estimate": est, "se": se, "df": df,
                          "p": p, "ci_low": est - q * se, "ci_high": est + q * se,
                          "failed": failed}
    return out
