"""Batched REML fits of linear mixed models, thousands of replicate datasets at once.

The power engine rehearses a longitudinal analysis such as
``value ~ arm * time + age + sex + (1 + time | participant)`` on thousands of
simulated trials. statsmodels' ``MixedLM`` fits one dataset in tens to hundreds
of milliseconds; here every replicate (a *batch*) is fitted in one vectorised
pass over arrays with the axis convention ``(batches, participants, visits, ...)``.

The model of batch ``b`` and participant ``i`` with up to ``T`` observations is

    y_bi = X_bi beta_b + Z_bi u_bi + e_bi,  u_bi ~ N(0, sigma_b^2 Lambda_b Lambda_b'),
    e_bi ~ N(0, sigma_b^2 I),

with ``q`` random effects per participant. It is fitted by restricted maximum
likelihood (REML) in the parametrisation of lme4 (Bates et al. 2015): ``theta``
holds the lower triangle of the relative Cholesky factor ``Lambda``, column by
column, its diagonal bounded below by 0, and ``sigma^2`` is profiled out.

How it is fast
--------------
- Each participant enters the likelihood only through ``M_i = Z_i'Z_i``,
  ``Z_i'X_i``, ``Z_i'y_i`` (and the totals ``X'X``, ``X'y``, ``y'y``): with the
  Woodbury identity ``V_i^{-1} = I - Z_i K_i Z_i'``, ``K_i = Lambda (Lambda' M_i
  Lambda + I)^{-1} Lambda'``, every quantity of the criterion and its derivatives
  is a q x q algebra per participant. Participants that share ``M_i`` (the same
  pattern of visits and missing scans, the usual case in a trial) share
  ``K_i``, so their cross-products are summed once, before the optimisation
  (``sum Z_i'X_i (x) Z_i'X_i`` etc.); each iteration then costs a few
  matrix products per *pattern*, not per participant.
- ``theta`` is optimised by Newton's method with the analytic gradient and
  Hessian of the profiled REML criterion, an eigenvalue-modified Hessian
  (negative curvature is followed downhill) and a backtracking line search,
  all vectorised over the batches; the only Python loop is over iterations.
- Boundaries: the criterion is invariant to the sign of each column of
  ``Lambda``, so the iterations run unconstrained and the signs are normalised
  at the end (diagonal >= 0); the last diagonal, whose sign change is a pure
  reflection, is held at 0 when the step points below. A variance that should
  vanish thus converges to the boundary (a singular fit, as lme4 reports it),
  not to a NaN. When an earlier random effect's variance vanishes beside a
  later one (no intercept variance, a slope variance), the lower-triangular
  chart in the given order is poor and Newton creeps; batches not converged
  after a few iterations are refitted with the effects ordered by decreasing
  variance, and the better answer is kept.
- Batches are processed in chunks so that memory stays bounded.

Small-sample inference on the fixed effects follows lmerTest (Kuznetsova et al.
2017): Satterthwaite's (1946) degrees of freedom from the analytic Hessian of
the REML deviance in ``(theta, sigma)`` and the analytic Jacobian of the
covariance of the fixed effects, and Kenward and Roger's (1997) adjusted
covariance and degrees of freedom as pbkrtest computes them (Halekoh and
Højsgaard 2014). ``tests/test_lmm.py`` checks the fits against statsmodels'
``MixedLM`` and the degrees of freedom against R's lmerTest and pbkrtest.

References
----------
Bates D, Mächler M, Bolker B, Walker S (2015). Fitting linear mixed-effects
models using lme4. Journal of Statistical Software 67(1).

Halekoh U, Højsgaard S (2014). A Kenward-Roger approximation and parametric
bootstrap methods for tests in linear mixed models - the R package pbkrtest.
Journal of Statistical Software 59(9).

Kenward MG, Roger JH (1997). Small sample inference for fixed effects from
restricted maximum likelihood. Biometrics 53(3), 983-997.

Kuznetsova A, Brockhoff PB, Christensen RHB (2017). lmerTest package: tests in
linear mixed effects models. Journal of Statistical Software 82(13).

Satterthwaite FE (1946). An approximate distribution of estimates of variance
components. Biometrics Bulletin 2(6), 110-114.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

from dtitool.stats.lmm_df import (
    chol_inverse,
    chol_psd,
    contrast_tests,
    kr_adjust,
    kr_parts,
    satterthwaite_from_parts,
    symmetrize,
)

__all__ = [
    "SINGULAR_TOL",
    "LMMFit",
    "contrast_tests",
    "fit_lmm",
    "kenward_roger",
    "reml_loglik",
    "satterthwaite",
]

SINGULAR_TOL = 1e-4
"""A fit is singular when a bounded (diagonal) ``theta`` is below this (lme4's
``isSingular`` default). ``theta`` is relative to the residual SD and in the
units of ``Z``: with time in hours a real slope SD can fall under it, so give
time a unit in which the slope's relative SD is not tiny (weeks, sessions)."""

DEFAULT_MAX_ITER = 100
"""Newton iterations per batch before it is flagged as not converged."""

DEFAULT_TOL = 1e-10
"""Convergence: Newton decrement ``g' H^{-1} g`` of the REML deviance (about
twice its distance to the optimum)."""

_FIRST_PASS = 25
"""Newton iterations in the given order of Z before a batch is retried in the
order of decreasing variance (well-posed fits take 4-10)."""

_CHUNK_FLOATS = 1 << 22
"""Floats of per-participant cross-products held at once (32 MB), which sets the
chunk of batches fitted together."""

_LOG_2PI = math.log(2.0 * math.pi)


