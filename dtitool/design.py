"""Study design: a typed, validated specification of a two-arm DTI-MD trial.

A :class:`StudyDesign` holds everything the cohort simulator needs: sample size and
randomisation, per-ROI MD distributions and scan-rescan noise, per-arm true MD
change, the clinical outcome scales, the correlations that tie MD change to
depression change, optional covariates and missing 24 h scans. Designs are read
from and written to TOML; presets ship with the package.

Every number is in the units dtitool fixes: MD in mm^2/s, within-subject
coefficient of variation (CV) as a fraction (0.026 = 2.6 %).

Examples
--------
>>> from dtitool.design import load_preset
>>> design = load_preset("ketamine-rct")
>>> design.n, design.arm_sizes()
(98, (65, 33))
>>> design.roi_names[0]
'L_BA10'
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from dtitool._constants import GROUPS, TREATMENT

__all__ = [
    "CorrelationSpec",
    "CovariateSpec",
    "MissingSpec",
    "OutcomeSpec",
    "PerArm",
    "ROISpec",
    "StudyDesign",
    "available_presets",
    "design_from_dict",
    "design_to_dict",
    "load_preset",
    "read_design",
    "write_design",
]

_MD_RANGE = (1e-4, 5e-3)  # mm^2/s; brain tissue MD lies well inside (CSF ~3e-3)


def _err(where: str, rule: str, value: Any) -> ValueError:
    return ValueError(f"{where} {rule}; got {value!r}")


def _check_real(where: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.floating):
        raise TypeError(
            f"{where} must be a number; got {type(value).__name__} {value!r}"
        )
    if not math.isfinite(value):
        raise _err(where, "must be finite", value)
    return float(value)


def _check_range(where, value, lo=None, hi=None, *, lo_open=False, hi_open=False):
    v = _check_real(where, value)
    bad_lo = lo is not None and (v <= lo if lo_open else v < lo)
    bad_hi = hi is not None and (v >= hi if hi_open else v > hi)
    if bad_lo or bad_hi:
        lo_s = "" if lo is None else f"{'>' if lo_open else '>='} {lo}"
        hi_s = "" if hi is None else f"{'<' if hi_open else '<='} {hi}"
        rule = " and ".join(s for s in (lo_s, hi_s) if s)
        raise _err(where, f"must be {rule}", value)
    return v


def _check_int(where: str, value: Any, lo: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(
            f"{where} must be an integer; got {type(value).__name__} {value!r}"
        )
    if lo is not None and value < lo:
        raise _err(where, f"must be >= {lo}", value)
    return int(value)


# --------------------------------------------------------------------------- specs


@dataclass(frozen=True, slots=True)
class PerArm:
    """A value given separately for each arm.

    Parameters
    ----------
    ketamine : float
        Value in the treatment arm.
    saline : float
        Value in the control arm.
    """

    ketamine: float
    saline: float

    def __getitem__(self, arm: str) -> float:
        if arm not in GROUPS:
            raise KeyError(f"unknown arm {arm!r}; expected one of {GROUPS}")
        return getattr(self, arm)

    def as_tuple(self) -> tuple[float, float]:
        """Return ``(ketamine, saline)``."""
        return (self.ketamine, self.saline)


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
        Scan-rescan within-subject coefficient of variation of MD (fraction). The
        measurement noise SD of one scan is ``cv * md_mean``.
    change_mean : PerArm
        Mean true MD change (24 h minus baseline) per arm, mm^2/s.
    change_sd : PerArm
        SD of the true MD change per arm, mm^2/s.
    """

    name: str
    md_mean: float
    md_sd: float
    cv: float
    change_mean: PerArm
    change_sd: PerArm

    def __post_init__(self):
        where = f"rois.{self.name}"
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise _err("ROI name", "must be a non-empty identifier", self.name)
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
        for arm in GROUPS:
            m = _check_real(f"{where}.change_mean.{arm}", self.change_mean[arm])
            if abs(m) > 0.5 * v:
                raise _err(
                    f"{where}.change_mean.{arm}",
                    f"must be a change in mm^2/s smaller than half of md_mean ({v})",
                    m,
                )
            _check_range(f"{where}.change_sd.{arm}", self.change_sd[arm], 0.0, 0.5 * v)

    @property
    def noise_sd(self) -> float:
        """SD of the measurement error of one scan, mm^2/s."""
        return self.cv * self.md_mean

    def reliability(self, arm: str = TREATMENT) -> float:
        """Reliability of observed MD change in ``arm``.

        ``var(true dMD) / (var(true dMD) + 2 var(noise))``: the fraction of observed
        MD-change variance that is true change. Observed correlations with dMD are
        attenuated by its square root.
        """
        vt = self.change_sd[arm] ** 2
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
        Mean and SD of the baseline score before the inclusion threshold is applied.
    inclusion_min : int
        Lowest baseline score admitted to the trial (baseline is truncated below).
    change_mean, change_sd : PerArm
        Mean and SD of the 24 h change in true severity per arm (negative =
        improvement); with ``reliability`` 1 this is the observed score change.
    reliability : float
        Test-retest reliability of the scale, in (0, 1]: the share of baseline
        score variance that is stable severity. Below 1 each rating adds
        occasion error, so trials that admit only high baseline scores see
        regression to the mean (see Notes).

    Notes
    -----
    With reliability ``rho < 1`` the observed baseline ``B = S + e1`` (stable
    severity plus occasion error, ``var(e1) = (1 - rho) baseline_sd^2``) and the
    24 h score is ``S + change + e2`` with an independent ``e2`` of the same
    variance. Given ``B``, ``E[e1 | B] = (1 - rho) (B - baseline_mean)``: subjects
    admitted for a high baseline score improve on average by that much without
    any treatment (regression to the mean), and adjusting for the baseline score
    removes it.
    """

    name: str
    scale_min: int
    scale_max: int
    baseline_mean: float
    baseline_sd: float
    inclusion_min: int
    change_mean: PerArm
    change_sd: PerArm
    reliability: float = 1.0

    def __post_init__(self):
        where = f"outcomes.{self.name}"
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise _err("outcome name", "must be a non-empty identifier", self.name)
        lo = _check_int(f"{where}.scale_min", self.scale_min)
        hi = _check_int(f"{where}.scale_max", self.scale_max)
        if hi <= lo:
            raise _err(f"{where}.scale_max", f"must be > scale_min ({lo})", hi)
        _check_range(f"{where}.baseline_mean", self.baseline_mean, lo, hi)
        _check_range(
            f"{where}.baseline_sd", self.baseline_sd, 0.0, hi - lo, lo_open=True
        )
        inc = _check_int(f"{where}.inclusion_min", self.inclusion_min)
        if not lo <= inc <= hi:
            raise _err(f"{where}.inclusion_min", f"must be within [{lo}, {hi}]", inc)
        for arm in GROUPS:
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
        if set(self.roi_outcome) != set(GROUPS):
            raise _err(
                "correlations.roi_outcome",
                f"must have arms {GROUPS}",
                sorted(self.roi_outcome),
            )
        for arm in GROUPS:
            c = np.asarray(self.roi_outcome[arm], dtype=float)
            if np.any(~np.isfinite(c)) or np.any(np.abs(c) >= 1):
                raise _err(
                    f"correlations.roi_outcome.{arm}",
                    "entries must be in (-1, 1)",
                    c.tolist(),
                )

    def roi_outcome_array(self, arm: str) -> np.ndarray:
        """Return the n_roi x n_outcome correlation array of ``arm``."""
        return np.asarray(self.roi_outcome[arm], dtype=float)


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
    """Missing 24 h scans.

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
        Outcome the MNAR mechanism depends on.
    strength : float
        Log-odds per SD of the outcome change (MNAR only).
    """

    mechanism: str = "none"
    rate: float = 0.0
    outcome: str = "madrs"
    strength: float = 1.0

    def __post_init__(self):
        if self.mechanism not in ("none", "mcar", "mnar"):
            raise _err(
                "missing.mechanism",
                "must be one of 'none', 'mcar', 'mnar'",
                self.mechanism,
            )
        _check_range("missing.rate", self.rate, 0.0, 1.0, hi_open=True)
        _check_real("missing.strength", self.strength)
        if self.mechanism != "none" and self.rate == 0:
            raise _err(
                "missing.rate",
                f"must be > 0 when mechanism is {self.mechanism!r}",
                self.rate,
            )


@dataclass(frozen=True, slots=True)
class StudyDesign:
    """A two-arm randomised DTI-MD trial.

    Parameters
    ----------
    name : str
        Short name of the design (a preset name for presets).
    n : int
        Number of randomised participants.
    allocation : PerArm
        Allocation ratio as integers, e.g. ``PerArm(ketamine=2, saline=1)``.
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

    def __post_init__(self):
        _check_int("trial.n", self.n, 1)
        a = tuple(
            _check_int(f"trial.allocation.{g}", self.allocation[g], 1) for g in GROUPS
        )
        bs = _check_int("trial.block_size", self.block_size, 1)
        if bs % sum(a):
            raise _err(
                "trial.block_size",
                f"must be a multiple of the allocation "
                f"ratio's sum ({a[0]}:{a[1]} sums to {sum(a)}) so that every "
                "block keeps the ratio",
                bs,
            )
        sizes = self.arm_sizes()
        if min(sizes) < 2:
            raise ValueError(
                f"trial.n = {self.n} is too small for the arms: allocation "
                f"{a[0]}:{a[1]} gives {sizes[0]} ketamine and {sizes[1]} saline; "
                "each arm needs at least 2 participants"
            )
        if not self.rois:
            raise ValueError("rois: a design needs at least one ROI")
        if not self.outcomes:
            raise ValueError("outcomes: a design needs at least one outcome")
        for what, items in (("rois", self.rois), ("outcomes", self.outcomes)):
            names = [x.name for x in items]
            dup = sorted({x for x in names if names.count(x) > 1})
            if dup:
                raise ValueError(f"{what}: duplicated names {dup}")
        c = self.correlations
        nr, no = len(self.rois), len(self.outcomes)
        if np.shape(c.roi_change) != (nr, nr):
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
        for arm in GROUPS:
            if np.shape(c.roi_outcome[arm]) != (nr, no):
                raise _err(
                    f"correlations.roi_outcome.{arm}",
                    f"must be {nr} x {no} (ROIs x outcomes)",
                    np.shape(c.roi_outcome[arm]),
                )
        if self.missing.mechanism == "mnar" and self.missing.outcome not in (
            self.outcome_names
        ):
            raise _err(
                "missing.outcome",
                f"must be one of {self.outcome_names}",
                self.missing.outcome,
            )
        for arm in GROUPS:
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

    # -- derived quantities ---------------------------------------------------
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
        ]

    def arm_sizes(self) -> tuple[int, int]:
        """Exact arm sizes ``(n_ketamine, n_saline)`` of the randomisation.

        The ratio is kept exactly where ``n`` allows; otherwise the largest
        remainder goes to the arm with the larger fractional share (65/33 for
        n = 98 at 2:1).
        """
        a = np.array(self.allocation.as_tuple(), dtype=float)
        share = self.n * a / a.sum()
        base = np.floor(share).astype(int)
        rem = self.n - base.sum()
        order = np.argsort(-(share - base), kind="stable")
        base[order[:rem]] += 1
        return int(base[0]), int(base[1])

    def change_correlation(self, arm: str) -> np.ndarray:
        """Return the joint correlation of (true dMD per ROI, score change per outcome).

        Rows and columns: ROIs then outcomes, in design order, for ``arm``.
        """
        c = self.correlations
        nr = len(self.rois)
        no = len(self.outcomes)
        m = np.empty((nr + no, nr + no))
        m[:nr, :nr] = c.roi_change
        m[nr:, nr:] = c.outcome_change
        m[:nr, nr:] = c.roi_outcome_array(arm)
        m[nr:, :nr] = m[:nr, nr:].T
        return m

    def reliability(self, arm: str = TREATMENT) -> dict[str, float]:
        """Reliability of observed dMD per ROI in ``arm`` (see ROISpec.reliability)."""
        return {r.name: r.reliability(arm) for r in self.rois}

    def replace(self, **changes) -> StudyDesign:
        """Return a copy with fields replaced (validated again)."""
        return dataclasses.replace(self, **changes)

    def with_n(self, n: int) -> StudyDesign:
        """Return a copy with sample size ``n``."""
        return dataclasses.replace(self, n=n)


