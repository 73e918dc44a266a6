"""Simulated MD maps and DWI for a cohort, written as a BIDS-derivatives-like tree.

The imaging path of a rehearsal: the ROI-level table of measured MD
(``roi_md``, one row per participant x session x ROI) is turned into one MD map
per scan on the phantom's grid (:mod:`dtitool.imaging.phantom`), so that the same ROI
extraction that will run on the real scans (:mod:`dtitool.imaging.extract`) can be
rehearsed. Optionally, 4D diffusion-weighted images (DWI) are synthesised from a
tensor per voxel whose MD is the map's value, for rehearsing the tensor fit too.

Agreement with the table
------------------------
Each ROI's mean MD in a simulated map equals the table's ``md`` exactly up to
float32 storage: after adding the smooth noise, every ROI is shifted by the
difference between its current mean and the table value (a per-ROI mean
correction). The stated tolerance is :data:`MD_MAP_RTOL` (relative 1e-6), far
below any between-subject difference, so the image path and the ROI-level path
give the same analysis results. Maps fitted from simulated DWI recover the
ROI means only up to the DWI noise (see :func:`simulate_dwi`).

Output layout (``write_cohort_images``)::

    OUT/
      dataset_description.json
      atlas-dtitool_dseg.nii.gz        ROI labels 1..k (the table's ROIs)
      atlas-dtitool_dseg.tsv           lookup table (index, name): their names
      atlas-dtitool_label-tissue_dseg.nii.gz   0 bg, 1 CSF, 2 GM, 3 WM
      sub-001/ses-baseline/dwi/sub-001_ses-baseline_model-DTI_param-MD_dwimap.nii.gz
      sub-001/ses-baseline/dwi/sub-001_ses-baseline_dwi.nii   (+ .bval, .bvec)
      ...
"""

from __future__ import annotations

import copy
import functools
import io
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
from scipy import ndimage

from dtitool import __version__, _progress
from dtitool._constants import MD_UNIT
from dtitool._executor import Shared, Task, open_executor
from dtitool._gzip import backend as gzip_backend
from dtitool._gzip import compress
from dtitool._io import atomic_outputs
from dtitool.imaging.phantom import (
    ATLAS_FILENAME,
    LUT_FILENAME,
    TISSUE_FILENAME,
    Phantom,
    bounding_box,
    make_phantom,
    save_phantom_files,
)

__all__ = [
    "BACKGROUND_MD",
    "DWI_EXTENSION",
    "IMAGE_STREAM_KEY",
    "MD_MAP_RTOL",
    "S0_BY_TISSUE",
    "SimulatedScan",
    "image_seed_sequence",
    "md_map_path",
    "simulate_dwi",
    "simulate_md_maps",
    "write_cohort_images",
]

BACKGROUND_MD = {1: 3.0e-3, 2: 0.85e-3, 3: 0.7e-3}
"""MD (mm^2/s) by tissue class outside the ROIs: CSF (free water at 37 C,
~3.0e-3), cortical GM (~0.8-0.9e-3) and WM (~0.7e-3), as in healthy adults
(Pierpaoli et al. 1996, Radiology 201:637)."""

S0_BY_TISSUE = {1: 2400.0, 2: 1300.0, 3: 1000.0}
"""Non-diffusion-weighted (b = 0, T2-weighted) signal by tissue class, arbitrary
units: CSF brightest, then GM, then WM, in typical 3 T ratios."""

FA_BY_TISSUE = {1: 0.0, 2: 0.1, 3: 0.6}
"""Fractional anisotropy of the simulated tensors: CSF isotropic, GM near
isotropic, WM 0.6 (deep WM varies 0.5-0.7 with depth, see :func:`simulate_dwi`)."""

IMAGE_STREAM_KEY = 0x494D47
"""Spawn key ("IMG") of the image-noise stream derived from a cohort's seed: far
above any replicate index, so image noise never reuses a cohort stream."""

DWI_EXTENSION = ".nii"
"""Simulated DWI are written uncompressed (see :func:`_dwi_files` for why)."""

MD_MAP_RTOL = 1e-6
"""Relative tolerance of simulated-map ROI means against the table (float32)."""

DEFAULT_SMOOTHNESS_MM = 6.0
DEFAULT_NOISE_SD = 0.05e-3

@dataclass(frozen=True, slots=True)
class SimulatedScan:
    """One simulated scan.

    Parameters
    ----------
    participant_id : str
        e.g. ``"sub-001"``.
    session : str
        The visit, e.g. ``"baseline"``.
    md : ndarray of float32, shape (X, Y, Z)
        MD map in mm^2/s on the phantom grid (0 outside the head).
    """

    participant_id: str
    session: str
    md: np.ndarray


def image_seed_sequence(seed: int) -> np.random.SeedSequence:
    """Seed of the image noise for a cohort simulated with integer ``seed``.

    The cohort simulator uses ``SeedSequence(seed)`` and its children
    ``spawn_key=(b,)`` for replicate ``b``; the images use the disjoint child
    ``spawn_key=(IMAGE_STREAM_KEY,)``, so their noise is independent of the
    cohort's yet reproducible from the same seed.
    """
    return np.random.SeedSequence(int(seed), spawn_key=(IMAGE_STREAM_KEY,))


def md_map_path(participant_id: str, session: str) -> str:
    """Relative path of a scan's MD map in the output tree."""
    return (
        f"{participant_id}/ses-{session}/dwi/"
        f"{participant_id}_ses-{session}_model-DTI_param-MD_dwimap.nii.gz"
    )


