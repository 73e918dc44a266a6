"""A deterministic synthetic head in an MNI-like grid, with tissue classes and ROIs.

The phantom is a stand-in for a standard-space brain (MNI152, 2 mm): an
ellipsoidal brain with a cortical gray-matter (GM) shell, white matter (WM)
inside, cerebrospinal fluid (CSF) in a thin subarachnoid layer, the lateral
ventricles and an interhemispheric fissure, and the ROIs of a design at
plausible MNI coordinates and sizes (:func:`roi_placement` states the rule).
Coordinates are world millimetres in RAS+ orientation, so **left is
negative x**, as in MNI space; the voxel axes follow FSL's MNI152 templates
(first voxel axis runs right to left).

Two label images come with it:

- ``tissue``: 0 background, 1 CSF, 2 GM, 3 WM (:data:`TISSUE_NAMES`).
- ``labels``: 0 none, 1..k the ROIs in the order given, described by the
  lookup table ``lut`` (columns ``index``, ``name``; BIDS ``_dseg.tsv`` layout),
  written beside the atlas so that the atlas names its own labels.

Nothing here is random: the phantom depends only on the ROI names and
``resolution``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
from scipy import ndimage

from dtitool._io import atomic_outputs, write_tsv

__all__ = [
    "ATLAS_FILENAME",
    "LUT_FILENAME",
    "TISSUE_FILENAME",
    "TISSUE_NAMES",
    "Phantom",
    "bounding_box",
    "make_lut",
    "make_phantom",
    "roi_placement",
    "save_phantom_files",
    "write_atlas",
]

TISSUE_NAMES = ("background", "CSF", "GM", "WM")
"""Tissue class names; the class code is the position (0 background ... 3 WM)."""

ATLAS_FILENAME = "atlas-dtitool_dseg.nii.gz"
"""File name of the ROI label image (BIDS derivatives ``dseg`` naming)."""

LUT_FILENAME = "atlas-dtitool_dseg.tsv"
"""File name of the ROI lookup table (columns ``index``, ``name``)."""

TISSUE_FILENAME = "atlas-dtitool_label-tissue_dseg.nii.gz"
"""File name of the tissue-class image (0 background, 1 CSF, 2 GM, 3 WM)."""

# World-space field of view of FSL's MNI152 templates (mm): the 2 mm template is
# 91 x 109 x 91 voxels with origin (90, -126, -72) and a flipped x axis.
_FOV_MM = (180.0, 216.0, 180.0)
_ORIGIN_MM = (90.0, -126.0, -72.0)

# Brain ellipsoid (centre, semi-axes) in MNI mm, fitted by eye to the MNI152
# brain mask extent (x -68..68, y -104..72, z -50..80).
_BRAIN_CENTRE = (0.0, -16.0, 14.0)
_BRAIN_AXES = (68.0, 88.0, 66.0)
_CSF_SHELL_MM = 4.0  # subarachnoid CSF outside the brain surface
# GM shell thickness: cortex is 2.5-4.5 mm thick; thicker here to stand in for
# the folding an ellipsoid lacks (brain GM:WM volume ~ 1:2.5 rather than 1:1).
_CORTEX_MM = 6.0

# ROI geometry in MNI mm. Centres from standard atlases (Harvard-Oxford,
# AAL); ellipsoid semi-axes chosen so that volumes match typical adult volumes
# (amygdala ~1.7 cm^3, hippocampus ~3.5 cm^3; see e.g. Brabec et al. 2010,
# Radiology 254:551, for manual volumetry of these structures).
_AMYGDALA = {"centre": (23.0, -4.0, -18.0), "axes": (7.0, 8.0, 7.5)}
_HIPPOCAMPUS = {
    "centre": (28.0, -24.0, -10.0),
    "axes": (5.5, 20.0, 7.5),
    # Long axis tilted so that the tail rises posteriorly (~30 deg from the
    # AC-PC plane), as the real hippocampus does.
    "tilt_deg": 30.0,
}
_VACC = {"centre": (0.0, 28.0, -8.0), "axes": (8.0, 8.0, 8.0)}
# BA10 (frontopolar cortex): the cortical shell in front of y = 58 mm, above
# the orbital surface (BA11, below z ~ -2) and below the superior frontal gyrus,
# off the midline. Only cortex at least ``_ROI_DEPTH_MM`` below the pial
# surface is labelled, as an eroded cortical mask would be: the voxels next to
# CSF carry the most partial volume in real data.
_BA10 = {"y_min": 58.0, "z_range": (-2.0, 26.0), "abs_x_range": (2.0, 30.0)}
_ROI_DEPTH_MM = 3.0
# Lateral ventricles: one ellipsoid per hemisphere beside the midline.
_VENTRICLE = {"centre": (12.0, -12.0, 16.0), "axes": (6.0, 26.0, 9.0)}

# Known structures, by the name a design may give them (lower case; see
# roi_placement for hemisphere prefixes and aliases). "lateral" structures have
# one copy per hemisphere (centre x mirrored); "order" decides which of two
# touching structures wins their shared voxels (the higher is painted later).
# Deep GM centres and sizes are approximate Harvard-Oxford subcortical atlas
# centroids (MNI mm) with ellipsoid semi-axes that give adult volumes of the
# right order (per side: thalamus ~4 cm^3, putamen ~3 cm^3, caudate ~2 cm^3,
# pallidum ~0.6 cm^3, against manual volumetry's ~7, 5, 4 and 1.5 cm^3:
# smaller, so that neighbours barely touch; where they do, "order" decides).
_STRUCTURES = {
    "ba10": {"kind": "cortex", "lateral": True, "order": 0, **_BA10},
    "insula": {"kind": "ellipsoid", "lateral": True, "order": 1,
               "centre": (38.0, 4.0, 2.0), "axes": (5.0, 16.0, 12.0)},
    "hippocampus": {"kind": "ellipsoid", "lateral": True, "order": 2,
                    **_HIPPOCAMPUS},
    "amygdala": {"kind": "ellipsoid", "lateral": True, "order": 3, **_AMYGDALA},
    "thalamus": {"kind": "ellipsoid", "lateral": True, "order": 4,
                 "centre": (11.0, -18.0, 7.0), "axes": (7.0, 15.0, 9.0)},
    "caudate": {"kind": "ellipsoid", "lateral": True, "order": 4,
                "centre": (13.0, 12.0, 10.0), "axes": (4.5, 13.0, 9.0)},
    "putamen": {"kind": "ellipsoid", "lateral": True, "order": 4,
                "centre": (25.0, 2.0, 0.0), "axes": (5.5, 15.0, 9.0)},
    "pallidum": {"kind": "ellipsoid", "lateral": True, "order": 5,
                 "centre": (19.0, -3.0, -1.0), "axes": (3.5, 8.0, 5.0)},
    "vacc": {"kind": "ellipsoid", "lateral": False, "order": 6, **_VACC},
}
_ALIASES = {
    "frontal_pole": "ba10", "frontopolar": "ba10", "hippo": "hippocampus",
    "thalamus_proper": "thalamus", "caudate_nucleus": "caudate",
    "globus_pallidus": "pallidum", "sgacc": "vacc", "subgenual_acc": "vacc",
    "subgenual_cingulate": "vacc",
}
_LEFT = ("l", "left", "lh")
_RIGHT = ("r", "right", "rh")
# Names of no known structure: a sphere of this radius in cortical GM, at the
# first free site of _blob_sites() (order fixed by the golden-angle spiral).
_BLOB_RADIUS_MM = 6.0
_BLOB_SITES = 96


@dataclass(frozen=True, slots=True)
class Phantom:
    """A synthetic head: tissue classes and an ROI atlas on one grid.

    Parameters
    ----------
    tissue : ndarray of int8, shape (X, Y, Z)
        Tissue class per voxel: 0 background, 1 CSF, 2 GM, 3 WM.
    labels : ndarray of int16, shape (X, Y, Z)
        ROI label per voxel: 0 none, ``i`` = ``lut.name[lut.index == i]``.
    affine : ndarray, shape (4, 4)
        Voxel-to-world (MNI mm, RAS+) transform.
    lut : DataFrame
        Lookup table with columns ``index`` (int) and ``name`` (ROI name).
    """

    tissue: np.ndarray
    labels: np.ndarray
    affine: np.ndarray
    lut: pd.DataFrame

    @property
    def shape(self) -> tuple[int, int, int]:
        """Grid shape ``(X, Y, Z)``."""
        return tuple(self.labels.shape)

    @property
    def voxel_volume(self) -> float:
        """Volume of one voxel in mm^3."""
        return float(np.prod(np.linalg.norm(self.affine[:3, :3], axis=0)))

    def roi_volumes(self) -> pd.Series:
        """Volume of each ROI in mm^3, indexed by ROI name (LUT order)."""
        counts = np.bincount(self.labels.ravel(), minlength=self.lut["index"].max() + 1)
        return pd.Series(
            counts[self.lut["index"].to_numpy()] * self.voxel_volume,
            index=pd.Index(self.lut["name"].to_list(), name="roi"),
            name="volume_mm3",
        )

    def roi_centroids(self) -> pd.DataFrame:
        """World (MNI mm) centroid of each ROI: columns x, y, z, indexed by name."""
        idx = self.lut["index"].to_numpy()
        com = ndimage.center_of_mass(np.ones(self.shape), self.labels, idx)
        ijk = np.column_stack([np.asarray(com), np.ones(len(idx))])
        xyz = ijk @ self.affine.T
        return pd.DataFrame(
            xyz[:, :3],
            columns=["x", "y", "z"],
            index=pd.Index(self.lut["name"].to_list(), name="roi"),
        )

    def label_image(self) -> nib.Nifti1Image:
        """Return the ROI atlas as a NIfTI image (int16)."""
        return _label_nifti(self.labels, self.affine)

    def tissue_image(self) -> nib.Nifti1Image:
        """Return the tissue classes as a NIfTI image (int16)."""
        return _label_nifti(self.tissue, self.affine)


def make_lut(roi_names) -> pd.DataFrame:
    """Lookup table of an atlas of ``roi_names``: ``index`` 1..k, ``name``.

    Examples
    --------
    >>> make_lut(["thalamus", "putamen"]).to_dict("list")
    {'index': [1, 2], 'name': ['thalamus', 'putamen']}
    """
    names = _check_roi_names(roi_names)
    return pd.DataFrame({"index": np.arange(1, len(names) + 1), "name": names})


def _check_roi_names(roi_names) -> list[str]:
    if isinstance(roi_names, str) or not hasattr(roi_names, "__iter__"):
        raise TypeError(
            f"roi_names must be a sequence of ROI names, got {roi_names!r}")
    names = list(roi_names)
    if not names:
        raise ValueError("roi_names is empty; an atlas needs at least one ROI")
    for n in names:
        if not isinstance(n, str) or not n.strip() or n != n.strip() or any(
                c in n for c in "\t\n\r"):
            raise ValueError(
                f"ROI name {n!r} must be a non-empty string without tabs, line "
                "breaks or surrounding spaces")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"roi_names repeats {dup}")
    if len(names) > np.iinfo(np.int16).max:
        raise ValueError(f"{len(names)} ROIs do not fit an int16 label image")
    return names


def roi_placement(name: str) -> tuple[str | None, str]:
    """Known structure and hemisphere of an ROI name: the placement rule.

    An ROI is placed by its name: an optional hemisphere prefix or suffix
    (``L_``, ``left_``, ``lh_``, ``R_``, ``right_``, ``rh_``, ``_L``, ``_R``...;
    case, ``-`` and spaces do not matter) and a structure. Known structures
    (``BA10``/``frontal_pole``, ``insula``, ``hippocampus``, ``amygdala``,
    ``thalamus``, ``caudate``, ``putamen``, ``pallidum``, ``vACC``/``sgACC``)
    sit at their approximate MNI place and size, in one hemisphere when the
    name gives one, else in both (as one ROI). Any other name is a 6 mm sphere
    of cortical gray matter at the first free site of a fixed sequence (a
    golden-angle spiral over the cortex, in that hemisphere if given), so that
    the same names always give the same atlas and no two ROIs overlap.

    Returns
    -------
    (structure, side) : tuple
        The known structure's key (None when unknown) and ``"L"``, ``"R"`` or
        ``""`` (both, or the midline).

    Examples
    --------
    >>> roi_placement("L_amygdala"), roi_placement("Right-Thalamus-Proper")
    (('amygdala', 'L'), ('thalamus', 'R'))
    >>> roi_placement("putamen"), roi_placement("dlPFC_R")
    (('putamen', ''), (None, 'R'))
    """
    parts = [p for p in name.replace("-", "_").replace(" ", "_").lower().split("_")
             if p]
    side = ""
    if len(parts) > 1 and parts[0] in _LEFT + _RIGHT:
        side = "L" if parts.pop(0) in _LEFT else "R"
    elif len(parts) > 1 and parts[-1] in _LEFT + _RIGHT:
        side = "L" if parts.pop() in _LEFT else "R"
    key = "_".join(parts)
    key = _ALIASES.get(key, key)
    return (key if key in _STRUCTURES else None), side


def _blob_sites(n: int) -> np.ndarray:
    """Return the directions of the sites of unknown ROIs, in a fixed order.

    A golden-angle (Fibonacci) spiral from the vertex down to z = -0.3 of the
    brain ellipsoid (above the skull base), so neighbouring sites are ~25 mm
    apart on the cortex, more than a blob's diameter.
    """
    k = np.arange(n) + 0.5
    z = 1.0 - 1.3 * k / n
    r = np.sqrt(1.0 - z**2)
    phi = k * np.pi * (3.0 - np.sqrt(5.0))
    return np.column_stack([r * np.cos(phi), r * np.sin(phi), z])


def _grid(resolution: float) -> tuple[tuple[int, int, int], np.ndarray]:
    shape = tuple(round(f / resolution) + 1 for f in _FOV_MM)
    affine = np.diag([-resolution, resolution, resolution, 1.0])
    affine[:3, 3] = _ORIGIN_MM
    return shape, affine


def _ellipsoid(x, y, z, centre, axes) -> np.ndarray:
    return (
        ((x - centre[0]) / axes[0]) ** 2
        + ((y - centre[1]) / axes[1]) ** 2
        + ((z - centre[2]) / axes[2]) ** 2
    ) <= 1.0


def _distance_in_box(mask: np.ndarray, around: np.ndarray, pad: int, fill: float,
                     sampling) -> np.ndarray:
    """``distance_transform_edt(mask)`` inside the box of ``around`` + ``pad``.

    Outside the box the result is ``fill``. Inside it the values are those of
    the whole grid when every voxel of ``mask``'s complement that is nearest
    to a box voxel lies in the box: true when the box holds all of the
    complement near it (``around`` is the complement, or its padding is
    background).
    """
    out = np.full(mask.shape, fill)
    box = bounding_box(around, pad)
    if box is not None:
        out[box] = ndimage.distance_transform_edt(mask[box], sampling=sampling)
    return out


def bounding_box(mask: np.ndarray, pad: int = 0) -> tuple[slice, ...] | None:
    """Slices of the smallest box holding ``mask``'s True voxels, plus ``pad``.

    Clipped to the grid; None when ``mask`` has no True voxel.
    """
    box = []
    for axis, n in enumerate(mask.shape):
        others = tuple(a for a in range(mask.ndim) if a != axis)
        hit = np.flatnonzero(mask.any(axis=others))
        if not hit.size:
            return None
        box.append(slice(max(int(hit[0]) - pad, 0), min(int(hit[-1]) + pad + 1, n)))
    return tuple(box)


def make_phantom(*, roi_names, resolution: float = 2.0) -> Phantom:
    """Build the synthetic head on an MNI152-like grid.

    Parameters
    ----------
    roi_names : sequence of str
        The ROIs of the atlas, labelled 1..k in this order (a design's
        ``roi_names``); each is placed by its name (:func:`roi_placement`).
    resolution : float
        Isotropic voxel size in mm. The field of view is that of FSL's MNI152
        templates, so ``resolution=2`` gives the 91 x 109 x 91 grid with affine
        ``[[-2, 0, 0, 90], [0, 2, 0, -126], [0, 0, 2, -72], [0, 0, 0, 1]]``.
        Coarser grids (e.g. 4 mm) are handy for fast tests.

    Returns
    -------
    Phantom
        Tissue classes, ROI labels, affine and lookup table. Deterministic.

    Raises
    ------
    ValueError
        If ``resolution`` is not a number in [0.5, 8] mm, a name repeats, or
        one ROI covers another entirely (two names of one structure).

    Notes
    -----
    Construction, in world millimetres: the brain is an ellipsoid; the cortex is
    every brain voxel within ``6 mm`` of its surface (Euclidean distance
    transform), WM the rest; a 4 mm CSF layer surrounds the brain; the lateral
    ventricles are ellipsoids either side of the midline and a 2 mm-wide CSF
    interhemispheric fissure lined by cortex splits the frontal and superior
    brain. Amygdala, hippocampus (tilted ellipsoid) and the subgenual / ventral
    anterior cingulate (vACC) and the other known deep structures are GM
    ellipsoids; BA10 is the frontopolar part of the cortical shell below its
    outermost voxel layer (the layer next to CSF); other names are spheres of
    cortex (:func:`roi_placement`). Left ROIs are at negative x.

    Examples
    --------
    >>> ph = make_phantom(roi_names=["L_amygdala", "R_amygdala", "thalamus"])
    >>> ph.shape
    (91, 109, 91)
    >>> bool(ph.roi_centroids().loc["L_amygdala", "x"] < 0)
    True
    >>> ph.lut["index"].tolist()
    [1, 2, 3]
    """
    names = _check_roi_names(roi_names)
    if isinstance(resolution, bool) or not isinstance(
        resolution, (int, float, np.integer, np.floating)
    ):
        raise ValueError(f"resolution must be a number of mm, got {resolution!r}")
    resolution = float(resolution)
    if not 0.5 <= resolution <= 8.0:
        raise ValueError(f"resolution must be in [0.5, 8] mm, got {resolution}")
    shape, affine = _grid(resolution)
    # World coordinates along each axis, broadcast against each other (the
    # same values per voxel as full coordinate grids, without three of them).
    i, j, k = (np.arange(n, dtype=float) for n in shape)
    x = (affine[0, 0] * i + affine[0, 3])[:, None, None]
    y = (affine[1, 1] * j + affine[1, 3])[None, :, None]
    z = (affine[2, 2] * k + affine[2, 3])[None, None, :]
    del i, j, k
    sampling = (resolution,) * 3

    brain = _ellipsoid(x, y, z, _BRAIN_CENTRE, _BRAIN_AXES)
    # Interhemispheric fissure: a CSF sheet at the midline in the frontal and
    # superior brain (where the hemispheres are separated), cut out of the brain
    # before the cortex is defined so that cortex lines the medial walls.
    half = max(resolution / 2.0, 1.0)
    fissure = brain & (np.abs(x) <= half) & ((z > 28.0) | (y > 38.0))
    brain_wo = brain & ~fissure
    # The two distance maps at once: SciPy computes them without the GIL for
    # most of the time (a phantom is built before any image work can start).
    # Each on the part of the grid where it is read: the depth of brain
    # voxels in the brain's box, the distance to the brain up to the CSF
    # shell's width around it (the same values there as on the whole grid).
    from concurrent.futures import ThreadPoolExecutor

    shell = int(np.ceil(_CSF_SHELL_MM / resolution)) + 1
    with ThreadPoolExecutor(max_workers=2) as pool:
        depth, outside = pool.map(
            lambda a: _distance_in_box(*a, sampling),
            ((brain_wo, brain_wo, 1, 0.0), (~brain, brain, shell, np.inf)))

    tissue = np.zeros(shape, dtype=np.int8)
    tissue[(outside > 0) & (outside <= _CSF_SHELL_MM)] = 1
    tissue[brain_wo] = 3
    tissue[brain_wo & (depth <= _CORTEX_MM)] = 2
    tissue[fissure] = 1
    for sign in (1.0, -1.0):
        c = _VENTRICLE["centre"]
        tissue[_ellipsoid(x, y, z, (sign * c[0], c[1], c[2]), _VENTRICLE["axes"])] = 1

    labels = _paint_rois(names, tissue, depth, brain_wo, x, y, z)
    # Every ROI is gray matter.
    tissue[labels > 0] = 2

    for a in (tissue, labels, affine):
        a.setflags(write=False)
    return Phantom(tissue=tissue, labels=labels, affine=affine, lut=make_lut(names))


def _structure_mask(struct: dict, sign: float, tissue, depth, brain_wo, x, y, z):
    """Voxels of one known structure in the hemisphere of ``sign`` (+1 right)."""
    if struct["kind"] == "cortex":
        lo, hi = struct["abs_x_range"]
        zlo, zhi = struct["z_range"]
        m = (tissue == 2) & (y >= struct["y_min"]) & (z >= zlo) & (z <= zhi)
        m &= (np.abs(x) >= lo) & (np.abs(x) <= hi) & (depth >= _ROI_DEPTH_MM)
        return m & (x * sign > 0)
    cx, cy, cz = struct["centre"]
    if "tilt_deg" not in struct:
        return _ellipsoid(x, y, z, (sign * cx, cy, cz), struct["axes"]) & brain_wo
    # Rotated about the x axis so the long (y') axis rises posteriorly.
    t = np.deg2rad(struct["tilt_deg"])
    dx, dy, dz = x - sign * cx, y - cy, z - cz
    yr = dy * np.cos(t) - dz * np.sin(t)
    zr = dy * np.sin(t) + dz * np.cos(t)
    ax = struct["axes"]
    return ((dx / ax[0]) ** 2 + (yr / ax[1]) ** 2 + (zr / ax[2]) ** 2 <= 1.0) & brain_wo


def _paint_rois(names, tissue, depth, brain_wo, x, y, z) -> np.ndarray:
    """Label image of ``names`` (1..k), placed as :func:`roi_placement` says."""
    labels = np.zeros(tissue.shape, dtype=np.int16)
    known, unknown, drawn = [], [], []
    for code, name in enumerate(names, start=1):
        struct, side = roi_placement(name)
        (known if struct else unknown).append((code, name, struct, side))
    # Known structures by their order (a later one wins shared voxels; the
    # amygdala sits just anterior-superior to the hippocampal head), left
    # before right, then design order.
    for code, _, struct, side in sorted(
            known, key=lambda t: (_STRUCTURES[t[2]]["order"], t[0])):
        spec = _STRUCTURES[struct]
        if not spec["lateral"]:
            signs = (0.0,)  # on the midline
        elif side:
            signs = (-1.0,) if side == "L" else (1.0,)
        else:
            signs = (-1.0, 1.0)  # both hemispheres, one ROI
        painted = False
        for sign in signs:
            mask = _structure_mask(spec, sign, tissue, depth, brain_wo, x, y, z)
            labels[mask] = code
            painted |= bool(mask.any())
        if painted:
            drawn.append(code)
    if unknown:
        _paint_blobs(labels, unknown, tissue, depth, x, y, z)
    # A structure painted over by another (two names of one structure) would
    # be an ROI without voxels. (A coarse grid may have none for a thin one,
    # such as BA10 at 8 mm: that is for the caller to decide.)
    counts = np.bincount(labels.ravel(), minlength=len(names) + 1)
    lost = [names[c - 1] for c in drawn if counts[c] == 0]
    if lost:
        raise ValueError(
            f"ROI(s) {lost} lost every voxel to other ROIs in the phantom: two "
            "names of one structure? Rename one (roi_placement gives the rule)")
    return labels


def _paint_blobs(labels, unknown, tissue, depth, x, y, z) -> None:
    """Spheres of cortex for names of no known structure, at free sites."""
    axes = np.asarray(_BRAIN_AXES) - _CORTEX_MM / 2.0
    sites = _blob_sites(_BLOB_SITES) * axes + np.asarray(_BRAIN_CENTRE)
    gm = (tissue == 2) & (depth > 0)
    taken = np.zeros(len(sites), dtype=bool)
    for code, name, _, side in unknown:
        for n, (cx, cy, cz) in enumerate(sites):
            if taken[n] or (side == "L" and cx >= 0) or (side == "R" and cx <= 0):
                continue
            ball = _ellipsoid(x, y, z, (cx, cy, cz), (_BLOB_RADIUS_MM,) * 3)
            if (labels[ball] != 0).any():
                taken[n] = True  # a known structure is there
                continue
            blob = ball & gm
            taken[n] = True
            if blob.any():
                labels[blob] = code
                break
        else:
            raise ValueError(
                f"no free place left in the phantom's cortex for ROI {name!r} "
                f"({_BLOB_SITES} sites for ROIs of no known structure)")


def _label_nifti(data: np.ndarray, affine: np.ndarray) -> nib.Nifti1Image:
    img = nib.Nifti1Image(np.asarray(data, dtype=np.int16), affine)
    img.header.set_xyzt_units("mm")
    # Standard-space (MNI) images: both qform and sform codes 4 (MNI152).
    img.set_sform(affine, code=4)
    img.set_qform(affine, code=4)
    img.header["intent_code"] = 1002  # NIFTI_INTENT_LABEL
    return img


def save_phantom_files(phantom: Phantom, folder: str | os.PathLike) -> list[str]:
    """Write the atlas, its lookup table and the tissue image into ``folder``.

    A low-level helper for writers that manage their own atomic output folder;
    use :func:`write_atlas` otherwise. Returns the file names written
    (:data:`ATLAS_FILENAME`, :data:`LUT_FILENAME`, :data:`TISSUE_FILENAME`).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    nib.save(phantom.label_image(), folder / ATLAS_FILENAME)
    nib.save(phantom.tissue_image(), folder / TISSUE_FILENAME)
    write_tsv(phantom.lut, folder / LUT_FILENAME)
    return [ATLAS_FILENAME, LUT_FILENAME, TISSUE_FILENAME]


def write_atlas(
    out_dir: str | os.PathLike,
    *,
    phantom: Phantom | None = None,
    force: bool = False,
) -> dict[str, Path]:
    """Write the phantom's ROI atlas, lookup table and tissue image.

    Parameters
    ----------
    out_dir : str or path-like
        Destination folder (created if missing).
    phantom : Phantom, optional
        Defaults to ``make_phantom()``.
    force : bool
        Replace the outputs of an earlier dtitool run (files listed in
        the folder's ``dtitool-run.json``, unchanged since).

    Returns
    -------
    dict
        ``{"atlas": path, "lut": path, "tissue": path}``.

    Raises
    ------
    ValueError
        If an output exists and ``force`` is False.
    """
    phantom = make_phantom() if phantom is None else phantom
    names = [ATLAS_FILENAME, LUT_FILENAME, TISSUE_FILENAME]
    with atomic_outputs(out_dir, names, force=force, command="write_atlas") as tmp:
        save_phantom_files(phantom, tmp)
    out = Path(out_dir)
    return {"atlas": out / names[0], "lut": out / names[1], "tissue": out / names[2]}
