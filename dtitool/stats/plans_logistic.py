"""The responder plan's logistic fits on many simulated trials at once.

The responder model of one ROI and outcome is
``logit P(response) = alpha_a + beta_a x + gamma b`` (``x`` the ROI's dMD,
``b`` the baseline score, ``a`` the arm; without the baseline covariate no
``gamma``), fitted by maximum likelihood with Newton-Raphson, the test being
``beta_a - beta_control`` with its Wald z from the inverse Fisher information
(what statsmodels' ``Logit`` reports). :func:`responder_tests` fits every ROI,
outcome and trial of a batch at once:

- each arm's participants are gathered into arrays of their own (padded and
  masked where arm sizes differ between trials), laid out participants by
  fits so that every pass over them is one long contiguous array operation;
- a step needs only each arm's nine weighted sums (the information has one
  ``2 x 2`` block per arm, joined only through ``gamma``), and is solved by
  eliminating the arms' blocks: no general ``p x p`` solve;
- the fits start from each arm's observed log odds of response, where
  every participant of an arm has the same fitted probability, so that
  Newton's first step comes from per-trial sums without a pass over each
  fit's rows (:func:`_first_step`); a fit that fails from there (pure Newton
  steps can overshoot where an arm has one or two responders) starts again
  from zero, the usual start (statsmodels');
- fits without a finite maximum are settled before any step where that is
  cheap to see: an arm without a responder or without a non-responder, or an
  arm of few responders (or few non-responders) separated from the others by
  the ROI's dMD alone (its slope runs off to infinity); the others fail as
  before, when a coefficient passes :data:`DIVERGED`, the information is
  singular or 50 steps do not settle;
- a fit is accepted once a step changes no coefficient by more than 1e-10
  relative to ``1 +`` its size; the information evaluated for that step
  (at most that far from the estimate) gives the covariance, so no further
  pass is made for it;
- the fits still moving are compacted once most have settled, and a few
  fits of very many rows (the pooled truth trial) fold their rows into
  columns so that every pass runs over long rows.

The estimates, their covariances and which fits fail are those of
:func:`logistic_batch` (``tests/test_plans.py`` checks it fit by fit);
only the work differs.

:func:`logistic_batch` is the plain full-design Newton-Raphson that this
replaces in the plans, kept as an independent reference and for other uses.
"""

from __future__ import annotations

import numpy as np
from scipy import special

from dtitool.stats.ols import solve_gram

__all__ = ["DIVERGED", "logistic_batch", "responder_tests"]

DIVERGED = 30.0
"""A logistic coefficient beyond this (on the models' scales: an odds ratio of
e^30 per point or per 1e-5 mm^2/s) means separation: the fit has no finite
maximum."""

_TOL = 1e-10
_MAX_ITER = 50
_FEW = 5  # events or non-events in an arm at most this: check separation first
_WIDE = 256  # fewer fits than this: rows folded into columns (:func:`_sums`)
_COMPACT = 0.4  # compact to the live fits when at most this share is left
_PIVOT = 1e-10  # a scaled pivot below this: singular (as solve_gram)
_BLOCK = 1 << 15  # elements per block of rows: the temporaries stay in cache


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
        False where the steps did not settle, a coefficient ran past
        :data:`DIVERGED` (separation: no finite maximum) or the information
        is singular; those batches are NaN.

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
        bad = ~good | np.any(np.abs(bw) > DIVERGED, axis=1)
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


def _arm_rows(arm: np.ndarray, n_arms: int) -> list:
    """Each arm's participants in every trial: ``(rows, valid)`` (R, N_a) per arm.

    ``rows`` are indices into the trial's participants, ``N_a`` the arm's
    largest size over the trials; ``valid`` is False on the padding of
    trials where the arm is smaller (its rows repeat a participant).
    """
    R, N = arm.shape
    counts = np.stack([(arm == a).sum(axis=1) for a in range(n_arms)], axis=1)
    starts = np.concatenate([np.zeros((R, 1), int), np.cumsum(counts, axis=1)], axis=1)
    order = np.argsort(arm, axis=1, kind="stable")
    out = []
    for a in range(n_arms):
        width = int(counts[:, a].max())
        pos = starts[:, a, None] + np.arange(width)
        valid = np.arange(width) < counts[:, a, None]
        out.append((np.take_along_axis(order, np.minimum(pos, N - 1), axis=1), valid))
    return out


