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

The ``omnibus`` test of a trial with three or more arms (every arm's dMD slope
equals the control arm's) constrains ``k - 1`` contrasts at once: its reduced
model imposes all of them (``N_C`` a basis of the complement of their span) and
its statistic is the p of its F test, computed as the analysis computes it
(the Wald F with the pooled-variance or HC3 covariance, or Welch's 1951 test of
the per-arm slopes; :mod:`dtitool.stats.omnibus`). On the minP scale it weighs
like any t test of the family.

**Exchangeability.** With unequal score-change variances in the arms the
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
from dtitool.stats.omnibus import f_sf, wald_f, welch_omnibus

__all__ = [
    "PermutationModel",
    "arm_codes",
    "maxt_adjust",
    "permutation_p",
    "satterthwaite_df",
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
    arms : ndarray of int, shape (n,)
        Arm of each row, ``0 .. k - 1`` in :attr:`TrialNames.arms` order (the
        control arm ``k - 1``, last). A boolean array is a two-arm trial's
        treatment indicator (True: arm 0, False: the control arm 1).
    subjects : ndarray of int, shape (n,)
        Index of each row's subject in the list the permutations are drawn over.
    contrasts : ndarray, shape (2k - 1, p)
        Over ``X``: the ``k - 1`` interactions (each arm's dMD slope but the
        control's, minus the control arm's), then the ``k`` arms' slopes (for
        two arms: ``interaction``, the treatment-arm and the control-arm slope).
    additive : ndarray of bool, shape (p,)
        Columns of the additive model (no group x dMD term).
    pooled : ndarray, shape (p_add,)
        The pooled slope's contrast over the additive columns.
    within_arm : ndarray of bool, shape (p,)
        Columns of a per-arm model (no term involving group).

    Notes
    -----
    The model's tests, in the order of :attr:`TrialNames.terms`: the
    interactions, the slopes, the pooled slope and (three or more arms) the
    omnibus test.
    """

    y: np.ndarray
    X: np.ndarray
    arms: np.ndarray
    subjects: np.ndarray
    contrasts: np.ndarray
    additive: np.ndarray
    pooled: np.ndarray
    within_arm: np.ndarray

    def __post_init__(self):
        object.__setattr__(self, "arms", arm_codes(self.arms))

    @property
    def n_arms(self) -> int:
        """``k``, the number of arms (from the contrasts)."""
        return (len(self.contrasts) + 1) // 2

    @property
    def n_terms(self) -> int:
        """Tests of the model: ``2k`` with one or two arms, ``2k + 1`` with more."""
        k = self.n_arms
        return 2 * k if k <= 2 else 2 * k + 1

    @property
    def ketamine(self) -> np.ndarray:
        """Rows of the first treatment arm (a two-arm trial's treatment arm)."""
        return self.arms == 0


def arm_codes(arms) -> np.ndarray:
    """Arm codes ``0 .. k - 1`` from codes, or from a two-arm treatment indicator.

    A boolean array is a two-arm trial's treatment indicator: True is arm 0
    (the treatment arm), False arm 1 (the control arm, last).
    """
    arms = np.asarray(arms)
    if arms.dtype == bool:
        return np.where(arms, 0, 1).astype(np.intp)
    if not np.issubdtype(arms.dtype, np.integer) or (arms.size and arms.min() < 0):
        raise ValueError(f"arms must be arm codes 0 .. k - 1 (integers) or a "
                         f"boolean treatment indicator; got {arms.dtype} values "
                         f"{np.unique(arms)[:5]}")
    return arms.astype(np.intp)


def within_arm_permutations(keys: np.ndarray, subjects: np.ndarray,
                            arms: np.ndarray) -> np.ndarray:
    """Row permutations of one model induced by per-subject random keys.

    Parameters
    ----------
    keys : ndarray, shape (B, S)
        Independent uniform keys, one per permutation and subject.
    subjects : ndarray of int, shape (n,)
        Subject of each row of the model.
    arms : ndarray of int or bool, shape (n,)
        Arm of each row (:func:`arm_codes`).

    Returns
    -------
    ndarray of int, shape (B, n)
        ``pos[b, i]``: the row whose residual row ``i`` receives in permutation
        ``b``. Within each arm the rows are reordered by their subjects' keys, a
        uniformly random permutation of the arm; two models with the same
        subjects get the same permutation.
    """
    arms = arm_codes(arms)
    B = keys.shape[0]
    pos = np.empty((B, len(subjects)), dtype=np.intp)
    for a in np.unique(arms):
        rows = np.flatnonzero(arms == a)
        order = np.argsort(keys[:, subjects[rows]], axis=1, kind="stable")
        pos[:, rows] = rows[order]
    return pos


def satterthwaite_df(v, df):
    """Satterthwaite df of a sum of independent variance estimates.

    ``(sum_a v_a)^2 / sum_a (v_a^2 / df_a)`` over the first axis of ``v`` and
    ``df`` (sequences of arrays that broadcast); for two parts it is
    :func:`~dtitool.stats.inference.welch_df`, operation for operation.
    """
    v = [np.asarray(x, float) for x in v]
    tot, den = v[0], v[0] * v[0] / df[0]
    for x, d in zip(v[1:], df[1:], strict=True):
        tot, den = tot + x, den + x * x / d
    with np.errstate(invalid="ignore", divide="ignore"):
        return tot ** 2 / den


def _term(m: PermutationModel, term: int) -> tuple[str, int | None]:
    """Return which test ``term`` is: ``(kind, arm)``.

    ``kind`` is ``interaction`` or ``slope`` (of arm ``arm``), ``pooled`` or
    ``omnibus`` (arm None).
    """
    k = m.n_arms
    if term < k - 1:
        return "interaction", term
    if term < 2 * k - 1:
        return "slope", term - (k - 1)
    return ("pooled" if term == 2 * k - 1 else "omnibus"), None


def _null_basis(c: np.ndarray) -> np.ndarray:
    """Orthonormal basis of the vectors orthogonal to the rows of ``c``.

    ``c`` is one contrast (p,) or ``r`` of them (r, p), linearly independent;
    the basis is p x (p - r).
    """
    C = np.atleast_2d(c)
    r, p = C.shape
    q, _ = np.linalg.qr(np.column_stack([C.T, np.eye(p)]))
    return q[:, r:p]


def _reduced_fit(y: np.ndarray, D: np.ndarray, c: np.ndarray):
    """Fitted values and residuals of ``y`` on ``D`` with ``c b = 0`` imposed."""
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


def _ols_f(ystar, D, C, hc3: bool):
    """Return p of the Wald F test of ``C b = 0`` (r rows) for every row of ``ystar``.

    As statsmodels ``f_test``: the pooled-variance or HC3 covariance of ``C b``,
    ``F = (C b)' V^{-1} (C b) / r`` on ``(r, n - p)`` df.
    """
    n, q = D.shape
    r = C.shape[0]
    A = np.linalg.inv(D.T @ D)
    coef = (ystar @ D) @ A
    E = ystar - coef @ D.T
    est = coef @ C.T  # (B, r)
    if hc3:
        W = D @ (A @ C.T)  # (n, r)
        h = np.einsum("ij,jk,ik->i", D, A, D)
        omega = E * E / (1.0 - h) ** 2
        cov = np.einsum("bi,ir,is->brs", omega, W, W)
    else:
        s2 = np.einsum("bi,bi->b", E, E) / (n - q)
        cov = s2[:, None, None] * (C @ A @ C.T)[None]
    return f_sf(wald_f(est, cov), r, n - q)


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


def _arm_slopes(ystar, m: PermutationModel, arms):
    """Slope, its variance and df of each of ``arms``, fitted on its own."""
    k = m.n_arms
    est, var, df = {}, {}, {}
    for a in arms:
        r = np.flatnonzero(m.arms == a)
        D = m.X[r][:, m.within_arm]
        la = m.contrasts[k - 1 + a][m.within_arm]
        ((coef, s2, A, df[a]),) = _arm_fits(ystar, [D], [r])
        est[a], var[a] = coef @ la, s2 * (la @ A @ la)
    return est, var, df


def _welch_slopes(ystar, m: PermutationModel, term: int):
    kind, a = _term(m, term)
    c = m.n_arms - 1
    if kind == "interaction":
        est, var, df = _arm_slopes(ystar, m, (a, c))
        return _t_p(est[a] - est[c], var[a] + var[c],
                    welch_df(var[a], df[a], var[c], df[c]))
    est, var, df = _arm_slopes(ystar, m, (a,))
    return _t_p(est[a], var[a], df[a])


def _welch_omnibus(ystar, m: PermutationModel):
    """Return the p of Welch's (1951) test that every arm's slope is the same."""
    k = m.n_arms
    est, var, df = _arm_slopes(ystar, m, range(k))
    F, df1, df2 = welch_omnibus(np.stack([est[a] for a in range(k)], -1),
                                np.stack([var[a] for a in range(k)], -1),
                                np.array([df[a] for a in range(k)], float))
    return f_sf(F, df1, df2)


def _welch_pooled(ystar, m: PermutationModel):
    rows = [np.flatnonzero(m.arms == a) for a in range(m.n_arms)]
    D_arms = [m.X[r][:, m.within_arm] for r in rows]
    fits = _arm_fits(ystar, D_arms, rows)
    Xa = m.X[:, m.additive]
    c = m.pooled
    H0 = [Xa[r].T @ Xa[r] for r in rows]
    with np.errstate(divide="ignore"):
        w = [1.0 / f[1] for f in fits]  # (B,) per arm
    Gw = H0[0][None] * w[0][:, None, None]
    for Ha, wa in zip(H0[1:], w[1:], strict=True):
        Gw = Gw + Ha[None] * wa[:, None, None]
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
    df = satterthwaite_df([x for x, _ in v], [d for _, d in v])
    return _t_p(est, var, df)


def _statistic_p(ystar, m: PermutationModel, term: int, inference: str):
    kind, _ = _term(m, term)
    welch = inference == "welch"
    hc3 = inference == "hc3"
    if kind == "pooled":
        if welch:
            return _welch_pooled(ystar, m)
        return _ols_like(ystar, m.X[:, m.additive], m.pooled, hc3)
    if kind == "omnibus":
        if welch:
            return _welch_omnibus(ystar, m)
        return _ols_f(ystar, m.X, m.contrasts[:m.n_arms - 1], hc3)
    if welch:
        return _welch_slopes(ystar, m, term)
    return _ols_like(ystar, m.X, m.contrasts[term], hc3)


def _test_design(m: PermutationModel, term: int, inference: str):
    """Design and contrast(s) whose reduced model gives the Freedman-Lane residuals."""
    kind, a = _term(m, term)
    k = m.n_arms
    if kind == "pooled":
        return m.X[:, m.additive], m.pooled
    if inference != "welch":
        if kind == "omnibus":
            return m.X, m.contrasts[:k - 1]
        return m.X, m.contrasts[term]
    # Welch: the k per-arm models side by side (block-diagonal design).
    W = m.X[:, m.within_arm]
    p = W.shape[1]
    D = np.zeros((len(m.y), k * p))
    for b in range(k):
        rows = m.arms == b
        D[rows, b * p:(b + 1) * p] = W[rows]
    slope = np.zeros((k, k * p))
    for b in range(k):
        slope[b, b * p:(b + 1) * p] = m.contrasts[k - 1 + b][m.within_arm]
    inter = slope[:k - 1] - slope[k - 1]
    if kind == "omnibus":
        return D, inter
    return D, (inter[a] if kind == "interaction" else slope[a])


def _full_rank(D: np.ndarray) -> bool:
    """Return whether ``D`` has full column rank and residual df left."""
    return D.shape[0] > D.shape[1] and np.linalg.matrix_rank(D) == D.shape[1]


def _testable(m: PermutationModel, term: int, inference: str) -> bool:
    """Return whether the test has a statistic at all.

    If not, its p is NaN, as in the analysis, and it is left out of its family.
    """
    kind, a = _term(m, term)
    if inference == "welch":
        k = m.n_arms
        need = {"interaction": (a, k - 1), "slope": (a,)}.get(kind, range(k))
        arms = [m.X[m.arms == b][:, m.within_arm] for b in need]
        return (all(_full_rank(D) for D in arms)
                and (kind != "pooled" or _full_rank(m.X[:, m.additive])))
    return _full_rank(m.X[:, m.additive] if kind == "pooled" else m.X)


def permutation_p(models: Sequence[PermutationModel], *, inference: str,
                  keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Observed and Freedman-Lane permuted p of every test of every model.

    Parameters
    ----------
    models : sequence of PermutationModel
    inference : {"ols", "hc3", "welch"}
    keys : ndarray, shape (B, S)
        Uniform random keys per permutation and subject
        (:func:`within_arm_permutations`).

    Returns
    -------
    observed : ndarray, shape (T,)
        p of each test on the data (the same numbers as the statsmodels
        analysis); ``T`` is the sum of the models' :attr:`~PermutationModel.n_terms`.
    permuted : ndarray, shape (B, T)
        p of each test in each permutation; tests in the order model, then term
        (:attr:`TrialNames.terms` order: for two arms ``interaction``,
        treatment-arm slope, control-arm slope, ``slope_pooled``; for three or
        more the interactions, the slopes, ``slope_pooled`` and ``omnibus``).
    """
    check_inference(inference)
    B = keys.shape[0]
    start = np.cumsum([0, *(m.n_terms for m in models)])
    observed = np.empty(start[-1])
    permuted = np.empty((B, start[-1]))
    cache: dict[bytes, np.ndarray] = {}
    for i, m in enumerate(models):
        key = m.subjects.tobytes() + m.arms.tobytes()
        if key not in cache:
            cache[key] = within_arm_permutations(keys, m.subjects, m.arms)
        pos = cache[key]
        for term in range(m.n_terms):
            col = start[i] + term
            if not _testable(m, term, inference):
                observed[col] = np.nan
                permuted[:, col] = np.nan
                continue
            D, c = _test_design(m, term, inference)
            fit, resid = _reduced_fit(m.y, D, c)
            observed[col] = _statistic_p(m.y[None, :], m, term, inference)[0]
            permuted[:, col] = _statistic_p(fit + resid[pos], m, term, inference)
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
