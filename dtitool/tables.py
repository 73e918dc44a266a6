"""Read and check participants / ROI-MD tables, and compute per-subject changes.

The same code reads simulated cohorts and a researcher's real data, so every
input is treated as untrusted: :func:`check_tables` names each problem it finds
(missing columns, unknown labels, duplicated rows, implausible units, subjects in
one table only, out-of-range scores) in a :class:`ValueError` sentence, and warns
about every column it cannot use (nothing is dropped silently).

The names of the trial (its arms, control arm and visits,
:class:`~dtitool.design.TrialNames`) come from a design, from the tables and
from a ``visits.tsv``, never from the code: arms are the levels of ``group``,
checked against the design's when one is given; the control arm comes from the
design or ``control=``; the visits from ``visits.tsv`` (:func:`read_visits`),
the design, or ``visits=``. What cannot be determined is an error that says how
to give it (:func:`resolve_names`).

Table formats (tab-separated, these column names):

``participants``
    ``participant_id``, ``group`` (the arm names), and for each outcome present
    ``<outcome>_<baseline visit>`` and ``<outcome>_<primary visit>`` (integer
    scores; the primary visit's may be empty). Optional covariates such as
    ``age`` and ``sex``.
``roi_md``
    Long form, one row per participant x session x ROI: ``participant_id``,
    ``session`` (a visit name), ``roi``, ``md`` (mm^2/s). A missing scan is a
    missing row.
``visits``
    The schedule: ``visit``, ``hours`` (since baseline), ``dose`` (empty if
    none), ``primary`` (``true`` / ``false``), baseline first.

Either of the first two may carry a leading ``replicate`` column (simulated
cohorts with several replicates); one replicate is analysed at a time.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from dtitool._io import read_tsv
from dtitool.design import StudyDesign, TrialNames
from dtitool.table_names import (
    NAMES_ATTR,
    _names_of,
    _require_columns,
    changes_names,
    outcomes_in,
    read_visits,
    resolve_names,
)

__all__ = [
    "MD_UNITS",
    "MIN_PER_ARM",
    "changes_names",
    "check_tables",
    "compute_changes",
    "outcomes_in",
    "read_tables",
    "read_visits",
    "reserved_columns",
    "resolve_names",
]

MD_UNITS = {"mm^2/s": 1.0, "1e-3 mm^2/s": 1e-3, "um^2/s": 1e-6, "m^2/s": 1e6}
"""Units an input ``md`` column may be declared in, with the factor to mm^2/s.

