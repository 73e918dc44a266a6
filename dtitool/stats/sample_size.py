"""Sample size: the smallest n at which every target test reaches a power.

:func:`sample_size` bisects over the total n with common random numbers (the
same seed at every n), evaluating power (:func:`~dtitool.stats.power_run.power`,
without null counterpart or design analysis) on one set of workers, and reports
the n with its Monte Carlo interval
(:class:`~dtitool.stats.power_results.SampleSizeResult`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from dtitool import _progress
from dtitool._executor import open_executor
from dtitool._validation import check_int
from dtitool.design import StudyDesign
from dtitool.simulate import as_seed_sequence
from dtitool.stats.design_variants import vary_design
from dtitool.stats.power_engine import _check_test
from dtitool.stats.power_results import ANY_OUTCOME, SampleSizeResult, finding_power
from dtitool.stats.power_run import power
from dtitool.stats.settings import MonteCarlo, _resolve

__all__ = ["sample_size"]


def sample_size(
    design: StudyDesign,
    *,
    target_power: float = 0.8,
    tests: Sequence[tuple] | None = None,
    n_min: int | None = None,
    n_max: int = 1000,
    settings: MonteCarlo | None = None,
    replicates: int = 1000,
    alpha: float = 0.05,
    inference: str = "welch",
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
        every model (the ``omnibus`` test with three or more arms). With a
        direction (``"positive"`` or ``"negative"``) a test counts only
        rejections with an estimate of that sign (what a replication of a
        reported finding needs); without, rejections of either sign.
    n_min, n_max : int
        Search range (default from the smallest n with 4 per arm up to 1000).
    settings : MonteCarlo, optional
        ``replicates``, ``alpha``, ``inference``, ``rng``, ``n_jobs`` and
        ``chunk_size`` at once (:class:`~dtitool.stats.settings.MonteCarlo`), as
        in :func:`power`; its ``missing`` must be ``"complete-case"``.
    replicates, alpha, inference, rng, n_jobs, chunk_size, progress, dask
        As in :func:`power` (the search counts power only: no null counterpart
        and no design analysis at each n; one set of workers serves every n).

    Returns
    -------
    SampleSizeResult

    Raises
    ------
    TypeError
        On an argument of the wrong type, or a keyword that contradicts
        ``settings``.
    ValueError
        On a bad argument, or ``settings`` with ``missing="mi"`` (the search
        runs complete-case analyses only).
    """
    settings = _resolve(sample_size, settings, replicates=replicates, alpha=alpha,
                        inference=inference, rng=rng, n_jobs=n_jobs,
                        chunk_size=chunk_size)
    if settings.missing != "complete-case":
        raise ValueError("sample_size searches n with complete-case analyses only; "
                         f"got settings with missing={settings.missing!r}")
    if isinstance(target_power, bool) or not isinstance(target_power, float | int) or (
        not 0 < target_power < 1
    ):
        raise ValueError(f"target_power must be in (0, 1), got {target_power!r}")
    if tests is None:
        # the one test of a group x dMD difference per model: the interaction,
        # or with three or more arms the omnibus F test
        key = design.names.key_terms[-1]
        tests = [(r, o, key) for r in design.roi_names for o in design.outcome_names]
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
    smallest = math.ceil(4 * sum(a.values()) / min(a.values()))
    n_min = max(smallest, 8) if n_min is None else check_int("n_min", n_min, 6)
    n_max = check_int("n_max", n_max, n_min)
    ss = as_seed_sequence(settings.rng)
    # common random numbers: the same root SeedSequence at every n
    settings = dataclasses.replace(settings, rng=ss)
    cache: dict[int, tuple] = {}
    stack = contextlib.ExitStack()
    ex = stack.enter_context(open_executor(settings.n_jobs, dask))
    bar = stack.enter_context(_progress.bar(progress, None, "sample size",
                                            unit="rep"))

    def evaluate(n):
        if n not in cache:
            res = power(vary_design(design, "n", n), settings=settings, size=False,
                        design_analysis=False, families=any_families or None,
                        progress=bar, dask=ex)
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
        seed=int(ss.entropy), replicates=settings.replicates, n_max=n_max,
    )
