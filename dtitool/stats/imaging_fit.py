"""The imaging change tests of one cohort (``dtitool analyze --model imaging``).

For every ROI and measure of a cohort's tables (``roi_md.tsv`` and every
``roi_<measure>.tsv``, on the measure's model scale: MD per 1e-5 mm^2/s) and
every follow-up visit: the control arm's mean change from baseline (term
``<visit>``, :func:`scipy.stats.ttest_1samp`) and each other arm's mean change
minus the control arm's (``<arm>:<visit>``, :func:`scipy.stats.ttest_ind`
with ``equal_var=False``), on the participants with both visits observed.
:mod:`dtitool.stats.imaging_change` computes the same tests on simulated trials
for power; this module is the independent, one-cohort implementation.
"""

from __future__ import annotations

import time as _time
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from dtitool.design import TrialNames
from dtitool.stats.mixed_data import Cohort, load_cohort

__all__ = ["IMAGING_COLUMNS", "ImagingResults", "fit_imaging", "fit_imaging_cohort"]

IMAGING_COLUMNS = (
    "roi", "measure", "term", "estimate", "se", "df", "t", "p", "ci_low",
    "ci_high", "n", "n_arm", "n_control",
)  # fmt: skip
"""Columns of :attr:`ImagingResults.table` (``analyze --model imaging``)."""


@dataclass(frozen=True, slots=True, eq=False)
class ImagingResults:
    """The imaging change tests of one cohort.

    Parameters
    ----------
    table : DataFrame
        One row per ROI, measure and term, :data:`IMAGING_COLUMNS`.
    names : TrialNames
        Arms, control arm and visits.
    units : dict
        ``{measure: unit}``: the unit of each measure's estimates
        (``"1e-05 mm^2/s"``).
    alpha : float
        The confidence intervals are ``100 (1 - alpha)`` %.
    elapsed : float
        Seconds the tests took.
    """

    table: pd.DataFrame = field(repr=False)
    names: TrialNames
    units: dict
    alpha: float = 0.05
    elapsed: float = 0.0

    def summary(self) -> str:
        """Return the printed summary: one line per test."""
        n = self.names
        others = [a for a in n.arms if a != n.control]
        lines = [f"Imaging change from {n.visits[0]} (complete cases per ROI and "
                 f"visit): VISIT is the {n.control} arm's mean change "
                 "(one-sample t)"
                 + (f"; ARM:VISIT is {' or '.join(others)}'s mean change minus "
                    "it (Welch t)" if others else ""),
                 "Units: " + "; ".join(f"{m} per {u}" for m, u in self.units.items()),
                 f"{'row':<24} {'term':<20} {'estimate':>9} {'95% CI':>21} "
                 f"{'df':>6} {'p':>8} {'n':>5}"]
        for r in self.table.itertuples():
            row = f"{r.roi} {'MD' if r.measure == 'md' else r.measure}"
            ci = f"[{r.ci_low:.3g}, {r.ci_high:.3g}]"
            p = f"{r.p:.2g}" if r.p == r.p else "-"
            lines.append(f"{row:<24} {r.term:<20} {r.estimate:>9.4g} {ci:>21} "
                         f"{r.df:>6.1f} {p:>8} {r.n:>5d}")
        return "\n".join(lines)


