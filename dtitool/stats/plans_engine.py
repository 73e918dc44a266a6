"""Every plan's tests on many simulated trials at once (the batched engine of plans).

The linear plans (change score, ANCOVA, follow-up MD, composites, one ROI)
are all regressions of a score change on linear combinations of the same
per-participant variables: each ROI's dMD and baseline MD (per 1e-5 mm^2/s),
each outcome's baseline score and change. Per trial and arm, one matrix of
within-arm centred cross-products of those variables (:func:`arm_moments`)
therefore serves every linear plan: a plan's model is a few ``p x p`` solves
on it (``p`` at most 3), so adding plans costs almost nothing beside the
simulation they share. The responder plan is logistic and is fitted by
batched Newton-Raphson (:func:`logistic_batch`), every trial at once.

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

import numpy as np
from scipy import special

from dtitool._constants import DMD_SCALE
from dtitool.stats.inference import welch_df
from dtitool.stats.ols import ols_from_crossproducts, solve_gram
from dtitool.stats.plans import Plan

__all__ = ["arm_moments", "logistic_batch", "plan_tests", "plan_variables"]

_DIVERGED = 30.0
"""A logistic coefficient beyond this (on the models' scales: an odds ratio of
e^30 per point or per 1e-5 mm^2/s) means separation: the fit has no finite
maximum."""

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


def _quad(W, S, U):
    """``W' S U`` per trial, ``W`` and ``U`` (V, p) or (R, V, p)."""
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


def _solve(H, g):
    """``H^{-1} g`` of positive definite systems; LAPACK, else the rank check."""
    try:
        return np.linalg.solve(H, g[..., None])[..., 0], np.ones(H.shape[0], bool)
    except np.linalg.LinAlgError:
        step, _, good = solve_gram(H, g)
        return step, good


def logistic_batch(X, y, mask, *, max_iter: int = 50, tol: float = 1e-10,
                   groups=None):
    """Fit ``y ~ X`` by logistic regression in every batch (Newton-Raphson).

    Parameters
    ----------
    X : ndarray, shape (R, N, p)
    y : ndarray of 0/1, shape (R, N)
    mask : ndarray of bool, shape (R, N)
        Rows used.
    max_iter, tol : int, float
        Newton steps, and the convergence tolerance on the largest change of
        a coefficient (relative to 1 + its size).
    groups : sequence of int, optional
        Columns that are group indicators (one intercept per arm): a group
        without an event or without a non-event has no finite maximum, and
        its batch fails at once.

    Returns
    -------
    coef : ndarray, shape (R, p)
    cov : ndarray, shape (R, p, p)
        Inverse Fisher information at ``coef`` (statsmodels' ``cov_params``).
    converged : ndarray of bool, shape (R,)
        False where the steps did not settle, a coefficient ran past 30
        (separation: no finite maximum) or the information is singular; those
        batches are NaN.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(2, 200))
    >>> X = np.stack([np.ones_like(x), x], axis=-1)
    >>> y = (rng.random((2, 200)) < 1 / (1 + np.exp(-x))).astype(float)
    >>> coef, cov, ok = logistic_batch(X, y, np.ones((2, 200), bool))
    >>> ok.tolist(), np.round(coef[:, 1], 1).tolist()
    ([True, True], [0.9, 1.1])
    """
    X = np.where(mask[..., None], X, 0.0)
    y = np.where(mask, y, 0.0)
    m = mask.astype(float)
    R, _, p = X.shape
    beta = np.zeros((R, p))
    ok = np.ones(R, dtype=bool)
    if groups is not None:
        # a group (an arm) with no event or no non-event: no finite maximum
        for gcol in groups:
            inside = m * (X[..., gcol] != 0)
            events = (inside * y).sum(axis=1)
            ok &= (events > 0) & (events < inside.sum(axis=1))
    # H = X'WX from the products of column pairs, formed once; the batches
    # still iterating are compacted when at most half of them are left
    iu = np.triu_indices(p)
    idx = np.flatnonzero(ok)
    Xw, yw, mw, bw = X[idx], y[idx], m[idx], beta[idx]
    Pt = np.ascontiguousarray(np.swapaxes(Xw[..., iu[0]] * Xw[..., iu[1]], 1, 2))
    Xt = np.ascontiguousarray(np.swapaxes(Xw, 1, 2))
    done = np.zeros(idx.size, dtype=bool)
    for _ in range(max_iter):
        if idx.size == 0:
            break
        mu = special.expit((Xw @ bw[..., None])[..., 0])
        h = (Pt @ (mu * (1 - mu) * mw)[..., None])[..., 0]
        H = np.empty((idx.size, p, p))
        H[:, iu[0], iu[1]] = h
        H[:, iu[1], iu[0]] = h
        g = (Xt @ ((yw - mu) * mw)[..., None])[..., 0]
        H[done] = np.eye(p)  # settled batches: a harmless identity system
        g[done] = 0.0
        step, good = _solve(H, g)
        step[~good | done] = 0.0
        bw += step
        conv = np.max(np.abs(step) / (1.0 + np.abs(bw)), axis=1) < tol
        # separation: a coefficient running off to infinity (no finite MLE)
        bad = ~good | np.any(np.abs(bw) > _DIVERGED, axis=1)
        ok[idx[bad & ~done]] = False
        done |= conv | bad
        if done.all():
            break
        if 2 * int((~done).sum()) <= idx.size:
            beta[idx] = bw
            keep = ~done
            idx, Xw, yw, mw, bw = idx[keep], Xw[keep], yw[keep], mw[keep], bw[keep]
            Pt, Xt, done = Pt[keep], Xt[keep], done[keep]
    beta[idx] = bw
    ok[idx[~done]] = False  # still moving after max_iter
    mu = special.expit((X @ beta[..., None])[..., 0])
    H = np.swapaxes(X, 1, 2) @ (X * (mu * (1 - mu) * m)[..., None])
    _, cov, good = solve_gram(H, np.zeros((R, p)))
    conv = ok & good
    beta = np.where(conv[:, None], beta, np.nan)
    cov = np.where(conv[:, None, None], cov, np.nan)
    return beta, cov, conv