def _check_positive_definite(m: np.ndarray, labels: Sequence[str], arm: str) -> None:
    """Raise a ValueError naming the smallest set of conflicting correlations."""
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


# --------------------------------------------------------------------------- TOML

_TOP_KEYS = {
    "name",
    "description",
    "reference",
    "base",
    "trial",
    "rois",
    "outcomes",
    "correlations",
    "covariates",
    "missing",
    "sources",
    "run",
}
_TRIAL_KEYS = {"n", "allocation", "block_size"}
_ROI_KEYS = {"md_mean", "md_sd", "cv", "change_mean", "change_sd"}
_OUTCOME_KEYS = {
    "scale_min",
    "scale_max",
    "baseline_mean",
    "baseline_sd",
    "inclusion_min",
    "change_mean",
    "change_sd",
    "reliability",
}
_CORR_KEYS = {
    "roi_baseline",
    "roi_change",
    "outcome_baseline",
    "outcome_change",
    "roi_outcome",
}
_COV_KEYS = {f.name for f in dataclasses.fields(CovariateSpec)}
_MISSING_KEYS = {f.name for f in dataclasses.fields(MissingSpec)}


def _check_keys(
    where: str, d: Any, allowed: set[str], required: set[str] = frozenset()
):
    if not isinstance(d, Mapping):
        raise TypeError(f"{where} must be a table; got {type(d).__name__} {d!r}")
    unknown = sorted(set(d) - allowed)
    if unknown:
        raise ValueError(
            f"unknown key {where + '.' if where else ''}{unknown[0]}; valid keys here: "
            f"{', '.join(sorted(allowed))}"
        )
    missing = sorted(required - set(d))
    if missing:
        raise ValueError(f"missing key {where + '.' if where else ''}{missing[0]}")