def _dwi_stem(participant_id: str, session: str) -> str:
    return f"{participant_id}/ses-{session}/dwi/{participant_id}_ses-{session}_dwi"


# --------------------------------------------------------------------------- input


def _check_positive(name: str, value, *, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(
        value, (int, float, np.integer, np.floating)
    ):
        raise ValueError(f"{name} must be a number, got {value!r}")
    value = float(value)
    if not np.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number {bound}, got {value}")
    return value


def _levels(column: pd.Series) -> list[str]:
    """Levels of a column: its categories if categorical, else first-seen order."""
    if isinstance(column.dtype, pd.CategoricalDtype):
        present = set(column.astype(str))
        return [str(c) for c in column.cat.categories if str(c) in present]
    return list(dict.fromkeys(column.astype(str)))


def _check_table(roi_md) -> None:
    if not isinstance(roi_md, pd.DataFrame):
        raise TypeError(
            f"roi_md must be a pandas DataFrame, got {type(roi_md).__name__}"
        )
    missing = [c for c in ("participant_id", "session", "roi", "md") if c not in roi_md]
    if missing:
        raise ValueError(
            f"roi_md lacks column(s) {missing}; expected participant_id, session, "
            "roi, md"
        )


def _session_order(roi_md: pd.DataFrame, sessions) -> list[str]:
    """Visit names in schedule order: ``sessions``, else as the table has them."""
    present = _levels(roi_md["session"])
    if sessions is None:
        return present
    if isinstance(sessions, str) or not hasattr(sessions, "__iter__"):
        raise TypeError(
            f"sessions must be a sequence of visit names, got {sessions!r}")
    order = [str(v) for v in sessions]
    if len(set(order)) != len(order):
        raise ValueError(f"sessions repeats a visit: {order}")
    bad = [v for v in present if v not in order]
    if bad:
        raise ValueError(f"roi_md has session(s) {bad}; valid: {order}")
    return order


def _roi_md_matrix(
    roi_md: pd.DataFrame, phantom: Phantom, sessions: list[str]
) -> tuple[list[tuple[str, str]], np.ndarray]:
    """Check the ROI table; return scans (pid, session) and md (n_scans, R)."""
    _check_table(roi_md)
    if "replicate" in roi_md and roi_md["replicate"].nunique() > 1:
        raise ValueError(
            f"roi_md holds {roi_md['replicate'].nunique()} replicates; select one "
            "(e.g. roi_md[roi_md.replicate == 1]) before simulating images"
        )
    names = phantom.lut["name"].to_list()
    bad_roi = sorted(set(roi_md["roi"].astype(str)) - set(names))
    if bad_roi:
        raise ValueError(
            f"roi_md has ROI name(s) {bad_roi} not in the atlas; valid: {names}"
        )
    md = pd.to_numeric(roi_md["md"], errors="coerce").to_numpy(float)
    if not np.all(np.isfinite(md) & (md > 0)):
        n = int(np.sum(~(np.isfinite(md) & (md > 0))))
        raise ValueError(
            f"roi_md has {n} md value(s) that are missing, non-numeric or <= 0; a "
            "missing scan must be a missing row"
        )
    df = roi_md.assign(
        participant_id=roi_md["participant_id"].astype(str),
        session=roi_md["session"].astype(str),
        roi=roi_md["roi"].astype(str),
        md=md,
    )
    if df.duplicated(["participant_id", "session", "roi"]).any():
        row = df[df.duplicated(["participant_id", "session", "roi"])].iloc[0]
        raise ValueError(
            f"roi_md has duplicated rows for {row.participant_id} "
            f"{row.session} {row.roi}"
        )
    wide = df.pivot(index=["participant_id", "session"], columns="roi", values="md")
    wide = wide.reindex(columns=names)
    if wide.isna().any().any():
        pid, ses = wide.index[wide.isna().any(axis=1)][0]
        absent = wide.columns[wide.loc[(pid, ses)].isna()].to_list()
        raise ValueError(
            f"roi_md has no row for ROI(s) {absent} of {pid} session {ses}; each "
            "scan needs every ROI (drop the whole scan if it is missing)"
        )
    # Deterministic order: participants sorted, sessions in schedule order.
    ses_index = {v: n for n, v in enumerate(sessions)}
    order = sorted(wide.index, key=lambda t: (t[0], ses_index[t[1]]))
    wide = wide.loc[order]
    return list(wide.index), wide.to_numpy(float)


def _scan_generators(
    scans: list[tuple[str, str]], rng, sessions: list[str]
) -> dict[tuple[str, str], tuple[np.random.Generator, np.random.Generator]]:
    """Independent (md-noise, dwi-noise) streams per scan, by SeedSequence spawn.

    A participant's stream depends only on the seed and the participant's rank
    among the sorted participant ids; a session's on its position in the
    schedule (``sessions``), so a missing follow-up scan leaves every other
    scan unchanged.
    """
    rng = np.random.default_rng(rng)
    pids = sorted({p for p, _ in scans})
    subj = dict(zip(pids, rng.spawn(len(pids)), strict=True))
    out = {}
    ses_index = {v: n for n, v in enumerate(sessions)}
    per_subject = {p: g.spawn(len(sessions)) for p, g in subj.items()}
    for pid, ses in scans:
        md_gen, dwi_gen = per_subject[pid][ses_index[ses]].spawn(2)
        out[(pid, ses)] = (md_gen, dwi_gen)
    return out


# ------------------------------------------------------------------------ MD maps


class _MapMaker:
    """Precomputed phantom quantities shared by every map of a cohort."""

    def __init__(self, phantom: Phantom, smoothness_mm: float, noise_sd: float):
        self.phantom = phantom
        self.shape = phantom.shape
        res = float(np.sqrt((phantom.affine[:3, :3] ** 2).sum(axis=0)).mean())
        tissue = phantom.tissue
        base = np.zeros(self.shape, dtype=np.float32)
        for t, v in BACKGROUND_MD.items():
            base[tissue == t] = v
        head = tissue > 0
        # Noise is drawn only in the head's bounding box (padded by the kernel
        # radius): about half the grid, and the background is 0 anyway.
        pad = int(np.ceil(3.0 * smoothness_mm / 2.3548 / res)) + 1
        self.box = bounding_box(head, pad)
        if self.box is None:
            raise ValueError("the phantom has no head voxels (tissue > 0)")
        self.box_shape = tuple(b.stop - b.start for b in self.box)
        self.base_box = base[self.box]
        self.head_box = head[self.box]
        self.noise_sd = noise_sd
        # FWHM -> Gaussian sigma in voxels; the filtered white noise is rescaled
        # to unit variance with the kernel's L2 norm (exact for a stationary
        # field away from the grid edge).
        self.sigma_vox = smoothness_mm / (2.0 * np.sqrt(2.0 * np.log(2.0))) / res
        if self.sigma_vox > 0:
            delta = np.zeros((int(8 * self.sigma_vox) * 2 + 3,) * 3, np.float64)
            delta[(delta.shape[0] // 2,) * 3] = 1.0
            k = ndimage.gaussian_filter(delta, self.sigma_vox, truncate=3.0)
            self.noise_scale = 1.0 / float(np.sqrt((k**2).sum()))
        else:
            self.noise_scale = 1.0
        lut_idx = phantom.lut["index"].to_numpy()
        flat = phantom.labels.ravel()
        self.roi_idx = np.flatnonzero(np.isin(flat, lut_idx))
        lookup = np.full(int(max(flat.max(), lut_idx.max())) + 1, -1, dtype=np.intp)
        lookup[lut_idx] = np.arange(len(lut_idx))
        self.roi_code = lookup[flat[self.roi_idx]]
        self.n_roi = len(lut_idx)
        self.roi_count = np.bincount(self.roi_code, minlength=self.n_roi)
        empty = np.flatnonzero(self.roi_count == 0)
        if empty.size:
            raise ValueError(
                f"the phantom has no voxels for ROI(s) "
                f"{phantom.lut['name'].to_numpy()[empty].tolist()}"
            )

    def make(self, md_roi: np.ndarray, gen: np.random.Generator) -> np.ndarray:
        """MD map (float32) with the given ROI means, smooth noise from ``gen``."""
        # Unit-variance white noise, uniform rather than normal: 8x cheaper to
        # draw, and the Gaussian kernel averages ~90 voxels (1 / sum k^2 at
        # FWHM 6 mm on a 2 mm grid), which makes the smooth field Gaussian to
        # within an excess kurtosis of -0.01 (-1.2 / 90; a normal field's is 0).
        white = gen.random(self.box_shape, dtype=np.float32)
        white -= np.float32(0.5)
        white *= np.float32(np.sqrt(12.0))
        if self.sigma_vox > 0:
            noise = ndimage.gaussian_filter(white, self.sigma_vox, truncate=3.0)
        else:
            noise = white
        noise *= np.float32(self.noise_sd * self.noise_scale)
        noise += self.base_box
        noise[~self.head_box] = 0.0
        md = np.zeros(self.shape, dtype=np.float32)
        md[self.box] = noise
        flat = md.reshape(-1)
        vals = flat[self.roi_idx].astype(np.float64)
        for _ in range(2):  # second pass removes the float32 rounding of the shift
            mean = np.bincount(self.roi_code, vals, self.n_roi) / self.roi_count
            vals += (md_roi - mean)[self.roi_code]
            vals = vals.astype(np.float32).astype(np.float64)
        if vals.min() <= 0:
            raise ValueError(
                "a simulated ROI voxel has MD <= 0; noise_sd "
                f"({self.noise_sd:g} mm^2/s) is too large for the table's MD values"
            )
        flat[self.roi_idx] = vals
        return md


def simulate_md_maps(
    roi_md: pd.DataFrame,
    *,
    phantom: Phantom | None = None,
    sessions=None,
    rng=None,
    smoothness_mm: float = DEFAULT_SMOOTHNESS_MM,
    noise_sd: float = DEFAULT_NOISE_SD,
) -> Iterator[SimulatedScan]:
    """Simulate one MD map per scan whose ROI means equal the table's MD.

    Parameters
    ----------
    roi_md : DataFrame
        Long-form ROI table: ``participant_id``, ``session``, ``roi``, ``md``
        (mm^2/s), one row per scan x ROI; every scan must have every atlas ROI. A
        ``replicate`` column, if present, must hold a single value.
    phantom : Phantom, optional
        Grid, tissue classes and atlas; defaults to
        ``make_phantom(roi_names=...)`` (2 mm) of the table's ROIs, labelled
        1..k in the order they first appear (a design's ``roi_names`` order
        in a simulated table; the categories' order for a categorical column).
    sessions : sequence of str, optional
        The visits in schedule order (a design's ``visit_names``): the order
        of the scans and of their noise streams. Default: the order in which
        the table's sessions first appear (the categories' order for a
        categorical column); give it for maps that do not depend on the
        table's row order.
    rng : Generator, int or None
        Randomness. Each participant gets a child stream
        (``SeedSequence.spawn``, by rank of the sorted participant id) and each
        session a grandchild, so a scan's map does not depend on which other
        scans are simulated.
    smoothness_mm : float
        FWHM (mm) of the Gaussian kernel that smooths the voxel noise (0 for
        white noise).
    noise_sd : float
        Voxel-wise SD (mm^2/s) of the smooth noise added to the tissue
        background (:data:`BACKGROUND_MD`).

    Yields
    ------
    SimulatedScan
        One per scan, participants in sorted order, sessions in schedule
        order. Maps are generated lazily, so memory stays at one
        map whatever the cohort size.

    Raises
    ------
    ValueError
        If the table is malformed (columns, ROI names, sessions, non-positive
        or missing md, duplicated or incomplete scans) or an option is out of
        range.

    Notes
    -----
    ``md = background[tissue] + noise_sd * G * w / ||G||``, with ``w`` white
    noise of unit variance (uniform: the kernel, averaging about 90 voxels,
    makes the smoothed field Gaussian) and ``G`` the Gaussian kernel; then
    within each ROI ``r`` the map is
    shifted by ``md_r - mean_r(md)`` so that the ROI mean equals the table value
    to float32 precision (:data:`MD_MAP_RTOL`). Voxels outside the head are 0,
    as in dtifit output.

    Examples
    --------
    >>> import pandas as pd
    >>> from dtitool.imaging.phantom import make_phantom
    >>> ph = make_phantom(roi_names=["thalamus", "putamen"], resolution=4.0)
    >>> table = pd.DataFrame({"participant_id": "sub-001", "session": "pre",
    ...                       "roi": ph.lut["name"], "md": 0.8e-3})
    >>> scan = next(simulate_md_maps(table, phantom=ph, rng=0))
    >>> round(float(scan.md[ph.labels == 1].mean()), 9)
    0.0008
    """
    plan = _plan(roi_md, phantom, sessions, rng, smoothness_mm, noise_sd)
    return _iter_maps(plan)


@dataclass(frozen=True, slots=True)
class _Plan:
    phantom: Phantom
    scans: list
    md: np.ndarray
    gens: dict
    maker: _MapMaker


def _plan(roi_md, phantom, sessions, rng, smoothness_mm, noise_sd) -> _Plan:
    """Validate everything up front (before any output), then build the streams."""
    _check_table(roi_md)
    if phantom is None:
        phantom = make_phantom(roi_names=_levels(roi_md["roi"]))
    if not isinstance(phantom, Phantom):
        raise TypeError(f"phantom must be a Phantom, got {type(phantom).__name__}")
    smoothness_mm = _check_positive("smoothness_mm", smoothness_mm, allow_zero=True)
    noise_sd = _check_positive("noise_sd", noise_sd, allow_zero=True)
    sessions = _session_order(roi_md, sessions)
    scans, md = _roi_md_matrix(roi_md, phantom, sessions)
    gens = _scan_generators(scans, rng, sessions)
    maker = _MapMaker(phantom, smoothness_mm, noise_sd)
    return _Plan(phantom, scans, md, gens, maker)


def _iter_maps(plan: _Plan) -> Iterator[SimulatedScan]:
    for (pid, ses), row in zip(plan.scans, plan.md, strict=True):
        yield SimulatedScan(pid, ses, plan.maker.make(row, plan.gens[(pid, ses)][0]))


# ---------------------------------------------------------------------------- DWI


def _fa_to_evals(md: np.ndarray, fa: np.ndarray) -> np.ndarray:
    """Cylindrical eigenvalues (l1 >= l2 = l3) with the given MD and FA.

    With ``l1 = md (1 + 2 t)`` and ``l2 = l3 = md (1 - t)``,
    ``FA = 3 t / sqrt(3 + 6 t^2)``, so ``t = sqrt(FA^2 / (3 - 2 FA^2))``.
    """
    t = np.sqrt(fa**2 / (3.0 - 2.0 * fa**2))
    return np.stack([md * (1 + 2 * t), md * (1 - t), md * (1 - t)], axis=-1)


def _orientation_field(xyz: np.ndarray) -> np.ndarray:
    """Return unit principal directions (N, 3): a plausible, smooth fibre field.

    Left-right near the midline (corpus callosum), radiating outward from the
    deep brain elsewhere (corona radiata), blended smoothly.
    """
    centre = np.array([0.0, -16.0, 14.0])
    r = xyz - centre
    r /= np.maximum(np.linalg.norm(r, axis=-1, keepdims=True), 1e-6)
    w = np.exp(-((xyz[:, :1] / 15.0) ** 2))
    v = w * np.array([1.0, 0.0, 0.0]) + (1.0 - w) * r
    v /= np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-6)
    return v


def _frames(v: np.ndarray) -> np.ndarray:
    """Orthonormal frames with ``v`` as first column, shape (N, 3, 3)."""
    helper = np.where(
        (np.abs(v[:, :1]) < 0.9), np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0])
    )
    u = np.cross(v, helper)
    u /= np.linalg.norm(u, axis=-1, keepdims=True)
    w = np.cross(v, u)
    return np.stack([v, u, w], axis=-1)


