r"""Batched inference for the reported terms: ``ols``, ``hc3`` and ``welch``.

The power engine fits, per replicate trial and per ROI ``j`` x outcome ``k``, the
interaction model and the additive model of ``docs/model.md`` ("Analysis models")
and reads the reported terms off them (:attr:`TrialNames.terms
<dtitool.design.layout.TrialNames.terms>`, laid out by :class:`TermLayout`): with
two arms ``interaction``, each arm's dMD slope and ``slope_pooled``; with
``k >= 3`` arms an ``interaction_<arm>`` per arm but the control (its slope minus
the control arm's), every arm's slope, ``slope_pooled`` and the ``omnibus`` F
test that all slopes are equal (:mod:`dtitool.stats.omnibus`). Arms are indexed
``0..k-1`` with the control arm last. This module computes those terms for every
replicate and model at once, under each of the three inference options:

``ols``
    Classical pooled-variance OLS (what the reference study reported).
``hc3``
    The same OLS estimates with HC3 standard errors (MacKinnon & White 1985) and a
    t reference with the model's residual df, as statsmodels
    ``fit(cov_type="HC3", use_t=True)``.
``welch``
    Each arm fitted on its own (``d_score ~ d_md + baseline`` within the arm):
    arm slopes with their own residual variances, each interaction as the
    difference of two of them with Welch-Satterthwaite df, and the pooled slope
    by feasible GLS of the additive model with per-arm residual variances
    (below).

How it is fast. The interaction model ``d ~ group * x + b`` spans the same column
space as ``[1_1..1_k, x 1_1..x 1_k, b]`` (an intercept and a dMD slope per arm, a
common baseline slope), and the additive model the same as ``[1_1..1_k, x, b]``.
Centring every variable *within its arm* absorbs the ``k`` arm intercepts
(Frisch-Waugh-Lovell), so all three options need only the within-arm centred
cross-product matrices ``S_a = V_a' V_a`` of ``V_a = [x_1..x_J, b_1..b_K,
y_1..y_K]`` (one batched matmul per arm), from which every model's ``X'X``,
``X'y`` and ``y'y`` are read; for two arms

.. math::

    X'X_{int} = \begin{pmatrix} S^{1}_{xx} & 0 & S^{1}_{xb} \\
                                0 & S^{2}_{xx} & S^{2}_{xb} \\
                                S^{1}_{xb} & S^{2}_{xb} &
                                S^{1}_{bb} + S^{2}_{bb} \end{pmatrix},
    \qquad
    X'X_{add} = \sum_a \begin{pmatrix} S^a_{xx} & S^a_{xb} \\
                                       S^a_{xb} & S^a_{bb} \end{pmatrix},

and with ``k`` arms ``X'X_{int}`` is ``(k + 1) x (k + 1)``, diagonal in its
first ``k`` rows and columns but for the baseline column.

HC3 needs per-subject leverages ``h_i`` and residuals ``e_i``; in the arm
parametrisation a subject's design row has two non-zero centred entries
``(x_i, b_i)`` (in its arm's slope column and the baseline column), so
``h_i = 1/n_a + (x_i, b_i) B_a (x_i, b_i)'`` with ``B_a`` a 2 x 2 block of
``(X'X)^{-1}``, and the covariance of two contrasts ``c_1'beta``, ``c_2'beta``
(weights ``w = (X'X)^{-1} c``) is

.. math::

    \sum_a \big[w_1^a w_2^a m^a_{xx} + (w_1^a w_2^b + w_1^b w_2^a) m^a_{xb}
                + w_1^b w_2^b m^a_{bb}\big],

three weighted moments ``m_{xx} = sum x^2 u^2``, ``m_{xb} = sum x b u^2``,
``m_{bb} = sum b^2 u^2`` (``u = e / (1 - h)``) per arm and model, shared by all
contrasts of the model (``w^a`` the weight of arm ``a``'s slope, ``w^b`` of the
baseline).

The omnibus test (``k >= 3``). Under ``ols`` and ``hc3`` it is the Wald F test
of the ``k - 1`` interaction contrasts with the model's covariance
(``sigma^2 L (X'X)^{-1} L'`` or the HC3 covariance above) on ``(k - 1,
df_resid)`` df, statsmodels ``results.f_test``; under ``welch`` it is Welch's
(1951) test of equal arm slopes (:func:`dtitool.stats.omnibus.welch_omnibus`).
Its row holds the F statistic as the estimate, NaN as the SE and the
denominator df as the df (the numerator df is ``k - 1``).

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

All results equal statsmodels to ~1e-10 (``tests/test_inference.py`` for two
arms, ``tests/test_inference_arms.py`` for three and four).

References
----------
MacKinnon JG, White H (1985). Some heteroskedasticity-consistent covariance
matrix estimators with improved finite sample properties. J Econometrics 29:305.
Welch BL (1947). The generalization of "Student's" problem when several
different population variances are involved. Biometrika 34:28.
Welch BL (1951). On the comparison of several mean values: an alternative
approach. Biometrika 38:330.
Satterthwaite FE (1946). An approximate distribution of estimates of variance
components. Biometrics Bull 2:110.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from functools import reduce

import numpy as np

from dtitool._constants import DMD_SCALE
from dtitool.stats.ols import ols_from_crossproducts, solve_gram, two_sided_p
from dtitool.stats.omnibus import f_sf, wald_f, welch_omnibus

__all__ = [
    "INFERENCE",
    "ArmStatistics",
    "BatchModels",
    "TermLayout",
    "arm_codes",
    "arm_count",
    "arm_statistics",
    "batch_models",
    "check_inference",
    "cohort_statistics",
    "fit_terms",
    "model_arrays",
    "models_from_statistics",
    "permute_within_arms",
    "term_layout",
    "term_statistics",
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


def _satterthwaite(v, df):
    """Satterthwaite df ``(sum v)^2 / sum(v^2 / df)`` of a sum of independent parts.

    For two parts the same arithmetic, in the same order, as :func:`welch_df`.
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        return _sum(v) ** 2 / _sum(a * a / d for a, d in zip(v, df, strict=True))