def _per_arm(where: str, d: Any, cast=float) -> PerArm:
    if isinstance(d, int | float) and not isinstance(d, bool):
        return PerArm(ketamine=cast(d), saline=cast(d))
    _check_keys(where, d, set(GROUPS), set(GROUPS))
    return PerArm(ketamine=d["ketamine"], saline=d["saline"])


def _matrix(where: str, value: Any, names: Sequence[str]) -> tuple:
    k = len(names)
    if isinstance(value, int | float) and not isinstance(value, bool):
        m = np.full((k, k), float(value))
        np.fill_diagonal(m, 1.0)
        return tuple(map(tuple, m.tolist()))
    if isinstance(value, list) and all(isinstance(r, list) for r in value):
        try:
            m = np.asarray(value, dtype=float)
        except (TypeError, ValueError):
            raise TypeError(
                f"{where} must be a number or a matrix of numbers"
            ) from None
        if m.shape != (k, k):
            raise ValueError(
                f"{where} must be a single correlation or a {k} x {k} "
                f"matrix ordered as {list(names)}; got shape {m.shape}"
            )
        return tuple(map(tuple, m.tolist()))
    raise TypeError(f"{where} must be a number or a list of lists; got {value!r}")


def design_from_dict(d: Mapping[str, Any]) -> StudyDesign:
    """Build a :class:`StudyDesign` from the nested dict of a design TOML file.

    A ``base = "PRESET"`` key starts from that preset and overrides only the keys
    given (tables are merged key by key, except ``correlations.roi_outcome``, which
    replaces the base's pattern whole). A ``[run]`` table is ignored here.

    Raises
    ------
    ValueError, TypeError
        On an unknown or missing key, a wrongly typed value or an invalid design;
        the message names the key.
    """
    _check_keys("", d, _TOP_KEYS)
    if "base" in d:
        base = d["base"]
        if not isinstance(base, str):
            raise TypeError(f"base must be a preset name; got {base!r}")
        merged = _merge(
            design_to_dict(load_preset(base)),
            {k: v for k, v in d.items() if k != "base"},
        )
        return design_from_dict(merged)
    _check_keys("", d, _TOP_KEYS, {"name", "trial", "rois", "outcomes", "correlations"})
    tr = d["trial"]
    _check_keys("trial", tr, _TRIAL_KEYS, _TRIAL_KEYS)
    allocation = _per_arm("trial.allocation", tr["allocation"], cast=int)

    rois_d = d["rois"]
    if not isinstance(rois_d, Mapping) or not rois_d:
        raise ValueError("rois must be a non-empty table of [rois.NAME] tables")
    rois = []
    for name, r in rois_d.items():
        w = f"rois.{name}"
        _check_keys(w, r, _ROI_KEYS, _ROI_KEYS)
        rois.append(
            ROISpec(
                name=name,
                md_mean=r["md_mean"],
                md_sd=r["md_sd"],
                cv=r["cv"],
                change_mean=_per_arm(f"{w}.change_mean", r["change_mean"]),
                change_sd=_per_arm(f"{w}.change_sd", r["change_sd"]),
            )
        )
    out_d = d["outcomes"]
    if not isinstance(out_d, Mapping) or not out_d:
        raise ValueError("outcomes must be a non-empty table of [outcomes.NAME] tables")
    outcomes = []
    for name, o in out_d.items():
        w = f"outcomes.{name}"
        _check_keys(w, o, _OUTCOME_KEYS, _OUTCOME_KEYS - {"reliability"})
        outcomes.append(
            OutcomeSpec(
                name=name,
                scale_min=o["scale_min"],
                scale_max=o["scale_max"],
                baseline_mean=o["baseline_mean"],
                baseline_sd=o["baseline_sd"],
                inclusion_min=o["inclusion_min"],
                change_mean=_per_arm(f"{w}.change_mean", o["change_mean"]),
                change_sd=_per_arm(f"{w}.change_sd", o["change_sd"]),
                reliability=o.get("reliability", 1.0),
            )
        )
    roi_names = [r.name for r in rois]
    out_names = [o.name for o in outcomes]

    c = d["correlations"]
    _check_keys(
        "correlations",
        c,
        _CORR_KEYS,
        {"roi_baseline", "outcome_baseline", "roi_change", "outcome_change"},
    )
    ro = c.get("roi_outcome", {})
    _check_keys("correlations.roi_outcome", ro, set(GROUPS))
    roi_outcome = {}
    for arm in GROUPS:
        per_out = ro.get(arm, {})
        _check_keys(f"correlations.roi_outcome.{arm}", per_out, set(out_names))
        m = np.zeros((len(roi_names), len(out_names)))
        for j, oname in enumerate(out_names):
            per_roi = per_out.get(oname, {})
            w = f"correlations.roi_outcome.{arm}.{oname}"
            _check_keys(w, per_roi, set(roi_names))
            for rname, v in per_roi.items():
                m[roi_names.index(rname), j] = _check_real(f"{w}.{rname}", v)
        roi_outcome[arm] = tuple(map(tuple, m.tolist()))
    correlations = CorrelationSpec(
        roi_baseline=c["roi_baseline"],
        roi_change=_matrix("correlations.roi_change", c["roi_change"], roi_names),
        outcome_baseline=c["outcome_baseline"],
        outcome_change=_matrix(
            "correlations.outcome_change", c["outcome_change"], out_names
        ),
        roi_outcome=roi_outcome,
    )
    covariates = None
    if "covariates" in d:
        _check_keys("covariates", d["covariates"], _COV_KEYS)
        covariates = CovariateSpec(**d["covariates"])
    missing = MissingSpec()
    if "missing" in d:
        _check_keys("missing", d["missing"], _MISSING_KEYS)
        missing = MissingSpec(**d["missing"])
    sources = d.get("sources", {})
    if not isinstance(sources, Mapping) or not all(
        isinstance(v, str) for v in sources.values()
    ):
        raise TypeError("sources must be a table of strings")
    for key in ("name", "description", "reference"):
        if key in d and not isinstance(d[key], str):
            raise TypeError(f"{key} must be a string; got {d[key]!r}")
    return StudyDesign(
        name=d["name"],
        n=tr["n"],
        allocation=allocation,
        block_size=tr["block_size"],
        rois=tuple(rois),
        outcomes=tuple(outcomes),
        correlations=correlations,
        covariates=covariates,
        missing=missing,
        description=d.get("description", ""),
        reference=d.get("reference", ""),
        sources=dict(sources),
    )