_DWI_CHUNK = 65536
"""Voxels per batch of :func:`simulate_dwi` (its noise streams go batch by batch)."""


def simulate_dwi(
    md_map: np.ndarray,
    *,
    phantom: Phantom,
    bvals: np.ndarray,
    bvecs: np.ndarray,
    snr: float = 30.0,
    rng=None,
    chunk: int = _DWI_CHUNK,
    dtype=np.float32,
) -> np.ndarray:
    """Synthesise a 4D DWI series from an MD map with tissue-dependent tensors.

    Parameters
    ----------
    md_map : ndarray, shape (X, Y, Z)
        MD (mm^2/s) per voxel, on the phantom grid.
    phantom : Phantom
        Tissue classes and affine of the grid.
    bvals, bvecs : ndarray, shapes (K,), (K, 3)
        Gradient table (e.g. :func:`dtitool.imaging.gradients.default_protocol`).
    snr : float
        b = 0 signal-to-noise ratio in white matter: the Rician noise SD is
        ``S0_WM / snr``.
    rng : Generator, int or None
        Noise stream.
    chunk : int
        Voxels per batch (bounds memory).
    dtype : {numpy.float32, numpy.int16}
        ``int16``: the magnitude rounded to integers and capped at 32767, as a
        scanner stores it (and ``simulate --images --dwi`` writes it): the same
        values as rounding the float32 series, without ever forming it.

    Returns
    -------
    ndarray of ``dtype``, shape (X, Y, Z, K)
        Magnitude signal with Rician noise (pure Rayleigh noise outside the
        head), Fortran-contiguous (NIfTI's order: written without a copy).

    Notes
    -----
    Per head voxel the tensor has the voxel's MD and a cylindrical shape with
    FA from :data:`FA_BY_TISSUE` (WM FA rises from 0.5 at the GM border to 0.7
    in deep WM); its principal axis follows :func:`_orientation_field`. The
    noiseless signal is :func:`dtitool.imaging.tensor.predict_signal` with
    ``S0`` from :data:`S0_BY_TISSUE`; Rician noise is
    ``|S + sigma (n1 + i n2)|`` (Gudbjartsson & Patz 1995, MRM 34:910), drawn
    outside the head (``S = 0``) directly from its Rayleigh distribution.
    """
    snr = _check_positive("snr", snr)
    rng = np.random.default_rng(rng)
    md_map = np.asarray(md_map, dtype=np.float64)
    if md_map.shape != phantom.shape:
        raise ValueError(
            f"md_map has shape {md_map.shape} but the phantom grid is {phantom.shape}"
        )
    if np.dtype(dtype) not in (np.float32, np.int16):
        raise ValueError(f"dtype must be float32 or int16; got {np.dtype(dtype)}")
    if np.ndim(bvals) != 1:
        raise ValueError(f"bvals must be one-dimensional; got shape "
                         f"{np.shape(bvals)}")
    k = len(bvals)
    shape = phantom.shape
    vol = np.empty((k, int(np.prod(shape))), dtype=dtype)
    _dwi_into(vol, md_map, phantom, bvals, bvecs, snr, rng, chunk)
    # (X, Y, Z, K) as a view of the volumes (Fortran-contiguous)
    return vol.reshape(k, *shape[::-1]).transpose(3, 2, 1, 0)


