"""The design specification: typed, validated dataclasses of a two-arm DTI-MD trial.

A :class:`StudyDesign` holds everything the cohort simulator needs: sample size and
randomisation, per-ROI MD distributions and test-retest noise, per-arm true MD
change, the clinical outcome scales, the correlations that tie MD change to
depression change, optional covariates and missing 24 h scans. Reading and
writing designs as TOML, and the presets, are in :mod:`dtitool.design.io`.

Every number is in the units dtitool fixes: MD in mm^2/s, within-subject
coefficient of variation (CV) as a fraction (0.026 = 2.6 %). The model behind the
fields, and the source of every default, is in ``docs/model.md``.

Examples
--------
>>> from dtitool.design import PerArm
>>> PerArm(ketamine=2, saline=1).as_tuple()
(2, 1)
>>> PerArm({"ect": 1.5, "sham": 0.0})["sham"]
0.0
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from dtitool._validation import and_list as _and
from dtitool._validation import check_int as _check_int
from dtitool._validation import check_name as _check_name
from dtitool._validation import check_range as _check_range
from dtitool._validation import check_real as _check_real
from dtitool._validation import err as _err
from dtitool.design.course import apply_courses
from dtitool.design.layout import (
    PerArm,
    RangeSpec,
    TrialNames,
    VisitSpec,
    check_arm_count,
    check_visits,
    visit_fractions,
)
from dtitool.design.layout import check_arms as _check_arms
from dtitool.design.layout import check_positive_definite as _check_positive_definite
from dtitool.design.measures import MeasureSpec
from dtitool.design.voxels import VoxelSpec

__all__ = [
    "CHANGE_MODELS",
    "SCHEMA",
    "CorrelationSpec",
    "CovariateSpec",
    "MissingSpec",
    "OutcomeSpec",
    "PerArm",
    "ROISpec",
    "RangeSpec",
    "StudyDesign",
    "VisitSpec",
]

SCHEMA = 2
"""Version of the design file format this dtitool writes (``schema = 2``).

Version 1 files (written before arms and visits were declared; no ``schema``
key) still load: their arms are ``ketamine`` and ``saline`` (control), their
visits ``baseline`` and ``24h``."""

CHANGE_MODELS = ("logit", "additive")
"""How an outcome's 24 h score follows from its baseline (see :class:`OutcomeSpec`)."""

_MD_RANGE = (1e-4, 5e-3)  # mm^2/s; brain tissue MD lies well inside (CSF ~3e-3)


def _ndtr(x: float) -> float:
    """Return the standard normal CDF (scalar; no scipy, start-up stays light)."""
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


# --------------------------------------------------------------------------- specs


@dataclass(frozen=True, slots=True)
class ROISpec:
    """One region of interest.

    Parameters
    ----------
    name : str
        ROI name, e.g. ``"L_BA10"``.
    md_mean : float
        Population mean of baseline MD, mm^2/s.
    md_sd : float
        Between-subject SD of baseline MD, mm^2/s.
    cv : float
        Test-retest within-subject coefficient of variation of MD (fraction): the
        SD of one scan around the subject's stable MD is ``cv * md_mean``. A CV
        measured over days holds measurement noise *and* day-to-day physiology.
    change_mean : PerArm
        Mean true MD change (24 h minus baseline) per arm, mm^2/s.
    change_sd : PerArm
        SD of the true MD change per arm, mm^2/s: change beyond what the
        test-retest CV already holds (a control arm with no reason to change has
        an SD near 0; see :meth:`StudyDesign.md_summary`).
    measures : tuple of MeasureSpec
        The ROI's other measures (FA, volume, ...; :mod:`dtitool.design.measures`).
    """

    name: str
    md_mean: float
    md_sd: float
    cv: float
    change_mean: PerArm
    change_sd: PerArm
    measures: tuple[MeasureSpec, ...] = ()

    def __post_init__(self):
        where = f"rois.{self.name}"
        _check_name("ROI name", self.name)
        lo, hi = _MD_RANGE
        v = _check_real(f"{where}.md_mean", self.md_mean)
        if not lo <= v <= hi:
            raise _err(
                f"{where}.md_mean",
                f"must be in mm^2/s, between {lo} and {hi} (gray matter is about "
                "0.7e-3 to 1.0e-3)",
                self.md_mean,
            )
        _check_range(f"{where}.md_sd", self.md_sd, 0.0, 0.5 * v)
        _check_range(f"{where}.cv", self.cv, 0.0, 0.5, hi_open=True)
        _check_arms(f"{where}.change_sd", self.change_sd, self.change_mean.arms)
        for arm in self.change_mean:
            m = _check_real(f"{where}.change_mean.{arm}", self.change_mean[arm])
            if abs(m) > 0.5 * v:
                raise _err(
                    f"{where}.change_mean.{arm}",
                    f"must be a change in mm^2/s smaller than half of md_mean ({v})",
                    m,
                )
            _check_range(f"{where}.change_sd.{arm}", self.change_sd[arm], 0.0, 0.5 * v)
        measures = tuple(self.measures)
        for m in measures:
            if not isinstance(m, MeasureSpec) or m.roi != self.name:
                raise TypeError(f"{where}.measures must be MeasureSpecs of ROI "
                                f"{self.name!r}; got {m!r}")
        names = [m.name for m in measures]
        if len(set(names)) != len(names):
            raise ValueError(f"{where}.measures names a measure twice: {names}")
        object.__setattr__(self, "measures", measures)

    @property
    def noise_sd(self) -> float:
        """SD of the measurement error of one scan, mm^2/s."""
        return self.cv * self.md_mean

    def reliability(self, arm: str | None = None) -> float:
        """Reliability of observed MD change in ``arm`` (default: the first arm).

        ``var(true dMD) / (var(true dMD) + 2 var(noise))``: the fraction of observed
        MD-change variance that is true change. Observed correlations with dMD are
        attenuated by its square root.
        """
        vt = self.change_sd[self.change_sd.arms[0] if arm is None else arm] ** 2
        tot = vt + 2 * self.noise_sd**2
        return vt / tot if tot > 0 else float("nan")


