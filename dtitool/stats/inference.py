r"""Batched inference for the four reported terms: ``ols``, ``hc3`` and ``welch``.

The power engine fits, per replicate trial and per ROI ``j`` x outcome ``k``, the
interaction model and the additive model of ``docs/model.md`` ("Analysis models")
and reads four terms off them. This module computes those terms for every
replicate and model at once, under each of the three inference options:

``ols``
    Classical pooled-variance OLS (what the reference study reported).
``hc3``
    The same OLS estimates with HC3 standard errors (MacKinnon & White 1985) and a
    t reference with the model's residual df, as statsmodels
    ``fit(cov_type="HC3", use_t=True)``.
``welch``
    Each arm fitted on its own (``d_score ~ d_md + baseline`` within the arm):
    arm slopes with their own residual variances, the interaction as their
    difference with Welch-Satterthwaite df, and the pooled slope by feasible GLS
    of the additive model with per-arm residual variances (below).

How it is fast. The interaction model ``d ~ ket * x + b`` spans the same column
space as ``[1_ket, 1_sal, x 1_ket, x 1_sal, b]`` (an intercept and a dMD slope per
arm, a common baseline slope), and the additive model the same as
``[1_ket, 1_sal, x, b]``. Centring every variable *within its arm* absorbs the two
arm intercepts (Frisch-Waugh-Lovell), so all three options need only the
within-arm centred cross-product matrices ``S_a = V_a' V_a`` of
``V_a = [x_1..x_J, b_1..b_K, y_1..y_K]`` (one batched matmul per arm), from which
every model's ``X'X``, ``X'y`` and ``y'y`` are read:

.. math::

    X'X_{int} = \begin{pmatrix} S^{ket}_{xx} & 0 & S^{ket}_{xb} \\
                                0 & S^{sal}_{xx} & S^{sal}_{xb} \\
                                S^{ket}_{xb} & S^{sal}_{xb} &
                                S^{ket}_{bb} + S^{sal}_{bb} \end{pmatrix},
    \qquad
    X'X_{add} = \sum_a \begin{pmatrix} S^a_{xx} & S^a_{xb} \\
                                       S^a_{xb} & S^a_{bb} \end{pmatrix}.

HC3 needs per-subject leverages ``h_i`` and residuals ``e_i``; in the arm
parametrisation a subject's design row has two non-zero centred entries
``(x_i, b_i)``, so ``h_i = 1/n_a + (x_i, b_i) B_a (x_i, b_i)'`` with ``B_a`` a
2 x 2 block of ``(X'X)^{-1}``, and the contrast variance
``sum_i (w'x_i)^2 e_i^2 / (1 - h_i)^2`` reduces to three weighted moments
``sum x^2 u^2``, ``sum x b u^2``, ``sum b^2 u^2`` (``u = e / (1 - h)``) per arm
and model, shared by the three contrasts of the interaction model.

Welch pooled slope (feasible GLS). With per-arm intercepts the additive model's
GLS estimator under per-arm residual variances ``s_a^2`` is

.. math::

    \hat\beta = \Big(\sum_a G_a / s_a^2\Big)^{-1} \sum_a g_a / s_a^2,
    \qquad
    \widehat{\mathrm{Var}}(\hat\beta_x) = \Big[\Big(\sum_a G_a / s_a^2\Big)^{-1}
    \Big]_{xx},

with ``G_a``, ``g_a`` the arm's centred ``[x, b]`` cross-products and ``s_a^2``
the residual variance of the arm's own fit (``n_a - 3`` df, unbiased whether or
not the slopes are equal). The variance is a sum of arm contributions
``v_a = [M (G_a / s_a^2) M]_{xx}``, ``M = (\sum_a G_a / s_a^2)^{-1}``, and the
t reference takes the Satterthwaite df ``(sum_a v_a)^2 / sum_a (v_a^2 / df_a)``
(delta method on the ``s_a^2``, each ``chi^2_{df_a}``), the same form as the
Welch df of the interaction.

All results equal statsmodels to ~1e-10 (``tests/test_inference.py``).

References
----------
MacKinnon JG, White H (1985). Some heteroskedasticity-consistent covariance
matrix estimators with improved finite sample properties. J Econometrics 29:305.
Welch BL (1947). The generalization of "Student's" problem when several
different population variances are involved. Biometrika 34:28.
Satterthwaite FE (1946). An approximate distribution of estimates of variance
components. Biometrics Bull 2:110.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dtitool._constants import DMD_SCALE
from dtitool.stats.ols import ols_from_crossproducts, solve_gram, two_sided_p

__all__ = [
    "INFERENCE",
    "ArmStatistics",
    "BatchModels",
    "arm_statistics",
    "batch_models",
    "check_inference",
    "fit_terms",
    "model_arrays",
    "models_from_statistics",
    "permute_within_arms",
    "welch_df",
]

INFERENCE = ("ols", "hc3", "welch")
"""Inference options, in the order the documentation presents them."""

_HC3_BLOCK = 64
"""Replicates per HC3 pass: keeps the (replicates, models, subjects) temporaries
small enough to stay in cache (the pass is memory-bound)."""


def check_inference(inference) -> str:
    """Return ``inference`` if it is one of :data:`INFERENCE`, else raise."""
    if inference not in INFERENCE:
        raise ValueError(
            f"inference must be one of {', '.join(INFERENCE)}; got {inference!r}"
        )
    return inference


def welch_df(v1, df1, v2, df2):
    """Welch-Satterthwaite df of a sum of two independent variance estimates.

    ``(v1 + v2)^2 / (v1^2 / df1 + v2^2 / df2)``; a part with ``v = 0`` drops out
    (so one arm alone gives its own df).
    """
    v1, v2 = np.asarray(v1, float), np.asarray(v2, float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (v1 + v2) ** 2 / (v1 * v1 / df1 + v2 * v2 / df2)


@dataclass(frozen=True, slots=True, eq=False)
class ArmStatistics:
    """Within-arm centred data of many replicates (the input of :func:`fit_terms`).

    Axis conventions: ``R`` replicates, ``N_a`` subjects of arm ``a`` (ketamine
    first in every tuple), ``J`` ROIs, ``K`` outcomes; variables
    ``[x_1..x_J, b_1..b_K, y_1..y_K]`` (dMD per 1e-5 mm^2/s, baseline score,
    score change).

    Parameters
    ----------
    S : tuple of 2 ndarrays, shape (R, J + 2K, J + 2K)
        Within-arm centred cross-product matrices.
    n : tuple of 2 ndarrays of int, shape (R,)
        Subjects used per arm (a masked subject is in no model of that replicate).
    V : tuple of 2 ndarrays, shape (R, N_a, J + 2K), or None
        The centred values themselves (masked rows zero); kept for HC3 and for
        :func:`permute_within_arms`.
    use : tuple of 2 ndarrays of bool, shape (R, N_a), or None
        Rows of ``V`` that hold a used subject (kept with ``V``).
    J, K : int
    """

    S: tuple[np.ndarray, np.ndarray]
    n: tuple[np.ndarray, np.ndarray]
    V: tuple[np.ndarray, np.ndarray] | None
    use: tuple[np.ndarray, np.ndarray] | None
    J: int
    K: int


def arm_statistics(x, b, y, treated, mask, *, keep_values: bool = False
                   ) -> ArmStatistics:  # fmt: skip
    """Centre every variable within each arm and form the cross-products.

    Parameters
    ----------
    x : ndarray, shape (R, N, J)
        dMD per ROI (per 1e-5 mm^2/s); may be NaN where ``mask`` is False.
    b, y : ndarray, shape (R, N, K)
        Baseline score and score change per outcome.
    treated : ndarray of bool, shape (R, N)
        True in the ketamine arm.
    mask : ndarray of bool, shape (R, N)
        Subjects used.
    keep_values : bool
        Keep the centred values (needed by ``hc3``).

    Returns
    -------
    ArmStatistics
    """
    R, N, J = x.shape
    K = b.shape[2]
    V = np.empty((R, N, J + 2 * K))
    V[..., :J] = x
    V[..., J : J + K] = b
    V[..., J + K :] = y
    S, n, kept, used = [], [], [], []
    for member in (treated, ~treated):
        counts = member.sum(axis=1)
        size = int(counts.max()) if R else 0
        if R and counts.min() == size:
            # Every trial has the same arm size (permuted blocks keep the
            # allocation exactly): the arm's rows, in order, taken by flat
            # index (the rows of a boolean selection, 4x as fast); the same
            # values as the sort below, without it.
            rows = np.flatnonzero(member)
            Va = np.take(V.reshape(R * N, -1), rows, axis=0).reshape(
                R, size, V.shape[2])
            use = np.take(mask.reshape(-1), rows).reshape(R, size)
        else:
            # The arm's subjects first, in their original order (stable sort).
            order = np.argsort(~member, axis=1, kind="stable")[:, :size]
            Va = np.take_along_axis(V, order[..., None], axis=1)
            use = np.take_along_axis(member & mask, order, axis=1)
        complete = bool(use.all())
        if not complete:
            Va[~use] = 0.0
        na = use.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = Va.sum(axis=1) / na[:, None]
        Va -= mean[:, None, :]
        if not complete:
            Va[~use] = 0.0
        S.append(np.matmul(Va.transpose(0, 2, 1), Va))
        n.append(na)
        kept.append(Va)
        used.append(use)
    return ArmStatistics(S=tuple(S), n=tuple(n),
                         V=tuple(kept) if keep_values else None,
                         use=tuple(used) if keep_values else None, J=J, K=K)


def permute_within_arms(st: ArmStatistics, keys, *, keep_values: bool = True
                        ) -> ArmStatistics:  # fmt: skip
    """Return the trials with dMD rows permuted among each arm's used subjects.

    Parameters
    ----------
    st : ArmStatistics
        With values kept (``arm_statistics(..., keep_values=True)``).
    keys : sequence of 2 ndarrays, shape (R, >= N_a)
        Uniform random keys per arm: used rows are reordered by their keys.
    keep_values : bool
        Keep the permuted values (needed by ``hc3``); without them only ``S``
        is formed.

    Returns
    -------
    ArmStatistics
        Only the dMD x (baseline, score change) blocks of ``S`` change (the dMD
        rows move together, so their own cross-products and the means do not).

    Notes
    -----
    Where dMD is independent of the scores within each arm and its rows are
    exchangeable (a design's null counterpart), the permuted trials have the same
    distribution as simulated ones: extra null draws for the price of a refit.
    """
    if st.V is None:
        raise ValueError("permute_within_arms needs arm_statistics(..., "
                         "keep_values=True)")
    J = st.J
    S_out, V_out = [], []
    for Sa, Va, use, u in zip(st.S, st.V, st.use, keys, strict=True):
        Na = Va.shape[1]
        if use.all():
            # Every row used: the slots are the rows themselves, and the
            # permutation is the order of the keys. (Distinct keys, but for a
            # chance of 2**-53 per pair: the default sort, 1.7 times as fast as
            # a stable one, gives the same order.)
            pos = np.argsort(u[:, :Na], axis=1)
        else:
            rank = np.arange(Na) / Na
            grp = use.astype(float)  # unused rows sort first, keep their place
            slots = np.argsort(grp + rank, axis=1, kind="stable")
            order = np.argsort(grp + np.where(use, u[:, :Na], rank), axis=1,
                               kind="stable")
            pos = np.empty_like(order)
            np.put_along_axis(pos, slots, order, axis=1)
        # The rows by flat index (np.take: the same values as
        # take_along_axis, five times as fast).
        R, _, C = Va.shape
        flat = (pos + (np.arange(R) * Na)[:, None]).ravel()
        x = np.take(Va.reshape(R * Na, C), flat, axis=0).reshape(R, Na, C)[..., :J]
        cross = np.matmul(x.transpose(0, 2, 1), Va[..., J:])
        Sp = Sa.copy()
        Sp[:, :J, J:] = cross
        Sp[:, J:, :J] = cross.transpose(0, 2, 1)
        S_out.append(Sp)
        if keep_values:
            Vp = Va.copy()
            Vp[..., :J] = x
            V_out.append(Vp)
    return ArmStatistics(S=tuple(S_out), n=st.n,
                         V=tuple(V_out) if keep_values else None,
                         use=st.use if keep_values else None, J=J, K=st.K)


def _grids(J: int, K: int):
    ix = np.broadcast_to(np.arange(J)[:, None], (J, K))
    ib = np.broadcast_to(J + np.arange(K)[None, :], (J, K))
    return ix, ib, ib + K


def _block(S, ix, ib, iy):
    """Return the (R, J, K) entries xx, xb, bb, xy, by, yy of one arm's S."""
    return (S[:, ix, ix], S[:, ix, ib], S[:, ib, ib], S[:, ix, iy], S[:, ib, iy],
            S[:, iy, iy])


def _sym2(a, c, d):
    G = np.empty((*a.shape, 2, 2))
    G[..., 0, 0], G[..., 0, 1], G[..., 1, 0], G[..., 1, 1] = a, c, c, d
    return G


def fit_terms(st: ArmStatistics, inference: str):
    """Estimate, SE and df of the four reported terms of every model.

    Parameters
    ----------
    st : ArmStatistics
        From :func:`arm_statistics` (with ``keep_values=True`` for ``hc3``).
    inference : {"ols", "hc3", "welch"}

    Returns
    -------
    estimate, se, df : ndarray, shape (R, J, K, 4)
        Terms in the order of :attr:`TrialNames.terms
        <dtitool.design.layout.TrialNames.terms>`: ``interaction``, the treatment
        arm's slope, the control arm's slope, ``slope_pooled``. ``df`` is float
        (Welch-Satterthwaite df are not integers).
        NaN where a model is rank deficient or has no residual df.
    """
    check_inference(inference)
    ix, ib, iy = _grids(st.J, st.K)
    (Sk, Ss), (nk, ns) = st.S, st.n
    k = _block(Sk, ix, ib, iy)
    s = _block(Ss, ix, ib, iy)
    n = np.broadcast_to((nk + ns)[:, None, None], k[0].shape)
    if inference == "welch":
        return _welch(k, s, nk, ns)

    # Interaction model: [x 1_ket, x 1_sal, b] (two arm intercepts absorbed).
    G = np.zeros((*k[0].shape, 3, 3))
    G[..., 0, 0], G[..., 1, 1] = k[0], s[0]
    G[..., 0, 2] = G[..., 2, 0] = k[1]
    G[..., 1, 2] = G[..., 2, 1] = s[1]
    G[..., 2, 2] = k[2] + s[2]
    xty = np.stack([k[3], s[3], k[4] + s[4]], axis=-1)
    full = ols_from_crossproducts(G, xty, k[5] + s[5], n, absorbed=2)
    # Additive model: [x, b].
    add = ols_from_crossproducts(_sym2(k[0] + s[0], k[1] + s[1], k[2] + s[2]),
                                 np.stack([k[3] + s[3], k[4] + s[4]], axis=-1),
                                 k[5] + s[5], n, absorbed=2)
    bf, ba = np.nan_to_num(full.coef), add.coef
    est = np.stack([bf[..., 0] - bf[..., 1], bf[..., 0], bf[..., 1], ba[..., 0]],
                   axis=-1)
    est[~full.full_rank, :3] = np.nan
    Fi, Ai = full.xtx_inv, add.xtx_inv
    # Contrast weight vectors w = (X'X)^{-1} c over [x_ket, x_sal, b] (full) and
    # [x, b] (additive), for interaction, slope_ketamine, slope_saline, pooled.
    w_full = [Fi[..., :, 0] - Fi[..., :, 1], Fi[..., :, 0], Fi[..., :, 1]]
    if inference == "ols":
        # c'(X'X)^{-1}c = c'w for c = e_ket - e_sal, e_ket, e_sal.
        cw = [w_full[0][..., 0] - w_full[0][..., 1], w_full[1][..., 0],
              w_full[2][..., 1]]
        var = np.stack([*(v * full.sigma2 for v in cw), Ai[..., 0, 0] * add.sigma2],
                       axis=-1)
    else:
        var = _hc3_variances(st, full, add, w_full)
    df = np.stack([full.df_resid] * 3 + [add.df_resid], axis=-1).astype(float)
    df = np.where(df > 0, df, np.nan)
    with np.errstate(invalid="ignore"):
        se = np.sqrt(var)
    return est, se, df


def _welch(k, s, nk, ns):
    fits = []
    for a, na in ((k, nk), (s, ns)):
        shape = a[0].shape
        fits.append(ols_from_crossproducts(
            _sym2(a[0], a[1], a[2]), np.stack([a[3], a[4]], axis=-1), a[5],
            np.broadcast_to(na[:, None, None], shape), absorbed=1))
    fk, fs = fits
    vk = fk.sigma2 * fk.xtx_inv[..., 0, 0]
    vs = fs.sigma2 * fs.xtx_inv[..., 0, 0]
    dfk = np.where(fk.df_resid > 0, fk.df_resid, np.nan).astype(float)
    dfs = np.where(fs.df_resid > 0, fs.df_resid, np.nan).astype(float)
    # Feasible GLS of the additive model with per-arm residual variances.
    with np.errstate(invalid="ignore", divide="ignore"):
        wk, ws = 1.0 / fk.sigma2, 1.0 / fs.sigma2
    Gk, Gs = _sym2(k[0], k[1], k[2]), _sym2(s[0], s[1], s[2])
    bad = ~(np.isfinite(wk) & np.isfinite(ws))
    wk0, ws0 = np.where(bad, 0.0, wk), np.where(bad, 0.0, ws)
    Gw = Gk * wk0[..., None, None] + Gs * ws0[..., None, None]
    gw = (np.stack([k[3], k[4]], axis=-1) * wk0[..., None]
          + np.stack([s[3], s[4]], axis=-1) * ws0[..., None])
    coef_w, inv_w, ok = solve_gram(Gw, gw)
    m = inv_w[..., :, 0]  # Phi e_x, Phi = (sum_a G_a / s_a^2)^{-1}
    Hm_k = np.einsum("...ij,...j->...i", Gk, m) * wk[..., None]  # H_a Phi e_x
    Hm_s = np.einsum("...ij,...j->...i", Gs, m) * ws[..., None]
    v_pk = np.einsum("...i,...i->...", m, Hm_k)  # arm shares of Phi_xx
    v_ps = np.einsum("...i,...i->...", m, Hm_s)
    # Kenward-Roger adjustment for the estimated weights (per-arm variances with
    # Var(s_a^2) = 2 s_a^4 / df_a): Phi + 4 sum_a Phi (H_a - H_a Phi H_a) Phi / df_a.
    quad_k = np.einsum("...i,...ij,...j->...", Hm_k, inv_w, Hm_k)
    quad_s = np.einsum("...i,...ij,...j->...", Hm_s, inv_w, Hm_s)
    vp = inv_w[..., 0, 0] + 4.0 * ((v_pk - quad_k) / dfk + (v_ps - quad_s) / dfs)
    est = np.stack([fk.coef[..., 0] - fs.coef[..., 0], fk.coef[..., 0],
                    fs.coef[..., 0], coef_w[..., 0]], axis=-1)
    var = np.stack([vk + vs, vk, vs, vp], axis=-1)
    df = np.stack([welch_df(vk, dfk, vs, dfs), dfk, dfs,
                   welch_df(v_pk, dfk, v_ps, dfs)], axis=-1)
    bad_p = bad | ~ok
    est[..., 3][bad_p] = np.nan
    var[..., 3][bad_p] = np.nan
    with np.errstate(invalid="ignore"):
        se = np.sqrt(var)
    return est, se, df


def _hc3_variances(st: ArmStatistics, full, add, w_full):
    """HC3 variances of the four contrasts, in replicate blocks (memory-bound)."""
    if st.V is None:
        raise ValueError("hc3 needs arm_statistics(..., keep_values=True)")
    J, K = st.J, st.K
    R = st.S[0].shape[0]
    var = np.empty((*full.coef.shape[:-1], 4))
    bf, ba = np.nan_to_num(full.coef), np.nan_to_num(add.coef)
    Fi, Ai = np.nan_to_num(full.xtx_inv), np.nan_to_num(add.xtx_inv)
    wf = [np.nan_to_num(w) for w in w_full]
    for r0 in range(0, R, _HC3_BLOCK):
        sl = slice(r0, min(R, r0 + _HC3_BLOCK))
        acc = np.zeros((sl.stop - r0, J, K, 4))
        for a, (Va, na) in enumerate(zip(st.V, st.n, strict=True)):
            Va = Va[sl]
            X = np.ascontiguousarray(Va[..., :J].transpose(0, 2, 1))[:, :, None, :]
            B = np.ascontiguousarray(Va[..., J : J + K].transpose(0, 2, 1))[:, None]
            Y = np.ascontiguousarray(Va[..., J + K :].transpose(0, 2, 1))[:, None]
            with np.errstate(invalid="ignore", divide="ignore"):
                inv_n = (1.0 / na[sl])[:, None, None, None]
            X2, B2, XB = X * X, B * B, X * B
            # interaction model: this arm's slope column is a, baseline column 2
            m = _hc3_moments(X, B, Y, X2, B2, XB, inv_n, bf[sl][..., a],
                             bf[sl][..., 2], Fi[sl][..., a, a], Fi[sl][..., a, 2],
                             Fi[sl][..., 2, 2])
            for t in range(3):
                w = wf[t][sl]
                acc[..., t] += _quad(m, w[..., a], w[..., 2])
            m = _hc3_moments(X, B, Y, X2, B2, XB, inv_n, ba[sl][..., 0],
                             ba[sl][..., 1], Ai[sl][..., 0, 0], Ai[sl][..., 0, 1],
                             Ai[sl][..., 1, 1])
            acc[..., 3] += _quad(m, Ai[sl][..., 0, 0], Ai[sl][..., 1, 0])
        var[sl] = acc
    var[~full.full_rank, :3] = np.nan
    var[~add.full_rank, 3] = np.nan
    return var


def _hc3_moments(X, B, Y, X2, B2, XB, inv_n, bx, bb, hxx, hxb, hbb):
    """``sum x^2 u^2``, ``sum x b u^2``, ``sum b^2 u^2`` with ``u = e / (1 - h)``."""
    c = lambda v: v[..., None]  # noqa: E731 - (r, J, K) -> (r, J, K, 1)
    e = Y - c(bx) * X
    e -= c(bb) * B
    one_minus_h = 1.0 - inv_n - c(hxx) * X2
    one_minus_h -= c(2.0 * hxb) * XB
    one_minus_h -= c(hbb) * B2
    with np.errstate(invalid="ignore", divide="ignore"):
        e /= one_minus_h
    e *= e
    return (np.einsum("rjn,rjkn->rjk", X2[:, :, 0], e),
            np.einsum("rjkn,rjkn->rjk", XB, e),
            np.einsum("rkn,rjkn->rjk", B2[:, 0], e))


def _quad(m, wx, wb):
    mxx, mxb, mbb = m
    return wx * wx * mxx + 2.0 * wx * wb * mxb + wb * wb * mbb


# ------------------------------------------------------------------ every model


@dataclass(frozen=True, slots=True, eq=False)
class BatchModels:
    """Every model of every replicate: arrays of shape (R, J, K, T).

    Axes: replicates, ROIs, outcomes, terms (``interaction``, treatment-arm
    slope, control-arm slope, ``slope_pooled``: :attr:`TrialNames.terms
    <dtitool.design.layout.TrialNames.terms>`).

    Parameters
    ----------
    estimate, se, t, p : ndarray
        Term estimates (score points per 1e-5 mm^2/s dMD), standard errors, t and
        two-sided p.
    df : ndarray of float
        Degrees of freedom of the t reference (residual df for ``ols`` and
        ``hc3``; the arm's residual df or a Welch-Satterthwaite df for ``welch``).
    n : ndarray of int, shape (R,)
        Subjects in the models of each replicate (24 h scan present).
    roi_names, outcome_names : tuple of str
    inference : str
        The inference option (:data:`INFERENCE`).
    """

    estimate: np.ndarray
    se: np.ndarray
    t: np.ndarray
    p: np.ndarray
    df: np.ndarray
    n: np.ndarray
    roi_names: tuple[str, ...]
    outcome_names: tuple[str, ...]
    inference: str = "ols"


def model_arrays(arrays):
    """``(x, b, y, treated, mask)`` of the power models from simulated trials.

    ``x`` is dMD per 1e-5 mm^2/s (R, N, J), ``b`` the baseline score and ``y`` the
    score change (R, N, K); ``mask`` drops a subject whose 24 h scan is missing
    from every model of that replicate.
    """
    md, scores = arrays.md, arrays.scores
    x = md[..., 1] - md[..., 0]
    x /= DMD_SCALE
    mask = np.asarray(arrays.observed_24h, bool) & np.all(np.isfinite(x), axis=-1)
    return (x, scores[..., 0], scores[..., 1] - scores[..., 0],
            np.asarray(arrays.treated, bool), mask)


def batch_models(arrays, inference: str = "ols") -> BatchModels:
    """Fit the interaction and additive models of every ROI x outcome, all replicates.

    Parameters
    ----------
    arrays : CohortArrays
        Simulated replicate trials (:func:`dtitool.simulate.simulate_arrays`).
    inference : {"ols", "hc3", "welch"}
        Inference option (module docstring).

    Returns
    -------
    BatchModels
        Same numbers as statsmodels (formula OLS; ``cov_type="HC3", use_t=True``;
        per-arm OLS fits and WLS with per-arm weights), checked to 1e-8 in p in
        ``tests/test_inference.py``.
    """
    return batch_models_multi(arrays, (check_inference(inference),))[inference]


def batch_models_multi(arrays, inferences) -> dict[str, BatchModels]:
    """:func:`batch_models` for several inference options, sharing the data pass."""
    x, b, y, treated, mask = model_arrays(arrays)
    st = arm_statistics(x, b, y, treated, mask, keep_values="hc3" in inferences)
    return {inf: models_from_statistics(st, inf, arrays.roi_names,
                                        arrays.outcome_names)
            for inf in inferences}


def models_from_statistics(st: ArmStatistics, inference: str, roi_names=(),
                           outcome_names=()) -> BatchModels:
    """:class:`BatchModels` of one inference option from :func:`arm_statistics`."""
    est, se, df = fit_terms(st, inference)
    with np.errstate(invalid="ignore", divide="ignore"):
        t = est / se
    return BatchModels(estimate=est, se=se, t=t, p=_p_values(t, df), df=df,
                       n=st.n[0] + st.n[1], roi_names=tuple(roi_names),
                       outcome_names=tuple(outcome_names), inference=inference)


def _p_values(t: np.ndarray, df: np.ndarray) -> np.ndarray:
    """Two-sided p per term.

    A term whose df is one integer everywhere takes the fast finite series
    (:func:`dtitool.stats.ols.two_sided_p`).
    """
    p = np.empty_like(t)
    for i in range(t.shape[-1]):
        d = df[..., i]
        d0 = _series_df(d)
        p[..., i] = two_sided_p(t[..., i], d if d0 is None else d0)
    return p


def _series_df(d: np.ndarray) -> int | None:
    """Return the one integer df of a term's tests if they share one, else None.

    With it :func:`dtitool.stats.ols.two_sided_p` takes its fast finite series.
    """
    d0 = d.flat[0] if d.size else 0.0
    if d.size and np.isfinite(d0) and d0 == int(d0) and np.all(d == d0):
        return int(d0)
    return None