def _dwi_into(vol: np.ndarray, md_map, phantom: Phantom, bvals, bvecs, snr: float,
              rng: np.random.Generator, chunk: int = _DWI_CHUNK) -> None:
    """Fill ``vol`` (K, voxels in Fortran order), float32 or int16 (rounded).

    ``md_map`` on the phantom grid and ``snr`` already checked.
    """
    from dtitool.imaging.tensor import predict_signal, tensor_from_evals_evecs

    md_map = np.asarray(md_map, dtype=np.float64)  # the tensors in float64
    bvals = np.asarray(bvals, dtype=float)
    k = bvals.shape[0]
    sigma = S0_BY_TISSUE[3] / snr
    rounded = vol.dtype == np.int16
    # Volumes outermost in memory (NIfTI's Fortran order of (X, Y, Z, K)):
    # the file's bytes without reordering. vol[:, f] is the voxel with flat
    # Fortran index f; voxels are visited in C order (their noise streams).
    shape = phantom.shape
    tissue = phantom.tissue
    head = np.flatnonzero(tissue.ravel() > 0)
    to_f = np.ravel_multi_index(np.unravel_index(np.arange(vol.shape[1]), shape),
                                shape, order="F")
    # Depth into WM (mm) for an FA that grows from the GM border inward.
    res = float(np.abs(phantom.affine[0, 0]))
    depth = ndimage.distance_transform_edt(tissue == 3, sampling=res).ravel()
    for start in range(0, head.size, chunk):
        idx = head[start : start + chunk]
        t = tissue.ravel()[idx]
        ijk = np.column_stack(np.unravel_index(idx, phantom.shape)).astype(float)
        xyz = ijk @ phantom.affine[:3, :3].T + phantom.affine[:3, 3]
        fa = np.select(
            [t == 1, t == 2],
            [FA_BY_TISSUE[1], FA_BY_TISSUE[2]],
            0.5 + 0.2 * np.clip(depth[idx] / 10.0, 0.0, 1.0),
        )
        md = np.clip(md_map.ravel()[idx], 1e-6, None)
        evals = _fa_to_evals(md, fa)
        tensor = tensor_from_evals_evecs(evals, _frames(_orientation_field(xyz)))
        s0 = np.select(
            [t == 1, t == 2], [S0_BY_TISSUE[1], S0_BY_TISSUE[2]], S0_BY_TISSUE[3]
        )
        block = predict_signal(tensor, bvals, bvecs, s0=s0).astype(np.float32)
        # Rician noise, in the same chunk of voxels.
        sig = np.float32(sigma)
        n1 = rng.standard_normal(block.shape, dtype=np.float32)
        n1 *= sig
        block += n1
        n2 = rng.standard_normal(block.shape, dtype=np.float32)
        n2 *= sig
        np.hypot(block, n2, out=block)
        if rounded:  # scanner-like storage (signal >= 0 after the magnitude)
            np.rint(block, out=block)
            np.minimum(block, np.float32(_INT16_MAX), out=block)
        vol[:, to_f[idx]] = block.T
    # Outside the head the signal is 0 and its magnitude is Rayleigh
    # distributed, sigma sqrt(-2 log U): the same distribution as
    # |sigma (n1 + i n2)|, for one uniform draw instead of two normal ones
    # (drawn for every voxel, volume by volume, and kept outside the head:
    # contiguous memory).
    sig = np.float32(sigma)
    outside = np.ones(vol.shape[1], dtype=bool)
    outside[to_f[head]] = False
    for start in range(0, vol.shape[1], chunk):
        u = rng.random((k, min(chunk, vol.shape[1] - start)), dtype=np.float32)
        np.subtract(np.float32(1.0), u, out=u)  # (0, 1]: log is finite
        np.log(u, out=u)
        u *= np.float32(-2.0)
        np.sqrt(u, out=u)
        u *= sig
        if rounded:
            np.rint(u, out=u)
            np.minimum(u, np.float32(_INT16_MAX), out=u)
        part = vol[:, start : start + u.shape[1]]
        np.copyto(part, u, where=outside[start : start + u.shape[1]],
                  casting="unsafe")


