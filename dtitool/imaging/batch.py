"""Tensor fits of a whole study: every subject-session of a BIDS-like folder.

``dtitool fit-tensor --bids DIR --out DERIVDIR`` finds every diffusion series
``DIR/sub-<label>[/ses-<label>]/dwi/<prefix>_dwi.nii[.gz]`` (with its
``<prefix>_dwi.bval`` and ``.bvec`` beside it), fits the tensor to each in its
brain mask, and writes a BIDS-derivatives tree::

    DERIVDIR/dataset_description.json
    DERIVDIR/tensor_fits.tsv        one row per DWI: voxels fitted, left out...
    DERIVDIR/sub-01/ses-baseline/dwi/sub-01_ses-baseline_model-DTI_param-MD_dwimap.nii.gz
    DERIVDIR/sub-01/ses-baseline/dwi/sub-01_ses-baseline_model-DTI_param-MD_dwimap.json
    ... the same for FA, AD, RD, L1-L3, V1-V3, S0 and SSE
    DERIVDIR/sub-01/ses-baseline/dwi/sub-01_ses-baseline_desc-brain_mask.nii.gz
    DERIVDIR/sub-01/ses-baseline/dwi/sub-01_ses-baseline_desc-brain_mask.json

(:mod:`dtitool.imaging.tensor_maps` lists the maps.) The MD maps are named as
``dtitool extract`` reads them. A brain mask
``<prefix>_desc-brain_mask.nii.gz`` beside a DWI is used as it is; otherwise one
is computed from the b0 volumes (:func:`dtitool.imaging.brainmask.median_otsu`)
and written with the maps. Each DWI is one task
(:mod:`dtitool._executor`): local worker processes or a Dask cluster fit them
in parallel, and the files are the same whichever ran them.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from dtitool import _progress
from dtitool._executor import Task, open_executor

__all__ = [
    "FA_SUFFIX",
    "MASK_SUFFIX",
    "MD_SUFFIX",
    "DwiInput",
    "FittedDwi",
    "dwi_outputs",
    "find_dwi",
    "fit_bids",
    "fit_dwi",
    "fit_outputs",
    "map_files",
]

MD_SUFFIX = "_model-DTI_param-MD_dwimap.nii.gz"
"""Name of a fitted MD map after the DWI's entities (BIDS derivatives)."""

FA_SUFFIX = "_model-DTI_param-FA_dwimap.nii.gz"
"""Name of a fitted FA map after the DWI's entities."""

MASK_SUFFIX = "_desc-brain_mask.nii.gz"
"""Name of a brain mask after the DWI's entities (given beside it, or computed)."""

_DWI_RE = re.compile(r"^(?P<prefix>sub-[A-Za-z0-9]+(?:_[a-z]+-[A-Za-z0-9]+)*)"
                     r"_dwi\.nii(?:\.gz)?$")


@dataclass(frozen=True, slots=True)
class DwiInput:
    """One diffusion series of a BIDS-like folder.

    Parameters
    ----------
    path, bval, bvec : Path
        The 4D DWI and its FSL gradient files.
    mask : Path or None
        A brain mask given beside it (``<prefix>_desc-brain_mask.nii.gz``).
    folder : str
        Its folder relative to the dataset (``sub-01/ses-baseline/dwi``).
    prefix : str
        Its entities (``sub-01_ses-baseline``).
    participant_id, session : str
        ``sub-01`` and ``baseline`` (empty without a session).
    """

    path: Path
    bval: Path
    bvec: Path
    mask: Path | None
    folder: str
    prefix: str
    participant_id: str
    session: str