@dataclass(frozen=True, slots=True)
class OutcomeSpec:
    """One clinical outcome scale.

    Parameters
    ----------
    name : str
        Column stem, e.g. ``"madrs"`` (tables carry ``madrs_baseline``, ``madrs_24h``).
    scale_min, scale_max : int
        Inclusive range of the integer score.
    baseline_mean, baseline_sd : float
        Mean and SD of one baseline *rating* in the screened population, before
        the inclusion threshold is applied.
    inclusion_min : int
        Lowest observed baseline score admitted to the trial.
    change_mean, change_sd : PerArm
        Mean and SD, among admitted participants, of the 24 h change in *true*
        severity per arm, in score points (negative = improvement). The observed
        change adds rating error and regression to the mean (see Notes);
        :func:`dtitool.simulate.score_summary` reports both.
    reliability : float
        Test-retest reliability of one rating, in (0, 1]: the share of the
        variance of a rating that is stable severity (an intraclass correlation
        of two independent ratings of the same patient).
    change_model : {"logit", "additive"}
        How scores are generated (see Notes). ``"logit"`` (default) keeps every
        score on its scale without piling any up at either end; ``"additive"``
        is the simpler clipped-normal model.
    remission_max : int or None
        A follow-up score at or below this counts as remission in summaries (not
        used by the generative model).
    scale : str
        The rating scale this outcome uses, if it is one of
        :data:`dtitool.design.ratings.RATING_SCALES` (``"HAM-D17"``); its range
        must then be the scale's. ``""``: a scale of the user's own.

    Notes
    -----
    **Logit** (a model on a transformed scale, :mod:`dtitool.design.scales`).
    A latent ``z`` maps to the continuous score ``scale_min + width expit(z) -
    1/2`` (``width = scale_max - scale_min + 1``), which rounds to a valid
    integer score for every ``z``. One rating is latent stable severity plus an
    occasion error, both normal, with variances chosen so that a rating has
    mean ``baseline_mean``, SD ``baseline_sd`` and intraclass correlation
    ``reliability``; the true 24 h severity adds a normal latent change per arm
    whose mean and SD are solved so that the true change *in points* among
    admitted participants has mean ``change_mean`` and SD ``change_sd``
    (:meth:`change_parameters`). Near the floor a latent change is a
    proportional change of the score, so improvement slows as scores approach
    0 and nothing piles up there. The design's correlations
    (``correlations.roi_outcome``, ``outcome_change``) are those of the latent
    change.

    **Additive**: baseline rating normal, 24 h rating = baseline + change (+ the
    rating errors ``e2 - e1`` when ``reliability < 1``), rounded and clipped to
    the scale; a large mean improvement then piles scores up at the floor.

    In both, admission on a high *observed* baseline selects positive occasion
    errors, which do not recur at 24 h: observed scores regress to the mean
    in both arms (:meth:`regression_to_mean`), and adjusting for the baseline
    score removes that bias.
    """

    name: str
    scale_min: int
    scale_max: int
    baseline_mean: float | PerArm
    baseline_sd: float | PerArm
    inclusion_min: int | PerArm
    change_mean: PerArm
    change_sd: PerArm
    reliability: float = 1.0
    change_model: str = "logit"
    remission_max: int | None = None
    scale: str = ""

    def __post_init__(self):
        where = f"outcomes.{self.name}"
        _check_name("outcome name", self.name)
        if self.scale:
            from dtitool.design.ratings import RATING_SCALES

            known = RATING_SCALES.get(self.scale)
            if known is None:
                raise _err(f"{where}.scale", "must be one of "
                           f"{', '.join(RATING_SCALES)} (or empty)", self.scale)
            if (self.scale_min, self.scale_max) != known.range:
                raise _err(f"{where}.scale_min / scale_max", f"must be {known.range} "
                           f"for {self.scale}", (self.scale_min, self.scale_max))
        lo = _check_int(f"{where}.scale_min", self.scale_min)
        hi = _check_int(f"{where}.scale_max", self.scale_max)
        if hi <= lo:
            raise _err(f"{where}.scale_max", f"must be > scale_min ({lo})", hi)
        per_arm = [k for k in ("baseline_mean", "baseline_sd", "inclusion_min")
                   if isinstance(getattr(self, k), PerArm)]
        if per_arm and self.change_model != "additive":
            raise _err(f"{where}.{per_arm[0]}", "may differ between arms only "
                       "with change_model = \"additive\"", getattr(self, per_arm[0]))
        for arm in (self.change_mean.arms if per_arm else (None,)):
            w = "" if arm is None else f".{arm}"
            mean, sd, inc = self.baseline(arm)
            _check_range(f"{where}.baseline_mean{w}", mean, lo, hi)
            _check_range(f"{where}.baseline_sd{w}", sd, 0.0, hi - lo, lo_open=True)
            inc = _check_int(f"{where}.inclusion_min{w}", inc)
            if not lo <= inc <= hi:
                raise _err(f"{where}.inclusion_min{w}", f"must be within [{lo}, "
                           f"{hi}]", inc)
        _check_arms(f"{where}.change_sd", self.change_sd, self.change_mean.arms)
        for arm in self.change_mean:
            _check_range(
                f"{where}.change_mean.{arm}", self.change_mean[arm], lo - hi, hi - lo
            )
            _check_range(
                f"{where}.change_sd.{arm}",
                self.change_sd[arm],
                0.0,
                hi - lo,
                lo_open=True,
            )
        _check_range(f"{where}.reliability", self.reliability, 0.0, 1.0, lo_open=True)
        if self.change_model not in CHANGE_MODELS:
            raise _err(f"{where}.change_model", f"must be one of {CHANGE_MODELS}",
                       self.change_model)
        if self.remission_max is not None:
            r = _check_int(f"{where}.remission_max", self.remission_max)
            if not lo <= r <= hi:
                raise _err(f"{where}.remission_max", f"must be within [{lo}, {hi}]",
                           r)
        if self.change_model == "logit":
            try:
                self.latent_scale()
            except ValueError as e:
                raise ValueError(f"{where}.baseline_mean / baseline_sd: {e}") from None
            for arm in self.change_mean:
                self.change_parameters(arm)  # raises on an impossible mean / SD

    # -- the logit model -------------------------------------------------------
    def latent_scale(self):
        """Return the logit model's latent parameters (a ``LogitScale``).

        Solved once per distinct outcome and cached.
        """
        from dtitool.design.scales import logit_scale

        return logit_scale(self.scale_min, self.scale_max, float(self.baseline_mean),
                           float(self.baseline_sd), float(self.reliability),
                           self.inclusion_min)

    def baseline(self, arm: str | None = None) -> tuple[float, float, int]:
        """``(baseline_mean, baseline_sd, inclusion_min)`` of ``arm``.

        Each may be one value or, for an ``"additive"`` outcome, a PerArm (a
        healthy comparison group rated on the patients' scale); ``arm`` None
        takes the first arm's.
        """
        arm = self.change_mean.arms[0] if arm is None else arm
        return tuple(v[arm] if isinstance(v, PerArm) else v for v in (
            self.baseline_mean, self.baseline_sd, self.inclusion_min))

    def regression_to_mean(self, arm: str | None = None) -> float:
        """Return the expected change of an untreated admitted participant (points).

        ``E[true baseline - observed baseline | admitted]``: negative when
        admission is on high ratings, zero when ``reliability`` is 1. For
        ``"additive"`` it is ``-(1 - reliability) E[B - baseline_mean |
        admitted]`` (truncated normal); for ``"logit"`` a quadrature
        (:func:`dtitool.design.scales.regression_to_mean`).
        """
        if self.reliability >= 1:
            return 0.0
        if self.change_model == "logit":
            from dtitool.design.scales import regression_to_mean

            return regression_to_mean(self.latent_scale())
        mean, sd, inc = self.baseline(arm)
        a = (inc - 0.5 - mean) / sd
        b = (self.scale_max + 0.5 - mean) / sd
        pdf = lambda x: math.exp(-x * x / 2) / math.sqrt(2 * math.pi)  # noqa: E731
        excess = sd * (pdf(a) - pdf(b)) / (_ndtr(b) - _ndtr(a))
        return -(1 - self.reliability) * excess

    def change_parameters(self, arm: str) -> tuple[float, float]:
        """Mean and SD of ``arm``'s change on the generative scale.

        For ``"additive"`` these are ``change_mean`` and ``change_sd``; for
        ``"logit"`` the mean and SD of the normal latent change that give the
        true change in points of admitted participants the mean ``change_mean``
        and SD ``change_sd`` (:func:`dtitool.design.scales.logit_change`).

        Raises
        ------
        ValueError
            When no latent change has that mean and SD (the message names the key
            and the attainable bound).
        """
        c, d = float(self.change_mean[arm]), float(self.change_sd[arm])
        if self.change_model == "additive":
            return c, d
        from dtitool.design.scales import logit_change

        try:
            mu, sigma = logit_change(self.latent_scale(), c, d)
        except ValueError as e:
            raise ValueError(f"outcomes.{self.name}.change_mean / change_sd."
                             f"{arm}: {e}") from None
        return float(mu), float(sigma)