_INT16_MAX = np.iinfo(np.int16).max


# ------------------------------------------------------------------------ writing


_HEADERS: dict = {}  # NIfTI header bytes by (shape, dtype, affine, description)


def _raw_ends_match(full: bytes, offset: int, data: np.ndarray, n: int = 4096
                    ) -> bool:  # fmt: skip
    """Whether ``full[offset:]`` starts and ends with ``data``'s raw values."""
    flat = data.ravel(order="K") if data.flags.f_contiguous else None
    if flat is None:
        return full[offset:] == data.tobytes(order="F")
    stored = np.frombuffer(full, dtype=data.dtype, offset=offset)
    m = min(n, flat.size)
    return (len(stored) == flat.size and np.array_equal(stored[:m], flat[:m])
            and np.array_equal(stored[-m:], flat[-m:]))


def _nifti_header(shape: tuple, dtype, affine: np.ndarray, *, description: str
                  ) -> bytes:  # fmt: skip
    """Return the bytes nibabel writes before the data of an image of ``shape``.

    Made from a one-voxel image of the same dtype, affine and description (the
    header holds no data-dependent field for unscaled data), its dimensions
    then set to ``shape``; ``tests/test_images.py`` checks it against nibabel
    writing the full image.
    """
    key = ("header", tuple(shape), np.dtype(dtype).str,
           np.asarray(affine, float).tobytes(), description)
    head = _HEADERS.get(key)
    if head is None:
        one = _nifti_bytes(np.zeros((1,) * len(shape), dtype, order="F"), affine,
                           description=description, compresslevel=0)
        offset = len(one) - np.dtype(dtype).itemsize
        hdr = nib.Nifti1Header.from_fileobj(io.BytesIO(one[:offset]))
        hdr.set_data_shape(shape)
        head = _HEADERS[key] = hdr.binaryblock + one[len(hdr.binaryblock):offset]
    return head