def find_dwi(bids_dir: str | os.PathLike) -> list[DwiInput]:
    """Every ``sub-*/[ses-*/]dwi/*_dwi.nii[.gz]`` of a folder, sorted.

    Raises
    ------
    ValueError
        If the folder does not exist, holds no DWI, or a DWI lacks its
        ``.bval`` or ``.bvec`` file (the message names it).
    """
    root = Path(bids_dir)
    if not root.is_dir():
        raise ValueError(f"--bids {str(bids_dir)!r} is not a folder")
    found = []
    for pattern in ("sub-*/dwi/*_dwi.nii*", "sub-*/ses-*/dwi/*_dwi.nii*"):
        for path in root.glob(pattern):
            m = _DWI_RE.match(path.name)
            if not m or not path.is_file():
                continue
            prefix = m["prefix"]
            stem = path.parent / f"{prefix}_dwi"
            bval, bvec = Path(f"{stem}.bval"), Path(f"{stem}.bvec")
            for f in (bval, bvec):
                if not f.is_file():
                    raise ValueError(f"DWI {str(path)!r} has no gradient file "
                                     f"{str(f)!r} beside it")
            mask = path.parent / f"{prefix}{MASK_SUFFIX}"
            rel = path.parent.relative_to(root).as_posix()
            parts = rel.split("/")
            session = parts[1][len("ses-"):] if parts[1].startswith("ses-") else ""
            found.append(DwiInput(path=path, bval=bval, bvec=bvec,
                                  mask=mask if mask.is_file() else None,
                                  folder=rel, prefix=prefix,
                                  participant_id=parts[0], session=session))
    if not found:
        raise ValueError(f"no DWI in {str(bids_dir)!r}: expected files like "
                         "sub-01/ses-baseline/dwi/sub-01_ses-baseline_dwi.nii.gz "
                         "with .bval and .bvec beside them")
    return sorted(found, key=lambda d: (d.folder, d.prefix))


def dwi_outputs(name, mask_name: str | None) -> list[str]:
    """Return the names of one fit's files: each map and its sidecar, the mask's.

    ``name(key)`` names the map ``key``; ``mask_name`` is None when the mask
    was given (not written).
    """
    from dtitool.imaging.tensor_maps import TENSOR_MAPS, sidecar_name

    names = []
    for m in TENSOR_MAPS:
        names += [name(m.key), sidecar_name(name(m.key))]
    if mask_name is not None:
        names += [mask_name, sidecar_name(mask_name)]
    return names


def fit_outputs(inputs: Sequence[DwiInput]) -> list[str]:
    """Relative paths of the files :func:`fit_bids` writes for ``inputs``."""
    from dtitool.imaging.tensor_maps import bids_map_name

    names = []
    for d in inputs:
        base = f"{d.folder}/{d.prefix}"
        names += dwi_outputs(functools.partial(bids_map_name, base),
                             None if d.mask is not None else base + MASK_SUFFIX)
    return names


@dataclass(frozen=True, slots=True)
class FittedDwi:
    """A tensor fit of one DWI file, with what its outputs need.

    Parameters
    ----------
    fit : TensorFit
        The fit (:func:`dtitool.imaging.tensor.fit_tensor`).
    image : nibabel image
        The DWI (its affine and header go to the maps).
    computed_mask : ndarray of bool or None
        The brain mask computed for the fit (None when one was given).
    sse : ndarray
        ``fit.sse(data)``: the sum of squared errors per voxel.
    b0_threshold : float
        The fit's b0 threshold (s/mm^2).
    """

    fit: object
    image: object
    computed_mask: np.ndarray | None
    sse: np.ndarray
    b0_threshold: float