@dataclass(frozen=True, slots=True)
class CorrelationSpec:
    """Correlations of the generative model.

    Parameters
    ----------
    roi_baseline : float
        Correlation of baseline MD between any two ROIs (compound symmetry).
    roi_change : tuple of tuple of float
        ROI x ROI correlation matrix of true MD change (same in both arms).
    outcome_baseline : float
        Correlation of the two outcomes' baseline scores (Gaussian copula).
    outcome_change : tuple of tuple of float
        Outcome x outcome correlation matrix of score change.
    roi_outcome : dict
        ``{arm: ((corr(roi_0, out_0), corr(roi_0, out_1)), ...)}``: per arm the
        correlation of each ROI's *true* MD change with each outcome's change, as
        an n_roi x n_outcome nested tuple.
    """

    roi_baseline: float
    roi_change: tuple[tuple[float, ...], ...]
    outcome_baseline: float
    outcome_change: tuple[tuple[float, ...], ...]
    roi_outcome: Mapping[str, tuple[tuple[float, ...], ...]]

    def __post_init__(self):
        _check_range(
            "correlations.roi_baseline",
            self.roi_baseline,
            -1,
            1,
            lo_open=True,
            hi_open=True,
        )
        _check_range(
            "correlations.outcome_baseline",
            self.outcome_baseline,
            -1,
            1,
            lo_open=True,
            hi_open=True,
        )
        for name in ("roi_change", "outcome_change"):
            m = np.asarray(getattr(self, name), dtype=float)
            if m.size == 0:  # no ROIs: an MRS-only design
                m = m.reshape(0, 0)
            where = f"correlations.{name}"
            if m.ndim != 2 or m.shape[0] != m.shape[1]:
                raise _err(where, "must be a square matrix", getattr(self, name))
            if not np.allclose(np.diag(m), 1.0):
                raise _err(where, "must have ones on the diagonal", np.diag(m).tolist())
            if not np.allclose(m, m.T):
                raise _err(where, "must be symmetric", m.tolist())
            off = m[~np.eye(len(m), dtype=bool)]
            if np.any(np.abs(off) >= 1):
                raise _err(where, "off-diagonal entries must be in (-1, 1)", m.tolist())
        if not isinstance(self.roi_outcome, Mapping) or not self.roi_outcome:
            raise _err("correlations.roi_outcome", "must be a table per arm",
                       self.roi_outcome)
        for arm in self.roi_outcome:
            c = np.asarray(self.roi_outcome[arm], dtype=float)
            if np.any(~np.isfinite(c)) or np.any(np.abs(c) >= 1):
                raise _err(
                    f"correlations.roi_outcome.{arm}",
                    "entries must be in (-1, 1)",
                    c.tolist(),
                )

    def roi_outcome_array(self, arm: str) -> np.ndarray:
        """Return the n_roi x n_outcome correlation array of ``arm``."""
        a = np.asarray(self.roi_outcome[arm], dtype=float)
        return a if a.ndim == 2 else a.reshape(0, 0)


