"""The fit-quality rule: spectra fitted too poorly are missing data.

A metabolite table of :func:`dtitool.mrs.mrs_tables` carries each value's fit
quality, ``crlb`` (LCModel's ``%SD``, Osprey's CRLB table) or ``fit_error``
(Gannet's), in %. :func:`apply_quality` removes every spectrum whose quality is
above a limit, so that it counts as a missing scan (a missing row, as in
``roi_md.tsv``) before any change is computed, and says what it removed
(:class:`QualityReport`). The table it returns records the removed spectra in
``attrs`` (:data:`EXCLUDED_ATTR`, :data:`RULES_ATTR`): the analysis counts them
per model as ``fit quality (<rule>)`` (``docs/mrs.md``, Fit quality).

Defaults (:data:`DEFAULT_LIMITS`): a CRLB above 20 % (the LCModel manual's
rough criterion of reliability, the usual LCModel and Osprey rule), a Gannet
fit error above 12 % (an estimate: Gannet documents no limit).

Examples
--------
>>> import pandas as pd
>>> t = pd.DataFrame({"participant_id": ["sub-1", "sub-1", "sub-2", "sub-2"],
...                   "session": ["pre", "post"] * 2, "roi": "acc",
...                   "gaba": [3.1, 3.0, 2.9, 3.3], "unit": "i.u.",
...                   "crlb": [8.0, 25.0, 12.0, float("nan")]})
>>> kept, report = apply_quality(t)
>>> len(kept), report.n_excluded, report.rules[0].text
(3, 1, 'crlb > 20%')
>>> report.excluded[["participant_id", "session"]].values.tolist()
[['sub-1', 'post']]
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from dtitool._constants import MRS_QUALITY_LIMITS
from dtitool.mrs.names import QUALITY, RESERVED

__all__ = ["DEFAULT_LIMITS", "EXCLUDED_ATTR", "OPTIONS", "RULES_ATTR",
           "QualityReport", "QualityRule", "apply_quality"]

DEFAULT_LIMITS: dict[str, float] = MRS_QUALITY_LIMITS
"""The limit (in %) each quality column gets when none is given.

``crlb``: 20, the LCModel manual's rough criterion (%SD below about 20 % for an
estimate of acceptable reliability), the rule LCModel and Osprey users apply;
Bonny and Pages (2018) recommend the same conservative 20 % as a rejection
threshold. ``fit_error``: 12, an estimate: Gannet's documentation defines the
fit error but states no limit, and GannetFit applies none (``docs/mrs.md``).
"""

OPTIONS: dict[str, str] = {"crlb": "max_crlb", "fit_error": "max_fit_error"}
"""The keyword of :func:`apply_quality` (``--max-crlb``, ``--max-fit-error``
on the command line) that sets each column's limit."""

EXCLUDED_ATTR = "quality_excluded"
"""``attrs`` key of the spectra a rule removed: a tuple of ``(participant_id,
session, roi, reason)`` (``reason``: ``fit quality (crlb > 20%)``)."""

RULES_ATTR = "quality_rules"
"""``attrs`` key of the rules applied, as text (``("crlb > 20%",)``)."""

_IDS = ("participant_id", "session", "roi")


@dataclass(frozen=True, slots=True)
class QualityRule:
    """A spectrum is missing data when its ``column`` is above ``limit`` %.

    Parameters
    ----------
    column : {"crlb", "fit_error"}
        The quality column the rule reads.
    limit : float
        The largest value kept, in % (a value above it is excluded).
    default : bool
        Whether ``limit`` is the default (:data:`DEFAULT_LIMITS`) rather than
        one given.
    """

    column: str
    limit: float
    default: bool = False

    def __post_init__(self):
        if self.column not in QUALITY:
            raise ValueError(f"column must be one of {', '.join(QUALITY)}; got "
                             f"{self.column!r}")
        _check_limit(OPTIONS[self.column], self.limit)

    @property
    def text(self) -> str:
        """The rule as written in tables and summaries: ``crlb > 20%``."""
        return f"{self.column} > {self.limit:g}%"

    @property
    def reason(self) -> str:
        """The reason a removed spectrum is missing: ``fit quality (crlb > 20%)``."""
        return f"fit quality ({self.text})"


