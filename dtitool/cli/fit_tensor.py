"""``dtitool fit-tensor``: fit the tensor to a 4D DWI and write MD and FA maps."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

from dtitool._io import atomic_outputs
from dtitool._progress import Progress
from dtitool.cli._common import add_execution_options, executor
from dtitool.imaging.tensor import METHODS


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``dtitool fit-tensor``."""
    p = subparsers.add_parser(
        "fit-tensor",
        help="fit the diffusion tensor to a 4D DWI (or every DWI of a BIDS "
        "folder) and write MD and FA maps",
        description="Fit the diffusion tensor voxel-wise (vectorised OLS or two-pass "
        "WLS on log signal) to a 4D DWI NIfTI and write PREFIX_MD.nii.gz (mean "
        "diffusivity, mm^2/s) and PREFIX_FA.nii.gz (fractional anisotropy), "
        "float32 with the input's affine and header, as FSL dtifit names them. "
        "Voxels outside the brain mask (--mask, else computed and written as "
        "PREFIX_mask.nii.gz) are 0; FA is clipped to [0, 1]. With --bids DIR, "
        "every DIR/sub-*/[ses-*/]dwi/*_dwi.nii[.gz] (with .bval and .bvec beside "
        "it) is fitted, one task per subject-session (--n-jobs, --dask), into "
        "a BIDS-derivatives tree under --out: *_model-DTI_param-MD_dwimap.nii.gz "
        "(what dtitool extract reads), *_param-FA_dwimap.nii.gz, "
        "*_desc-brain_mask.nii.gz (unless one is beside the DWI), "
        "tensor_fits.tsv and dataset_description.json.",
    )
    p.add_argument("dwi", metavar="DWI.nii.gz", nargs="?",
                   help="4D diffusion-weighted image (or give --bids)")
    p.add_argument("--bids", metavar="DIR",
                   help="fit every sub-*/[ses-*/]dwi/*_dwi.nii[.gz] under DIR "
                   "(each with its .bval and .bvec, and a "
                   "*_desc-brain_mask.nii.gz if there is one); --out is then the "
                   "derivatives folder")
    p.add_argument(
        "--bval", metavar="FILE", help="FSL b-value file (s/mm^2)"
    )
    p.add_argument(
        "--bvec",
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
        "dti/sub-01_FA.nii.gz; with --bids, the derivatives folder",
    )
    p.add_argument("--force", action="store_true",
                   help="replace the outputs of an earlier dtitool run (only files "
                   "listed in its dtitool-run.json and unchanged since)")
    add_execution_options(p, what="subject-sessions of --bids")
    p.add_argument("--quiet", action="store_true",
                   help="print nothing (no progress, no summary)")
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
    if args.bids is not None:
        return _run_bids(args)
    if args.dwi is None:
        raise ValueError("give a DWI (DWI.nii.gz --bval F --bvec F) or --bids DIR")
    missing = [o for o, v in (("--bval", args.bval), ("--bvec", args.bvec))
               if v is None]
    if missing:
        raise ValueError(f"{' and '.join(missing)} required with a DWI "
                         "(FSL gradient files)")
    from dtitool.imaging.batch import fit_dwi
    from dtitool.imaging.nifti import (
        FIT_SUFFIXES,
        MASK_SUFFIX,
        write_fit_maps,
        write_mask,
    )

    out_dir, stem = _split_prefix(args.out)
    names = [stem + s for s in FIT_SUFFIXES]
    if args.mask is None:
        names.append(stem + MASK_SUFFIX)
    prog = Progress(1, quiet=args.quiet)
    # Enter first: existing outputs are refused before the (long) fit.
    with atomic_outputs(out_dir, names, force=args.force,
                        inputs=[args.dwi, args.bval, args.bvec, args.mask]) as tmp:
        with prog.step(f"fitting the tensor ({args.method.upper()}) to {args.dwi}"):
            fit, img, computed = fit_dwi(args.dwi, args.bval, args.bvec,
                                         mask=args.mask, method=args.method,
                                         b0_threshold=args.b0_threshold)
            if computed is not None:
                write_mask(computed, img, tmp / names[2])
            write_fit_maps(fit, img, [tmp / n for n in names[:2]])
    _warn_counts(fit, args.dwi)
    if args.quiet:
        return 0
    n_fit = int(fit.mask.sum())
    how = "the given mask" if args.mask else f"a median-Otsu brain mask ({names[2]})"
    print(
        f"fit-tensor: {args.method.upper()} fit of {n_fit} voxels in {how}; wrote "
        + ", ".join(str(out_dir / n) for n in names)
    )
    return 0


def _run_bids(args: argparse.Namespace) -> int:
    import json

    from dtitool import __version__
    from dtitool._io import write_tsv
    from dtitool.imaging.batch import find_dwi, fit_bids, fit_outputs

    given = [o for o, v in (("DWI", args.dwi), ("--bval", args.bval),
                            ("--bvec", args.bvec), ("--mask", args.mask)) if v]
    if given:
        raise ValueError(f"--bids finds each DWI's files itself; drop {given[0]} "
                         "(a brain mask beside a DWI is named "
                         "<prefix>_desc-brain_mask.nii.gz)")
    inputs = find_dwi(args.bids)
    names = ["dataset_description.json", "tensor_fits.tsv", *fit_outputs(inputs)]
    prog = Progress(1, quiet=args.quiet)
    with atomic_outputs(args.out, names, force=args.force,
                        inputs=[p for d in inputs for p in (d.path, d.bval, d.bvec,
                                                            d.mask) if p]) as tmp:
        with (prog.step(f"fitting the tensor ({args.method.upper()}) to "
                        f"{len(inputs)} DWI", total=len(inputs), unit="DWI") as bar,
              executor(args) as ex):
            table = fit_bids(inputs, tmp, method=args.method,
                             b0_threshold=args.b0_threshold, dask=ex, progress=bar)
        write_tsv(table, tmp / "tensor_fits.tsv")
        description = {
            "Name": "dtitool tensor fits", "BIDSVersion": "1.9.0",
            "DatasetType": "derivative",
            "GeneratedBy": [{"Name": "dtitool", "Version": __version__,
                             "Description": f"{args.method.upper()} tensor fit "
                             "in each DWI's brain mask"}],
            "SourceDatasets": [{"URL": Path(args.bids).resolve().as_uri()}],
        }
        (tmp / "dataset_description.json").write_text(
            json.dumps(description, indent=2) + "\n", encoding="utf-8")
    _warn_table(table)
    if not args.quiet:
        print(f"fit-tensor: {args.method.upper()} fits of {len(inputs)} DWI "
              f"({table['participant_id'].nunique()} participants, "
              f"{int(table['voxels_fitted'].sum())} voxels); wrote {args.out}")
    return 0


def _warn_table(table) -> None:
    """One warning per kind of voxel left out or altered, over every DWI."""
    import warnings

    for col, what in (("nonfinite_voxels", "NaN or infinite signal; left out"),
                      ("no_signal_voxels", "no signal (<= 0 in every volume); "
                       "left out"),
                      ("fa_clipped_voxels", "FA above 1 (a negative eigenvalue), "
                       "clipped to 1"),
                      ("negative_md_voxels", "negative MD (noise-dominated fits, "
                       "kept as fitted)")):
        hit = table[table[col] > 0]
        if len(hit):
            warnings.warn(f"{int(hit[col].sum())} voxel(s) in {len(hit)} of "
                          f"{len(table)} DWI have {what} (tensor_fits.tsv, "
                          f"column {col})", stacklevel=2)


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
