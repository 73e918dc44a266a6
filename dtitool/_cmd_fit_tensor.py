"""``dtitool fit-tensor``: fit the tensor to a 4D DWI and write MD and FA maps."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import nibabel as nib
import numpy as np

from dtitool._io import atomic_outputs
from dtitool.gradients import read_bvals_bvecs
from dtitool.tensor import METHODS, fit_tensor

OUTPUT_SUFFIXES = ("_MD.nii.gz", "_FA.nii.gz")
"""Output names after the prefix, as FSL ``dtifit`` writes them."""


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``dtitool fit-tensor``."""
    p = subparsers.add_parser(
        "fit-tensor",
        help="fit the diffusion tensor to a 4D DWI and write MD and FA maps",
        description="Fit the diffusion tensor voxel-wise (vectorised OLS or two-pass "
        "WLS on log signal) to a 4D DWI NIfTI and write PREFIX_MD.nii.gz (mean "
        "diffusivity, mm^2/s) and PREFIX_FA.nii.gz (fractional anisotropy), "
        "float32 with the input's affine and header, as FSL dtifit names them. "
        "Voxels outside --mask are 0.",
    )
    p.add_argument("dwi", metavar="DWI.nii.gz", help="4D diffusion-weighted image")
    p.add_argument(
        "--bval", required=True, metavar="FILE", help="FSL b-value file (s/mm^2)"
    )
    p.add_argument(
        "--bvec",
        required=True,
        metavar="FILE",
        help="FSL b-vector file (3 rows of K numbers, or K rows of 3)",
    )
    p.add_argument(
        "--mask",
        metavar="MASK.nii.gz",
        help="3D brain mask on the DWI grid (nonzero = fit); default: every voxel",
    )
    p.add_argument(
        "--method",
        choices=METHODS,
        default="wls",
        help="wls: weights from the OLS-predicted signal, as FSL dtifit --wls and "
        "DIPY (default); ols: ordinary least squares on log signal",
    )
    p.add_argument(
        "--b0-threshold",
        type=float,
        default=50.0,
        metavar="B",
        help="volumes with b <= B s/mm^2 count as b0 (default: 50)",
    )
    p.add_argument(
        "--out",
        required=True,
        metavar="PREFIX",
        help="output prefix, e.g. dti/sub-01 writes dti/sub-01_MD.nii.gz and "
        "dti/sub-01_FA.nii.gz",
    )
    p.add_argument("--force", action="store_true", help="overwrite existing outputs")
    return p


def _load_nifti(path: str, what: str):
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


def _split_prefix(prefix: str) -> tuple[Path, str]:
    if prefix.endswith(("/", os.sep)) or Path(prefix).is_dir() or not Path(prefix).name:
        raise ValueError(
            f"--out {prefix!r} is a folder; give a prefix such as "
            f"{os.path.join(prefix.rstrip('/' + os.sep) or '.', 'sub-01')!r}"
        )
    p = Path(prefix)
    return p.parent, p.name


def write_fit_maps(fit, like: nib.Nifti1Image, paths) -> None:
    """Write ``fit.md`` and ``fit.fa`` to ``paths`` as float32 NIfTI.

    The images keep the affine and header of ``like`` (the DWI), with the
    scaling and display range reset for the new data, as FSL dtifit does.
    """
    for path, arr in zip(paths, (fit.md, fit.fa), strict=True):
        out = nib.Nifti1Image(arr.astype(np.float32), like.affine,
                              header=like.header.copy())
        out.set_data_dtype(np.float32)
        out.header.set_slope_inter(1.0, 0.0)
        out.header["cal_min"] = 0.0
        out.header["cal_max"] = 0.0
        out.to_filename(path)


def run(args: argparse.Namespace) -> int:
    """Run ``dtitool fit-tensor``; return the exit code."""
    out_dir, stem = _split_prefix(args.out)
    names = [stem + s for s in OUTPUT_SUFFIXES]

    img = _load_nifti(args.dwi, "DWI")
    if img.ndim != 4:
        raise ValueError(
            f"DWI {args.dwi!r} has shape {img.shape}; expected a 4D image "
            "(x, y, z, volumes)"
        )
    bvals, bvecs = read_bvals_bvecs(args.bval, args.bvec)
    if img.shape[3] != bvals.shape[0]:
        raise ValueError(
            f"DWI {args.dwi!r} has {img.shape[3]} volumes but {args.bval!r} has "
            f"{bvals.shape[0]} b-values"
        )
    mask = None
    if args.mask is not None:
        mimg = _load_nifti(args.mask, "mask")
        mshape = mimg.shape[:3] if mimg.ndim == 4 and mimg.shape[3] == 1 else mimg.shape
        if mshape != img.shape[:3]:
            raise ValueError(
                f"mask {args.mask!r} has shape {mimg.shape} but DWI {args.dwi!r} has "
                f"grid {img.shape[:3]}; the mask must be on the DWI grid"
            )
        if not np.allclose(mimg.affine, img.affine, atol=1e-4):
            raise ValueError(
                f"mask {args.mask!r} has affine {mimg.affine.tolist()} but DWI "
                f"{args.dwi!r} has affine {img.affine.tolist()}; the mask must be "
                "on the DWI grid"
            )
        m = np.asanyarray(mimg.dataobj).reshape(mshape)
        if not np.all(np.isfinite(m)):
            raise ValueError(f"mask {args.mask!r} contains NaN or infinite values")
        mask = m != 0
        if not mask.any():
            raise ValueError(f"mask {args.mask!r} has no nonzero voxel")

    # Enter first: existing outputs are refused before the (long) fit.
    with atomic_outputs(out_dir, names, force=args.force) as tmp:
        fit = fit_tensor(
            np.asanyarray(img.dataobj),
            bvals,
            bvecs,
            method=args.method,
            mask=mask,
            b0_threshold=args.b0_threshold,
        )
        write_fit_maps(fit, img, [tmp / n for n in names])
    n_fit = int(fit.mask.sum())
    print(
        f"fit-tensor: {args.method.upper()} fit of {n_fit} voxels; wrote "
        + ", ".join(str(out_dir / n) for n in names)
    )
    return 0