@dataclass(frozen=True, slots=True, eq=False)
class QualityReport:
    """What :func:`apply_quality` removed from one table.

    Parameters
    ----------
    measure : str
        The table's measure (``gaba``, ...).
    rules : tuple of QualityRule
        The rules applied, one per quality column of the table (empty: the
        table has none).
    n_spectra : int
        Rows (spectra) of the table.
    excluded : DataFrame
        The spectra removed: ``participant_id, session, roi``, the quality
        ``column`` and its ``value``, and the ``reason``.
    unrated : mapping
        ``column -> rows`` with no value in that column (kept: the tool
        reported no quality for them, as Osprey does when it fits with its own
        model).
    """

    measure: str
    rules: tuple[QualityRule, ...]
    n_spectra: int
    excluded: pd.DataFrame = field(repr=False)
    unrated: Mapping[str, int] = field(default_factory=dict)

    @property
    def n_excluded(self) -> int:
        """Spectra removed."""
        return len(self.excluded)

    def by_arm(self, participants: pd.DataFrame, arms=None) -> dict[str, int]:
        """Spectra removed per arm.

        Parameters
        ----------
        participants : DataFrame
            ``participant_id`` and ``group``.
        arms : sequence of str, optional
            The arms, in the order to report (default: ``group``'s levels, in
            order of appearance); an arm without removed spectra counts 0.
        """
        group = dict(zip(participants["participant_id"].astype(str),
                         participants["group"].astype(str), strict=True))
        arms = list(arms) if arms is not None else list(dict.fromkeys(group.values()))
        counts = dict.fromkeys(arms, 0)
        for pid in self.excluded["participant_id"]:
            arm = group.get(str(pid), "not in the participants table")
            counts[arm] = counts.get(arm, 0) + 1
        return counts

    def summary(self, participants: pd.DataFrame | None = None, arms=None) -> str:
        """One line: the rules, and what they removed (per arm with ``participants``).

        Examples
        --------
        >>> import pandas as pd
        >>> t = pd.DataFrame({"participant_id": ["a", "b"], "session": "pre",
        ...                   "roi": "acc", "glx": [9.0, 8.0], "unit": "i.u.",
        ...                   "fit_error": [4.0, 13.5]})
        >>> print(apply_quality(t)[1].summary())  # doctest: +NORMALIZE_WHITESPACE
        fit quality of glx: fit_error > 12% (the default; --max-fit-error sets
        it): 1 of 2 spectra excluded as missing data (1 participant)
        """
        if not self.rules:
            return (f"fit quality of {self.measure}: no quality column, every "
                    "spectrum used")
        rules = "; ".join(
            r.text + (f" (the default; --{OPTIONS[r.column].replace('_', '-')} "
                      "sets it)" if r.default else "") for r in self.rules)
        who = self.excluded["participant_id"].nunique()
        line = (f"fit quality of {self.measure}: {rules}: {self.n_excluded} of "
                f"{self.n_spectra} spectra excluded as missing data")
        detail = []
        if participants is not None:
            detail.append(", ".join(f"{a} {k}" for a, k in
                                    self.by_arm(participants, arms).items()))
        detail.append(f"{who} participant{'s' if who != 1 else ''}")
        line += f" ({'; '.join(detail)})"
        for col, k in self.unrated.items():
            if k:
                line += f"; {k} spectra without a {col} value kept"
        return line


def _check_limit(where: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.number):
        raise TypeError(f"{where} must be a number (a percentage, e.g. "
                        f"{DEFAULT_LIMITS[_COLUMN_OF[where]]:g}); got "
                        f"{type(value).__name__} {value!r}")
    if math.isnan(value) or value <= 0:
        raise ValueError(f"{where} must be a percentage above 0 (e.g. "
                         f"{DEFAULT_LIMITS[_COLUMN_OF[where]]:g}); got {value!r}")
    return float(value)