``"1e-3 mm^2/s"`` is the same as um^2/ms (gray matter ~0.8); ``"um^2/s"`` puts
gray matter at ~800; ``"m^2/s"`` at ~0.8e-9.
"""

MIN_PER_ARM = 3
"""Fewest subjects per arm with complete data for which the models are fitted:
an arm-specific slope needs at least two points plus one residual degree of
freedom."""

# Plausible median MD of brain tissue in mm^2/s: gray matter ~0.7e-3..1.0e-3
# (Helenius et al. 2002), free water at body temperature ~3e-3.
_MD_PLAUSIBLE = (2e-4, 5e-3)
_MD_TOLERATED = (1e-6, 1e-2)

_PARTICIPANT_COLUMNS = ("participant_id", "group")
# Label columns read as text, always: "001" is not "1", "1.10" is not "1.1".
_TEXT = {"participant_id": str, "group": str, "session": str, "roi": str}
# Identifiers are text as written: "NA", "nan", "NULL", "None", "n/a", "#N/A" are
# IDs like any other (only an empty cell is missing).
_IDS = ("participant_id",)


def reserved_columns(names: TrialNames, outcomes=()) -> tuple[str, ...]:
    """Names dtitool computes itself for a trial; participants may not use them.

    ``roi``, ``md_<baseline>``, ``md_<primary>``, ``d_md``, ``d_md_pct``,
    ``d_score``, ``baseline_score``, ``baseline_md`` and ``d_<outcome>`` per
    outcome (:func:`compute_changes`, the model frame): a participants column of
    the same name would be ambiguous, so it is an error.

    Examples
    --------
    >>> from dtitool.design import TrialNames
    >>> reserved_columns(TrialNames(("drug", "placebo"), "placebo",
    ...                             ("pre", "week1")), ["hamd"])[:3]
    ('roi', 'md_pre', 'md_week1')
    """
    return ("roi", f"md_{names.baseline}", f"md_{names.primary}", "d_md",
            "d_md_pct", "d_score", "baseline_score", "baseline_md",
            *(f"d_{k}" for k in outcomes))


_ROI_MD_COLUMNS = ("participant_id", "session", "roi", "md")
# Columns of a measure table of dtitool mrs-import besides the value: its unit
# and the fit quality (dtitool.mrs); the spectra a quality rule removed and
# its rules ride in attrs under these keys (dtitool.mrs.quality).
_QUALITY_COLUMNS = ("crlb", "fit_error")
_QUALITY_ATTRS = ("quality_excluded", "quality_rules")


COVARIATES = {
    "baseline": "the outcome's baseline score (baseline_score)",
    "baseline_md": "baseline MD of the model's ROI, per 1e-5 mm^2/s (baseline_md)",
    "age": "age in years",
    "sex": "sex, as a categorical term C(sex)",
}
"""Named covariates; any other numeric or text participants column works too."""

def read_tables(
    directory: str | os.PathLike,
    *,
    replicate: int | None = None,
    md_unit: str = "mm^2/s",
    names=None,
    design: StudyDesign | None = None,
    control: str | None = None,
    visits=None,
    measure: str = "md",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read and check ``participants.tsv`` and ``roi_md.tsv`` from a folder.

    Parameters
    ----------
    directory : str or path-like
        Folder holding ``participants.tsv`` and ``roi_md.tsv``, and optionally
        ``visits.tsv`` (the schedule) and ``design.toml`` (the design), which
        give the trial's names where the arguments do not.
    replicate : int, optional
        Which replicate to keep when the tables hold several (a ``replicate``
        column). Required in that case.
    md_unit : str
        Unit of the ``md`` column, one of :data:`MD_UNITS`; values are converted
        to mm^2/s.
    names, design, control, visits
        The trial's names, as in :func:`resolve_names` (which reads the
        folder's ``visits.tsv`` and ``design.toml`` for what these leave open).
    measure : str
        Read ``roi_<measure>.tsv`` instead of ``roi_md.tsv`` (another measure
        of the ROIs, :func:`check_tables`).

    Returns
    -------
    participants, roi_md : DataFrame
        Checked copies, as returned by :func:`check_tables` (carrying their
        names in ``attrs["trial_names"]``).

    Raises
    ------
    ValueError
        If a file is missing or unreadable, the names cannot be determined, or
        any check of :func:`check_tables` fails.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise ValueError(f"input folder {str(directory)!r} does not exist")
    participants = read_tsv(
        directory / "participants.tsv", what="participants table", dtype=_TEXT,
        text=_IDS,
    )
    roi_md = read_tsv(directory / f"roi_{measure}.tsv", what=_what(measure),
                      dtype=_TEXT, text=_IDS)
    names, design = resolve_names(participants, names=names, design=design,
                                  control=control, visits=visits,
                                  directory=directory)
    return check_tables(participants, roi_md, replicate=replicate, md_unit=md_unit,
                        names=names, design=design, measure=measure)


def _as_frame(table, what: str) -> pd.DataFrame:
    if isinstance(table, pd.DataFrame):
        return table.copy()
    if isinstance(table, (str, os.PathLike)):
        return read_tsv(table, what=what, dtype=_TEXT, text=_IDS)
    raise TypeError(
        f"{what} must be a pandas DataFrame or a path to a .tsv file, "
        f"got {type(table).__name__}"
    )


def _select_replicate(
    participants: pd.DataFrame, roi_md: pd.DataFrame, replicate: int | None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    has_p = "replicate" in participants.columns
    has_r = "replicate" in roi_md.columns
    if not (has_p or has_r):
        if replicate is not None:
            raise ValueError(
                f"replicate={replicate} was requested but neither table has a "
                "'replicate' column"
            )
        return participants, roi_md
    if has_p != has_r:
        which = "participants" if has_p else "roi_md"
        raise ValueError(
            f"only the {which} table has a 'replicate' column; both tables must "
            "have it or neither"
        )
    reps_p = pd.unique(participants["replicate"])
    reps_r = pd.unique(roi_md["replicate"])
    if set(reps_p) != set(reps_r):
        raise ValueError(
            "the participants and roi_md tables hold different replicates "
            f"({sorted(reps_p)[:5]} vs {sorted(reps_r)[:5]})"
        )
    if replicate is None:
        if len(reps_p) > 1:
            raise ValueError(
                f"the tables hold {len(reps_p)} replicates "
                f"({_preview(sorted(reps_p))}); choose one to analyse "
                "(replicate=K, or --replicate K on the command line)"
            )
        replicate = reps_p[0]
    elif replicate not in set(reps_p):
        raise ValueError(
            f"replicate {replicate} is not in the tables; they hold "
            f"{_preview(sorted(reps_p))}"
        )
    participants = participants.loc[participants["replicate"] == replicate]
    roi_md = roi_md.loc[roi_md["replicate"] == replicate]
    return (
        participants.drop(columns="replicate").reset_index(drop=True),
        roi_md.drop(columns="replicate").reset_index(drop=True),
    )


def _preview(values, k: int = 5) -> str:
    values = [str(v) for v in values]
    more = f", ... ({len(values)} in all)" if len(values) > k else ""
    return ", ".join(values[:k]) + more


def _check_ids(df: pd.DataFrame, what: str) -> pd.Series:
    ids = df["participant_id"]
    empty = ids.isna().to_numpy() | (ids.astype(str).str.strip() == "").to_numpy()
    if empty.any():
        row = int(np.flatnonzero(empty)[0])
        raise ValueError(f"{what} has an empty participant_id (row {row + 1})")
    return ids.astype(str).str.strip()


def _check_labels(df: pd.DataFrame, col: str, allowed, what: str, *,
                  expected: str) -> pd.Series:  # fmt: skip
    """Return ``df[col]`` stripped, or raise naming the labels not in ``allowed``."""
    values = df[col].astype("string").str.strip()
    bad = values.isna() | ~values.isin(allowed)
    if bad.any():
        labels = pd.unique(df.loc[bad.to_numpy(), col].astype(str))
        raise ValueError(
            f"{what} has unknown {col} label(s) {_preview(map(repr, labels))}; "
            f"expected {expected}"
        )
    return values.astype(object)


def _score_ranges(design: StudyDesign | None) -> dict[str, tuple[int, int]]:
    if design is None:
        return {}
    return {o.name: (o.scale_min, o.scale_max) for o in design.outcomes}


def _warn_unused_scores(participants: pd.DataFrame, names: TrialNames,
                        design: StudyDesign | None, outcomes, what: str) -> None:
    """Warn about every column that looks like a score the analysis cannot use."""
    cols = [str(c) for c in participants.columns]
    known = list(dict.fromkeys([*outcomes, *(design.outcome_names if design
                                            else ())]))
    # scores at the trial's other visits are the trial's own: kept, not warned
    used = {names.score_column(k, v) for k in outcomes for v in names.visits}
    pair = (names.baseline, names.primary)
    for c in cols:
        if c in used:
            continue
        for v in pair:
            stem = c[: -len(v) - 1]
            if c.endswith(f"_{v}") and stem:
                other = names.score_column(stem, pair[1] if v == pair[0] else pair[0])
                warnings.warn(
                    f"{what} has {c!r} but not {other!r}; outcome {stem!r} needs "
                    "both and is not analysed", stacklevel=4)
                break
        else:
            for k in known:
                if c.startswith(f"{k}_"):
                    visit = c[len(k) + 1:]
                    warnings.warn(
                        f"{what} column {c!r} looks like a score of outcome {k!r} "
                        f"at visit {visit!r}, which is not a visit of the trial "
                        f"({', '.join(names.visits)}); it is not analysed as a "
                        "score", stacklevel=4)
                    break
    if design is not None:
        absent = [k for k in design.outcome_names if k not in outcomes
                  and not any(c.startswith(f"{k}_") for c in cols)]
        if absent:
            warnings.warn(
                f"{what} has no score columns for the design's outcome(s) "
                f"{', '.join(absent)} (expected "
                f"{names.score_column(absent[0], names.baseline)!r} and "
                f"{names.score_column(absent[0], names.primary)!r})", stacklevel=4)


def _check_participants(participants: pd.DataFrame, names: TrialNames,
                        design: StudyDesign | None) -> pd.DataFrame:
    what = "participants table"
    _require_columns(participants, _PARTICIPANT_COLUMNS, what)
    outcomes = names.outcomes_in(participants.columns)
    reserved = reserved_columns(names, outcomes)
    clash = [c for c in participants.columns if str(c) in reserved]
    if clash:
        raise ValueError(
            f"{what} has column(s) {', '.join(map(repr, clash))}, a name dtitool "
            f"computes itself (reserved: {', '.join(reserved)}); rename "
            "the column"
        )
    participants["participant_id"] = _check_ids(participants, what)
    dup = participants["participant_id"].duplicated(keep=False)
    if dup.any():
        ids = pd.unique(participants.loc[dup, "participant_id"])
        raise ValueError(
            f"{what} lists participant(s) more than once: {_preview(ids)}"
        )
    source = "the design's arms" if design is not None else "the trial's arms"
    participants["group"] = _check_labels(
        participants, "group", names.arms, what,
        expected=f"one of {', '.join(map(repr, names.arms))} ({source})",
    )  # fmt: skip
    # A score column the analysis cannot use is a warning that names it.
    _warn_unused_scores(participants, names, design, outcomes, what)
    if not outcomes:
        raise ValueError(
            f"{what} has no outcome scores; expected, for each outcome, columns "
            f"'<outcome>_{names.baseline}' and '<outcome>_{names.primary}'"
            + (" (the design's: " + ", ".join(
                f"{names.score_column(k, names.baseline)!r} and "
                f"{names.score_column(k, names.primary)!r}"
                for k in design.outcome_names) + ")" if design is not None else "")
        )
    ranges = _score_ranges(design)
    for k in outcomes:
        lo, hi = ranges.get(k, (None, None))
        base = names.score_column(k, names.baseline)
        for col in (base, names.score_column(k, names.primary)):
            participants[col] = _check_scores(participants, col, lo, hi, what)
        if participants[base].isna().any():
            ids = participants.loc[participants[base].isna(), "participant_id"]
            raise ValueError(
                f"{what} has no {base} score for {_preview(ids)}; baseline "
                f"scores are required (only the {names.primary} visit's may be "
                "missing)"
            )
    if "age" in participants.columns:
        participants["age"] = _numeric(participants, "age", what)
    if "sex" in participants.columns:
        sex = participants["sex"].astype("string").str.strip()
        bad = sex.notna() & ~sex.isin(("F", "M"))
        if bad.any():
            labels = pd.unique(sex[bad].astype(str))
            raise ValueError(
                f"{what} has unknown sex label(s) {_preview(map(repr, labels))}; "
                "expected 'F' or 'M' (or empty)"
            )
        participants["sex"] = sex.astype(object).where(sex.notna(), np.nan)
    return participants


def _numeric(df: pd.DataFrame, col: str, what: str) -> pd.Series:
    values = pd.to_numeric(df[col], errors="coerce")
    bad = values.isna() & df[col].notna()
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        pid = df["participant_id"].iloc[i]
        raise ValueError(
            f"{what} column {col!r} has a non-numeric value {df[col].iloc[i]!r} "
            f"(participant {pid})"
        )
    return values.astype(float)


def _check_scores(df, col: str, lo: int | None, hi: int | None,
                  what: str) -> pd.Series:
    values = _numeric(df, col, what)
    finite = values.notna()
    frac = finite & (values != np.round(values))
    if frac.any():
        i = int(np.flatnonzero(frac.to_numpy())[0])
        raise ValueError(
            f"{what} column {col!r} has a non-integer score {values.iloc[i]:g} "
            f"(participant {df['participant_id'].iloc[i]}); scores are whole "
            "points"
        )
    if lo is None:  # a scale the design does not state: no range to check
        return values
    out = finite & ((values < lo) | (values > hi))
    if out.any():
        i = int(np.flatnonzero(out.to_numpy())[0])
        raise ValueError(
            f"{what} column {col!r} has score {values.iloc[i]:g} for participant "
            f"{df['participant_id'].iloc[i]}, outside the scale's range "
            f"{lo}-{hi}"
        )
    return values


def _check_roi_md(roi_md: pd.DataFrame, md_unit: str,
                  names: TrialNames, measure: str = "md") -> pd.DataFrame:
    what = _what(measure)
    columns = (*_ROI_MD_COLUMNS[:3], measure)
    _require_columns(roi_md, columns, what)
    roi_md = roi_md.loc[:, list(columns)].copy()
    roi_md["participant_id"] = _check_ids(roi_md, what)
    roi_md["session"] = _check_labels(
        roi_md, "session", names.visits, what,
        expected=" or ".join(map(repr, names.visits)) + " (the trial's visits)",
    )  # fmt: skip
    if roi_md["roi"].isna().any():
        i = int(np.flatnonzero(roi_md["roi"].isna().to_numpy())[0])
        raise ValueError(f"{what} has an empty roi name (row {i + 1})")
    roi_md["roi"] = roi_md["roi"].astype(str).str.strip()
    keys = ["participant_id", "session", "roi"]
    dup = roi_md.duplicated(keys, keep=False)
    if dup.any():
        rows = roi_md.loc[dup, keys].drop_duplicates()
        named = [" ".join(r) for r in rows.itertuples(index=False)]
        raise ValueError(
            f"{what} has duplicated participant/session/ROI rows: {_preview(named)}"
        )
    md = pd.to_numeric(roi_md[measure], errors="coerce")
    bad = md.isna()
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        r = roi_md.iloc[i]
        raw = roi_md[measure].iloc[i]
        kind = "empty (NaN)" if pd.isna(raw) else f"non-numeric ({raw!r})"
        raise ValueError(
            f"{what} {measure} is {kind} for {r['participant_id']} {r['session']} "
            f"{r['roi']} ({int(bad.sum())} such rows); a missing scan must be a "
            f"missing row, not an empty {measure}"
        )
    md = md.astype(float)
    if not np.isfinite(md).all():
        raise ValueError(f"{what} {measure} has infinite values")
    if measure != "md":  # another measure: in the unit its design states
        roi_md[measure] = md
        return roi_md
    if md_unit not in MD_UNITS:
        raise ValueError(
            f"md_unit must be one of {', '.join(map(repr, MD_UNITS))}, "
            f"got {md_unit!r}"
        )
    md = md * MD_UNITS[md_unit]
    nonpos = md <= 0
    if nonpos.any():
        i = int(np.flatnonzero(nonpos.to_numpy())[0])
        r = roi_md.iloc[i]
        raise ValueError(
            f"{what} md must be positive, got {roi_md['md'].iloc[i]} for "
            f"{r['participant_id']} {r['session']} {r['roi']}"
        )
    _check_md_unit(md.to_numpy(), roi_md, md_unit)
    roi_md["md"] = md
    return roi_md


def _what(measure: str) -> str:
    return "ROI MD table" if measure == "md" else f"ROI {measure} table"


def _check_md_unit(md: np.ndarray, roi_md: pd.DataFrame, md_unit: str) -> None:
    med = float(np.median(md))
    given = f"{md_unit!r}" if md_unit != "mm^2/s" else "mm^2/s (the default)"
    if not (_MD_TOLERATED[0] <= med <= _MD_TOLERATED[1]):
        raw = med / MD_UNITS[md_unit]
        hint, hint_unit = "", None
        for unit, factor in MD_UNITS.items():
            if unit != md_unit and _MD_PLAUSIBLE[0] <= raw * factor <= _MD_PLAUSIBLE[1]:
                hint_unit = unit
                hint = (
                    f"; they look like {unit} (declare it with md_unit={unit!r} "
                    f"or --md-unit '{unit}' to convert)"
                )
                break
        extra = " (or is this an FA map?)" if hint_unit == "1e-3 mm^2/s" else ""
        raise ValueError(
            f"ROI MD table md values have median {raw:.4g}, which is not a "
            f"plausible brain MD in {given} (gray matter is ~0.7e-3..1.0e-3 "
            f"mm^2/s){hint}{extra}"
        )
    if not (_MD_PLAUSIBLE[0] <= med <= _MD_PLAUSIBLE[1]):
        warnings.warn(
            f"ROI MD table md values have median {med:.3g} mm^2/s (assuming "
            f"{given}), unusual for brain tissue (gray matter ~0.7e-3..1.0e-3 "
            "mm^2/s); check the unit",
            stacklevel=4,
        )
    ratio = md / med
    wild = (ratio > 10) | (ratio < 0.1)
    if wild.any():
        i = int(np.flatnonzero(wild)[0])
        r = roi_md.iloc[i]
        raise ValueError(
            f"ROI MD table md of {r['participant_id']} {r['session']} {r['roi']} "
            f"is {md[i] / MD_UNITS[md_unit]:.4g}, {ratio[i]:.3g} times the median "
            f"of all values ({int(wild.sum())} such rows); mixed units?"
        )


def check_tables(
    participants,
    roi_md,
    *,
    replicate: int | None = None,
    md_unit: str = "mm^2/s",
    min_per_arm: int = MIN_PER_ARM,
    names=None,
    design: StudyDesign | None = None,
    control: str | None = None,
    visits=None,
    measure: str = "md",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Check a participants table and an ROI MD table; return cleaned copies.

    Parameters
    ----------
    participants, roi_md : DataFrame or path-like
        The two tables (see the module docstring), or paths to their ``.tsv``
        files (then the folder of ``participants`` is searched for a
        ``visits.tsv`` and a ``design.toml``, as :func:`read_tables` does).
    replicate : int, optional
        Replicate to keep when the tables have a ``replicate`` column with
        several values (then required). The column is dropped from the copies.
    md_unit : str
        Unit of ``roi_md["md"]``, one of :data:`MD_UNITS`. Values are converted
        to mm^2/s. The default, mm^2/s, is checked for plausibility: a median
        outside 1e-6..1e-2 is an error that names the unit the values look like;
        a median outside 2e-4..5e-3 (brain tissue) is a warning.
    min_per_arm : int
        Fewest participants each arm must have.
    names : TrialNames or StudyDesign, optional
        The trial's arms, control arm and visits.
    design : StudyDesign, optional
        The design: its names, and its outcomes' score ranges.
    control : str, optional
        Without a design, the control arm (the arms are ``group``'s levels).
    visits : sequence of str or VisitSpec, optional
        Without a design, the visits, baseline first.
    measure : str
        The measure the ROI table holds: ``md`` (default), or another measure
        of the ROIs (``roi_<measure>.tsv``: column ``<measure>``, in the unit
        its design states; no unit conversion or plausibility check). Such a
        table may carry a ``unit`` column (``dtitool mrs-import`` writes one):
        one unit for every row, which becomes the models' unit (per 1 of it,
        or per the design's scale where the design states the same unit), and
        fit-quality columns (``crlb``, ``fit_error``): the spectra a rule
        removed (:func:`dtitool.mrs.apply_quality`) are carried in ``attrs``
        and counted by the analysis; a quality column no rule was applied to
        is a warning.

    Returns
    -------
    participants : DataFrame
        One row per participant; scores as floats (NaN where a follow-up score
        is missing), ``group`` and ``participant_id`` as str.
    roi_md : DataFrame
        Columns ``participant_id, session, roi, md`` with ``md`` in mm^2/s.

    Both carry the trial's :class:`~dtitool.design.TrialNames` in
    ``attrs["trial_names"]`` (:func:`compute_changes` and :func:`outcomes_in`
    read it there).

    Warns
    -----
    UserWarning
        For every participants column that looks like a score the analysis
        cannot use (an outcome with one of its two columns, a score at a visit
        that is not the trial's), a design outcome without score columns, and
        follow-up scans without a baseline scan.

    Raises
    ------
    ValueError
        Names that cannot be determined (:func:`resolve_names`); missing
        columns (named); unknown group or session labels (the expected ones
        listed); duplicated participants or participant/session/ROI rows
        (named); non-numeric, empty or non-positive MD; MD in an implausible
        unit or mixed units; a measure table with more than one ``unit`` (the
        units named), an empty one, or another than its design states;
        non-integer scores, or scores outside the range of the design's scale;
        a missing baseline score; participants in one table and not the
        other; an arm with fewer than ``min_per_arm`` participants.
    TypeError
        If a table is neither a DataFrame nor a path.
    """
    directory = (Path(participants).parent
                 if isinstance(participants, (str, os.PathLike)) else None)
    participants = _as_frame(participants, "participants table")
    roi_md = _as_frame(roi_md, _what(measure))
    carried = {k: roi_md.attrs[k] for k in (*_QUALITY_ATTRS, "measure_unit")
               if k in roi_md.attrs}
    participants, roi_md = _select_replicate(participants, roi_md, replicate)
    names, design = resolve_names(participants, names=names, design=design,
                                  control=control, visits=visits,
                                  directory=directory)
    participants = _check_participants(participants, names, design)
    unit = carried.get("measure_unit")
    if measure != "md":
        unit = _measure_unit(roi_md, _what(measure)) or unit
        _warn_unruled(roi_md, carried, _what(measure))
    roi_md = _check_roi_md(roi_md, md_unit, names, measure)

    in_p = set(participants["participant_id"])
    in_r = set(roi_md["participant_id"])
    if in_r - in_p:
        raise ValueError(
            f"{_what(measure)} has participant(s) not in the participants table: "
            f"{_preview(sorted(in_r - in_p))}"
        )
    if in_p - in_r and measure == "md":  # another measure may miss people
        raise ValueError(
            "participants table has participant(s) with no rows in the ROI MD "
            f"table: {_preview(sorted(in_p - in_r))}"
        )
    counts = participants["group"].value_counts()
    for g in names.arms:
        if counts.get(g, 0) < min_per_arm:
            raise ValueError(
                f"the {g} arm has {counts.get(g, 0)} participant(s); at least "
                f"{min_per_arm} per arm are needed to fit an arm-specific slope"
            )
    late = roi_md.loc[roi_md["session"] == names.primary]
    paired = late.merge(
        roi_md.loc[roi_md["session"] == names.baseline, ["participant_id", "roi"]],
        how="left",
        on=["participant_id", "roi"],
        indicator=True,
    )
    orphans = paired.loc[paired["_merge"] == "left_only"]
    if "quality_excluded" in carried:  # counted as fit quality, not as orphans
        gone = {(p, r) for p, s, r, _ in carried["quality_excluded"]
                if s == names.baseline}
        orphans = orphans.loc[[(p, r) not in gone for p, r in
                               zip(orphans["participant_id"], orphans["roi"],
                                   strict=True)]]
    if len(orphans):
        named = (orphans["participant_id"] + " " + orphans["roi"]).tolist()
        warnings.warn(
            f"{_what(measure)} has {len(orphans)} {names.primary} scan(s) without a "
            f"{names.baseline} scan ({_preview(named, 3)}); they are left out of "
            "the models",
            stacklevel=2,
        )
    participants = participants.reset_index(drop=True)
    roi_md = roi_md.reset_index(drop=True)
    participants.attrs[NAMES_ATTR] = names
    roi_md.attrs[NAMES_ATTR] = names
    roi_md.attrs["measure"] = measure
    roi_md.attrs.update(carried)
    spec = None
    if design is not None:
        roi_md.attrs["roi_order"] = design.roi_names
        spec = next((x for x in design.measures if x.name == measure), None)
        if spec is not None:  # the slopes' unit: per the design's scale
            roi_md.attrs["measure_scale"] = (spec.scale, spec.unit)
    if unit is not None:
        if spec is not None and spec.unit != unit:
            raise ValueError(
                f"{_what(measure)} is in {unit} but the design states {measure} "
                f"in {spec.unit or 'ratio units'}; import the table on the "
                "design's scale (dtitool mrs-import --unit) or change the "
                "design's unit")
        if spec is None:  # the slopes are per 1 of the table's unit
            from dtitool.design.measures import KNOWN_MEASURES

            scale = KNOWN_MEASURES.get(measure, (None, 1.0))[1]
            roi_md.attrs["measure_scale"] = (scale, unit)
        roi_md.attrs["measure_unit"] = unit
    return participants, roi_md


