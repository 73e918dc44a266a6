"""The long tables of a cohort's mixed models: what is fitted, read from the tables.

:func:`dtitool.stats.mixed.fit_mixed` fits one linear mixed model per ROI and
measure and per rating scale to every visit of a cohort. This module turns the
tables into those models' data, with nothing taken from a design that the
tables do not also say (real data come without a ``design.toml``):

- the participants (``participants.tsv``) and the ROIs' measures
  (``roi_md.tsv`` and every ``roi_<measure>.tsv``), checked by
  :func:`dtitool.tables.check_tables` (sessions that are not visits,
  participants missing from the participants table, duplicated scans are
  errors naming them);
- the schedule (``visits.tsv``: ``visit, hours, dose, primary``, read by
  :func:`dtitool.tables.read_visits`), which gives each visit its time;
- the value modelled: MD per 1e-5 mm^2/s, another measure per its model scale
  (the design's ``scale``, else :data:`dtitool.design.measures.KNOWN_MEASURES`,
  else 1), a rating scale in its own points (every ``<outcome>_<visit>``
  column present);
- the covariates (participants columns, ``age`` and ``sex`` by default) and
  the patsy formula with the names of the tested terms.

It imports neither statsmodels nor scipy.
"""

from __future__ import annotations

import keyword
import os
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from dtitool._constants import DMD_SCALE
from dtitool.design import StudyDesign, TrialNames, VisitSpec
from dtitool.tables import (
    _check_scores,
    _roi_order,
    check_tables,
    read_tables,
    read_visits,
    resolve_names,
)

__all__ = [
    "DEFAULT_COVARIATES",
    "TIMES",
    "Cohort",
    "ModelData",
    "default_time",
    "load_cohort",
    "measures_in",
    "model_data",
    "time_values",
]

TIMES = ("dose", "hours", "visit")
"""How the models code time: the visits' dose, their hours since baseline, or
the visit as a factor (baseline the reference)."""

DEFAULT_COVARIATES = ("age", "sex")
"""Covariates of the mixed models when none are given: those of these the
participants table has (``sex`` enters as a factor)."""

_RESERVED = ("value", "participant_id", "group", "visit", "dose", "hours")
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True, slots=True, eq=False)
class Cohort:
    """A cohort's checked tables, as the mixed models read them.

    Parameters
    ----------
    participants : DataFrame
        The checked participants table (:func:`dtitool.tables.check_tables`).
    measures : mapping
        ``measure -> `` checked long table (``participant_id, session, roi,
        <measure>``), ``md`` first (MD in mm^2/s).
    names : TrialNames
        Arms (control last), control arm and visits.
    schedule : tuple of VisitSpec or None
        The visits with their hours and doses (``visits.tsv``, else the
        design's); None when only the visits' names are known.
    design : StudyDesign or None
        The design, when there is one (it only adds the ROIs' order and the
        measures' and scores' scales; the names agree with the tables').
    scales : mapping
        ``measure -> (scale, unit)``: the value a model's unit is (MD: 1e-5
        mm^2/s).
    """

    participants: pd.DataFrame = field(repr=False)
    measures: Mapping = field(repr=False)
    names: TrialNames
    schedule: tuple | None
    design: StudyDesign | None = field(default=None, repr=False)
    scales: Mapping = field(default_factory=dict)

    @property
    def outcomes(self) -> tuple[str, ...]:
        """Rating scales with a baseline and a primary-visit column."""
        return self.names.outcomes_in(self.participants.columns)