def _nifti_bytes(
    data: np.ndarray, affine: np.ndarray, *, description: str, compresslevel: int
) -> bytes:
    """Return the ``.nii.gz`` bytes of an image (header as nibabel writes it).

    ``compresslevel=0``: the ``.nii`` bytes (not compressed).
    """
    key = (data.shape, data.dtype.str, np.asarray(affine, float).tobytes(),
           description)
    head = _HEADERS.get(key)
    if head is None:
        img = nib.Nifti1Image(data, affine)
        img.header.set_xyzt_units("mm", "sec")
        img.set_sform(affine, code=4)
        img.set_qform(affine, code=4)
        img.header["descrip"] = description.encode()[:79]
        full = img.to_bytes()
        offset = len(full) - data.nbytes
        # Unscaled data: the header does not depend on the values, so every
        # image of this kind reuses it (checked on the first one: its data
        # follow the header as they are, first and last values compared).
        if offset >= 348 and _raw_ends_match(full, offset, data):
            _HEADERS[key] = full[:offset]
        # No time in the gzip header: the file is identical across runs (see
        # dtitool._gzip for zlib-ng and zlib).
        return compress(full, compresslevel) if compresslevel else full
    buf = bytearray(len(head) + data.nbytes)
    buf[: len(head)] = head
    np.ndarray(data.shape, data.dtype, buffer=buf, offset=len(head),
               order="F")[...] = data
    return compress(buf, compresslevel) if compresslevel else bytes(buf)


