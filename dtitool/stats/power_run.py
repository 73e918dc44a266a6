"""A power run: :func:`power`, its chunks as tasks, their results folded together.

:func:`power` cuts a run into tasks (:class:`_PowerRun`): the chunks of the
design and of its null counterpart (:mod:`dtitool.stats.power_engine`) and one
reference sample of the true values (:mod:`dtitool.stats.design_analysis`),
hands them to an executor (this process, local worker processes or Dask:
:mod:`dtitool._executor`), folds each chunk's counts in as it arrives, in any
order, and builds the :class:`~dtitool.stats.power_results.PowerResult`: power
and its interval, size and its band, design analysis, and the family-wise table
with the max-T critical values from the null counterpart's draws.

Curves and grids (:mod:`dtitool.stats.curves`) stream many runs through one
executor (:func:`_run_points`), sharing a cache so that a null counterpart or a
reference sample common to several points is simulated once.

Streams: the null counterpart and the reference sample draw from child streams
of the run's root ``SeedSequence`` (spawn keys :data:`NULL_STREAM` and
:data:`TRUTH_STREAM`), so one seed repeats everything.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import warnings
from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd

from dtitool import _progress
from dtitool._executor import Task, check_n_jobs, open_executor
from dtitool._memory import check_memory
from dtitool.design import StudyDesign
from dtitool.simulate import BLOCK_SIZE, as_seed_sequence, simulation_bytes
from dtitool.stats.binomial import size_band, wilson_interval
from dtitool.stats.design_analysis import MIN_SIGNIFICANT, ZERO_SE, true_values
from dtitool.stats.design_variants import null_counterpart
from dtitool.stats.power_engine import (
    _by_finding,
    _chunk,
    _normalise_families,
    _Spec,
)
from dtitool.stats.power_results import METHODS, PowerResult
from dtitool.stats.settings import MonteCarlo, _resolve

__all__ = ["power"]


NULL_STREAM = 0x6E756C6C
"""Spawn key (appended to the root's) of the null counterpart's stream ("null" in
ASCII): far above any replicate block index, so it never meets a block stream."""


TRUTH_STREAM = 0x74727565
"""Spawn key of the reference sample of the true values ("true" in ASCII)."""


MAXT_EXTRA_DRAWS = 3
"""Within-arm permutations of dMD per null-counterpart trial, for the max-T
critical values. In the null counterpart dMD is independent of the scores
within each arm and its rows are exchangeable there, so permuting whole dMD rows
among a trial's observed subjects of one arm gives another draw from the same
null distribution for the price of a refit (not a simulation). With 3 extra
draws the critical value rests on 4 x replicates null draws, and its own Monte
Carlo error adds a quarter (not all) of the binomial variance to a max-T
family-wise rate."""


DEFAULT_CHUNK = 1024
"""Replicates per chunk (rounded up to a multiple of the simulator's BLOCK_SIZE)."""


def child_seed(ss: np.random.SeedSequence, key: int) -> np.random.SeedSequence:
    """Return the child of ``ss`` with spawn key ``key``.

    What ``ss.spawn`` would give for that index, without changing ``ss``: every
    curve point gets the same child.
    """
    return np.random.SeedSequence(ss.entropy, spawn_key=(*ss.spawn_key, key))


def power(
    design: StudyDesign,
    *,
    settings: MonteCarlo | None = None,
    replicates: int = 2000,
    alpha: float = 0.05,
    inference: str = "welch",
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
    settings : MonteCarlo, optional
        All of ``replicates``, ``alpha``, ``inference``, ``rng``, ``n_jobs``,
        ``chunk_size``, ``missing`` and ``imputations`` at once
        (:class:`~dtitool.stats.settings.MonteCarlo`); then those keywords may
        be left out, and one given with another value is a TypeError.
    replicates : int
        Number of simulated trials.
    alpha : float
        Two-sided significance level.
    inference : {"welch", "ols", "hc3"}
        How every test is done (:mod:`dtitool.stats.inference`): per-arm fits
        with Welch-Satterthwaite df (the default: at its nominal level when the
        arms' variances differ), classical OLS (the reported analysis) or HC3
        standard errors.
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
        within arm, :mod:`dtitool.stats.imputation`), fits all (trial x imputation)
        models with the batched engine and pools them by Rubin's rules with
        Barnard-Rubin df. The null counterpart is analysed the same way, so
        ``size`` is the size of the pooled test; its max-T critical values come
        from the simulated null trials alone (no extra permutation draws, which
        would need re-imputation). True values are those of the full data
        (missingness switched off), so type S and exaggeration include the
        bias of the missing-data method.
    imputations : int, optional
        Imputations per trial for ``mi`` (default
        :data:`~dtitool.stats.imputation.DEFAULT_IMPUTATIONS`, 20).

    Returns
    -------
    PowerResult

    Raises
    ------
    TypeError
        On an argument of the wrong type, or a keyword that contradicts
        ``settings`` (the message names it).
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
    settings = _resolve(power, settings, replicates=replicates, alpha=alpha,
                        inference=inference, rng=rng, n_jobs=n_jobs,
                        chunk_size=chunk_size, missing=missing,
                        imputations=imputations)
    settings = dataclasses.replace(settings, rng=as_seed_sequence(settings.rng))
    run = _PowerRun(design, settings, families=families, size=size,
                    design_analysis=design_analysis,
                    cache={} if _cache is None else _cache)
    with (open_executor(settings.n_jobs, dask) as ex,
          _progress.bar(progress, run.work, f"power {design.name}",
                        unit="rep") as bar):
        ex.run(run.tasks, progress=bar)
    return run.result(stacklevel=3)


def _chunk_replicates(design: StudyDesign, settings: MonteCarlo) -> int:
    """Replicates per chunk: a multiple of BLOCK_SIZE (default scaled by n)."""
    chunk = settings.chunk_size
    if chunk is None:
        # Keep the working set of a chunk (~100 kB per replicate at n = 98) the
        # same for larger trials (and for the datasets of multiple imputation).
        chunk = max(BLOCK_SIZE, DEFAULT_CHUNK * 98 // max(design.n, 1)
                    // (settings.imputations if settings.missing == "mi" else 1))
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
    return true_values(design, inference=inference, rng=seed)


class _PowerRun(_Waitable):
    """One :func:`power` run cut into tasks; :meth:`result` once they reported.

    The tasks (:attr:`tasks`) are the chunks of the design, the chunks of its
    null counterpart and the reference sample of the true values, unless a run
    sharing ``cache`` (a point of the same curve or grid) has planned them
    already. Chunk results are folded in as they arrive, in any order
    (:meth:`_collect`); :meth:`when_ready` calls back once everything this run
    needs has reported.

    ``settings.rng`` is the run's root SeedSequence (points of one curve or
    grid share it).
    """

    def __init__(self, design, settings: MonteCarlo, *, families, size,
                 design_analysis, cache):
        replicates, alpha = settings.replicates, settings.alpha
        inference, missing = settings.inference, settings.missing
        ss = as_seed_sequence(settings.rng)
        chunk = _chunk_replicates(design, settings)
        workers = check_n_jobs(settings.n_jobs)
        self.design, self.replicates, self.alpha = design, replicates, alpha
        self.inference, self.ss = inference, ss
        self.missing = missing
        if missing == "mi" and design.measures:
            raise ValueError(
                f"missing='mi' imputes MD and scores; design {design.name!r} has "
                f"other measures ({', '.join(design.measure_names[1:])}), whose "
                "power is computed for complete cases only so far (give "
                "missing='complete-case')")
        self.imputations = settings.imputations if missing == "mi" else 0
        spec = _Spec(alpha=alpha, families=_normalise_families(design, families),
                     inference=inference, missing=missing,
                     imputations=self.imputations)
        self.spec = spec
        # Before anything is allocated (the chunk list included): per-replicate
        # p-values (4 bytes x 4 terms per model) and one chunk per worker.
        check_memory((32.0 if size else 16.0) * replicates * len(design.model_rows)
                     * len(design.outcomes)
                     + simulation_bytes(design, chunk) * min(workers, -(-replicates
                                                                      // chunk)),
                     f"a power run of {replicates} replicates at n = {design.n}",
                     hint="use fewer replicates or a smaller n")
        ranges = [(a, min(a + chunk, replicates)) for a in range(0, replicates, chunk)]
        super().__init__(len(ranges))
        J, K, T = (len(design.model_rows), len(design.outcomes),
                   len(design.names.terms))
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
        J, K, T = (len(design.model_rows), len(design.outcomes),
                   len(design.names.terms))
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
            [range(J), design.outcome_names, design.names.terms],
            names=["roi", "outcome", "term"],
        ).to_frame(index=False)
        rows = design.model_rows
        if design.measures:  # a measure column only where there is a choice
            names.insert(1, "measure", [rows[j][1] for j in names["roi"]])
        names["roi"] = [rows[j][0] for j in names["roi"]]
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
                                 n_significant=totals["reject"].astype(np.int64),
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


def _run_points(designs, settings: MonteCarlo, *, keep, ex, bar, families, size,
                design_analysis) -> None:
    """Power at every design of ``designs``, all points' tasks streamed at once.

    Each point is planned when the executor asks for more work and handed to
    ``keep(i, result)`` as soon as everything it needs has reported, so a grid
    of thousands of points keeps only the points in flight in memory. Points
    share one cache (common random numbers: a null counterpart or a reference
    sample shared by several points is simulated once). ``settings.rng`` is
    the SeedSequence every point uses.
    """
    cache: dict = {}

    def tasks():
        for i, d in enumerate(designs):
            run = _PowerRun(d, settings, families=families, size=size,
                            design_analysis=design_analysis, cache=cache)
            run.when_ready(functools.partial(_keep_result, keep, i, run))
            yield from run.tasks

    ex.run(tasks(), progress=bar)


def _keep_result(keep, i, run) -> None:
    keep(i, run.result(stacklevel=5))


def _points_work(designs, replicates: int, size: bool) -> int:
    """Replicates a streamed run of ``designs`` simulates (for a progress total)."""
    nulls = {repr(null_counterpart(d)) for d in designs} if size else ()
    return replicates * (len(designs) + len(nulls))


def _full_data(design: StudyDesign) -> StudyDesign:
    """Return the design without missing data (the estimands aimed at)."""
    if design.missing.mechanism == "none":
        return design
    from dtitool.design import MissingSpec

    return dataclasses.replace(design, missing=MissingSpec())


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
    """Return true values, and type S and exaggeration over the significant trials.

    Both are NaN where the true value is not distinguishable from 0 or fewer
    than :data:`MIN_SIGNIFICANT` trials are significant (``n_significant``
    says how many are).
    """
    k = totals["reject"]
    known = (np.abs(value) > ZERO_SE * value_se) & (k >= MIN_SIGNIFICANT)
    wrong = np.where(value > 0, totals["reject_neg"], totals["reject_pos"])
    with np.errstate(invalid="ignore", divide="ignore"):
        type_s = np.where(known & (k > 0), wrong / k, np.nan)
        exag = np.where(known & (k > 0), abs_sig_sum / k / np.abs(value), np.nan)
    return {"true_value": value, "true_value_se": value_se,
            "n_significant": k.astype(np.int64), "type_s": type_s,
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