def fit_imaging(source, measures=None, *, alpha: float = 0.05,
                replicate: int | None = None, md_unit: str = "mm^2/s",
                design=None, control: str | None = None, visits=None
                ) -> ImagingResults:
    """Test every ROI's and measure's change in a cohort (module docstring).

    Parameters
    ----------
    source : path-like or DataFrame
        A cohort folder (``participants.tsv``, ``roi_md.tsv``, any
        ``roi_<measure>.tsv``, optionally ``visits.tsv`` and ``design.toml``)
        or the participants table.
    measures : DataFrame or mapping, optional
        With a participants table, the ROI MD table or ``{measure: table}``
        (``md`` among them); with a folder, the measures to test (default MD
        and every ``roi_<measure>.tsv``).
    alpha : float
        Confidence intervals are ``100 (1 - alpha)`` %.
    replicate, md_unit, design, control, visits
        As in :func:`dtitool.stats.mixed_data.load_cohort`.

    Returns
    -------
    ImagingResults

    Raises
    ------
    ValueError
        Bad tables (each check of :func:`dtitool.tables.check_tables`, naming
        the table, the row and what was expected), or ``alpha`` outside (0, 1).

    Warns
    -----
    UserWarning
        A test with fewer than two participants in an arm (its row is NaN).

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> ids = [f"s{i:02d}" for i in range(20)]
    >>> p = pd.DataFrame({"participant_id": ids,
    ...                   "group": np.repeat(["drug", "placebo"], 10),
    ...                   "madrs_pre": 30, "madrs_post": 20})
    >>> md = [(i, s, "acc", (80 + rng.normal() + (2 if s == "post" and k < 10
    ...                                           else 0)) * 1e-5)
    ...       for k, i in enumerate(ids) for s in ("pre", "post")]
    >>> roi = pd.DataFrame(md, columns=["participant_id", "session", "roi", "md"])
    >>> res = fit_imaging(p, roi, visits=["pre", "post"], control="placebo")
    >>> list(res.table["term"]), bool(res.table["p"].iloc[1] < 0.05)
    (['post', 'drug:post'], True)
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be between 0 and 1; got {alpha!r}")
    t0 = _time.perf_counter()
    cohort = load_cohort(source, measures, replicate=replicate, md_unit=md_unit,
                         design=design, control=control, visits=visits)
    return fit_imaging_cohort(cohort, alpha=alpha, started=t0)


def _tests(d: pd.Series, group: pd.Series, names: TrialNames, alpha: float):
    """Return the tests of one row and visit: ``(estimate, se, df, t, p, ci, n)``."""
    from scipy import stats

    others = [a for a in names.arms if a != names.control]
    x = {a: d[(group == a).to_numpy()].dropna().to_numpy(dtype=float)
         for a in names.arms}
    dc = x[names.control]
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        if dc.size >= 2:
            r = stats.ttest_1samp(dc, 0.0)
            ci = r.confidence_interval(1 - alpha)
            out.append((dc.mean(), dc.std(ddof=1) / np.sqrt(dc.size), r.df,
                        r.statistic, r.pvalue, ci.low, ci.high, dc.size, dc.size,
                        dc.size))
        else:
            out.append((np.nan,) * 7 + (dc.size,) * 3)
        for a in others:
            da = x[a]
            n = (da.size + dc.size, da.size, dc.size)
            if da.size < 2 or dc.size < 2:
                out.append((np.nan,) * 7 + n)
                continue
            r = stats.ttest_ind(da, dc, equal_var=False)
            ci = r.confidence_interval(1 - alpha)
            se = np.sqrt(da.var(ddof=1) / da.size + dc.var(ddof=1) / dc.size)
            out.append((da.mean() - dc.mean(), se, r.df, r.statistic, r.pvalue,
                        ci.low, ci.high, *n))
    return out


def fit_imaging_cohort(cohort: Cohort, *, alpha: float = 0.05,
                       started: float | None = None) -> ImagingResults:
    """:func:`fit_imaging` on a cohort already read (:func:`load_cohort`)."""
    from dtitool.tables import _roi_order

    t0 = _time.perf_counter() if started is None else started
    names = cohort.names
    base, follow = names.visits[0], names.visits[1:]
    p = cohort.participants
    ids = p["participant_id"]
    group = p["group"].reset_index(drop=True)
    # terms in the power engine's order (imaging_terms): each visit (the
    # control arm's change), then each other arm's visits
    labels = [names.control, *(a for a in names.arms if a != names.control)]
    order = cohort.design.roi_names if cohort.design is not None else ()
    records, thin = [], []
    for m, table in cohort.measures.items():
        scale, _ = cohort.scales[m]
        for roi in _roi_order(table["roi"], order):
            rows = table.loc[table["roi"] == roi]
            wide = (rows.pivot(index="participant_id", columns="session", values=m)
                    .reindex(index=ids, columns=list(names.visits))
                    .astype(float) / scale).reset_index(drop=True)
            per_visit = {v: _tests(wide[v] - wide[base], group, names, alpha)
                         for v in follow}
            for k, a in enumerate(labels):
                for v in follow:
                    res = per_visit[v][k]
                    term = v if k == 0 else f"{a}:{v}"
                    if not np.isfinite(res[3]):
                        thin.append(f"{roi} {m} {term}")
                    records.append((roi, m, term, *res))
    if thin:
        warnings.warn(f"fewer than two participants with both visits in an arm "
                      f"(the test is NaN): {', '.join(thin)}", stacklevel=3)
    table = pd.DataFrame.from_records(records, columns=list(IMAGING_COLUMNS))
    for c in ("n", "n_arm", "n_control"):
        table[c] = table[c].astype(int)
    units = {m: f"{s:g} {u}".strip() for m, (s, u) in cohort.scales.items()}
    return ImagingResults(table=table, names=names,
                          units=units, alpha=alpha,
                          elapsed=_time.perf_counter() - t0)
