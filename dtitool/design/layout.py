"""The names of a trial: its arms (with the control arm) and its visits.

A design declares them (:class:`~dtitool.design.StudyDesign` ``allocation``,
``control`` and ``visits``); tables carry them (the ``group`` and ``session``
columns, ``<outcome>_<visit>`` score columns) with a ``visits.tsv`` stating the
schedule. Everything downstream takes the names from here, never from
constants: :class:`TrialNames` is what a table reader or a model needs to know.

Examples
--------
>>> from dtitool.design.layout import PerArm, TrialNames
>>> names = TrialNames(arms=("high", "placebo"), control="placebo",
...                    visits=("baseline", "week1"))
>>> names.treatment, names.baseline, names.primary
('high', 'baseline', 'week1')
>>> names.score_column("hamd", "week1")
'hamd_week1'
>>> names.terms
('interaction', 'slope_high', 'slope_placebo', 'slope_pooled')
>>> three = TrialNames(arms=("high", "low", "placebo"), control="placebo",
...                    visits=("baseline", "day1", "week1"))
>>> three.interactions, three.terms[-2:]
(('interaction_high', 'interaction_low'), ('slope_pooled', 'omnibus'))
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from dtitool._validation import check_name, check_range, err

__all__ = ["PerArm", "RangeSpec", "TrialNames", "VisitSpec", "check_arm_count",
           "check_arms",
           "check_positive_definite", "check_visits", "visit_fractions"]


class PerArm(Mapping):
    """A value given separately for each arm, by arm name.

    Parameters
    ----------
    values : mapping, optional
        ``{arm: value}`` in the design's arm order.
    **arms
        The same as keywords: ``PerArm(ketamine=2, saline=1)``.

    Notes
    -----
    A read-only mapping: ``per_arm[arm]``, iteration over arm names, ``len``.
    Two are equal when they hold the same values for the same arms.
    """

    __slots__ = ("_values",)

    def __init__(self, values: Mapping[str, Any] | None = None, /, **arms: Any):
        items = dict(values or {})
        dup = sorted(set(items) & set(arms))
        if dup:
            raise ValueError(f"arm {dup[0]!r} given twice")
        items.update(arms)
        if not items:
            raise ValueError("a per-arm value needs at least one arm")
        for arm in items:
            check_name("arm name", arm)
        object.__setattr__(self, "_values", tuple(items.items()))

    def __setattr__(self, name, value):
        raise AttributeError("PerArm is read-only")

    def __getitem__(self, arm: str) -> Any:
        for k, v in self._values:
            if k == arm:
                return v
        raise KeyError(f"unknown arm {arm!r}; expected one of {self.arms}")

    def __iter__(self) -> Iterator[str]:
        return (k for k, _ in self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __eq__(self, other) -> bool:
        if not isinstance(other, PerArm):
            return NotImplemented
        return dict(self._values) == dict(other._values)

    def __hash__(self) -> int:
        return hash(frozenset(self._values))

    def __repr__(self) -> str:
        return "PerArm(" + ", ".join(f"{k}={v!r}" for k, v in self._values) + ")"

    def __reduce__(self):
        return (PerArm, (dict(self._values),))

    @property
    def arms(self) -> tuple[str, ...]:
        """Arm names, in the order given."""
        return tuple(k for k, _ in self._values)

    def replace(self, **arms: Any) -> PerArm:
        """Return a copy with the values of the named arms replaced.

        Raises
        ------
        KeyError
            If an arm is not one of this value's arms.
        """
        unknown = sorted(set(arms) - set(self.arms))
        if unknown:
            raise KeyError(f"unknown arm {unknown[0]!r}; expected one of {self.arms}")
        return PerArm({k: arms.get(k, v) for k, v in self._values})

    def as_tuple(self, arms: Sequence[str] | None = None) -> tuple:
        """Return the values in the order of ``arms`` (default: as given)."""
        return tuple(self[a] for a in (self.arms if arms is None else arms))


@dataclass(frozen=True, slots=True)
class VisitSpec:
    """One scheduled visit (a scan and the ratings with it).

    Parameters
    ----------
    name : str
        Visit label, letters and digits only (it names table columns such as
        ``madrs_24h`` and BIDS sessions such as ``ses-24h``).
    hours : float
        Time since the baseline visit, in hours (the baseline visit is 0).
    dose : float or None
        Treatment received by then (say, the number of ECT sessions), if the
        design states one.
    primary : bool
        Whether this visit is the primary endpoint.
    fraction : float, mapping or None
        Share of the primary visit's change (MD and scores, each subject's own)
        reached by this visit: one number for every arm, or ``{arm: number}``.
        None: ``dose / primary dose`` when both visits state a dose, else 1 (the
        change is reached by the first follow-up visit and held). The primary
        visit's is 1 and the baseline's 0 (:meth:`StudyDesign.visit_fractions`).
    """

    name: str
    hours: float = 0.0
    dose: float | None = None
    primary: bool = False
    fraction: Any = None

    def __post_init__(self):
        if not (isinstance(self.name, str) and self.name.isascii()
                and self.name.isalnum()):
            raise err("visit name", "must be letters and digits only (it names "
                       "BIDS sessions, ses-LABEL)", self.name)
        check_range(f"visits.{self.name}.hours", self.hours, 0.0)
        if self.dose is not None:
            check_range(f"visits.{self.name}.dose", self.dose, 0.0)
        if not isinstance(self.primary, bool | np.bool_):
            raise TypeError(f"visits.{self.name}.primary must be true or false; got "
                            f"{self.primary!r}")
        f = self.fraction
        if f is not None and not isinstance(f, Mapping):
            check_range(f"visits.{self.name}.fraction", f, -5.0, 5.0)
        elif f is not None:
            if not f:
                raise err(f"visits.{self.name}.fraction", "must name arms", dict(f))
            for arm, v in f.items():
                check_name("arm name", arm)
                check_range(f"visits.{self.name}.fraction.{arm}", v, -5.0, 5.0)
            object.__setattr__(self, "fraction", PerArm(dict(f)))


def check_arms(where: str, value: PerArm, arms: Sequence[str]) -> None:
    """``value`` must give a value for exactly the design's ``arms``."""
    if not isinstance(value, PerArm):
        raise TypeError(f"{where} must be a PerArm; got {type(value).__name__}")
    if set(value.arms) != set(arms):
        extra = sorted(set(value.arms) - set(arms))
        lacking = [a for a in arms if a not in value.arms]
        what = (f"names arm {extra[0]!r}, which is not one of the design's arms"
                if extra else f"has no value for arm {lacking[0]!r}")
        raise ValueError(f"{where} {what}; the design's arms (trial.allocation) "
                         f"are {', '.join(arms)}")