def _measure_unit(table: pd.DataFrame, what: str) -> str | None:
    """Return the one unit of a table's ``unit`` column (None: no such column)."""
    if "unit" not in table.columns:
        return None
    units = table["unit"].astype("string").str.strip()
    empty = units.isna() | (units == "")
    if empty.any():
        i = int(np.flatnonzero(empty.to_numpy())[0])
        r = table.iloc[i]
        raise ValueError(
            f"{what} has an empty unit for {r['participant_id']} {r['session']} "
            f"{r['roi']} ({int(empty.sum())} such rows); every row needs its unit")
    counts = units.value_counts(sort=False)
    if len(counts) > 1:
        found = ", ".join(f"{u} ({k} rows)" for u, k in counts.items())
        raise ValueError(
            f"{what} holds values in {len(counts)} units: {found}; a table must "
            "have one unit (import it again with one --unit, dtitool mrs-import)")
    return str(counts.index[0]) if len(counts) else None


def _warn_unruled(table: pd.DataFrame, carried, what: str) -> None:
    """Warn when a table's fit-quality column was not applied by any rule."""
    cols = [c for c in _QUALITY_COLUMNS if c in table.columns]
    if cols and "quality_rules" not in carried:
        warnings.warn(
            f"{what} has a fit-quality column ({', '.join(cols)}) but no "
            "quality rule was applied, so every spectrum is used; exclude "
            "spectra above a limit with dtitool.mrs.apply_quality (dtitool "
            "analyze --model change applies it: --max-crlb, --max-fit-error)",
            stacklevel=3)


