"""MRS voxels: metabolites measured by spectroscopy, in a voxel without MD.

A design's ``[voxels.NAME]`` tables list its MRS voxels (``mPFC``, ``pgACC``);
each has metabolites as measures, as an ROI has FA or volume, but no MD. In a
design file::

    [voxels.mPFC.measures.gaba]
    unit = "i.u."          # i.u., mM, "ratio to tCr" or a.u. (UNITS)
    scale = 0.1            # the change the models' slopes are per, in the unit
    mean = 1.6             # water-scaled institutional units
    sd = 0.2               # between participants
    cv = 0.07              # one spectrum's SD is cv x mean
    change_mean = { ketamine = 0.6, saline = 0.0 }
    change_sd = { ketamine = 0.15, saline = 0.0 }
    crlb = 8.0             # or fit_error: the fit quality of a typical spectrum

    [[voxels.mPFC.measures.gaba.course]]   # a time course over the visits
    shape = "profile"
    values = { baseline = 0, infusion = 1, 24h = 0 }
    ...

A metabolite's ``mean``, ``sd``, ``cv`` and change are those of its
concentration. ``unit = "ratio to tCr"`` reports instead the ratio to the voxel's
``tcr`` (total creatine) measure in the same spectrum, so creatine's own change
and noise enter the ratio; ``scale`` is then in ratio units.

Fit quality. Every spectrum has a noise factor ``k`` (log-normal with log-SD
``quality_spread`` and mean square 1, so ``cv`` stays the RMS noise): its
metabolites' scan noise is ``k`` times ``cv x mean``, and its fit quality is
``crlb x k x mean / value`` (or ``fit_error x ...``): the Cramer-Rao bound is
the estimate's SD as a percentage of the estimate, so a noisier spectrum and a
lower concentration have a larger one. The analysis's exclusion rule
(``--max-crlb``, default 20 %; ``--max-fit-error``, default 12 %) then drops
the noisiest spectra as missing data. The factor is shared by the metabolites
of one spectrum (one voxel, one visit).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from dtitool._constants import MRS_QUALITY_LIMITS
from dtitool._constants import MRS_UNITS as UNITS
from dtitool._validation import check_name, check_range
from dtitool.design.measures import MeasureSpec

__all__ = ["UNITS", "SpectrumModel", "VoxelSpec", "check_quality_limits",
           "noise_factor", "quality_values"]




@dataclass(frozen=True, slots=True)
class VoxelSpec:
    """An MRS voxel: its name and its metabolites (module docstring).

    Parameters
    ----------
    name : str
        Voxel name (``mPFC``), unique among the design's ROIs and voxels.
    measures : tuple of MeasureSpec
        The metabolites, each with ``voxel=True`` and ``roi`` the voxel's name.
    """

    name: str
    measures: tuple[MeasureSpec, ...]

    def __post_init__(self):
        check_name("voxel name", self.name)
        where = f"voxels.{self.name}"
        measures = tuple(self.measures)
        if not measures:
            raise ValueError(f"{where} has no measures: give at least one "
                             f"[{where}.measures.NAME] table")
        for m in measures:
            if not (isinstance(m, MeasureSpec) and m.voxel and m.roi == self.name):
                raise TypeError(f"{where}.measures must be voxel MeasureSpecs of "
                                f"{self.name!r}; got {m!r}")
        names = [m.name for m in measures]
        if len(set(names)) != len(names):
            raise ValueError(f"{where}.measures names a measure twice: {names}")
        ratios = [m.name for m in measures if m.ratio_to]
        if ratios:
            ref = next((m for m in measures if m.name == "tcr"), None)
            if ref is None:
                raise ValueError(f"{where}.measures.{ratios[0]} is a ratio to total "
                                 f"creatine (unit = \"ratio to tCr\"), but {where} "
                                 "has no tcr "
                                 f"measure: add [{where}.measures.tcr]")
            if ref.ratio_to:
                raise ValueError(f"{where}.measures.tcr cannot be a ratio to itself: "
                                 "give its unit as a concentration (\"i.u.\")")
        object.__setattr__(self, "measures", measures)


def noise_factor(z: np.ndarray, spread: np.ndarray) -> np.ndarray:
    """Return each spectrum's noise factor ``exp(s z - s^2)``, mean square 1.

    Parameters
    ----------
    z : ndarray
        Standard normal draws, one per spectrum, broadcast against ``spread``.
    spread : ndarray
        Log-SD ``s`` per measure.
    """
    return np.exp(spread * z - spread * spread)


def quality_values(level: np.ndarray, k: np.ndarray, mean: np.ndarray,
                   value: np.ndarray) -> np.ndarray:
    """Return the fit quality of each spectrum, ``level x mean x k / value``, %.

    A value at or below 0 (no signal) has an infinite bound; a missing (NaN)
    value a missing one.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        q = k * (level * mean)
        q /= value
        q[value <= 0] = np.inf
    return q