def fit_dwi(dwi, bval, bvec, *, mask=None, method: str = "wls",
            b0_threshold: float = 50.0, min_diffusivity="auto") -> FittedDwi:
    """Fit the tensor to one DWI file in its brain mask.

    Parameters
    ----------
    dwi, bval, bvec : path
        The 4D DWI and its FSL gradient files.
    mask : path, optional
        A brain mask on the DWI grid; default a median-Otsu mask of the b0
        volumes (else of the least diffusion-weighted ones).
    method, b0_threshold, min_diffusivity
        As in :func:`dtitool.imaging.tensor.fit_tensor`.

    Returns
    -------
    FittedDwi

    Raises
    ------
    ValueError
        On unreadable or inconsistent input, or no voxel to fit.
    """
    from dtitool.imaging.brainmask import median_otsu
    from dtitool.imaging.gradients import read_bvals_bvecs
    from dtitool.imaging.nifti import check_volumes, load_dwi, load_mask, read_data
    from dtitool.imaging.tensor import fit_tensor

    img = load_dwi(dwi)
    bvals, bvecs = read_bvals_bvecs(bval, bvec, b0_threshold=b0_threshold)
    check_volumes(img, dwi, bvals.shape[0], bval)
    given = None if mask is None else load_mask(mask, img,
                                                like_name=f"DWI {str(dwi)!r}")
    data = read_data(img, str(dwi), "DWI")
    computed = None
    if given is None:
        computed = median_otsu(b0_mean(data, bvals, b0_threshold))
    fit = fit_tensor(data, bvals, bvecs, method=method,
                     mask=given if given is not None else computed,
                     b0_threshold=b0_threshold, min_diffusivity=min_diffusivity)
    if not fit.mask.any():
        raise ValueError(f"DWI {str(dwi)!r} has no voxel with finite, positive "
                         "signal inside the mask; nothing to fit")
    return FittedDwi(fit=fit, image=img, computed_mask=computed,
                     sse=fit.sse(data), b0_threshold=float(b0_threshold))


def b0_mean(data: np.ndarray, bvals: np.ndarray, b0_threshold: float) -> np.ndarray:
    """Mean of the b0 volumes (else of the least weighted ones), float64."""
    # The b0 volumes (else the least weighted ones) show the brain best.
    low = bvals <= b0_threshold
    if not low.any():
        low = bvals == bvals.min()
    return data[..., low].mean(axis=-1, dtype=np.float64)


def map_files(fitted: FittedDwi, name, mask_name: str | None, *,
              sources: dict) -> list[tuple[str, bytes]]:
    """Every map of a fit and its sidecar as ``(name, bytes)``, then the mask's.

    Parameters
    ----------
    fitted : FittedDwi
    name : callable
        ``name(key)``: the file name of map ``key``.
    mask_name : str or None
        Where the computed mask goes (ignored when the mask was given).
    sources : dict
        The input files, named in every sidecar.
    """
    from dtitool.imaging.nifti import map_bytes, mask_bytes
    from dtitool.imaging.tensor_maps import (
        TENSOR_MAPS,
        map_array,
        map_sidecar,
        mask_sidecar,
        sidecar_name,
    )

    fit = fitted.fit
    fit.evecs  # noqa: B018 -- one eigendecomposition for every map, not two
    mask = "given" if fitted.computed_mask is None else "median-otsu"
    files = []
    for m in TENSOR_MAPS:
        path = name(m.key)
        files.append((path, map_bytes(map_array(fit, m.key, fitted.sse),
                                      fitted.image, path)))
        files.append((sidecar_name(path), map_sidecar(
            m.key, fit, mask=mask, sources=sources,
            b0_threshold=fitted.b0_threshold)))
    if fitted.computed_mask is not None and mask_name is not None:
        files.append((mask_name, mask_bytes(fitted.computed_mask, fitted.image,
                                            mask_name)))
        files.append((sidecar_name(mask_name), mask_sidecar(
            sources={k: v for k, v in sources.items() if k != "mask"},
            b0_threshold=fitted.b0_threshold)))
    return files


def fit_counts(fit) -> dict:
    """Voxels fitted and left out or altered (the columns of tensor_fits.tsv)."""
    return {"voxels_fitted": int(fit.mask.sum()),
            "nonfinite_voxels": int(fit.n_nonfinite),
            "no_signal_voxels": int(fit.n_no_signal),
            "floored_eigenvalue_voxels": int(fit.n_clipped),
            "fa_clipped_voxels": int(fit.n_fa_clipped),
            "negative_md_voxels": int(np.count_nonzero(fit.md[fit.mask] < 0))}


