r"""Max-T family-wise p-values by Freedman-Lane permutation (one dataset).

Westfall and Young's max-T adjusts every test of a family with the permutation
distribution of the family's most extreme statistic, so it keeps the
family-wise error at alpha whatever the dependence between the tests (Holm
assumes the worst case and is conservative when tests correlate). Here the
statistics are put on one scale through their own t reference (the family's
smallest p, "minP"): with equal df, as for the classical tests without missing
scans, that is exactly max |t|; with unequal df (Welch-Satterthwaite, or models
that lost different subjects) it weighs every test alike.

**Freedman-Lane** (Freedman and Lane 1983; Winkler et al. 2014). For a test of
the contrast ``c'b = 0`` in the design ``D`` the reduced model is ``D N_c``
(``N_c`` a basis of the contrasts orthogonal to ``c``: the tested term
removed). Its fitted values ``y0`` and residuals ``e0`` give, for permutation
``P``, the data ``y* = y0 + P e0``; the full model is refitted to ``y*`` and the
test's statistic recomputed exactly as for the data (same inference option).

**Exchangeability.** With unequal score-change variances in the two arms the
residuals are not exchangeable across arms; permuting them across arms would
give the permuted data the wrong variance structure. Subjects are therefore
permuted **within their arm** (exchangeability blocks; Winkler et al. 2014),
which keeps each arm's residual variance. The same permutation of subjects is
applied to every model of a family, so the dependence between the tests (shared
subjects, correlated ROIs and outcomes) is kept; a model that lost subjects
(missing scans) uses the permutation the random keys induce on its own subjects.

Adjusted p-values follow the step-down minP algorithm (Westfall and Young 1993,
algorithm 2.8) with the observed data counted among the permutations
(``(1 + count) / (B + 1)``, Phipson and Smyth 2010), so they are never 0 and a
test rejected at ``p_maxt <= alpha`` keeps the family-wise error at most alpha.

All permutations of a model are fitted at once: for fixed designs the refit is
linear in ``y*`` (one matrix product per model for all permutations), HC3
leverages are fixed per model, and the Welch pooled slope's feasible GLS is a
batch of small solves.

References
----------
Westfall PH, Young SS (1993). Resampling-Based Multiple Testing. Wiley.
Freedman D, Lane D (1983). A nonstochastic interpretation of reported
significance levels. J Bus Econ Stat 1:292.
Winkler AM, Ridgway GR, Webster MA, Smith SM, Nichols TE (2014). Permutation
inference for the general linear model. NeuroImage 92:381.
Phipson B, Smyth GK (2010). Permutation p-values should never be zero. Stat Appl
Genet Mol Biol 9:39.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import special

from dtitool.stats.inference import check_inference, welch_df

__all__ = [
    "PermutationModel",
    "maxt_adjust",
    "permutation_p",
    "within_arm_permutations",
]


@dataclass(frozen=True, slots=True, eq=False)
class PermutationModel:
    """One ROI x outcome model, as the permutation engine needs it.

    Parameters
    ----------
    y : ndarray, shape (n,)
        Score change.
    X : ndarray, shape (n, p)
        Interaction-model design (intercept included).
    ketamine : ndarray of bool, shape (n,)
        Arm of each row.
    subjects : ndarray of int, shape (n,)
        Index of each row's subject in the list the permutations are drawn over.
    contrasts : ndarray, shape (3, p)
        ``interaction``, the treatment-arm slope and the control-arm slope over
        ``X``.
    additive : ndarray of bool, shape (p,)
        Columns of the additive model (no group x dMD term).
    pooled : ndarray, shape (p_add,)
        The pooled slope's contrast over the additive columns.
    within_arm : ndarray of bool, shape (p,)
        Columns of a per-arm model (no term involving group).
    """

    y: np.ndarray
    X: np.ndarray
    ketamine: np.ndarray
    subjects: np.ndarray
    contrasts: np.ndarray
    additive: np.ndarray
    pooled: np.ndarray
    within_arm: np.ndarray


def within_arm_permutations(keys: np.ndarray, subjects: np.ndarray,
                            ketamine: np.ndarray) -> np.ndarray:
    """Row permutations of one model induced by per-subject random keys.

    Parameters
    ----------
    keys : ndarray, shape (B, S)
        Independent uniform keys, one per permutation and subject.
    subjects : ndarray of int, shape (n,)
        Subject of each row of the model.
    ketamine : ndarray of bool, shape (n,)
        Arm of each row.

    Returns
    -------
    ndarray of int, shape (B, n)
        ``pos[b, i]``: the row whose residual row ``i`` receives in permutation
        ``b``. Within each arm the rows are reordered by their subjects' keys, a
        uniformly random permutation of the arm; two models with the same
        subjects get the same permutation.
    """
    B = keys.shape[0]
    pos = np.empty((B, len(subjects)), dtype=np.intp)
    for arm in (ketamine, ~ketamine):
        rows = np.flatnonzero(arm)
        order = np.argsort(keys[:, subjects[rows]], axis=1, kind="stable")
        pos[:, rows] = rows[order]
    return pos


def _null_basis(c: np.ndarray) -> np.ndarray:
    """Orthonormal basis of the vectors orthogonal to ``c`` (p x (p - 1))."""
    q, _ = np.linalg.qr(np.column_stack([c, np.eye(len(c))]))
    return q[:, 1:len(c)]


def _reduced_fit(y: np.ndarray, D: np.ndarray, c: np.ndarray):
    """Fitted values and residuals of ``y`` on ``D`` with ``c'b = 0`` imposed."""
    D0 = D @ _null_basis(c)
    coef, *_ = np.linalg.lstsq(D0, y, rcond=None)
    fit = D0 @ coef
    return fit, y - fit