@dataclass(frozen=True)
class SpectrumModel:
    """A design's MRS spectra as arrays, for the simulator.

    Attributes
    ----------
    voxel : ndarray of int, shape (M,)
        Per measure (:attr:`StudyDesign.measures` order), the index of its
        spectrum's voxel, or -1 for an ROI measure (no spectrum).
    spread : ndarray, shape (M,)
        Log-SD of the noise factor (0 for an ROI measure).
    level : ndarray, shape (M,)
        The fit quality of a typical spectrum, % (NaN: none simulated).
    mean : ndarray, shape (M,)
    ratio : ndarray of int, shape (M,)
        Index of the measure a value is a ratio to, or -1.
    voxels : int
        Number of voxels (spectra per participant and visit).
    """

    voxel: np.ndarray
    spread: np.ndarray
    level: np.ndarray
    mean: np.ndarray
    ratio: np.ndarray
    voxels: int

    @classmethod
    def of(cls, design) -> SpectrumModel | None:
        """Return the design's spectra, or None for a design without voxels."""
        if not design.voxels:
            return None
        ms = design.measures
        vox = {v: i for i, v in enumerate(design.voxel_names)}
        index = {(m.roi, m.name): j for j, m in enumerate(ms)}
        return cls(
            voxel=np.array([vox[m.roi] if m.voxel else -1 for m in ms]),
            spread=np.array([m.quality_spread if m.voxel else 0.0 for m in ms]),
            level=np.array([np.nan if not m.quality else
                            m.crlb if m.quality == "crlb" else m.fit_error
                            for m in ms]),
            mean=np.array([m.mean for m in ms]),
            ratio=np.array([index[m.roi, m.ratio_to] if m.ratio_to else -1
                            for m in ms]),
            voxels=len(vox))

    def factor(self, z: np.ndarray) -> np.ndarray:
        """Return the noise factor of each voxel measure's spectrum, (R, N, Mv, V).

        ``z`` (R, N, voxels, V): standard normal draws, one per spectrum; the
        measures of one voxel share theirs. ``Mv`` runs over the voxel
        measures (``voxel >= 0``), in order.
        """
        j = np.flatnonzero(self.voxel >= 0)
        return noise_factor(z[..., self.voxel[j], :], self.spread[j, None])

    def scale_noise(self, e: np.ndarray, k: np.ndarray) -> None:
        """Scale the measures' scan noise ``e`` (R, N, M, V) by the factor ``k``."""
        if np.all(self.voxel >= 0):  # every measure in a voxel: no gather
            e *= k
        else:
            e[..., self.voxel >= 0, :] *= k

    def finish(self, k: np.ndarray, true: np.ndarray | None, obs: np.ndarray
               ) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
        """Return true and observed values as reported, and each spectrum's quality.

        ``k``: :meth:`factor`. The quality (R, N, M, V) is NaN where none is
        simulated or the value is missing; a ratio measure's values become
        the ratio to their reference in the same spectrum (the quality stays
        the metabolite's own).
        """
        vox = np.flatnonzero(self.voxel >= 0)
        j = np.flatnonzero(~np.isnan(self.level))
        if len(j) == obs.shape[-2] and len(vox) == len(j):
            # every measure a voxel's, every one with a quality: no gathers
            quality = quality_values(self.level[:, None], k, self.mean[:, None], obs)
        else:
            quality = np.full(obs.shape, np.nan)
            if len(j):
                quality[..., j, :] = quality_values(
                    self.level[j, None], k[..., np.searchsorted(vox, j), :],
                    self.mean[j, None], obs[..., j, :])
        r = np.flatnonzero(self.ratio >= 0)
        if len(r):
            obs = obs.copy()
            obs[..., r, :] = obs[..., r, :] / obs[..., self.ratio[r], :]
            if true is not None:
                true = true.copy()
                true[..., r, :] = true[..., r, :] / true[..., self.ratio[r], :]
        return true, obs, quality


def check_quality_limits(limits) -> dict[str, float] | None:
    """Return fit-quality limits checked: ``{"crlb": %, "fit_error": %}`` or None.

    Raises
    ------
    ValueError
        A key other than ``crlb`` or ``fit_error``, or a limit that is not a
        percentage above 0.
    """
    if limits is None:
        return None
    if not isinstance(limits, Mapping):
        raise TypeError("quality limits must be a mapping {'crlb': %, "
                        f"'fit_error': %}}; got {limits!r}")
    out = {}
    for k, v in limits.items():
        if k not in MRS_QUALITY_LIMITS:
            raise ValueError(f"quality limit {k!r} is not one of "
                             f"{', '.join(MRS_QUALITY_LIMITS)}")
        out[k] = check_range(f"quality limit {k}", v, 0.0, lo_open=True)
    return out
