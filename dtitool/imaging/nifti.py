"""NIfTI input and output shared by the commands and the demo.

Reading checks what a researcher's file must be before any array is touched
(exists, is NIfTI, has the expected dimensionality, lies on the expected grid);
writing keeps the reference image's affine and header, as FSL ``dtifit`` does.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np

__all__ = [
    "FIT_SUFFIXES",
    "check_volumes",
    "image_data",
    "load_dwi",
    "load_mask",
    "load_nifti",
    "write_fit_maps",
]

FIT_SUFFIXES = ("_MD.nii.gz", "_FA.nii.gz")
"""Names of the fitted maps after the output prefix, as FSL ``dtifit`` writes them."""


def load_nifti(path: str | os.PathLike, what: str):
    """Load a NIfTI image lazily, turning every failure into one ValueError.

    Parameters
    ----------
    path : str or path-like
    what : str
        What the image is, for the message (``"DWI"``, ``"mask"``).

    Returns
    -------
    nibabel.Nifti1Image or nibabel.Nifti2Image
    """
    path = str(path)
    if not Path(path).is_file():
        raise ValueError(f"{what} {path!r} does not exist or is not a file")
    try:
        img = nib.load(path)
    except Exception as e:  # nibabel raises several types for unreadable files
        raise ValueError(f"cannot read {what} {path!r} as NIfTI: {e}") from None
    if not isinstance(img, nib.Nifti1Image | nib.Nifti2Image):
        raise ValueError(
            f"{what} {path!r} is a {type(img).__name__}, not a NIfTI image"
        )
    return img


def load_dwi(path: str | os.PathLike):
    """Load a 4D DWI lazily (see :func:`check_volumes` for the gradient table)."""
    img = load_nifti(path, "DWI")
    if img.ndim != 4:
        raise ValueError(
            f"DWI {str(path)!r} has shape {img.shape}; expected a 4D image "
            "(x, y, z, volumes)"
        )
    return img


def check_volumes(img, path, n_bvals: int, bval_path) -> None:
    """Raise if the DWI ``img`` does not have one volume per b-value."""
    if img.shape[3] != n_bvals:
        raise ValueError(
            f"DWI {str(path)!r} has {img.shape[3]} volumes but {str(bval_path)!r} "
            f"has {n_bvals} b-values"
        )


def image_data(img) -> np.ndarray:
    """Return the image's voxel array in its stored type (scaling applied)."""
    return np.asanyarray(img.dataobj)


def load_mask(path: str | os.PathLike, like, *, like_name: str = "the image"
              ) -> np.ndarray:
    """Load a brain mask on the grid of image ``like``; return it as booleans.

    ``like_name`` names ``like`` in messages (e.g. ``"DWI 'sub-01_dwi.nii.gz'"``).

    Raises
    ------
    ValueError
        If the mask is not on ``like``'s grid (shape and affine), holds NaN or
        infinite values, or has no nonzero voxel.
    """
    path = str(path)
    mimg = load_nifti(path, "mask")
    mshape = mimg.shape[:3] if mimg.ndim == 4 and mimg.shape[3] == 1 else mimg.shape
    if mshape != like.shape[:3]:
        raise ValueError(
            f"mask {path!r} has shape {mimg.shape} but {like_name} has grid "
            f"{like.shape[:3]}; the mask must be on that grid"
        )
    if not np.allclose(mimg.affine, like.affine, atol=1e-4):
        raise ValueError(
            f"mask {path!r} has affine {mimg.affine.tolist()} but {like_name} has "
            f"affine {like.affine.tolist()}; the mask must be on that grid"
        )
    m = np.asanyarray(mimg.dataobj).reshape(mshape)
    if not np.all(np.isfinite(m)):
        raise ValueError(f"mask {path!r} contains NaN or infinite values")
    mask = m != 0
    if not mask.any():
        raise ValueError(f"mask {path!r} has no nonzero voxel")
    return mask


def write_fit_maps(fit, like, paths: Sequence[str | os.PathLike]) -> None:
    """Write ``fit.md`` and ``fit.fa`` to ``paths`` as float32 NIfTI.

    Parameters
    ----------
    fit : TensorFit
        A fit from :func:`dtitool.imaging.tensor.fit_tensor`.
    like : nibabel image
        The DWI the fit came from: its affine and header are kept, with the
        scaling and display range reset for the new data, as FSL dtifit does.
    paths : sequence of two paths
        Where to write MD (mm^2/s) and FA.
    """
    for path, arr in zip(paths, (fit.md, fit.fa), strict=True):
        out = nib.Nifti1Image(arr.astype(np.float32), like.affine,
                              header=like.header.copy())
        out.set_data_dtype(np.float32)
        out.header.set_slope_inter(1.0, 0.0)
        out.header["cal_min"] = 0.0
        out.header["cal_max"] = 0.0
        out.to_filename(path)
