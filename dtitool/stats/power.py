"""Monte Carlo power of the per-ROI models, size, max-T, design analysis, curves.

:func:`power` simulates ``replicates`` trials of a :class:`~dtitool.design.StudyDesign`
(:mod:`dtitool.simulate`, keyed so replicate ``i`` depends only on the seed and
``i``), fits every model of the analysis (``docs/model.md``, "Analysis models"; per
ROI ``r`` and outcome ``k``)::

    d_score_k ~ ketamine + x_r + ketamine:x_r + <k>_baseline     (interaction model)
    d_score_k ~ ketamine + x_r + <k>_baseline                     (additive model)

with ``x_r = dMD_r / DMD_SCALE`` (score points per 1e-5 mm^2/s), under one of the
inference options ``ols``, ``hc3`` or ``welch`` (:mod:`dtitool.stats.inference`),
and counts rejections of the four reported terms: ``interaction``,
``slope_ketamine``, ``slope_saline``, ``slope_pooled``.

Beside each test's power it reports:

- its **size**: the rejection rate, at the same alpha and inference, in the
  design's null counterpart (:func:`null_counterpart`), simulated in the same run
  from its own child stream, with a flag when the size falls outside its 99 %
  binomial band (:func:`size_band`);
- **family-wise** power unadjusted, with Holm, Benjamini-Hochberg and max-T
  (Westfall-Young single step; its critical value is the alpha-quantile of the
  family's smallest p in the null counterpart), with each method's family-wise
  error in the null counterpart beside it;
- **design analysis** (Gelman and Carlin 2014): the term's true value, the type S
  error and the exaggeration ratio of significant results
  (:mod:`dtitool.stats.design_analysis`).

Reproducibility: chunks are replicate ranges aligned to the simulator's
:data:`~dtitool.simulate.BLOCK_SIZE`; per-replicate values depend only on the seed
and the replicate index, per-test counts are integers, estimates are summed per
fixed block of replicates and the blocks added in order, so the result is
bit-identical for any ``chunk_size`` and any ``n_jobs``. The null counterpart and
the reference sample of the true values draw from child streams of the run's
root ``SeedSequence`` (spawn keys :data:`NULL_STREAM` and :data:`TRUTH_STREAM`),
so one seed repeats everything.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import pandas as pd
from scipy import special

from dtitool import _progress
from dtitool._constants import CURVE_PARAMETERS, TERMS
from dtitool._executor import Task, check_n_jobs, open_executor
from dtitool._memory import check_memory
from dtitool.design import PerArm, StudyDesign
from dtitool.simulate import (
    BLOCK_SIZE,
    as_seed_sequence,
    simulate_arrays,
    simulation_bytes,
)
from dtitool.stats.design_analysis import ZERO_SE, true_values
from dtitool.stats.inference import (
    INFERENCE,
    BatchModels,
    _series_df,
    arm_statistics,
    batch_models,
    check_inference,
    fit_terms,
    model_arrays,
    models_from_statistics,
    permute_within_arms,
)
from dtitool.stats.ols import two_sided_p

__all__ = [
    "ANY_OUTCOME",
    "CURVE_PARAMETERS",
    "GRID_COLUMNS",
    "INFERENCE",
    "MAX_GRID_POINTS",
    "METHODS",
    "POWER_COLUMNS",
    "TERMS",
    "BatchModels",
    "PowerCurve",
    "PowerGrid",
    "PowerResult",
    "SampleSizeResult",
    "analytic_power",
    "batch_models",
    "check_grid_axes",
    "design_parameter",
    "finding_p",
    "finding_power",
    "finding_size",
    "null_counterpart",
    "power",
    "power_curve",
    "power_grid",
    "sample_size",
    "size_band",
    "size_warning",
    "vary_design",
    "wilson_interval",
]


POWER_COLUMNS = ("roi", "outcome", "term", "inference", "power", "power_ci_low",
                 "power_ci_high", "median_p", "mean_estimate", "size", "size_ci_low",
                 "size_ci_high", "size_ok", "true_value", "type_s", "exaggeration",
                 "missing", "mean_n", "mean_imputed")
"""Columns of ``power.tsv`` (a selection of :attr:`PowerResult.table`)."""

METHODS = ("none", "holm", "bh", "maxt")
"""Multiplicity handling of family-wise power: unadjusted, Holm, Benjamini-Hochberg,
max-T (Westfall-Young, critical value from the null counterpart)."""

SIZE_LEVEL = 0.99
"""Coverage of the binomial size band: a run whose tests are all at their
nominal level flags at least one of them with probability at most 1 %."""

NULL_STREAM = 0x6E756C6C
"""Spawn key (appended to the root's) of the null counterpart's stream ("null" in
ASCII): far above any replicate block index, so it never meets a block stream."""

TRUTH_STREAM = 0x74727565
"""Spawn key of the reference sample of the true values ("true" in ASCII)."""

PERMUTATION_STREAM = 0x7065726D
"""Spawn key, under the null counterpart's, of the within-arm permutations that
add max-T null draws ("perm" in ASCII); block ``b`` uses ``(..., PERM, b)``."""

MAXT_EXTRA_DRAWS = 3
"""Within-arm permutations of dMD per null-counterpart trial, for the max-T
critical values. In the null counterpart dMD is independent of the scores
within each arm and its rows are exchangeable there, so permuting whole dMD rows
among a trial's observed subjects of one arm gives another draw from the same
null distribution for the price of a refit (not a simulation). With 3 extra
draws the critical value rests on 4 x replicates null draws, and its own Monte
Carlo error adds a quarter (not all) of the binomial variance to a max-T
family-wise rate."""


def child_seed(ss: np.random.SeedSequence, key: int) -> np.random.SeedSequence:
    """Return the child of ``ss`` with spawn key ``key``.

    What ``ss.spawn`` would give for that index, without changing ``ss``: every
    curve point gets the same child.
    """
    return np.random.SeedSequence(ss.entropy, spawn_key=(*ss.spawn_key, key))


def null_counterpart(design: StudyDesign) -> StudyDesign:
    """Return the same design with every ROI-outcome correlation set to 0.

    Everything else (arm sizes, score-change means and SDs per arm, MD change,
    reliability, missing scans) is kept, so every test of the four terms is a
    test of a true null hypothesis here, under the design's own
    heteroscedasticity: its rejection rate is the test's actual size.

    Parameters
    ----------
    design : StudyDesign

    Returns
    -------
    StudyDesign
    """
    if not isinstance(design, StudyDesign):
        raise TypeError(f"design must be a StudyDesign, got {type(design).__name__}")
    return vary_design(design, "effect", 0.0)


DEFAULT_CHUNK = 1024
"""Replicates per chunk (rounded up to a multiple of the simulator's BLOCK_SIZE)."""


# ------------------------------------------------------------------ multiplicity


def _rejections(p: np.ndarray, method: str, alpha: float) -> np.ndarray:
    """Rejected hypotheses per row of ``p`` (R, m); NaN never rejected.

    Same decisions as ``statsmodels.stats.multitest.multipletests`` (``holm``,
    ``fdr_bh``), with ``p <= alpha`` as the unadjusted rule.
    """
    return _rejections_by_method(p, (method,), alpha)[method]


def _rejections_by_method(p: np.ndarray, methods, alpha: float) -> dict:
    """:func:`_rejections` of several methods, Holm and BH sharing one sort."""
    p = np.where(np.isnan(p), np.inf, p)
    out, ordered = {}, None
    for method in methods:
        if method == "none":
            out[method] = p <= alpha
            continue
        if ordered is None:
            order = np.argsort(p, axis=1, kind="stable")
            ordered = order, np.take_along_axis(p, order, axis=1)
        out[method] = _stepwise(*ordered, method, alpha)
    return out


def _stepwise(order: np.ndarray, ps: np.ndarray, method: str, alpha: float
              ) -> np.ndarray:  # fmt: skip
    """Rejections of Holm or BH from the rows' sorted p (:func:`_rejections`)."""
    m = ps.shape[1]
    i = np.arange(m)
    if method == "holm":
        passed = np.cumprod(ps <= alpha / (m - i), axis=1).astype(bool)
        k = passed.sum(axis=1)
    elif method == "bh":
        ok = ps <= alpha * (i + 1) / m
        k = np.where(ok.any(axis=1), m - np.argmax(ok[:, ::-1], axis=1), 0)
    else:  # pragma: no cover - validated by callers
        raise ValueError(f"unknown method {method!r}")
    rej_sorted = i[None, :] < k[:, None]
    rej = np.empty_like(rej_sorted)
    np.put_along_axis(rej, order, rej_sorted, axis=1)
    return rej


# ------------------------------------------------------------------------ power


@dataclass(frozen=True, slots=True)
class _Spec:
    """What a chunk computes (picklable, sent to worker processes)."""

    alpha: float
    # name, flat test indices, direction per test, finding (group) per test
    families: tuple[tuple[str, np.ndarray, np.ndarray, np.ndarray], ...]
    inference: str
    null: bool = False  # a chunk of the null counterpart
    alternatives: tuple[str, ...] = ()  # other options whose size the null counts
    extra_draws: int = 0  # within-arm dMD permutations per null trial (max-T)
    missing: str = "complete-case"
    imputations: int = 0


def _chunk(design: StudyDesign, seed, start: int, stop: int, spec: _Spec) -> dict:
    arrays = simulate_arrays(design, seed=seed, start=start, stop=stop,
                             chunk_size=stop - start, lean=True)
    if spec.missing == "mi":
        return _chunk_imputed(arrays, seed, spec)
    if not spec.null:
        return _summarise(batch_models(arrays, spec.inference), spec)
    st = arm_statistics(*model_arrays(arrays), keep_values=True)
    bms = {inf: models_from_statistics(st, inf)
           for inf in (spec.inference, *spec.alternatives)}
    out = _summarise_null(bms, spec)
    if spec.extra_draws:
        keys = _permutation_keys(seed, start, stop, spec.extra_draws,
                                 arrays.treated.shape[1])
        extra = [_family_minp_of_t(*fit_terms(
                     permute_within_arms(st, (keys[:, c, 0], keys[:, c, 1]),
                                         keep_values=spec.inference == "hc3"),
                     spec.inference), spec)
                 for c in range(spec.extra_draws)]
        out["minp_extra"] = np.stack(extra, axis=1)  # (R, draws, F)
    return out


def _chunk_imputed(arrays, seed, spec: _Spec) -> dict:
    """Compute a chunk under ``missing="mi"``.

    Each replicate is imputed ``spec.imputations`` times, every (replicate x
    imputation) model fitted by the batched engine at once and pooled by Rubin's
    rules (:func:`dtitool.stats.missing.batch_models_imputed`). The imputation
    draws come from the chunk's stream (``seed``: the run's, or the null
    counterpart's), block by block.
    """
    from dtitool.stats.missing import batch_models_imputed

    infs = (spec.inference, *spec.alternatives) if spec.null else (spec.inference,)
    bms, imputed = batch_models_imputed(arrays, infs, imputations=spec.imputations,
                                        seed=seed)
    if spec.null:
        return _summarise_null(bms, spec)
    out = _summarise(bms[spec.inference], spec)
    out["imputed"] = int(imputed.sum())
    return out


def _permutation_keys(seed, start: int, stop: int, copies: int, n: int):
    """Uniform keys (R, copies, arm, n) for the null counterpart's permutations.

    Drawn per block of ``BLOCK_SIZE`` replicates from the stream
    ``(..., PERMUTATION_STREAM, b)`` under the null counterpart's seed, so they
    depend only on the seed and the replicate index.
    """
    ss = as_seed_sequence(seed)
    b0, b1 = start // BLOCK_SIZE, -(-stop // BLOCK_SIZE)
    u = np.empty(((b1 - b0) * BLOCK_SIZE, copies, 2, n))
    for i, b in enumerate(range(b0, b1)):
        child = np.random.SeedSequence(
            ss.entropy, spawn_key=(*ss.spawn_key, PERMUTATION_STREAM, b))
        np.random.Generator(np.random.PCG64(child)).random(
            out=u[i * BLOCK_SIZE:(i + 1) * BLOCK_SIZE])
    return u[start - b0 * BLOCK_SIZE: stop - b0 * BLOCK_SIZE]


def _block_sums(values: np.ndarray) -> np.ndarray:
    """Sum over fixed blocks of BLOCK_SIZE replicates (chunk-invariant floats)."""
    R = values.shape[0]
    nb = -(-R // BLOCK_SIZE)
    pad = np.zeros((nb * BLOCK_SIZE, values.shape[1]))
    pad[:R] = values
    return pad.reshape(nb, BLOCK_SIZE, -1).sum(axis=1)


def _by_finding(rej: np.ndarray, group: np.ndarray) -> np.ndarray:
    """Rejections per finding (R, G): a finding is rejected when any of its tests is.

    A finding is one reported result; it has several tests when the report did
    not say which outcome it came from (outcome ``"any"``).
    """
    G = int(group.max()) + 1 if group.size else 0
    if G == len(group):  # one test per finding (the usual case): no reduction
        out = np.zeros((rej.shape[0], G), dtype=bool)
        out[:, group] = rej
        return out
    onehot = np.zeros((len(group), G))
    onehot[np.arange(len(group)), group] = 1.0
    return (rej.astype(float) @ onehot) > 0


def _family_counts(p, pos, spec: _Spec) -> np.ndarray:
    """(families, methods none/holm/bh, [any, all, rejections]) counts by finding."""
    fam = []
    for _, idx, direction, group in spec.families:
        dir_ok = (direction == 0) | (np.where(pos[:, idx], 1, -1) == direction)
        by_method = _rejections_by_method(p[:, idx], METHODS[:3], spec.alpha)
        row = []
        for method in METHODS[:3]:
            rej = _by_finding(by_method[method] & dir_ok, group)
            row.append([rej.any(axis=1).sum(), rej.all(axis=1).sum(), rej.sum()])
        fam.append(row)
    return np.array(fam, dtype=np.int64).reshape(len(spec.families), 3, 3)


def _summarise(bm: BatchModels, spec: _Spec) -> dict:
    R = bm.p.shape[0]
    p = bm.p.reshape(R, -1)
    est = bm.estimate.reshape(R, -1)
    pos = est > 0
    valid = ~np.isnan(p)
    sig = p <= spec.alpha
    finite = np.where(np.isnan(est), 0.0, est)
    return {
        "signed_p": np.copysign(p, est).astype(np.float32),
        "reject": sig.sum(axis=0),
        "reject_pos": (sig & pos).sum(axis=0),
        "reject_neg": (sig & ~pos & valid).sum(axis=0),
        "valid": valid.sum(axis=0),
        "block_sums": _block_sums(finite),
        "abs_sig_sums": _block_sums(np.where(sig, np.abs(finite), 0.0)),
        "est_valid": (~np.isnan(est)).sum(axis=0),
        "family": _family_counts(p, pos, spec),
        "subjects": int(np.sum(bm.n)),
        "imputed": 0,
    }


def _family_minp(bm: BatchModels, spec: _Spec):
    """Return per replicate and family the smallest p and the smallest directed p.

    As float32, the precision of the main run's stored p; the directed minimum
    counts only tests whose estimate has the family's stated sign.
    """
    R = bm.p.shape[0]
    p32 = bm.p.reshape(R, -1).astype(np.float32)
    p32 = np.where(np.isnan(p32), np.float32(np.inf), p32)
    pos = bm.estimate.reshape(R, -1) > 0
    minp, minp_dir = [], []
    for _, idx, direction, _group in spec.families:
        pf = p32[:, idx]
        minp.append(pf.min(axis=1))
        dir_ok = (direction == 0) | (np.where(pos[:, idx], 1, -1) == direction)
        minp_dir.append(np.where(dir_ok, pf, np.float32(np.inf)).min(axis=1))
    return np.stack(minp, axis=1), np.stack(minp_dir, axis=1)


def _family_minp_of_t(est, se, df, spec: _Spec) -> np.ndarray:
    """Return :func:`_family_minp`'s smallest p per replicate and family, from t.

    The smallest p of tests that share one df is the p of the largest |t|; so
    each family takes the largest |t| of each of its terms and computes one p
    per replicate and term, by the same function that :func:`_p_values` uses
    for that term, instead of one p per test. Where a term's df differs
    between the family's tests (Welch), its tests' p are all computed.
    """
    R = est.shape[0]
    with np.errstate(invalid="ignore", divide="ignore"):
        t = (est / se).reshape(R, -1)
    df = df.reshape(R, -1)
    T = len(TERMS)
    common = [_series_df(df[:, i::T]) for i in range(T)]  # as _p_values decides
    out = np.full((R, len(spec.families)), np.inf, dtype=np.float32)
    for f, (_, idx, _direction, _group) in enumerate(spec.families):
        for i in range(T):
            cols = idx[idx % T == i]
            if not cols.size:
                continue
            dcols = df[:, cols]
            if common[i] is not None:
                p = two_sided_p(np.fmax.reduce(np.abs(t[:, cols]), axis=1),
                                common[i])
            elif np.all(dcols == dcols[:, :1]):
                p = two_sided_p(np.fmax.reduce(np.abs(t[:, cols]), axis=1),
                                dcols[:, 0])
            else:
                p = np.fmin.reduce(two_sided_p(t[:, cols], dcols), axis=1)
            p32 = p.astype(np.float32)
            np.minimum(out[:, f], np.where(np.isnan(p32), np.float32(np.inf), p32),
                       out=out[:, f])
    return out


def _summarise_null(bms: dict, spec: _Spec) -> dict:
    bm = bms[spec.inference]
    R = bm.p.shape[0]
    p = bm.p.reshape(R, -1)
    pos = bm.estimate.reshape(R, -1) > 0
    # max-T on the p scale: the p-values as stored (float32), so that the
    # critical values compare exactly with the stored p of the main run.
    minp, minp_dir = _family_minp(bm, spec)
    out = {
        "reject": (p <= spec.alpha).sum(axis=0),
        "valid": (~np.isnan(p)).sum(axis=0),
        "family": _family_counts(p, pos, spec),
        "minp": minp,
        "minp_dir": minp_dir,
    }
    for alt in spec.alternatives:
        pa = bms[alt].p.reshape(R, -1)
        out[f"reject_{alt}"] = (pa <= spec.alpha).sum(axis=0)
        out[f"valid_{alt}"] = (~np.isnan(pa)).sum(axis=0)
    return out


def size_band(trials, alpha: float, tests: int, *, level: float = SIZE_LEVEL,
              sided: str = "two"):
    """Binomial band of rejection counts of ``tests`` tests at their nominal level.

    Parameters
    ----------
    trials : int or array_like of int
        Replicates per test.
    alpha : float
        Nominal level.
    tests : int
        Tests checked together (Bonferroni).
    level : float
        Probability that no nominal test falls outside its band.
    sided : {"two", "upper"}
        ``upper`` flags only counts above the band (family-wise error control is
        a claim "at most alpha").

    Returns
    -------
    low, high : ndarray of float
        A count ``k`` is within the band when ``low <= k <= high``. Each side has
        binomial tail probability at most ``(1 - level) / tests`` (halved for two
        sides), computed exactly with ``scipy.stats.binom``.
    """
    if sided not in ("two", "upper"):
        raise ValueError(f"sided must be 'two' or 'upper'; got {sided!r}")
    q = (1 - level) / max(int(tests), 1) / (2 if sided == "two" else 1)
    n = np.asarray(trials)
    lo, hi = _binom_quantiles(q, n, alpha)
    if sided != "two":
        lo = np.zeros(n.shape)
    return np.asarray(lo, float), np.asarray(hi, float)


def _binom_quantiles(q: float, n, p: float):
    """``scipy.stats.binom.ppf(q, n, p)`` and ``binom.isf(q, n, p)``, for q in (0, 1).

    The same Boost-based functions scipy.stats calls, taken from
    ``scipy.special`` so that a power run does not import ``scipy.stats`` (a
    third of a second, a tenth of a short run); scipy.stats itself where
    they are not there.
    """
    try:
        from scipy.special import _ufuncs as scu

        ppf, isf = scu._binom_ppf, scu._binom_isf
    except (ImportError, AttributeError):  # pragma: no cover - other scipy
        from scipy import stats

        return stats.binom.ppf(q, n, p), stats.binom.isf(q, n, p)
    n = np.asarray(n, dtype=float)
    return ppf(q, n, p), isf(q, n, p)


def _maxt_critical(minp: np.ndarray, alpha: float) -> np.float32:
    """Critical p of single-step max-T from null draws of the family's minimum p.

    A test rejects when its p is below the returned value, i.e. when
    ``(1 + #{null min p <= p}) / (R + 1) <= alpha``, the permutation-style rule
    that keeps the error at most alpha for any number of null draws ``R``.
    """
    R = len(minp)
    k = math.floor(alpha * (R + 1) + 1e-9) - 1  # null draws allowed at or below p
    if k < 0:
        return np.float32(-np.inf)
    return np.partition(minp, k)[k]


def wilson_interval(successes, trials, *, level: float = 0.95):
    """Wilson score interval of a binomial proportion.

    Parameters
    ----------
    successes, trials : array_like of int
    level : float
        Confidence level.

    Returns
    -------
    low, high : ndarray
        Bounds (NaN where ``trials`` is 0).

    Notes
    -----
    Wilson (1927), JASA 22:209. Unlike the Wald interval it stays inside [0, 1]
    and keeps close to nominal coverage at power near 0 or 1.
    """
    k = np.asarray(successes, dtype=float)
    n = np.asarray(trials, dtype=float)
    z = float(-special.ndtri((1 - level) / 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        ph = k / n
        den = 1 + z * z / n
        centre = (ph + z * z / (2 * n)) / den
        half = z * np.sqrt(ph * (1 - ph) / n + z * z / (4 * n * n)) / den
    # The bounds are exactly 0 with no successes and 1 with no failures; the
    # formula gives them only up to rounding (e.g. 1.7e-18 for 0).
    lo = np.where(k == 0, 0.0, np.clip(centre - half, 0, 1))
    hi = np.where(k == n, 1.0, np.clip(centre + half, 0, 1))
    empty = n == 0
    return np.where(empty, np.nan, lo), np.where(empty, np.nan, hi)


@dataclass(frozen=True, slots=True, eq=False)
class PowerResult:
    """Monte Carlo power of every model term of a design.

    Parameters
    ----------
    design : StudyDesign
        The design simulated.
    replicates : int
        Number of simulated trials (and of null-counterpart trials).
    alpha : float
        Two-sided significance level (a test rejects when ``p <= alpha``).
    seed : int
        Entropy of the root SeedSequence; ``power(design, rng=seed, ...)`` repeats
        the run exactly.
    spawn_key : tuple of int
        Spawn key of the root SeedSequence (empty for an integer seed).
    table : pandas.DataFrame
        One row per ``roi, outcome, term``: ``inference``; ``power`` (fraction of
        replicates with ``p <= alpha``), ``power_ci_low``, ``power_ci_high`` (95 %
        Wilson score interval), ``median_p``, ``mean_estimate`` (score points per
        1e-5 mm^2/s dMD), ``power_positive`` and ``power_negative`` (rejections
        with a positive / negative estimate), ``valid`` (replicates with a finite
        p); ``size`` (rejection rate in the null counterpart) with its Wilson
        interval ``size_ci_low``, ``size_ci_high`` and ``size_ok`` (within the
        :func:`size_band`, Bonferroni over the table's tests); ``true_value`` (the
        estimand's population value) and ``true_value_se`` (its Monte Carlo SE),
        ``type_s`` and ``exaggeration`` (Gelman and Carlin 2014; NaN where the
        true value is not distinguishable from 0 or nothing was significant).
    familywise : pandas.DataFrame
        One row per ``family, method`` (``none``, ``holm``, ``bh``, ``maxt``):
        ``tests``, ``power_any`` (at least one rejection), ``power_all`` (every
        test rejected) with Wilson intervals, ``mean_rejections``; ``size`` (the
        family-wise error: at least one rejection in the null counterpart) with
        its Wilson interval and ``size_ok`` (not above the one-sided band; NA for
        ``none``, which claims no control). Families are each term across all
        ROI x outcome models plus the user's; in a family with stated directions
        a rejection counts only with the right sign.
    signed_p : ndarray of float32, shape (R, J, K, T)
        Per-replicate p-values carrying the sign of the estimate.
    inference : str
        The inference option (:data:`INFERENCE`).
    critical_p : dict
        Family name -> max-T critical p (a test rejects when ``p`` is below it).
    alternative_size : pandas.DataFrame or None
        ``roi, outcome, term, inference, size, size_ok`` of another inference
        option in the same null-counterpart trials (``welch``, unless the run is
        ``welch``), for :func:`size_warning`.
    missing : str
        ``complete-case`` or ``mi`` (also a column of :attr:`table`).
    imputations : int
        Imputations per trial under ``mi`` (0 for complete case).
    mean_n : float
        Participants per trial in the models, on average (``mi``: all, imputed
        ones included); also the table column ``mean_n``.
    mean_imputed : float
        Participants per trial with imputed 24 h data, on average
        (``mean_imputed`` column).
    """

    design: StudyDesign
    replicates: int
    alpha: float
    seed: int
    spawn_key: tuple[int, ...]
    table: pd.DataFrame
    familywise: pd.DataFrame
    signed_p: np.ndarray
    inference: str = "ols"
    critical_p: Mapping[str, float] = dataclasses.field(default_factory=dict)
    alternative_size: pd.DataFrame | None = None
    missing: str = "complete-case"
    imputations: int = 0
    mean_n: float = math.nan
    mean_imputed: float = 0.0

    def get(self, roi: str, outcome: str, term: str) -> pd.Series:
        """Return the row of :attr:`table` for one test."""
        t = self.table
        row = t[(t["roi"] == roi) & (t["outcome"] == outcome) & (t["term"] == term)]
        if len(row) != 1:
            raise ValueError(
                f"no test {roi}/{outcome}/{term}; ROIs {list(self.design.roi_names)}, "
                f"outcomes {list(self.design.outcome_names)}, terms {list(TERMS)}"
            )
        return row.iloc[0]


def _check_int(name: str, value, lo: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < lo:
        raise ValueError(f"{name} must be an integer >= {lo}, got {value!r}")
    return int(value)


ANY_OUTCOME = "any"
"""Outcome of a reported finding whose outcome the report does not name: the
finding is its test on every outcome, and counts as found when any of them is
significant (with the stated sign); see ``docs/model.md``, "The reported findings"."""


def _direction_code(d, where: str) -> int:
    if d in (None, 0, "any"):
        return 0
    if d in (1, "+", "positive"):
        return 1
    if d in (-1, "-", "negative"):
        return -1
    raise ValueError(f"{where}: direction must be 'positive', 'negative' or None; "
                     f"got {d!r}")


def _normalise_families(
    design: StudyDesign, families: Mapping[str, Iterable] | None
) -> tuple[tuple[str, np.ndarray, np.ndarray, np.ndarray], ...]:
    J, K, T = len(design.rois), len(design.outcomes), len(TERMS)
    out = []
    for t, term in enumerate(TERMS):
        idx = (np.arange(J)[:, None] * K + np.arange(K)[None, :]) * T + t
        out.append((term, idx.ravel(), np.zeros(J * K, int), np.arange(J * K)))
    for name, tests in (families or {}).items():
        if not isinstance(name, str) or name in TERMS:
            raise ValueError(
                f"family name {name!r} must be a string other than the built-in "
                f"term families {list(TERMS)}"
            )
        idx, dirs, groups = [], [], []
        for g, test in enumerate(tests):
            if len(tuple(test)) not in (3, 4):
                raise ValueError(
                    f"family {name!r}: each test must be (roi, outcome, term[, "
                    f"direction]); got {test!r}"
                )
            roi, outcome, term, *rest = tuple(test) + (None,) * (4 - len(tuple(test)))
            outcomes = (design.outcome_names if outcome == ANY_OUTCOME
                        else (outcome,))
            _check_test(design, roi, outcomes[0], term, where=f"family {name!r}")
            d = _direction_code(rest[0], f"family {name!r}")
            j = design.roi_names.index(roi)
            for o in outcomes:
                k = design.outcome_names.index(o)
                idx.append((j * K + k) * T + TERMS.index(term))
                dirs.append(d)
                groups.append(g)
        if not idx:
            raise ValueError(f"family {name!r} has no tests")
        out.append((name, np.array(idx), np.array(dirs), np.array(groups)))
    return tuple(out)


def _check_test(design, roi, outcome, term, *, where="test"):
    if roi not in design.roi_names:
        raise ValueError(f"{where}: unknown ROI {roi!r}; expected one of "
                         f"{list(design.roi_names)}")
    if outcome not in design.outcome_names:
        raise ValueError(f"{where}: unknown outcome {outcome!r}; expected one of "
                         f"{list(design.outcome_names)}")
    if term not in TERMS:
        raise ValueError(f"{where}: unknown term {term!r}; expected one of "
                         f"{list(TERMS)}")


def power(
    design: StudyDesign,
    *,
    replicates: int = 2000,
    alpha: float = 0.05,
    inference: str = "ols",
    rng=None,
    n_jobs: int = 1,
    chunk_size: int | None = None,
    families: Mapping[str, Iterable] | None = None,
    size: bool = True,
    design_analysis: bool = True,
    progress: bool | None = None,
    dask=None,
    missing: str = "complete-case",
    imputations: int | None = None,
    _cache: dict | None = None,
) -> PowerResult:
    """Monte Carlo power of every ROI x outcome x term test of ``design``.

    Parameters
    ----------
    design : StudyDesign
        Design to simulate (e.g. ``load_preset("ketamine-rct")``).
    replicates : int
        Number of simulated trials.
    alpha : float
        Two-sided significance level.
    inference : {"ols", "hc3", "welch"}
        How every test is done (:mod:`dtitool.stats.inference`): classical OLS,
        HC3 standard errors, or per-arm fits with Welch-Satterthwaite df.
    rng : None, int, SeedSequence or Generator
        Seed of the simulation; recorded in the result. Results depend only on it,
        never on ``chunk_size`` or ``n_jobs``.
    n_jobs : int
        Worker processes (-1: all CPUs); with ``dask="local"``, the workers of
        the local cluster. Chunks are replicate ranges.
    chunk_size : int, optional
        Replicates simulated and fitted at once (memory ~100 kB per replicate at
        n = 98); rounded up to a multiple of the simulator's block size (64).
        Default :data:`DEFAULT_CHUNK` at n = 98, scaled by 98 / n.
    families : mapping of str to iterable of tuples, optional
        Extra families for the family-wise table: ``{"reported": [(roi, outcome,
        term[, direction]), ...]}`` with direction ``"positive"``, ``"negative"``
        or None.
    size : bool
        Also simulate ``replicates`` trials of the null counterpart
        (:func:`null_counterpart`) for each test's size, the family-wise error
        and the max-T critical values (doubles the simulation work).
    design_analysis : bool
        Also compute true values, type S errors and exaggeration ratios (one
        reference sample of :data:`~dtitool.stats.design_analysis.REFERENCE_N`
        subjects).
    progress : bool or bar, optional
        Show a tqdm progress bar on stderr; default: on a terminal, once the run
        has taken 2 s (:mod:`dtitool._progress`).
    dask : None, "local", str or distributed.Client
        Run the chunks on Dask instead of local processes: ``"local"`` (a
        ``LocalCluster`` of ``n_jobs`` workers), a scheduler address
        (``tcp://host:8786``) or a ``distributed.Client`` (reused across calls;
        see :func:`dtitool._executor.open_executor`). The result is
        byte-identical to a local run.
    missing : {"complete-case", "mi"}
        How each simulated trial handles the design's missing 24 h data
        (``design.missing``): ``complete-case`` drops the subjects, ``mi``
        imputes every trial ``imputations`` times (Bayesian normal regressions
        within arm, :mod:`dtitool.stats.missing`), fits all (trial x imputation)
        models with the batched engine and pools them by Rubin's rules with
        Barnard-Rubin df. The null counterpart is analysed the same way, so
        ``size`` is the size of the pooled test; its max-T critical values come
        from the simulated null trials alone (no extra permutation draws, which
        would need re-imputation). True values are those of the full data
        (missingness switched off), so type S and exaggeration include the
        bias of the missing-data method.
    imputations : int, optional
        Imputations per trial for ``mi`` (default
        :data:`~dtitool.stats.missing.DEFAULT_IMPUTATIONS`, 20).

    Returns
    -------
    PowerResult

    Raises
    ------
    ValueError
        On a bad argument (the message names it).

    Notes
    -----
    Memory: the per-replicate p-values are kept as float32 (224 bytes per
    replicate for 56 tests: 224 MB at 1,000,000 replicates) for the medians and
    the max-T decisions; the null counterpart keeps two float32 per replicate and
    family; everything else is reduced per chunk. Under ``mi`` the default chunk
    is divided by ``imputations`` (each replicate is that many datasets).
    """
    if not isinstance(design, StudyDesign):
        raise TypeError(f"design must be a StudyDesign, got {type(design).__name__}")
    replicates, alpha, inference, n_jobs, missing, imputations = _check_run(
        replicates, alpha, inference, n_jobs, missing, imputations)
    chunk = _chunk_replicates(design, chunk_size, missing, imputations)
    run = _PowerRun(design, replicates=replicates, alpha=float(alpha),
                    inference=inference, ss=as_seed_sequence(rng), chunk=chunk,
                    families=families, size=size, design_analysis=design_analysis,
                    cache={} if _cache is None else _cache, workers=n_jobs,
                    missing=missing, imputations=imputations)
    with (open_executor(n_jobs, dask) as ex,
          _progress.bar(progress, run.work, f"power {design.name}",
                        unit="rep") as bar):
        ex.run(run.tasks, progress=bar)
    return run.result(stacklevel=3)


def _check_run(replicates, alpha, inference, n_jobs, missing, imputations):
    """Validate the arguments every power run shares; return them normalised."""
    replicates = _check_int("replicates", replicates, 1)
    if isinstance(alpha, bool) or not isinstance(alpha, float | int) or not (
        0 < alpha < 1
    ):
        raise ValueError(f"alpha must be a number in (0, 1), got {alpha!r}")
    missing, imputations = _check_missing(missing, imputations)
    return (replicates, float(alpha), check_inference(inference),
            check_n_jobs(n_jobs), missing, imputations)


def _chunk_replicates(design: StudyDesign, chunk_size, missing="complete-case",
                      imputations=0) -> int:
    """Replicates per chunk: a multiple of BLOCK_SIZE (default scaled by n)."""
    if chunk_size is None:
        # Keep the working set of a chunk (~100 kB per replicate at n = 98) the
        # same for larger trials (and for the datasets of multiple imputation).
        chunk = max(BLOCK_SIZE, DEFAULT_CHUNK * 98 // max(design.n, 1)
                    // (imputations if missing == "mi" else 1))
    else:
        chunk = _check_int("chunk_size", chunk_size, 1)
    return -(-chunk // BLOCK_SIZE) * BLOCK_SIZE


class _Waitable:
    """Work that results wait for: complete once its last task has reported."""

    def __init__(self, remaining: int):
        self.remaining = int(remaining)
        self._then: list = []

    def then(self, fn) -> None:
        """Call ``fn`` once complete (at once if it is)."""
        if self.remaining == 0:
            fn()
        else:
            self._then.append(fn)

    def _reported(self) -> None:
        self.remaining -= 1
        if self.remaining == 0:
            todo, self._then = self._then, []
            for fn in todo:
                fn()


class _Truth(_Waitable):
    """The true values of a design's terms, computed by one task."""

    def __init__(self):
        super().__init__(1)
        self.value = None

    def set(self, value) -> None:
        self.value = value
        self._reported()


def _true_values(design, inference, seed):
    return true_values(design, inference=inference, seed=seed)


class _PowerRun(_Waitable):
    """One :func:`power` run cut into tasks; :meth:`result` once they reported.

    The tasks (:attr:`tasks`) are the chunks of the design, the chunks of its
    null counterpart and the reference sample of the true values, unless a run
    sharing ``cache`` (a point of the same curve or grid) has planned them
    already. Chunk results are folded in as they arrive, in any order
    (:meth:`_collect`); :meth:`when_ready` calls back once everything this run
    needs has reported.
    """

    def __init__(self, design, *, replicates, alpha, inference, ss, chunk, families,
                 size, design_analysis, cache, workers=1, missing="complete-case",
                 imputations=0):
        self.design, self.replicates, self.alpha = design, replicates, alpha
        self.inference, self.ss = inference, ss
        self.missing = missing
        self.imputations = imputations if missing == "mi" else 0
        spec = _Spec(alpha=alpha, families=_normalise_families(design, families),
                     inference=inference, missing=missing,
                     imputations=self.imputations)
        self.spec = spec
        # Before anything is allocated (the chunk list included): per-replicate
        # p-values (4 bytes x 4 terms per model) and one chunk per worker.
        check_memory((32.0 if size else 16.0) * replicates * len(design.rois)
                     * len(design.outcomes)
                     + simulation_bytes(design, chunk) * min(workers, -(-replicates
                                                                      // chunk)),
                     f"a power run of {replicates} replicates at n = {design.n}",
                     hint="use fewer replicates or a smaller n")
        ranges = [(a, min(a + chunk, replicates)) for a in range(0, replicates, chunk)]
        super().__init__(len(ranges))
        J, K, T = len(design.rois), len(design.outcomes), len(TERMS)
        m = J * K * T
        F = len(spec.families)
        self.signed_p = np.empty((replicates, m), dtype=np.float32)
        nblocks = -(-replicates // BLOCK_SIZE)
        self.block_sums = np.empty((nblocks, m))
        self.abs_sig_sums = np.empty((nblocks, m))
        self.totals = {k: np.zeros(m, np.int64) for k in
                       ("reject", "reject_pos", "reject_neg", "valid", "est_valid")}
        self.fam = np.zeros((F, 3, 3), np.int64)
        self.people = {"subjects": 0, "imputed": 0}
        self.tasks = [Task(_chunk, (design, ss, a, b, spec),
                           functools.partial(self._collect, a, b), b - a)
                      for a, b in ranges]
        self.null = None
        if size:
            null_design = null_counterpart(design)
            alts = () if inference == "welch" else ("welch",)
            # Under mi, extra null draws would need every permutation re-imputed.
            nspec = dataclasses.replace(spec, null=True, alternatives=alts,
                                        extra_draws=MAXT_EXTRA_DRAWS
                                        if missing == "complete-case" else 0)
            key = ("null", repr(null_design), replicates, repr(nspec), ss.entropy,
                   ss.spawn_key)
            self.null = cache.get(key)
            if self.null is None:
                self.null = _NullTotals(replicates, m, F, alts, nspec.extra_draws,
                                        len(ranges))
                cache[key] = self.null
                # Before the design's chunks: the longer tasks first (a null
                # chunk also refits its max-T permutations), so that the run
                # ends on short ones and no worker waits long for the last.
                self.tasks[:0] = [Task(_chunk, (null_design,
                                                child_seed(ss, NULL_STREAM), a, b,
                                                nspec),
                                       functools.partial(self.null.collect, a, b),
                                       b - a)
                                  for a, b in ranges]
        self.truth = None
        if design_analysis:
            full = _full_data(design)
            ref = full.with_n(max(design.n, _reference_n_per_trial()))
            key = ("truth", repr(ref), inference, ss.entropy, ss.spawn_key)
            self.truth = cache.get(key)
            if self.truth is None:
                self.truth = cache[key] = _Truth()
                # First: the one long task (a reference sample of 400,000
                # subjects) runs beside the chunks instead of after them.
                self.tasks.insert(0, Task(_true_values, (full, inference,
                                                         child_seed(ss, TRUTH_STREAM)),
                                          self.truth.set, 0))
        self.work = sum(t.size for t in self.tasks)

    def _collect(self, a, b, res) -> None:
        self.signed_p[a:b] = res["signed_p"]
        blocks = slice(a // BLOCK_SIZE, a // BLOCK_SIZE + len(res["block_sums"]))
        self.block_sums[blocks] = res["block_sums"]
        self.abs_sig_sums[blocks] = res["abs_sig_sums"]
        for k in self.totals:
            self.totals[k] += res[k]
        self.fam[...] += res["family"]
        for k in self.people:
            self.people[k] += res[k]
        self._reported()

    def when_ready(self, fn) -> None:
        """Call ``fn()`` once this run's chunks, null counterpart and truth are in."""
        deps = [d for d in (self, self.null, self.truth) if d is not None]
        left = [len(deps)]

        def one():
            left[0] -= 1
            if left[0] == 0:
                fn()

        for d in deps:
            d.then(one)

    def result(self, *, stacklevel: int = 2) -> PowerResult:
        """Return the :class:`PowerResult` (every task must have reported)."""
        design, replicates, spec = self.design, self.replicates, self.spec
        inference, ss, null = self.inference, self.ss, self.null
        totals, signed_p = self.totals, self.signed_p
        J, K, T = len(design.rois), len(design.outcomes), len(TERMS)
        m = J * K * T
        # Medians a few columns at a time: bounded temporaries at 1e6 replicates.
        median_p = np.empty(m)
        for c in range(0, m, 8):
            absp = np.abs(signed_p[:, c : c + 8])
            med = np.nanmedian if np.isnan(absp).any() else np.median
            median_p[c : c + 8] = med(absp, axis=0)
        del absp
        with np.errstate(invalid="ignore", divide="ignore"):
            mean_est = self.block_sums.sum(axis=0) / totals["est_valid"]
        n_valid = totals["valid"]
        lo, hi = wilson_interval(totals["reject"], n_valid)
        names = pd.MultiIndex.from_product(
            [design.roi_names, design.outcome_names, TERMS],
            names=["roi", "outcome", "term"],
        ).to_frame(index=False)
        with np.errstate(invalid="ignore", divide="ignore"):
            table = names.assign(
                inference=inference,
                power=totals["reject"] / n_valid,
                power_ci_low=lo,
                power_ci_high=hi,
                median_p=median_p.astype(float),
                mean_estimate=mean_est,
                power_positive=totals["reject_pos"] / n_valid,
                power_negative=totals["reject_neg"] / n_valid,
                valid=n_valid,
            )
        table = table.assign(**_size_columns(null, spec, "reject", "valid"))
        if self.truth is not None:
            value, value_se = self.truth.value
            table = table.assign(**_design_analysis_columns(
                value.ravel(), value_se.ravel(), totals,
                self.abs_sig_sums.sum(axis=0)))
        else:
            table = table.assign(true_value=np.nan, true_value_se=np.nan,
                                 type_s=np.nan, exaggeration=np.nan)
        if (n_valid < replicates).any():
            warnings.warn(
                f"{int(replicates * m - n_valid.sum())} model fits had no valid "
                "p-value (too few subjects or a rank-deficient design); power is "
                "over valid replicates only",
                stacklevel=stacklevel,
            )
        familywise, critical = _familywise_table(spec, self.fam, signed_p, null,
                                                 replicates)
        alternative = None
        if null is not None and null.alternatives:
            alt = null.alternatives[0]
            alternative = names.assign(inference=alt, **_size_columns(
                null, spec, f"reject_{alt}", f"valid_{alt}"))[
                ["roi", "outcome", "term", "inference", "size", "size_ok"]]
        mean_n = self.people["subjects"] / replicates
        mean_imputed = self.people["imputed"] / replicates
        table = table.assign(missing=self.missing, mean_n=mean_n,
                             mean_imputed=mean_imputed)
        return PowerResult(
            design=design,
            replicates=replicates,
            alpha=float(self.alpha),
            seed=int(ss.entropy),
            spawn_key=tuple(int(k) for k in ss.spawn_key),
            table=table,
            familywise=familywise,
            signed_p=signed_p.reshape(replicates, J, K, T),
            inference=inference,
            critical_p=critical,
            alternative_size=alternative,
            missing=self.missing,
            imputations=self.imputations,
            mean_n=mean_n,
            mean_imputed=mean_imputed,
        )


def _run_points(designs, *, keep, ex, bar, replicates, alpha, inference, ss,
                chunk_size, families, size, design_analysis, workers,
                missing="complete-case", imputations=0) -> None:
    """Power at every design of ``designs``, all points' tasks streamed at once.

    Each point is planned when the executor asks for more work and handed to
    ``keep(i, result)`` as soon as everything it needs has reported, so a grid
    of thousands of points keeps only the points in flight in memory. Points
    share one cache (common random numbers: a null counterpart or a reference
    sample shared by several points is simulated once).
    """
    cache: dict = {}

    def tasks():
        for i, d in enumerate(designs):
            run = _PowerRun(d, replicates=replicates, alpha=alpha,
                            inference=inference, ss=ss,
                            chunk=_chunk_replicates(d, chunk_size, missing,
                                                    imputations),
                            families=families, size=size,
                            design_analysis=design_analysis, cache=cache,
                            workers=workers, missing=missing,
                            imputations=imputations)
            run.when_ready(functools.partial(_keep_result, keep, i, run))
            yield from run.tasks

    ex.run(tasks(), progress=bar)


def _keep_result(keep, i, run) -> None:
    keep(i, run.result(stacklevel=5))


def _points_work(designs, replicates: int, size: bool) -> int:
    """Replicates a streamed run of ``designs`` simulates (for a progress total)."""
    nulls = {repr(null_counterpart(d)) for d in designs} if size else ()
    return replicates * (len(designs) + len(nulls))


# ------------------------------------------------------------------ missing data


def _check_missing(missing, imputations):
    from dtitool.stats.missing import check_missing

    return check_missing(missing, imputations)


def _full_data(design: StudyDesign) -> StudyDesign:
    """Return the design without missing data (the estimands aimed at)."""
    if design.missing.mechanism == "none":
        return design
    from dtitool.design import MissingSpec

    return dataclasses.replace(design, missing=MissingSpec())


def missing_line(res: PowerResult) -> str:
    """One line: how each trial's missing 24 h data were handled, and how many."""
    d = res.design
    miss = d.missing
    if miss.mechanism == "none":
        return (f"missing data: none in the design (every trial analyses all {d.n} "
                "participants)")
    what = "24 h visit (scan and ratings)" if miss.scores else "24 h scan"
    how = (f"{miss.mechanism.upper()} {what}, rate {miss.rate:g}"
           + (f", strength {miss.strength:g} on {miss.outcome}"
              if miss.mechanism == "mnar" else ""))
    if res.missing == "mi":
        return (f"missing data ({how}): multiple imputation, {res.imputations} "
                f"imputations per trial, Rubin's rules; on average "
                f"{res.mean_imputed:.1f} of {d.n} participants per trial imputed")
    return (f"missing data ({how}): complete case; on average "
            f"{d.n - res.mean_n:.1f} of {d.n} participants per trial left out")


def _reference_n_per_trial() -> int:
    from dtitool.stats.design_analysis import REFERENCE_N

    return math.ceil(REFERENCE_N / BLOCK_SIZE)


class _NullTotals(_Waitable):
    """Accumulated results of the null counterpart's chunks."""

    def __init__(self, replicates: int, m: int, F: int, alternatives: tuple,
                 extra_draws: int, chunks: int):
        super().__init__(chunks)
        self.replicates = replicates
        self.alternatives = alternatives
        self.totals = {k: np.zeros(m, np.int64) for k in ("reject", "valid")}
        for alt in alternatives:
            self.totals[f"reject_{alt}"] = np.zeros(m, np.int64)
            self.totals[f"valid_{alt}"] = np.zeros(m, np.int64)
        self.family = np.zeros((F, 3, 3), np.int64)
        # minp[:, 0] from the simulated trial, minp[:, 1:] from its permutations
        self.minp = np.empty((replicates, 1 + extra_draws, F), np.float32)
        self.minp_dir = np.empty((replicates, F), np.float32)

    def collect(self, a, b, res):
        for k in self.totals:
            self.totals[k] += res[k]
        self.family += res["family"]
        self.minp[a:b, 0] = res["minp"]
        if self.minp.shape[1] > 1:
            self.minp[a:b, 1:] = res["minp_extra"]
        self.minp_dir[a:b] = res["minp_dir"]
        self._reported()


def _size_columns(null, spec: _Spec, reject: str, valid: str) -> dict:
    if null is None:
        return {"size": np.nan, "size_ci_low": np.nan, "size_ci_high": np.nan,
                "size_ok": pd.NA}
    k, n = null.totals[reject], null.totals[valid]
    lo, hi = wilson_interval(k, n)
    band_lo, band_hi = size_band(n, spec.alpha, len(k))
    with np.errstate(invalid="ignore", divide="ignore"):
        return {"size": k / n, "size_ci_low": lo, "size_ci_high": hi,
                "size_ok": (band_lo <= k) & (k <= band_hi)}


def _design_analysis_columns(value, value_se, totals, abs_sig_sum) -> dict:
    known = np.abs(value) > ZERO_SE * value_se
    k = totals["reject"]
    wrong = np.where(value > 0, totals["reject_neg"], totals["reject_pos"])
    with np.errstate(invalid="ignore", divide="ignore"):
        type_s = np.where(known & (k > 0), wrong / k, np.nan)
        exag = np.where(known & (k > 0), abs_sig_sum / k / np.abs(value), np.nan)
    return {"true_value": value, "true_value_se": value_se, "type_s": type_s,
            "exaggeration": exag}


def _familywise_table(spec: _Spec, fam, signed_p, null, replicates):
    """Rows of :attr:`PowerResult.familywise` and the max-T critical p."""
    rows, critical = [], {}
    R = replicates
    n_checked = 3 * len(spec.families) if null is not None else 0
    for f, (name, idx, direction, group) in enumerate(spec.families):
        counts = [tuple(c) for c in fam[f]]
        sizes = [None] * 3
        if null is not None:
            sizes = [int(null.family[f, i, 0]) for i in range(3)]
            crit = _maxt_critical(null.minp[..., f].ravel(), spec.alpha)
            critical[name] = float(crit)
            p = signed_p[:, idx]
            rej = np.abs(p) < crit
            if np.any(direction != 0):
                rej &= (direction == 0) | (np.where(p > 0, 1, -1) == direction)
            rej = _by_finding(rej, group)
            counts.append((int(rej.any(axis=1).sum()), int(rej.all(axis=1).sum()),
                           int(rej.sum())))
            sizes.append(_maxt_size(null.minp[..., f], null.minp_dir[:, f],
                                    spec.alpha))
        for method, (n_any, n_all, n_rej), n_size in zip(METHODS, counts, sizes,
                                                          strict=False):
            any_lo, any_hi = wilson_interval(n_any, R)
            all_lo, all_hi = wilson_interval(n_all, R)
            row = {
                "family": name, "method": method, "tests": int(group.max()) + 1,
                "hypotheses": len(idx),
                "directional": bool(np.any(direction != 0)),
                "power_any": n_any / R, "power_any_ci_low": float(any_lo),
                "power_any_ci_high": float(any_hi),
                "power_all": n_all / R, "power_all_ci_low": float(all_lo),
                "power_all_ci_high": float(all_hi),
                "mean_rejections": n_rej / R,
                "size": np.nan, "size_ci_low": np.nan, "size_ci_high": np.nan,
                "size_ok": pd.NA,
            }
            if n_size is not None:
                s_lo, s_hi = wilson_interval(n_size, R)
                row.update(size=n_size / R, size_ci_low=float(s_lo),
                           size_ci_high=float(s_hi))
                if method != "none":
                    _, band_hi = size_band(R, spec.alpha, n_checked, sided="upper")
                    row["size_ok"] = bool(n_size <= band_hi)
            rows.append(row)
    return pd.DataFrame(rows), critical


def _maxt_size(minp: np.ndarray, minp_dir: np.ndarray, alpha: float) -> int:
    """Family-wise errors of max-T in the null counterpart, out of sample.

    The critical value is estimated from the null draws of one half of the null
    trials (even or odd replicate index, with their permutation draws) and
    applied to the simulated trials of the other half, both ways: an honest
    estimate of the error of a critical value estimated from null draws, not the
    in-sample rate (which is alpha by construction).
    """
    even, odd = slice(0, None, 2), slice(1, None, 2)
    n = 0
    for fit, use in ((even, odd), (odd, even)):
        if len(minp[fit]):
            crit = _maxt_critical(minp[fit].ravel(), alpha)
            n += int(np.sum(minp_dir[use] < crit))
    return n


# --------------------------------------------------------------------- analytic


def analytic_power(
    *, f2, n, n_predictors: int, df1: int = 1, alpha: float = 0.05
):
    """Power of the F test of ``df1`` predictors in a fixed-design regression.

    What G*Power computes for "Linear multiple regression: Fixed model, R^2
    increase" (Faul et al. 2009): noncentrality ``lambda = f2 * n``, numerator
    df ``df1`` (predictors tested), denominator df ``n - n_predictors - 1``
    (``n_predictors`` counts all predictors, tested ones included, without the
    intercept).

    Parameters
    ----------
    f2 : float or array_like
        Cohen's effect size ``f^2 = R^2_partial / (1 - R^2_partial)``.
    n : int or array_like
        Total sample size.
    n_predictors : int
        Predictors in the full model (4 for the interaction model:
        ketamine, dMD, ketamine x dMD, baseline).
    df1 : int
        Predictors tested (1 for a single coefficient).
    alpha : float
        Significance level.

    Returns
    -------
    float or ndarray

    Notes
    -----
    For a *fixed* design the t statistic of a coefficient has a noncentral t
    distribution and ``t^2`` a noncentral F with ``lambda = b^2 SSR_x / sigma^2``
    (``SSR_x``: the tested column's residual sum of squares on the others), i.e.
    ``f2 * n`` with ``f2`` defined in-sample. With *random* predictors (the
    simulated trial: dMD differs between replicates) ``lambda`` itself varies
    from sample to sample, and since power is a concave function of ``lambda``
    over the range that matters, the average power is slightly lower than the
    power at the average ``lambda`` (Jensen); the exact random-X distribution is
    given by Gatsonis & Sampson (1989), Psychol Bull 106:516. Measurement error
    in dMD lowers the effective ``f2`` further (attenuation by the reliability).

    References
    ----------
    Faul F, Erdfelder E, Buchner A, Lang AG (2009). Statistical power analyses
    using G*Power 3.1. Behav Res Methods 41:1149.
    Cohen J (1988). Statistical Power Analysis for the Behavioral Sciences, ch. 9.

    Examples
    --------
    R ``pwr::pwr.f2.test(u = 5, v = 199, f2 = 0.09, sig.level = 0.01)`` gives
    power 0.7967 (``lambda = f2 * (u + v + 1)``, i.e. ``n = 205``):

    >>> round(float(analytic_power(f2=0.09, n=205, n_predictors=5, df1=5,
    ...                            alpha=0.01)), 4)
    0.7967
    """
    f2 = np.asarray(f2, dtype=float)
    n = np.asarray(n, dtype=float)
    if np.any(f2 < 0):
        raise ValueError(f"f2 must be >= 0, got {f2}")
    df2 = n - n_predictors - 1
    if np.any(df2 < 1):
        raise ValueError(f"n must exceed n_predictors + 1 = {n_predictors + 1}, "
                         f"got {n}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    from scipy import stats  # scipy.stats is slow to import: only here

    crit = stats.f.isf(alpha, df1, df2)
    out = stats.ncf.sf(crit, df1, df2, f2 * n)
    return out[()] if out.ndim == 0 else out


# ------------------------------------------------------------ curves and size


def vary_design(design: StudyDesign, parameter: str, value) -> StudyDesign:
    """Return ``design`` with one curve parameter set to ``value``.

    Parameters
    ----------
    design : StudyDesign
    parameter : {"n", "ratio", "effect", "reliability", "cv"}
        ``n``: total sample size. ``ratio``: allocation ketamine:saline as a
        number (2 means 2:1, 1.5 means 3:2). ``effect``: multiply every ROI-outcome
        correlation of true change (both arms) by ``value`` (1 = the design).
        ``reliability``: set each ROI's scan-rescan CV so that the reliability of
        observed dMD in the ketamine arm equals ``value``. ``cv``: set every ROI's
        scan-rescan CV to ``value`` (fraction).
    value : float

    Returns
    -------
    StudyDesign
    """
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"{parameter} must be a finite number, got {value!r}")
    if parameter == "n":
        if v != int(v):
            raise ValueError(f"n must be an integer, got {value!r}")
        return dataclasses.replace(design, n=int(v))
    if parameter == "ratio":
        if not v > 0:
            raise ValueError(f"ratio must be > 0, got {value!r}")
        fr = Fraction(v).limit_denominator(12)
        a = PerArm(ketamine=fr.numerator, saline=fr.denominator)
        s = a.ketamine + a.saline
        return dataclasses.replace(design, allocation=a,
                                   block_size=s * max(1, math.ceil(6 / s)))
    if parameter == "effect":
        c = design.correlations
        ro = {arm: tuple(tuple(float(x) * v for x in row) for row in m)
              for arm, m in c.roi_outcome.items()}
        return dataclasses.replace(
            design, correlations=dataclasses.replace(c, roi_outcome=ro))
    if parameter == "reliability":
        if not 0 < v <= 1:
            raise ValueError(f"reliability must be in (0, 1], got {value!r}")
        rois = []
        for r in design.rois:
            vt = r.change_sd.ketamine ** 2
            cv = math.sqrt(vt * (1 - v) / v / 2) / r.md_mean
            rois.append(dataclasses.replace(r, cv=cv))
        return dataclasses.replace(design, rois=tuple(rois))
    if parameter == "cv":
        return dataclasses.replace(
            design, rois=tuple(dataclasses.replace(r, cv=v) for r in design.rois))
    raise ValueError(f"unknown curve parameter {parameter!r}; expected one of "
                     f"{list(CURVE_PARAMETERS)}")


@dataclass(frozen=True, slots=True, eq=False)
class PowerCurve:
    """Power as one design parameter varies.

    Parameters
    ----------
    parameter : str
        The varied parameter (:data:`CURVE_PARAMETERS`).
    table : pandas.DataFrame
        ``parameter, value`` then the columns of :attr:`PowerResult.table`.
    familywise : pandas.DataFrame
        ``parameter, value`` then the columns of :attr:`PowerResult.familywise`.
    seed : int
        Seed shared by every point (common random numbers: the curve is smooth
        and differences between points are not Monte Carlo noise alone).
    replicates : int
    """

    parameter: str
    table: pd.DataFrame
    familywise: pd.DataFrame
    seed: int
    replicates: int


def power_curve(
    design: StudyDesign,
    *,
    parameter: str,
    values: Sequence[float],
    replicates: int = 1000,
    alpha: float = 0.05,
    inference: str = "ols",
    rng=None,
    n_jobs: int = 1,
    chunk_size: int | None = None,
    families: Mapping[str, Iterable] | None = None,
    size: bool = True,
    design_analysis: bool = True,
    progress: bool | None = None,
    dask=None,
    missing: str = "complete-case",
    imputations: int | None = None,
) -> PowerCurve:
    """Power of every test as ``parameter`` takes each of ``values``.

    Every point uses the same seed (common random numbers), so points that share
    a null counterpart (an ``effect`` curve) or a reference sample (an ``n``
    curve) simulate it once. Other arguments as in :func:`power`; ``parameter``
    as in :func:`vary_design`. The table holds every column of
    :attr:`PowerResult.table` per point, size and design analysis included.
    The chunks of all points are handed to the workers together (``n_jobs``,
    ``dask``), so a curve keeps a cluster busy; each point is the same as a
    :func:`power` run of its design with the same seed.
    """
    if parameter not in CURVE_PARAMETERS:
        raise ValueError(f"unknown curve parameter {parameter!r}; expected one of "
                         f"{list(CURVE_PARAMETERS)}")
    values = list(values)
    if not values:
        raise ValueError("values must not be empty")
    ss = as_seed_sequence(rng)
    designs = [vary_design(design, parameter, v) for v in values]
    tabs, fams = [None] * len(values), [None] * len(values)

    def keep(i, res):
        tabs[i] = res.table.assign(parameter=parameter, value=values[i])
        fams[i] = res.familywise.assign(parameter=parameter, value=values[i])

    _run_designs(designs, keep=keep, desc=f"power curve over {parameter}",
                 replicates=replicates, alpha=alpha, inference=inference, ss=ss,
                 n_jobs=n_jobs, chunk_size=chunk_size, families=families, size=size,
                 design_analysis=design_analysis, progress=progress, dask=dask,
                 missing=missing, imputations=imputations)
    lead = ["parameter", "value"]
    tab = pd.concat(tabs, ignore_index=True)
    fam = pd.concat(fams, ignore_index=True)
    return PowerCurve(
        parameter=parameter,
        table=tab[lead + [c for c in tab.columns if c not in lead]],
        familywise=fam[lead + [c for c in fam.columns if c not in lead]],
        seed=int(ss.entropy),
        replicates=replicates,
    )


def _run_designs(designs, *, keep, desc, replicates, alpha, inference, ss, n_jobs,
                 chunk_size, families, size, design_analysis, progress, dask,
                 missing="complete-case", imputations=None) -> None:
    """Validate once, then stream every point's tasks (:func:`_run_points`).

    ``designs`` is not empty: :func:`power_curve` and :func:`power_grid` check
    their values first.
    """
    replicates, alpha, inference, workers, missing, imputations = _check_run(
        replicates, alpha, inference, n_jobs, missing, imputations)
    if chunk_size is not None:
        _check_int("chunk_size", chunk_size, 1)
    for d in designs[:1]:
        _normalise_families(d, families)  # bad families fail before any work
    with (open_executor(n_jobs, dask) as ex,
          _progress.bar(progress, _points_work(designs, replicates, size), desc,
                        unit="rep") as bar):
        _run_points(designs, keep=keep, ex=ex, bar=bar, replicates=replicates,
                    alpha=float(alpha), inference=inference, ss=ss,
                    chunk_size=chunk_size, families=families, size=size,
                    design_analysis=design_analysis, workers=workers,
                    missing=missing, imputations=imputations)


GRID_COLUMNS = ("roi", "outcome", "term", "inference", "power", "power_ci_low",
                "power_ci_high", "median_p", "size", "size_ci_low", "size_ci_high",
                "size_ok", "true_value", "type_s", "exaggeration")
"""Columns of ``power_grid.tsv`` after the grid's axes (one column per axis)."""

MAX_GRID_POINTS = 100_000
"""Most points a grid may have (its table has one row per point and test)."""


@dataclass(frozen=True, slots=True, eq=False)
class PowerGrid:
    """Power over a grid of design parameters (a power surface).

    Parameters
    ----------
    axes : tuple of (str, tuple of float)
        The grid's axes in order: parameter (:data:`CURVE_PARAMETERS`) and values.
    table : pandas.DataFrame
        One row per point and test: a column per axis (named by its parameter),
        then :data:`GRID_COLUMNS`. A point whose design is not possible (its
        correlations not jointly possible, say at a large ``effect``) has its
        rows with every number empty (NaN).
    impossible : tuple of str
        Why each impossible point is impossible (one message per point).
    seed : int
        Seed shared by every point (common random numbers).
    replicates : int
    alpha : float
    inference : str
    design_name : str
    base : dict
        The design's own value of each axis parameter.
    """

    axes: tuple[tuple[str, tuple[float, ...]], ...]
    table: pd.DataFrame
    impossible: tuple[str, ...]
    seed: int
    replicates: int
    alpha: float
    inference: str
    design_name: str
    base: Mapping[str, float]


def design_parameter(design: StudyDesign, parameter: str) -> float:
    """Return the design's own value of a curve parameter (:func:`vary_design`).

    ``effect`` is 1 (the design's correlations); ``reliability`` is the median
    over ROIs of the ketamine-arm dMD reliability; ``cv`` the median CV.
    """
    if parameter == "n":
        return float(design.n)
    if parameter == "ratio":
        return design.allocation.ketamine / design.allocation.saline
    if parameter == "effect":
        return 1.0
    if parameter == "reliability":
        return float(np.median(list(design.reliability("ketamine").values())))
    if parameter == "cv":
        return float(np.median([r.cv for r in design.rois]))
    raise ValueError(f"unknown curve parameter {parameter!r}; expected one of "
                     f"{list(CURVE_PARAMETERS)}")


def check_grid_axes(axes) -> tuple[tuple[str, tuple[float, ...]], ...]:
    """Validate the axes of a power grid (:func:`power_grid`) before any work.

    Parameters
    ----------
    axes : mapping or sequence of (parameter, values)

    Returns
    -------
    tuple of (str, tuple)
        The axes in order, ``n`` values as int.

    Raises
    ------
    ValueError
        An unknown or repeated parameter, an empty axis, a value that is not a
        finite number (``n``: a whole number), a repeated value, both ``cv`` and
        ``reliability``, or more than :data:`MAX_GRID_POINTS` points.
    """
    items = list(axes.items()) if isinstance(axes, Mapping) else list(axes)
    if not items:
        raise ValueError("a grid needs at least one axis")
    out, seen = [], set()
    for item in items:
        if not isinstance(item, tuple | list) or len(item) != 2:
            raise ValueError(f"each grid axis must be (parameter, values); got "
                             f"{item!r}")
        name, values = item
        if name not in CURVE_PARAMETERS:
            raise ValueError(f"unknown grid parameter {name!r}; expected one of "
                             f"{list(CURVE_PARAMETERS)}")
        if name in seen:
            raise ValueError(f"grid parameter {name!r} is given twice")
        seen.add(name)
        values = tuple(values)
        if not values:
            raise ValueError(f"grid axis {name!r} has no values")
        for v in values:
            if isinstance(v, bool) or not isinstance(v, int | float | np.number) or (
                    not math.isfinite(float(v))):
                raise ValueError(f"grid axis {name!r} values must be finite "
                                 f"numbers; got {v!r}")
        if len(set(values)) != len(values):
            raise ValueError(f"grid axis {name!r} repeats a value")
        if name == "n":
            frac = [v for v in values if float(v) != int(v)]
            if frac:
                raise ValueError(f"grid axis 'n' values must be whole numbers; got "
                                 f"{frac[0]!r}")
            values = tuple(int(v) for v in values)
        out.append((name, values))
    if {"cv", "reliability"} <= seen:
        raise ValueError("a grid cannot vary both cv and reliability (both set "
                         "the scan-rescan CV); choose one")
    points = math.prod(len(v) for _, v in out)
    if points > MAX_GRID_POINTS:
        raise ValueError(f"the grid has {points} points; at most "
                         f"{MAX_GRID_POINTS} are allowed (fewer values per axis)")
    return tuple(out)


def power_grid(
    design: StudyDesign,
    *,
    axes,
    replicates: int = 1000,
    alpha: float = 0.05,
    inference: str = "ols",
    rng=None,
    n_jobs: int = 1,
    chunk_size: int | None = None,
    size: bool = True,
    design_analysis: bool = True,
    progress: bool | None = None,
    dask=None,
    missing: str = "complete-case",
    imputations: int | None = None,
) -> PowerGrid:
    """Power of every test at every point of a grid of design parameters.

    Parameters
    ----------
    design : StudyDesign
    axes : mapping or sequence of (parameter, values)
        Any of :data:`CURVE_PARAMETERS` (not both ``cv`` and ``reliability``),
        each with its values, e.g. ``{"n": range(40, 401, 20), "effect": [0.5,
        1], "reliability": [0.4, 0.6, 0.8]}``. A point sets each parameter in
        axis order (:func:`vary_design`).
    replicates, alpha, inference, rng, n_jobs, chunk_size, size, design_analysis,
    progress, dask, missing, imputations
        As in :func:`power`. Every point uses the same seed (common random
        numbers, as :func:`power_curve`): the surface is smooth, and points
        sharing a null counterpart or a reference sample simulate it once.

    Returns
    -------
    PowerGrid

    Notes
    -----
    The chunks of every point are streamed to the workers together (local
    processes or a Dask cluster), a point is reduced to its rows as soon as it
    is complete, so memory holds only the points in flight. Each point's rows
    are those of a :func:`power` run of its design with the same seed, whatever
    ran it.
    """
    if not isinstance(design, StudyDesign):
        raise TypeError(f"design must be a StudyDesign, got {type(design).__name__}")
    axes = check_grid_axes(axes)
    names = [a for a, _ in axes]
    import itertools

    points = list(itertools.product(*(v for _, v in axes)))
    designs, where, impossible = [], [], {}
    for i, point in enumerate(points):
        d = design
        try:
            for name, v in zip(names, point, strict=True):
                d = vary_design(d, name, v)
        except ValueError as e:
            at = ", ".join(f"{a} = {v:g}"
                           for a, v in zip(names, point, strict=True))
            impossible[i] = f"{at}: {' '.join(str(e).split())}"
            continue
        designs.append(d)
        where.append(i)
    ss = as_seed_sequence(rng)
    tables: list = [None] * len(points)

    def keep(j, res):
        tables[where[j]] = res.table[list(GRID_COLUMNS)]

    if designs:
        _run_designs(designs, keep=keep, desc="power grid", replicates=replicates,
                     alpha=alpha, inference=inference, ss=ss, n_jobs=n_jobs,
                     chunk_size=chunk_size, families=None, size=size,
                     design_analysis=design_analysis, progress=progress, dask=dask,
                     missing=missing, imputations=imputations)
    template = None
    for t in tables:
        if t is not None:
            template = t
            break
    if template is None:
        raise ValueError("no point of the grid is a possible design; first: "
                         + next(iter(impossible.values())))
    blank = template.copy()
    for col in GRID_COLUMNS[4:]:
        blank[col] = np.nan if col != "size_ok" else pd.NA
    frames = []
    for i, point in enumerate(points):
        t = tables[i] if tables[i] is not None else blank
        axis_cols = {name: (int(v) if name == "n" else float(v))
                     for name, v in zip(names, point, strict=True)}
        frames.append(t.assign(**axis_cols))
    table = pd.concat(frames, ignore_index=True)
    table = table[names + list(GRID_COLUMNS)]
    if impossible:
        first = next(iter(impossible.values()))
        warnings.warn(f"{len(impossible)} of {len(points)} grid points are not "
                      "possible designs (their rows are empty); first: "
                      f"{first}", stacklevel=2)
    return PowerGrid(axes=axes, table=table, impossible=tuple(impossible.values()),
                     seed=int(ss.entropy), replicates=int(replicates),
                     alpha=float(alpha), inference=inference,
                     design_name=design.name,
                     base={name: design_parameter(design, name) for name in names})


@dataclass(frozen=True, slots=True, eq=False)
class SampleSizeResult:
    """Smallest total n whose power reaches a target: one answer with its interval.

    Parameters
    ----------
    n : int or None
        The chosen n: the smallest n at which every target test's power (its
        Monte Carlo estimate) reaches ``target_power``; None if even ``n_max``
        does not.
    target_power : float
    power : float
        The criterion at ``n``: the smallest power over the tests.
    power_ci_low, power_ci_high : float
        The smallest lower and upper 95 % Wilson bounds over the tests (Monte
        Carlo uncertainty of the criterion).
    n_plausible : tuple of (int or None, int or None)
        Monte Carlo interval of ``n``: the smallest n whose power interval's
        upper bound reaches the target, and the smallest whose lower bound does
        (None: not within ``n_max``). Each is found by the same bisection as
        ``n``, with common random numbers.
    tests : tuple of (roi, outcome, term[, direction])
    evaluated : pandas.DataFrame
        The search trace: every n evaluated, ``n, power, power_ci_low,
        power_ci_high`` (criterion) and the limiting test.
    seed : int
    replicates : int
    n_max : int
        Largest n searched.
    """

    n: int | None
    target_power: float
    power: float
    power_ci_low: float
    power_ci_high: float
    n_plausible: tuple[int | None, int | None]
    tests: tuple[tuple[str, ...], ...]
    evaluated: pd.DataFrame
    seed: int
    replicates: int
    n_max: int = 1000

    @property
    def limiting_test(self) -> str:
        """The test with the lowest power at ``n`` (at ``n_max`` when not reached)."""
        ev = self.evaluated.set_index("n")
        at = self.n if self.n is not None else int(ev.index.max())
        return str(ev.loc[at, "limiting_test"])

    @property
    def table(self) -> pd.DataFrame:
        """The answer as one row (``sample_size.tsv``).

        Columns ``target_power, n, n_ci_low, n_ci_high, power, power_ci_low,
        power_ci_high, limiting_test, tests, n_max, replicates, seed``; ``n`` is
        empty (NaN) when the target is not reached by ``n_max``.
        """
        lo, hi = self.n_plausible
        return pd.DataFrame([{
            "target_power": self.target_power,
            "n": self.n, "n_ci_low": lo, "n_ci_high": hi,
            "power": self.power, "power_ci_low": self.power_ci_low,
            "power_ci_high": self.power_ci_high,
            "limiting_test": self.limiting_test,
            "tests": "; ".join("/".join(str(x) for x in t if x is not None)
                               for t in self.tests),
            "n_max": self.n_max, "replicates": self.replicates, "seed": self.seed,
        }]).astype({"n": "Int64", "n_ci_low": "Int64", "n_ci_high": "Int64"})

    def summary(self) -> str:
        """One sentence saying what n is needed and how sure that is."""
        if self.n is None:
            return (f"target power {self.target_power:g} is not reached by n = "
                    f"{self.n_max} for the weakest of {len(self.tests)} test(s) "
                    f"({self.limiting_test})")
        lo, hi = self.n_plausible
        return (
            f"n = {self.n} (Monte Carlo interval {lo if lo is not None else '?'} "
            f"to {hi if hi is not None else f'>{self.n_max}'}) reaches power "
            f"{self.power:.2f} (95% CI {self.power_ci_low:.2f}-"
            f"{self.power_ci_high:.2f}, {self.replicates} replicates) >= target "
            f"{self.target_power:g} for the weakest of {len(self.tests)} test(s) "
            f"({self.limiting_test})"
        )


def _test_power(row: pd.Series, direction: str | None) -> tuple[float, float, float]:
    """Power of one test with its Wilson interval, optionally of one sign only."""
    if direction is None:
        return (float(row["power"]), float(row["power_ci_low"]),
                float(row["power_ci_high"]))
    col = "power_positive" if direction == "positive" else "power_negative"
    k = round(float(row[col]) * int(row["valid"]))
    lo, hi = wilson_interval(k, int(row["valid"]))
    return float(row[col]), float(lo), float(hi)


def _finding_row(res: PowerResult, test) -> pd.Series | None:
    from dtitool.stats.reference import finding_family_name

    fw = res.familywise
    row = fw[(fw["family"] == finding_family_name(test)) & (fw["method"] == "none")]
    return row.iloc[0] if len(row) == 1 else None


def finding_power(res: PowerResult, test) -> tuple[float, float, float]:
    """Power of one finding ``(roi, outcome, term[, direction])`` with its interval.

    A finding whose outcome is :data:`ANY_OUTCOME` is found when its test is
    significant (with the direction, if given) on at least one outcome: its power
    is read from its one-finding family when the run has it
    (:func:`dtitool.stats.reference.reported_families`), else counted from the
    stored per-replicate p-values. Other findings are one test: power of that
    sign (or of either sign without a direction).
    """
    test = tuple(test)
    direction = test[3] if len(test) == 4 else None
    if test[1] != ANY_OUTCOME:
        return _test_power(res.get(*test[:3]), direction)
    row = _finding_row(res, test)
    if row is not None:
        return (float(row["power_any"]), float(row["power_any_ci_low"]),
                float(row["power_any_ci_high"]))
    sp = _outcome_p(res, test)  # (R, K) signed p
    hit = np.abs(sp) <= res.alpha
    if direction is not None:
        hit &= np.sign(sp) == (1 if direction == "positive" else -1)
    k = int(hit.any(axis=1).sum())
    lo, hi = wilson_interval(k, res.replicates)
    return k / res.replicates, float(lo), float(hi)


def finding_size(res: PowerResult, test) -> tuple[float, object]:
    """Size of a finding's test and whether it is within its band (``size_ok``).

    For an ``"any"``-outcome finding: how often the null counterpart "finds" it
    (significant on at least one outcome, with the reported sign), from its
    one-finding family; NaN when the run has no such family.
    """
    test = tuple(test)
    if test[1] != ANY_OUTCOME:
        row = res.get(*test[:3])
        return float(row["size"]), row["size_ok"]
    row = _finding_row(res, test)
    if row is None:
        return float("nan"), pd.NA
    return float(row["size"]), row["size_ok"]


def _outcome_p(res: PowerResult, test) -> np.ndarray:
    roi, outcome, term = tuple(test)[:3]
    d = res.design
    j, t = d.roi_names.index(roi), TERMS.index(term)
    ks = (list(range(len(d.outcome_names))) if outcome == ANY_OUTCOME
          else [d.outcome_names.index(outcome)])
    return res.signed_p[:, j, ks, t]


def finding_p(res: PowerResult, test) -> np.ndarray:
    """Per-replicate p of a finding (float32): for ``"any"`` the smallest outcome p."""
    p = np.abs(_outcome_p(res, test))
    return np.nanmin(p, axis=1) if p.shape[1] > 1 else p[:, 0]


def sample_size(
    design: StudyDesign,
    *,
    target_power: float = 0.8,
    tests: Sequence[tuple] | None = None,
    n_min: int | None = None,
    n_max: int = 1000,
    replicates: int = 1000,
    alpha: float = 0.05,
    inference: str = "ols",
    rng=None,
    n_jobs: int = 1,
    chunk_size: int | None = None,
    progress: bool | None = None,
    dask=None,
) -> SampleSizeResult:
    """Smallest total n at which every test in ``tests`` has the target power.

    Bisection over n with common random numbers (the same seed at every n, so the
    power of a test is, up to rare sign changes, monotone in n and the search is
    stable).

    Parameters
    ----------
    design : StudyDesign
    target_power : float
        Power to reach, in (0, 1).
    tests : sequence of (roi, outcome, term[, direction]), optional
        Tests that must all reach the target; default the interaction term of
        every model. With a direction (``"positive"`` or ``"negative"``) a test
        counts only rejections with an estimate of that sign (what a replication
        of a reported finding needs); without, rejections of either sign.
    n_min, n_max : int
        Search range (default from the smallest n with 4 per arm up to 1000).
    replicates, alpha, inference, rng, n_jobs, chunk_size, progress, dask
        As in :func:`power` (the search counts power only: no null counterpart
        and no design analysis at each n; one set of workers serves every n).

    Returns
    -------
    SampleSizeResult
    """
    check_inference(inference)
    if isinstance(target_power, bool) or not isinstance(target_power, float | int) or (
        not 0 < target_power < 1
    ):
        raise ValueError(f"target_power must be in (0, 1), got {target_power!r}")
    if tests is None:
        tests = [(r, o, "interaction") for r in design.roi_names
                 for o in design.outcome_names]
    tests = [tuple(t) for t in tests]
    if not tests:
        raise ValueError("tests must not be empty")
    for t in tests:
        if len(t) not in (3, 4) or (len(t) == 4 and t[3] not in (
                "positive", "negative", None)):
            raise ValueError("each test must be (roi, outcome, term) or (roi, "
                             "outcome, term, 'positive'|'negative'); got "
                             f"{t!r}")
        _check_test(design, t[0], design.outcome_names[0]
                    if t[1] == ANY_OUTCOME else t[1], t[2])
    from dtitool.stats.reference import finding_family_name

    any_families = {finding_family_name(t): [t] for t in tests
                    if t[1] == ANY_OUTCOME}
    a = design.allocation
    smallest = math.ceil(4 * (a.ketamine + a.saline) / min(a.ketamine, a.saline))
    n_min = max(smallest, 8) if n_min is None else _check_int("n_min", n_min, 6)
    n_max = _check_int("n_max", n_max, n_min)
    ss = as_seed_sequence(rng)
    cache: dict[int, tuple] = {}
    stack = contextlib.ExitStack()
    ex = stack.enter_context(open_executor(n_jobs, dask))
    bar = stack.enter_context(_progress.bar(progress, None, "sample size",
                                            unit="rep"))

    def evaluate(n):
        if n not in cache:
            res = power(vary_design(design, "n", n), replicates=replicates,
                        alpha=alpha, inference=inference, rng=ss, n_jobs=n_jobs,
                        chunk_size=chunk_size, size=False, design_analysis=False,
                        families=any_families or None, progress=bar, dask=ex)
            rows = np.array([finding_power(res, t) for t in tests])
            worst = int(np.argmin(rows[:, 0]))
            label = "/".join(str(x) for x in tests[worst] if x is not None)
            # the criterion: each of power and its bounds minimised over tests
            cache[n] = (*(float(v) for v in rows.min(axis=0)), label)
        return cache[n][0]

    def smallest(value: int) -> int | None:
        """Smallest n whose criterion (0 point, 1 CI low, 2 CI high) >= target.

        Bisection: power rises with n (common random numbers keep it monotone up
        to rare sign flips).
        """
        evaluate(n_max)
        if cache[n_max][value] < target_power:
            return None
        lo, hi = n_min, n_max
        evaluate(lo)
        if cache[lo][value] >= target_power:
            return lo
        while hi - lo > 1:
            mid = (lo + hi) // 2
            evaluate(mid)
            if cache[mid][value] >= target_power:
                hi = mid
            else:
                lo = mid
        return hi

    with stack:
        found = smallest(0)
        plaus = (smallest(2), smallest(1))
    ev = pd.DataFrame(
        [(n, *v) for n, v in sorted(cache.items())],
        columns=["n", "power", "power_ci_low", "power_ci_high", "limiting_test"],
    )
    if found is None:
        pw = lo_ci = hi_ci = float("nan")
    else:
        pw, lo_ci, hi_ci, _ = cache[found]
    return SampleSizeResult(
        n=found, target_power=float(target_power), power=pw, power_ci_low=lo_ci,
        power_ci_high=hi_ci, n_plausible=plaus, tests=tuple(tests), evaluated=ev,
        seed=int(ss.entropy), replicates=replicates, n_max=n_max,
    )


def power_summary(res: PowerResult, tests=None, curve: PowerCurve | None = None,
                  size: SampleSizeResult | None = None) -> str:
    """Return the printed summary of a power run.

    Parameters
    ----------
    res : PowerResult
    tests : sequence of (roi, outcome, term[, direction]), optional
        Tests to list; default every interaction.
    curve : PowerCurve, optional
        Unused in the text (the curve is written as a table and a figure).
    size : SampleSizeResult, optional
        Its one-paragraph summary is appended.
    """
    t = res.table
    lines = [f"power of {res.design.name!r} (n = {res.design.n}), {res.replicates} "
             f"replicates, seed {res.seed}, alpha {res.alpha:g}, inference "
             f"{res.inference}; size = rejection rate in the null counterpart "
             "(every ROI-outcome correlation 0)", missing_line(res)]
    if tests:
        keys = pd.DataFrame([tuple(r[:3]) for r in tests],
                            columns=["roi", "outcome", "term"])
        show = keys.merge(t, on=["roi", "outcome", "term"])
    else:
        show = t[t["term"] == "interaction"]
    cols = ["roi", "outcome", "term", "power", "power_ci_low", "power_ci_high",
            "median_p", "size", "size_ok", "type_s", "exaggeration"]
    def flags(frame):
        ok = frame["size_ok"].map({True: "yes", False: "NO"})
        return frame.assign(size_ok=ok.where(frame["size_ok"].notna(), "-"))

    with pd.option_context("display.width", 140, "display.max_rows", 100):
        lines.append(flags(show[cols]).to_string(index=False, float_format="%.4g",
                                                 na_rep="-"))
        fw = res.familywise
        fw = fw[fw["family"].isin(["reported", "interaction"])]
        lines.append(flags(fw[["family", "method", "tests", "power_any",
                               "power_all", "mean_rejections", "size",
                               "size_ok"]]).to_string(index=False,
                                                      float_format="%.3f",
                                                      na_rep="-"))
    if size is not None:
        lines.append(size.summary())
    return "\n".join(lines)


def size_warning(res: PowerResult) -> str | None:
    """One line naming the tests whose size is off their band, or None.

    The tests are grouped by term (with the ROI x outcome models when not all of
    them); the line says whether the other inference option simulated in the
    same null-counterpart trials (``alternative_size``) brings them within band.
    """
    t = res.table
    bad = t[t["size_ok"].eq(False)]
    if bad.empty:
        return None
    n_models = len(res.design.roi_names) * len(res.design.outcome_names)
    parts = []
    for term, g in bad.groupby("term", sort=False):
        where = (f"all {n_models} models" if len(g) == n_models else
                 ", ".join(f"{r}/{o}" for r, o in zip(g["roi"], g["outcome"],
                                                      strict=True)))
        lo, hi = g["size"].min(), g["size"].max()
        rng = f"{lo:.3f}" if lo == hi else f"{lo:.3f}-{hi:.3f}"
        parts.append(f"{term} ({where}; size {rng})")
    line = (f"warning: {len(bad)} of {len(t)} tests are off their nominal level "
            f"{res.alpha:g} under --inference {res.inference} (size outside the "
            f"{SIZE_LEVEL:.0%} binomial band in the null counterpart): "
            + "; ".join(parts))
    alt = res.alternative_size
    if alt is not None:
        fixed = bad[["roi", "outcome", "term"]].merge(alt, on=["roi", "outcome",
                                                               "term"])
        n_ok = int(fixed["size_ok"].eq(True).sum())
        name = str(alt["inference"].iloc[0])
        if n_ok == len(bad):
            line += f"; --inference {name} puts all of them within band"
        else:
            line += (f"; --inference {name} puts {n_ok} of them within band "
                     "in the same null trials")
    else:
        line += ("; no other inference option is known to fix them here (see "
                 "docs/model.md, Inference)")
    return line
