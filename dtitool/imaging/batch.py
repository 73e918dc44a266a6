"""Tensor fits of a whole study: every subject-session of a BIDS-like folder.

``dtitool fit-tensor --bids DIR --out DERIVDIR`` finds every diffusion series
``DIR/sub-<label>[/ses-<label>]/dwi/<prefix>_dwi.nii[.gz]`` (with its
``<prefix>_dwi.bval`` and ``.bvec`` beside it), fits the tensor to each in its
brain mask, and writes a BIDS-derivatives tree::

    DERIVDIR/dataset_description.json
    DERIVDIR/tensor_fits.tsv        one row per DWI: voxels fitted, left out...
    DERIVDIR/sub-01/ses-baseline/dwi/sub-01_ses-baseline_model-DTI_param-MD_dwimap.nii.gz
    DERIVDIR/sub-01/ses-baseline/dwi/sub-01_ses-baseline_model-DTI_param-FA_dwimap.nii.gz
    DERIVDIR/sub-01/ses-baseline/dwi/sub-01_ses-baseline_desc-brain_mask.nii.gz

The MD maps are named as ``dtitool extract`` reads them. A brain mask
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
    "find_dwi",
    "fit_bids",
    "fit_dwi",
    "fit_outputs",
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


def fit_outputs(inputs: Sequence[DwiInput]) -> list[str]:
    """Relative paths of the files :func:`fit_bids` writes for ``inputs``."""
    names = []
    for d in inputs:
        base = f"{d.folder}/{d.prefix}"
        names += [base + MD_SUFFIX, base + FA_SUFFIX]
        if d.mask is None:
            names.append(base + MASK_SUFFIX)
    return names


def fit_dwi(dwi, bval, bvec, *, mask=None, method: str = "wls",
            b0_threshold: float = 50.0):
    """Fit the tensor to one DWI file in its brain mask.

    Parameters
    ----------
    dwi, bval, bvec : path
        The 4D DWI and its FSL gradient files.
    mask : path, optional
        A brain mask on the DWI grid; default a median-Otsu mask of the b0
        volumes (else of the least diffusion-weighted ones).
    method, b0_threshold
        As in :func:`dtitool.imaging.tensor.fit_tensor`.

    Returns
    -------
    fit : TensorFit
    img : nibabel image
        The DWI (its header and affine go to the maps).
    computed : ndarray of bool or None
        The mask computed here (None when one was given).

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
        # The b0 volumes (else the least weighted ones) show the brain best.
        low = bvals <= b0_threshold
        if not low.any():
            low = bvals == bvals.min()
        computed = median_otsu(data[..., low].mean(axis=-1, dtype=np.float64))
    fit = fit_tensor(data, bvals, bvecs, method=method,
                     mask=given if given is not None else computed,
                     b0_threshold=b0_threshold)
    if not fit.mask.any():
        raise ValueError(f"DWI {str(dwi)!r} has no voxel with finite, positive "
                         "signal inside the mask; nothing to fit")
    return fit, img, computed


def fit_counts(fit) -> dict:
    """Voxels fitted and left out or altered (the columns of tensor_fits.tsv)."""
    return {"voxels_fitted": int(fit.mask.sum()),
            "nonfinite_voxels": int(fit.n_nonfinite),
            "no_signal_voxels": int(fit.n_no_signal),
            "fa_clipped_voxels": int(fit.n_fa_clipped),
            "negative_md_voxels": int(np.count_nonzero(fit.md[fit.mask] < 0))}


def _fit_one(d: DwiInput, method: str, b0_threshold: float,
             folder: Path | None) -> tuple[list, dict]:
    """Fit one DWI; return its files ``(relative path, bytes or None)`` and counts.

    With ``folder`` the files are written there (bytes None); a Dask worker,
    maybe on another machine, sends the bytes back instead.
    """
    from dtitool.imaging.nifti import fit_map_bytes, mask_bytes

    fit, img, computed = fit_dwi(d.path, d.bval, d.bvec, mask=d.mask,
                                 method=method, b0_threshold=b0_threshold)
    base = f"{d.folder}/{d.prefix}"
    names = [base + MD_SUFFIX, base + FA_SUFFIX]
    files = list(zip(names, fit_map_bytes(fit, img, names), strict=True))
    if computed is not None:
        files.append((base + MASK_SUFFIX, mask_bytes(computed, img,
                                                     base + MASK_SUFFIX)))
    counts = {"participant_id": d.participant_id, "session": d.session,
              "dwi": f"{d.folder}/{d.path.name}",
              "mask": "given" if d.mask is not None else "median-otsu",
              **fit_counts(fit)}
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
             method: str = "wls", b0_threshold: float = 50.0, n_jobs: int = 1,
             dask=None, progress=None) -> pd.DataFrame:
    """Fit every DWI of ``inputs``; write its maps (and mask) under ``out``.

    Parameters
    ----------
    inputs : sequence of DwiInput
        From :func:`find_dwi`.
    out : path
        The folder to write into (a staging folder of the output protocol).
    method, b0_threshold
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
        voxels_fitted, nonfinite_voxels, no_signal_voxels, fa_clipped_voxels,
        negative_md_voxels``.
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
        tasks = [Task(_fit_one, (d, method, float(b0_threshold), here),
                      functools.partial(keep, i)) for i, d in enumerate(todo)]
        ex.run(tasks, progress=bar)
    return pd.DataFrame(rows)