@dataclass(frozen=True, slots=True, eq=False)
class ModelData:
    """The data and formula of one model (one ROI and measure, or one scale).

    Parameters
    ----------
    roi, measure, outcome : str
        The model's labels: an imaging model has ``roi`` and ``measure`` and
        an empty ``outcome``; a rating-scale model has only ``outcome``.
    frame : DataFrame
        Long, one row per observation (complete cases): ``participant_id``,
        ``group``, ``visit``, the time column (``dose`` or ``hours``, not for
        a factor), ``value`` and the covariates.
    formula : str
        The fixed-effect patsy formula.
    re_formula : str or None
        The random-effect formula (``"~dose"``; None: a random intercept).
    terms : dict
        Tested term name -> the patsy column it is, in table order.
    unit : str
        What ``value`` is measured in (``"1e-5 mm^2/s"``, ``"points"``, ...).
    time : str
        ``dose``, ``hours`` (a column of ``frame``) or ``visit`` (a factor).
    """

    roi: str
    measure: str
    outcome: str
    frame: pd.DataFrame = field(repr=False)
    formula: str
    re_formula: str | None
    terms: dict
    unit: str
    time: str = "visit"

    @property
    def time_scale(self) -> float:
        """Root mean square of the time column over the observations.

        The unit in which time is handed to the optimiser (1 for a factor).
        """
        if self.time == "visit":
            return 1.0
        t = self.frame[self.time].to_numpy(dtype=float)
        rms = float(np.sqrt(np.mean(t * t))) if t.size else 0.0
        return rms if rms > 0 else 1.0

    @property
    def key(self) -> tuple[str, str, str]:
        """``(roi, measure, outcome)``."""
        return (self.roi, self.measure, self.outcome)

    @property
    def label(self) -> str:
        """The model in words, for messages (``"thalamus md"``, ``"hamd"``)."""
        return f"{self.roi} {self.measure}" if self.roi else self.outcome


# ------------------------------------------------------------------ reading


def measures_in(folder, design: StudyDesign | None = None, *,
                stacklevel: int = 3) -> list[str]:
    """Return the measures besides MD a folder holds (``roi_<measure>.tsv``).

    In the design's order where it names them, then by name. A design measure
    without its table is not analysed, with a warning naming it.
    """
    folder = Path(folder)
    found = sorted(p.name[len("roi_"):-len(".tsv")] for p in folder.glob("roi_*.tsv")
                   if p.name != "roi_md.tsv")
    order = list(design.measure_names[1:]) if design is not None else []
    lacking = [m for m in order if m not in found]
    if lacking:
        warnings.warn(f"the design's measure(s) {', '.join(lacking)} have no "
                      f"roi_<measure>.tsv in {str(folder)!r}; analysing MD and "
                      f"{', '.join(found) or 'nothing else'}",
                      stacklevel=stacklevel)
    return [m for m in order if m in found] + [m for m in found if m not in order]


def _scale_of(measure: str, table: pd.DataFrame) -> tuple[float, str]:
    if measure == "md":
        return DMD_SCALE, "mm^2/s"
    from dtitool.design.measures import KNOWN_MEASURES

    given = table.attrs.get("measure_scale")
    if given:
        return float(given[0]), str(given[1])
    unit, scale, _ = KNOWN_MEASURES.get(measure, ("", 1.0, ""))
    return float(scale), unit


