r"""Multiple imputation: the engine, Rubin's rules, and power's imputed trials.

The array half of dtitool's missing-data handling: :func:`impute` draws the
completed datasets, :func:`rubin` pools their estimates, and
:func:`batch_models_imputed` does both for every replicate of a power run;
:func:`check_missing` checks ``missing=`` and ``imputations=`` for both. The
analysis of one dataset (complete case, multiple imputation of a changes table,
who is missing and why, the tipping point) is :mod:`dtitool.stats.missing`,
which re-exports these names.

**Imputation model** (:func:`impute`). Each ROI's block of primary-visit
variables, ``(dMD_j, score change of every outcome)``, is imputed on its own,
**within each arm** (so every relation may differ between the arms, as the
group x dMD analysis requires; any number of arms), from a joint normal linear
model given the complete predictors ``[1, baseline scores, covariates, baseline
MD of ROI j]`` (the baseline MD carries the baseline scan's noise, part of dMD). Every
variable of that ROI's analysis models (score change, dMD, group, baseline
score) is in it, so the imputation is congenial with the analysis; other ROIs
are left out, which loses nothing when a whole scan is lost and keeps the model
small enough for a 33-patient arm (6 coefficients per regression with two
outcomes). Each incomplete variable is drawn from a Bayesian normal linear
regression on the complete predictors and the block's other variables,
exactly as ``mice.impute.norm`` (van Buuren 2018, algorithm 3.1; Rubin 1987,
p. 167): with ``n`` observed rows, ``p`` predictors, least-squares
``beta_hat``, residual sum of squares ``SSR`` and ``V = (X'X)^{-1}``,

.. math::

    \dot\sigma^2 = SSR / g, \quad g \sim \chi^2_{n-p}; \qquad
    \dot\beta = \hat\beta + \dot\sigma \, \mathrm{chol}(V) \, z_1; \qquad
    y_{mis} = X_{mis} \dot\beta + \dot\sigma z_2,

a draw from the posterior predictive distribution under the prior
``p(beta, sigma^2) ~ 1 / sigma^2`` (mice adds a ridge of 1e-5 to ``X'X``; here a
rank-deficient regression is an error instead). When the pattern is monotone
(lost scans, lost visits, or both) the variables are drawn once, in order,
each given the ones before it: dMD first then the scores when a visit is lost,
the scores first then dMD when only scans are (an exact posterior predictive
draw; Rubin 1987, section 5.4). Other patterns run chained equations (fully
conditional specification; van Buuren 2018, ch. 4), every variable given all
the others, for :data:`ITERATIONS` rounds from random observed values of the
arm, the last round giving the imputation.

**Pooling** (:func:`rubin`): ``Q`` the mean of the ``M`` estimates, ``U`` the
mean within-imputation variance, ``B`` the between-imputation variance,
``T = U + (1 + 1/M) B``; ``t = Q / sqrt(T)`` referred to Student t with the
Barnard and Rubin (1999) df ``(1/nu_old + 1/nu_obs)^-1``, ``nu_old = (M - 1) /
lambda^2``, ``nu_obs = (nu_com + 1) / (nu_com + 3) nu_com (1 - lambda)``,
``lambda = (1 + 1/M) B / T``, ``nu_com`` the complete-data df (for ``welch``
the mean over imputations of its Welch-Satterthwaite df). A model in which
nothing was imputed has ``B = 0`` and is the complete-data analysis.

The omnibus F test of a trial with three or more arms (``q = k - 1``
interaction contrasts) is pooled by the D1 statistic of Li, Raghunathan and
Rubin (1991) (:func:`d1`): with ``Q``, ``U`` the mean contrast vector and
covariance and ``B`` the between-imputation covariance,
``r = (1 + 1/M) tr(B U^{-1}) / q`` and ``D1 = Q' U^{-1} Q / (q (1 + r))`` on
``(q, nu)`` df, ``nu`` Reiter's (2007) small-sample df from the complete-data
df (as mitml's ``testModels(method="D1", df.com=)``, which ``mice::D1`` calls).
Under ``welch`` the complete-data test is Welch's (1951), whose F is the Wald F
of the contrasts (with the arms' separate variances) divided by ``1 + 2 (k - 2)
/ (3 f)`` (``f`` its denominator df): D1 is divided by the mean of that factor
over the imputations and takes the mean ``f`` as the complete-data df, so that,
as for the t terms, a model with nothing imputed is the complete-data test.

Randomness: the draws of replicate block ``b`` come from
``SeedSequence(entropy, spawn_key=(..., IMPUTATION_STREAM, b, s))`` (``s = 0``
the normal and uniform draws, ``s = 1 + t`` the chi-square draws of round
``t``), so an imputation depends only on the seed and the replicate index,
never on chunking or workers.

References
----------
Rubin DB (1987). Multiple Imputation for Nonresponse in Surveys. Wiley.
Barnard J, Rubin DB (1999). Small-sample degrees of freedom with multiple
imputation. Biometrika 86:948.
Li KH, Raghunathan TE, Rubin DB (1991). Large-sample significance levels from
multiply imputed data using moment-based statistics and an F reference
distribution. J Am Stat Assoc 86:1065.
Reiter JP (2007). Small-sample degrees of freedom for multi-component
significance tests with multiple imputation for missing data. Biometrika 94:502.
van Buuren S (2018). Flexible Imputation of Missing Data, 2nd ed. CRC Press.
von Hippel PT (2016). New confidence intervals and bias comparisons show that
maximum likelihood can beat multiple imputation in small samples. Struct Equ
Modeling 23:422 (the small-sample bias of imputing a covariate; docs/model.md,
"Missing data").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dtitool._constants import DMD_SCALE
from dtitool._validation import _NOT_GIVEN, rng_argument
from dtitool.simulate import BLOCK_SIZE, as_seed_sequence
from dtitool.stats.inference import (
    BatchModels,
    arm_codes,
    arm_count,
    arm_statistics,
    fit_terms,
    model_arrays,
    term_layout,
)
from dtitool.stats.ols import solve_gram, two_sided_p
from dtitool.stats.omnibus import f_sf, wald_f

__all__ = [
    "DEFAULT_IMPUTATIONS",
    "IMPUTATION_STREAM",
    "ITERATIONS",
    "MISSING",
    "ImputationData",
    "Pooled",
    "batch_models_imputed",
    "check_missing",
    "d1",
    "impute",
    "rubin",
]

MISSING = ("complete-case", "mi")
"""Ways to handle missing 24 h data: complete-case analysis or multiple imputation."""

DEFAULT_IMPUTATIONS = 20
"""Imputations per dataset. With 20, the efficiency loss against infinitely many
is under 1 % of the variance up to 20 % missing information (Rubin 1987,
``(1 + gamma / M)^-1``), and the Monte Carlo SE of a pooled p near 0.05 is small
(Graham et al. 2007, Prev Sci 8:206, recommend 20 at 10-30 % missing)."""

ITERATIONS = 10
"""Rounds of the chained equations for a non-monotone pattern (a monotone one,
as every simulated pattern, is drawn in one pass). Within an arm the outcomes'
changes correlate about 0.7, so the chain keeps about 0.49^t of its random
start after t rounds: 10 rounds (twice mice's default ``maxit``) leave 0.1 %."""

IMPUTATION_STREAM = 0x696D7075
"""Spawn key (appended to a run's) of the imputation draws ("impu" in ASCII)."""


def check_missing(missing, imputations=DEFAULT_IMPUTATIONS) -> tuple[str, int]:
    """Return ``(missing, imputations)`` checked, or raise ValueError.

    ``imputations`` None means :data:`DEFAULT_IMPUTATIONS`; it is checked only
    for ``mi``.
    """
    if missing not in MISSING:
        raise ValueError(f"missing must be one of {', '.join(MISSING)}; got "
                         f"{missing!r}")
    if imputations is None:
        imputations = DEFAULT_IMPUTATIONS
    if missing == "mi" and (isinstance(imputations, bool) or not isinstance(
            imputations, int | np.integer) or imputations < 2):
        raise ValueError(f"imputations must be an integer >= 2 (Rubin's between-"
                         f"imputation variance needs two); got {imputations!r}")
    return missing, int(imputations)


# ------------------------------------------------------------------ the engine


@dataclass(frozen=True, slots=True, eq=False)
class ImputationData:
    """Datasets to impute, as arrays over ``D`` datasets and ``N`` subjects.

    Parameters
    ----------
    x : ndarray, shape (D, N, J)
        dMD per ROI per :data:`~dtitool._constants.DMD_SCALE` (NaN: missing).
    y : ndarray, shape (D, N, K)
        Score change per outcome (NaN: missing).
    b : ndarray, shape (D, N, K)
        Baseline scores (complete where ``use``).
    md0 : ndarray, shape (D, N, J)
        Baseline MD per ``DMD_SCALE`` (complete where ``use``).
    treated : ndarray of bool or int, shape (D, N)
        Each subject's arm: for two arms a boolean, True in the treatment arm;
        for any number, the arm codes ``0..k-1`` (control last), as
        :func:`dtitool.stats.inference.arm_codes` reads them.
    use : ndarray of bool, shape (D, N)
        Subjects in the analysis (others are neither used nor imputed).
    cov : ndarray, shape (D, N, C), optional
        Further complete covariates (numeric; categories as 0/1 columns).
    n_arms : int, optional
        Number of arms ``k`` for arm codes (default: the largest code + 1).
    """

    x: np.ndarray
    y: np.ndarray
    b: np.ndarray
    md0: np.ndarray
    treated: np.ndarray
    use: np.ndarray
    cov: np.ndarray | None = None
    n_arms: int | None = None


def _blocks(data: ImputationData):
    """Return the ROI blocks: variables and complete predictors, (D, J, N, .).

    Variables ``[x_j, y_1..y_K]``, predictors ``[1, b_1..b_K, cov, md0_j]``.
    """
    x = np.asarray(data.x, float)
    y = np.asarray(data.y, float)
    D, N, J = x.shape
    K = y.shape[-1]
    V = np.concatenate([np.moveaxis(x, -1, 1)[..., None],
                        np.broadcast_to(y[:, None], (D, J, N, K))], axis=-1)
    cov = (np.zeros((D, N, 0)) if data.cov is None
           else np.asarray(data.cov, float))
    common = np.concatenate([np.ones((D, N, 1)), np.asarray(data.b, float), cov],
                            axis=-1)
    P = np.concatenate([np.broadcast_to(common[:, None], (D, J, N, common.shape[-1])),
                        np.moveaxis(np.asarray(data.md0, float), -1, 1)[..., None]],
                       axis=-1)
    return V, P


@dataclass(frozen=True, slots=True, eq=False)
class _Draws:
    """Random numbers of one imputation run, axes (D, J, M, ...).

    ``init`` (D, J, M, q, N) uniforms for the starting values (iterative runs
    only); per round ``t``: ``z_beta[t]`` (D, J, M, k, q, p) and ``z_eps[t]``
    (D, J, M, q, N) standard normals, ``chi2[t]`` (D, J, M, k, q) chi-square
    variates with each regression's residual df (arm axis: the ``k`` arms in
    code order).
    """

    init: np.ndarray | None
    z_beta: np.ndarray
    z_eps: np.ndarray
    chi2: np.ndarray


def _draw(seed, start: int, D: int, J: int, M: int, N: int, q: int, p: int,
          iterations: int, df: np.ndarray) -> _Draws:
    """Draw per replicate block of BLOCK_SIZE datasets (see the module docstring).

    ``df`` (D, J, k, q): residual df of each regression, per arm (the
    chi-square draws depend on it).
    """
    if start % BLOCK_SIZE:
        raise ValueError(f"start must be a multiple of {BLOCK_SIZE} (a block "
                         f"boundary); got {start}")
    ss = as_seed_sequence(seed)
    nb = -(-D // BLOCK_SIZE)
    B = nb * BLOCK_SIZE
    k = df.shape[2]
    init = np.empty((B, J, M, q, N)) if iterations > 1 else None
    z_beta = np.empty((iterations, B, J, M, k, q, p))
    z_eps = np.empty((iterations, B, J, M, q, N))
    chi2 = np.empty((iterations, B, J, M, k, q))
    # Rows past the last dataset (the end of the last block) get a dummy df; they
    # come after every real row of their stream, so they change nothing before.
    half = np.ones((B, J, k, q))
    half[:D] = np.where(df >= 1, df, 1.0) / 2.0
    for i in range(nb):
        blk = start // BLOCK_SIZE + i
        s = slice(i * BLOCK_SIZE, (i + 1) * BLOCK_SIZE)
        key = (*ss.spawn_key, IMPUTATION_STREAM, blk)
        g = np.random.Generator(np.random.PCG64(
            np.random.SeedSequence(ss.entropy, spawn_key=(*key, 0))))
        if init is not None:
            g.random(out=init[s])
        shape = np.broadcast_to(half[s, :, None], (BLOCK_SIZE, J, M, k, q))
        for t in range(iterations):
            g.standard_normal(out=z_beta[t, s])
            g.standard_normal(out=z_eps[t, s])
            gt = np.random.Generator(np.random.PCG64(
                np.random.SeedSequence(ss.entropy, spawn_key=(*key, 1 + t))))
            chi2[t, s] = 2.0 * gt.standard_gamma(shape)
    cut = slice(0, D)
    return _Draws(init=None if init is None else init[cut], z_beta=z_beta[:, cut],
                  z_eps=z_eps[:, cut], chi2=chi2[:, cut])


def _arm_centred(P: np.ndarray, arms: np.ndarray) -> np.ndarray:
    """``P`` (E, N, c) minus its mean over each arm's used rows (0 for unused rows).

    ``arms`` (E, k, N): 1 where a used subject is in the arm. Centring changes
    no fitted value; it keeps ``X'X`` well conditioned (baseline MD per 1e-5
    mm^2/s is ~89 with SD ~4).
    """
    used = arms.sum(axis=1) > 0  # (E, N)
    P = np.where(used[..., None], P, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.einsum("ean,enc->eac", arms, P) / arms.sum(axis=2)[..., None]
    own = np.argmax(arms, axis=1)  # each subject's arm (0 for unused rows)
    out = P - np.take_along_axis(mean, own[..., None], axis=1)
    return np.where(used[..., None], out, 0.0)


def _plan(mis: np.ndarray):
    """Visit order of a block's variables ``[x, y_1..y_K]`` and their predictors.

    ``mis`` (..., N, q): cells to impute. When every subject's missing cells are
    the last ones of an order (a monotone pattern: scans only, or whole 24 h
    visits, or both), each variable is drawn once from its regression on the
    complete predictors and the variables before it: an exact draw from the
    joint normal model's posterior predictive (Rubin 1987, section 5.4). The
    order tried first puts dMD first (a lost visit: dMD, then the scores given
    dMD), then dMD last (a lost scan: dMD given the observed scores). Imputing
    the outcome given the covariate leaves the analysis' slope unbiased, while
    a covariate imputed given the outcome carries its parameter uncertainty
    into the slope's denominator (docs/model.md, "Missing data"). Otherwise
    every variable is predicted by all the others (chained equations,
    iterated).

    Returns
    -------
    order : list of int
        Variables in visit order.
    predictors : dict of int to list of int
        Variable -> the block variables that predict it.
    monotone : bool
    """
    q = mis.shape[-1]
    for order in (list(range(q)), [*range(1, q), 0]):
        m = mis[..., order]
        # missing cells form a suffix: once missing, missing to the end
        if not (m[..., :-1] & ~m[..., 1:]).any():
            return order, {v: order[:i] for i, v in enumerate(order)}, True
    return list(range(q)), {v: [i for i in range(q) if i != v] for v in range(q)}, False


def impute(data: ImputationData, *, imputations: int = DEFAULT_IMPUTATIONS,
           rng=None, start: int = 0, iterations: int | None = None,
           seed=_NOT_GIVEN):
    """Impute every missing dMD and score change ``imputations`` times.

    Each ROI's block ``(dMD_j, score changes)`` is imputed on its own, within
    each arm, from the baseline scores, the ROI's baseline MD and the covariates
    (module docstring), so every ROI's models get imputations made with that
    ROI's data.

    Parameters
    ----------
    data : ImputationData
    imputations : int
        ``M``, completed datasets per dataset.
    rng : None, int or SeedSequence
        Root of the draws; dataset ``d`` is replicate ``start + d`` of its streams.
    start : int
        Replicate index of the first dataset (a multiple of ``BLOCK_SIZE``).
    iterations : int, optional
        Rounds of the chained equations for a non-monotone pattern (default
        :data:`ITERATIONS`); a monotone pattern is drawn in one pass.

    Returns
    -------
    x : ndarray, shape (D, M, N, J)
        Completed dMD (observed values as given; NaN for subjects not used).
    y : ndarray, shape (D, M, N, J, K)
        Completed score changes, per ROI block (identical across ROIs where
        observed).
    ok : ndarray of bool, shape (D,)
        False where a dataset could not be imputed (an arm with no more
        observed values than predictors, or collinear predictors); its
        imputed values are NaN.

    Notes
    -----
    Arrays are processed for all datasets, ROIs, imputations and arms at
    once. A regression whose rows have no imputed predictor (every regression
    of a monotone pattern) is fitted once per dataset and shared by its
    imputations, and predictions are made only for subjects with something
    missing.
    """
    rng = rng_argument(rng, seed, where="impute")
    V, P = _blocks(data)
    D, J, N, q = V.shape
    M = int(imputations)
    use = np.broadcast_to(np.asarray(data.use, bool)[:, None], (D, J, N))
    codes, k = arm_codes(data.treated, data.n_arms, shape=(D, N))
    codes = np.broadcast_to(codes[:, None], (D, J, N))
    E = D * J
    V, P = V.reshape(E, N, q), P.reshape(E, N, -1)
    use, codes = use.reshape(E, N), codes.reshape(E, N)
    obs = np.isfinite(V) & use[..., None]
    mis = ~np.isfinite(V) & use[..., None]
    order, preds, monotone = _plan(mis)
    if monotone:
        iterations = 1
    elif iterations is None:
        iterations = ITERATIONS
    elif isinstance(iterations, bool) or not isinstance(
            iterations, int | np.integer) or iterations < 1:
        raise ValueError(f"iterations must be a positive integer; got {iterations!r}")
    member = codes[:, None, :] == np.arange(k)[None, :, None]  # (E, k, N)
    arms = (member & use[:, None, :]).astype(float)
    P = _arm_centred(P, arms)
    P[..., 0] = np.where(use, 1.0, 0.0)
    pc = P.shape[-1]
    pmax = pc + q - 1

    # Fixed part of every regression: rows whose predictors are all observed.
    fixed = {}
    df = np.zeros((E, k, q))
    for v in order:
        inc = preds[v]
        w_fix = obs[..., v] & obs[..., inc].all(axis=-1)
        Z = np.concatenate([P, np.where(w_fix[..., None], V[..., inc], 0.0)], axis=-1)
        Z = np.where(w_fix[..., None], Z, 0.0)
        yv = np.where(w_fix, V[..., v], 0.0)
        G = np.einsum("ean,enp,enr->eapr", arms, Z, Z)
        g = np.einsum("ean,enp,en->eap", arms, Z, yv)
        vv = np.einsum("ean,en->ea", arms, yv * yv)
        df[..., v] = (np.einsum("ean,en->ea", arms, obs[..., v].astype(float))
                      - Z.shape[-1])
        fixed[v] = (G, g, vv, obs[..., v] & ~w_fix)
    draws = _draw(rng, start, D, J, M, N, q, pmax, iterations,
                  df.reshape(D, J, k, q))

    def flat(a):  # (D, J, M, ...) -> (E, M, ...)
        return None if a is None else a.reshape(E, *a.shape[2:])

    # Work on the subjects with something to impute (gathered; at most Nm each).
    hole = mis.any(axis=-1)
    Nm = max(int(hole.sum(axis=1).max(initial=0)), 1)
    rows = np.argsort(~hole, axis=1, kind="stable")[:, :Nm]  # (E, Nm)
    live = np.take_along_axis(hole, rows, axis=1)
    mis_m = np.take_along_axis(mis, rows[..., None], axis=1) & live[..., None]
    P_m = np.take_along_axis(P, rows[..., None], axis=1)
    arm_of = np.take_along_axis(codes, rows, axis=1)  # (E, Nm)
    full = np.where(obs, V, np.nan)
    cur = np.broadcast_to(np.take_along_axis(full, rows[..., None], axis=1)[:, None],
                          (E, M, Nm, q)).copy()
    if iterations > 1:
        u = np.take_along_axis(flat(draws.init), rows[:, None, None, :], axis=3)
        _initial_values(cur, mis_m, obs, arms, arm_of, full, u)
    ok = np.ones(E, bool)
    for t in range(iterations):
        z_beta, chi2 = flat(draws.z_beta[t]), flat(draws.chi2[t])
        z_eps = np.take_along_axis(flat(draws.z_eps[t]), rows[:, None, None, :],
                                   axis=3)  # (E, M, q, Nm)
        for v in order:
            if not mis[..., v].any():
                continue
            inc = preds[v]
            G, g, vv, w_var = fixed[v]
            G, g, vv = G[:, None], g[:, None], vv[:, None]
            if w_var.any():  # rows with imputed predictors: per imputation
                # such rows have a missing cell, so they are among the gathered
                w_m = np.take_along_axis(w_var, rows, axis=1) & live
                Zv = np.concatenate([np.broadcast_to(P_m[:, None], (E, M, Nm, pc)),
                                     cur[..., inc]], axis=-1)
                Zv = np.where(w_m[:, None, :, None], Zv, 0.0)
                yv = np.where(w_m[:, None], cur[..., v], 0.0)
                arm_m = (arm_of[:, None, :]
                         == np.arange(k)[None, :, None]).astype(float)
                G = G + np.einsum("ean,emnp,emnr->emapr", arm_m, Zv, Zv)
                g = g + np.einsum("ean,emnp,emn->emap", arm_m, Zv, yv)
                vv = vv + np.einsum("ean,emn->ema", arm_m, yv * yv)
            p = pc + len(inc)
            beta, sigma, good = _posterior_draw(G, g, vv, df[..., v], chi2[..., v],
                                                z_beta[..., v, :p])
            # an arm with nothing to impute may lack data without harm
            need = np.stack([(mis[..., v] & (arms[:, a] > 0)).any(axis=1)
                             for a in range(k)], axis=-1)  # (E, k)
            ok &= (good | ~need[:, None]).all(axis=(1, 2))
            # each subject's own arm's parameters
            b_sub = np.take_along_axis(beta, arm_of[:, None, :, None],
                                       axis=2)  # (E, M, Nm, p)
            s_sub = np.take_along_axis(sigma, arm_of[:, None, :], axis=2)  # (E,M,Nm)
            pred = np.einsum("enp,emnp->emn", P_m, b_sub[..., :pc])
            if inc:
                pred += np.einsum("emnp,emnp->emn", cur[..., inc], b_sub[..., pc:])
            pred += s_sub * z_eps[:, :, v]
            cur[..., v] = np.where(mis_m[:, None, :, v], pred, cur[..., v])
    out = np.broadcast_to(full[:, None], (E, M, N, q)).copy()
    np.put_along_axis(out, np.broadcast_to(rows[:, None, :, None], (E, M, Nm, q)),
                      np.where(live[:, None, :, None], cur,
                               np.take_along_axis(out, rows[:, None, :, None],
                                                  axis=2)), axis=2)
    out[~ok] = np.where(obs[~ok][:, None], out[~ok], np.nan)
    out = np.where(use[:, None, :, None], out, np.nan).reshape(D, J, M, N, q)
    return (np.moveaxis(out[..., 0], 1, -1), np.moveaxis(out[..., 1:], 1, -2),
            ok.reshape(D, J).all(axis=1))


def _posterior_draw(G, g, vv, df, chi2, z):
    """Draw ``(beta, sigma)`` of mice's normal model from sufficient statistics.

    Shapes (``k`` arms): ``G`` (E, M', k, p, p) with ``M'`` 1 or M, ``g``
    (E, M', k, p), ``vv`` (E, M', k), ``df`` (E, k), ``chi2`` (E, M, k), ``z``
    (E, M, k, p). Returns ``beta`` (E, M, k, p), ``sigma`` (E, M, k) and ``ok``
    (E, M', k).
    """
    bhat, V, ok = solve_gram(G, g)
    ok &= df[:, None] >= 1
    ssr = vv - np.einsum("...p,...p->...", bhat, g)
    ok &= ssr > 0
    eye = np.eye(G.shape[-1])
    L = np.linalg.cholesky(np.where(ok[..., None, None], V, eye))
    with np.errstate(invalid="ignore", divide="ignore"):
        sigma = np.sqrt(np.where(ok, ssr, 1.0) / chi2)
    beta = np.where(ok[..., None], bhat, 0.0) + sigma[..., None] * np.einsum(
        "...pr,...r->...p", L, z)
    return beta, sigma, ok


def _initial_values(cur, mis_m, obs, arms, arm_of, full, u):
    """Start the chain: each missing value a random observed value of its arm.

    As mice's default start (a random draw from the observed values), within
    the arm. ``cur`` (E, M, Nm, q) gathered subjects, ``arm_of`` (E, Nm) their
    arms, ``u`` (E, M, q, Nm) uniforms.
    """
    E, M, Nm, q = cur.shape
    for v in range(q):
        if not mis_m[..., v].any():
            continue
        fill = np.zeros((E, M, Nm))
        for a in range(arms.shape[1]):
            o = obs[..., v] & (arms[:, a] > 0)
            n = o.sum(axis=1)  # (E,)
            order = np.argsort(~o, axis=1, kind="stable")  # observed rows first
            k = np.minimum((u[:, :, v] * n[:, None, None]).astype(int),
                           np.maximum(n - 1, 0)[:, None, None])
            src = np.take_along_axis(order, k.reshape(E, -1), axis=1)
            val = np.take_along_axis(full[..., v], src, axis=1).reshape(E, M, Nm)
            fill = np.where((arm_of == a)[:, None], val, fill)
        cur[..., v] = np.where(mis_m[:, None, :, v], fill, cur[..., v])


# ------------------------------------------------------------------ Rubin's rules


@dataclass(frozen=True, slots=True, eq=False)
class Pooled:
    """Rubin's rules for one or many estimates (arrays of the same shape).

    Parameters
    ----------
    estimate : ndarray
        Mean of the imputations' estimates ``Q``.
    se : ndarray
        ``sqrt(T)``, ``T = U + (1 + 1/M) B``.
    df : ndarray
        Barnard-Rubin degrees of freedom (the complete-data df where ``B = 0``).
    t, p : ndarray
        ``Q / sqrt(T)`` and its two-sided p.
    fmi : ndarray
        Fraction of missing information ``(r + 2 / (df + 3)) / (1 + r)``,
        ``r = (1 + 1/M) B / U`` (van Buuren 2018, eq. 2.24-2.25).
    within, between : ndarray
        ``U`` and ``B``.
    """

    estimate: np.ndarray
    se: np.ndarray
    df: np.ndarray
    t: np.ndarray
    p: np.ndarray
    fmi: np.ndarray
    within: np.ndarray
    between: np.ndarray


def rubin(estimate, se, df_com, *, axis: int = 0) -> Pooled:
    """Pool per-imputation estimates by Rubin's rules with Barnard-Rubin df.

    Parameters
    ----------
    estimate, se : array_like
        Per-imputation estimates and standard errors; imputations along ``axis``.
    df_com : array_like
        Complete-data degrees of freedom per imputation (same shape; their mean
        over imputations is used: under ``welch`` they vary).
    axis : int
        The imputation axis.

    Returns
    -------
    Pooled

    Examples
    --------
    >>> r = rubin([1.0, 1.2, 0.8], [0.5, 0.5, 0.5], [50, 50, 50])
    >>> round(float(r.se), 4), round(float(r.df), 2)
    (0.5508, 24.58)
    """
    q = np.moveaxis(np.asarray(estimate, float), axis, 0)
    u = np.moveaxis(np.asarray(se, float), axis, 0) ** 2
    nu = np.moveaxis(np.asarray(df_com, float), axis, 0).mean(axis=0)
    M = q.shape[0]
    # identical estimates (nothing imputed): B exactly 0, Q exactly the estimate
    same = (q == q[0]).all(axis=0)
    qbar = np.where(same, q[0], q.mean(axis=0))
    ubar = u.mean(axis=0)
    b = np.where(same, 0.0, q.var(axis=0, ddof=1))
    f = 1.0 + 1.0 / M
    total = ubar + f * b
    with np.errstate(invalid="ignore", divide="ignore"):
        lam = f * b / total
        nu_old = (M - 1) / lam**2
        nu_obs = (nu + 1.0) / (nu + 3.0) * nu * (1.0 - lam)
        df = np.where(b > 0, 1.0 / (1.0 / nu_old + 1.0 / nu_obs), nu)
        tval = qbar / np.sqrt(total)
        r = f * b / ubar
        fmi = np.where(b > 0, (r + 2.0 / (df + 3.0)) / (1.0 + r), 0.0)
    p = two_sided_p(tval, df)
    return Pooled(estimate=qbar, se=np.sqrt(total), df=df, t=tval, p=p, fmi=fmi,
                  within=ubar, between=b)


def d1(estimate, cov, df_com, *, scale=None):
    r"""Pool a Wald test of ``q`` contrasts over imputations: the D1 statistic.

    Parameters
    ----------
    estimate : array_like, shape (M, ..., q)
        Per imputation (first axis) the contrasts' estimates.
    cov : array_like, shape (M, ..., q, q)
        Their covariance matrices.
    df_com : array_like, shape (M, ...)
        Complete-data denominator df per imputation (their mean is used).
    scale : array_like, shape (M, ...), optional
        Per imputation the divisor of the complete-data F (Welch's correction;
        module docstring); D1 is divided by its mean. Default 1.

    Returns
    -------
    F, df1, df2 : ndarray, shape (...)
        D1, ``q`` and Reiter's (2007) df; where the estimates are the same in
        every imputation, ``B = 0`` and ``df2`` is the complete-data df.

    Notes
    -----
    ``r = (1 + 1/M) tr(B \bar U^{-1}) / q``,
    ``D1 = \bar Q' \bar U^{-1} \bar Q / (q (1 + r))``. With ``t = q (M - 1)``,
    ``a = r t / (t - 2)`` and ``\nu^* = (\nu + 1) / (\nu + 3) \nu``,

    .. math::

        \nu_{D1} = 4 + \Big[\frac{1}{\nu^* - 4(1 + a)} + \frac{1}{t - 4}
        \frac{a^2 (\nu^* - 2(1 + a))}{(1 + a)^2 (\nu^* - 4(1 + a))}\Big]^{-1}

    (mitml ``testModels``); where that is undefined (``t <= 4`` or
    ``\nu^* <= 4 (1 + a)``) the large-sample df of Li et al. (1991),
    ``4 + (t - 4) (1 + (1 - 2/t) / r)^2`` (``t (1 + 1/q) (1 + 1/r)^2 / 2`` for
    ``t <= 4``), capped at ``\nu^*``.

    Examples
    --------
    >>> Q = [[1.0, 0.5], [1.2, 0.4], [0.8, 0.6], [1.1, 0.45]]
    >>> U = [np.eye(2) * 0.25] * 4
    >>> F, df1, df2 = d1(Q, U, [60.0] * 4)
    >>> round(float(F), 3), float(df1), round(float(df2), 2)
    (2.361, 2.0, 42.15)
    """
    Q = np.asarray(estimate, float)
    U = np.asarray(cov, float)
    nu = np.asarray(df_com, float).mean(axis=0)
    M, q = Q.shape[0], Q.shape[-1]
    if M < 2:
        raise ValueError(f"d1 needs two or more imputations; got {M}")
    qbar = Q.mean(axis=0)
    ubar = U.mean(axis=0)
    dev = Q - qbar
    B = np.einsum("m...i,m...j->...ij", dev, dev) / (M - 1)
    same = (Q == Q[0]).all(axis=(0, -1))
    f = 1.0 + 1.0 / M
    uinv = _inverse(ubar)
    r = np.where(same, 0.0, f * np.einsum("...ij,...ji->...", uinv, B) / q)
    s = 1.0 if scale is None else np.asarray(scale, float).mean(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        F = wald_f(qbar, (1.0 + r)[..., None, None] * ubar) / s
        t = q * (M - 1)
        a = r * t / (t - 2) if t > 2 else np.full_like(r, np.inf)
        vstar = (nu + 1.0) / (nu + 3.0) * nu
        gap = vstar - 4.0 * (1.0 + a)
        reiter = 4.0 + 1.0 / (1.0 / gap + (1.0 / (t - 4) if t > 4 else np.nan)
                              * a * a * (vstar - 2.0 * (1.0 + a))
                              / ((1.0 + a) ** 2 * gap))
        if t > 4:
            li = 4.0 + (t - 4) * (1.0 + (1.0 - 2.0 / t) / r) ** 2
        else:
            li = t * (1.0 + 1.0 / q) * (1.0 + 1.0 / r) ** 2 / 2.0
        df2 = np.where((t > 4) & (gap > 0), reiter, np.fmin(li, vstar))
    df2 = np.where(same, nu, df2)
    return F, np.full(np.shape(F), float(q)), df2


def _inverse(A):
    """Batched inverse of square matrices; NaN where singular or not finite."""
    ok = np.all(np.isfinite(A), axis=(-2, -1))
    safe = np.where(ok[..., None, None], A, np.eye(A.shape[-1]))
    try:
        inv = np.linalg.inv(safe)
    except np.linalg.LinAlgError:
        inv = np.linalg.pinv(safe)
        ok = ok & (np.linalg.matrix_rank(safe) == A.shape[-1])
    return np.where(ok[..., None, None], inv, np.nan)


# ------------------------------------------------------------ power: every replicate


def batch_models_imputed(arrays, inferences, *, imputations: int = DEFAULT_IMPUTATIONS,
                         rng=None, seed=_NOT_GIVEN
                         ) -> tuple[dict[str, BatchModels], np.ndarray]:
    """Impute every replicate ``imputations`` times, fit all, pool by Rubin's rules.

    Parameters
    ----------
    arrays : CohortArrays
        Simulated trials; a missing primary-visit scan (and, with
        ``missing.scores``, the primary-visit ratings) is imputed from the arm's
        observed data.
    inferences : sequence of str
        Inference options to pool (:data:`~dtitool.stats.inference.INFERENCE`).
    imputations : int
    rng : SeedSequence or int
        Root of the imputation draws (the run's stream: replicate ``i`` is
        imputed from block ``i // BLOCK_SIZE`` of ``(..., IMPUTATION_STREAM)``).

    Returns
    -------
    models : dict of str to BatchModels
        Pooled estimate, ``sqrt(T)``, Barnard-Rubin df, t and p per replicate,
        model and term; the omnibus term (three or more arms) pooled by
        :func:`d1` (its F, NaN SE and t, its denominator df). ``n`` counts every
        subject (imputed ones included).
    imputed : ndarray of int, shape (R,)
        Subjects with imputed values per replicate.

    Notes
    -----
    All ``R x M`` completed datasets go through the batched engine at once
    (:func:`dtitool.stats.inference.arm_statistics` and ``fit_terms``); no loop
    over replicates or imputations.
    """
    rng = rng_argument(rng, seed, where="batch_models_imputed")
    x, b, y, arm, mask = model_arrays(arrays)
    k = arm_count(arrays, arm)
    R, N, J = x.shape
    K = y.shape[-1]
    x = np.where(mask[..., None], x, np.nan)
    scored = (arrays.scored if hasattr(arrays, "scored")
              else getattr(arrays, "scored_24h", None))
    if scored is not None:
        y = np.where(np.asarray(scored, bool)[..., None], y, np.nan)
    data = ImputationData(x=x, y=y, b=b, md0=arrays.md[..., 0] / DMD_SCALE,
                          treated=arm, use=np.ones((R, N), bool), n_arms=k)
    M = int(imputations)
    # Simulated trials lose scans, or whole visits: a monotone pattern, drawn in
    # one pass whatever the chunk holds.
    X, Y, ok = impute(data, imputations=M, rng=rng, start=arrays.start)
    imputed = (~np.isfinite(np.concatenate([x, y], axis=-1))).any(axis=-1).sum(axis=1)
    X = X.reshape(R * M, N, J)
    bb = np.repeat(b, M, axis=0)
    tt = np.repeat(arm, M, axis=0)
    every = np.ones((R * M, N), bool)
    keep = "hc3" in inferences
    if scored is None:  # scores observed: the same in every ROI block, one pass
        parts = [arm_statistics(X, bb, Y[..., 0, :].reshape(R * M, N, K), tt, every,
                                keep_values=keep, n_arms=k)]
    else:  # each ROI's models with that ROI's imputed scores
        parts = [arm_statistics(X[..., j:j + 1], bb,
                                Y[..., j, :].reshape(R * M, N, K), tt, every,
                                keep_values=keep, n_arms=k) for j in range(J)]
    out = {}
    for inf in inferences:
        e, s, t, p, df = _pooled_terms(parts, inf, R, M)
        bad = ~ok[:, None, None, None]
        out[inf] = BatchModels(
            estimate=np.where(bad, np.nan, e), se=np.where(bad, np.nan, s),
            t=np.where(bad, np.nan, t), p=np.where(bad, np.nan, p),
            df=np.where(bad, np.nan, df), n=np.full(R, N),
            roi_names=tuple(arrays.roi_names),
            outcome_names=tuple(arrays.outcome_names), inference=inf, n_arms=k)
    return out, imputed


def _pooled_terms(parts, inference: str, R: int, M: int):
    """Estimate, SE, t, p and df of every term, pooled over the imputations.

    ``parts``: the arm statistics of the ``R x M`` completed datasets (one per
    ROI block, or one for all ROIs). The t terms by Rubin's rules, the omnibus
    (three or more arms) by :func:`d1`.
    """
    lay = term_layout(parts[0].n_arms)
    o = lay.omnibus
    fits = [fit_terms(st, inference, contrast_cov=o is not None) for st in parts]
    est, se, df = (np.concatenate([f[i] for f in fits], axis=1) for i in range(3))
    shape = (R, M, *est.shape[1:])
    est, se, df = est.reshape(shape), se.reshape(shape), df.reshape(shape)
    if o is None:
        pooled = rubin(est, se, df, axis=1)
        return pooled.estimate, pooled.se, pooled.t, pooled.p, pooled.df
    pooled = rubin(est[..., :o], se[..., :o], df[..., :o], axis=1)
    cov = np.concatenate([f[3] for f in fits], axis=1)
    cov = cov.reshape(R, M, *cov.shape[1:])
    k, q = lay.n_arms, lay.n_arms - 1
    nu = np.moveaxis(df[..., o], 1, 0)
    # Welch's omnibus F is the Wald F over 1 + 2 (k - 2) / (3 f) (module docstring).
    scale = 1.0 + 2.0 * (k - 2) / (3.0 * nu) if inference == "welch" else None
    contrasts = np.moveaxis(est[..., lay.interactions], 1, 0)
    F, _, dfF = d1(contrasts, np.moveaxis(cov, 1, 0), nu, scale=scale)
    # Nothing imputed: the complete-data test itself (as rubin's B = 0).
    same = (contrasts == contrasts[0]).all(axis=(0, -1))
    F = np.where(same, est[:, 0, ..., o], F)
    dfF = np.where(same, df[:, 0, ..., o], dfF)
    nan = np.full((*F.shape, 1), np.nan)
    return (np.concatenate([pooled.estimate, F[..., None]], axis=-1),
            np.concatenate([pooled.se, nan], axis=-1),
            np.concatenate([pooled.t, nan], axis=-1),
            np.concatenate([pooled.p, f_sf(F, q, dfF)[..., None]], axis=-1),
            np.concatenate([pooled.df, dfF[..., None]], axis=-1))