def _roi_order(rois, order=()) -> list[str]:
    """ROIs present, those of ``order`` (a design's) first, in that order."""
    present = list(pd.unique(pd.Series(rois)))
    canon = [r for r in order if r in present]
    return canon + [r for r in present if r not in canon]


def compute_changes(
    participants,
    roi_md,
    *,
    replicate: int | None = None,
    md_unit: str = "mm^2/s",
    names=None,
    design: StudyDesign | None = None,
    control: str | None = None,
    visits=None,
    measure: str = "md",
) -> pd.DataFrame:
    """Per-subject MD change per ROI and score change per outcome.

    Parameters
    ----------
    participants, roi_md : DataFrame or path-like
        The two tables; checked with :func:`check_tables`.
    replicate, md_unit, names, design, control, visits, measure
        As in :func:`check_tables`; with another ``measure`` its columns take
        the place of MD's (``<measure>_<baseline>``, ``d_<measure>``, ...) and
        ``attrs["measure"]`` names it.

    Returns
    -------
    DataFrame
        One row per participant x ROI (every ROI in ``roi_md``, the design's
        order first), with columns ``participant_id, group, roi,
        md_<baseline>, md_<primary>, d_md, d_md_pct``, then for each outcome
        ``k``: ``k_<baseline>, k_<primary>, d_k``, then any other participant
        columns (covariates such as ``age``, ``sex``). ``d_md = md_<primary> -
        md_<baseline>`` in mm^2/s and ``d_md_pct = 100 * d_md /
        md_<baseline>``; ``d_k = k_<primary> - k_<baseline>`` (negative =
        improvement). A missing scan or score gives NaN changes. The names are
        in ``attrs["trial_names"]``.

    Examples
    --------
    >>> import pandas as pd
    >>> p = pd.DataFrame({"participant_id": ["a", "b", "c", "d", "e", "f"],
    ...                   "group": ["drug"] * 3 + ["placebo"] * 3,
    ...                   "hamd_pre": [30] * 6, "hamd_week1": [20] * 6})
    >>> r = pd.DataFrame({"participant_id": list("abcdef") * 2,
    ...                   "session": ["pre"] * 6 + ["week1"] * 6,
    ...                   "roi": "thalamus", "md": [0.8e-3] * 6 + [0.79e-3] * 6})
    >>> ch = compute_changes(p, r, control="placebo", visits=("pre", "week1"))
    >>> list(ch.columns[3:5])
    ['md_pre', 'md_week1']
    >>> float(ch["d_md"].iloc[0].round(8)), float(ch["d_hamd"].iloc[0])
    (-1e-05, -10.0)
    """
    participants, roi_md = check_tables(
        participants, roi_md, replicate=replicate, md_unit=md_unit, names=names,
        design=design, control=control, visits=visits, measure=measure,
    )
    return _changes(participants, roi_md)