def check_arm_count(arms: Sequence[str]) -> None:
    """Refuse a design without arms, in one sentence.

    One arm is a single-arm course (every participant treated): its models
    have the arm's dMD slope only, with nothing to compare it with.
    """
    if len(arms) < 1:
        raise ValueError("trial.allocation names no arm; a trial has one arm (a "
                         "single-arm course) or more")


def check_visits(visits: Sequence[VisitSpec]) -> tuple[VisitSpec, ...]:
    """Check a schedule; return it with its primary visit marked.

    The first visit is the baseline (0 hours), times increase, names are
    unique, at most one visit is primary (default: the last) and it is not the
    baseline. dtitool simulates and analyses a baseline and one follow-up so
    far, so a schedule has two visits.
    """
    visits = tuple(visits)
    if not all(isinstance(v, VisitSpec) for v in visits):
        raise TypeError("visits must be VisitSpec values")
    if not visits:
        raise ValueError("visits: the design lists no visits; give its schedule "
                         "([[visits]]: a baseline and a follow-up, with name and "
                         "hours or days)")
    names = [v.name for v in visits]
    dup = sorted({x for x in names if names.count(x) > 1})
    if dup:
        raise ValueError(f"visits: visit {dup[0]!r} is listed twice")
    if len(visits) < 2:
        raise ValueError(
            f"visits: the schedule lists {len(visits)} visit ({', '.join(names)}); "
            "a trial needs a baseline and at least one follow-up visit"
        )
    if visits[0].hours != 0:
        raise err(f"visits.{names[0]}.hours", "must be 0: the first visit is the "
                  "baseline", visits[0].hours)
    hours = [v.hours for v in visits]
    if any(b <= a for a, b in itertools.pairwise(hours)):
        raise err("visits", "must be in time order (hours increasing)", hours)
    primary = [v.name for v in visits if v.primary]
    if len(primary) > 1:
        raise err("visits", "must have one primary visit", primary)
    if primary == [names[0]]:
        raise err("visits", "primary must be a follow-up visit, not the baseline",
                  primary[0])
    if not primary:
        last = visits[-1]
        visits = (*visits[:-1],
                  VisitSpec(last.name, last.hours, last.dose, True, last.fraction))
    return visits