def _t_p(est, var, df):
    with np.errstate(invalid="ignore", divide="ignore"):
        t = est / np.sqrt(var)
        return 2.0 * special.stdtr(df, -np.abs(t))


def _ols_like(ystar, D, c, hc3: bool):
    """Return p of ``c'b`` for every row of ``ystar`` (B, n): classical or HC3."""
    n, q = D.shape
    A = np.linalg.inv(D.T @ D)
    coef = (ystar @ D) @ A
    E = ystar - coef @ D.T
    est = coef @ c
    if hc3:
        w = D @ (A @ c)
        h = np.einsum("ij,jk,ik->i", D, A, D)
        var = (E * E) @ (w * w / (1.0 - h) ** 2)
    else:
        var = np.einsum("bi,bi->b", E, E) / (n - q) * (c @ A @ c)
    return _t_p(est, var, n - q)


def _arm_fits(ystar, D_arms, rows):
    """Per-arm OLS of every row of ``ystar``: coefficients and residual variance."""
    out = []
    for D, r in zip(D_arms, rows, strict=True):
        A = np.linalg.inv(D.T @ D)
        ya = ystar[:, r]
        coef = (ya @ D) @ A
        E = ya - coef @ D.T
        df = D.shape[0] - D.shape[1]
        out.append((coef, np.einsum("bi,bi->b", E, E) / df, A, df))
    return out


def _welch_slopes(ystar, m: PermutationModel, term: int):
    rows = (np.flatnonzero(m.ketamine), np.flatnonzero(~m.ketamine))
    need = {0: (0, 1), 1: (0,), 2: (1,)}[term]
    est, var, df = {}, {}, {}
    for a in need:
        D = m.X[rows[a]][:, m.within_arm]
        la = m.contrasts[1 + a][m.within_arm]
        ((coef, s2, A, df[a]),) = _arm_fits(ystar, [D], [rows[a]])
        est[a], var[a] = coef @ la, s2 * (la @ A @ la)
    if term == 0:
        return _t_p(est[0] - est[1], var[0] + var[1],
                    welch_df(var[0], df[0], var[1], df[1]))
    a = need[0]
    return _t_p(est[a], var[a], df[a])


def _welch_pooled(ystar, m: PermutationModel):
    rows = (np.flatnonzero(m.ketamine), np.flatnonzero(~m.ketamine))
    D_arms = [m.X[r][:, m.within_arm] for r in rows]
    fits = _arm_fits(ystar, D_arms, rows)
    Xa = m.X[:, m.additive]
    c = m.pooled
    H0 = [Xa[r].T @ Xa[r] for r in rows]
    with np.errstate(divide="ignore"):
        w = [1.0 / f[1] for f in fits]  # (B,) per arm
    Gw = H0[0][None] * w[0][:, None, None] + H0[1][None] * w[1][:, None, None]
    gw = sum((ystar[:, r] @ Xa[r]) * wa[:, None]
             for r, wa in zip(rows, w, strict=True))
    Phi = np.linalg.inv(Gw)
    est = np.einsum("bij,bj,i->b", Phi, gw, c)
    mvec = Phi @ c  # (B, q)
    v, var = [], np.einsum("bi,i->b", mvec, c)
    for Ha0, wa, (_, _, _, dfa) in zip(H0, w, fits, strict=True):
        Hm = (mvec @ Ha0) * wa[:, None]
        va = np.einsum("bi,bi->b", mvec, Hm)
        quad = np.einsum("bi,bij,bj->b", Hm, Phi, Hm)
        var = var + 4.0 * (va - quad) / dfa
        v.append((va, dfa))
    df = welch_df(v[0][0], v[0][1], v[1][0], v[1][1])
    return _t_p(est, var, df)


def _statistic_p(ystar, m: PermutationModel, term: int, inference: str):
    if term == 3:
        if inference == "welch":
            return _welch_pooled(ystar, m)
        return _ols_like(ystar, m.X[:, m.additive], m.pooled, inference == "hc3")
    if inference == "welch":
        return _welch_slopes(ystar, m, term)
    return _ols_like(ystar, m.X, m.contrasts[term], inference == "hc3")