@dataclass(frozen=True, slots=True, eq=False)
class LMMFit:
    """REML fits of one linear mixed model to ``B`` batches.

    Parameters
    ----------
    beta : ndarray, shape (B, p)
        Fixed-effect estimates.
    cov : ndarray, shape (B, p, p)
        Their covariance, ``sigma2 (X'V^{-1}X)^{-1}``: lme4's ``vcov``, what
        lmerTest and pbkrtest test with. (statsmodels' fixed-effect block of
        ``cov_params`` inverts the joint observed information of the fixed
        effects and the variance parameters, whose cross terms vanish only in
        expectation, and differs from it by up to a few per cent.)
    sigma2 : ndarray, shape (B,)
        Residual variance.
    G : ndarray, shape (B, q, q)
        Covariance of the random effects, ``sigma2 Lambda Lambda'``.
    theta : ndarray, shape (B, q (q + 1) / 2)
        Relative Cholesky factor, lower triangle column by column (lme4's
        order), diagonal >= 0.
    reml_loglik : ndarray, shape (B,)
        REML log-likelihood at the optimum, with statsmodels' constant (its
        ``MixedLMResults.llf`` under ``reml=True``; minus half lme4's REML
        criterion).
    converged : ndarray of bool, shape (B,)
        False where the optimiser stopped without meeting the tolerance, or
        the design of that batch is rank deficient (its results are NaN).
    singular : ndarray of bool, shape (B,)
        lme4's ``isSingular``: some diagonal ``theta`` below
        :data:`SINGULAR_TOL`.
    iterations : ndarray of int, shape (B,)
        Newton iterations taken (both passes for a batch refitted with its
        random effects reordered; see the module docstring).
    n_obs : ndarray of int, shape (B,)
        Observations used (not missing).
    """

    beta: np.ndarray
    cov: np.ndarray
    sigma2: np.ndarray
    G: np.ndarray
    theta: np.ndarray
    reml_loglik: np.ndarray
    converged: np.ndarray
    singular: np.ndarray
    iterations: np.ndarray
    n_obs: np.ndarray

    @property
    def bse(self) -> np.ndarray:
        """Standard errors of the fixed effects, shape (B, p)."""
        return np.sqrt(np.diagonal(self.cov, axis1=-2, axis2=-1))


# ------------------------------------------------------------------- inputs


