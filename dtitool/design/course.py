"""Time courses of an imaging measure over the visits: step, linear, Emax, transient.

By default an ROI's change (MD or another measure) is one number per participant,
reached at the primary visit and at the other visits in the share their
``fraction`` states. A longitudinal design can instead give a measure a *time
course*: a sum of components, each with a shape over the visits and an amplitude
per participant, drawn per arm with a mean and an SD (the participant's random
slope). In a design file::

    [treatment]
    session_hours = [0, 56, 112, 168, 224, 280]   # or: sessions = 12, every_hours = 56

    [[rois.hippocampus.course]]      # lasting change, saturating in sessions
    shape = "emax"
    ed50 = 4                          # sessions to half the maximum
    mean = { ect = -2.0e-5, controls = 0.0 }   # the maximum (Emax), mm^2/s
    sd = { ect = 1.0e-5, controls = 0.0 }

    [[rois.hippocampus.course]]      # a rise after each session that decays
    shape = "transient"
    half_life_hours = 24
    mean = { ect = 1.5e-5, controls = 0.0 }    # the rise just after one session
    sd = { ect = 0.5e-5, controls = 0.0 }

The same ``[[rois.NAME.measures.MEASURE.course]]`` gives another measure a
course. The shapes, ``g(v)`` at visit ``v`` (the participant's change there is
the sum over components of amplitude x ``g``):

``step``
    1 from the visit named by ``start`` on, 0 before it: a change present from
    that visit on.
``linear``
    the dose received by the visit (say, ECT sessions): the amplitude is the
    change per unit of dose.
``emax``
    ``dose / (dose + ed50)``: saturating in dose; the amplitude is the maximum.
``transient``
    ``sum over sessions s before the visit of 2^(-(t_v - t_s) / half_life)``:
    the amplitude is the rise just after one session, gone a few half-lives
    later, and adding up when sessions come faster than it decays.
``profile``
    the value ``profile`` gives each visit by name (``{baseline = 0,
    infusion1 = 0.6, infusion2 = 1, 24h = 0}``; 0 for a visit not named, and
    for the baseline always): any shape over visits minutes or days apart,
    such as a metabolite's rise during an infusion, gone the next day.

A visit's dose is its ``dose`` if it states one, else the number of treatment
sessions before it (``[treatment]``); hours are the visit's ``hours``. Every arm
shares the shapes (a healthy comparison group scanned on the same schedule has
means and SDs of 0 if nothing should change in it).

The first component's amplitude is the participant's "change" of the
generative model: it carries the design's correlations (with the other ROIs'
changes, the outcomes' changes and the ROI's measures), so the correlation of a
participant's imaging course with their clinical course is ``roi_outcome``. Any
further component has an amplitude of its own, independent of everything else.
The ROI's ``change_mean`` and ``change_sd`` are then derived (the expected
change at the primary visit and its SD), not given.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from dtitool._validation import check_range, check_real, err
from dtitool.design.layout import PerArm, VisitSpec

__all__ = [
    "SHAPES",
    "CourseComponent",
    "course_matrix",
    "primary_change",
    "session_hours",
    "visit_doses",
]

SHAPES = ("step", "linear", "emax", "transient", "profile")
"""The component shapes a time course can sum."""

_KEYS = {"shape", "mean", "sd", "start", "ed50", "half_life_hours", "profile"}
_NEEDS = {"step": "start", "emax": "ed50", "transient": "half_life_hours",
          "profile": "profile"}
_PARAMS = ("start", "ed50", "half_life_hours", "profile")


@dataclass(frozen=True)
class CourseComponent:
    """One component of a time course (module docstring).

    Parameters
    ----------
    shape : {"step", "linear", "emax", "transient"}
        The component's shape over the visits.
    mean, sd : PerArm
        Mean and between-participant SD of the amplitude per arm, in the
        measure's unit (per unit of dose for ``linear``).
    start : str or None
        ``step``: the first visit at which the change is present.
    ed50 : float or None
        ``emax``: the dose at half the maximum (> 0).
    half_life_hours : float or None
        ``transient``: hours for the rise after a session to halve (> 0).
    profile : mapping or None
        ``profile``: ``{visit: value}``, the shape at the visits named.
    """

    shape: str
    mean: PerArm
    sd: PerArm
    start: str | None = None
    ed50: float | None = None
    half_life_hours: float | None = None
    profile: Mapping | None = None

    def __post_init__(self):
        if self.shape not in SHAPES:
            raise err("course shape", f"must be one of {', '.join(SHAPES)}",
                      self.shape)
        need = _NEEDS.get(self.shape)
        for key in _PARAMS:
            given = getattr(self, key) is not None
            if key == need and not given:
                raise ValueError(f"a {self.shape!r} course component needs {key}")
            if given and key != need:
                raise ValueError(f"{key} is not a parameter of a {self.shape!r} "
                                 "course component")
        if self.ed50 is not None:
            check_range("course ed50", self.ed50, 0.0, lo_open=True)
        if self.half_life_hours is not None:
            check_range("course half_life_hours", self.half_life_hours, 0.0,
                        lo_open=True)
        if self.profile is not None:
            if not isinstance(self.profile, Mapping) or not self.profile:
                raise TypeError("course profile must be a table {visit = value}; "
                                f"got {self.profile!r}")
            object.__setattr__(self, "profile", {
                str(k): float(check_real(f"course profile.{k}", v))
                for k, v in self.profile.items()})
        if set(self.mean.arms) != set(self.sd.arms):
            raise ValueError("a course component's mean and sd must name the same "
                             f"arms; got {list(self.mean.arms)} and "
                             f"{list(self.sd.arms)}")
        for arm in self.mean:
            check_real(f"course mean.{arm}", self.mean[arm])
            check_range(f"course sd.{arm}", self.sd[arm], 0.0)

    def values(self, visits: Sequence[VisitSpec], sessions: Sequence[float]
               ) -> np.ndarray:
        """Return the shape ``g`` at each visit, shape (visits,)."""
        names = [v.name for v in visits]
        if self.shape == "profile":
            unknown = sorted(set(self.profile) - set(names))
            if unknown:
                raise err("course profile", "must name visits of the design "
                          f"({', '.join(names)})", unknown[0])
            if self.profile.get(names[0], 0.0):
                raise err(f"course profile.{names[0]}", "must be 0: a change is "
                          "measured from the baseline", self.profile[names[0]])
            return np.array([self.profile.get(n, 0.0) for n in names])
        if self.shape == "step":
            if self.start not in names[1:]:
                raise err("course start", "must name a follow-up visit "
                          f"({', '.join(names[1:])})", self.start)
            return (np.arange(len(visits)) >= names.index(self.start)).astype(float)
        if self.shape == "transient":
            if not len(sessions):
                raise ValueError("a 'transient' course component needs the "
                                 "treatment sessions' times ([treatment] "
                                 "session_hours, or sessions and every_hours)")
            t = np.array([v.hours for v in visits])[:, None]
            s = np.asarray(sessions, dtype=float)[None, :]
            lag = t - s
            decay = np.exp2(-np.where(lag > 0, lag, 0.0) / self.half_life_hours)
            return np.where(lag > 0, decay, 0.0).sum(axis=1)
        dose = visit_doses(visits, sessions)
        if self.shape == "linear":
            return dose
        return dose / (dose + self.ed50)

    def as_dict(self, arms: Sequence[str]) -> dict[str, Any]:
        """Return the component as a design-file table."""
        out: dict[str, Any] = {"shape": self.shape}
        for key in _PARAMS:
            if getattr(self, key) is not None:
                out[key] = (dict(self.profile) if key == "profile"
                            else getattr(self, key))
        out["mean"] = {a: self.mean[a] for a in arms}
        out["sd"] = {a: self.sd[a] for a in arms}
        return out


def session_hours(d: Any) -> tuple[float, ...]:
    """Read a ``[treatment]`` table: the hours of every treatment session.

    ``session_hours = [...]`` lists them; ``sessions = K`` with ``every_hours``
    (and ``first_hours``, default 0) spaces them evenly.
    """
    if d is None:
        return ()
    if not isinstance(d, Mapping):
        raise TypeError(f"treatment must be a table; got {d!r}")
    keys = set(d)
    unknown = sorted(keys - {"session_hours", "sessions", "every_hours",
                             "first_hours"})
    if unknown:
        raise ValueError(f"unknown key treatment.{unknown[0]}; valid keys here: "
                         "every_hours, first_hours, session_hours, sessions")
    if "session_hours" in d:
        if keys & {"sessions", "every_hours", "first_hours"}:
            raise ValueError("treatment gives session_hours and sessions; give one")
        hours = d["session_hours"]
        if not isinstance(hours, list) or not hours:
            raise err("treatment.session_hours", "must be a non-empty list of "
                      "hours since baseline", hours)
        out = tuple(check_range(f"treatment.session_hours[{i}]", h, 0.0)
                    for i, h in enumerate(hours))
        if any(b <= a for a, b in itertools.pairwise(out)):
            raise err("treatment.session_hours", "must increase", list(out))
        return out
    if "sessions" not in d or "every_hours" not in d:
        raise ValueError("treatment needs session_hours, or sessions with "
                         "every_hours")
    k = d["sessions"]
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise err("treatment.sessions", "must be a whole number >= 1", k)
    every = check_range("treatment.every_hours", d["every_hours"], 0.0, lo_open=True)
    first = check_range("treatment.first_hours", d.get("first_hours", 0.0), 0.0)
    return tuple(first + every * i for i in range(k))


def visit_doses(visits: Sequence[VisitSpec], sessions: Sequence[float]) -> np.ndarray:
    """Dose received by each visit: its ``dose``, else the sessions before it."""
    out = []
    for v in visits:
        if v.dose is not None:
            out.append(float(v.dose))
        elif len(sessions):
            out.append(float(sum(s < v.hours for s in sessions)))
        else:
            raise ValueError(f"visits.{v.name} states no dose and the design no "
                             "treatment sessions ([treatment]): a 'linear' or "
                             "'emax' course needs the dose at every visit")
    return np.array(out)


def check_doses(visits: Sequence[VisitSpec], sessions: Sequence[float]) -> None:
    """Check that a visit's stated dose is the number of sessions before it."""
    if not len(sessions):
        return
    for v in visits:
        k = sum(s < v.hours for s in sessions)
        if v.dose is not None and v.dose != k:
            raise err(f"visits.{v.name}.dose", f"must be {k}, the number of "
                      f"treatment sessions before hour {v.hours:g}", v.dose)