def _test_design(m: PermutationModel, term: int, inference: str):
    """Design and contrast whose reduced model gives the Freedman-Lane residuals."""
    if term == 3:
        return m.X[:, m.additive], m.pooled
    if inference != "welch":
        return m.X, m.contrasts[term]
    # Welch: the two per-arm models side by side (block-diagonal design).
    W = m.X[:, m.within_arm]
    p = W.shape[1]
    D = np.zeros((len(m.y), 2 * p))
    D[m.ketamine, :p] = W[m.ketamine]
    D[~m.ketamine, p:] = W[~m.ketamine]
    lk, ls = m.contrasts[1][m.within_arm], m.contrasts[2][m.within_arm]
    c = {0: np.r_[lk, -ls], 1: np.r_[lk, 0 * ls], 2: np.r_[0 * lk, ls]}[term]
    return D, c


def _full_rank(D: np.ndarray) -> bool:
    """Return whether ``D`` has full column rank and residual df left."""
    return D.shape[0] > D.shape[1] and np.linalg.matrix_rank(D) == D.shape[1]


def _testable(m: PermutationModel, term: int, inference: str) -> bool:
    """Return whether the test has a statistic at all.

    If not, its p is NaN, as in the analysis, and it is left out of its family.
    """
    if inference == "welch":
        arms = [m.X[r][:, m.within_arm] for r in (m.ketamine, ~m.ketamine)]
        need = {1: arms[:1], 2: arms[1:]}.get(term, arms)
        return (all(_full_rank(D) for D in need)
                and (term != 3 or _full_rank(m.X[:, m.additive])))
    return _full_rank(m.X[:, m.additive] if term == 3 else m.X)


def permutation_p(models: Sequence[PermutationModel], *, inference: str,
                  keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Observed and Freedman-Lane permuted p of the four terms of every model.

    Parameters
    ----------
    models : sequence of PermutationModel
    inference : {"ols", "hc3", "welch"}
    keys : ndarray, shape (B, S)
        Uniform random keys per permutation and subject
        (:func:`within_arm_permutations`).

    Returns
    -------
    observed : ndarray, shape (4 * len(models),)
        p of each test on the data (the same numbers as the statsmodels analysis).
    permuted : ndarray, shape (B, 4 * len(models))
        p of each test in each permutation; tests in the order model, then term
        (``interaction``, treatment-arm slope, control-arm slope,
        ``slope_pooled``).
    """
    check_inference(inference)
    B = keys.shape[0]
    observed = np.empty(4 * len(models))
    permuted = np.empty((B, 4 * len(models)))
    cache: dict[bytes, np.ndarray] = {}
    for i, m in enumerate(models):
        key = m.subjects.tobytes() + m.ketamine.tobytes()
        if key not in cache:
            cache[key] = within_arm_permutations(keys, m.subjects, m.ketamine)
        pos = cache[key]
        for term in range(4):
            if not _testable(m, term, inference):
                observed[4 * i + term] = np.nan
                permuted[:, 4 * i + term] = np.nan
                continue
            D, c = _test_design(m, term, inference)
            fit, resid = _reduced_fit(m.y, D, c)
            observed[4 * i + term] = _statistic_p(m.y[None, :], m, term, inference)[0]
            permuted[:, 4 * i + term] = _statistic_p(fit + resid[pos], m, term,
                                                     inference)
    return observed, permuted


def maxt_adjust(observed: np.ndarray, permuted: np.ndarray) -> np.ndarray:
    """Step-down minP (max-T) adjusted p-values of one family.

    Parameters
    ----------
    observed : ndarray, shape (m,)
        The tests' p on the data (NaN: not tested, left out of the family).
    permuted : ndarray, shape (B, m)
        Their p in each permutation.

    Returns
    -------
    ndarray, shape (m,)
        ``p_maxt`` (NaN where ``observed`` is NaN).

    Notes
    -----
    Westfall and Young (1993), algorithm 2.8: order the tests by observed p;
    for the ``j``-th smallest, count permutations whose smallest p over the
    tests not yet passed is at or below its observed p; ``(1 + count) / (B + 1)``,
    made monotone in the observed order.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> perm = rng.uniform(size=(999, 3))
    >>> maxt_adjust(np.array([0.001, 0.5, 0.04]), perm).round(3)
    array([0.006, 0.509, 0.079])
    """
    observed = np.asarray(observed, float)
    out = np.full(observed.shape, np.nan)
    ok = np.flatnonzero(~np.isnan(observed))
    if not len(ok):
        return out
    order = ok[np.argsort(observed[ok], kind="stable")]
    P = np.where(np.isnan(permuted[:, order]), np.inf, permuted[:, order])
    succ_min = np.minimum.accumulate(P[:, ::-1], axis=1)[:, ::-1]
    counts = (succ_min <= observed[order][None, :]).sum(axis=0)
    adj = np.maximum.accumulate((1.0 + counts) / (P.shape[0] + 1.0))
    out[order] = adj
    return out
