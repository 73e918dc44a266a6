"""Read and check participants / ROI-MD tables, and compute per-subject changes.

The same code reads simulated cohorts and a researcher's real data, so every
input is treated as untrusted: :func:`check_tables` names each problem it finds
(missing columns, unknown labels, duplicated rows, implausible units, subjects in
one table only, out-of-range scores) in a :class:`ValueError` sentence.

Table formats (tab-separated, these column names):

``participants``
    ``participant_id``, ``group`` (``"ketamine"`` or ``"saline"``), and for each
    outcome present ``<outcome>_baseline`` and ``<outcome>_24h`` (integer scores;
    ``*_24h`` may be empty). Optional covariates such as ``age`` and ``sex``.
``roi_md``
    Long form, one row per participant x session x ROI: ``participant_id``,
    ``session`` (``"baseline"`` or ``"24h"``), ``roi``, ``md`` (mm^2/s). A missing
    scan is a missing row.

Either table may carry a leading ``replicate`` column (simulated cohorts with
several replicates); one replicate is analysed at a time.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from dtitool._constants import (
    GROUPS,
    OUTCOMES,
    ROI_NAMES,
    SCALE_RANGES,
    SESSIONS,
)
from dtitool._io import read_tsv

__all__ = [
    "MD_UNITS",
    "MIN_PER_ARM",
    "RESERVED_COLUMNS",
    "check_tables",
    "compute_changes",
    "outcomes_in",
    "read_tables",
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
RESERVED_COLUMNS = (
    "roi", "md_baseline", "md_24h", "d_md", "d_md_pct", "d_score",
    "baseline_score", "baseline_md", *(f"d_{k}" for k in OUTCOMES),
)
"""Names dtitool computes itself (:func:`compute_changes`, the model frame); a
participants column of the same name would be ambiguous, so it is an error."""
_ROI_MD_COLUMNS = ("participant_id", "session", "roi", "md")


COVARIATES = {
    "baseline": "the outcome's baseline score (baseline_score)",
    "baseline_md": "baseline MD of the model's ROI, per 1e-5 mm^2/s (baseline_md)",
    "age": "age in years",
    "sex": "sex, as a categorical term C(sex)",
}
"""Named covariates; any other numeric or text participants column works too."""

def outcomes_in(participants: pd.DataFrame) -> tuple[str, ...]:
    """Outcomes (``madrs``, ``qids``) with both score columns in ``participants``."""
    cols = set(participants.columns)
    return tuple(
        k for k in OUTCOMES if f"{k}_baseline" in cols and f"{k}_24h" in cols
    )


def read_tables(
    directory: str | os.PathLike,
    *,
    replicate: int | None = None,
    md_unit: str = "mm^2/s",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read and check ``participants.tsv`` and ``roi_md.tsv`` from a folder.

    Parameters
    ----------
    directory : str or path-like
        Folder holding ``participants.tsv`` and ``roi_md.tsv``.
    replicate : int, optional
        Which replicate to keep when the tables hold several (a ``replicate``
        column). Required in that case.
    md_unit : str
        Unit of the ``md`` column, one of :data:`MD_UNITS`; values are converted
        to mm^2/s.

    Returns
    -------
    participants, roi_md : DataFrame
        Checked copies, as returned by :func:`check_tables`.

    Raises
    ------
    ValueError
        If a file is missing or unreadable, or any check of
        :func:`check_tables` fails.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise ValueError(f"input folder {str(directory)!r} does not exist")
    participants = read_tsv(
        directory / "participants.tsv", what="participants table", dtype=_TEXT,
        text=_IDS,
    )
    roi_md = read_tsv(directory / "roi_md.tsv", what="ROI MD table", dtype=_TEXT,
                      text=_IDS)
    return check_tables(participants, roi_md, replicate=replicate, md_unit=md_unit)


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


def _require_columns(df: pd.DataFrame, columns, what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(
            f"{what} is missing column(s) {', '.join(map(repr, missing))}; "
            f"it has {', '.join(map(repr, map(str, df.columns)))}"
        )


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


def _check_participants(participants: pd.DataFrame) -> pd.DataFrame:
    what = "participants table"
    _require_columns(participants, _PARTICIPANT_COLUMNS, what)
    clash = [c for c in participants.columns if str(c) in RESERVED_COLUMNS]
    if clash:
        raise ValueError(
            f"{what} has column(s) {', '.join(map(repr, clash))}, a name dtitool "
            f"computes itself (reserved: {', '.join(RESERVED_COLUMNS)}); rename "
            "the column"
        )
    participants["participant_id"] = _check_ids(participants, what)
    dup = participants["participant_id"].duplicated(keep=False)
    if dup.any():
        ids = pd.unique(participants.loc[dup, "participant_id"])
        raise ValueError(
            f"{what} lists participant(s) more than once: {_preview(ids)}"
        )
    participants["group"] = _check_labels(
        participants, "group", GROUPS, what,
        expected=f"one of {', '.join(map(repr, GROUPS))}",
    )  # fmt: skip

    # Outcomes: a half-present pair is almost certainly a typo.
    for k in OUTCOMES:
        have = [c for c in (f"{k}_baseline", f"{k}_24h") if c in participants]
        if len(have) == 1:
            other = ({f"{k}_baseline", f"{k}_24h"} - set(have)).pop()
            raise ValueError(
                f"{what} has {have[0]!r} but not {other!r}; both are needed for "
                f"the {k} outcome"
            )
    outcomes = outcomes_in(participants)
    if not outcomes:
        raise ValueError(
            f"{what} has no outcome scores; expected columns "
            + " or ".join(f"'{k}_baseline' and '{k}_24h'" for k in OUTCOMES)
        )
    for k in outcomes:
        lo, hi = SCALE_RANGES[k]
        for col in (f"{k}_baseline", f"{k}_24h"):
            participants[col] = _check_scores(participants, col, lo, hi, what)
        if participants[f"{k}_baseline"].isna().any():
            ids = participants.loc[
                participants[f"{k}_baseline"].isna(), "participant_id"
            ]
            raise ValueError(
                f"{what} has no {k}_baseline score for {_preview(ids)}; baseline "
                "scores are required (only *_24h may be missing)"
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


def _check_scores(df, col: str, lo: int, hi: int, what: str) -> pd.Series:
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
    out = finite & ((values < lo) | (values > hi))
    if out.any():
        i = int(np.flatnonzero(out.to_numpy())[0])
        raise ValueError(
            f"{what} column {col!r} has score {values.iloc[i]:g} for participant "
            f"{df['participant_id'].iloc[i]}, outside the scale's range "
            f"{lo}-{hi}"
        )
    return values


def _check_roi_md(roi_md: pd.DataFrame, md_unit: str) -> pd.DataFrame:
    what = "ROI MD table"
    _require_columns(roi_md, _ROI_MD_COLUMNS, what)
    roi_md = roi_md.loc[:, list(_ROI_MD_COLUMNS)].copy()
    roi_md["participant_id"] = _check_ids(roi_md, what)
    roi_md["session"] = _check_labels(
        roi_md, "session", SESSIONS, what,
        expected=" or ".join(map(repr, SESSIONS)),
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
    md = pd.to_numeric(roi_md["md"], errors="coerce")
    bad = md.isna()
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        r = roi_md.iloc[i]
        raw = roi_md["md"].iloc[i]
        kind = "empty (NaN)" if pd.isna(raw) else f"non-numeric ({raw!r})"
        raise ValueError(
            f"{what} md is {kind} for {r['participant_id']} {r['session']} "
            f"{r['roi']} ({int(bad.sum())} such rows); a missing scan must be a "
            "missing row, not an empty md"
        )
    md = md.astype(float)
    if not np.isfinite(md).all():
        raise ValueError(f"{what} md has infinite values")
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
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Check a participants table and an ROI MD table; return cleaned copies.

    Parameters
    ----------
    participants, roi_md : DataFrame or path-like
        The two tables (see the module docstring), or paths to their ``.tsv``
        files.
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

    Returns
    -------
    participants : DataFrame
        One row per participant; scores as floats (NaN where a 24 h score is
        missing), ``group`` and ``participant_id`` as str.
    roi_md : DataFrame
        Columns ``participant_id, session, roi, md`` with ``md`` in mm^2/s.

    Raises
    ------
    ValueError
        Missing columns (named); unknown group or session labels (the expected
        ones listed); duplicated participants or participant/session/ROI rows
        (named); non-numeric, empty or non-positive MD; MD in an implausible
        unit or mixed units; non-integer or out-of-range scores
        (:data:`dtitool._constants.SCALE_RANGES`); a missing baseline score;
        participants in one table and not the other; an arm with fewer than
        ``min_per_arm`` participants.
    TypeError
        If a table is neither a DataFrame nor a path.
    """
    participants = _as_frame(participants, "participants table")
    roi_md = _as_frame(roi_md, "ROI MD table")
    participants, roi_md = _select_replicate(participants, roi_md, replicate)
    participants = _check_participants(participants)
    roi_md = _check_roi_md(roi_md, md_unit)

    in_p = set(participants["participant_id"])
    in_r = set(roi_md["participant_id"])
    if in_r - in_p:
        raise ValueError(
            "ROI MD table has participant(s) not in the participants table: "
            f"{_preview(sorted(in_r - in_p))}"
        )
    if in_p - in_r:
        raise ValueError(
            "participants table has participant(s) with no rows in the ROI MD "
            f"table: {_preview(sorted(in_p - in_r))}"
        )
    counts = participants["group"].value_counts()
    for g in GROUPS:
        if counts.get(g, 0) < min_per_arm:
            raise ValueError(
                f"the {g} arm has {counts.get(g, 0)} participant(s); at least "
                f"{min_per_arm} per arm are needed to fit an arm-specific slope"
            )
    late = roi_md.loc[roi_md["session"] == SESSIONS[1]]
    paired = late.merge(
        roi_md.loc[roi_md["session"] == SESSIONS[0], ["participant_id", "roi"]],
        how="left",
        on=["participant_id", "roi"],
        indicator=True,
    )
    orphans = paired.loc[paired["_merge"] == "left_only"]
    if len(orphans):
        named = (orphans["participant_id"] + " " + orphans["roi"]).tolist()
        warnings.warn(
            f"ROI MD table has {len(orphans)} 24h scan(s) without a baseline scan "
            f"({_preview(named, 3)}); they are left out of the models",
            stacklevel=2,
        )
    return participants.reset_index(drop=True), roi_md.reset_index(drop=True)


