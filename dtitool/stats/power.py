"""Monte Carlo power of the per-ROI models, curves, sample size, analytic check.

:func:`power` simulates ``replicates`` trials of a :class:`~dtitool.design.StudyDesign`
(:mod:`dtitool.simulate`, keyed so replicate ``i`` depends only on the seed and
``i``), fits every model of the analysis (``docs/model.md``, "Analysis models"; per
ROI ``r`` and outcome ``k``)::

    d_score_k ~ ketamine + x_r + ketamine:x_r + <k>_baseline     (interaction model)
    d_score_k ~ ketamine + x_r + <k>_baseline                     (additive model)

with ``x_r = dMD_r / DMD_SCALE`` (score points per 1e-5 mm^2/s), and counts
rejections of the four reported terms: ``interaction``, ``slope_ketamine``
(``b_x + b_int``), ``slope_saline`` (``b_x``), ``slope_pooled`` (``b_x`` of the
additive model).

How it is fast: per replicate, one cross-product matrix of all centred variables
(group, the 7 dMD, the 7 group x dMD, the baselines and the score changes) is formed
with a single batched matmul; every one of the 28 models reads its ``X'X``,
``X'y`` and ``y'y`` out of it (by Frisch-Waugh-Lovell centring replaces the
intercept), and the 28 small systems of all replicates are solved together by
:func:`dtitool.stats.ols.ols_from_crossproducts`. A missing 24 h scan drops the subject
from every model of that replicate (the mask is per replicate).

Reproducibility: chunks are replicate ranges aligned to the simulator's
:data:`~dtitool.simulate.BLOCK_SIZE`; per-replicate values depend only on the seed
and the replicate index, per-test counts are integers, estimates are summed per
fixed block of replicates and the blocks added in order, so the result is
bit-identical for any ``chunk_size`` and any ``n_jobs``.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import math
import os
import sys
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import pandas as pd
from scipy import special

from dtitool._constants import CURVE_PARAMETERS, DMD_SCALE, TERMS
from dtitool._memory import check_memory
from dtitool._workers import process_pool
from dtitool.design import PerArm, StudyDesign
from dtitool.simulate import (
    BLOCK_SIZE,
    CohortArrays,
    as_seed_sequence,
    simulate_arrays,
    simulation_bytes,
)
from dtitool.stats.ols import ols_from_crossproducts, two_sided_p

__all__ = [
    "CURVE_PARAMETERS",
    "POWER_COLUMNS",
    "TERMS",
    "BatchModels",
    "PowerCurve",
    "PowerResult",
    "SampleSizeResult",
    "analytic_power",
    "batch_models",
    "power",
    "power_curve",
    "sample_size",
    "vary_design",
    "wilson_interval",
]


POWER_COLUMNS = ("roi", "outcome", "term", "power", "power_ci_low", "power_ci_high",
                 "median_p", "mean_estimate")
"""Columns of ``power.tsv`` (a selection of :attr:`PowerResult.table`)."""

# Contrasts over the centred interaction-model columns [ketamine, x, ketamine*x,
# baseline]; slope_pooled is column x of the additive model [ketamine, x, baseline].
_INTERACTION_CONTRASTS = {
    "interaction": np.array([0.0, 0.0, 1.0, 0.0]),
    "slope_ketamine": np.array([0.0, 1.0, 1.0, 0.0]),
    "slope_saline": np.array([0.0, 1.0, 0.0, 0.0]),
}
_POOLED_CONTRAST = np.array([0.0, 1.0, 0.0])

METHODS = ("none", "holm", "bh")
"""Multiplicity handling of family-wise power: unadjusted, Holm, Benjamini-Hochberg."""


DEFAULT_CHUNK = 1024
"""Replicates per chunk (rounded up to a multiple of the simulator's BLOCK_SIZE)."""


# ----------------------------------------------------------------------- models


@dataclass(frozen=True, slots=True, eq=False)
class BatchModels:
    """Every model of every replicate: arrays of shape (R, J, K, T).

    Axes: replicates, ROIs, outcomes, terms (:data:`TERMS`).

    Parameters
    ----------
    estimate, se, t, p : ndarray
        Term estimates (score points per 1e-5 mm^2/s dMD), standard errors, t and
        two-sided p.
    df : ndarray of int
        Residual degrees of freedom.
    n : ndarray of int, shape (R,)
        Subjects in the models of each replicate (24 h scan present).
    roi_names, outcome_names : tuple of str
    """

    estimate: np.ndarray
    se: np.ndarray
    t: np.ndarray
    p: np.ndarray
    df: np.ndarray
    n: np.ndarray
    roi_names: tuple[str, ...]
    outcome_names: tuple[str, ...]


def batch_models(arrays: CohortArrays) -> BatchModels:
    """Fit the interaction and additive models of every ROI x outcome, all replicates.

    Parameters
    ----------
    arrays : CohortArrays
        Simulated replicate trials (:func:`dtitool.simulate.simulate_arrays`).

    Returns
    -------
    BatchModels
        Same numbers as statsmodels OLS of the formulas in the module docstring
        (checked to 1e-8 in p in ``tests/test_power.py``).
    """
    treated = np.asarray(arrays.treated)
    R, N = treated.shape
    md, scores = arrays.md, arrays.scores
    J, K = md.shape[2], scores.shape[2]
    # V: per subject [ketamine, x_1..x_J, ketamine*x_1..x_J, baseline_1..K,
    # d_score_1..K], built in place (this function is the hot path).
    M = 1 + 2 * J + 2 * K
    V = np.empty((R, N, M))
    x = V[..., 1 : 1 + J]
    np.subtract(md[..., 1], md[..., 0], out=x)
    x /= DMD_SCALE
    g = treated.astype(float)
    V[..., 0] = g
    np.multiply(x, g[..., None], out=V[..., 1 + J : 1 + 2 * J])
    V[..., 1 + 2 * J : 1 + 2 * J + K] = scores[..., 0]
    np.subtract(scores[..., 1], scores[..., 0], out=V[..., 1 + 2 * J + K :])
    mask = np.asarray(arrays.observed_24h, bool) & np.all(np.isfinite(x), axis=-1)
    complete = bool(mask.all())
    if not complete:
        V[~mask] = 0.0
    n = mask.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = V.sum(axis=1) / n[:, None]
    V -= mean[:, None, :]
    if not complete:
        V[~mask] = 0.0
    S = np.matmul(V.transpose(0, 2, 1), V)  # (R, M, M) centred cross-products
    del V, x

    ig = np.zeros((J, K), int)
    ix = np.broadcast_to(1 + np.arange(J)[:, None], (J, K))
    igx = ix + J
    ib = np.broadcast_to(1 + 2 * J + np.arange(K)[None, :], (J, K))
    iy = ib + K
    nn = np.broadcast_to(n[:, None, None], (R, J, K))

    def fit(idx):
        G = S[:, idx[..., :, None], idx[..., None, :]]
        xty = S[:, idx, iy[..., None]]
        yty = S[:, iy, iy]
        return ols_from_crossproducts(G, xty, yty, nn, absorbed=1)

    full = fit(np.stack([ig, ix, igx, ib], axis=-1))
    add = fit(np.stack([ig, ix, ib], axis=-1))
    cons = [(full, _INTERACTION_CONTRASTS[t]) for t in TERMS[:3]]
    cons.append((add, _POOLED_CONTRAST))
    est = np.stack([f.coef @ c for f, c in cons], axis=-1)
    var = np.stack(
        [np.einsum("i,...ij,j->...", c, f.xtx_inv, c) * f.sigma2 for f, c in cons],
        axis=-1,
    )
    df = np.stack([np.asarray(f.df_resid) for f, _ in cons], axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        se = np.sqrt(var)
        t = est / se
    # One df for the whole chunk when no scan is missing: stdtr is then cheaper.
    p = two_sided_p(t, int(df.flat[0]) if complete and R else df)
    return BatchModels(
        estimate=est,
        se=se,
        t=t,
        p=p,
        df=df,
        n=n,
        roi_names=tuple(arrays.roi_names),
        outcome_names=tuple(arrays.outcome_names),
    )


# ------------------------------------------------------------------ multiplicity


def _rejections(p: np.ndarray, method: str, alpha: float) -> np.ndarray:
    """Rejected hypotheses per row of ``p`` (R, m); NaN never rejected.

    Same decisions as ``statsmodels.stats.multitest.multipletests`` (``holm``,
    ``fdr_bh``), with ``p <= alpha`` as the unadjusted rule.
    """
    p = np.where(np.isnan(p), np.inf, p)
    if method == "none":
        return p <= alpha
    m = p.shape[1]
    order = np.argsort(p, axis=1, kind="stable")
    ps = np.take_along_axis(p, order, axis=1)
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
    families: tuple[tuple[str, np.ndarray, np.ndarray], ...]  # name, flat idx, dir


def _chunk(design: StudyDesign, seed, start: int, stop: int, spec: _Spec) -> dict:
    arrays = simulate_arrays(design, seed=seed, start=start, stop=stop,
                             chunk_size=stop - start)
    return _summarise(batch_models(arrays), spec)


def _summarise(bm: BatchModels, spec: _Spec) -> dict:
    R = bm.p.shape[0]
    p = bm.p.reshape(R, -1)
    est = bm.estimate.reshape(R, -1)
    pos = est > 0
    valid = ~np.isnan(p)
    sig = p <= spec.alpha
    nb = -(-R // BLOCK_SIZE)
    pad = np.zeros((nb * BLOCK_SIZE, est.shape[1]))
    pad[:R] = np.where(np.isnan(est), 0.0, est)
    block_sums = pad.reshape(nb, BLOCK_SIZE, -1).sum(axis=1)
    fam = []
    for _, idx, direction in spec.families:
        pf = p[:, idx]
        dir_ok = (direction == 0) | (np.where(pos[:, idx], 1, -1) == direction)
        row = []
        for method in METHODS:
            rej = _rejections(pf, method, spec.alpha) & dir_ok
            row.append([rej.any(axis=1).sum(), rej.all(axis=1).sum(), rej.sum()])
        fam.append(row)
    return {
        "signed_p": np.copysign(p, est).astype(np.float32),
        "reject": sig.sum(axis=0),
        "reject_pos": (sig & pos).sum(axis=0),
        "reject_neg": (sig & ~pos & valid).sum(axis=0),
        "valid": valid.sum(axis=0),
        "block_sums": block_sums,
        "est_valid": (~np.isnan(est)).sum(axis=0),
        "family": np.array(fam, dtype=np.int64).reshape(len(spec.families), 3, 3),
    }


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
    return np.clip(centre - half, 0, 1), np.clip(centre + half, 0, 1)


@dataclass(frozen=True, slots=True, eq=False)
class PowerResult:
    """Monte Carlo power of every model term of a design.

    Parameters
    ----------
    design : StudyDesign
        The design simulated.
    replicates : int
        Number of simulated trials.
    alpha : float
        Two-sided significance level (a test rejects when ``p <= alpha``).
    seed : int
        Entropy of the root SeedSequence; ``power(design, rng=seed, ...)`` repeats
        the run exactly.
    spawn_key : tuple of int
        Spawn key of the root SeedSequence (empty for an integer seed).
    table : pandas.DataFrame
        One row per ``roi, outcome, term``: ``power`` (fraction of replicates with
        ``p <= alpha``), ``power_ci_low``, ``power_ci_high`` (95 % Wilson score
        interval), ``median_p``, ``mean_estimate`` (score points per 1e-5 mm^2/s
        dMD), ``power_positive`` and ``power_negative`` (rejections with a
        positive / negative estimate), ``valid`` (replicates with a finite p).
    familywise : pandas.DataFrame
        One row per ``family, method`` (``none``, ``holm``, ``bh``): ``tests``,
        ``power_any`` (at least one rejection), ``power_all`` (every test rejected)
        with Wilson intervals, and ``mean_rejections``. Families are each term
        across all ROI x outcome models plus the user's; in a family with stated
        directions a rejection counts only with the right sign.
    signed_p : ndarray of float32, shape (R, J, K, T)
        Per-replicate p-values carrying the sign of the estimate.
    """

    design: StudyDesign
    replicates: int
    alpha: float
    seed: int
    spawn_key: tuple[int, ...]
    table: pd.DataFrame
    familywise: pd.DataFrame
    signed_p: np.ndarray

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


def _normalise_families(
    design: StudyDesign, families: Mapping[str, Iterable] | None
) -> tuple[tuple[str, np.ndarray, np.ndarray], ...]:
    J, K, T = len(design.rois), len(design.outcomes), len(TERMS)
    out = []
    for t, term in enumerate(TERMS):
        idx = (np.arange(J)[:, None] * K + np.arange(K)[None, :]) * T + t
        out.append((term, idx.ravel(), np.zeros(J * K, int)))
    for name, tests in (families or {}).items():
        if not isinstance(name, str) or name in TERMS:
            raise ValueError(
                f"family name {name!r} must be a string other than the built-in "
                f"term families {list(TERMS)}"
            )
        idx, dirs = [], []
        for test in tests:
            roi, outcome, term, *rest = tuple(test) + (None,) * (4 - len(tuple(test)))
            if len(tuple(test)) not in (3, 4):
                raise ValueError(
                    f"family {name!r}: each test must be (roi, outcome, term[, "
                    f"direction]); got {test!r}"
                )
            _check_test(design, roi, outcome, term, where=f"family {name!r}")
            d = rest[0]
            if d in (None, 0, "any"):
                d = 0
            elif d in (1, "+", "positive"):
                d = 1
            elif d in (-1, "-", "negative"):
                d = -1
            else:
                raise ValueError(
                    f"family {name!r}: direction must be 'positive', 'negative' or "
                    f"None; got {d!r}"
                )
            j, k = design.roi_names.index(roi), design.outcome_names.index(outcome)
            idx.append((j * K + k) * T + TERMS.index(term))
            dirs.append(d)
        if not idx:
            raise ValueError(f"family {name!r} has no tests")
        out.append((name, np.array(idx), np.array(dirs)))
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


def _progress_bar(progress, total: int, desc: str):
    from tqdm.auto import tqdm

    if progress is None:
        # Auto: only on a terminal, and only when the run is long enough to matter.
        disable = not sys.stderr.isatty() or total < 20_000
    else:
        disable = not progress
    return tqdm(total=total, desc=desc, unit="rep", disable=disable, leave=False,
                file=sys.stderr)


def power(
    design: StudyDesign,
    *,
    replicates: int = 2000,
    alpha: float = 0.05,
    rng=None,
    n_jobs: int = 1,
    chunk_size: int | None = None,
    families: Mapping[str, Iterable] | None = None,
    progress: bool | None = None,
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
    rng : None, int, SeedSequence or Generator
        Seed of the simulation; recorded in the result. Results depend only on it,
        never on ``chunk_size`` or ``n_jobs``.
    n_jobs : int
        Worker processes (-1: all CPUs). Chunks are replicate ranges.
    chunk_size : int, optional
        Replicates simulated and fitted at once (memory ~100 kB per replicate at
        n = 98); rounded up to a multiple of the simulator's block size (64).
        Default :data:`DEFAULT_CHUNK` at n = 98, scaled by 98 / n.
    families : mapping of str to iterable of tuples, optional
        Extra families for the family-wise table: ``{"reported": [(roi, outcome,
        term[, direction]), ...]}`` with direction ``"positive"``, ``"negative"``
        or None.
    progress : bool, optional
        Show a tqdm progress bar on stderr; default: only on a terminal and for
        runs of 20,000 replicates or more.

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
    replicate for 56 tests: 224 MB at 1,000,000 replicates) for the medians;
    everything else is reduced per chunk.
    """
    if not isinstance(design, StudyDesign):
        raise TypeError(f"design must be a StudyDesign, got {type(design).__name__}")
    replicates = _check_int("replicates", replicates, 1)
    if isinstance(alpha, bool) or not isinstance(alpha, float | int) or not (
        0 < alpha < 1
    ):
        raise ValueError(f"alpha must be a number in (0, 1), got {alpha!r}")
    n_jobs = _check_n_jobs(n_jobs)
    if chunk_size is None:
        # Keep the working set of a chunk (~100 kB per replicate at n = 98) the
        # same for larger trials.
        chunk = max(BLOCK_SIZE, DEFAULT_CHUNK * 98 // max(design.n, 1))
    else:
        chunk = _check_int("chunk_size", chunk_size, 1)
    chunk = -(-chunk // BLOCK_SIZE) * BLOCK_SIZE
    ss = as_seed_sequence(rng)
    spec = _Spec(alpha=float(alpha), families=_normalise_families(design, families))

    # Before anything is allocated (the chunk list included): per-replicate
    # p-values (4 bytes x 4 terms per model) and one chunk per worker.
    check_memory(16.0 * replicates * len(design.rois) * len(design.outcomes)
                 + simulation_bytes(design, chunk) * min(n_jobs, -(-replicates
                                                                  // chunk)),
                 f"a power run of {replicates} replicates at n = {design.n}",
                 hint="use fewer replicates or a smaller n")
    ranges = [(a, min(a + chunk, replicates)) for a in range(0, replicates, chunk)]
    J, K, T = len(design.rois), len(design.outcomes), len(TERMS)
    m = J * K * T
    signed_p = np.empty((replicates, m), dtype=np.float32)
    block_sums = np.empty((-(-replicates // BLOCK_SIZE), m))
    totals = {k: np.zeros(m, np.int64) for k in
              ("reject", "reject_pos", "reject_neg", "valid", "est_valid")}
    fam = np.zeros((len(spec.families), 3, 3), np.int64)

    def collect(a, b, res):
        signed_p[a:b] = res["signed_p"]
        block_sums[a // BLOCK_SIZE: a // BLOCK_SIZE + len(res["block_sums"])] = (
            res["block_sums"])
        for k in totals:
            totals[k] += res[k]
        fam[...] += res["family"]

    with _progress_bar(progress, replicates, f"power {design.name}") as bar:
        if n_jobs == 1 or len(ranges) == 1:
            for a, b in ranges:
                collect(a, b, _chunk(design, ss, a, b, spec))
                bar.update(b - a)
        else:
            # Workers die with this process and stop on Ctrl-C / SIGTERM.
            with process_pool(min(n_jobs, len(ranges))) as ex:
                futs = {ex.submit(_chunk, design, ss, a, b, spec): (a, b)
                        for a, b in ranges}
                for f in cf.as_completed(futs):
                    # pop: a finished future holds its result until released.
                    a, b = futs.pop(f)
                    collect(a, b, f.result())
                    del f
                    bar.update(b - a)

    # Medians a few columns at a time: bounded temporaries at 1e6 replicates.
    median_p = np.empty(m)
    for c in range(0, m, 8):
        absp = np.abs(signed_p[:, c : c + 8])
        med = np.nanmedian if np.isnan(absp).any() else np.median
        median_p[c : c + 8] = med(absp, axis=0)
    del absp
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_est = block_sums.sum(axis=0) / totals["est_valid"]
    n_valid = totals["valid"]
    lo, hi = wilson_interval(totals["reject"], n_valid)
    names = pd.MultiIndex.from_product(
        [design.roi_names, design.outcome_names, TERMS],
        names=["roi", "outcome", "term"],
    ).to_frame(index=False)
    with np.errstate(invalid="ignore", divide="ignore"):
        table = names.assign(
            power=totals["reject"] / n_valid,
            power_ci_low=lo,
            power_ci_high=hi,
            median_p=median_p.astype(float),
            mean_estimate=mean_est,
            power_positive=totals["reject_pos"] / n_valid,
            power_negative=totals["reject_neg"] / n_valid,
            valid=n_valid,
        )
    if (n_valid < replicates).any():
        warnings.warn(
            f"{int(replicates * m - n_valid.sum())} model fits had no valid p-value "
            "(too few subjects or a rank-deficient design); power is over valid "
            "replicates only",
            stacklevel=2,
        )
    rows = []
    for (name, idx, direction), counts in zip(spec.families, fam, strict=True):
        for method, (n_any, n_all, n_rej) in zip(METHODS, counts, strict=True):
            any_lo, any_hi = wilson_interval(n_any, replicates)
            all_lo, all_hi = wilson_interval(n_all, replicates)
            rows.append({
                "family": name, "method": method, "tests": len(idx),
                "directional": bool(np.any(direction != 0)),
                "power_any": n_any / replicates, "power_any_ci_low": float(any_lo),
                "power_any_ci_high": float(any_hi),
                "power_all": n_all / replicates, "power_all_ci_low": float(all_lo),
                "power_all_ci_high": float(all_hi),
                "mean_rejections": n_rej / replicates,
            })
    return PowerResult(
        design=design,
        replicates=replicates,
        alpha=float(alpha),
        seed=int(ss.entropy),
        spawn_key=tuple(int(k) for k in ss.spawn_key),
        table=table,
        familywise=pd.DataFrame(rows),
        signed_p=signed_p.reshape(replicates, J, K, T),
    )


def _check_n_jobs(n_jobs) -> int:
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, int | np.integer) or (
        n_jobs == 0 or n_jobs < -1
    ):
        raise ValueError(f"n_jobs must be a positive integer or -1 (all CPUs), "
                         f"got {n_jobs!r}")
    if n_jobs == -1:
        return os.cpu_count() or 1
    return int(n_jobs)


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
    rng=None,
    n_jobs: int = 1,
    chunk_size: int | None = None,
    families: Mapping[str, Iterable] | None = None,
    progress: bool | None = None,
) -> PowerCurve:
    """Power of every test as ``parameter`` takes each of ``values``.

    Every point uses the same seed (common random numbers). Other arguments as in
    :func:`power`; ``parameter`` as in :func:`vary_design`.
    """
    if parameter not in CURVE_PARAMETERS:
        raise ValueError(f"unknown curve parameter {parameter!r}; expected one of "
                         f"{list(CURVE_PARAMETERS)}")
    values = list(values)
    if not values:
        raise ValueError("values must not be empty")
    ss = as_seed_sequence(rng)
    tabs, fams = [], []
    for v in values:
        d = vary_design(design, parameter, v)
        res = power(d, replicates=replicates, alpha=alpha, rng=ss, n_jobs=n_jobs,
                    chunk_size=chunk_size, families=families, progress=progress)
        tabs.append(res.table.assign(parameter=parameter, value=v))
        fams.append(res.familywise.assign(parameter=parameter, value=v))
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


@dataclass(frozen=True, slots=True, eq=False)
class SampleSizeResult:
    """Smallest total n whose power reaches a target.

    Parameters
    ----------
    n : int or None
        Smallest evaluated n at which every target test's power reached
        ``target_power`` (None if even ``n_max`` does not).
    target_power : float
    power : float
        The criterion (minimum power over the tests) at ``n``.
    power_ci_low, power_ci_high : float
        95 % Wilson interval of that power (Monte Carlo uncertainty).
    n_plausible : tuple of (int or None, int or None)
        Monte Carlo range of the answer: the smallest evaluated n whose interval
        upper bound reaches the target, and the smallest whose lower bound does.
    tests : tuple of (roi, outcome, term)
    evaluated : pandas.DataFrame
        Every n evaluated: ``n, power, power_ci_low, power_ci_high`` (criterion)
        and the limiting test.
    seed : int
    replicates : int
    """

    n: int | None
    target_power: float
    power: float
    power_ci_low: float
    power_ci_high: float
    n_plausible: tuple[int | None, int | None]
    tests: tuple[tuple[str, str, str], ...]
    evaluated: pd.DataFrame
    seed: int
    replicates: int

    def summary(self) -> str:
        """One paragraph saying what n is needed and how sure that is."""
        if self.n is None:
            return (f"target power {self.target_power:g} not reached up to "
                    f"n = {int(self.evaluated['n'].max())}")
        lo, hi = self.n_plausible
        return (
            f"n = {self.n} reaches power {self.power:.3f} (95% CI "
            f"{self.power_ci_low:.3f}-{self.power_ci_high:.3f}, {self.replicates} "
            f"replicates) >= target {self.target_power:g} for the weakest of "
            f"{len(self.tests)} test(s); Monte Carlo range of n: "
            f"{lo if lo is not None else '?'} to {hi if hi is not None else '>max'}"
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


def sample_size(
    design: StudyDesign,
    *,
    target_power: float = 0.8,
    tests: Sequence[tuple] | None = None,
    n_min: int | None = None,
    n_max: int = 1000,
    replicates: int = 1000,
    alpha: float = 0.05,
    rng=None,
    n_jobs: int = 1,
    chunk_size: int | None = None,
    progress: bool | None = None,
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
    replicates, alpha, rng, n_jobs, chunk_size, progress
        As in :func:`power`.

    Returns
    -------
    SampleSizeResult
    """
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
        _check_test(design, *t[:3])
    a = design.allocation
    smallest = math.ceil(4 * (a.ketamine + a.saline) / min(a.ketamine, a.saline))
    n_min = max(smallest, 8) if n_min is None else _check_int("n_min", n_min, 6)
    n_max = _check_int("n_max", n_max, n_min)
    ss = as_seed_sequence(rng)
    cache: dict[int, tuple] = {}

    def evaluate(n):
        if n not in cache:
            res = power(vary_design(design, "n", n), replicates=replicates,
                        alpha=alpha, rng=ss, n_jobs=n_jobs, chunk_size=chunk_size,
                        progress=progress)
            rows = [_test_power(res.get(*t[:3]), t[3] if len(t) == 4 else None)
                    for t in tests]
            worst = min(range(len(rows)), key=lambda i: rows[i][0])
            label = "/".join(str(x) for x in tests[worst] if x is not None)
            cache[n] = (*rows[worst], label)
        return cache[n][0]

    if evaluate(n_max) < target_power:
        found = None
    else:
        lo, hi = n_min, n_max
        if evaluate(lo) >= target_power:
            hi = lo
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if evaluate(mid) >= target_power:
                hi = mid
            else:
                lo = mid
        found = hi
        for nb in (found - 1, found + 1):  # neighbours, for the stated uncertainty
            if n_min <= nb <= n_max:
                evaluate(nb)
    ev = pd.DataFrame(
        [(n, *v) for n, v in sorted(cache.items())],
        columns=["n", "power", "power_ci_low", "power_ci_high", "limiting_test"],
    )
    up = ev[ev["power_ci_high"] >= target_power]["n"]
    down = ev[ev["power_ci_low"] >= target_power]["n"]
    plaus = (int(up.min()) if len(up) else None, int(down.min()) if len(down) else None)
    if found is None:
        pw = lo_ci = hi_ci = float("nan")
    else:
        pw, lo_ci, hi_ci, _ = cache[found]
    return SampleSizeResult(
        n=found, target_power=float(target_power), power=pw, power_ci_low=lo_ci,
        power_ci_high=hi_ci, n_plausible=plaus, tests=tuple(tests), evaluated=ev,
        seed=int(ss.entropy), replicates=replicates,
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
             f"replicates, seed {res.seed}, alpha {res.alpha:g}"]
    if tests:
        keys = pd.DataFrame([tuple(r[:3]) for r in tests],
                            columns=["roi", "outcome", "term"])
        show = keys.merge(t, on=["roi", "outcome", "term"])
    else:
        show = t[t["term"] == "interaction"]
    with pd.option_context("display.width", 120, "display.max_rows", 100):
        lines.append(show[list(POWER_COLUMNS)].to_string(index=False,
                                                         float_format="%.4g"))
        fw = res.familywise
        fw = fw[fw["family"].isin(["reported", "interaction"])]
        lines.append(fw[["family", "method", "tests", "power_any", "power_all",
                         "mean_rejections"]].to_string(index=False,
                                                       float_format="%.3f"))
    if size is not None:
        lines.append(size.summary())
    return "\n".join(lines)