def _theta_index(q: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of ``Lambda`` of each theta, lme4's column-major order."""
    cols, rows = np.triu_indices(q)
    return rows, cols


def _check_inputs(y, X, Z, observed):
    """Validate and broadcast the inputs; the mask of observed values."""
    y = np.asarray(y, dtype=float)
    if y.ndim != 3:
        raise ValueError(
            f"y must have shape (B, N, T) (batches, participants, visits); got "
            f"shape {y.shape}")
    B, N, T = y.shape
    if min(B, N, T) == 0:
        raise ValueError(f"y has an empty axis: shape {y.shape}")
    arrays = []
    for name, a, letter in (("X", X, "p"), ("Z", Z, "q")):
        a = np.asarray(a, dtype=float)
        if a.ndim == 3:
            a = a[None]
        if a.ndim != 4 or a.shape[1:3] != (N, T) or a.shape[0] not in (1, B):
            raise ValueError(
                f"{name} must have shape (B, N, T, {letter}) or (N, T, {letter}) "
                f"with (B, N, T) = {(B, N, T)} from y; got shape {np.shape(a)}")
        if a.shape[-1] == 0:
            raise ValueError(f"{name} has no columns ({letter} = 0)")
        arrays.append(a)
    X, Z = arrays
    if np.isinf(y).any():
        raise ValueError("y has infinite values; mark missing values with NaN")
    mask = ~np.isnan(y)
    if observed is not None:
        observed = np.asarray(observed)
        if observed.dtype != bool or observed.shape != y.shape:
            raise ValueError(
                f"observed must be a boolean array of shape {y.shape} like y; "
                f"got dtype {observed.dtype} and shape {observed.shape}")
        mask &= observed
    for name, a in (("X", X), ("Z", Z)):
        bad = ~np.isfinite(a).all(axis=-1) & mask
        if bad.any():
            b, i, t = np.argwhere(bad)[0]
            raise ValueError(
                f"{name} must be finite where y is observed; {int(bad.sum())} "
                f"observed rows are not, the first at batch {b}, participant {i}, "
                f"visit {t}")
    p = X.shape[-1]
    n_obs = mask.sum(axis=(1, 2))
    few = np.flatnonzero(n_obs <= p)
    if few.size:
        raise ValueError(
            f"each batch needs more observations than fixed effects (p = {p}); "
            f"batch {few[0]} has {n_obs[few[0]]} ({few.size} batches too few)")
    # lme4's check.nobs.vs.nRE: with no more observations than random effects
    # (e.g. a random slope on two visits) the variances are not identified.
    n_re = Z.shape[-1] * mask.any(axis=2).sum(axis=1)
    few = np.flatnonzero(n_obs <= n_re)
    if few.size:
        raise ValueError(
            f"each batch needs more observations than random effects (q = "
            f"{Z.shape[-1]} per participant observed); batch {few[0]} has "
            f"{n_obs[few[0]]} for {n_re[few[0]]}, so the variances are not "
            f"identified ({few.size} batches); lme4 refuses such a model too")
    return y, X, Z, mask, n_obs


def _check_theta(theta, B: int, q: int) -> np.ndarray:
    n_theta = q * (q + 1) // 2
    theta = np.atleast_1d(np.asarray(theta, dtype=float))
    if theta.ndim == 1:
        theta = np.broadcast_to(theta, (B, theta.shape[0]))
    if theta.shape != (B, n_theta) or not np.isfinite(theta).all():
        raise ValueError(
            f"theta must be finite with shape ({n_theta},) or ({B}, {n_theta}) "
            f"for q = {q}; got shape {np.shape(theta)}")
    return theta


# ------------------------------------------------------ sufficient statistics


@dataclass(slots=True, eq=False)
class _Stats:
    """What the REML criterion of a chunk of batches depends on.

    ``G`` is the largest number of distinct ``M_i = Z_i'Z_i`` (patterns) in a
    batch of the chunk; patterns are padded with zero counts and moments.
    ``y`` is centred on its OLS fit (``beta0``) so that ``y'V^{-1}y`` loses no
    digits to a large mean.
    """

    n: np.ndarray  # (Bc,) observations
    beta0: np.ndarray  # (Bc, p) OLS estimates (y below is their residual)
    ok: np.ndarray  # (Bc,) X of full rank
    XtX: np.ndarray  # (Bc, p, p)
    Xty: np.ndarray  # (Bc, p)
    yty: np.ndarray  # (Bc,)
    cnt: np.ndarray  # (Bc, G) participants per pattern
    M: np.ndarray  # (Bc, G, q, q)
    SXX: np.ndarray  # (Bc, G q q, p p): sum Z'X[a, p] Z'X[b, r] -> [g a b, p r]
    SXy: np.ndarray  # (Bc, G q q, p): sum Z'X[a, p] Z'y[b] -> [g a b, p]
    Syy: np.ndarray  # (Bc, G, q, q)
    zscale: np.ndarray  # (Bc, q) RMS of each column of Z over observed rows

    def take(self, idx: np.ndarray) -> _Stats:
        return _Stats(*(getattr(self, f)[idx] for f in self.__slots__))

    def permuted(self, perm: np.ndarray) -> _Stats:
        """Return the same data with the columns of Z in the order ``perm``."""
        Bc, G, p, q = self.shape
        SXX = self.SXX.reshape(Bc, G, q, q, p * p)[:, :, perm][:, :, :, perm]
        SXy = self.SXy.reshape(Bc, G, q, q, p)[:, :, perm][:, :, :, perm]
        return _Stats(
            n=self.n, beta0=self.beta0, ok=self.ok, XtX=self.XtX, Xty=self.Xty,
            yty=self.yty, cnt=self.cnt, M=self.M[:, :, perm][:, :, :, perm],
            SXX=SXX.reshape(Bc, G * q * q, p * p), SXy=SXy.reshape(Bc, G * q * q, p),
            Syy=self.Syy[:, :, perm][:, :, :, perm], zscale=self.zscale[:, perm])

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """(Bc, G, p, q)."""
        Bc, G, q, _ = self.M.shape
        return Bc, G, self.XtX.shape[-1], q


def _stats(y: np.ndarray, X: np.ndarray, Z: np.ndarray, mask: np.ndarray) -> _Stats:
    """Sufficient statistics of one chunk: y (Bc, N, T), X/Z (Bc or 1, N, T, .)."""
    Bc, N, T = y.shape
    p, q = X.shape[-1], Z.shape[-1]
    m4 = mask[..., None]
    Xz = np.where(m4, X, 0.0).reshape(Bc, N * T, p)
    Zz = np.where(m4, Z, 0.0)
    ym = np.where(mask, y, 0.0).reshape(Bc, N * T, 1)
    XtX = symmetrize(np.swapaxes(Xz, 1, 2) @ Xz)
    XtXinv, _, ok = chol_inverse(XtX, scaled=True)
    beta0 = (XtXinv @ (np.swapaxes(Xz, 1, 2) @ ym))[..., 0]
    beta0 = np.where(ok[:, None], beta0, 0.0)
    yr = ym[..., 0] - (Xz @ beta0[..., None])[..., 0]  # OLS residuals, 0 if missing
    Xty = (np.swapaxes(Xz, 1, 2) @ yr[..., None])[..., 0]
    yty = np.einsum("bk,bk->b", yr, yr)
    n = mask.sum(axis=(1, 2)).astype(float)
    zscale = np.sqrt(np.einsum("bntq,bntq->bq", Zz, Zz) / n[:, None])

    Zi = Zz.reshape(Bc * N, T, q)
    ZiT = np.swapaxes(Zi, 1, 2)
    ZtX = ZiT @ Xz.reshape(Bc * N, T, p)
    Zty = (ZiT @ yr.reshape(Bc * N, T, 1))[..., 0]
    M = ZiT @ Zi

    # Group participants by M within each batch (sorted on its entries): they
    # share K_i, so their cross-products are summed once.
    iu = np.triu_indices(q)
    keys = M[:, iu[0], iu[1]]
    batch = np.repeat(np.arange(Bc), N)
    order = np.lexsort([*(keys[:, j] for j in range(keys.shape[1] - 1, -1, -1)),
                        batch])
    ks, bs = keys[order], batch[order]
    new = np.ones(Bc * N, dtype=bool)
    new[1:] = (bs[1:] != bs[:-1]) | np.any(ks[1:] != ks[:-1], axis=1)
    starts = np.flatnonzero(new)
    gb = bs[starts]  # batch of each group
    first = np.searchsorted(gb, np.arange(Bc))
    local = np.arange(starts.size) - first[gb]
    G = int(local.max()) + 1
    L = q * (p + 1)
    v = np.concatenate([ZtX.reshape(Bc, N, q * p), Zty.reshape(Bc, N, q)], axis=2)
    if 2 * G > N:
        # Few shared patterns (e.g. each participant's own visit times): every
        # participant is a pattern of its own.
        G = N
        cnt = np.ones((Bc, N))
        Mg = M.reshape(Bc, N, q, q)
        outer = v[..., :, None] * v[..., None, :]
    else:
        gid = np.empty(Bc * N, dtype=np.intp)
        gid[order] = np.repeat(local, np.diff(np.append(starts, Bc * N)))
        gid = gid.reshape(Bc, N)
        cnt = np.zeros((Bc, G))
        cnt[gb, local] = np.diff(np.append(starts, Bc * N))
        Mg = np.zeros((Bc, G, q, q))
        Mg[gb, local] = M[order[starts]]
        # Sum of v_i v_i' over each pattern, v_i = [Z_i'X_i, Z_i'y_i]: one
        # masked matrix product per batch and pattern, in bounded sub-chunks.
        outer = np.empty((Bc, G, L, L))
        step = max(1, _CHUNK_FLOATS // (4 * G * N * L))
        groups = np.arange(G)[None, :, None]
        for a in range(0, Bc, step):
            sl = slice(a, a + step)
            onehot = gid[sl, None, :] == groups  # (b, G, N)
            vt = np.where(onehot[:, :, None, :], np.swapaxes(v[sl], 1, 2)[:, None],
                          0.0)
            outer[sl] = vt @ v[sl, None]
    qp = q * p
    SXX = outer[:, :, :qp, :qp].reshape(Bc, G, q, p, q, p).transpose(0, 1, 2, 4, 3, 5)
    SXy = outer[:, :, :qp, qp:].reshape(Bc, G, q, p, q).transpose(0, 1, 2, 4, 3)
    Syy = outer[:, :, qp:, qp:]
    return _Stats(n=n, beta0=beta0, ok=ok, XtX=XtX, Xty=Xty, yty=yty, cnt=cnt, M=Mg,
                  SXX=SXX.reshape(Bc, G * q * q, p * p),
                  SXy=SXy.reshape(Bc, G * q * q, p), Syy=np.ascontiguousarray(Syy),
                  zscale=zscale)


# ---------------------------------------------------------------- criterion


def _lambda(theta: np.ndarray, q: int) -> np.ndarray:
    rows, cols = _theta_index(q)
    Lam = np.zeros((*theta.shape[:-1], q, q))
    Lam[..., rows, cols] = theta
    return Lam


def _dlambda(Lam: np.ndarray) -> np.ndarray:
    """``D_k = d(Lambda Lambda')/d theta_k``, shape (B, n_theta, q, q)."""
    q = Lam.shape[-1]
    rows, cols = _theta_index(q)
    n_theta = rows.size
    Bc = Lam.shape[0]
    D = np.zeros((Bc, n_theta, q, q))
    for k in range(n_theta):
        col = Lam[:, :, cols[k]]  # E_k Lambda' + Lambda E_k'
        D[:, k, rows[k], :] += col
        D[:, k, :, rows[k]] += col
    return D


def _evaluate(st: _Stats, theta: np.ndarray, order: int) -> dict:
    """Evaluate the profiled REML deviance ``-2 l_R`` and, by order, its derivatives.

    Notes
    -----
    With ``P = V^{-1} - V^{-1}X C^{-1} X'V^{-1}``, ``C = X'V^{-1}X``,
    ``r^2 = y'Py``, ``V_k = Z D_k Z'`` and ``D_kl = d^2 (Lambda Lambda')``:

    - ``f = log|V| + log|C| + (n-p) (1 + log(2 pi r^2 / (n-p)))``,
    - ``df/dk = tr(P V_k) - (n-p) b_k / r^2``, ``b_k = y'P V_k P y``,
    - ``d2f/dkdl = tr(P V_kl) - tr(P V_k P V_l) - (n-p) [(b_kl - 2 c_kl) / r^2
      + b_k b_l / r^4]``, ``c_kl = y'P V_k P V_l P y``,

    each a sum of q x q products per pattern through ``Z'PZ`` blocks
    ``W_i delta_ij - U_i C^{-1} U_j'`` (``W_i = Z_i'V_i^{-1}Z_i``,
    ``U_i = Z_i'V_i^{-1}X_i``) and ``a_i = Z_i'P y``.
    """
    Bc, G, p, q = st.shape
    eye = np.eye(q)
    Lam = _lambda(theta, q)[:, None]  # (Bc, 1, q, q)
    LamT = np.swapaxes(Lam, -1, -2)
    A = LamT @ st.M @ Lam + eye
    Ainv, logdetA, _ = chol_inverse(A)
    K = Lam @ Ainv @ LamT  # (Bc, G, q, q)
    Kf = K.reshape(Bc, 1, G * q * q)
    C = symmetrize(st.XtX - (Kf @ st.SXX).reshape(Bc, p, p))
    Xvy = st.Xty - (Kf @ st.SXy)[:, 0]
    yvy = st.yty - np.einsum("bgij,bgij->b", K, st.Syy)
    Cinv, logdetC, okC = chol_inverse(C, scaled=True)
    delta = np.einsum("bpr,br->bp", Cinv, Xvy)
    r2 = yvy - np.einsum("bp,bp->b", delta, Xvy)
    nmp = st.n - p
    with np.errstate(invalid="ignore", divide="ignore"):
        f = ((st.cnt * logdetA).sum(axis=1) + logdetC
             + nmp * (1.0 + _LOG_2PI + np.log(r2 / nmp)))
    f = np.where(okC & (r2 > 0), f, np.nan)
    out = {"f": f, "Cinv": Cinv, "delta": delta, "r2": r2, "ok": okC}
    if order == 0:
        return out
    MK = st.M @ K
    Bm = eye - MK  # Z_i'V_i^{-1} = Bm Z_i'
    BmT = np.swapaxes(Bm, -1, -2)
    W = symmetrize(st.M - MK @ st.M)  # Z_i'V_i^{-1}Z_i
    Rbar = Bm @ (st.SXX @ Cinv.reshape(Bc, p * p, 1)).reshape(Bc, G, q, q) @ BmT
    T1 = (st.SXy @ delta[..., None]).reshape(Bc, G, q, q)
    dd = (delta[:, :, None] * delta[:, None, :]).reshape(Bc, p * p, 1)
    E = st.Syy - T1 - np.swapaxes(T1, -1, -2) + (st.SXX @ dd).reshape(Bc, G, q, q)
    Abar = Bm @ E @ BmT  # sum over the pattern of a_i a_i'
    with np.errstate(invalid="ignore", divide="ignore"):
        w = nmp / r2
    Wsum = np.einsum("bg,bgij->bij", st.cnt, W)
    Asum = Abar.sum(axis=1)
    # df / d(Lambda Lambda')
    S = symmetrize(Wsum - Rbar.sum(axis=1) - w[:, None, None] * Asum)
    rows, cols = _theta_index(q)
    grad = 2.0 * (S @ Lam[:, 0])[:, rows, cols]
    out.update(grad=grad, S=S, W=W, Bm=Bm, K=K, Wsum=Wsum)
    if order == 1:
        return out
    n_theta = rows.size
    D = _dlambda(Lam[:, 0])
    Dg = D[:, :, None]  # (Bc, k, 1, q, q)
    WD = W[:, None] @ Dg  # (Bc, k, G, q, q)
    t1 = np.einsum("bg,bkgij,blgji->bkl", st.cnt, WD, WD)
    t2 = np.einsum("bkgij,blgji->bkl", WD, Rbar[:, None] @ Dg)
    Y = (BmT[:, None] @ Dg @ Bm[:, None]).reshape(Bc, n_theta, G * q * q)
    H = (Y @ st.SXX).reshape(Bc, n_theta, p, p)  # sum U_i' D_k U_i
    CH = Cinv[:, None] @ H
    t3 = np.einsum("bkij,blji->bkl", CH, CH)
    trace_pp = t1 - t2 - np.swapaxes(t2, 1, 2) + t3  # tr(P V_k P V_l)
    b = np.einsum("bkij,bji->bk", D, Asum)
    c1 = np.einsum("bkgij,blgji->bkl", WD, Abar[:, None] @ Dg)
    F = st.SXy - (st.SXX.reshape(Bc, G * q * q, p, p) @ delta[:, None, :, None])[..., 0]
    h = Y @ F  # sum U_i' D_k a_i, (Bc, k, p)
    c2 = np.einsum("bkp,bpr,blr->bkl", h, Cinv, h)
    c = 0.5 * (c1 + np.swapaxes(c1, 1, 2)) - c2
    same = (cols[:, None] == cols[None, :]).astype(float)
    tsd = 2.0 * S[:, rows[:, None], rows[None, :]] * same  # tr(S D_kl)
    bb = b[:, :, None] * b[:, None, :]
    r2_ = r2[:, None, None]
    hess = (tsd - trace_pp + nmp[:, None, None] * (2.0 * c / r2_ - bb / r2_**2))
    out.update(hess=symmetrize(hess), D=D, H=H, b=b, c=c, trace_pp=trace_pp, tsd=tsd)
    return out


# ---------------------------------------------------------------- optimiser


def _start(st: _Stats, q: int) -> np.ndarray:
    """Diagonal ``Lambda`` whose random effects add about one residual variance."""
    rows, cols = _theta_index(q)
    scale = np.where(st.zscale > 0, 1.0 / np.where(st.zscale > 0, st.zscale, 1), 1.0)
    theta = np.where(rows == cols, scale[:, cols], 0.0)
    return theta


def _newton_direction(g, H, scale, diag):
    """Eigenvalue-modified Newton step in theta scaled to unit size.

    Returns the step, the Newton decrement over the directions of positive
    curvature, and whether any curvature is negative. Along a direction of
    negative curvature the step goes downhill by at least half a unit: near a
    variance at zero that is a maximum (the gradient vanishes there), the
    plain modified step would only double the variance at each iteration.
    """
    gs = g * scale
    Hs = H * scale[:, :, None] * scale[:, None, :]
    w, V = np.linalg.eigh(Hs)
    big = np.max(np.abs(w), axis=-1, keepdims=True)
    floor = np.maximum(big * 1e-10, 1e-300)
    wm = np.maximum(np.abs(w), floor)
    gv = np.einsum("bij,bi->bj", V, gs)
    step = -gv / wm
    negdir = w < -1e-8 * np.maximum(big, 1.0)
    # Downhill along negative curvature; with no slope (at a variance of
    # zero, where the criterion is flat), towards larger diagonals.
    tie = np.abs(gv) <= 1e-10 * (1.0 + np.abs(gs).max(axis=-1, keepdims=True))
    up = np.where(np.einsum("bij,i->bj", V, diag.astype(float)) >= 0, 1.0, -1.0)
    sgn = np.where(tie, up, np.where(gv > 0, -1.0, 1.0))
    step = np.where(negdir, sgn * np.maximum(np.abs(step), 0.5), step)
    dec = np.einsum("bj,bj->b", np.where(negdir, 0.0, gv), gv / wm)
    ds = np.einsum("bij,bj->bi", V, step)
    # Cap the step at two units so that a nearly flat direction cannot send
    # theta far away in one step.
    ds = ds / np.maximum(1.0, np.max(np.abs(ds), axis=-1) / 2.0)[:, None]
    return ds * scale, dec, negdir.any(axis=-1)


def _optimise(st: _Stats, max_iter: int, tol: float, start=None):
    """Newton iterations on theta for every batch of the chunk at once.

    Each pass evaluates the deviance, gradient and Hessian at a candidate
    point; the line search is deferred: a candidate that fails Armijo's
    condition against the last accepted point is replaced by half the step,
    so a pass costs one evaluation whether or not it backtracks.

    The criterion is unchanged when a column of ``Lambda`` changes sign, so
    the iterations run unconstrained and the signs are normalised at the end
    (diagonal >= 0, lme4's bounds). The last column holds only its diagonal:
    crossing zero there is a pure reflection, which can make Newton bounce
    between mirror images around a variance that should vanish, so that
    diagonal is projected on >= 0 and held at 0 when the step points below.
    """
    Bc, _, _, q = st.shape
    rows, cols = _theta_index(q)
    n_theta = rows.size
    diag = rows == cols
    last = diag & (cols == q - 1)  # the last column: its diagonal alone
    theta = _start(st, q)
    base = theta[:, np.flatnonzero(diag)[rows]]  # the diagonal of its row
    if start is not None:
        theta = start.copy()

    def project(t):
        return np.where(last, np.maximum(t, 0.0), t)

    cand = theta.copy()
    f_acc = np.full(Bc, np.inf)
    g_acc = np.zeros((Bc, n_theta))
    d = np.zeros((Bc, n_theta))
    alpha = np.ones(Bc)
    dec = np.full(Bc, np.inf)
    local = np.zeros(Bc, dtype=bool)  # a full Newton step close to the optimum
    have = np.zeros(Bc, dtype=bool)
    iters = np.zeros(Bc, dtype=int)
    converged = np.zeros(Bc, dtype=bool)
    done = ~st.ok
    sub, sub_idx = st, np.arange(Bc)
    for _ in range(4 * max_iter):
        act = np.flatnonzero(~done)
        if act.size == 0:
            break
        if act.size < 0.7 * sub_idx.size:  # shrink the working set
            keep = np.isin(sub_idx, act)
            sub, sub_idx = sub.take(keep), sub_idx[keep]
        s_act = sub if act.size == sub_idx.size else sub.take(
            np.searchsorted(sub_idx, act))
        ev = _evaluate(s_act, cand[act], 2)
        fc, g, H = ev["f"], ev["grad"], ev["hess"]
        finite = np.isfinite(fc) & np.isfinite(H).all(axis=(1, 2))
        # Armijo against the last accepted point, along the projected step; a
        # full Newton step close to the optimum may rise by rounding only.
        fa = f_acc[act]
        slope = np.einsum("bi,bi->b", g_acc[act], cand[act] - theta[act])
        ok = finite & (fc <= fa + 1e-4 * np.minimum(slope, 0.0))
        ok |= finite & local[act] & (fc <= fa + 1e-10 * (1.0 + np.abs(fa)))
        ok |= finite & ~have[act]
        # A first point that cannot be evaluated: the batch is lost.
        done[act[~finite & ~have[act]]] = True
        # Rejected: backtrack, or give up when the step has vanished.
        rej = np.flatnonzero(~ok & have[act])
        if rej.size:
            r = act[rej]
            alpha[r] *= 0.5
            stuck = alpha[r] < 1e-12
            # As good as floating point allows when the decrement was tiny.
            converged[r[stuck]] = dec[r[stuck]] < 1e-6
            done[r[stuck]] = True
            cand[r] = project(theta[r] + alpha[r, None] * d[r])
            local[r] = False
        acc = np.flatnonzero(ok)
        if acc.size == 0:
            continue
        a = act[acc]
        theta[a] = cand[a]
        f_acc[a] = fc[acc]
        g_acc[a] = g[acc]
        have[a] = True
        th = theta[a]
        da, deca, neg = _newton_direction(g[acc], H[acc], base[a] + np.abs(th), diag)
        # A diagonal at its bound that the step would push below it is held
        # there: the decrement is that of the free directions.
        held = last & (th <= 0.0) & (da < 0.0)
        if held.any():
            gh = np.where(held, 0.0, g[acc])
            Hh = np.where(held[:, :, None] | held[:, None, :], 0.0, H[acc])
            Hh = Hh + np.where(held, 1.0, 0.0)[:, :, None] * np.eye(n_theta)
            da2, dec2, neg2 = _newton_direction(gh, Hh, base[a] + np.abs(th), diag)
            rowh = held.any(axis=1)
            da[rowh], deca[rowh], neg[rowh] = da2[rowh], dec2[rowh], neg2[rowh]
        dec[a] = deca
        at_min = (deca < tol) & ~neg
        # Converged: take the last (tiny) Newton step, which squares the error.
        fin = a[at_min]
        theta[fin] = project(th[at_min] + da[at_min])
        converged[fin] = True
        done[fin] = True
        go = ~at_min
        moving = a[go]
        over = iters[moving] >= max_iter
        done[moving[over]] = True
        keep = ~over
        moving, da, deca = moving[keep], da[go][keep], deca[go][keep]
        sad = neg[go][keep]
        iters[moving] += 1
        d[moving] = da
        alpha[moving] = 1.0
        local[moving] = (deca < 1e-6) & ~sad
        cand[moving] = project(theta[moving] + da)
    # Sign-normalise the columns of Lambda (the criterion does not see them).
    diag_sign = np.where(theta[:, diag] < 0, -1.0, 1.0)  # (Bc, q)
    return theta * diag_sign[:, cols], converged & st.ok, iters


def _fit_chunk(st: _Stats, max_iter: int, tol: float):
    """Optimise; retry the batches that did not converge in another order of Z.

    When the variance of an earlier random effect goes to zero while a later
    one stays (an intercept variance of zero beside a slope variance, often
    with a correlation of +-1), ``Lambda``'s lower triangle in that order is a
    poor chart: the optimum is approached along a flat, curved valley and
    Newton creeps. Ordered by decreasing variance the same boundary is a
    single diagonal going to zero, which Newton handles. The better of the two
    answers (by the criterion) is kept and expressed in the given order.
    """
    q = st.M.shape[-1]
    first = max_iter if q == 1 else min(max_iter, _FIRST_PASS)
    theta, conv, iters = _optimise(st, first, tol)
    redo = np.flatnonzero(~conv & st.ok)
    if q == 1 or redo.size == 0 or max_iter <= first:
        return theta, conv, iters
    rows, cols = _theta_index(q)
    Lam = _lambda(theta[redo], q)
    D = Lam @ np.swapaxes(Lam, 1, 2)
    rel = np.diagonal(D, axis1=1, axis2=2) * st.zscale[redo] ** 2
    perms = np.argsort(-rel, axis=1, kind="stable")
    perms[(perms == np.arange(q)).all(axis=1)] = np.arange(q)[::-1]
    f_old = _evaluate(st.take(redo), theta[redo], 0)["f"]
    for perm in np.unique(perms, axis=0):
        sel = np.flatnonzero((perms == perm).all(axis=1))
        b = redo[sel]
        stp = st.take(b).permuted(perm)
        Dp = D[sel][:, perm][:, :, perm]
        start = chol_psd(Dp)
        floor = 0.01 / np.where(stp.zscale > 0, stp.zscale, 1.0)
        idx = np.arange(q)
        start[:, idx, idx] = np.maximum(start[:, idx, idx], floor)
        thp, cp, ip = _optimise(stp, max_iter - first, tol, start[:, rows, cols])
        fp = _evaluate(stp, thp, 0)["f"]
        better = np.isfinite(fp) & (cp | (fp < f_old[sel]))
        inv = np.argsort(perm)
        Lp = _lambda(thp, q)
        back = chol_psd((Lp @ np.swapaxes(Lp, 1, 2))[:, inv][:, :, inv])[:, rows, cols]
        theta[b[better]] = back[better]
        conv[b[better]] = cp[better]
        iters[b] += ip
    return theta, conv, iters


# --------------------------------------------------------------- public API


def _chunks(B: int, N: int, T: int, p: int, q: int, chunk_size):
    if chunk_size is None:
        per = N * ((q * (p + 1)) ** 2 + T * (p + q + 2))
        chunk_size = max(1, _CHUNK_FLOATS // per)
    elif not isinstance(chunk_size, int | np.integer) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer; got {chunk_size!r}")
    return [slice(a, min(a + chunk_size, B)) for a in range(0, B, chunk_size)]


def _slice(a: np.ndarray, sl: slice) -> np.ndarray:
    return a if a.shape[0] == 1 else a[sl]


def fit_lmm(y, X, Z, observed=None, *, max_iter: int = DEFAULT_MAX_ITER,
            tol: float = DEFAULT_TOL, chunk_size: int | None = None) -> LMMFit:
    """Fit a linear mixed model by REML to many batches at once.

    Parameters
    ----------
    y : array_like, shape (B, N, T)
        Outcome of batch ``b``, participant ``i``, visit ``t``; NaN = missing.
    X : array_like, shape (B, N, T, p) or (N, T, p)
        Fixed-effect design (the second form is shared by every batch). Must be
        finite where ``y`` is observed; other rows are ignored.
    Z : array_like, shape (B, N, T, q) or (N, T, q)
        Random-effect design of each participant, e.g. ``[1, time]``.
    observed : array_like of bool, shape (B, N, T), optional
        False marks an observation missing, in addition to NaN in ``y``.
    max_iter : int
        Newton iterations before a batch is flagged as not converged.
    tol : float
        Convergence tolerance on the Newton decrement of the REML deviance.
    chunk_size : int, optional
        Batches fitted together (default: enough to hold about 32 MB of
        cross-products).

    Returns
    -------
    LMMFit

    Raises
    ------
    ValueError
        For arrays of the wrong shape, non-finite ``X``/``Z`` where ``y`` is
        observed, infinite ``y``, or a batch with no more observations than
        fixed effects, or than random effects (lme4's ``check.nobs.vs.nRE``).

    Warns
    -----
    RuntimeWarning
        When the fixed-effect design of some batch is rank deficient (those
        batches are NaN and not converged).

    Notes
    -----
    Missing observations are masked: their rows of ``X``, ``Z`` and ``y`` are
    zero and their row of ``V_i`` is the identity, so they add nothing, and a
    participant with no observation contributes nothing. ``n_obs`` counts the
    observed values only. The optimisation is described in the module
    docstring; batches that stop without meeting ``tol`` within ``max_iter``
    iterations keep their last estimates and are flagged in ``converged``.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> B, N, T = 3, 30, 4
    >>> time = np.broadcast_to(np.arange(T, dtype=float), (N, T))
    >>> X = np.stack([np.ones((N, T)), time], axis=-1)
    >>> u = rng.normal(size=(B, N, 1)) * 2.0
    >>> y = 1.0 + 0.5 * time + u + rng.normal(size=(B, N, T))
    >>> fit = fit_lmm(y, X, X[..., :1])
    >>> fit.beta.shape, fit.G.shape, bool(fit.converged.all())
    ((3, 2), (3, 1, 1), True)
    """
    y, X, Z, mask, n_obs = _check_inputs(y, X, Z, observed)
    if not isinstance(max_iter, int | np.integer) or max_iter < 1:
        raise ValueError(f"max_iter must be a positive integer; got {max_iter!r}")
    if not (isinstance(tol, float | int) and tol > 0):
        raise ValueError(f"tol must be a positive number; got {tol!r}")
    B, N, T = y.shape
    p, q = X.shape[-1], Z.shape[-1]
    n_theta = q * (q + 1) // 2
    beta = np.full((B, p), np.nan)
    cov = np.full((B, p, p), np.nan)
    sigma2 = np.full(B, np.nan)
    Gm = np.full((B, q, q), np.nan)
    theta = np.full((B, n_theta), np.nan)
    llf = np.full(B, np.nan)
    converged = np.zeros(B, dtype=bool)
    iterations = np.zeros(B, dtype=int)
    for sl in _chunks(B, N, T, p, q, chunk_size):
        st = _stats(y[sl], _slice(X, sl), _slice(Z, sl), mask[sl])
        th, conv, it = _fit_chunk(st, max_iter, tol)
        ev = _evaluate(st, th, 0)
        s2 = ev["r2"] / (st.n - p)
        Lam = _lambda(th, q)
        good = st.ok & ev["ok"]
        beta[sl] = np.where(good[:, None], st.beta0 + ev["delta"], np.nan)
        cov[sl] = s2[:, None, None] * ev["Cinv"]
        sigma2[sl] = np.where(good, s2, np.nan)
        Gm[sl] = s2[:, None, None] * (Lam @ np.swapaxes(Lam, 1, 2))
        theta[sl] = np.where(good[:, None], th, np.nan)
        llf[sl] = -0.5 * ev["f"]
        converged[sl] = conv & good & np.isfinite(ev["f"])
        iterations[sl] = it
    rank_def = np.isnan(beta).any(axis=1)
    if rank_def.any():
        warnings.warn(
            f"{int(rank_def.sum())} of {B} batches have a rank-deficient fixed-effect "
            f"design (the first is batch {np.flatnonzero(rank_def)[0]}); their "
            "results are NaN and they are flagged as not converged",
            RuntimeWarning, stacklevel=2)
    rows, cols = _theta_index(q)
    with np.errstate(invalid="ignore"):
        singular = np.any(theta[:, rows == cols] < SINGULAR_TOL, axis=1)
    return LMMFit(beta=beta, cov=cov, sigma2=sigma2, G=Gm, theta=theta,
                  reml_loglik=llf, converged=converged, singular=singular,
                  iterations=iterations, n_obs=n_obs.astype(int))


def reml_loglik(theta, y, X, Z, observed=None) -> np.ndarray:
    """Profiled REML log-likelihood of each batch at a given ``theta``.

    Parameters
    ----------
    theta : array_like, shape (q (q + 1) / 2,) or (B, q (q + 1) / 2)
        Relative Cholesky parameters in lme4's order.
    y, X, Z, observed
        As for :func:`fit_lmm`.

    Returns
    -------
    ndarray, shape (B,)
        ``-0.5`` times the REML deviance, with ``sigma^2`` at its profile
        optimum; NaN where the design is rank deficient.

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> y = rng.normal(size=(2, 10, 3))
    >>> X = np.ones((10, 3, 1))
    >>> reml_loglik([0.5], y, X, X).shape
    (2,)
    """
    y, X, Z, mask, _ = _check_inputs(y, X, Z, observed)
    B, N, T = y.shape
    p, q = X.shape[-1], Z.shape[-1]
    theta = _check_theta(theta, B, q)
    out = np.full(B, np.nan)
    for sl in _chunks(B, N, T, p, q, None):
        st = _stats(y[sl], _slice(X, sl), _slice(Z, sl), mask[sl])
        out[sl] = -0.5 * _evaluate(st, theta[sl], 0)["f"]
    return out


def _check_fit(fit: LMMFit, B: int, p: int, q: int) -> None:
    if not isinstance(fit, LMMFit):
        raise TypeError(f"fit must be an LMMFit from fit_lmm; got {type(fit).__name__}")
    if fit.beta.shape != (B, p) or fit.G.shape[1:] != (q, q):
        raise ValueError(
            f"fit has beta of shape {fit.beta.shape} and G of shape {fit.G.shape}, "
            f"but the data give B = {B}, p = {p}, q = {q}: pass the arrays it was "
            "fitted to")


def _check_L(L, p: int) -> np.ndarray:
    L = np.asarray(L, dtype=float)
    if L.ndim == 1:
        L = L[None]
    if L.ndim != 2 or L.shape[1] != p or not np.isfinite(L).all():
        raise ValueError(
            f"L must be a finite contrast matrix of shape (k, {p}) (or a vector of "
            f"length {p}); got shape {np.shape(L)}")
    return L


def _derivative_parts(fit, y, X, Z, observed, L):
    """Per chunk: stats and the evaluation at the fitted theta."""
    y, X, Z, mask, _ = _check_inputs(y, X, Z, observed)
    B, N, T = y.shape
    p, q = X.shape[-1], Z.shape[-1]
    _check_fit(fit, B, p, q)
    L = _check_L(L, p)
    for sl in _chunks(B, N, T, p, q, None):
        st = _stats(y[sl], _slice(X, sl), _slice(Z, sl), mask[sl])
        th = np.nan_to_num(fit.theta[sl])
        yield sl, st, _evaluate(st, th, 2), L


def satterthwaite(fit: LMMFit, y, X, Z, observed, L) -> np.ndarray:
    """Satterthwaite degrees of freedom of 1-d contrasts, as lmerTest's.

    Parameters
    ----------
    fit : LMMFit
        The fit of these data by :func:`fit_lmm`.
    y, X, Z, observed
        The arrays it was fitted to (``observed`` may be None).
    L : array_like, shape (k, p) or (p,)
        Contrast rows; each is tested on its own.

    Returns
    -------
    ndarray, shape (B, k)
        Denominator degrees of freedom (NaN where the fit is NaN).

    Notes
    -----
    As lmerTest's ``contest1D(ddf = "Satterthwaite")`` (Kuznetsova et al.
    2017): ``df = 2 (l'Vl)^2 / (g' A g)``, where ``V = sigma^2 C^{-1}`` is the
    covariance of the fixed effects, ``g`` its gradient with respect to the
    variance parameters ``(theta, sigma)``, and ``A = 2 H^+`` with ``H`` the
    Hessian of the REML deviance in ``(theta, sigma)`` (inverted on its
    eigenvalues above 1e-8, as lmerTest does). lmerTest differentiates
    numerically; here ``g`` and ``H`` are analytic.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> time = np.broadcast_to(np.arange(4.0), (20, 4))
    >>> X = np.stack([np.ones((20, 4)), time], axis=-1)
    >>> y = time + rng.normal(size=(1, 20, 1)) + rng.normal(size=(1, 20, 4))
    >>> fit = fit_lmm(y, X, X[..., :1])
    >>> satterthwaite(fit, y, X, X[..., :1], None, [[0, 1]]).round(1)
    array([[59.]])
    """
    B = np.shape(y)[0]
    out = None
    for sl, st, ev, Lc in _derivative_parts(fit, y, X, Z, observed, L):
        if out is None:
            out = np.full((B, Lc.shape[0]), np.nan)
        p = st.shape[2]
        s2 = ev["r2"] / (st.n - p)
        out[sl] = satterthwaite_from_parts(
            Lc, ev["Cinv"], ev["H"], s2, st.n - p, ev["hess"], ev["b"], ev["r2"])
    return out


def kenward_roger(fit: LMMFit, y, X, Z, observed, L) -> tuple[np.ndarray, np.ndarray]:
    """Kenward-Roger adjusted covariance and degrees of freedom, as pbkrtest's.

    Parameters
    ----------
    fit : LMMFit
        The fit of these data by :func:`fit_lmm`.
    y, X, Z, observed
        The arrays it was fitted to (``observed`` may be None).
    L : array_like, shape (k, p) or (p,)
        Contrast rows; each is tested on its own.

    Returns
    -------
    cov_adj : ndarray, shape (B, p, p)
        Kenward and Roger's (1997) adjusted covariance of the fixed effects
        (pbkrtest's ``vcovAdj``).
    df : ndarray, shape (B, k)
        Their denominator degrees of freedom of each row (pbkrtest's
        ``Lb_ddf``, as lmerTest's ``ddf = "Kenward-Roger"`` uses it).

    Notes
    -----
    The variance parameters are those of pbkrtest (Halekoh and Højsgaard
    2014): the distinct entries of ``G`` and ``sigma^2``, in which ``V`` is
    linear, so the second-derivative term of Kenward and Roger vanishes. All
    traces are q x q algebra per pattern (see the module docstring), so any
    number of batches is handled in one pass. Test with
    ``contrast_tests(fit, L, df, cov=cov_adj)``.
    """
    B = np.shape(y)[0]
    cov_adj = df = None
    for sl, st, ev, Lc in _derivative_parts(fit, y, X, Z, observed, L):
        if cov_adj is None:
            p = st.shape[2]
            cov_adj = np.full((B, p, p), np.nan)
            df = np.full((B, Lc.shape[0]), np.nan)
        c, d = kr_adjust(Lc, kr_parts(st, ev))
        cov_adj[sl], df[sl] = c, d
    return cov_adj, df
