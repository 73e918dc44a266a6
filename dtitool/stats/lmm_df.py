"""Degrees of freedom, t-tests and small-matrix algebra of the batched mixed models.

The algebra that turns the derivatives computed by :mod:`dtitool.stats.lmm`
into Satterthwaite (1946) and Kenward-Roger (1997) degrees of freedom, as R's
lmerTest (Kuznetsova et al. 2017) and pbkrtest (Halekoh and Højsgaard 2014)
compute them, the t-tests of contrasts, and the Cholesky factorisations of
many small matrices at once that the engine runs on. Every function works on
arrays with a leading batch axis; :func:`dtitool.stats.lmm.satterthwaite` and
:func:`dtitool.stats.lmm.kenward_roger` are the entry points.

References
----------
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

import numpy as np

__all__ = [
    "chol_inverse",
    "chol_psd",
    "contrast_tests",
    "kr_adjust",
    "kr_parts",
    "satterthwaite_from_parts",
    "symmetrize",
]

_PIVOT_TOL = 1e-10
"""Smallest acceptable Cholesky pivot of a unit-diagonal Gram matrix (``X'X``
of the OLS engine, ``X'V^{-1}X`` of the mixed models).

A pivot is ``1 - R^2`` of a column on the preceding ones, so this flags a
variance inflation factor above 1e10 as rank deficiency (statsmodels' pinv would
silently return a minimum-norm solution there)."""

_LMERTEST_TOL = 1e-8
"""Eigenvalues of the deviance Hessian at or below this are left out of its
inverse (lmerTest's ``as_lmerModLmerTest(tol = 1e-8)``)."""

_PBKRTEST_CONDI = 1e-10
"""pbkrtest inverts the information with ``solve`` when its smallest absolute
eigenvalue exceeds this, otherwise with ``MASS::ginv``."""


def chol_inverse(A: np.ndarray, *, scaled: bool = False, logdet: bool = True):
    """Compute the inverse and log-determinant of many small SPD matrices at once.

    A Cholesky loop over the (few) rows, each step vectorised over the leading
    axes. With ``scaled`` the matrix is first brought to unit diagonal and a
    pivot below ``_PIVOT_TOL`` marks it rank deficient (``ok`` False, inverse
    NaN), as for ``X'V^{-1}X`` and the OLS engine's ``X'X``
    (:func:`dtitool.stats.ols.solve_gram`); otherwise ``A`` is known to be
    ``>= I``. ``logdet=False`` skips the log-determinant (returned as None).
    """
    want_logdet = logdet
    n = A.shape[-1]
    lead = A.shape[:-2]
    ok = np.ones(lead, dtype=bool)
    if scaled:
        diag = np.stack([A[..., i, i] for i in range(n)])
        ok &= np.all(diag > 0, axis=0)
        s = 1.0 / np.sqrt(np.where(diag > 0, diag, 1.0))
        logdet = -2.0 * np.log(s).sum(axis=0) if want_logdet else None
    else:
        s = np.ones((n, *lead))
        logdet = np.zeros(lead)
    L = [[None] * n for _ in range(n)]
    for j in range(n):
        piv = A[..., j, j] * s[j] * s[j]
        for k in range(j):
            piv = piv - L[j][k] * L[j][k]
        if scaled:
            ok &= piv > _PIVOT_TOL
        piv = np.where(ok, piv, 1.0)
        if want_logdet:
            logdet = logdet + np.log(piv)
        d = np.sqrt(piv)
        L[j][j] = d
        for i in range(j + 1, n):
            v = A[..., i, j] * s[i] * s[j]
            for k in range(j):
                v = v - L[i][k] * L[j][k]
            L[i][j] = v / d
    Li = [[None] * n for _ in range(n)]
    for j in range(n):
        Li[j][j] = 1.0 / L[j][j]
        for i in range(j + 1, n):
            v = L[i][j] * Li[j][j]
            for k in range(j + 1, i):
                v = v + L[i][k] * Li[k][j]
            Li[i][j] = -v / L[i][i]
    inv = np.empty((*lead, n, n))
    for i in range(n):
        for j in range(i + 1):
            v = Li[i][i] * Li[i][j]
            for k in range(i + 1, n):
                v = v + Li[k][i] * Li[k][j]
            inv[..., i, j] = inv[..., j, i] = v * s[i] * s[j]
    if scaled:
        inv[~ok] = np.nan
        if want_logdet:
            logdet = np.where(ok, logdet, np.nan)
    return inv, logdet, ok


def symmetrize(A: np.ndarray) -> np.ndarray:
    """Return the symmetric part of (stacked) square matrices."""
    return 0.5 * (A + np.swapaxes(A, -1, -2))


def chol_psd(D: np.ndarray) -> np.ndarray:
    """Compute the lower Cholesky factor of PSD matrices (zero pivot: zero column)."""
    q = D.shape[-1]
    L = np.zeros_like(D)
    big = np.max(np.abs(np.diagonal(D, axis1=-2, axis2=-1)), axis=-1)
    for j in range(q):
        piv = D[..., j, j] - np.sum(L[..., j, :j] ** 2, axis=-1)
        pos = piv > 1e-14 * big
        dj = np.sqrt(np.where(pos, piv, 1.0))
        L[..., j, j] = np.where(pos, dj, 0.0)
        for i in range(j + 1, q):
            v = D[..., i, j] - np.sum(L[..., i, :j] * L[..., j, :j], axis=-1)
            L[..., i, j] = np.where(pos, v / dj, 0.0)
    return L


def _pinv_positive(H: np.ndarray, tol: float) -> np.ndarray:
    """Inverse of symmetric matrices on their eigenvalues above ``tol``."""
    w, V = np.linalg.eigh(H)
    keep = w > tol
    winv = np.where(keep, 1.0 / np.where(keep, w, 1.0), 0.0)
    return np.einsum("bij,bj,bkj->bik", V, winv, V)


def _ginv(A: np.ndarray) -> np.ndarray:
    """Compute ``MASS::ginv`` of symmetric matrices.

    Eigenvalues above ``sqrt(eps)`` times the largest are inverted.
    """
    w, V = np.linalg.eigh(A)
    big = np.abs(w).max(axis=-1, keepdims=True)
    keep = np.abs(w) > np.sqrt(np.finfo(float).eps) * big
    winv = np.where(keep, 1.0 / np.where(keep, w, 1.0), 0.0)
    return np.einsum("bij,bj,bkj->bik", V, winv, V)


def satterthwaite_from_parts(L, Cinv, H, s2, nmp, hessf, b, r2) -> np.ndarray:
    """Satterthwaite degrees of freedom from the fit's derivatives.

    Parameters
    ----------
    L : ndarray, shape (k, p)
        Contrast rows.
    Cinv : ndarray, shape (B, p, p)
        ``(X'V^{-1}X)^{-1}`` (relative units).
    H : ndarray, shape (B, m, p, p)
        ``-d(X'V^{-1}X)/d theta_k`` for each of the ``m`` thetas.
    s2, nmp, r2 : ndarray, shape (B,)
        Residual variance, ``n - p`` and ``y'Py``.
    hessf : ndarray, shape (B, m, m)
        Hessian of the profiled REML deviance in theta.
    b : ndarray, shape (B, m)
        ``y'P V_k P y``.

    Returns
    -------
    ndarray, shape (B, k)

    Notes
    -----
    lmerTest's deviance in ``(theta, sigma)`` is the profiled one plus terms in
    sigma; its Hessian is ``hessf + (n-p) b b' / r^4`` in theta,
    ``2 b / sigma^3`` across and ``6 r^2/sigma^4 - 2 (n-p)/sigma^2`` in sigma.
    """
    Bc, m = b.shape
    s = np.sqrt(s2)
    hd = np.empty((Bc, m + 1, m + 1))
    hd[:, :m, :m] = hessf + nmp[:, None, None] * b[:, :, None] * b[:, None, :] / (
        r2[:, None, None] ** 2)
    hd[:, :m, m] = hd[:, m, :m] = 2.0 * b / s[:, None] ** 3
    hd[:, m, m] = 6.0 * r2 / s2**2 - 2.0 * nmp / s2
    good = np.isfinite(hd).all(axis=(1, 2))
    A = np.full_like(hd, np.nan)
    if good.any():
        A[good] = 2.0 * _pinv_positive(hd[good], _LMERTEST_TOL)
    v = np.einsum("kp,bpr->bkr", L, Cinv)  # l' C^{-1}, (B, k, p)
    lcl = np.einsum("bkp,kp->bk", v, L)
    var = s2[:, None] * lcl
    g = np.empty((Bc, L.shape[0], m + 1))
    g[..., :m] = s2[:, None, None] * np.einsum("bkp,bmpr,bkr->bkm", v, H, v)
    g[..., m] = 2.0 * s[:, None] * lcl
    denom = np.einsum("bki,bij,bkj->bk", g, A, g)
    with np.errstate(divide="ignore", invalid="ignore"):
        return 2.0 * var**2 / denom


def kr_adjust(L, parts: dict) -> tuple[np.ndarray, np.ndarray]:
    """Kenward-Roger adjusted covariance and 1-d degrees of freedom.

    Parameters
    ----------
    L : ndarray, shape (k, p)
        Contrast rows, each tested alone.
    parts : dict
        ``Phi`` (B, p, p) the unadjusted covariance of the fixed effects;
        ``P`` (B, g, p, p), ``Q`` (B, g, g, p, p) and ``Ktrace`` (B, g, g) as
        in pbkrtest's ``vcovAdj_internal`` for the ``g`` variance parameters.

    Returns
    -------
    cov_adj : ndarray, shape (B, p, p)
    df : ndarray, shape (B, k)

    Notes
    -----
    pbkrtest's ``vcovAdj_internal``: ``IE2 = Ktrace - 2 tr(Phi Q_rs) +
    tr(Phi P_r Phi P_s)``, ``W = 2 IE2^{-1}``, ``U = sum W_rs (Q_rs - P_r Phi
    P_s)``, ``Phi_A = Phi + 2 Phi U Phi``; then ``Lb_ddf`` for each row with
    ``q = 1`` (its ``E``, ``V`` and ``rho`` algebra, kept as written there).
    """
    Phi, P, Q, Kt = parts["Phi"], parts["P"], parts["Q"], parts["Ktrace"]
    PhiP = Phi[:, None] @ P  # (B, g, p, p)
    IE2 = (Kt - 2.0 * np.einsum("bij,brsji->brs", Phi, Q)
           + np.einsum("brij,bsji->brs", PhiP, PhiP))
    IE2 = 0.5 * (IE2 + np.swapaxes(IE2, 1, 2))
    good = np.isfinite(IE2).all(axis=(1, 2)) & np.isfinite(Phi).all(axis=(1, 2))
    W = np.full_like(IE2, np.nan)
    if good.any():
        ie = IE2[good]
        condi = np.abs(np.linalg.eigvalsh(ie)).min(axis=-1)
        inv = np.empty_like(ie)
        reg = condi > _PBKRTEST_CONDI
        if reg.any():
            inv[reg] = np.linalg.inv(ie[reg])
        if (~reg).any():
            inv[~reg] = _ginv(ie[~reg])
        W[good] = 2.0 * inv
    PPhiP = np.einsum("brij,bjk,bskl->brsil", P, Phi, P)
    U = np.einsum("brs,brsij->bij", W, Q - PPhiP)
    cov_adj = Phi + 2.0 * Phi @ U @ Phi

    # Lb_ddf with q = 1 for each row l: Theta = l'l / (l Phi l').
    lphi = np.einsum("kp,bpr->bkr", L, Phi)
    lpl = np.einsum("bkp,kp->bk", lphi, L)
    with np.errstate(divide="ignore", invalid="ignore"):
        w = np.einsum("bkp,brpq,bkq->bkr", lphi, P, lphi) / lpl[..., None]
        A1 = np.einsum("bkr,brs,bks->bk", w, W, w)
        A2 = A1  # tr(u_r u_s) = w_r w_s as Theta has rank 1
        q = 1.0
        B = (A1 + 6.0 * A2) / (2.0 * q)
        g = ((q + 1.0) * A1 - (q + 4.0) * A2) / ((q + 2.0) * A2)
        den = 3.0 * q + 2.0 * (1.0 - g)
        c1, c2, c3 = g / den, (q - g) / den, (q + 2.0 - g) / den
        V0 = 1.0 + c1 * B
        V1 = 1.0 - c2 * B
        V2 = 1.0 - c3 * B
        V0 = np.where(np.abs(V0) < 1e-10, 0.0, V0)
        x = 1.0 - A2 / q
        ratio = np.where((np.abs(x) < 1e-14) & (np.abs(V1) < 1e-14), 1.0, x / V1)
        rho = ratio**2 * V0 / V2 / q
        df = 4.0 + (q + 2.0) / (q * rho - 1.0)
    return cov_adj, df


def kr_parts(st, ev: dict) -> dict:
    """Compute the ingredients of Kenward-Roger in absolute units (pbkrtest's names).

    For the variance parameters ``gamma`` (entries of G, then sigma^2) with
    ``dSigma/dgamma_r = Z E_r Z'`` or the identity: ``P_r = -X'S^{-1} G_r
    S^{-1}X``, ``Q_rs = X'S^{-1} G_r S^{-1} G_s S^{-1}X`` and ``Ktrace_rs =
    tr(S^{-1} G_r S^{-1} G_s)``, ``S = sigma^2 V``, summed per pattern.

    ``st`` holds the sufficient statistics of a chunk and ``ev`` the
    evaluation of the criterion at the fitted theta (both from
    :mod:`dtitool.stats.lmm`).
    """
    Bc, G, p, q = st.shape
    s2 = ev["r2"] / (st.n - p)
    W, Bm, K, M = ev["W"], ev["Bm"], ev["K"], st.M
    BmT = np.swapaxes(Bm, -1, -2)
    iu = np.triu_indices(q)  # (i, j), i <= j: the same entries as lme4's order
    E = np.zeros((iu[0].size, q, q))
    E[np.arange(iu[0].size), iu[0], iu[1]] = 1.0
    E[np.arange(iu[0].size), iu[1], iu[0]] = 1.0
    nre = E.shape[0]

    def contract(Y):  # sum over patterns of Z'X' Y Z'X, Y (Bc, k, G, q, q)
        k = Y.shape[1]
        return (Y.reshape(Bc, k, G * q * q) @ st.SXX).reshape(Bc, k, p, p)

    KMK = K @ M @ K
    XV2X = st.XtX - contract((2.0 * K - KMK)[:, None])[:, 0]
    XV3X = XV2X - contract((BmT @ K @ Bm)[:, None])[:, 0]
    BEB = BmT[:, None] @ E[None, :, None] @ Bm[:, None]  # (Bc, r, G, q, q)
    P_re = -contract(BEB)
    P = np.concatenate([P_re, -XV2X[:, None]], axis=1) / s2[:, None, None, None] ** 2
    ng = nre + 1
    Q = np.empty((Bc, ng, ng, p, p))
    EW = E[None, :, None] @ W[:, None]  # (Bc, r, G, q, q)
    for r in range(nre):
        Q[:, r, :nre] = contract(BmT[:, None] @ EW[:, r:r + 1] @ E[None, :, None]
                                 @ Bm[:, None])
        Q[:, r, nre] = contract(BmT[:, None] @ E[None, r:r + 1, None] @ Bm[:, None]
                                @ Bm[:, None])[:, 0]
        Q[:, nre, r] = np.swapaxes(Q[:, r, nre], -1, -2)
    Q[:, nre, nre] = XV3X
    Q /= s2[:, None, None, None, None] ** 3
    Kt = np.empty((Bc, ng, ng))
    Kt[:, :nre, :nre] = np.einsum("bg,brgij,bsgji->brs", st.cnt, EW, EW)
    BmW = Bm @ W
    Kt[:, :nre, nre] = Kt[:, nre, :nre] = np.einsum(
        "bg,rij,bgji->br", st.cnt, E, BmW)
    KM = K @ M
    Kt[:, nre, nre] = st.n - np.einsum(
        "bg,bg->b", st.cnt, 2.0 * np.trace(KM, axis1=-2, axis2=-1)
        - np.einsum("bgij,bgji->bg", KM, KM))
    Kt /= s2[:, None, None] ** 2
    return {"Phi": s2[:, None, None] * ev["Cinv"], "P": P, "Q": Q, "Ktrace": Kt}


def contrast_tests(fit, L, df, *, cov=None) -> dict[str, np.ndarray]:
    """Two-sided t-tests of contrasts ``L beta = 0`` in every batch.

    Parameters
    ----------
    fit : LMMFit
        Fits from :func:`dtitool.stats.lmm.fit_lmm`.
    L : array_like, shape (k, p) or (p,)
        Contrast rows.
    df : float or array_like, broadcastable to (B, k)
        Degrees of freedom of each test (e.g. from ``satterthwaite``);
        ``np.inf`` gives z-tests.
    cov : ndarray, shape (B, p, p), optional
        Covariance to use instead of ``fit.cov`` (the Kenward-Roger adjusted
        one).

    Returns
    -------
    dict of ndarray, shape (B, k)
        ``estimate``, ``se``, ``t`` and ``p``.

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> fit = SimpleNamespace(beta=np.array([[1.0, 2.0]]),
    ...                       cov=np.array([[[0.25, 0.0], [0.0, 1.0]]]))
    >>> res = contrast_tests(fit, [[0, 1]], np.inf)
    >>> float(res["t"][0, 0]), round(float(res["p"][0, 0]), 4)
    (2.0, 0.0455)
    """
    from scipy import special

    beta = np.asarray(fit.beta, dtype=float)
    B, p = beta.shape
    L = np.asarray(L, dtype=float)
    if L.ndim == 1:
        L = L[None]
    if L.ndim != 2 or L.shape[1] != p:
        raise ValueError(f"L must have shape (k, {p}) or ({p},); got {np.shape(L)}")
    cov = np.asarray(fit.cov if cov is None else cov, dtype=float)
    if cov.shape != (B, p, p):
        raise ValueError(f"cov must have shape {(B, p, p)}; got {cov.shape}")
    try:
        df = np.broadcast_to(np.asarray(df, dtype=float), (B, L.shape[0]))
    except ValueError:
        raise ValueError(
            f"df must broadcast to (B, k) = {(B, L.shape[0])}; got shape "
            f"{np.shape(df)}") from None
    if np.any(df <= 0):
        raise ValueError("df must be positive (np.inf for z-tests)")
    est = beta @ L.T
    with np.errstate(invalid="ignore", divide="ignore"):
        se = np.sqrt(np.einsum("kp,bpr,kr->bk", L, cov, L))
        t = est / se
        finite = np.isfinite(df)
        p_t = 2.0 * special.stdtr(np.where(finite, df, 1.0), -np.abs(t))
        p_z = 2.0 * special.ndtr(-np.abs(t))
    return {"estimate": est, "se": se, "t": t, "p": np.where(finite, p_t, p_z)}