def load_cohort(source, measures=None, *, replicate: int | None = None,
                md_unit: str = "mm^2/s", design: StudyDesign | None = None,
                control: str | None = None, visits=None) -> Cohort:
    """Read and check a cohort for the mixed models.

    Parameters
    ----------
    source : path-like or DataFrame
        A folder holding ``participants.tsv``, ``roi_md.tsv``, optionally
        ``roi_<measure>.tsv`` tables, ``visits.tsv`` and ``design.toml``; or
        the participants table itself.
    measures : DataFrame or mapping, optional
        With a participants table: the ROI MD table, or ``{measure: table}``
        with ``md`` among them. With a folder: the measures to read (default
        MD and every ``roi_<measure>.tsv``).
    replicate, md_unit, design, control
        As in :func:`dtitool.tables.read_tables`.
    visits : sequence of VisitSpec or str, or path-like, optional
        The schedule (VisitSpecs or a ``visits.tsv``), or only the visits'
        names (then time can only be a factor). A folder's ``visits.tsv`` is
        read when this is not given.

    Returns
    -------
    Cohort

    Raises
    ------
    ValueError
        Every check of :func:`dtitool.tables.check_tables` (naming the table,
        the row and what was expected), a ``visits.tsv`` that is not a valid
        schedule, or an MD table missing from ``measures``.
    """
    schedule = None
    if isinstance(visits, (str, os.PathLike)):  # a visits.tsv
        visits = read_visits(visits)
    if visits is not None:
        visits = tuple(visits)
        if visits and all(isinstance(v, VisitSpec) for v in visits):
            schedule = visits
    if isinstance(source, pd.DataFrame):
        if isinstance(measures, pd.DataFrame):
            measures = {"md": measures}
        if not isinstance(measures, Mapping) or not measures:
            raise TypeError("with a participants table, give the ROI MD table "
                            "(measures=roi_md) or a mapping {measure: table} (an "
                            "MRS cohort without DTI has no 'md')")
        names, design = resolve_names(source, design=design, control=control,
                                      visits=visits)
        tables = {}
        participants = None
        for m in [*(["md"] if "md" in measures else []),
                  *(k for k in measures if k != "md")]:
            p, t = check_tables(source, measures[m], replicate=replicate,
                                md_unit=md_unit, names=names, design=design,
                                measure=m)
            participants = p if participants is None else participants
            tables[m] = t
    else:
        folder = Path(source)
        if not folder.is_dir():
            raise ValueError(f"input folder {str(folder)!r} does not exist")
        if visits is None and (folder / "visits.tsv").is_file():
            schedule = read_visits(folder / "visits.tsv")
        participants, roi_md = read_tables(
            folder, replicate=replicate, md_unit=md_unit, design=design,
            control=control, visits=visits)
        names, design = resolve_names(participants, design=design, control=control,
                                      visits=visits, directory=folder)
        wanted = measures_in(folder, design) if measures is None else [
            m for m in measures if m != "md"]
        tables = {"md": roi_md}
        for m in wanted:
            tables[m] = read_tables(folder, replicate=replicate, design=design,
                                    control=control, visits=visits, measure=m)[1]
    if schedule is None and design is not None:
        schedule = _design_schedule(design)
    scales = {m: _scale_of(m, t) for m, t in tables.items()}
    return Cohort(participants=participants, measures=tables, names=names,
                  schedule=schedule, design=design, scales=scales)


def _design_schedule(design: StudyDesign) -> tuple[VisitSpec, ...]:
    """Return the design's visits with the doses its treatment sessions give."""
    sessions = getattr(design, "sessions", None)
    if not sessions:
        return tuple(design.visits)
    from dtitool.design.course import visit_doses

    doses = visit_doses(design.visits, sessions)
    return tuple(VisitSpec(v.name, v.hours, float(d), v.primary)
                 for v, d in zip(design.visits, doses, strict=True))


# --------------------------------------------------------------------- time


def default_time(schedule) -> str:
    """``dose`` when every visit of the schedule states a dose, else ``hours``.

    Without a schedule (only the visits' names), ``visit``.
    """
    if schedule is None:
        return "visit"
    return "dose" if all(v.dose is not None for v in schedule) else "hours"


def time_values(cohort: Cohort, time: str | None) -> tuple[str, dict | None]:
    """Return the time coding and each visit's value (None for a factor).

    Raises
    ------
    ValueError
        An unknown ``time``; ``dose`` when a visit has no dose (naming it);
        ``dose`` or ``hours`` without a schedule.
    """
    if time is None:
        time = default_time(cohort.schedule)
    if time not in TIMES:
        raise ValueError(f"time must be one of {', '.join(TIMES)}; got {time!r}")
    if time == "visit":
        return time, None
    if len(cohort.names.visits) < 3:
        raise ValueError(
            f"the mixed model (1 + {time} | participant) needs at least three "
            f"visits (a random intercept and slope per participant, and a "
            f"residual); the tables have {len(cohort.names.visits)} "
            f"({', '.join(cohort.names.visits)}): use --time visit or --model "
            "change")
    if cohort.schedule is None:
        raise ValueError(f"time {time!r} needs the visits' schedule (a visits.tsv "
                         "with columns visit, hours, dose beside the tables, or "
                         "visits= as VisitSpecs); only the visits' names are "
                         "known, so give time='visit' (--time visit)")
    known = {v.name: v for v in cohort.schedule}
    lacking = [v for v in cohort.names.visits if v not in known]
    if lacking:
        raise ValueError(f"visit {lacking[0]!r} of the tables is not in the "
                         f"schedule (visits.tsv: {', '.join(known)})")
    if time == "dose":
        none = [v for v in cohort.names.visits if known[v].dose is None]
        if none:
            raise ValueError(
                f"time 'dose' needs a dose for every visit, but visit {none[0]!r} "
                "has none (the dose column of visits.tsv); give each visit its "
                "dose (0 at baseline) or use time 'hours' or 'visit'")
        return time, {v: float(known[v].dose) for v in cohort.names.visits}
    return time, {v: float(known[v].hours) for v in cohort.names.visits}