def _separated(x, y, m) -> np.ndarray:
    """Fits (B,) whose responders and non-responders ``x`` separates, (N_a, B) data.

    The arm's slope then has no finite maximum (``beta_a`` runs off to
    infinity, ``alpha_a`` following), whatever the other arms.
    """
    resp = y > 0
    non = ~resp
    if m is not None:
        resp &= m > 0
        non &= m > 0
    lo_r = np.where(resp, x, np.inf).min(axis=0)
    hi_r = np.where(resp, x, -np.inf).max(axis=0)
    lo_n = np.where(non, x, np.inf).min(axis=0)
    hi_n = np.where(non, x, -np.inf).max(axis=0)
    return (hi_n <= lo_r) | (hi_r <= lo_n)


def _sums(Q, y, coef, a: int, A: int) -> np.ndarray:
    """One arm's weighted sums at ``coef`` (p, B) from its regressor products ``Q``.

    ``Q`` (q, N_a, B): rows ``1, x, x^2`` without the baseline score ``b``,
    ``1, x, b, x^2, x b, b^2`` with it, for fits laid out (N_a, B); the ``1``
    row is the mask, and ``x`` and ``b`` are 0 where it is, so that masked
    rows drop out. The sums over the arm's rows of ``w`` times each row of
    ``Q``, then of
    ``r`` times ``1, x`` (and ``b``), with ``w = mu (1 - mu)``, ``r = y - mu``
    and ``mu`` the fitted probability: :func:`_fields` names them. The rows
    are summed in blocks whose temporaries stay in cache.
    """
    q, n, B = Q.shape
    if B < _WIDE and n >= 16 * _WIDE:
        # few fits of many rows (the pooled truth trial): rows folded into
        # columns, k rows of a fit side by side, so that every pass runs over
        # long rows; the k partial sums of a fit are added at the end
        k = -(-_WIDE // B)
        m = n - n % k
        out = _sums(Q[:, :m].reshape(q, m // k, k * B), y[:m].reshape(m // k, k * B),
                    np.tile(coef, k), a, A).reshape(-1, k, B).sum(axis=1)
        if m < n:
            out += _sums(Q[:, m:], y[m:], coef, a, A)
        return out
    nr = 3 if q == 6 else 2
    out = np.zeros((q + nr, B))
    rows = max(1, _BLOCK // max(B, 1))
    neg = -coef[[a, A + a, 2 * A][:nr]]
    for s in range(0, n, rows):
        Qs = Q[:, s:s + rows]
        # one fused pass for -eta (broadcasting the coefficients over the rows
        # would take four); no cap on exp: mu = 0 or 1 at the extremes is fine
        mu = np.einsum("qnf,qf->nf", Qs[:nr], neg)
        np.exp(mu, out=mu)
        mu += 1.0
        np.reciprocal(mu, out=mu)
        w = 1.0 - mu
        w *= mu
        np.subtract(y[s:s + rows], mu, out=mu)  # r
        out[:q] += np.einsum("nf,qnf->qf", w, Qs)
        out[q:] += np.einsum("nf,qnf->qf", mu, Qs[:nr])
    return out


def _fields(t: np.ndarray, with_b: bool) -> tuple:
    """Name an arm's sums: ``S0, Sx, Sxx, G0, Gx, Sb, Sxb, Sbb, Gb`` (no b: None)."""
    if with_b:
        S0, Sx, Sb, Sxx, Sxb, Sbb, G0, Gx, Gb = t
        return S0, Sx, Sxx, G0, Gx, Sb, Sxb, Sbb, Gb
    S0, Sx, Sxx, G0, Gx = t
    return S0, Sx, Sxx, G0, Gx, None, None, None, None


def _step(T: list, with_b: bool):
    """Newton steps (p, B) from the arms' sums, the arms' blocks eliminated.

    Returns the step and whether the information is of full rank (its
    Cholesky pivots in the order alpha_a, beta_a, ..., gamma, scaled, above
    1e-10 as :func:`dtitool.stats.ols.solve_gram`).
    """
    B = T[0].shape[1]
    ok = np.ones(B, dtype=bool)
    d_alpha, d_beta, us, vs = [], [], [], []
    schur = np.zeros(B)
    rhs = np.zeros(B)
    sbb = np.zeros(B)
    for t in T:
        S0, Sx, Sxx, G0, Gx, Sb, Sxb, Sbb, Gb = _fields(t, with_b)
        det = S0 * Sxx - Sx * Sx
        ok &= (S0 > 0) & (det > _PIVOT * S0 * Sxx)
        det = np.where(ok, det, 1.0)
        i00, i01, i11 = Sxx / det, -Sx / det, S0 / det
        v = (i00 * G0 + i01 * Gx, i01 * G0 + i11 * Gx)
        vs.append(v)
        if with_b:
            u = (i00 * Sb + i01 * Sxb, i01 * Sb + i11 * Sxb)
            us.append(u)
            schur += Sbb - Sb * u[0] - Sxb * u[1]
            rhs += Gb - Sb * v[0] - Sxb * v[1]
            sbb += Sbb
    if with_b:
        ok &= schur > _PIVOT * sbb
        dg = rhs / np.where(ok, schur, 1.0)
        for u, v in zip(us, vs, strict=True):
            d_alpha.append(v[0] - u[0] * dg)
            d_beta.append(v[1] - u[1] * dg)
        step = np.stack([*d_alpha, *d_beta, dg])
    else:
        step = np.stack([v[0] for v in vs] + [v[1] for v in vs])
    step[:, ~ok] = 0.0
    return step, ok


def _information(T: list, with_b: bool) -> np.ndarray:
    """Assemble the Fisher information (B, p, p) from the arms' sums."""
    A = len(T)
    B = T[0].shape[1]
    p = 2 * A + with_b
    H = np.zeros((B, p, p))
    for a, t in enumerate(T):
        S0, Sx, Sxx, _, _, Sb, Sxb, Sbb, _ = _fields(t, with_b)
        i, j = a, A + a
        H[:, i, i], H[:, i, j], H[:, j, i], H[:, j, j] = S0, Sx, Sx, Sxx
        if with_b:
            H[:, i, p - 1] = H[:, p - 1, i] = Sb
            H[:, j, p - 1] = H[:, p - 1, j] = Sxb
            H[:, p - 1, p - 1] += Sbb
    return H


def _newton(arms: list, coef: np.ndarray, with_b: bool, run: np.ndarray, *,
            tol: float = _TOL, max_iter: int = _MAX_ITER):
    """Newton-Raphson steps from ``coef`` (p, B) until each fit settles or fails.

    ``run`` (B,): the fits to run. A fit settles when a step changes no
    coefficient by ``tol`` relative to ``1 +`` its size, and fails when a
    coefficient passes :data:`DIVERGED` or the information is singular.
    Returns the estimates (p, B), the arms' sums at the last step's start
    (the information there; NaN unless settled), and which fits settled and
    which failed (the others were still moving after ``max_iter`` steps).
    """
    A = len(arms)
    B = coef.shape[1]
    coef = coef.copy()
    sums = [np.full((5 + 4 * with_b, B), np.nan) for _ in range(A)]  # _fields
    settled = np.zeros(B, dtype=bool)
    failed = np.zeros(B, dtype=bool)
    idx = np.arange(B)
    live = run.copy()  # fits not run drop out at the first compaction
    work = arms
    cw = coef.copy()
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        for _ in range(max_iter):
            if not live.any():
                break
            T = [_sums(Q, y, cw, a, A) for a, (Q, y) in enumerate(work)]
            step, good = _step(T, with_b)
            step[:, ~live] = 0.0
            cw += step
            conv = np.max(np.abs(step) / (1.0 + np.abs(cw)), axis=0) < tol
            bad = (~good | np.any(np.abs(cw) > DIVERGED, axis=0)) & live
            failed[idx[bad]] = True
            settle = live & conv & ~bad
            settled[idx[settle]] = True
            for a in range(A):
                sums[a][:, idx[settle]] = T[a][:, settle]
            live &= ~(conv | bad)
            if 0 < live.sum() <= _COMPACT * idx.size:  # compact to the live fits
                coef[:, idx] = cw
                keep = live
                idx, cw, live = idx[keep], cw[:, keep], live[keep]
                work = [(Q[..., keep], y[:, keep]) for Q, y in work]
        coef[:, idx] = cw
    return coef, sums, settled, failed


def _first_step(per_arm: list, jf, kf, rr, with_b: bool) -> np.ndarray:
    """Return each fit's start (p, B): the arms' log odds and Newton's first step.

    At the log odds of its arm's response rate ``q`` every participant of the
    arm has fitted probability ``q``, so the information and the score there
    are sums of the data weighted by ``q (1 - q)`` and ``y - q``: sums per
    trial and ROI (or outcome) formed before the fits are laid out (the
    baseline score's serve the seven ROIs' fits), instead of a pass over every
    fit's rows. Where that step is singular or runs past :data:`DIVERGED`
    the fit starts at the log odds themselves.

    ``per_arm``: per arm ``(x (J, R, N_a), b (K, R, N_a) or None, y (K, R, N_a),
    m (R, N_a))``, zero where not used; ``jf``, ``kf``, ``rr`` (B,): each fit's
    ROI, outcome and trial.
    """
    T, odds = [], []
    for xa, ba, ya, ma in per_arm:
        n = ma.sum(axis=-1)[rr].astype(float)
        ev = ya.sum(axis=-1)[kf, rr]
        q = ev / n
        w = q * (1 - q)
        Sx = xa.sum(axis=-1)[jf, rr]
        Sxx = np.einsum("jrn,jrn->jr", xa, xa)[jf, rr]
        Gx = np.einsum("jrn,krn->jkr", xa, ya)[jf, kf, rr] - q * Sx
        if with_b:
            Sb = ba.sum(axis=-1)[kf, rr]
            Sbb = np.einsum("krn,krn->kr", ba, ba)[kf, rr]
            Sxb = np.einsum("jrn,krn->jkr", xa, ba)[jf, kf, rr]
            Gb = np.einsum("krn,krn->kr", ya, ba)[kf, rr] - q * Sb
            # _fields' order: S0, Sx, Sb, Sxx, Sxb, Sbb, G0, Gx, Gb
            T.append(np.stack([w * n, w * Sx, w * Sb, w * Sxx, w * Sxb, w * Sbb,
                               ev - q * n, Gx, Gb]))
        else:
            T.append(np.stack([w * n, w * Sx, w * Sxx, ev - q * n, Gx]))
        odds.append(np.log(ev / (n - ev)))
    A = len(per_arm)
    start = np.zeros((2 * A + with_b, rr.size))
    start[:A] = odds
    with np.errstate(divide="ignore", invalid="ignore"):
        step, good = _step(T, with_b)
    moved = start + step
    use = good & np.all(np.abs(moved) <= DIVERGED, axis=0)
    start[:, use] = moved[:, use]
    return start


def _fit(arms: list, with_b: bool, ok: np.ndarray, start: np.ndarray):
    """Fit the responder model to every fit of ``arms``.

    ``arms``: per arm ``(Q, y)``, its regressor products (:func:`_sums`)
    and responses (N_a, B) (0 where masked), every arm with a responder and
    a non-responder; ``ok`` (B,) False: a fit known to have no finite maximum
    (not run); ``start`` (p, B): :func:`_first_step`. Returns ``coef`` (p, B),
    ``cov`` (B, p, p), ``ok`` (B,).

    A fit that fails from ``start`` (pure Newton steps can overshoot where an
    arm has one or two responders) starts again from zero, the usual start
    (statsmodels').
    """
    A = len(arms)
    B = arms[0][1].shape[1]
    p = 2 * A + with_b
    coef, sums, settled, _ = _newton(arms, start, with_b, ok)
    again = np.flatnonzero(ok & ~settled)
    ok = settled
    if again.size:
        c2, s2, ok2, _ = _newton([(Q[..., again], y[:, again]) for Q, y in arms],
                                 np.zeros((p, again.size)), with_b,
                                 np.ones(again.size, dtype=bool))
        coef[:, again] = c2
        ok[again] = ok2
        for t, t2 in zip(sums, s2, strict=True):
            t[:, again] = t2
    H = _information(sums, with_b)
    H[~ok] = np.eye(p)
    _, cov, good = solve_gram(H, np.zeros((B, p)))
    ok &= good
    coef[:, ~ok] = np.nan
    cov[~ok] = np.nan
    return coef, cov, ok


def responder_tests(v: dict, pairs, n_arms: int, baseline: bool) -> list:
    """Fit the responder model's interactions in every trial, per (ROI, outcome).

    Parameters
    ----------
    v : dict
        :func:`dtitool.stats.plans_engine.plan_variables` of R trials.
    pairs : sequence of (int, int)
        ROI and outcome indices.
    n_arms : int
        Arms, the control arm last.
    baseline : bool
        The baseline score as a covariate.

    Returns
    -------
    list
        Per pair ``(estimate, variance, df, ok)``: the interactions
        ``beta_a - beta_control`` (R, n_arms - 1) and their variances, the df
        (infinite: Wald z) and whether the fit has a finite maximum (R,);
        estimates NaN where it has not.
    """
    arm = v["arm"]
    R = arm.shape[0]
    K = v["b"].shape[-1]
    c = n_arms - 1
    ks = [k for _, k in pairs]
    rows = _arm_rows(arm, n_arms)
    full_mask = bool(v["mask"].all()) and all(bool(ok.all()) for _, ok in rows)
    # each arm's variables, zero where not used: (J or K, R, N_a)
    per_arm = []
    N = arm.shape[1]
    for sel, valid in rows:
        flat = sel + (np.arange(R) * N)[:, None]  # rows of (R * N, ...) arrays
        m = v["mask"].reshape(-1)[flat] & valid

        def take(z, m=None if full_mask else m[..., None], flat=flat):
            t = z.reshape(R * N, -1)[flat]  # whole rows: a fast gather
            return np.ascontiguousarray(np.moveaxis(t if m is None else t * m, -1, 0))

        per_arm.append((take(v["dmd"]), take(v["b"]) if baseline else None,
                        take(v["resp"]), m))
    # an arm without a responder or without a non-responder: no finite maximum
    feasible = np.ones((K, R), dtype=bool)
    for _, _, ya, m in per_arm:
        events = ya.sum(axis=-1)
        feasible &= (events > 0) & (events < m.sum(axis=-1))
    trials = [np.flatnonzero(feasible[k]) for k in range(K)]
    pp = np.concatenate([np.full(trials[k].size, i) for i, k in enumerate(ks)])
    rr = np.concatenate([trials[k] for k in ks])  # the fits, pair-major
    # each arm's rows of every fit, participants first (N_a, B), copied pair by
    # pair into the regressor products (:func:`_sums`)
    data = []
    sep = np.zeros(rr.size, dtype=bool)
    for xa, ba, ya, ma in per_arm:
        n_a = xa.shape[-1]
        Q = np.empty((6 if baseline else 3, n_a, rr.size))
        y = np.empty((n_a, rr.size))
        x, m = Q[1], None if full_mask else Q[0]
        if full_mask:
            Q[0] = 1.0
        o = 0
        for j, k in pairs:
            t = trials[k]
            cols = slice(o, o + t.size)
            x[:, cols] = xa[j, t].T
            y[:, cols] = ya[k, t].T
            if baseline:
                Q[2][:, cols] = ba[k, t].T
            if m is not None:
                m[:, cols] = ma[t].T
            o += t.size
        if baseline:
            b = Q[2]
            np.multiply(x, x, out=Q[3])
            np.multiply(x, b, out=Q[4])
            np.multiply(b, b, out=Q[5])
        else:
            np.multiply(x, x, out=Q[2])
        # dMD can only separate an arm's responders from its non-responders
        # in practice where either group is small; elsewhere a separated fit
        # still fails, only later (its slope passes DIVERGED)
        events = y.sum(axis=0)
        few = np.flatnonzero(np.minimum(events, Q[0].sum(axis=0) - events)
                             <= _FEW)
        if few.size:
            sep[few] |= _separated(x[:, few], y[:, few],
                                   None if m is None else m[:, few])
        data.append((Q, y))
    p = 2 * n_arms + baseline
    coef = np.full((p, len(pairs), R), np.nan)
    cov = np.full((len(pairs), R, p, p), np.nan)
    fit_ok = np.zeros((len(pairs), R), dtype=bool)
    if rr.size:
        jf = np.array([j for j, _ in pairs])[pp]
        kf = np.array(ks)[pp]
        start = _first_step(per_arm, jf, kf, rr, baseline)
        cf, cv, ok = _fit(data, baseline, ~sep, start)
        coef[:, pp, rr] = cf
        cov[pp, rr] = cv
        fit_ok[pp, rr] = ok
    sl = n_arms
    out = []
    for i in range(len(pairs)):
        b, V = coef[:, i], cov[i]
        est = np.stack([b[sl + a] - b[sl + c] for a in range(c)], axis=-1)
        var = np.stack([V[:, sl + a, sl + a] + V[:, sl + c, sl + c]
                        - 2 * V[:, sl + a, sl + c] for a in range(c)], axis=-1)
        out.append((est, var, np.full_like(est, np.inf), fit_ok[i]))
    return out
