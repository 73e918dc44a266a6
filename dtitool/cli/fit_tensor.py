"""``dtitool fit-tensor``: fit the tensor to a 4D DWI and write MD and FA maps."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from dtitool._io import atomic_outputs
from dtitool.imaging.tensor import METHODS


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


def _split_prefix(prefix: str) -> tuple[Path, str]:
    if prefix.endswith(("/", os.sep)) or Path(prefix).is_dir() or not Path(prefix).name:
        raise ValueError(
            f"--out {prefix!r} is a folder; give a prefix such as "
            f"{os.path.join(prefix.rstrip('/' + os.sep) or '.', 'sub-01')!r}"
        )
    p = Path(prefix)
    return p.parent, p.name


def run(args: argparse.Namespace) -> int:
    """Run ``dtitool fit-tensor``; return the exit code."""
    from dtitool.imaging.gradients import read_bvals_bvecs
    from dtitool.imaging.nifti import (
        FIT_SUFFIXES,
        check_volumes,
        image_data,
        load_dwi,
        load_mask,
        write_fit_maps,
    )
    from dtitool.imaging.tensor import fit_tensor

    out_dir, stem = _split_prefix(args.out)
    names = [stem + s for s in FIT_SUFFIXES]

    img = load_dwi(args.dwi)
    bvals, bvecs = read_bvals_bvecs(args.bval, args.bvec)
    check_volumes(img, args.dwi, bvals.shape[0], args.bval)
    mask = None if args.mask is None else load_mask(
        args.mask, img, like_name=f"DWI {args.dwi!r}")

    # Enter first: existing outputs are refused before the (long) fit.
    with atomic_outputs(out_dir, names, force=args.force) as tmp:
        fit = fit_tensor(
            image_data(img),
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
