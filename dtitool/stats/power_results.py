"""The results of power runs, and a reported finding's power read from one.

:class:`PowerResult` (one design), :class:`PowerCurve` (one parameter varied),
:class:`PowerGrid` (a power surface) and :class:`SampleSizeResult` (the
smallest n reaching a target power) are what :func:`dtitool.stats.power.power`,
:func:`~dtitool.stats.curves.power_curve`, :func:`~dtitool.stats.curves.power_grid`
and :func:`~dtitool.stats.sample_size.sample_size` return; :func:`finding_power`,
:func:`finding_size` and :func:`finding_p` read one reported finding
(``(roi, outcome, term[, direction])``, outcome possibly :data:`ANY_OUTCOME`)
off a :class:`PowerResult`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from dtitool.design import StudyDesign
from dtitool.stats.binomial import wilson_interval

__all__ = [
    "ANY_OUTCOME",
    "GRID_COLUMNS",
    "METHODS",
    "POWER_COLUMNS",
    "PowerCurve",
    "PowerGrid",
    "PowerResult",
    "SampleSizeResult",
    "finding_p",
    "finding_power",
    "finding_size",
    "md_rows",
]


POWER_COLUMNS = ("roi", "outcome", "term", "inference", "power", "power_ci_low",
                 "power_ci_high", "median_p", "mean_estimate", "size", "size_ci_low",
                 "size_ci_high", "size_ok", "true_value", "n_significant", "type_s",
                 "exaggeration", "missing", "mean_n", "mean_imputed")
"""Columns of ``power.tsv`` (a selection of :attr:`PowerResult.table`)."""


METHODS = ("none", "holm", "bh", "maxt")
"""Multiplicity handling of family-wise power: unadjusted, Holm, Benjamini-Hochberg,
max-T (Westfall-Young, critical value from the null counterpart)."""


GRID_COLUMNS = ("roi", "outcome", "term", "inference", "power", "power_ci_low",
                "power_ci_high", "median_p", "size", "size_ci_low", "size_ci_high",
                "size_ok", "true_value", "n_significant", "type_s", "exaggeration")
"""Columns of ``power_grid.tsv`` after the grid's axes (one column per axis)."""


def md_rows(table: pd.DataFrame, measure: str = "md") -> pd.DataFrame:
    """Return the rows of one measure (MD by default) of a power or results table.

    A design with measures besides MD has a ``measure`` column; without it,
    every row is MD's.
    """
    if "measure" not in table.columns:
        return table
    return table[table["measure"] == measure]


ANY_OUTCOME = "any"
"""Outcome of a reported finding whose outcome the report does not name: the
finding is its test on every outcome, and counts as found when any of them is
significant (with the stated sign); see ``docs/model.md``, "The reported findings"."""


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
        ``n_significant`` (trials with p <= alpha), ``type_s`` and
        ``exaggeration`` (Gelman and Carlin 2014; NaN where the true value is
        not distinguishable from 0 or fewer than 100 trials are significant).
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

    def get(self, roi: str, outcome: str, term: str, *,
            measure: str = "md") -> pd.Series:
        """Return the row of :attr:`table` for one test (of MD by default)."""
        t = md_rows(self.table, measure)
        row = t[(t["roi"] == roi) & (t["outcome"] == outcome) & (t["term"] == term)]
        if len(row) != 1:
            raise ValueError(
                f"no test {roi}/{outcome}/{term}; ROIs {list(self.design.roi_names)}, "
                f"outcomes {list(self.design.outcome_names)}, terms "
                f"{list(self.design.names.terms)}"
            )
        return row.iloc[0]

    def summary(self, tests=None, size: SampleSizeResult | None = None) -> str:
        """Return the printed summary of the run (what ``dtitool power`` prints).

        Same as :func:`dtitool.stats.power_summary.power_summary` (``tests``:
        the tests to list, default every interaction; ``size``: a sample-size
        answer to append).
        """
        from dtitool.stats.power_summary import power_summary

        return power_summary(self, tests, None, size)

    def _repr_html_(self) -> str:
        """Jupyter's display: the run's facts and every test's power and size."""
        from dtitool.stats._html import result_html

        facts = [("design", self.design.name), ("n", self.design.n),
                 ("replicates", self.replicates), ("alpha", self.alpha),
                 ("inference", self.inference), ("missing", self.missing),
                 ("seed", self.seed)]
        return result_html(
            "PowerResult", facts, self.table,
            columns=("measure", "roi", "outcome", "term", "power", "power_ci_low",
                     "power_ci_high", "median_p", "size", "true_value"))


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

    def summary(self, terms=("interaction",)) -> str:
        """Return power (with its 95 % interval) per value and test of ``terms``."""
        t = self.table[self.table["term"].isin(list(terms))]
        cols = ["value", "roi", "outcome", "term", "power", "power_ci_low",
                "power_ci_high"]
        head = (f"power curve over {self.parameter}: {t['value'].nunique()} "
                f"values, {self.replicates} replicates each, seed {self.seed}")
        return head + "\n" + t[cols].to_string(index=False, float_format="%.4g")


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

    def summary(self, terms=("interaction",)) -> str:
        """Return power and its 95 % interval per grid point and test of ``terms``."""
        names = [name for name, _ in self.axes]
        t = self.table[self.table["term"].isin(list(terms))]
        cols = [*names, "roi", "outcome", "term", "power", "power_ci_low",
                "power_ci_high"]
        head = (f"power grid of {self.design_name!r} over "
                + " x ".join(f"{n} ({len(v)} values)" for n, v in self.axes)
                + f": {self.replicates} replicates per point, seed {self.seed}, "
                f"alpha {self.alpha:g}, inference {self.inference}"
                + (f"; {len(self.impossible)} point(s) not possible"
                   if self.impossible else ""))
        return head + "\n" + t[cols].to_string(index=False, float_format="%.4g",
                                                na_rep="-")


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

    def _repr_html_(self) -> str:
        """Jupyter's display: the answer with its interval, then the search trace."""
        from dtitool.stats._html import result_html

        lo, hi = self.n_plausible
        n = self.n if self.n is not None else f"not reached by {self.n_max}"
        facts = [("n", n),
                 ("Monte Carlo interval of n",
                  f"{lo if lo is not None else '?'} to "
                  f"{hi if hi is not None else f'>{self.n_max}'}"),
                 ("target power", self.target_power),
                 ("power at n", f"{self.power:.3f} (95% CI {self.power_ci_low:.3f}-"
                                f"{self.power_ci_high:.3f})"),
                 ("limiting test", self.limiting_test),
                 ("tests", len(self.tests)), ("replicates", self.replicates),
                 ("seed", self.seed)]
        return result_html("SampleSizeResult", facts, self.evaluated)


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
    j, t = d.roi_names.index(roi), d.names.terms.index(term)
    ks = (list(range(len(d.outcome_names))) if outcome == ANY_OUTCOME
          else [d.outcome_names.index(outcome)])
    return res.signed_p[:, j, ks, t]


def finding_p(res: PowerResult, test) -> np.ndarray:
    """Per-replicate p of a finding (float32): for ``"any"`` the smallest outcome p."""
    p = np.abs(_outcome_p(res, test))
    return np.nanmin(p, axis=1) if p.shape[1] > 1 else p[:, 0]