_REPLACED_WHOLE = ("roi_outcome",)
# An override of these replaces the base's table instead of merging into it: a
# user who writes ROI-outcome correlations writes the whole pattern (unlisted = 0).


def _merge(base: dict, over: Mapping) -> dict:
    out = dict(base)
    for k, v in over.items():
        if (isinstance(v, Mapping) and isinstance(out.get(k), Mapping)
                and k not in _REPLACED_WHOLE):
            out[k] = _merge(dict(out[k]), v)
        else:
            out[k] = v
    return out


def design_to_dict(design: StudyDesign) -> dict[str, Any]:
    """Return the nested dict that :func:`design_from_dict` reads back as ``design``."""
    arm = lambda p: {g: p[g] for g in GROUPS}  # noqa: E731
    d: dict[str, Any] = {"name": design.name}
    if design.description:
        d["description"] = design.description
    if design.reference:
        d["reference"] = design.reference
    d["trial"] = {
        "n": design.n,
        "allocation": arm(design.allocation),
        "block_size": design.block_size,
    }
    d["rois"] = {
        r.name: {
            "md_mean": r.md_mean,
            "md_sd": r.md_sd,
            "cv": r.cv,
            "change_mean": arm(r.change_mean),
            "change_sd": arm(r.change_sd),
        }
        for r in design.rois
    }
    d["outcomes"] = {
        o.name: {
            "scale_min": o.scale_min,
            "scale_max": o.scale_max,
            "baseline_mean": o.baseline_mean,
            "baseline_sd": o.baseline_sd,
            "inclusion_min": o.inclusion_min,
            "change_mean": arm(o.change_mean),
            "change_sd": arm(o.change_sd),
            "reliability": o.reliability,
        }
        for o in design.outcomes
    }
    c = design.correlations
    d["correlations"] = {
        "roi_baseline": c.roi_baseline,
        "roi_change": [list(r) for r in c.roi_change],
        "outcome_baseline": c.outcome_baseline,
        "outcome_change": [list(r) for r in c.outcome_change],
        "roi_outcome": {
            g: {
                o: {
                    r: c.roi_outcome_array(g)[i, j]
                    for i, r in enumerate(design.roi_names)
                    if c.roi_outcome_array(g)[i, j] != 0
                }
                for j, o in enumerate(design.outcome_names)
            }
            for g in GROUPS
        },
    }
    if design.covariates is not None:
        d["covariates"] = dataclasses.asdict(design.covariates)
    d["missing"] = dataclasses.asdict(design.missing)
    if design.sources:
        d["sources"] = dict(design.sources)
    return d


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | np.integer):
        return str(int(v))
    if isinstance(v, float | np.floating):
        return repr(float(v))
    if isinstance(v, str):
        esc = v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'"{esc}"'
    if isinstance(v, list | tuple):
        if v and isinstance(v[0], list | tuple):
            rows = ",\n".join("    " + _toml_value(list(r)) for r in v)
            return "[\n" + rows + ",\n]"
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, Mapping):
        return (
            "{"
            + ", ".join(f"{_toml_key(k)} = {_toml_value(x)}" for k, x in v.items())
            + "}"
        )
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def _toml_key(k: str) -> str:
    return k if k.replace("_", "").replace("-", "").isalnum() else _toml_value(k)