def _changes(participants: pd.DataFrame, roi_md: pd.DataFrame,
             names: TrialNames | None = None) -> pd.DataFrame:
    """compute_changes on tables already checked (which carry their names)."""
    names = _names_of(names) or participants.attrs.get(NAMES_ATTR)
    if names is None:
        raise ValueError("the changes need the trial's names: check the tables "
                         "with check_tables first, or pass names=")
    rois = _roi_order(roi_md["roi"], roi_md.attrs.get("roi_order", ()))
    visits = (names.baseline, names.primary)
    m = roi_md.attrs.get("measure", "md")
    md_cols = [f"{m}_{v}" for v in visits]
    wide = roi_md.pivot(
        index=["participant_id", "roi"], columns="session", values=m
    )
    wide = wide.reindex(columns=list(visits))
    wide.columns = md_cols
    grid = pd.MultiIndex.from_product(
        [participants["participant_id"], rois], names=["participant_id", "roi"]
    )
    if m != "md":  # ROIs without the measure have no rows
        held = set(roi_md["roi"]) | {r for _, _, r, _ in
                                     roi_md.attrs.get("quality_excluded", ())}
        grid = pd.MultiIndex.from_product(
            [participants["participant_id"],
             [r for r in _roi_order([*roi_md["roi"], *sorted(held)],
                                    roi_md.attrs.get("roi_order", ()))
              if r in held]],
            names=["participant_id", "roi"])
    wide = wide.reindex(grid).reset_index()
    wide[f"d_{m}"] = wide[md_cols[1]] - wide[md_cols[0]]
    wide[f"d_{m}_pct"] = 100.0 * wide[f"d_{m}"] / wide[md_cols[0]]
    outcomes = names.outcomes_in(participants.columns)
    p = participants.copy()
    score_cols = []
    for k in outcomes:
        b, f = (names.score_column(k, v) for v in visits)
        p[f"d_{k}"] = p[f] - p[b]
        score_cols += [b, f, f"d_{k}"]
    extra = [
        c for c in p.columns if c not in {"participant_id", "group", *score_cols}
    ]
    p = p[["participant_id", "group", *score_cols, *extra]]
    out = wide.merge(p, on="participant_id", how="left", validate="many_to_one")
    cols = [
        "participant_id", "group", "roi", *md_cols, f"d_{m}",
        f"d_{m}_pct", *score_cols, *extra,
    ]
    out = out[cols]
    out.attrs = {NAMES_ATTR: names, **({} if m == "md" else {
        "measure": m, **{k: roi_md.attrs[k] for k in ("measure_scale",
                                                      "measure_unit",
                                                      *_QUALITY_ATTRS)
                         if k in roi_md.attrs}})}
    return out