def _fit_one(d: DwiInput, method: str, b0_threshold: float, min_diffusivity,
             folder: Path | None) -> tuple[list, dict]:
    """Fit one DWI; return its files ``(relative path, bytes or None)`` and counts.

    With ``folder`` the files are written there (bytes None); a Dask worker,
    maybe on another machine, sends the bytes back instead.
    """
    from dtitool.imaging.tensor_maps import bids_map_name

    fitted = fit_dwi(d.path, d.bval, d.bvec, mask=d.mask, method=method,
                     b0_threshold=b0_threshold, min_diffusivity=min_diffusivity)
    base = f"{d.folder}/{d.prefix}"
    sources = {"DWI": f"{d.folder}/{d.path.name}", "bval": f"{d.folder}/{d.bval.name}",
               "bvec": f"{d.folder}/{d.bvec.name}"}
    if d.mask is not None:
        sources["mask"] = f"{d.folder}/{d.mask.name}"
    files = map_files(fitted, functools.partial(bids_map_name, base),
                      base + MASK_SUFFIX, sources=sources)
    counts = {"participant_id": d.participant_id, "session": d.session,
              "dwi": f"{d.folder}/{d.path.name}",
              "mask": "given" if d.mask is not None else "median-otsu",
              **fit_counts(fitted.fit)}
    if folder is None:
        return files, counts
    for rel, data in files:
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return [(rel, None) for rel, _ in files], counts


def _absolute(d: DwiInput) -> DwiInput:
    """``d`` with full paths (for a worker whose working folder is not ours)."""
    return dataclasses.replace(
        d, path=d.path.absolute(), bval=d.bval.absolute(), bvec=d.bvec.absolute(),
        mask=None if d.mask is None else d.mask.absolute())


def fit_bids(inputs: Sequence[DwiInput], out: str | os.PathLike, *,
             method: str = "wls", b0_threshold: float = 50.0,
             min_diffusivity="auto", n_jobs: int = 1, dask=None,
             progress=None) -> pd.DataFrame:
    """Fit every DWI of ``inputs``; write its maps (and mask) under ``out``.

    Parameters
    ----------
    inputs : sequence of DwiInput
        From :func:`find_dwi`.
    out : path
        The folder to write into (a staging folder of the output protocol).
    method, b0_threshold, min_diffusivity
        As in :func:`dtitool.imaging.tensor.fit_tensor`.
    n_jobs, dask
        Where the fits run (:func:`dtitool._executor.open_executor`); Dask
        workers must see the input files (a shared file system).
    progress : None, bool or bar
        Progress over the DWI (:mod:`dtitool._progress`).

    Returns
    -------
    pandas.DataFrame
        One row per DWI, in input order: ``participant_id, session, dwi, mask,
        voxels_fitted, nonfinite_voxels, no_signal_voxels,
        floored_eigenvalue_voxels, fa_clipped_voxels, negative_md_voxels``.
    """
    out = Path(out)
    rows: list = [None] * len(inputs)

    def keep(i, result):
        files, counts = result
        for rel, data in files:
            if data is not None:
                path = out / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
        rows[i] = counts

    with (open_executor(n_jobs, dask) as ex,
          _progress.bar(progress, len(inputs), "tensor fits", unit="DWI") as bar):
        here = None if ex.kind == "dask" else out
        # A Dask worker has a working folder of its own: it gets full paths.
        todo = [_absolute(d) for d in inputs] if ex.kind == "dask" else inputs
        tasks = [Task(_fit_one, (d, method, float(b0_threshold), min_diffusivity,
                              here),
                      functools.partial(keep, i)) for i, d in enumerate(todo)]
        ex.run(tasks, progress=bar)
    return pd.DataFrame(rows)