_COLUMN_OF = {v: k for k, v in OPTIONS.items()}


def _measure_of(table: pd.DataFrame, measure: str | None, what: str) -> str:
    values = [str(c) for c in table.columns if str(c) not in RESERVED
              and str(c) != "replicate"]
    if measure is not None:
        if measure not in table.columns:
            raise ValueError(f"{what} has no column {measure!r} (measure=); it has "
                             f"{', '.join(map(str, table.columns))}")
        return measure
    if len(values) != 1:
        raise ValueError(
            f"{what} must have one value column besides {', '.join(sorted(RESERVED))}"
            f"; it has {', '.join(values) or 'none'} (give measure=)")
    return values[0]


def apply_quality(table: pd.DataFrame | str | os.PathLike, *,
                  max_crlb: float | None = None,
                  max_fit_error: float | None = None,
                  measure: str | None = None) -> tuple[pd.DataFrame, QualityReport]:
    """Remove the spectra fitted too poorly: they become missing data.

    Parameters
    ----------
    table : DataFrame or path-like
        A metabolite table (``roi_<measure>.tsv`` of ``dtitool mrs-import``:
        ``participant_id, session, roi, <measure>, unit`` and ``crlb`` and/or
        ``fit_error`` in %), or its path.
    max_crlb, max_fit_error : float, optional
        The largest CRLB and Gannet fit error kept, in %: a spectrum above it
        is removed. None: the default of :data:`DEFAULT_LIMITS` for a column
        the table has (20 and 12). A limit given for a column the table does
        not have is an error.
    measure : str, optional
        The value column (default: the one column that is not an id, ``unit``
        or a quality column).

    Returns
    -------
    table : DataFrame
        The rows kept (a removed spectrum is a missing row, as a missing scan
        is), every column kept, with the removed spectra and the rules in
        ``attrs`` (:data:`EXCLUDED_ATTR`, :data:`RULES_ATTR`), which
        :func:`dtitool.tables.check_tables` and the analysis read.
    report : QualityReport

    Raises
    ------
    ValueError
        A limit that is not a percentage above 0, a limit for a column the
        table lacks (naming the one it has), a quality value that is not a
        number or is negative (naming the row), a ``unit`` column with more
        than one unit (naming them) or an empty one, a table of several
        replicates, or no value column.
    TypeError
        A limit that is not a number, or a table that is neither a DataFrame
        nor a path.

    Notes
    -----
    A value without quality (an empty cell) is kept and counted in
    :attr:`QualityReport.unrated`. The rule is strict: a CRLB of exactly 20 %
    is kept under ``max_crlb=20``. Filtering on a relative CRLB removes low
    concentrations more often than high ones (Kreis 2016): report how many
    spectra each arm lost, as :class:`QualityReport` does.

    References
    ----------
    Provencher SW. LCModel & LCMgui User's Manual (the %SD criterion).
    Kreis R (2016). The trouble with quality filtering based on relative
    Cramer-Rao lower bounds. Magn Reson Med 75:15-18.
    Bonny JM, Pages G (2018). Uncertainties of calculated Cramer-Rao lower
    bounds: implications for quantitative MRS. Magn Reson Med.
    """
    if isinstance(table, (str, os.PathLike)):
        from dtitool._tsv import read_tsv

        what = f"MRS table {str(table)!r}"
        table = read_tsv(table, what=what, dtype=dict.fromkeys(
            (*_IDS, "unit"), str), text=("participant_id",))
    elif isinstance(table, pd.DataFrame):
        what = "the MRS table"
        table = table.copy()
    else:
        raise TypeError(f"table must be a DataFrame or a path to a .tsv file; got "
                        f"{type(table).__name__}")
    limits = {"crlb": max_crlb, "fit_error": max_fit_error}
    for col, limit in limits.items():
        if limit is not None:
            _check_limit(OPTIONS[col], limit)
    measure = _measure_of(table, measure, what)
    missing = [c for c in _IDS if c not in table.columns]
    if missing:
        raise ValueError(f"{what} lacks column(s) {', '.join(missing)}; it has "
                         f"{', '.join(map(str, table.columns))}")
    if "replicate" in table.columns and table["replicate"].nunique() > 1:
        raise ValueError(f"{what} holds {table['replicate'].nunique()} replicates; "
                         "apply the quality rule to one replicate at a time")
    _check_one_unit(table, what)
    present = [c for c in QUALITY if c in table.columns]
    for col, limit in limits.items():
        if limit is not None and col not in present:
            has = (f"it has {', '.join(present)}: give "
                   + " or ".join(OPTIONS[c] for c in present)) if present else \
                "it has no quality column"
            raise ValueError(f"{OPTIONS[col]}={limit:g} was given but {what} "
                             f"({measure}) has no {col} column; {has}")
    drop = np.zeros(len(table), bool)
    reasons = np.full(len(table), "", dtype=object)
    rules, unrated, values = [], {}, np.full(len(table), np.nan)
    columns = np.full(len(table), "", dtype=object)
    for col in present:
        q = _quality_values(table, col, what)
        rule = QualityRule(col, float(limits[col] if limits[col] is not None
                                      else DEFAULT_LIMITS[col]),
                           default=limits[col] is None)
        rules.append(rule)
        unrated[col] = int(np.isnan(q).sum())
        over = (q > rule.limit) & ~drop  # a spectrum over two limits: the first
        drop |= over
        reasons[over] = rule.reason
        values[over] = q[over]
        columns[over] = col
    excluded = table.loc[drop, list(_IDS)].astype(str).assign(
        column=columns[drop], value=values[drop], reason=reasons[drop])
    excluded = excluded.reset_index(drop=True)
    report = QualityReport(measure, tuple(rules), len(table), excluded,
                           dict(unrated))
    kept = table.loc[~drop].reset_index(drop=True)
    # plain tuples: pandas compares attrs when it combines frames
    kept.attrs[EXCLUDED_ATTR] = tuple(
        excluded.loc[:, [*_IDS, "reason"]].itertuples(index=False, name=None))
    kept.attrs[RULES_ATTR] = tuple(r.text for r in rules)
    return kept, report


