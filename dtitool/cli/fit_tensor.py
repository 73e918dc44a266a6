"""``dtitool fit-tensor``: fit the tensor to a 4D DWI and write MD and FA maps."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

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
        "Voxels outside the brain mask (--mask, else computed and written as "
        "PREFIX_mask.nii.gz) are 0; FA is clipped to [0, 1].",
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
        help="3D brain mask on the DWI grid (nonzero = fit); default: a brain "
        "mask computed from the b0 volumes (median filter and Otsu threshold, as "
        "DIPY's median_otsu), written as PREFIX_mask.nii.gz",
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
        help="volumes with b <= B s/mm^2 count as b0 (default: 50): they may "
        "have no direction and make the brain mask; every volume enters the fit "
        "at its actual b-value, as in FSL dtifit and DIPY",
    )
    p.add_argument(
        "--out",
        required=True,
        metavar="PREFIX",
        help="output prefix, e.g. dti/sub-01 writes dti/sub-01_MD.nii.gz and "
        "dti/sub-01_FA.nii.gz",
    )
    p.add_argument("--force", action="store_true",
                   help="replace the outputs of an earlier dtitool run (only files "
                   "listed in its dtitool-run.json and unchanged since)")
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
    from dtitool.imaging.brainmask import median_otsu
    from dtitool.imaging.gradients import read_bvals_bvecs
    from dtitool.imaging.nifti import (
        FIT_SUFFIXES,
        MASK_SUFFIX,
        check_volumes,
        load_dwi,
        load_mask,
        read_data,
        write_fit_maps,
        write_mask,
    )
    from dtitool.imaging.tensor import fit_tensor

    out_dir, stem = _split_prefix(args.out)
    names = [stem + s for s in FIT_SUFFIXES]
    if args.mask is None:
        names.append(stem + MASK_SUFFIX)

    img = load_dwi(args.dwi)
    bvals, bvecs = read_bvals_bvecs(args.bval, args.bvec,
                                    b0_threshold=args.b0_threshold)
    check_volumes(img, args.dwi, bvals.shape[0], args.bval)
    mask = None if args.mask is None else load_mask(
        args.mask, img, like_name=f"DWI {args.dwi!r}")

    # Enter first: existing outputs are refused before the (long) fit.
    with atomic_outputs(out_dir, names, force=args.force,
                        inputs=[args.dwi, args.bval, args.bvec, args.mask]) as tmp:
        data = read_data(img, args.dwi, "DWI")
        if mask is None:
            # The b0 volumes (else the least weighted ones) show the brain best.
            low = bvals <= args.b0_threshold
            if not low.any():
                low = bvals == bvals.min()
            mask = median_otsu(data[..., low].mean(axis=-1, dtype=np.float64))
            write_mask(mask, img, tmp / names[2])
        fit = fit_tensor(
            data,
            bvals,
            bvecs,
            method=args.method,
            mask=mask,
            b0_threshold=args.b0_threshold,
        )
        n_fit = int(fit.mask.sum())
        if n_fit == 0:
            raise ValueError(
                f"DWI {args.dwi!r} has no voxel with finite, positive signal inside "
                "the mask; nothing to fit"
            )
        write_fit_maps(fit, img, [tmp / n for n in names[:2]])
    _warn_counts(fit, args.dwi)
    how = "the given mask" if args.mask else f"a median-Otsu brain mask ({names[2]})"
    print(
        f"fit-tensor: {args.method.upper()} fit of {n_fit} voxels in {how}; wrote "
        + ", ".join(str(out_dir / n) for n in names)
    )
    return 0


def _warn_counts(fit, dwi: str) -> None:
    """One warning per kind of voxel that was left out or altered."""
    import warnings

    if fit.n_nonfinite:
        warnings.warn(f"{fit.n_nonfinite} voxel(s) of {dwi!r} inside the mask have "
                      "NaN or infinite signal; left out (0 in the maps)", stacklevel=2)
    if fit.n_no_signal:
        warnings.warn(f"{fit.n_no_signal} voxel(s) of {dwi!r} inside the mask have "
                      "no signal (<= 0 in every volume); left out (0 in the maps)",
                      stacklevel=2)
    if fit.n_fa_clipped:
        warnings.warn(f"FA clipped to 1 in {fit.n_fa_clipped} voxel(s) whose fitted "
                      "tensor has a negative eigenvalue (noise-dominated)",
                      stacklevel=2)
    n_neg = int(np.count_nonzero(fit.md[fit.mask] < 0))
    if n_neg:
        warnings.warn(f"{n_neg} fitted voxel(s) have negative MD (noise-dominated "
                      "fits, kept as fitted)", stacklevel=2)