def course_matrix(course: Sequence[CourseComponent], visits: Sequence[VisitSpec],
                  sessions: Sequence[float]) -> np.ndarray:
    """Shapes of a course's components at every visit, shape (components, visits)."""
    return np.array([c.values(visits, sessions) for c in course])


def primary_change(course: Sequence[CourseComponent], visits: Sequence[VisitSpec],
                   sessions: Sequence[float], arms: Sequence[str]
                   ) -> tuple[PerArm, PerArm]:
    """Return the expected change at the primary visit and its SD, per arm.

    The sum of the components' mean amplitudes times their shape there, and the
    square root of the sum of their variances times the shape squared (the
    components' amplitudes are independent of each other).
    """
    p = next(i for i, v in enumerate(visits) if v.primary)
    g = course_matrix(course, visits, sessions)[:, p]
    mean = {a: float(sum(c.mean[a] * x for c, x in zip(course, g, strict=True)))
            for a in arms}
    sd = {a: math.sqrt(sum((c.sd[a] * x) ** 2 for c, x in zip(course, g, strict=True)))
          for a in arms}
    return PerArm(mean), PerArm(sd)


def read_course(where: str, d: Any, arms: Sequence[str], per_arm) -> tuple:
    """Read ``[[WHERE.course]]``: a list of component tables (or one table)."""
    if isinstance(d, Mapping):
        d = [d]
    if not isinstance(d, list) or not d:
        raise TypeError(f"{where}.course must be one or more [[{where}.course]] "
                        f"tables; got {d!r}")
    out = []
    for i, c in enumerate(d):
        w = f"{where}.course[{i}]"
        if not isinstance(c, Mapping):
            raise TypeError(f"{w} must be a table; got {c!r}")
        unknown = sorted(set(c) - _KEYS)
        if unknown:
            raise ValueError(f"unknown key {w}.{unknown[0]}; valid keys here: "
                             f"{', '.join(sorted(_KEYS))}")
        for key in ("shape", "mean", "sd"):
            if key not in c:
                raise ValueError(f"missing key {w}.{key}")
        try:
            out.append(CourseComponent(
                shape=c["shape"], mean=per_arm(f"{w}.mean", c["mean"], arms),
                sd=per_arm(f"{w}.sd", c["sd"], arms), start=c.get("start"),
                ed50=c.get("ed50"), half_life_hours=c.get("half_life_hours"),
                profile=c.get("profile")))
        except (TypeError, ValueError) as e:
            raise type(e)(f"{w}: {e}") from None
    return tuple(out)