def _check_one_unit(table: pd.DataFrame, what: str) -> None:
    """Refuse a table of more than one unit (the removed rows count too)."""
    if "unit" not in table.columns:
        return
    units = table["unit"].astype("string").str.strip()
    empty = (units.isna() | (units == "")).to_numpy()
    if empty.any():
        r = table.iloc[int(np.flatnonzero(empty)[0])]
        raise ValueError(f"{what} has an empty unit for {r['participant_id']} "
                         f"{r['session']} {r['roi']} ({int(empty.sum())} such rows); "
                         "every row needs its unit")
    counts = units.value_counts(sort=False)
    if len(counts) > 1:
        found = ", ".join(f"{u} ({k} rows)" for u, k in counts.items())
        raise ValueError(f"{what} holds values in {len(counts)} units: {found}; a "
                         "table must have one unit (import it again with one "
                         "--unit, dtitool mrs-import)")


def _quality_values(table: pd.DataFrame, col: str, what: str) -> np.ndarray:
    raw = table[col]
    q = pd.to_numeric(raw, errors="coerce").to_numpy(float)
    bad = np.isnan(q) & raw.notna().to_numpy() & (raw.astype(str).str.strip() != ""
                                                  ).to_numpy()
    bad |= q < 0
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        r, got = table.iloc[i], raw.iloc[i]
        got = f"{got:g}" if isinstance(got, int | float | np.number) else repr(got)
        raise ValueError(f"{what} {col} must be a percentage of 0 or more (or empty: "
                         f"not reported); got {got} for {r['participant_id']} "
                         f"{r['session']} {r['roi']} (row {i + 1})")
    return q