def _arm_logistic(xs, bs, ys, ms, *, max_iter: int = 50, tol: float = 1e-10):
    """:func:`logistic_batch` of the responder model, each arm's rows on their own.

    The model ``logit P(y) = alpha_a + beta_a x + gamma b`` (``bs`` None: no
    ``gamma``) with the parameters in :func:`logistic_batch`'s column order
    ``[alpha_0.., beta_0.., gamma]``. ``xs``, ``bs``, ``ys``, ``ms``: one
    (B, N_a) array per arm (``ms`` 0/1). Each arm's cross-products are sums
    over its own rows only (6 per row instead of the 15 of the full design),
    which is what makes the responder plan affordable. Same results.
    """
    A = len(xs)
    g_col = 2 * A
    p = 2 * A + (bs is not None)
    B = xs[0].shape[0]
    # per arm, the regressors [1, x, b] as rows (B, q, N_a), zero where masked,
    # and the products of their pairs (B, q (q + 1) / 2, N_a)
    Zt = [np.stack([m, x * m] + ([b * m] if bs is not None else []), axis=1)
          for x, b, m in zip(xs, bs or [None] * A, ms, strict=True)]
    q = Zt[0].shape[1]
    iu = np.triu_indices(q)
    Pt = [z[:, iu[0]] * z[:, iu[1]] for z in Zt]
    ok = np.ones(B, dtype=bool)
    for y, m in zip(ys, ms, strict=True):  # an arm without an event or non-event
        events = (y * m).sum(axis=1)
        ok &= (events > 0) & (events < m.sum(axis=1))
    # where each arm's parameters sit: alpha_a, beta_a (and gamma)
    cols = [np.array([a, A + a] + ([g_col] if q == 3 else [])) for a in range(A)]

    def system(beta, Ztw, Ptw, yw, mw):
        H = np.zeros((beta.shape[0], p, p))
        g = np.zeros((beta.shape[0], p))
        for a in range(A):
            mu = special.expit((beta[:, None, cols[a]] @ Ztw[a])[:, 0, :])
            h = (Ptw[a] @ (mu * (1 - mu) * mw[a])[..., None])[..., 0]
            Ha = np.empty((beta.shape[0], q, q))
            Ha[:, iu[0], iu[1]] = h
            Ha[:, iu[1], iu[0]] = h
            H[:, cols[a][:, None], cols[a][None, :]] += Ha
            g[:, cols[a]] += (Ztw[a] @ ((yw[a] - mu) * mw[a])[..., None])[..., 0]
        return H, g

    def take(keep):
        return ([t[keep] for t in Zt], [t[keep] for t in Pt], [y[keep] for y in ys],
                [m[keep] for m in ms])

    beta = np.zeros((B, p))
    idx = np.flatnonzero(ok)
    work = take(idx)
    bw = beta[idx]
    done = np.zeros(idx.size, dtype=bool)
    for _ in range(max_iter):
        if idx.size == 0 or done.all():
            break
        H, g = system(bw, *work)
        H[done] = np.eye(p)  # settled: a harmless identity system
        g[done] = 0.0
        step, good = _solve(H, g)
        step[~good] = 0.0
        bw += step
        conv = np.max(np.abs(step) / (1.0 + np.abs(bw)), axis=1) < tol
        bad = (~good | np.any(np.abs(bw) > _DIVERGED, axis=1)) & ~done
        ok[idx[bad]] = False
        done |= conv | bad
        if 2 * int((~done).sum()) <= idx.size:  # compact to the fits still moving
            beta[idx] = bw
            keep = ~done
            idx, bw, done = idx[keep], bw[keep], done[keep]
            work = tuple([w[keep] for w in part] for part in work)
    beta[idx] = bw
    ok[idx[~done]] = False  # still moving after max_iter
    H, _ = system(beta, Zt, Pt, ys, ms)
    _, cov, good = solve_gram(H, np.zeros((B, p)))
    conv = ok & good
    return (np.where(conv[:, None], beta, np.nan),
            np.where(conv[:, None, None], cov, np.nan), conv)


