"""Measures of an ROI besides MD: FA, volume, or any named quantity with its unit.

Every ROI of a design has MD (:class:`~dtitool.design.ROISpec`); an ROI may add
other measures, each a :class:`MeasureSpec` in its ``measures``. In a design file::

    [rois.hippocampus.measures.volume]
    mean = 3500.0          # in the measure's unit
    sd = 350.0             # between participants
    cv = 0.01              # test-retest CV: one scan's SD is cv x mean
    change_mean = { ect = 100.0, sham = 0.0 }
    change_sd = { ect = 60.0, sham = 5.0 }
    md_correlation = -0.3  # of its true change with the ROI's true MD change
    outcome_correlation = { ect = { madrs = -0.2 } }

``unit`` and ``scale`` (the change the models' slopes are per, as MD's are per
1e-5 mm^2/s) default from :data:`KNOWN_MEASURES` for ``fa``, ``volume``, ``ad``
and ``rd``; another quantity (a metabolite, ``gaba``) states both. A measure's
true change by the primary visit has the arm's mean and SD, correlates with the
same ROI's MD change (``md_correlation``) and with the outcomes' changes
(``outcome_correlation``, per arm; 0 where not given), and with nothing else; its
baseline is normal with ``mean`` and ``sd``, independent of MD's; every scan adds
noise with SD ``cv x mean``. Its change reaches the other visits as MD's does
(the visits' ``fraction``).

Examples
--------
>>> from dtitool.design import PerArm
>>> from dtitool.design.measures import MeasureSpec
>>> fa = MeasureSpec("fa", roi="thalamus", mean=0.35, sd=0.03, cv=0.02,
...                  change_mean=PerArm(drug=0.005, placebo=0.0),
...                  change_sd=PerArm(drug=0.01, placebo=0.002))
>>> fa.unit, fa.scale, round(fa.noise_sd, 4)
('', 0.01, 0.007)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from dtitool._constants import MRS_UNITS
from dtitool._validation import check_range, check_real, err
from dtitool.design.layout import PerArm

__all__ = ["KNOWN_MEASURES", "MeasureSpec"]

KNOWN_MEASURES = {
    "fa": ("", 0.01, "fractional anisotropy"),
    "ad": ("mm^2/s", 1e-5, "axial diffusivity"),
    "rd": ("mm^2/s", 1e-5, "radial diffusivity"),
    "volume": ("mm^3", 10.0, "volume"),
}
"""``name: (unit, scale, description)`` of measures whose unit and model scale
need not be given."""



def _check_measure_name(name: Any) -> str:
    if not (isinstance(name, str) and name.isascii() and name[:1].isalpha()
            and name.replace("_", "").isalnum() and name == name.lower()):
        raise err("measure name", "must be lower-case letters, digits and '_', "
                  "starting with a letter (it names the table roi_<measure>.tsv "
                  "and its column)", name)
    if name == "md":
        raise err("measure name", "must not be md: MD is every ROI's own "
                  "(md_mean, md_sd, cv, change_mean, change_sd)", name)
    return name


@dataclass(frozen=True, slots=True)
class MeasureSpec:
    """One measure of one ROI besides MD (module docstring).

    Parameters
    ----------
    name : str
        Measure name (``fa``, ``volume``, ``gaba``), lower case.
    roi : str
        The ROI it is measured in.
    mean, sd : float
        Population mean and between-participant SD of the baseline value, in
        ``unit``.
    cv : float
        Test-retest coefficient of variation of one scan (fraction of ``mean``).
    change_mean, change_sd : PerArm
        Mean and SD of the true change by the primary visit, per arm.
    unit : str or None
        The unit (``""`` for a ratio such as FA); None: from
        :data:`KNOWN_MEASURES`.
    scale : float or None
        The change the models' slopes are per (estimates in score points per
        ``scale`` of change); None: from :data:`KNOWN_MEASURES`.
    md_correlation : float
        Correlation of the true change with the same ROI's true MD change (the
        same in every arm).
    outcome_correlation : mapping
        ``{arm: {outcome: r}}``: correlation of the true change with each
        outcome's change, per arm; 0 where not given.
    voxel : bool
        Measured by MRS in a voxel without MD (:class:`dtitool.design.voxels.
        VoxelSpec`): ``unit`` is a unit of MRS quantification
        (:data:`dtitool._constants.MRS_UNITS`), ``md_correlation`` is 0, and
        ``unit = "ratio to tCr"`` reports the ratio to the voxel's ``tcr``
        measure.
    crlb, fit_error : float or None
        A voxel measure's fit quality per spectrum, in %: the Cramer-Rao lower
        bound (LCModel, Osprey) or Gannet's fit error of a spectrum of typical
        quality at the mean concentration (at most one of the two).
    quality_spread : float
        SD of the log noise factor of a spectrum (:mod:`dtitool.design.voxels`).
    """

    name: str
    roi: str
    mean: float
    sd: float
    cv: float
    change_mean: PerArm
    change_sd: PerArm
    unit: str | None = None
    scale: float | None = None
    md_correlation: float = 0.0
    outcome_correlation: Mapping = field(default_factory=dict)
    voxel: bool = False
    crlb: float | None = None
    fit_error: float | None = None
    quality_spread: float = 0.3

    def __post_init__(self):
        _check_measure_name(self.name)
        where = self.where
        known = None if self.voxel else KNOWN_MEASURES.get(self.name)
        if self.unit is None and known is None:
            raise ValueError(f"{where}.unit is missing: {self.name!r} is not one of "
                             f"{', '.join(KNOWN_MEASURES)}, so give its unit "
                             "(\"\" for a ratio)")
        if self.scale is None and known is None:
            raise ValueError(f"{where}.scale is missing: give the change the "
                             "models' slopes are per, in the measure's unit (MD's "
                             "is 1e-5 mm^2/s)")
        unit = known[0] if self.unit is None else self.unit
        if not isinstance(unit, str):
            raise TypeError(f"{where}.unit must be a string; got {unit!r}")
        object.__setattr__(self, "unit", unit)
        scale = known[1] if self.scale is None else self.scale
        object.__setattr__(self, "scale", check_range(f"{where}.scale", scale, 0.0,
                                                      lo_open=True))
        m = check_real(f"{where}.mean", self.mean)
        if m <= 0:
            raise err(f"{where}.mean", "must be positive", self.mean)
        check_range(f"{where}.sd", self.sd, 0.0)
        check_range(f"{where}.cv", self.cv, 0.0, 0.5, hi_open=True)
        check_range(f"{where}.md_correlation", self.md_correlation, -1.0, 1.0,
                    lo_open=True, hi_open=True)
        _check_spectra(self, where)
        for what in ("change_mean", "change_sd"):
            value = getattr(self, what)
            if not isinstance(value, PerArm):
                raise TypeError(f"{where}.{what} must be a PerArm; got "
                                f"{type(value).__name__}")
        for arm in self.change_mean:
            c = check_real(f"{where}.change_mean.{arm}", self.change_mean[arm])
            if not math.isfinite(c):
                raise err(f"{where}.change_mean.{arm}", "must be finite", c)
        for arm in self.change_sd:
            check_range(f"{where}.change_sd.{arm}", self.change_sd[arm], 0.0)
        oc = self.outcome_correlation
        if not isinstance(oc, Mapping):
            raise TypeError(f"{where}.outcome_correlation must be a table "
                            f"{{arm = {{outcome = r}}}}; got {oc!r}")
        clean = {}
        for arm, per in oc.items():
            if not isinstance(per, Mapping):
                raise TypeError(f"{where}.outcome_correlation.{arm} must be a "
                                f"table {{outcome = r}}; got {per!r}")
            clean[arm] = {o: check_range(f"{where}.outcome_correlation.{arm}.{o}",
                                         r, -1.0, 1.0, lo_open=True, hi_open=True)
                          for o, r in per.items()}
        object.__setattr__(self, "outcome_correlation", clean)

    def __hash__(self):
        return hash((self.name, self.roi, self.mean, self.sd, self.cv))

    @property
    def where(self) -> str:
        """The measure's place in a design file, for messages."""
        table = "voxels" if self.voxel else "rois"
        return f"{table}.{self.roi}.measures.{self.name}"

    @property
    def quality(self) -> str:
        """``"crlb"``, ``"fit_error"`` or ``""`` (no fit quality simulated)."""
        return ("crlb" if self.crlb is not None else
                "fit_error" if self.fit_error is not None else "")

    @property
    def ratio_to(self) -> str:
        """The measure the reported value is a ratio to (``""``: none)."""
        return "tcr" if self.voxel and self.unit == "ratio to tCr" else ""

    @property
    def noise_sd(self) -> float:
        """SD of one scan's measurement error, in ``unit``."""
        return self.cv * self.mean

    @property
    def label(self) -> str:
        """``"<roi> <measure>"``, for messages."""
        return f"{self.roi} {self.name}"

    def check_against(self, arms, outcomes) -> None:
        """Check the per-arm values name the design's arms and outcomes."""
        from dtitool.design.layout import check_arms

        where = self.where
        check_arms(f"{where}.change_mean", self.change_mean, arms)
        check_arms(f"{where}.change_sd", self.change_sd, arms)
        for arm, per in self.outcome_correlation.items():
            if arm not in arms:
                raise err(f"{where}.outcome_correlation", "must name arms of the "
                          f"design ({', '.join(arms)})", arm)
            for o in per:
                if o not in outcomes:
                    raise err(f"{where}.outcome_correlation.{arm}", "must name "
                              f"outcomes of the design ({', '.join(outcomes)})", o)

    def outcome_r(self, arm: str, outcome: str) -> float:
        """Correlation of the true change with ``outcome``'s change in ``arm``."""
        return float(self.outcome_correlation.get(arm, {}).get(outcome, 0.0))


def _check_spectra(m: MeasureSpec, where: str) -> None:
    """Check the MRS fields: only voxel measures have them, on a known scale."""
    given = [k for k in ("crlb", "fit_error") if getattr(m, k) is not None]
    if not m.voxel:
        if given:
            raise ValueError(f"{where}.{given[0]} is a fit quality of MRS spectra: "
                             "give it in a [voxels.NAME.measures.MEASURE] table")
        return
    if m.unit not in MRS_UNITS:
        raise err(f"{where}.unit", "must be a unit of MRS quantification ("
                  f"{', '.join(MRS_UNITS)})", m.unit)
    if m.md_correlation:
        raise err(f"{where}.md_correlation", "must be 0: an MRS voxel has no MD",
                  m.md_correlation)
    if len(given) > 1:
        raise ValueError(f"{where}: give crlb (LCModel, Osprey) or fit_error "
                         "(Gannet), not both")
    for k in given:
        check_range(f"{where}.{k}", getattr(m, k), 0.0, 100.0, lo_open=True)
    check_range(f"{where}.quality_spread", m.quality_spread, 0.0, 2.0)
