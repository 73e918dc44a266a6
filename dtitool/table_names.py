"""The trial's names from its tables: arms, control arm, visits and outcomes.

Tables read without a design name their trial through their own columns (the
``group`` levels, ``<outcome>_<visit>`` score columns), a ``visits.tsv`` and a
``design.toml`` beside them, or arguments (``control=``, ``visits=``); what
cannot be determined is an error that says how to give it
(:func:`resolve_names`). Checked tables and the changes table carry the result
in ``DataFrame.attrs`` (:data:`NAMES_ATTR`). :mod:`dtitool.tables` re-exports
everything here.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from dtitool._io import read_tsv
from dtitool.design import StudyDesign, TrialNames, VisitSpec
from dtitool.design.layout import check_visits

__all__ = ["NAMES_ATTR", "changes_names", "outcomes_in", "read_visits",
           "resolve_names"]

NAMES_ATTR = "trial_names"
"""Key of ``DataFrame.attrs`` under which checked tables and the changes table
carry their :class:`~dtitool.design.TrialNames`."""

_HOW = {
    "control": "give control=ARM (--control ARM on the command line) or a design "
               "(design=, or a design.toml beside the tables)",
    "visits": "give visits=(BASELINE, FOLLOW_UP) (--visits on the command line), "
              "a visits.tsv beside the tables, or a design (design=, or a "
              "design.toml beside the tables)",
}


def _names_of(names) -> TrialNames | None:
    if names is None or isinstance(names, TrialNames):
        return names
    if isinstance(names, StudyDesign):
        return names.names
    raise TypeError("names must be a TrialNames or a StudyDesign; got "
                    f"{type(names).__name__}")


def outcomes_in(participants: pd.DataFrame, names=None) -> tuple[str, ...]:
    """Outcomes with both score columns in ``participants``, in column order.

    Parameters
    ----------
    participants : DataFrame
        A participants table.
    names : TrialNames or StudyDesign, optional
        The trial's names; default the names a checked table carries
        (``participants.attrs["trial_names"]``, set by :func:`check_tables`).

    Returns
    -------
    tuple of str
        Every stem ``k`` with a ``k_<baseline>`` and a ``k_<primary>`` column.

    Examples
    --------
    >>> import pandas as pd
    >>> from dtitool.design import TrialNames
    >>> names = TrialNames(("drug", "placebo"), "placebo", ("pre", "week1"))
    >>> p = pd.DataFrame(columns=["participant_id", "group", "hamd_pre",
    ...                           "hamd_week1", "bdi_pre", "bdi_week1", "age"])
    >>> outcomes_in(p, names)
    ('hamd', 'bdi')
    """
    names = _names_of(names) or participants.attrs.get(NAMES_ATTR)
    if names is None:
        raise ValueError("outcomes_in needs the trial's visits to know the score "
                         "columns: pass names= (a TrialNames or design), or a "
                         "table checked by check_tables")
    return names.outcomes_in(participants.columns)


def read_visits(path: str | os.PathLike) -> tuple[VisitSpec, ...]:
    """Read a ``visits.tsv`` (the schedule ``dtitool simulate`` writes).

    Parameters
    ----------
    path : str or path-like
        Tab-separated, columns ``visit``, ``hours`` (since baseline), ``dose``
        (empty if none) and ``primary`` (``true`` / ``false``; empty: false),
        one row per visit in time order.

    Returns
    -------
    tuple of VisitSpec
        The visits, checked as a design's are (baseline first at 0 hours,
        times increasing, one primary visit: the last if none is marked).

    Raises
    ------
    ValueError
        A missing file or column, or a value that is not a valid schedule
        (the message names the visit and the field).
    """
    what = f"visits table {str(path)!r}"
    df = read_tsv(path, what=what, dtype={"visit": str, "primary": str},
                  text=("visit",))
    _require_columns(df, ("visit", "hours"), what)
    extra = [str(c) for c in df.columns
             if str(c) not in ("visit", "hours", "dose", "primary")]
    if extra:
        raise ValueError(f"{what} has unknown column(s) {', '.join(map(repr, extra))}"
                         "; expected visit, hours, dose, primary")
    visits = []
    for i, row in enumerate(df.itertuples(index=False), 1):
        r = row._asdict()
        name = "" if pd.isna(r["visit"]) else str(r["visit"]).strip()
        hours = pd.to_numeric(pd.Series([r["hours"]]), errors="coerce").iloc[0]
        if pd.isna(hours):
            raise ValueError(f"{what} row {i} ({name!r}): hours must be a number; "
                             f"got {r['hours']!r}")
        dose = r.get("dose")
        if dose is not None and not pd.isna(dose):
            dose = pd.to_numeric(pd.Series([dose]), errors="coerce").iloc[0]
            if pd.isna(dose):
                raise ValueError(f"{what} row {i} ({name!r}): dose must be a number "
                                 f"or empty; got {r['dose']!r}")
            dose = float(dose)
        else:
            dose = None
        flag = r.get("primary")
        flag = "" if flag is None or pd.isna(flag) else str(flag).strip().lower()
        if flag not in ("", "true", "false"):
            raise ValueError(f"{what} row {i} ({name!r}): primary must be true or "
                             f"false; got {r['primary']!r}")
        try:
            visits.append(VisitSpec(name, float(hours), dose, flag == "true"))
        except (TypeError, ValueError) as e:
            raise ValueError(f"{what} row {i}: {e}") from None
    try:
        return check_visits(visits)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{what}: {e}") from None


def _visit_names(visits) -> tuple[tuple[str, ...], str]:
    """``(names, primary)`` of visits given as names or VisitSpecs."""
    if isinstance(visits, str) or not hasattr(visits, "__iter__"):
        raise TypeError("visits must be a sequence of visit names or VisitSpecs "
                        f"(baseline first); got {visits!r}")
    visits = tuple(visits)
    if visits and all(isinstance(v, VisitSpec) for v in visits):
        visits = check_visits(visits)
        return (tuple(v.name for v in visits),
                next(v.name for v in visits if v.primary))
    if not all(isinstance(v, str) for v in visits):
        raise TypeError("visits must be visit names or VisitSpecs; got "
                        f"{list(visits)!r}")
    return visits, ""


def resolve_names(
    participants: pd.DataFrame | None = None,
    *,
    names=None,
    design: StudyDesign | None = None,
    control: str | None = None,
    visits=None,
    directory: str | os.PathLike | None = None,
) -> tuple[TrialNames, StudyDesign | None]:
    """Determine the trial's arms, control arm and visits, and its design.

    Parameters
    ----------
    participants : DataFrame, optional
        A participants table: without a design, its ``group`` levels are the arms.
    names : TrialNames or StudyDesign, optional
        The names, given outright.
    design : StudyDesign, optional
        The design: its names, and its outcomes' score ranges for the checks.
    control : str, optional
        The control (reference) arm.
    visits : sequence of str or VisitSpec, optional
        The visits, baseline first (the primary visit is the last, or the one
        a VisitSpec marks).
    directory : path-like, optional
        A folder of tables: its ``visits.tsv`` gives the visits and its
        ``design.toml`` the design, where not given above.

    Returns
    -------
    names : TrialNames
    design : StudyDesign or None

    Raises
    ------
    ValueError
        If the control arm or the visits cannot be determined (the message
        says how to give them), if sources disagree (naming both), or if
        ``group`` does not hold two arms.
    """
    if isinstance(names, StudyDesign) and design is None:
        names, design = None, names
    names = _names_of(names)
    if names is not None and design is not None:
        if names != design.names:
            raise ValueError(f"names= ({names}) and design= ({design.names}) "
                             "disagree; give one of them")
        names = None
    folder_visits = None
    if directory is not None:
        directory = Path(directory)
        if (directory / "visits.tsv").is_file():
            folder_visits = read_visits(directory / "visits.tsv")
        if names is None and design is None and (directory / "design.toml").is_file():
            from dtitool.design import read_design

            design, _ = read_design(directory / "design.toml")
    if design is not None and not isinstance(design, StudyDesign):
        raise TypeError(f"design must be a StudyDesign; got {type(design).__name__}")
    if design is not None:
        names = design.names
    elif names is None and participants is not None:
        # a table checked before (or built with its names) carries them
        names = _names_of(getattr(participants, "attrs", {}).get(NAMES_ATTR))
    if names is not None:
        if control is not None and control != names.control:
            raise ValueError(f"control={control!r} disagrees with the design, whose "
                             f"control arm is {names.control!r}")
        for given, where in ((visits, "visits="), (folder_visits, "visits.tsv")):
            if given is None:
                continue
            v, primary = _visit_names(given)
            if v != names.visits or (primary and primary != names.primary):
                raise ValueError(
                    f"the visits of {where} ({', '.join(v)}) disagree with the "
                    f"design's ({', '.join(names.visits)}, primary "
                    f"{names.primary})")
        return names, design
    # no design: arms from the table, control and visits as given
    if visits is None:
        visits = folder_visits
    lacking = [k for k, v in (("control", control), ("visits", visits)) if v is None]
    if lacking:
        k = lacking[0]
        what = ("the control arm" if k == "control"
                else "the visits (which is the baseline, which the follow-up)")
        raise ValueError(f"{what} of these tables cannot be determined: {_HOW[k]}")
    v, primary = _visit_names(visits)
    if participants is None or "group" not in participants.columns:
        raise ValueError("the arms of these tables cannot be determined without a "
                         "participants table with a group column: give names= or "
                         "design=")
    arms = [str(a).strip() for a in pd.unique(participants["group"].dropna())]
    arms = list(dict.fromkeys(a for a in arms if a))
    if control not in arms:
        raise ValueError(f"control arm {control!r} is not a level of the "
                         f"participants table's group column ({', '.join(arms)})")
    return TrialNames(arms=tuple(arms), control=control, visits=v,
                      primary=primary), None


def changes_names(changes: pd.DataFrame, names=None) -> TrialNames:
    """Return the arms and visits of a changes table: ``names``, or its own.

    :func:`compute_changes` records them in ``changes.attrs["trial_names"]``;
    a changes table built otherwise needs ``names`` (``design.names``, or the
    design itself).
    """
    names = _names_of(names)
    if names is None:
        names = getattr(changes, "attrs", {}).get(NAMES_ATTR)
    if names is None:
        raise ValueError(
            "the changes table does not say which arms and visits it holds; build "
            "it with dtitool.tables.compute_changes, or pass names=design.names")
    return _names_of(names)


def _require_columns(df: pd.DataFrame, columns, what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(
            f"{what} is missing column(s) {', '.join(map(repr, missing))}; "
            f"it has {', '.join(map(repr, map(str, df.columns)))}"
        )