@dataclass(frozen=True, slots=True)
class CovariateSpec:
    """Optional covariates recorded in the participants table.

    Parameters
    ----------
    age_mean, age_sd : float
        Mean and SD of age in years (truncated normal on ``[age_min, age_max]``).
    age_min, age_max : int
        Inclusion range of age.
    female : float
        Proportion of female participants.
    """

    age_mean: float = 40.0
    age_sd: float = 12.0
    age_min: int = 18
    age_max: int = 65
    female: float = 0.6

    def __post_init__(self):
        lo = _check_int("covariates.age_min", self.age_min, 0)
        hi = _check_int("covariates.age_max", self.age_max, lo + 1)
        _check_range("covariates.age_mean", self.age_mean, lo, hi)
        _check_range("covariates.age_sd", self.age_sd, 0, None, lo_open=True)
        _check_range("covariates.female", self.female, 0, 1)


@dataclass(frozen=True, slots=True)
class MissingSpec:
    """Missing 24 h scans (and, optionally, the 24 h ratings with them).

    Parameters
    ----------
    mechanism : {"none", "mcar", "mnar"}
        ``"mcar"``: each subject's 24 h scan is missing with probability ``rate``.
        ``"mnar"``: missing not at random, tied to the outcome:
        ``logit P(missing) = logit(rate) + strength * z`` where ``z`` is the
        subject's standardised change in ``outcome`` within its arm (positive =
        less improvement than the arm's mean), so non-responders miss more scans.
    rate : float
        Missing probability (for MNAR: of a subject with the arm's mean change).
    outcome : str
        Outcome the MNAR mechanism depends on (``""``: the design's first).
    strength : float
        Log-odds per SD of the outcome change (MNAR only).
    scores : bool
        False (default): only the 24 h scan is missing, the 24 h ratings are
        observed. True: the 24 h ratings are missing with the scan (a missed
        24 h visit, the usual dropout). Complete-case analyses drop the same
        subjects either way; multiple imputation does not: with the ratings
        observed, an MNAR scan loss depends on observed data.
    """

    mechanism: str = "none"
    rate: float = 0.0
    outcome: str = ""
    strength: float = 1.0
    scores: bool = False

    def __post_init__(self):
        if self.mechanism not in ("none", "mcar", "mnar"):
            raise _err(
                "missing.mechanism",
                "must be one of 'none', 'mcar', 'mnar'",
                self.mechanism,
            )
        _check_range("missing.rate", self.rate, 0.0, 1.0, hi_open=True)
        _check_real("missing.strength", self.strength)
        if not isinstance(self.scores, bool | np.bool_):
            raise TypeError(f"missing.scores must be true or false; got "
                            f"{type(self.scores).__name__} {self.scores!r}")
        if self.mechanism != "none" and self.rate == 0:
            raise _err(
                "missing.rate",
                f"must be > 0 when mechanism is {self.mechanism!r}",
                self.rate,
            )