@dataclass(frozen=True, slots=True)
class TrialNames:
    """The names tables and models are keyed on: arms, control arm and visits.

    Parameters
    ----------
    arms : tuple of str
        Arm names as the ``group`` column holds them; reordered so that the
        control arm comes last.
    control : str
        The reference arm, against which interactions are taken.
    visits : tuple of str
        Visit names as the ``session`` column holds them, baseline first.
    primary : str
        The primary endpoint's visit (default: the last).
    """

    arms: tuple[str, ...]
    control: str
    visits: tuple[str, ...]
    primary: str = ""

    def __post_init__(self):
        arms = tuple(self.arms)
        for a in arms:
            check_name("arm name", a)
        if len(set(arms)) != len(arms):
            raise ValueError(f"arms: an arm is named twice in {list(arms)}")
        if self.control not in arms:
            raise err("control", f"must be one of the arms ({', '.join(arms)})",
                      self.control)
        object.__setattr__(self, "arms", (*(a for a in arms if a != self.control),
                                          self.control))
        visits = tuple(self.visits)
        if len(visits) < 2 or len(set(visits)) != len(visits):
            raise err("visits", "must be two or more distinct visit names",
                      list(visits))
        object.__setattr__(self, "visits", visits)
        primary = self.primary or visits[-1]
        if primary not in visits[1:]:
            raise err("primary", f"must be a follow-up visit ({', '.join(visits[1:])})",
                      primary)
        object.__setattr__(self, "primary", primary)

    @property
    def treatment(self) -> str:
        """The first treatment arm (the only one in a two-arm trial)."""
        return self.arms[0]

    @property
    def baseline(self) -> str:
        """The baseline visit."""
        return self.visits[0]

    @property
    def terms(self) -> tuple[str, ...]:
        """Model terms reported per ROI and outcome, in table order.

        With two arms: ``interaction`` (the treatment arm's dMD slope minus the
        control arm's), ``slope_<arm>`` for each arm (treatment first), and
        ``slope_pooled`` (the dMD slope of the additive model). With three or
        more: ``interaction_<arm>`` for each arm but the control (its slope
        minus the control arm's), the slopes, ``slope_pooled``, and
        ``omnibus``, the F test that every arm has the control arm's slope.
        """
        slopes = (*(f"slope_{a}" for a in self.arms), "slope_pooled")
        if len(self.arms) == 1:  # a single-arm course: the slope is the pooled one
            return slopes
        if len(self.arms) == 2:
            return ("interaction", *slopes)
        return (*self.interactions, *slopes, "omnibus")

    @property
    def key_terms(self) -> tuple[str, ...]:
        """The terms summaries show first.

        The interactions, and the omnibus test when there are three or more
        arms; a single-arm course's dMD slope.
        """
        if len(self.arms) == 1:
            return (f"slope_{self.arms[0]}",)
        return self.interactions + (("omnibus",) if len(self.arms) > 2 else ())

    @property
    def interactions(self) -> tuple[str, ...]:
        """The interaction terms.

        ``interaction``, or ``interaction_<arm>`` per arm but the control when
        there are three or more arms.
        """
        if len(self.arms) <= 2:
            return ("interaction",)[: len(self.arms) - 1]
        return tuple(f"interaction_{a}" for a in self.arms[:-1])

    def score_column(self, outcome: str, visit: str) -> str:
        """Name of the participants column of ``outcome`` at ``visit``."""
        return f"{outcome}_{visit}"

    def outcomes_in(self, columns) -> tuple[str, ...]:
        """Outcomes with a score column for the baseline and the primary visit.

        An outcome is the stem of a ``<outcome>_<baseline>`` column that has its
        ``<outcome>_<primary>`` partner, in column order.
        """
        cols = [str(c) for c in columns]
        suffix = f"_{self.baseline}"
        out = []
        for c in cols:
            if c.endswith(suffix) and len(c) > len(suffix):
                stem = c[: -len(suffix)]
                if self.score_column(stem, self.primary) in cols and stem not in out:
                    out.append(stem)
        return tuple(out)


def visit_fractions(visits: Sequence[VisitSpec], arms: Sequence[str]) -> np.ndarray:
    """Share of the primary visit's change reached by each visit, per arm.

    Parameters
    ----------
    visits : sequence of VisitSpec
        The checked schedule (:func:`check_visits`), baseline first.
    arms : sequence of str
        The design's arms, in the order of the rows returned.

    Returns
    -------
    ndarray, shape (arms, visits)
        0 at the baseline, 1 at the primary visit; another visit's
        :attr:`VisitSpec.fraction` (its arm's, if it names arms), else
        ``dose / primary dose`` when both visits state a positive dose, else 1.

    Raises
    ------
    ValueError
        If the primary visit states a fraction other than 1, or a visit's
        fractions name an arm the design does not have or leave one out.
    """
    primary = next(v for v in visits if v.primary)
    out = np.ones((len(arms), len(visits)))
    out[:, 0] = 0.0
    for i, v in enumerate(visits[1:], start=1):
        f = v.fraction
        if isinstance(f, PerArm):
            check_arms(f"visits.{v.name}.fraction", f, arms)
            out[:, i] = [float(f[a]) for a in arms]
        elif f is not None:
            out[:, i] = float(f)
        elif (v.dose is not None and primary.dose is not None and primary.dose > 0):
            out[:, i] = v.dose / primary.dose
        if v.primary and not np.all(out[:, i] == 1.0):
            raise err(f"visits.{v.name}.fraction", "must be 1 (or left out): the "
                      "primary visit's change is what the ROIs' and outcomes' "
                      "change_mean and change_sd state", f)
    if visits[0].fraction is not None:
        raise err(f"visits.{visits[0].name}.fraction", "must be left out: nothing "
                  "has changed at the baseline", visits[0].fraction)
    return out


