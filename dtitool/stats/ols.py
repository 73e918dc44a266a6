"""Batched ordinary least squares over many replicate datasets at once.

The Monte Carlo power engine fits the same small regression to thousands of
simulated trials. Fitting them one at a time with statsmodels costs milliseconds
each; here every replicate is fitted in one vectorised pass over arrays with the
axis convention ``(replicates, subjects, predictors)``:

- the Gram matrix ``X'X`` and ``X'y`` are formed for all replicates at once,
- ``X'X`` is scaled to unit diagonal and Cholesky-factorised with a loop over the
  (few) predictors, each step vectorised over replicates, so a rank-deficient
  replicate is detected per replicate (its results become NaN) instead of
  failing the whole batch or returning garbage,
- residuals are computed directly (not as ``y'y - b'X'y``) for accuracy,
- any linear contrast ``c'b`` gets its estimate, standard error, t, df and
  two-sided p from the same factorisation.

Rows can be masked out per replicate (e.g. a missing 24 h scan): a masked row
gets weight zero and the residual degrees of freedom of that replicate are
``n_obs - p``. statsmodels remains the reference implementation and the engine
for a single dataset (``dtitool.stats.analysis``); ``tests/test_ols.py`` checks that
the two agree to 1e-8 in p.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import special

__all__ = [
    "ContrastResult",
    "OLSBatch",
    "fit_columns",
    "ols_batch",
    "ols_from_crossproducts",
    "solve_gram",
    "two_sided_p",
]

DEFAULT_CHUNK = 1024
"""Replicates per chunk in :func:`ols_batch` when ``chunk_size`` is not given."""


@dataclass(frozen=True, slots=True, eq=False)
class ContrastResult:
    """Per-replicate inference on one linear contrast ``c'b``.

    Parameters
    ----------
    estimate, se, t, p : ndarray, shape (R,)
        Contrast estimate, its standard error, t statistic and two-sided p.
        NaN for rank-deficient replicates or those with no residual df.
    df : ndarray of int, shape (R,)
        Residual degrees of freedom ``n_obs - p``.
    ci_low, ci_high : ndarray, shape (R,)
        Bounds of the two-sided ``1 - alpha`` confidence interval.
    """

    estimate: np.ndarray
    se: np.ndarray
    t: np.ndarray
    df: np.ndarray
    p: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray


@dataclass(frozen=True, slots=True, eq=False)
class OLSBatch:
    """OLS fits of one model to ``R`` replicate datasets.

    Parameters
    ----------
    coef : ndarray, shape (R, p)
        Coefficient estimates (NaN for rank-deficient replicates).
    sigma2 : ndarray, shape (R,)
        Residual variance ``RSS / df``.
    df_resid : ndarray of int, shape (R,)
        Residual degrees of freedom ``n_obs - p``.
    n_obs : ndarray of int, shape (R,)
        Rows used (not masked out) per replicate.
    full_rank : ndarray of bool, shape (R,)
        False where the design of that replicate was rank deficient.
    xtx_inv : ndarray, shape (R, p, p)
        ``(X'X)^{-1}`` of each replicate (NaN where rank deficient).
    """

    coef: np.ndarray
    sigma2: np.ndarray
    df_resid: np.ndarray
    n_obs: np.ndarray
    full_rank: np.ndarray
    xtx_inv: np.ndarray

    @property
    def bse(self) -> np.ndarray:
        """Standard errors of the coefficients, shape (R, p)."""
        diag = np.diagonal(self.xtx_inv, axis1=-2, axis2=-1)
        return np.sqrt(self.sigma2[..., None] * diag)

    @property
    def tvalues(self) -> np.ndarray:
        """T statistics of the coefficients, shape (R, p)."""
        return self.coef / self.bse

    @property
    def pvalues(self) -> np.ndarray:
        """Two-sided p-values of the coefficients, shape (R, p)."""
        return two_sided_p(self.tvalues, _common_df(self.df_resid[..., None]))

    def contrast(self, c: Sequence[float], *, alpha: float = 0.05) -> ContrastResult:
        """Inference on the linear combination ``c'b`` in every replicate.

        Parameters
        ----------
        c : sequence of float, length p
            Contrast weights, e.g. ``[0, 0, 1, 1, 0]`` for the treatment arm's
            slope of ``[1, treated, x, treated*x, baseline]``.
        alpha : float
            One minus the confidence level of the interval.

        Returns
        -------
        ContrastResult
        """
        p = self.coef.shape[-1]
        c = _check_contrast(c, p)
        est = self.coef @ c
        var = np.einsum("i,...ij,j->...", c, self.xtx_inv, c) * self.sigma2
        return _contrast_result(est, np.sqrt(var), self.df_resid, alpha)


def _check_contrast(c, p: int) -> np.ndarray:
    c = np.asarray(c, dtype=float)
    if c.ndim != 1 or c.shape[0] != p:
        raise ValueError(
            f"contrast has shape {c.shape} but the model has {p} coefficients; "
            f"expected a vector of length {p}"
        )
    if not np.all(np.isfinite(c)):
        raise ValueError("contrast contains non-finite weights")
    return c


def two_sided_p(t: np.ndarray, df) -> np.ndarray:
    """Two-sided p-value ``2 T_df(-|t|)`` of Student t statistics.

    Parameters
    ----------
    t : array_like
        t statistics.
    df : int or array_like
        Degrees of freedom. A single integer up to :data:`_SERIES_MAX_DF` uses a
        closed-form finite series (about twice as fast as ``scipy.special.stdtr``,
        which is used otherwise, and for p < 1e-6); they agree to ~1e-14
        absolute and 1e-8 relative.

    Notes
    -----
    With ``theta = arctan(|t| / sqrt(df))``, ``c2 = cos^2 theta``, Abramowitz &
    Stegun 26.7.3-4 give ``A(t|df) = 1 - p``: for even df
    ``sin theta (1 + c2/2 + 1*3/(2*4) c2^2 + ...)`` (``(df - 2) / 2`` terms),
    for odd df ``(2/pi) (theta + sin theta cos theta (1 + 2/3 c2 + ...))``
    (``(df - 3) / 2`` terms), evaluated here in Horner form.
    """
    if np.ndim(df) == 0 and float(df) == int(df) and 1 <= int(df) <= _SERIES_MAX_DF:
        t = np.asarray(t, dtype=float)
        p = _t_series_p(t, int(df))
        # The series is accurate to ~1e-14 absolute; far-tail p (rare in power
        # work) are recomputed with stdtr for full relative accuracy.
        tail = p < 1e-6
        if tail.any():
            p[tail] = 2.0 * special.stdtr(int(df), -np.abs(t[tail]))
        return p
    # stdtr is the Student t CDF; 2 * CDF(-|t|) is accurate in the far tail,
    # unlike 2 * (1 - CDF(|t|)).
    with np.errstate(invalid="ignore"):
        return 2.0 * special.stdtr(df, -np.abs(t))


_SERIES_MAX_DF = 400
"""Largest df for which :func:`two_sided_p` uses the finite series."""


def _t_series_p(t: np.ndarray, df: int) -> np.ndarray:
    a = np.abs(t)
    theta = np.arctan2(a, np.sqrt(df))
    c = np.cos(theta)
    s = np.sin(theta)
    c2 = c * c
    if df % 2 == 0:
        # sum_{j=0}^{m} prod_{i<=j} (2i-1)/(2i) c2^j, m = (df - 2) / 2, Horner.
        m = (df - 2) // 2
        acc = np.ones_like(c2)
        for j in range(m, 0, -1):
            acc = 1.0 + acc * c2 * ((2 * j - 1) / (2 * j))
        return 1.0 - s * acc
    if df == 1:
        return 1.0 - theta * (2 / np.pi)
    m = (df - 3) // 2
    acc = np.ones_like(c2)
    for j in range(m, 0, -1):
        acc = 1.0 + acc * c2 * ((2 * j) / (2 * j + 1))
    # 1 - 2 theta / pi without cancellation: (2 / pi) arctan(sqrt(df) / |t|).
    return (2 / np.pi) * (np.arctan2(np.sqrt(df), a) - s * c * acc)


def _common_df(df):
    """Return a scalar df when every replicate has the same (the fast p path)."""
    df = np.asarray(df)
    if df.size and np.all(df == df.flat[0]):
        return int(df.flat[0])
    return df


def _contrast_result(est, se, df, alpha) -> ContrastResult:
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    df = np.asarray(df)
    # The t quantile is costly; there are few distinct df, so compute each once.
    u, inv = np.unique(df, return_inverse=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        t = est / se
        qu = special.stdtrit(np.where(u > 0, u, 1), 1.0 - alpha / 2.0)
        q = np.where(u > 0, qu, np.nan)[inv].reshape(df.shape)
    p = two_sided_p(t, _common_df(df))
    return ContrastResult(
        estimate=est,
        se=se,
        t=t,
        df=np.asarray(df),
        p=p,
        ci_low=est - q * se,
        ci_high=est + q * se,
    )


def ols_batch(
    X: np.ndarray,
    y: np.ndarray,
    *,
    mask: np.ndarray | None = None,
    chunk_size: int | None = None,
) -> OLSBatch:
    """Fit ``y ~ X`` by OLS separately in every replicate.

    Parameters
    ----------
    X : array_like, shape (R, N, p) or (N, p)
        Design matrices (include the intercept column yourself). A 2-D ``X`` is
        shared by all replicates.
    y : array_like, shape (R, N)
        Responses.
    mask : array_like of bool, shape (R, N) or (N,), optional
        True for rows to use. Default: rows where ``y`` and every column of
        ``X`` are finite. Masked rows may hold NaN.
    chunk_size : int, optional
        Replicates processed at once (bounds temporary memory); the result does
        not depend on it. Default :data:`DEFAULT_CHUNK`.

    Returns
    -------
    OLSBatch

    Raises
    ------
    ValueError
        On mismatched shapes or a bad ``chunk_size``.

    Notes
    -----
    With ``W`` the 0/1 row mask of a replicate, the fit solves
    ``(X'WX) b = X'Wy``. ``X'WX`` is scaled to unit diagonal, ``A = D X'WX D``
    with ``D = diag(X'WX)^{-1/2}``, and factorised ``A = L L'``. A replicate
    whose pivot ``1 - R^2_j`` falls below 1e-10 is rank deficient and gets NaN.
    ``sigma2 = sum(W e^2) / (n_obs - p)``; contrast variances are
    ``sigma2 * c'(X'WX)^{-1}c``; p-values are ``2 * T_df(-|t|)``.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> X = np.stack([np.ones((3, 20)), rng.normal(size=(3, 20))], axis=-1)
    >>> y = 1.0 + 2.0 * X[..., 1] + rng.normal(size=(3, 20))
    >>> fit = ols_batch(X, y)
    >>> fit.coef.shape, fit.df_resid.tolist()
    ((3, 2), [18, 18, 18])
    """
    y = np.asarray(y, dtype=float)
    X = np.asarray(X, dtype=float)
    if y.ndim != 2:
        raise ValueError(f"y must have shape (R, N), got shape {y.shape}")
    R, N = y.shape
    if X.ndim == 2:
        X = np.broadcast_to(X, (R, *X.shape))
    if X.ndim != 3 or X.shape[:2] != (R, N):
        raise ValueError(
            f"X has shape {X.shape} but y has shape {y.shape}; expected X of shape "
            f"({R}, {N}, p) or ({N}, p)"
        )
    if mask is None:
        # 0 * v is NaN exactly when v is NaN or +-inf: one matvec flags every row
        # with a non-finite predictor (much faster than all(isfinite, axis=-1)).
        m = np.isfinite(y) & ~np.isnan(X @ np.zeros(X.shape[2]))
    else:
        m = np.asarray(mask)
        if m.dtype != bool:
            raise ValueError(f"mask must be boolean, got dtype {m.dtype}")
        if m.ndim == 1:
            m = np.broadcast_to(m, (R, N))
        if m.shape != (R, N):
            raise ValueError(
                f"mask has shape {m.shape} but y has shape {y.shape}; expected "
                f"({R}, {N}) or ({N},)"
            )
    chunk = DEFAULT_CHUNK if chunk_size is None else chunk_size
    if isinstance(chunk, bool) or not isinstance(chunk, (int, np.integer)) or chunk < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    parts = []
    for a in range(0, R, chunk):
        b = min(R, a + chunk)
        if m[a:b].all():
            parts.append(_fit_complete(X[a:b], y[a:b]))
            continue
        # Predictor-major copy: every column contiguous for the products below.
        cols = list(np.ascontiguousarray(np.moveaxis(X[a:b], -1, 0)))
        parts.append(fit_columns(cols, y[a:b], m[a:b]))
    if not parts:
        p = X.shape[2]
        empty = np.empty((0, N))
        parts.append(fit_columns([empty] * p, empty, np.empty((0, N), bool)))
    return OLSBatch(*(np.concatenate(f) for f in zip(*parts, strict=True)))


def _fit_complete(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, ...]:
    """Fit every replicate when no row is masked: stacked matrix products on ``X``.

    Same results as :func:`fit_columns` (the solve is shared), without copying
    ``X`` into column-major layout: ``X'X`` and ``X'y`` are batched matmuls.
    """
    R, N, p = X.shape
    Xt = X.transpose(0, 2, 1)
    coef, inv, ok = solve_gram(Xt @ X, (Xt @ y[..., None])[..., 0])
    resid = y - (X @ np.nan_to_num(coef)[..., None])[..., 0]
    rss = np.einsum("rn,rn->r", resid, resid)
    n_obs = np.full(R, N)
    return coef, _sigma2(rss, n_obs - p, ok), n_obs - p, n_obs, ok, inv


def fit_columns(
    cols: Sequence[np.ndarray], y: np.ndarray, mask: np.ndarray
) -> tuple[np.ndarray, ...]:
    """Fit OLS given the design as a list of column arrays (the fast path).

    Parameters
    ----------
    cols : sequence of p arrays, each broadcastable to (R, N)
        Design columns; a constant column may be passed as the scalar ``1.0``.
    y : ndarray, shape (R, N)
        Responses (may be NaN where ``mask`` is False).
    mask : ndarray of bool, shape (R, N)
        Rows used.

    Returns
    -------
    tuple
        ``(coef, sigma2, df_resid, n_obs, full_rank, xtx_inv)`` as in
        :class:`OLSBatch` (use ``OLSBatch(*fit_columns(...))``).
    """
    mask = np.asarray(mask, dtype=bool)
    R = mask.shape[0]
    p = len(cols)
    # Zero the masked rows (their values may be NaN); the mask is 0/1 so the
    # zeroed rows drop out of every cross-product.
    if mask.all():
        Xw = [np.broadcast_to(np.asarray(c, dtype=float), mask.shape) for c in cols]
        yw = np.asarray(y, dtype=float)
    else:
        Xw = [np.where(mask, c, 0.0) for c in cols]
        yw = np.where(mask, y, 0.0)
    n_obs = mask.sum(axis=1)
    G = np.empty((R, p, p))
    for i in range(p):
        for j in range(i + 1):
            G[:, i, j] = G[:, j, i] = np.einsum("rn,rn->r", Xw[i], Xw[j])
    xty = np.stack([np.einsum("rn,rn->r", Xw[i], yw) for i in range(p)], axis=-1)
    coef, inv, ok = solve_gram(G, xty)
    resid = yw
    for i in range(p):
        resid = resid - np.nan_to_num(coef[:, i, None]) * Xw[i]
    rss = np.einsum("rn,rn->r", resid, resid)  # masked rows are exactly zero
    sigma2 = _sigma2(rss, n_obs - p, ok)
    return coef, sigma2, n_obs - p, n_obs, ok, inv


def _sigma2(rss, df, ok):
    with np.errstate(invalid="ignore", divide="ignore"):
        s2 = np.where(df > 0, rss / np.where(df > 0, df, 1), np.nan)
    return np.where(ok, s2, np.nan)


def ols_from_crossproducts(
    xtx: np.ndarray,
    xty: np.ndarray,
    yty: np.ndarray,
    n_obs: np.ndarray,
    *,
    absorbed: int = 0,
) -> OLSBatch:
    """Fit OLS from sufficient statistics ``X'X``, ``X'y``, ``y'y`` and ``n``.

    Used by the power engine, which forms one cross-product matrix of all
    variables per replicate and reads every model's statistics out of it.
    Centre the variables first (by Frisch-Waugh-Lovell, centring every column
    is the same as fitting an intercept; pass ``absorbed=1``) so that
    ``RSS = y'y - b'X'y`` loses no precision.

    Parameters
    ----------
    xtx : ndarray, shape (..., p, p)
    xty : ndarray, shape (..., p)
    yty : ndarray, shape (...)
    n_obs : ndarray of int, shape (...)
    absorbed : int
        Parameters already partialled out of the cross-products and not in
        ``xtx`` (1 when the variables were centred instead of fitting an
        intercept); they count against the residual degrees of freedom.

    Returns
    -------
    OLSBatch
        With the leading axes of the inputs (not flattened).
    """
    p = xtx.shape[-1]
    coef, inv, ok = solve_gram(xtx, xty)
    rss = yty - np.einsum("...i,...i->...", np.nan_to_num(coef), xty)
    rss = np.maximum(rss, 0.0)
    df = np.asarray(n_obs) - p - absorbed
    return OLSBatch(coef, _sigma2(rss, df, ok), df, np.asarray(n_obs), ok, inv)


def solve_gram(
    G: np.ndarray, xty: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Solve the normal equations of many small systems at once.

    Parameters
    ----------
    G : ndarray, shape (..., p, p)
        Symmetric positive semi-definite Gram matrices ``X'X``.
    xty : ndarray, shape (..., p)
        Right-hand sides ``X'y``.

    Returns
    -------
    coef : ndarray, shape (..., p)
        Solutions (NaN where the system is rank deficient).
    inv : ndarray, shape (..., p, p)
        ``G^{-1}`` (NaN where rank deficient).
    ok : ndarray of bool, shape (...)
        True where ``G`` is of full rank.

    Notes
    -----
    ``G`` is scaled to unit diagonal, ``A = D G D``, then factorised
    ``A = L L'`` by a Cholesky loop over the p predictors, each step vectorised
    over the leading axes; a pivot (``1 - R^2`` of a column on the previous
    ones) below 1e-10 marks rank deficiency. ``G^{-1} = D L^{-T} L^{-1} D``.
    """
    from dtitool.stats.lmm_df import chol_inverse

    inv, _, ok = chol_inverse(G, scaled=True, logdet=False)
    coef = np.einsum("...ij,...j->...i", inv, xty)
    coef[~ok] = np.nan
    return coef, inv, ok