def _emit_table(lines: list[str], path: list[str], d: Mapping) -> None:
    inline_ok = {"change_mean", "change_sd", "allocation"}
    scalars = {
        k: v for k, v in d.items() if not isinstance(v, Mapping) or k in inline_ok
    }
    subtables = {k: v for k, v in d.items() if k not in scalars}
    if path and (scalars or not subtables):
        lines.append("")
        lines.append("[" + ".".join(_toml_key(p) for p in path) + "]")
    for k, v in scalars.items():
        lines.append(f"{_toml_key(k)} = {_toml_value(v)}")
    for k, v in subtables.items():
        _emit_table(lines, [*path, k], v)


def design_to_toml(
    design: StudyDesign, *, run: Mapping[str, Any] | None = None, header: str = ""
) -> str:
    """Serialise ``design`` (and an optional ``[run]`` table) as TOML text."""
    lines: list[str] = [f"# {ln}" if ln else "#" for ln in header.splitlines()]
    d = design_to_dict(design)
    _emit_table(lines, [], d)
    if run:
        _emit_table(lines, ["run"], dict(run))
    return "\n".join(lines).lstrip("\n") + "\n"


def write_design(
    design: StudyDesign, path: str | Path, *, run: Mapping[str, Any] | None = None
) -> None:
    """Write ``design`` to a TOML file (see :func:`read_design`)."""
    Path(path).write_text(design_to_toml(design, run=run), encoding="utf-8")