def check_positive_definite(m: np.ndarray, labels: Sequence[str], arm: str) -> None:
    """Raise a ValueError naming the smallest set of conflicting correlations.

    ``m`` is a correlation matrix with row ``labels``, of arm ``arm``.
    """
    if np.linalg.eigvalsh(m)[0] > 1e-10:
        return
    k = len(m)
    for size in (3, 4):
        for idx in itertools.combinations(range(k), size):
            sub = m[np.ix_(idx, idx)]
            if np.linalg.eigvalsh(sub)[0] <= 1e-10:
                pairs = ", ".join(
                    f"corr({labels[i]}, {labels[j]}) = {m[i, j]:.3g}"
                    for i, j in itertools.combinations(idx, 2)
                )
                raise ValueError(
                    f"correlations in arm {arm!r} are not jointly possible (not "
                    f"positive definite): {pairs} conflict; weaken one of them"
                )
    raise ValueError(
        f"correlations in arm {arm!r} are not jointly possible (not positive "
        f"definite; smallest eigenvalue {np.linalg.eigvalsh(m)[0]:.3g}): the "
        f"correlations of {', '.join(labels)} with each other taken together "
        "conflict; weaken the ROI-outcome correlations or raise the ROI-ROI "
        "correlation of change"
    )


def _check_interval(where: str, value: Any, lo: float, hi: float) -> tuple:
    if (not isinstance(value, list | tuple) or len(value) != 2):
        raise TypeError(f"{where} must be a pair [low, high]; got {value!r}")
    a = check_range(f"{where}[0]", value[0], lo, hi)
    b = check_range(f"{where}[1]", value[1], lo, hi)
    if a > b:
        raise err(where, "must have low <= high", list(value))
    return (a, b)


@dataclass(frozen=True, slots=True)
class RangeSpec:
    """The ranges the design's parameters are meant to stay inside.

    Each field is a pair ``(low, high)`` or None (no range stated). They bound
    what calibration may choose and what a reader should accept; a parameter
    outside its range is reported by :meth:`StudyDesign.range_violations`, and
    ``dtitool reproduce`` says which parameter a reported p-value would need to
    move outside its range, and by how much.

    Parameters
    ----------
    cv : (float, float) or None
        Test-retest within-subject CV of ROI MD (fraction).
    change_sd_fraction : dict or None
        ``{arm: (low, high)}``: SD of the true 24 h MD change as a fraction of the
        ROI's ``md_mean``.
    roi_outcome : (float, float) or None
        Absolute correlation of a ROI's true MD change with an outcome's change.
    r_squared : (float, float) or None
        Share of an outcome's change explained by the true MD change of all ROIs
        together (:meth:`StudyDesign.r_squared`), per arm.
    """

    cv: tuple[float, float] | None = None
    change_sd_fraction: Mapping[str, tuple[float, float]] | None = None
    roi_outcome: tuple[float, float] | None = None
    r_squared: tuple[float, float] | None = None

    def __post_init__(self):
        # stored as tuples of floats, so that equal ranges compare equal however
        # they were written (TOML arrays are lists)
        for name, hi in (("cv", 0.5), ("roi_outcome", 1.0), ("r_squared", 1.0)):
            v = getattr(self, name)
            if v is not None:
                object.__setattr__(self, name,
                                   _check_interval(f"ranges.{name}", v, 0.0, hi))
        if self.change_sd_fraction is not None:
            if not isinstance(self.change_sd_fraction, Mapping):
                raise err("ranges.change_sd_fraction",
                           "must be a table with a range per arm",
                           self.change_sd_fraction)
            object.__setattr__(self, "change_sd_fraction", {
                arm: _check_interval(f"ranges.change_sd_fraction.{arm}", v, 0.0, 0.5)
                for arm, v in self.change_sd_fraction.items()})

    def change_sd(self, arm: str) -> tuple[float, float] | None:
        """Range of the true change SD of ``arm`` (fraction of MD), or None."""
        if self.change_sd_fraction is None:
            return None
        v = self.change_sd_fraction.get(arm)
        return None if v is None else (float(v[0]), float(v[1]))