@dataclass(frozen=True, slots=True)
class StudyDesign:
    """A randomised DTI-MD trial: its arms, visits, ROIs and outcomes, all by name.

    Parameters
    ----------
    name : str
        Short name of the design (a preset name for presets).
    n : int
        Number of randomised participants.
    allocation : PerArm
        Allocation ratio as integers, e.g. ``PerArm(ketamine=2, saline=1)``; its
        keys are the design's arms.
    block_size : int
        Size of the permuted randomisation blocks; a multiple of the ratio's sum.
    rois : tuple of ROISpec
        Regions of interest, in table order.
    outcomes : tuple of OutcomeSpec
        Clinical outcomes.
    correlations : CorrelationSpec
        Correlations of the generative model.
    covariates : CovariateSpec or None
        Covariates to simulate (age, sex), or None.
    missing : MissingSpec
        Missing 24 h scans.
    description : str
        Free text.
    reference : str
        Citation of the study the design follows.
    sources : dict
        ``{"rois.L_BA10.md_mean": "Helenius et al. 2002, AJNR", ...}``: where a value
        comes from, or ``"estimate: ..."``.
    ranges : RangeSpec or None
        The ranges the parameters are meant to stay inside (calibration keeps to
        them; :meth:`range_violations` lists what leaves them).
    control : str
        The reference (control) arm, against which interactions are taken;
        ``""`` (default) is the last arm of ``allocation``.
    visits : tuple of VisitSpec
        The visits, baseline first; one is the primary endpoint (default the
        last). Required: a design states its own schedule.
    sessions : tuple of float
        Hours of the treatment sessions since baseline (ECT), if any.
    courses : dict
        ``{(roi, measure): (CourseComponent, ...)}``: time courses
        (:mod:`dtitool.design.course`; ``measure`` ``"md"`` for MD). A course's
        ROI or measure takes its ``change_mean``/``change_sd`` from it.
    voxels : tuple of VoxelSpec
        MRS voxels (:mod:`dtitool.design.voxels`): measures without MD. A design
        needs at least one ROI or voxel.

    Notes
    -----
    Construction validates each field and checks that, in each arm, the joint
    correlation matrix of (true dMD per ROI, score change per outcome) is
    positive definite; if not, the error names the correlations that conflict.
    """

    name: str
    n: int
    allocation: PerArm
    block_size: int
    rois: tuple[ROISpec, ...]
    outcomes: tuple[OutcomeSpec, ...]
    correlations: CorrelationSpec
    covariates: CovariateSpec | None = None
    missing: MissingSpec = field(default_factory=MissingSpec)
    description: str = ""
    reference: str = ""
    sources: Mapping[str, str] = field(default_factory=dict)
    ranges: RangeSpec | None = None
    control: str = ""
    visits: tuple[VisitSpec, ...] = ()
    sessions: tuple[float, ...] = ()
    courses: Mapping[tuple[str, str], tuple] = field(default_factory=dict)
    voxels: tuple[VoxelSpec, ...] = ()

    def __post_init__(self):
        _check_int("trial.n", self.n, 1)
        self._check_arms_and_visits()
        self._check_voxels()
        object.__setattr__(self, "rois", apply_courses(self))
        a = tuple(
            _check_int(f"trial.allocation.{g}", self.allocation[g], 1)
            for g in self.arms
        )
        bs = _check_int("trial.block_size", self.block_size, 1)
        if bs % sum(a):
            raise _err(
                "trial.block_size",
                f"must be a multiple of the allocation "
                f"ratio's sum ({':'.join(map(str, a))} sums to {sum(a)}) so that every "
                "block keeps the ratio",
                bs,
            )
        sizes = self.arm_sizes()
        if min(sizes) < 2:
            raise ValueError(
                f"trial.n = {self.n} is too small for the arms: allocation "
                f"{':'.join(map(str, a))} gives "
                + _and([f"{k} {g}" for k, g in zip(sizes, self.arms, strict=True)])
                + "; each arm needs at least 2 participants"
            )
        if not self.rois and not self.voxels:
            raise ValueError("rois: a design needs at least one ROI (or an MRS "
                             "voxel, [voxels.NAME])")
        if not self.outcomes:
            raise ValueError("outcomes: a design needs at least one outcome")
        for what, items in (("rois", self.rois), ("outcomes", self.outcomes)):
            names = [x.name for x in items]
            dup = sorted({x for x in names if names.count(x) > 1})
            if dup:
                raise ValueError(f"{what}: duplicated names {dup}")
        c = self.correlations
        nr, no = len(self.rois), len(self.outcomes)
        if nr and np.shape(c.roi_change) != (nr, nr):
            raise _err(
                "correlations.roi_change",
                f"must be {nr} x {nr} (one row per ROI)",
                np.shape(c.roi_change),
            )
        if np.shape(c.outcome_change) != (no, no):
            raise _err(
                "correlations.outcome_change",
                f"must be {no} x {no}",
                np.shape(c.outcome_change),
            )
        for x in self.rois:
            _check_arms(f"rois.{x.name}.change_mean", x.change_mean, self.arms)
        for m in self.measures:
            m.check_against(self.arms, self.outcome_names)
        for x in self.outcomes:
            _check_arms(f"outcomes.{x.name}.change_mean", x.change_mean, self.arms)
        lacking = [g for g in self.arms if g not in c.roi_outcome]
        extra = sorted(set(c.roi_outcome) - set(self.arms))
        if lacking or extra:
            raise _err("correlations.roi_outcome", "must have a table for each arm "
                       f"({', '.join(self.arms)})", sorted(c.roi_outcome))
        if self.ranges is not None and self.ranges.change_sd_fraction:
            extra = sorted(set(self.ranges.change_sd_fraction) - set(self.arms))
            if extra:
                raise _err("ranges.change_sd_fraction", "must name arms of the "
                           f"design ({', '.join(self.arms)})", extra[0])
        for arm in self.arms:
            if nr and np.shape(c.roi_outcome[arm]) != (nr, no):
                raise _err(
                    f"correlations.roi_outcome.{arm}",
                    f"must be {nr} x {no} (ROIs x outcomes)",
                    np.shape(c.roi_outcome[arm]),
                )
        if self.missing.outcome == "":
            object.__setattr__(self, "missing", dataclasses.replace(
                self.missing, outcome=self.outcome_names[0]))
        if self.missing.mechanism == "mnar" and self.missing.outcome not in (
            self.outcome_names
        ):
            raise _err(
                "missing.outcome",
                f"must be one of {self.outcome_names}",
                self.missing.outcome,
            )
        for arm in self.arms:
            _check_positive_definite(self.change_correlation(arm), self._labels(), arm)
        if nr > 1:
            cs = np.full((nr, nr), c.roi_baseline)
            np.fill_diagonal(cs, 1.0)
            if np.linalg.eigvalsh(cs)[0] <= 0:
                raise _err(
                    "correlations.roi_baseline",
                    f"is not a valid common "
                    f"correlation for {nr} ROIs (must be > {-1 / (nr - 1):.3g})",
                    c.roi_baseline,
                )

    def _check_voxels(self) -> None:
        voxels = tuple(self.voxels)
        if not all(isinstance(v, VoxelSpec) for v in voxels):
            raise TypeError("voxels must be VoxelSpecs; got "
                            f"{[type(v).__name__ for v in voxels]}")
        rois = {r.name for r in self.rois}
        clash = sorted(rois & {v.name for v in voxels})
        if clash:
            raise ValueError(f"voxels.{clash[0]}: a voxel and an ROI share the name "
                             f"{clash[0]!r}; name them apart")
        names = [v.name for v in voxels]
        dup = sorted({x for x in names if names.count(x) > 1})
        if dup:
            raise ValueError(f"voxels: duplicated names {dup}")
        object.__setattr__(self, "voxels", voxels)

    def _check_arms_and_visits(self) -> None:
        if not isinstance(self.allocation, PerArm):
            raise TypeError("trial.allocation must be a PerArm; got "
                            f"{type(self.allocation).__name__}")
        given = self.allocation.arms
        check_arm_count(given)
        control = self.control or given[-1]
        if control not in given:
            raise _err("trial.control", f"must be one of the arms "
                       f"({', '.join(given)})", control)
        object.__setattr__(self, "control", control)
        visits = check_visits(self.visits)
        object.__setattr__(self, "visits", visits)
        visit_fractions(visits, self.arms)  # checks the fractions' arms

    # -- derived quantities ---------------------------------------------------
    @property
    def arms(self) -> tuple[str, ...]:
        """Arm names: the treatment arm(s) first, the control arm last."""
        given = self.allocation.arms
        return (*(g for g in given if g != self.control), self.control)

    @property
    def names(self) -> TrialNames:
        """The design's arms, control arm and visits (what tables are keyed on)."""
        return TrialNames(arms=self.arms, control=self.control,
                          visits=self.visit_names, primary=self.primary_visit)

    @property
    def treatment(self) -> str:
        """The (one) treatment arm of a two-arm design."""
        return self.arms[0]

    @property
    def visit_names(self) -> tuple[str, ...]:
        """Visit names in time order, baseline first."""
        return tuple(v.name for v in self.visits)

    @property
    def baseline_visit(self) -> str:
        """Name of the baseline visit."""
        return self.visits[0].name

    @property
    def primary_visit(self) -> str:
        """Name of the primary endpoint's visit."""
        return next(v.name for v in self.visits if v.primary)

    def visit_fractions(self) -> np.ndarray:
        """Share of the primary visit's change reached by each visit, (arms, visits).

        Rows in :attr:`arms` order (see :func:`dtitool.design.layout.visit_fractions`).
        """
        return visit_fractions(self.visits, self.arms)

    @property
    def roi_names(self) -> tuple[str, ...]:
        """ROI names in order."""
        return tuple(r.name for r in self.rois)

    @property
    def outcome_names(self) -> tuple[str, ...]:
        """Outcome names in order."""
        return tuple(o.name for o in self.outcomes)

    def _labels(self) -> list[str]:
        return [f"dMD[{r}]" for r in self.roi_names] + [
            f"d{o}" for o in self.outcome_names
        ] + [f"d{m.name}[{m.roi}]" for m in self.measures]

    @property
    def measures(self) -> tuple[MeasureSpec, ...]:
        """Every ROI's measures besides MD, in ROI order, then the voxels'."""
        return (*(m for r in self.rois for m in r.measures),
                *(m for v in self.voxels for m in v.measures))

    @property
    def voxel_names(self) -> tuple[str, ...]:
        """MRS voxel names in order."""
        return tuple(v.name for v in self.voxels)

    @property
    def model_rows(self) -> tuple[tuple[str, str], ...]:
        """``(roi, measure)`` of every imaging model row.

        MD per ROI, then the other measures (:attr:`measures`), in the order the
        power engine fits them.
        """
        return (*((r, "md") for r in self.roi_names),
                *((m.roi, m.name) for m in self.measures))

    @property
    def measure_names(self) -> tuple[str, ...]:
        """``md`` and the other measures' names, in order of first appearance."""
        return ("md", *dict.fromkeys(m.name for m in self.measures))

    def arm_sizes(self) -> tuple[int, ...]:
        """Exact arm sizes of the randomisation, in :attr:`arms` order.

        The ratio is kept exactly where ``n`` allows; otherwise the largest
        remainder goes to the arm with the larger fractional share (65/33 for
        n = 98 at 2:1).
        """
        a = np.array(self.allocation.as_tuple(self.arms), dtype=float)
        share = self.n * a / a.sum()
        base = np.floor(share).astype(int)
        rem = self.n - base.sum()
        order = np.argsort(-(share - base), kind="stable")
        base[order[:rem]] += 1
        return tuple(int(b) for b in base)

    def change_correlation(self, arm: str) -> np.ndarray:
        """Return the joint correlation of (true dMD per ROI, score change per outcome).

        Rows and columns: ROIs then outcomes, in design order, for ``arm``,
        then the other measures (:attr:`measures`), if any.
        """
        c = self.correlations
        nr = len(self.rois)
        no = len(self.outcomes)
        extra = self.measures
        size = nr + no + len(extra)
        m = np.eye(size)
        m[:nr, :nr] = c.roi_change
        m[nr:nr + no, nr:nr + no] = c.outcome_change
        if nr:
            m[:nr, nr:nr + no] = c.roi_outcome_array(arm)
            m[nr:nr + no, :nr] = m[:nr, nr:nr + no].T
        for i, x in enumerate(extra, start=nr + no):
            if not x.voxel:  # a voxel has no MD
                j = self.roi_names.index(x.roi)
                m[i, j] = m[j, i] = x.md_correlation
            for k, o in enumerate(self.outcome_names):
                m[i, nr + k] = m[nr + k, i] = x.outcome_r(arm, o)
        return m

    def reliability(self, arm: str | None = None) -> dict[str, float]:
        """Reliability of observed dMD per ROI in ``arm`` (default: treatment).

        See :meth:`ROISpec.reliability`.
        """
        arm = self.treatment if arm is None else arm
        return {r.name: r.reliability(arm) for r in self.rois}

    def r_squared(self, arm: str | None = None) -> dict[str, float]:
        """Share of each outcome's change explained by the true dMD of all ROIs.

        ``c' R^-1 c`` with ``c`` the ROI-outcome correlations of ``arm`` and ``R``
        the ROI-ROI correlation of true MD change: the population R^2 of a
        regression of the outcome change on the true MD change of every ROI.
        With the measurement noise of observed dMD the R^2 a study can see is
        smaller.
        """
        c = self.correlations
        r = np.asarray(c.roi_change, dtype=float)
        m = c.roi_outcome_array(self.treatment if arm is None else arm)
        sol = np.linalg.solve(r, m)
        return {o: float(m[:, k] @ sol[:, k])
                for k, o in enumerate(self.outcome_names)}

    def md_summary(self):
        """Return the MD model per ROI and arm, and what it implies, as a tidy table.

        Returns
        -------
        pandas.DataFrame
            One row per ROI and arm: ``roi, arm, md_mean, md_sd, cv, noise_sd,
            change_mean, change_sd`` (mm^2/s; ``cv`` a fraction), then
            ``change_sd_pct_md`` (true change SD as % of ``md_mean``),
            ``session_correlation`` (correlation of observed baseline and 24 h
            MD across subjects) and ``dmd_reliability`` (share of observed dMD
            variance that is true change).

        Notes
        -----
        With between-subject SD ``b``, scan noise SD ``e`` (``cv x md_mean``) and
        true change SD ``c`` (independent of baseline MD)::

            session correlation = b^2 / sqrt((b^2 + e^2) (b^2 + c^2 + e^2))
            dMD reliability     = c^2 / (c^2 + 2 e^2)

        A test-retest CV measured over days already holds day-to-day physiology,
        so a control arm with no reason to change has ``c`` near 0: its
        session correlation is the test-retest correlation and its dMD is
        mostly noise.
        """
        import pandas as pd

        rows = []
        for r in self.rois:
            b2, e2 = r.md_sd**2, r.noise_sd**2
            for arm in self.arms:
                c2 = r.change_sd[arm] ** 2
                den = math.sqrt((b2 + e2) * (b2 + c2 + e2))
                rows.append({
                    "roi": r.name, "arm": arm, "md_mean": r.md_mean,
                    "md_sd": r.md_sd, "cv": r.cv, "noise_sd": r.noise_sd,
                    "change_mean": r.change_mean[arm],
                    "change_sd": r.change_sd[arm],
                    "change_sd_pct_md": 100 * r.change_sd[arm] / r.md_mean,
                    "session_correlation": b2 / den if den > 0 else float("nan"),
                    "dmd_reliability": r.reliability(arm),
                })
        return pd.DataFrame(rows)

    def range_violations(self) -> list[str]:
        """Parameters outside the design's :attr:`ranges`, one sentence each."""
        rg = self.ranges
        if rg is None:
            return []
        out = []

        def outside(value, bounds):
            # relative slack: 2.55e-5 / 0.85e-3 is 3 % of MD, not 3.0000000001 %
            tol = 1e-9 * max(abs(value), 1e-12)
            return bounds is not None and not (
                bounds[0] - tol <= value <= bounds[1] + tol)

        for r in self.rois:
            if outside(r.cv, rg.cv):
                out.append(f"rois.{r.name}.cv = {r.cv:g} is outside its range "
                           f"[{rg.cv[0]:g}, {rg.cv[1]:g}]")
            for arm in self.arms:
                frac = r.change_sd[arm] / r.md_mean
                bounds = rg.change_sd(arm)
                if outside(frac, bounds):
                    out.append(
                        f"rois.{r.name}.change_sd.{arm} is {100 * frac:.2g} % of MD, "
                        f"outside its range {100 * bounds[0]:g}-{100 * bounds[1]:g} %")
        for arm in self.arms:
            m = self.correlations.roi_outcome_array(arm)
            for i, roi in enumerate(self.roi_names):
                for k, o in enumerate(self.outcome_names):
                    if outside(abs(m[i, k]), rg.roi_outcome):
                        out.append(
                            f"correlations.roi_outcome.{arm}.{o}.{roi} = "
                            f"{m[i, k]:g} is outside |r| <= {rg.roi_outcome[1]:g}")
            for o, r2 in self.r_squared(arm).items():
                if outside(r2, rg.r_squared):
                    out.append(f"R^2 of {o} change on the true dMD of all ROIs "
                               f"({arm} arm) = {r2:.2f} is outside "
                               f"[{rg.r_squared[0]:g}, {rg.r_squared[1]:g}]")
        return out

    def replace(self, **changes) -> StudyDesign:
        """Return a copy with fields replaced (validated again)."""
        return dataclasses.replace(self, **changes)

    def with_n(self, n: int) -> StudyDesign:
        """Return a copy with sample size ``n``."""
        return dataclasses.replace(self, n=n)