def write_cohort_images(
    participants: pd.DataFrame | None,
    roi_md: pd.DataFrame,
    out_dir: str | os.PathLike,
    *,
    rng=None,
    phantom: Phantom | None = None,
    sessions=None,
    dwi_subjects: int = 0,
    snr: float = 30.0,
    smoothness_mm: float = DEFAULT_SMOOTHNESS_MM,
    noise_sd: float = DEFAULT_NOISE_SD,
    force: bool = False,
    compresslevel: int = 1,
    n_jobs: int = 1,
    dask=None,
    progress=None,
    extra_description: Mapping | None = None,
) -> pd.DataFrame:
    """Write simulated MD maps (and optionally DWI) for a cohort under ``out_dir``.

    Parameters
    ----------
    participants : DataFrame or None
        Participants table (``participant_id`` column). Every participant of
        ``roi_md`` must be listed; its row order decides which subjects get DWI.
        ``None``: sorted participant ids of ``roi_md``.
    roi_md : DataFrame
        ROI table (see :func:`simulate_md_maps`).
    out_dir : str or path-like
        Root of the derivatives tree (layout in the module docstring).
    rng : Generator, SeedSequence, int or None
        Randomness; an int seed (or a SeedSequence's entropy and spawn key) is
        recorded in ``dataset_description.json``.
    phantom : Phantom, optional
        Grid and atlas; default: the phantom of the table's ROIs (see
        :func:`simulate_md_maps`). Its lookup table is written beside the
        atlas, so the atlas names its labels (``dtitool extract`` reads it).
    sessions : sequence of str, optional
        The visits in schedule order (see :func:`simulate_md_maps`).
    dwi_subjects : int
        Also write 4D DWI (``*_dwi.nii``, uncompressed, ``.bval``, ``.bvec``;
        protocol
        :func:`dtitool.imaging.gradients.default_protocol`) for the first this many
        participants (all their sessions).
    snr : float
        b = 0 SNR in white matter for the DWI.
    smoothness_mm, noise_sd : float
        Noise of the MD maps (see :func:`simulate_md_maps`).
    force : bool
        Replace the outputs of an earlier dtitool run (files listed in
        the folder's ``dtitool-run.json``, unchanged since).
    compresslevel : int
        gzip level (1-9) of the NIfTI files. Level 1 is ~5x faster than 6 and
        only ~1 % larger for noisy float data (with zlib-ng, see
        :mod:`dtitool._gzip`, its levels: 1 is ~6x faster than zlib's 1).
    n_jobs : int
        Worker processes (-1: all CPUs); each participant (all their scans) is
        one task. The files do not depend on it.
    dask : None, "local", str or distributed.Client
        Run the participants' tasks on Dask instead (same files); see
        :func:`dtitool._executor.open_executor`.
    progress : None, bool or bar
        Progress bar over the scans (:mod:`dtitool._progress`).
    extra_description : mapping, optional
        Extra entries for the ``dtitool`` block of ``dataset_description.json``.

    Returns
    -------
    DataFrame
        One row per scan: ``participant_id``, ``session``, ``md_path`` (relative
        to ``out_dir``) and ``dwi_path`` (empty when no DWI).

    Raises
    ------
    ValueError
        On a malformed table, bad option, or existing outputs without ``force``.
        Nothing is written then (all outputs appear at once, via
        :func:`dtitool._io.atomic_outputs`).
    """
    if (
        isinstance(dwi_subjects, bool)
        or not isinstance(dwi_subjects, (int, np.integer))
        or dwi_subjects < 0
    ):
        raise ValueError(f"dwi_subjects must be an integer >= 0, got {dwi_subjects!r}")
    snr = _check_positive("snr", snr)
    if not isinstance(compresslevel, int) or not 1 <= compresslevel <= 9:
        raise ValueError(f"compresslevel must be an integer 1-9, got {compresslevel!r}")
    is_int = isinstance(rng, (int, np.integer)) and not isinstance(rng, bool)
    if is_int:
        seed = int(rng)
    elif isinstance(rng, np.random.SeedSequence):
        seed = {"entropy": rng.entropy, "spawn_key": list(rng.spawn_key)}
    else:
        seed = None
    plan = _plan(roi_md, phantom, sessions, rng, smoothness_mm, noise_sd)
    phantom, scans = plan.phantom, plan.scans
    pids_table = sorted({p for p, _ in scans})
    if participants is None:
        order = pids_table
    else:
        if "participant_id" not in participants:
            raise ValueError("participants table lacks the column 'participant_id'")
        order = participants["participant_id"].astype(str).to_list()
        unknown = sorted(set(pids_table) - set(order))
        if unknown:
            raise ValueError(
                f"roi_md has participant(s) {unknown[:5]} not in the participants table"
            )
    dwi_set = {p for p in order[:dwi_subjects] if p in set(pids_table)}
    index = pd.DataFrame(
        {
            "participant_id": [p for p, _ in scans],
            "session": [s for _, s in scans],
            "md_path": [md_map_path(p, s) for p, s in scans],
            "dwi_path": [
                _dwi_stem(p, s) + DWI_EXTENSION if p in dwi_set else ""
                for p, s in scans
            ],
        }
    )
    names = ["dataset_description.json", ATLAS_FILENAME, LUT_FILENAME, TISSUE_FILENAME]
    names += index["md_path"].to_list()
    for stem in index["dwi_path"][index["dwi_path"] != ""]:
        base = stem.removesuffix(DWI_EXTENSION)
        names += [stem, base + ".bval", base + ".bvec"]
    description = {
        "Name": "dtitool simulated DTI derivatives",
        "BIDSVersion": "1.9.0",
        "DatasetType": "derivative",
        "GeneratedBy": [
            {
                "Name": "dtitool",
                "Version": __version__,
                "Description": "Synthetic MD maps (and DWI) on the dtitool MNI-grid "
                "phantom; ROI means equal the simulated roi_md table.",
            }
        ],
        "dtitool": {
            "seed": seed,
            "md_unit": MD_UNIT,
            "smoothness_mm": float(smoothness_mm),
            "noise_sd": float(noise_sd),
            "roi_mean_rtol": MD_MAP_RTOL,
            "dwi_subjects": int(dwi_subjects),
            "snr": float(snr),
            **(dict(extra_description) if extra_description else {}),
        },
    }
    description["dtitool"]["gzip"] = gzip_backend()
    # One task per participant's MD maps, and one per DWI (the long ones,
    # handed out first): every scan's streams are its own, so the files are
    # the same whichever worker makes them. A DWI task remakes its scan's MD
    # map from a copy of the map's stream.
    by_pid: dict = {}
    dwi_items = []
    for (pid, ses), row in zip(scans, plan.md, strict=True):
        md_gen, dwi_gen = plan.gens[(pid, ses)]
        if pid in dwi_set:
            dwi_items.append((pid, [(ses, row, copy.deepcopy(md_gen), dwi_gen)]))
        by_pid.setdefault(pid, []).append((ses, row, md_gen, None))
    with atomic_outputs(out_dir, names, force=force, seed=seed,
                        command="write_cohort_images") as tmp:
        (tmp / "dataset_description.json").write_text(
            json.dumps(description, indent=2) + "\n"
        )
        save_phantom_files(phantom, tmp)
        with (open_executor(n_jobs, dask) as ex,
              _progress.bar(progress, len(scans), "images", unit="scan") as bar):
            # Local workers write into the staging folder themselves; a Dask
            # worker (maybe on another machine) sends the bytes back.
            here = None if ex.kind == "dask" else tmp
            write = functools.partial(_write_files, tmp, set())
            tasks = [Task(_participant_files, (Shared("maker"), pid, items, snr,
                                               compresslevel, here, True),
                          write, 0) for pid, items in dwi_items]
            tasks += [Task(_participant_files, (Shared("maker"), pid, items, snr,
                                                compresslevel, here),
                           write, len(items))
                      for pid, items in sorted(by_pid.items())]
            ex.run(tasks, shared={"maker": plan.maker}, progress=bar)
    return index