def _roi_order(rois) -> list[str]:
    present = list(pd.unique(pd.Series(rois)))
    canon = [r for r in ROI_NAMES if r in present]
    return canon + [r for r in present if r not in ROI_NAMES]


def compute_changes(
    participants,
    roi_md,
    *,
    replicate: int | None = None,
    md_unit: str = "mm^2/s",
) -> pd.DataFrame:
    """Per-subject MD change per ROI and score change per outcome.

    Parameters
    ----------
    participants, roi_md : DataFrame or path-like
        The two tables; checked with :func:`check_tables`.
    replicate, md_unit
        As in :func:`check_tables`.

    Returns
    -------
    DataFrame
        One row per participant x ROI (every ROI in ``roi_md``, canonical order
        first), with columns ``participant_id, group, roi, md_baseline, md_24h,
        d_md, d_md_pct``, then for each outcome ``k``: ``k_baseline, k_24h,
        d_k``, then any other participant columns (covariates such as ``age``,
        ``sex``). ``d_md = md_24h - md_baseline`` in mm^2/s and
        ``d_md_pct = 100 * d_md / md_baseline``; ``d_k = k_24h - k_baseline``
        (negative = improvement). A missing scan or score gives NaN changes.

    Examples
    --------
    >>> import pandas as pd
    >>> p = pd.DataFrame({"participant_id": ["a", "b", "c", "d", "e", "f"],
    ...                   "group": ["ketamine"] * 3 + ["saline"] * 3,
    ...                   "madrs_baseline": [30] * 6, "madrs_24h": [20] * 6})
    >>> r = pd.DataFrame({"participant_id": list("abcdef") * 2,
    ...                   "session": ["baseline"] * 6 + ["24h"] * 6,
    ...                   "roi": "L_BA10", "md": [0.8e-3] * 6 + [0.79e-3] * 6})
    >>> ch = compute_changes(p, r)
    >>> float(ch["d_md"].iloc[0].round(8)), float(ch["d_madrs"].iloc[0])
    (-1e-05, -10.0)
    """
    participants, roi_md = check_tables(
        participants, roi_md, replicate=replicate, md_unit=md_unit
    )
    return _changes(participants, roi_md)