# --------------------------------------------------------------- covariates


def _quoted(name: str) -> str:
    plain = _NAME_RE.match(name) and not keyword.iskeyword(name)
    return name if plain else f"Q({name!r})"


def check_covariates(cohort: Cohort, covariates) -> tuple[tuple[str, ...], dict]:
    """Return the covariates and their kinds (``numeric`` or ``categorical``).

    ``covariates`` None: :data:`DEFAULT_COVARIATES` that the participants table
    has. Otherwise every name must be a participants column other than the
    ones the models use themselves.
    """
    p = cohort.participants
    if covariates is None:
        covariates = tuple(c for c in DEFAULT_COVARIATES if c in p.columns)
    elif isinstance(covariates, str):
        covariates = (covariates,)
    covariates = tuple(covariates)
    if len(set(covariates)) != len(covariates):
        raise ValueError(f"covariates are repeated: {', '.join(covariates)}")
    names = cohort.names
    scores = {names.score_column(k, v) for k in cohort.outcomes for v in names.visits}
    usable = [c for c in map(str, p.columns)
              if c not in {"participant_id", "group", *scores, *_RESERVED}]
    kinds = {}
    for c in covariates:
        if c in ("baseline", "baseline_md"):
            raise ValueError(
                f"covariate {c!r} (a baseline value) does not apply to the mixed "
                "models: the baseline visit is part of what they fit; give "
                f"participants columns ({', '.join(usable) or 'none'}) or no "
                "covariates")
        if c not in usable:
            why = (" (a name the mixed models use themselves)" if c in _RESERVED
                   else "")
            raise ValueError(
                f"unknown covariate {c!r}{why}; expected a participants column: "
                f"{', '.join(usable) or 'none'}")
        numeric = pd.api.types.is_numeric_dtype(p[c]) and c != "sex"
        kinds[c] = "numeric" if numeric else "categorical"
    return covariates, kinds


# ------------------------------------------------------------------- models


def _formula(names: TrialNames, time: str, covariates,
             kinds) -> tuple[str, str | None, dict]:
    """Return the formula, the random part and ``{term: patsy column}``."""
    group = f"C(group, Treatment({names.control!r}))"
    if time == "visit":
        tcol = f"C(visit, Treatment({names.baseline!r}))"
        tcols = [(v, f"{tcol}[T.{v}]") for v in names.visits[1:]]
        re_formula = None
    else:
        tcol = time
        tcols = [(time, time)]
        re_formula = f"~{time}"
    others = [a for a in names.arms if a != names.control]
    terms = [*tcols, *((a, f"{group}[T.{a}]") for a in others),
             *((f"{a}:{t}", f"{group}[T.{a}]:{col}") for a in others
               for t, col in tcols)]
    labels = [t for t, _ in terms]
    dup = sorted({t for t in labels if labels.count(t) > 1})
    if dup:
        raise ValueError(f"the models' term {dup[0]!r} would mean two things (an "
                         "arm named like a visit or like the time variable); "
                         "rename the arm")
    rhs = [f"{group} * {tcol}"]
    for c in covariates:
        ref = _quoted(c)
        rhs.append(f"C({ref})" if kinds[c] == "categorical" else ref)
    return "value ~ " + " + ".join(rhs), re_formula, dict(terms)