def _sum(parts):
    """Left-to-right sum without a leading 0 (``a + b`` for two parts, exactly)."""
    return reduce(operator.add, parts)


# ------------------------------------------------------------------ term layout


@dataclass(frozen=True, slots=True)
class TermLayout:
    """Where each term of a ``k``-arm trial sits on the term axis.

    The order of :attr:`TrialNames.terms <dtitool.design.layout.TrialNames.terms>`:
    the ``k - 1`` interactions (one per arm but the control, in arm order), the
    ``k`` arm slopes (control last), ``slope_pooled``, and for ``k >= 3`` the
    ``omnibus`` F test.

    Parameters
    ----------
    n_arms : int
        Number of arms ``k`` (>= 2).

    Examples
    --------
    >>> term_layout(2).size, term_layout(2).omnibus
    (4, None)
    >>> lay = term_layout(3)
    >>> lay.size, lay.interactions, lay.slopes, lay.pooled, lay.omnibus
    (7, range(0, 2), range(2, 5), 5, 6)
    """

    n_arms: int

    def __post_init__(self):
        k = self.n_arms
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
            raise ValueError(f"n_arms must be a positive integer; got {k!r}")

    @property
    def interactions(self) -> range:
        """Term indices of the interactions (arm slope minus the control's)."""
        return range(0, self.n_arms - 1)

    @property
    def slopes(self) -> range:
        """Term indices of the arm slopes, in arm order (control last)."""
        return range(self.n_arms - 1, 2 * self.n_arms - 1)

    @property
    def pooled(self) -> int:
        """Term index of ``slope_pooled``."""
        return 2 * self.n_arms - 1

    @property
    def omnibus(self) -> int | None:
        """Term index of the omnibus F test, None with two arms."""
        return 2 * self.n_arms if self.n_arms >= 3 else None

    @property
    def size(self) -> int:
        """Number of terms ``T``."""
        return 2 * self.n_arms + (self.n_arms >= 3)

    @classmethod
    def of_size(cls, T: int) -> TermLayout:
        """Return the layout of ``T`` terms.

        2 for one arm, 4 for two arms, ``2k + 1`` for more.
        """
        if T in (2, 4):
            return cls(T // 2)
        if T >= 7 and T % 2:
            return cls((T - 1) // 2)
        raise ValueError(f"{T} terms is no trial's layout: one arm has 2 terms, "
                         f"two arms 4, k >= 3 arms 2k + 1 (7, 9, ...)")


def term_layout(n_arms: int) -> TermLayout:
    """Return the :class:`TermLayout` of a trial with ``n_arms`` arms."""
    return TermLayout(n_arms)


# ------------------------------------------------------------------ arm statistics


def arm_codes(arm, n_arms: int | None = None, *, shape=None) -> tuple[np.ndarray, int]:
    """Arm codes ``0..k-1`` (control last) from codes or a two-arm boolean.

    Parameters
    ----------
    arm : ndarray of bool or int
        Boolean: True in the first (treatment) arm, code 0, False in the control
        arm, code 1. Integer: the codes themselves.
    n_arms : int, optional
        ``k``; default 2 for a boolean ``arm``, else the largest code + 1.
    shape : tuple, optional
        The shape ``arm`` must have.

    Returns
    -------
    codes : ndarray of intp
    k : int

    Raises
    ------
    ValueError
        On a wrong shape, a code outside ``0..k-1`` or fewer than two arms.
    TypeError
        If ``arm`` is neither boolean nor integer.
    """
    arm = np.asarray(arm)
    if shape is not None and arm.shape != tuple(shape):
        raise ValueError(f"arm has shape {arm.shape}; expected {tuple(shape)} "
                         "(replicates, subjects)")
    if arm.dtype == bool:
        if n_arms not in (None, 2):
            raise ValueError(f"a boolean arm array gives two arms, but n_arms = "
                             f"{n_arms!r}; pass integer arm codes for more")
        return np.where(arm, 0, 1), 2
    if not np.issubdtype(arm.dtype, np.integer):
        raise TypeError(f"arm must be boolean (two arms) or integer arm codes; got "
                        f"dtype {arm.dtype}")
    k = (int(arm.max()) + 1 if arm.size else 2) if n_arms is None else n_arms
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ValueError(f"n_arms must be a positive integer; got {k!r}")
    if arm.size and (arm.min() < 0 or arm.max() >= k):
        raise ValueError(f"arm codes must be in 0..{k - 1} (n_arms = {k}); got "
                         f"codes from {arm.min()} to {arm.max()}")
    return arm.astype(np.intp, copy=False), int(k)


@dataclass(frozen=True, slots=True, eq=False)
class ArmStatistics:
    """Within-arm centred data of many replicates (the input of :func:`fit_terms`).

    Axis conventions: ``R`` replicates, ``N_a`` subjects of arm ``a`` (arms in
    code order in every tuple, the control arm last), ``J`` ROIs, ``K``
    outcomes; variables ``[x_1..x_J, b_1..b_K, y_1..y_K]`` (dMD per 1e-5 mm^2/s,
    baseline score, score change).

    Parameters
    ----------
    S : tuple of k ndarrays, shape (R, J + 2K, J + 2K)
        Within-arm centred cross-product matrices.
    n : tuple of k ndarrays of int, shape (R,)
        Subjects used per arm (a masked subject is in no model of that replicate).
    V : tuple of k ndarrays, shape (R, N_a, J + 2K), or None
        The centred values themselves (masked rows zero); kept for HC3 and for
        :func:`permute_within_arms`.
    use : tuple of k ndarrays of bool, shape (R, N_a), or None
        Rows of ``V`` that hold a used subject (kept with ``V``).
    J, K : int
    """

    S: tuple[np.ndarray, ...]
    n: tuple[np.ndarray, ...]
    V: tuple[np.ndarray, ...] | None
    use: tuple[np.ndarray, ...] | None
    J: int
    K: int

    @property
    def n_arms(self) -> int:
        """Number of arms ``k``."""
        return len(self.S)


def arm_statistics(x, b, y, arm, mask, *, keep_values: bool = False,
                   n_arms: int | None = None) -> ArmStatistics:
    """Centre every variable within each arm and form the cross-products.

    Parameters
    ----------
    x : ndarray, shape (R, N, J)
        dMD per ROI (per 1e-5 mm^2/s); may be NaN where ``mask`` is False.
    b, y : ndarray, shape (R, N, K)
        Baseline score and score change per outcome.
    arm : ndarray of int or bool, shape (R, N)
        Arm codes ``0..k-1`` (the control arm ``k - 1``), or for two arms a
        boolean, True in the treatment arm (code 0) (:func:`arm_codes`).
    mask : ndarray of bool, shape (R, N)
        Subjects used.
    keep_values : bool
        Keep the centred values (needed by ``hc3``).
    n_arms : int, optional
        ``k``; default 2 for a boolean ``arm``, else the largest code + 1 (give
        it when an arm may be empty).

    Returns
    -------
    ArmStatistics
    """
    R, N, J = x.shape
    K = b.shape[2]
    codes, k = arm_codes(arm, n_arms, shape=(R, N))
    V = np.empty((R, N, J + 2 * K))
    V[..., :J] = x
    V[..., J : J + K] = b
    V[..., J + K :] = y
    S, n, kept, used = [], [], [], []
    for a in range(k):
        member = codes == a
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
    keys : sequence of k ndarrays, shape (R, >= N_a)
        Uniform random keys per arm (arm order): used rows are reordered by
        their keys.
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
    if len(keys) != st.n_arms:
        raise ValueError(f"keys has {len(keys)} arrays but the trials have "
                         f"{st.n_arms} arms; pass one key array per arm")
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


# ------------------------------------------------------------------ the fits


def fit_terms(st: ArmStatistics, inference: str, *, contrast_cov: bool = False):
    """Estimate, SE and df of the reported terms of every model.

    Parameters
    ----------
    st : ArmStatistics
        From :func:`arm_statistics` (with ``keep_values=True`` for ``hc3``).
    inference : {"ols", "hc3", "welch"}
    contrast_cov : bool
        Also return the covariance of the ``k - 1`` interaction contrasts (what
        the omnibus test is built from; multiple imputation pools it).

    Returns
    -------
    estimate, se, df : ndarray, shape (R, J, K, T)
        Terms in the order of :attr:`TrialNames.terms
        <dtitool.design.layout.TrialNames.terms>` (:class:`TermLayout`): the
        interactions, each arm's slope, ``slope_pooled`` and, with three or more
        arms, ``omnibus``, whose estimate is the F statistic, its SE NaN and its
        df the denominator df (numerator df ``k - 1``). ``df`` is float
        (Welch-Satterthwaite df are not integers). NaN where a model is rank
        deficient or has no residual df.
    cov : ndarray, shape (R, J, K, k - 1, k - 1)
        Only with ``contrast_cov``: the interactions' covariance matrix (under
        ``welch`` that of the differences of independent arm slopes).
    """
    check_inference(inference)
    ix, ib, iy = _grids(st.J, st.K)
    arms = [_block(Sa, ix, ib, iy) for Sa in st.S]
    want_cov = contrast_cov or st.n_arms >= 3
    if inference == "welch":
        est, var, df, cov = _welch(arms, st.n, want_cov)
    else:
        est, var, df, cov = _ols(st, arms, inference, want_cov)
    with np.errstate(invalid="ignore"):
        se = np.sqrt(var)
    return (est, se, df, cov) if contrast_cov else (est, se, df)


def _ols(st: ArmStatistics, arms, inference: str, want_cov: bool):
    """Estimates, variances, df and interaction covariance under ols or hc3.

    The covariance is None unless ``want_cov``.
    """
    k = len(arms)
    c = k - 1  # the control arm
    lay = term_layout(k)
    shape = arms[0][0].shape
    n = np.broadcast_to(_sum(st.n)[:, None, None], shape)
    # Interaction model: [x 1_1..x 1_k, b] (k arm intercepts absorbed).
    G = np.zeros((*shape, k + 1, k + 1))
    for a, m in enumerate(arms):
        G[..., a, a] = m[0]
        G[..., a, k] = G[..., k, a] = m[1]
    G[..., k, k] = _sum(m[2] for m in arms)
    xty = np.stack([*(m[3] for m in arms), _sum(m[4] for m in arms)], axis=-1)
    yty = _sum(m[5] for m in arms)
    full = ols_from_crossproducts(G, xty, yty, n, absorbed=k)
    # Additive model: [x, b].
    add = ols_from_crossproducts(
        _sym2(*(_sum(m[i] for m in arms) for i in range(3))),
        np.stack([_sum(m[3] for m in arms), _sum(m[4] for m in arms)], axis=-1),
        yty, n, absorbed=k)
    bf, ba = np.nan_to_num(full.coef), add.coef
    est = np.stack([*(bf[..., a] - bf[..., c] for a in range(c)),
                    *(bf[..., a] for a in range(k)), ba[..., 0]], axis=-1)
    est[~full.full_rank, : lay.pooled] = np.nan
    Fi, Ai = full.xtx_inv, add.xtx_inv
    # Contrast weight vectors w = (X'X)^{-1} c over [x_1..x_k, b] of the
    # interactions (e_a - e_control) and the arm slopes (e_a).
    w_int = [Fi[..., :, a] - Fi[..., :, c] for a in range(c)]
    w_full = [*w_int, *(Fi[..., :, a] for a in range(k))]
    cov = None
    if inference == "ols":
        # c'(X'X)^{-1}c = c'w.
        cw = [*(w[..., a] - w[..., c] for a, w in enumerate(w_int)),
              *(w_full[c + a][..., a] for a in range(k))]
        var = np.stack([*(v * full.sigma2 for v in cw), Ai[..., 0, 0] * add.sigma2],
                       axis=-1)
        if want_cov:  # sigma^2 L (X'X)^{-1} L'
            cov = np.stack([np.stack([w[..., b] - w[..., c] for b in range(c)],
                                     axis=-1) for w in w_int],
                           axis=-2) * full.sigma2[..., None, None]
    else:
        var, cov = _hc3_variances(st, full, add, w_full, c)
        cov = cov if want_cov else None
    df = np.stack([full.df_resid] * lay.pooled + [add.df_resid], axis=-1).astype(float)
    df = np.where(df > 0, df, np.nan)
    if lay.omnibus is not None:
        F = wald_f(est[..., lay.interactions], cov)
        est = np.concatenate([est, F[..., None]], axis=-1)
        var = np.concatenate([var, np.full((*F.shape, 1), np.nan)], axis=-1)
        df = np.concatenate([df, df[..., :1]], axis=-1)
    if cov is not None:
        cov = np.where(full.full_rank[..., None, None], cov, np.nan)
    return est, var, df, cov


def _welch(arms, ns, want_cov: bool):
    """Estimates, variances, df and interaction covariance under welch.

    The covariance is None unless ``want_cov``.
    """
    k = len(arms)
    c = k - 1
    fits = [ols_from_crossproducts(
                _sym2(a[0], a[1], a[2]), np.stack([a[3], a[4]], axis=-1), a[5],
                np.broadcast_to(na[:, None, None], a[0].shape), absorbed=1)
            for a, na in zip(arms, ns, strict=True)]
    v = [f.sigma2 * f.xtx_inv[..., 0, 0] for f in fits]
    dfa = [np.where(f.df_resid > 0, f.df_resid, np.nan).astype(float) for f in fits]
    # Feasible GLS of the additive model with per-arm residual variances.
    with np.errstate(invalid="ignore", divide="ignore"):
        w = [1.0 / f.sigma2 for f in fits]
    G = [_sym2(a[0], a[1], a[2]) for a in arms]
    bad = ~reduce(operator.and_, (np.isfinite(wa) for wa in w))
    w0 = [np.where(bad, 0.0, wa) for wa in w]
    Gw = _sum(Ga * wa[..., None, None] for Ga, wa in zip(G, w0, strict=True))
    gw = _sum(np.stack([a[3], a[4]], axis=-1) * wa[..., None]
              for a, wa in zip(arms, w0, strict=True))
    coef_w, inv_w, ok = solve_gram(Gw, gw)
    m = inv_w[..., :, 0]  # Phi e_x, Phi = (sum_a G_a / s_a^2)^{-1}
    Hm = [np.einsum("...ij,...j->...i", Ga, m) * wa[..., None]  # H_a Phi e_x
          for Ga, wa in zip(G, w, strict=True)]
    v_p = [np.einsum("...i,...i->...", m, h) for h in Hm]  # arm shares of Phi_xx
    # Kenward-Roger adjustment for the estimated weights (per-arm variances with
    # Var(s_a^2) = 2 s_a^4 / df_a): Phi + 4 sum_a Phi (H_a - H_a Phi H_a) Phi / df_a.
    quad = [np.einsum("...i,...ij,...j->...", h, inv_w, h) for h in Hm]
    vp = inv_w[..., 0, 0] + 4.0 * _sum(
        (va - qa) / da for va, qa, da in zip(v_p, quad, dfa, strict=True))
    slope = [f.coef[..., 0] for f in fits]
    est = np.stack([*(slope[a] - slope[c] for a in range(c)), *slope, coef_w[..., 0]],
                   axis=-1)
    var = np.stack([*(v[a] + v[c] for a in range(c)), *v, vp], axis=-1)
    df = np.stack([*(welch_df(v[a], dfa[a], v[c], dfa[c]) for a in range(c)), *dfa,
                   _satterthwaite(v_p, dfa)], axis=-1)
    bad_p = bad | ~ok
    pooled = term_layout(k).pooled
    est[..., pooled][bad_p] = np.nan
    var[..., pooled][bad_p] = np.nan
    cov = None
    if want_cov:  # the interactions share the control arm's slope
        cov = np.broadcast_to(v[c][..., None, None], (*v[c].shape, c, c)).copy()
        for a in range(c):
            cov[..., a, a] += v[a]
    if k >= 3:
        F, _, df2 = welch_omnibus(np.stack(slope, axis=-1), np.stack(v, axis=-1),
                                  np.stack(dfa, axis=-1))
        est = np.concatenate([est, F[..., None]], axis=-1)
        var = np.concatenate([var, np.full((*F.shape, 1), np.nan)], axis=-1)
        df = np.concatenate([df, df2[..., None]], axis=-1)
    return est, var, df, cov


def _hc3_variances(st: ArmStatistics, full, add, w_full, n_int: int):
    """HC3 variances of the contrasts and covariance of the interactions.

    In replicate blocks (memory-bound). ``w_full``: weight vectors of the
    interaction model's contrasts, the ``n_int`` interactions first.
    """
    if st.V is None:
        raise ValueError("hc3 needs arm_statistics(..., keep_values=True)")
    J, K, k = st.J, st.K, st.n_arms
    T = len(w_full) + 1  # and the additive model's pooled slope
    R = st.S[0].shape[0]
    lead = full.coef.shape[:-1]
    var = np.empty((*lead, T))
    cov = np.empty((*lead, n_int, n_int))
    bf, ba = np.nan_to_num(full.coef), np.nan_to_num(add.coef)
    Fi, Ai = np.nan_to_num(full.xtx_inv), np.nan_to_num(add.xtx_inv)
    wf = [np.nan_to_num(w) for w in w_full]
    for r0 in range(0, R, _HC3_BLOCK):
        sl = slice(r0, min(R, r0 + _HC3_BLOCK))
        acc = np.zeros((sl.stop - r0, J, K, T))
        cacc = np.zeros((sl.stop - r0, J, K, n_int, n_int))
        for a, (Va, na) in enumerate(zip(st.V, st.n, strict=True)):
            Va = Va[sl]
            X = np.ascontiguousarray(Va[..., :J].transpose(0, 2, 1))[:, :, None, :]
            B = np.ascontiguousarray(Va[..., J : J + K].transpose(0, 2, 1))[:, None]
            Y = np.ascontiguousarray(Va[..., J + K :].transpose(0, 2, 1))[:, None]
            with np.errstate(invalid="ignore", divide="ignore"):
                inv_n = (1.0 / na[sl])[:, None, None, None]
            X2, B2, XB = X * X, B * B, X * B
            # interaction model: this arm's slope column is a, baseline column k
            m = _hc3_moments(X, B, Y, X2, B2, XB, inv_n, bf[sl][..., a],
                             bf[sl][..., k], Fi[sl][..., a, a], Fi[sl][..., a, k],
                             Fi[sl][..., k, k])
            w = [wt[sl] for wt in wf]
            for t in range(T - 1):
                acc[..., t] += _quad(m, w[t][..., a], w[t][..., k])
            for i in range(n_int):
                for j in range(i + 1, n_int):
                    cacc[..., i, j] += _cross(m, w[i][..., a], w[i][..., k],
                                              w[j][..., a], w[j][..., k])
            m = _hc3_moments(X, B, Y, X2, B2, XB, inv_n, ba[sl][..., 0],
                             ba[sl][..., 1], Ai[sl][..., 0, 0], Ai[sl][..., 0, 1],
                             Ai[sl][..., 1, 1])
            acc[..., T - 1] += _quad(m, Ai[sl][..., 0, 0], Ai[sl][..., 1, 0])
        for i in range(n_int):
            cacc[..., i, i] = acc[..., i]
            for j in range(i):
                cacc[..., i, j] = cacc[..., j, i]
        var[sl] = acc
        cov[sl] = cacc
    var[~full.full_rank, : T - 1] = np.nan
    var[~add.full_rank, T - 1] = np.nan
    return var, cov


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


def _cross(m, wx1, wb1, wx2, wb2):
    """Return the HC3 cross-moment of two contrasts (:func:`_quad` for one)."""
    mxx, mxb, mbb = m
    return wx1 * wx2 * mxx + (wx1 * wb2 + wb1 * wx2) * mxb + wb1 * wb2 * mbb


# ------------------------------------------------------------------ p-values


def term_statistics(estimate, se, df, *, n_arms: int = 2):
    """Return t and p of every term: two-sided t tests, and the omnibus F test.

    Parameters
    ----------
    estimate, se, df : ndarray, shape (..., T)
        As :func:`fit_terms` returns them; the terms laid out as
        :func:`term_layout` ``(n_arms)`` says.
    n_arms : int
        Number of arms ``k``.

    Returns
    -------
    t, p : ndarray, shape (..., T)
        ``t = estimate / se`` (NaN for the omnibus); ``p`` two-sided from
        Student t with ``df``, for the omnibus ``P(F_{k-1, df} >= F)``.
    """
    lay = term_layout(n_arms)
    if estimate.shape[-1] != lay.size:
        raise ValueError(f"estimate has {estimate.shape[-1]} terms but a trial of "
                         f"{n_arms} arms has {lay.size}")
    with np.errstate(invalid="ignore", divide="ignore"):
        t = estimate / se
    p = np.empty_like(t)
    for i in range(t.shape[-1]):
        d = df[..., i]
        d0 = _series_df(d)
        if i == lay.omnibus:
            p[..., i] = _term_p(estimate[..., i], d if d0 is None else d0, n_arms - 1)
        else:
            p[..., i] = _term_p(t[..., i], d if d0 is None else d0)
    return t, p


def _term_p(stat, df, q: int | None = None):
    """Return the p of one term's tests: two-sided t (``q`` None), else F.

    F on ``(q, df)`` df; the smaller p goes with the larger ``|t|`` or F (for
    one df).
    """
    if q is None:
        return two_sided_p(stat, df)
    return f_sf(stat, q, df)


def _series_df(d: np.ndarray) -> int | None:
    """Return the one integer df of a term's tests if they share one, else None.

    With it :func:`dtitool.stats.ols.two_sided_p` takes its fast finite series.
    """
    d0 = d.flat[0] if d.size else 0.0
    if d.size and np.isfinite(d0) and d0 == int(d0) and np.all(d == d0):
        return int(d0)
    return None


# ------------------------------------------------------------------ every model


@dataclass(frozen=True, slots=True, eq=False)
class BatchModels:
    """Every model of every replicate: arrays of shape (R, J, K, T).

    Axes: replicates, ROIs, outcomes, terms (:attr:`TrialNames.terms
    <dtitool.design.layout.TrialNames.terms>`, laid out by :attr:`layout`).

    Parameters
    ----------
    estimate, se, t, p : ndarray
        Term estimates (score points per 1e-5 mm^2/s dMD), standard errors, t and
        two-sided p. The ``omnibus`` term (three or more arms) holds its F
        statistic as the estimate, NaN as SE and t, and ``P(F >= F_obs)``.
    df : ndarray of float
        Degrees of freedom of the t reference (residual df for ``ols`` and
        ``hc3``; the arm's residual df or a Welch-Satterthwaite df for
        ``welch``); for the omnibus the denominator df (numerator ``k - 1``).
    n : ndarray of int, shape (R,)
        Subjects in the models of each replicate (primary-visit scan present).
    roi_names, outcome_names : tuple of str
    inference : str
        The inference option (:data:`INFERENCE`).
    n_arms : int
        Number of arms ``k`` (``T = 4`` for two, ``2k + 1`` for more).
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
    n_arms: int = 2

    @property
    def layout(self) -> TermLayout:
        """Where each term sits on the last axis."""
        return term_layout(self.n_arms)


def model_arrays(arrays):
    """``(x, b, y, arm, mask)`` of the power models from simulated trials.

    ``x`` is dMD (primary visit minus baseline) per 1e-5 mm^2/s (R, N, J), then
    the change of each of the ROIs' other measures per its scale, ``b``
    the baseline score and ``y`` the score change to the primary visit (R, N, K);
    ``mask`` drops a subject whose primary-visit scan is missing from every model
    of that replicate. ``arm`` (R, N) is, for two arms, a boolean, True in the
    treatment arm (the ``treated`` of earlier versions), and for three or more
    the arm codes (:attr:`CohortArrays.arm <dtitool.simulate.CohortArrays.arm>`,
    control last); :func:`arm_statistics` takes either.
    """
    md, scores = arrays.md, arrays.scores
    primary = getattr(arrays, "primary", 1)
    x = md[..., primary] - md[..., 0]
    x /= DMD_SCALE
    observed = getattr(arrays, "observed", None)
    if observed is None:
        observed = arrays.observed_24h
    arm = getattr(arrays, "arm", None)
    if arm is None:
        arm = np.asarray(arrays.treated, bool)
    else:
        arm = np.asarray(arm)
        if arm.dtype != bool and arm_count(arrays, arm) == 2:
            arm = arm == 0
    extra = getattr(arrays, "extra", None)
    if extra is not None:  # the ROIs' other measures, per their own scale
        scale = np.array([m.scale for m in arrays.design.measures])
        x = np.concatenate([x, (extra[..., primary] - extra[..., 0]) / scale],
                           axis=-1)
    mask = np.asarray(observed, bool) & np.all(np.isfinite(x), axis=-1)
    return (x, scores[..., 0], scores[..., primary] - scores[..., 0], arm, mask)


def arm_count(arrays, arm) -> int:
    """Return the number of arms of simulated trials (the design's, else ``arm``'s)."""
    arms = getattr(getattr(arrays, "design", None), "arms", None)
    if arms is not None:
        return len(arms)
    return arm_codes(arm)[1]


def cohort_statistics(arrays, *, keep_values: bool = False) -> ArmStatistics:
    """:func:`arm_statistics` of simulated trials (:func:`model_arrays`)."""
    x, b, y, arm, mask = model_arrays(arrays)
    return arm_statistics(x, b, y, arm, mask, keep_values=keep_values,
                          n_arms=arm_count(arrays, arm))


def batch_models(arrays, inference: str = "welch") -> BatchModels:
    """Fit the interaction and additive models of every ROI x outcome, all replicates.

    Parameters
    ----------
    arrays : CohortArrays
        Simulated replicate trials (:func:`dtitool.simulate.simulate_arrays`).
    inference : {"welch", "ols", "hc3"}
        Inference option (module docstring); ``welch`` by default, as in
        every analysis and power run.

    Returns
    -------
    BatchModels
        Same numbers as statsmodels (formula OLS, ``t_test`` and ``f_test``;
        ``cov_type="HC3", use_t=True``; per-arm OLS fits and WLS with per-arm
        weights), checked to 1e-8 in p in ``tests/test_inference.py`` and
        ``tests/test_inference_arms.py``.
    """
    return batch_models_multi(arrays, (check_inference(inference),))[inference]


def batch_models_multi(arrays, inferences) -> dict[str, BatchModels]:
    """:func:`batch_models` for several inference options, sharing the data pass."""
    st = cohort_statistics(arrays, keep_values="hc3" in inferences)
    return {inf: models_from_statistics(st, inf, arrays.roi_names,
                                        arrays.outcome_names)
            for inf in inferences}


def models_from_statistics(st: ArmStatistics, inference: str, roi_names=(),
                           outcome_names=()) -> BatchModels:
    """:class:`BatchModels` of one inference option from :func:`arm_statistics`."""
    est, se, df = fit_terms(st, inference)
    t, p = term_statistics(est, se, df, n_arms=st.n_arms)
    return BatchModels(estimate=est, se=se, t=t, p=p, df=df, n=_sum(st.n),
                       roi_names=tuple(roi_names), outcome_names=tuple(outcome_names),
                       inference=inference, n_arms=st.n_arms)