def read_design(path: str | Path) -> tuple[StudyDesign, dict[str, Any]]:
    """Read a design TOML file.

    Returns
    -------
    design : StudyDesign
    run : dict
        The file's ``[run]`` table (seed, replicates, version of a previous run),
        empty if absent.

    Raises
    ------
    ValueError
        If the file cannot be read or parsed, or the design is invalid.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"cannot read design file {str(path)!r}: {e}") from None
    try:
        d = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"design file {str(path)!r} is not valid TOML: {e}") from None
    run = d.get("run", {})
    try:
        return design_from_dict(d), dict(run)
    except (ValueError, TypeError) as e:
        raise type(e)(f"design file {str(path)!r}: {e}") from None


# --------------------------------------------------------------------------- presets

_PRESET_PACKAGE = "dtitool.presets"


def available_presets() -> tuple[str, ...]:
    """Names of the presets shipped with dtitool."""
    files = resources.files(_PRESET_PACKAGE).iterdir()
    return tuple(sorted(f.name[:-5] for f in files if f.name.endswith(".toml")))


def load_preset(name: str = "ketamine-rct") -> StudyDesign:
    """Load a preset design shipped with dtitool.

    Parameters
    ----------
    name : str
        Preset name; see :func:`available_presets`. ``"ketamine-rct"`` (Kopelman et
        al. 2023) is the default.

    Raises
    ------
    ValueError
        If ``name`` is not a known preset (the message lists them).
    """
    known = available_presets()
    if name not in known:
        raise ValueError(f"unknown preset {name!r}; known presets: {', '.join(known)}")
    text = resources.files(_PRESET_PACKAGE).joinpath(f"{name}.toml").read_text("utf-8")
    d = tomllib.loads(text)
    d.pop("run", None)
    return design_from_dict(d)