def model_data(cohort: Cohort, *, time: str | None = None, covariates=None,
               ) -> tuple[str, list[ModelData]]:
    """Return the time coding and the data of every model of the cohort.

    The imaging models (every ROI of MD, then of each other measure) come
    first, then one per rating scale.

    Raises
    ------
    ValueError
        Bad time or covariates (:func:`time_values`,
        :func:`check_covariates`), a score that is not a number, term names
        that collide (an arm named like a visit), or a model in which an arm
        has no observation.
    """
    time, tvalues = time_values(cohort, time)
    covariates, kinds = check_covariates(cohort, covariates)
    names = cohort.names
    formula, re_formula, terms = _formula(names, time, covariates, kinds)
    p = cohort.participants
    base = p.loc[:, ["participant_id", "group", *covariates]]
    out = []
    order = cohort.design.roi_names if cohort.design is not None else ()
    for m, table in cohort.measures.items():
        scale, unit = cohort.scales[m]
        what = f"{scale:g} {unit}".strip()
        for roi in _roi_order(table["roi"], order):
            rows = table.loc[table["roi"] == roi, ["participant_id", "session", m]]
            long = rows.rename(columns={"session": "visit", m: "value"})
            long["value"] = long["value"].to_numpy(dtype=float) / scale
            out.append(_model(long, base, roi, m, "", formula, re_formula, terms,
                              what, time, tvalues, names))
    for k in cohort.outcomes:
        parts = []
        lo, hi = _score_range(cohort.design, k)
        for v in names.visits:
            col = names.score_column(k, v)
            if col not in p.columns:
                continue
            score = _check_scores(p, col, lo, hi, "participants table")
            parts.append(pd.DataFrame({"participant_id": p["participant_id"],
                                       "visit": v, "value": score.to_numpy()}))
        long = pd.concat(parts, ignore_index=True)
        out.append(_model(long, base, "", "", k, formula, re_formula, terms,
                          "points", time, tvalues, names))
    return time, out


def _score_range(design, outcome):
    if design is None:
        return None, None
    o = next((o for o in design.outcomes if o.name == outcome), None)
    return (o.scale_min, o.scale_max) if o is not None else (None, None)


def _model(long, base, roi, measure, outcome, formula, re_formula, terms, unit,
           time, tvalues, names: TrialNames) -> ModelData:
    frame = long.merge(base, on="participant_id", how="left", validate="many_to_one")
    if tvalues is not None:
        frame[time] = frame["visit"].map(tvalues).astype(float)
    frame = frame.dropna().reset_index(drop=True)
    # participants in the participants table's order, each's visits in time
    # order: the order the rows of a statsmodels fit of the same data take
    who = {pid: i for i, pid in enumerate(base["participant_id"])}
    rank = {v: i for i, v in enumerate(names.visits)}
    order = np.lexsort([frame["visit"].map(rank).to_numpy(),
                        frame["participant_id"].map(who).to_numpy()])
    frame = frame.iloc[order].reset_index(drop=True)
    label = f"{roi} {measure}" if roi else outcome
    arms = set(frame["group"])
    lacking = [a for a in names.arms if a not in arms]
    if lacking:
        raise ValueError(f"the {label} model has no observation in arm "
                         f"{lacking[0]!r} (after leaving out missing values and "
                         "missing covariates); every arm needs data")
    cols = ["participant_id", "group", "visit",
            *([time] if tvalues is not None else []), "value",
            *(c for c in base.columns if c not in ("participant_id", "group"))]
    return ModelData(roi=roi, measure=measure, outcome=outcome,
                     frame=frame.loc[:, cols], formula=formula,
                     re_formula=re_formula, terms=dict(terms), unit=unit,
                     time=time)


def wide_arrays(data: ModelData, exog: np.ndarray, exog_re: np.ndarray,
                visits: Sequence[str]):
    """Arrays of one model in the batched engine's layout.

    Returns ``y (1, N, T)`` with NaN where nothing was observed, ``X (N, T,
    p)`` and ``Z (N, T, q)`` (zero where unobserved), with participants in the
    order of first appearance in ``data.frame`` and visits in ``visits``
    order. ``exog`` and ``exog_re`` are the model's design matrices, one row
    per row of the frame.
    """
    ids, pi = np.unique(data.frame["participant_id"].to_numpy(), return_inverse=True)
    ti = data.frame["visit"].map({v: i for i, v in enumerate(visits)}).to_numpy()
    N, T = ids.size, len(visits)
    y = np.full((1, N, T), np.nan)
    y[0, pi, ti] = data.frame["value"].to_numpy(dtype=float)
    X = np.zeros((N, T, exog.shape[1]))
    X[pi, ti] = exog
    Z = np.zeros((N, T, exog_re.shape[1]))
    Z[pi, ti] = exog_re
    return y, X, Z