def _responder(v: dict, pairs, n_arms: int, baseline: bool):
    """Interactions (R, k - 1) of the logistic responder model, per (j, k) pair.

    Every pair's model is fitted in one batch (pairs stacked on the batch axis),
    each arm's participants gathered into arrays of their own when every trial
    has the same arm sizes (blocked allocation), else in the full design.
    """
    arm = v["arm"]
    R = arm.shape[0]
    counts = np.stack([(arm == a).sum(axis=1) for a in range(n_arms)], axis=1)
    if np.all(counts == counts[:1]):
        order = np.argsort(arm, axis=1, kind="stable")
        starts = np.concatenate([[0], np.cumsum(counts[0])])
        sel = [order[:, starts[a]:starts[a + 1]] for a in range(n_arms)]

        def gather(x):
            return [np.concatenate([np.take_along_axis(xi, s, axis=1) for xi in x])
                    for s in sel]

        xs = gather([v["dmd"][..., j] for j, _ in pairs])
        bs = gather([v["b"][..., k] for _, k in pairs]) if baseline else None
        ys = gather([v["resp"][..., k] for _, k in pairs])
        ms = gather([v["mask"].astype(float)] * len(pairs))
        coef, cov, ok = _arm_logistic(xs, bs, ys, ms)
    else:
        ind = [(arm == a).astype(float) for a in range(n_arms)]
        Xs, ysl = [], []
        for j, k in pairs:
            cols = ind + [ind[a] * v["dmd"][..., j] for a in range(n_arms)]
            if baseline:
                cols.append(v["b"][..., k])
            Xs.append(np.stack(cols, axis=-1))
            ysl.append(v["resp"][..., k])
        mask = np.concatenate([v["mask"]] * len(pairs))
        coef, cov, ok = logistic_batch(np.concatenate(Xs), np.concatenate(ysl), mask,
                                       groups=range(n_arms))
    c = n_arms - 1
    sl = n_arms
    out = []
    for i in range(len(pairs)):
        b, V = coef[i * R:(i + 1) * R], cov[i * R:(i + 1) * R]
        est = np.stack([b[:, sl + a] - b[:, sl + c] for a in range(c)], axis=-1)
        var = np.stack([V[:, sl + a, sl + a] + V[:, sl + c, sl + c]
                        - 2 * V[:, sl + a, sl + c] for a in range(c)], axis=-1)
        out.append((est, var, np.full_like(est, np.inf), ok[i * R:(i + 1) * R]))
    return out


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
    S = n = None
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
            logit = iter(_responder(v, [(j, ki) for ki in range(K)
                                        for j, _ in imaging], A, plan.baseline))
        for ki, outcome in enumerate(design.outcome_names):
            for j, label in imaging:
                if logit is not None:
                    est, var, df, ok = next(logit)
                    failed |= ~ok
                else:
                    if S is None:
                        S, n = arm_moments(v, A)
                    W = _combos(plan, J, K, j, ki, S_pooled=sum(S))
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
        finite = np.isfinite(df)
        d1 = np.where(finite, df, 1.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            t = est / se
            p = np.where(finite, 2 * special.stdtr(d1, -np.abs(t)),
                         2 * special.ndtr(-np.abs(t)))
            q = np.where(finite, special.stdtrit(d1, 1 - alpha / 2),
                         special.ndtri(1 - alpha / 2))
        out[plan.name] = {"labels": labels, "estimate": est, "se": se, "df": df,
                          "p": p, "ci_low": est - q * se, "ci_high": est + q * se,
                          "failed": failed}
    return out