def _participant_files(maker: _MapMaker, pid: str, items, snr: float,
                       compresslevel: int, folder: Path | None,
                       dwi_only: bool = False
                       ) -> list[tuple[str, bytes | None]]:  # fmt: skip
    """Make the files of one participant's scans: ``(relative path, bytes)``.

    ``items``: per scan ``(session, ROI means, md stream, dwi stream or None)``.
    With ``dwi_only`` only the DWI files (the MD map is made to make them).
    With ``folder`` the files are written there and returned without their
    bytes (None).
    """
    out = _scan_files(maker, pid, items, snr, compresslevel)
    if dwi_only:
        out = [(rel, data) for rel, data in out if "_dwi." in rel]
    if folder is None:
        return out
    _write_files(folder, set(), out)
    return [(rel, None) for rel, _ in out]


def _scan_files(maker, pid, items, snr, compresslevel) -> list[tuple[str, bytes]]:
    out = []
    for ses, row, md_gen, dwi_gen in items:
        md = maker.make(row, md_gen)
        out.append((md_map_path(pid, ses), _nifti_bytes(
            md, maker.phantom.affine, description=f"dtitool MD ({MD_UNIT})",
            compresslevel=compresslevel)))
        if dwi_gen is not None:
            out += _dwi_files(SimulatedScan(pid, ses, md), maker.phantom, snr,
                              dwi_gen, compresslevel)
    return out


def _write_files(folder: Path, made: set, files) -> None:
    for rel, data in files:
        if data is None:  # written by the worker
            continue
        path = folder / rel
        if path.parent not in made:
            path.parent.mkdir(parents=True, exist_ok=True)
            made.add(path.parent)
        path.write_bytes(data)


def _dwi_files(scan: SimulatedScan, phantom: Phantom, snr: float,
               gen: np.random.Generator, compresslevel: int
               ) -> list[tuple[str, bytes]]:  # fmt: skip
    """Return a scan's DWI (.nii), .bval and .bvec: ``(relative path, bytes)``.

    The DWI is not compressed: 126 MB of noise-dominated int16 at 2 mm
    compress by only ~18 % (zlib-ng level 1) for ~0.9 s of CPU to write and
    ~0.3 s to read each scan, which was a third of the demo's imaging time.
    """
    from dtitool.imaging.gradients import bvals_bvecs_text, default_protocol

    bvals, bvecs = default_protocol()
    stem = _dwi_stem(scan.participant_id, scan.session)
    # Scanner-like int16 storage, made in the file's own buffer after its header:
    # no float32 series (252 MB), no int16 copy, no copy of the file's bytes.
    shape = (*phantom.shape, len(bvals))
    head = _nifti_header(shape, np.int16, phantom.affine,
                         description="dtitool simulated DWI")
    raw = bytearray(len(head) + 2 * int(np.prod(shape)))
    raw[: len(head)] = head
    vol = np.ndarray((len(bvals), int(np.prod(phantom.shape))), np.int16,
                     buffer=raw, offset=len(head))
    _dwi_into(vol, scan.md, phantom, bvals, bvecs, snr, gen)
    bval, bvec = bvals_bvecs_text(bvals, bvecs)
    return [(stem + DWI_EXTENSION, raw), (stem + ".bval", bval.encode()),
            (stem + ".bvec", bvec.encode())]