def _changes(participants: pd.DataFrame, roi_md: pd.DataFrame) -> pd.DataFrame:
    """compute_changes on tables already checked."""
    rois = _roi_order(roi_md["roi"])
    wide = roi_md.pivot(
        index=["participant_id", "roi"], columns="session", values="md"
    )
    wide = wide.reindex(columns=list(SESSIONS))
    wide.columns = [f"md_{s}" for s in SESSIONS]
    grid = pd.MultiIndex.from_product(
        [participants["participant_id"], rois], names=["participant_id", "roi"]
    )
    wide = wide.reindex(grid).reset_index()
    wide["d_md"] = wide["md_24h"] - wide["md_baseline"]
    wide["d_md_pct"] = 100.0 * wide["d_md"] / wide["md_baseline"]
    outcomes = outcomes_in(participants)
    p = participants.copy()
    for k in outcomes:
        p[f"d_{k}"] = p[f"{k}_24h"] - p[f"{k}_baseline"]
    score_cols = [
        c for k in outcomes for c in (f"{k}_baseline", f"{k}_24h", f"d_{k}")
    ]
    extra = [
        c for c in p.columns if c not in {"participant_id", "group", *score_cols}
    ]
    p = p[["participant_id", "group", *score_cols, *extra]]
    out = wide.merge(p, on="participant_id", how="left", validate="many_to_one")
    cols = [
        "participant_id", "group", "roi", "md_baseline", "md_24h", "d_md",
        "d_md_pct", *score_cols, *extra,
    ]
    return out[cols]