def apply_courses(design) -> tuple:
    """Check a design's courses and return its ROIs with their changes derived.

    Each ROI (or ROI or voxel measure) with a course gets the ``change_mean``
    and ``change_sd`` of :func:`primary_change`; the others are returned as they
    are; the design's voxels are replaced in place. Called by
    :class:`~dtitool.design.StudyDesign` on construction.
    """
    import dataclasses

    sessions = tuple(float(check_range(f"treatment.session_hours[{i}]", h, 0.0))
                     for i, h in enumerate(design.sessions))
    object.__setattr__(design, "sessions", sessions)
    check_doses(design.visits, sessions)
    courses = design.courses
    if not isinstance(courses, Mapping):
        raise TypeError("courses must be a mapping {(roi, measure): components}; "
                        f"got {type(courses).__name__}")
    owners = {r.name: ("rois", ["md", *(m.name for m in r.measures)])
              for r in design.rois}
    owners.update({v.name: ("voxels", [m.name for m in v.measures])
                   for v in design.voxels})
    for key, course in courses.items():
        if not (isinstance(key, tuple) and len(key) == 2):
            raise TypeError(f"courses keys must be (roi, measure) pairs; got {key!r}")
        roi, measure = key
        if roi not in owners:
            raise err("course", "must belong to one of the design's ROIs or "
                      f"voxels ({', '.join(owners)})", roi)
        table, names = owners[roi]
        if measure not in names:
            raise err(f"{table}.{roi} course", "must be of one of its measures "
                      f"({', '.join(names)})", measure)
        if not course or not all(isinstance(c, CourseComponent) for c in course):
            raise TypeError(f"{table}.{roi} course of {measure} must be one or more "
                            "CourseComponents")
        for c in course:
            if set(c.mean.arms) != set(design.arms):
                raise err(f"{table}.{roi} course of {measure}", "must give a mean "
                          f"and sd for each arm ({', '.join(design.arms)})",
                          list(c.mean.arms))

    def derived(owner, m):
        if (owner, m.name) not in courses:
            return m
        mean, sd = primary_change(courses[owner, m.name], design.visits, sessions,
                                  design.arms)
        return dataclasses.replace(m, change_mean=mean, change_sd=sd)

    out = []
    for r in design.rois:
        if (r.name, "md") in courses:
            mean, sd = primary_change(courses[r.name, "md"], design.visits, sessions,
                                      design.arms)
            r = dataclasses.replace(r, change_mean=mean, change_sd=sd)
        if r.measures:
            r = dataclasses.replace(r, measures=tuple(derived(r.name, m)
                                                      for m in r.measures))
        out.append(r)
    object.__setattr__(design, "voxels", tuple(
        dataclasses.replace(v, measures=tuple(derived(v.name, m) for m in v.measures))
        for v in design.voxels))
    object.__setattr__(design, "courses", {k: tuple(v) for k, v in courses.items()})
    return tuple(out)


@dataclass(frozen=True)
class CourseArrays:
    """A design's imaging trajectories as arrays, for the simulator.

    Rows are the imaging rows of the generative model: MD per ROI, then the
    ROIs' other measures (:attr:`StudyDesign.measures` order).

    Attributes
    ----------
    shape : ndarray, shape (arms, rows, visits)
        What multiplies each participant's change (the first component's
        amplitude) at each visit: the course's first shape, or the visits'
        fractions for a row without a course.
    first_mean, first_sd : ndarray, shape (arms, rows)
        The first component's mean and SD of a row with a course (NaN for a row
        without one: its change_mean and change_sd hold).
    extra_row : ndarray of int, shape (extra,)
        The row of each further component.
    extra_mean, extra_sd : ndarray, shape (arms, extra)
    extra_shape : ndarray, shape (extra, visits)
    """

    shape: np.ndarray
    first_mean: np.ndarray
    first_sd: np.ndarray
    extra_row: np.ndarray
    extra_mean: np.ndarray
    extra_sd: np.ndarray
    extra_shape: np.ndarray


def course_arrays(design) -> CourseArrays:
    """Return :class:`CourseArrays` of ``design`` (rows: MD per ROI, then measures)."""
    arms = design.arms
    keys = [(r.name, "md") for r in design.rois] + [
        (m.roi, m.name) for m in design.measures]
    fr = design.visit_fractions()  # (arms, visits)
    nv = len(design.visits)
    shape = np.repeat(fr[:, None, :], len(keys), axis=1)
    first_mean = np.full((len(arms), len(keys)), np.nan)
    first_sd = np.full_like(first_mean, np.nan)
    rows, means, sds, shapes = [], [], [], []
    for j, key in enumerate(keys):
        course = design.courses.get(key)
        if course is None:
            continue
        g = course_matrix(course, design.visits, design.sessions)
        shape[:, j, :] = g[0]
        first_mean[:, j] = [course[0].mean[a] for a in arms]
        first_sd[:, j] = [course[0].sd[a] for a in arms]
        for c, gc in zip(course[1:], g[1:], strict=True):
            rows.append(j)
            means.append([c.mean[a] for a in arms])
            sds.append([c.sd[a] for a in arms])
            shapes.append(gc)
    k = len(rows)
    return CourseArrays(
        shape=shape, first_mean=first_mean, first_sd=first_sd,
        extra_row=np.array(rows, dtype=int),
        extra_mean=np.array(means).T.reshape(len(arms), k),
        extra_sd=np.array(sds).T.reshape(len(arms), k),
        extra_shape=np.array(shapes).reshape(k, nv))
