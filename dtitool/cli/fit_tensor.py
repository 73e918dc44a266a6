"""``dtitool fit-tensor``: fit the tensor to a 4D DWI and write its maps.

MD, FA, AD, RD, the eigenvalues L1-L3, the eigenvectors V1-V3, S0 and the sum
of squared errors, each with a JSON sidecar, named as FSL ``dtifit`` names them
after ``--out PREFIX`` or as BIDS derivatives with ``--bids``
(:mod:`dtitool.imaging.tensor_maps`).
"""

from __future__ import annotations

import argparse
import functools
import math
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
        "folder) and write its maps (MD, FA, AD, RD, eigenvalues, eigenvectors, "
        "S0, residual)",
        description="Fit the diffusion tensor voxel-wise (vectorised OLS or two-pass "
        "WLS on log signal) to a 4D DWI NIfTI and write its maps as FSL dtifit "
        "names them: PREFIX_MD.nii.gz (mean diffusivity, mm^2/s), PREFIX_FA, "
        "PREFIX_AD and PREFIX_RD (axial and radial diffusivity), PREFIX_L1-L3 "
        "(eigenvalues), PREFIX_V1-V3 (eigenvectors, 4D), PREFIX_S0 and "
        "PREFIX_sse (sum of squared errors of the fit), float32 with the input's "
        "affine and header, each with a JSON sidecar (PREFIX_MD.json: what it "
        "holds, units, how it was computed). Eigenvalues below a minimum "
        "diffusivity are raised to it, as DIPY does (--min-diffusivity). Voxels "
        "outside the brain mask (--mask, else computed and written as "
        "PREFIX_mask.nii.gz) are 0. With --bids DIR, every "
        "DIR/sub-*/[ses-*/]dwi/*_dwi.nii[.gz] (with .bval and .bvec beside it) is "
        "fitted, one task per subject-session (--n-jobs, --dask), into a "
        "BIDS-derivatives tree under --out: *_model-DTI_param-MD_dwimap.nii.gz "
        "(what dtitool extract reads), param-FA, -AD, -RD, -L1..L3, -V1..V3, -S0 "
        "and -SSE, each with its .json, *_desc-brain_mask.nii.gz (unless one is "
        "beside the DWI), tensor_fits.tsv and dataset_description.json.",
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
        "--min-diffusivity",
        type=_min_diffusivity,
        default="auto",
        metavar="auto|none|D",
        help="eigenvalues below this are raised to it before MD, FA, AD and RD: "
        "auto (default) as DIPY's TensorModel, 1e-6 / the largest b-matrix "
        "element (about 1e-9 mm^2/s at b = 1000); none keeps them as fitted "
        "(MD = trace / 3, as FSL dtifit reports it); or a value in "
        "mm^2/s",
    )
    p.add_argument(
        "--out",
        required=True,
        metavar="PREFIX",
        help="output prefix, e.g. dti/sub-01 writes dti/sub-01_MD.nii.gz, "
        "dti/sub-01_FA.nii.gz, ...; with --bids, the derivatives folder",
    )
    p.add_argument("--force", action="store_true",
                   help="replace the outputs of an earlier dtitool run (only files "
                   "listed in its dtitool-run.json and unchanged since)")
    add_execution_options(p, what="subject-sessions of --bids")
    p.add_argument("--quiet", action="store_true",
                   help="print nothing (no progress, no summary)")
    return p


def _min_diffusivity(text: str):
    """Parse ``--min-diffusivity``: ``auto``, ``none`` or a number >= 0."""
    low = text.strip().lower()
    if low in ("auto", "none"):
        return None if low == "none" else "auto"
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is None or not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(
            f"must be auto, none or a number >= 0 in mm^2/s; got {text!r}")
    return value


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
    from dtitool.imaging.batch import dwi_outputs, fit_dwi, map_files
    from dtitool.imaging.nifti import MASK_SUFFIX
    from dtitool.imaging.tensor_maps import fsl_map_name

    out_dir, stem = _split_prefix(args.out)
    name = functools.partial(fsl_map_name, stem)
    mask_name = None if args.mask is not None else stem + MASK_SUFFIX
    names = dwi_outputs(name, mask_name)
    sources = {"DWI": Path(args.dwi).name, "bval": Path(args.bval).name,
               "bvec": Path(args.bvec).name}
    if args.mask is not None:
        sources["mask"] = Path(args.mask).name
    prog = Progress(1, quiet=args.quiet)
    # Enter first: existing outputs are refused before the (long) fit.
    with atomic_outputs(out_dir, names, force=args.force,
                        inputs=[args.dwi, args.bval, args.bvec, args.mask]) as tmp:
        with prog.step(f"fitting the tensor ({args.method.upper()}) to {args.dwi}"):
            fitted = fit_dwi(args.dwi, args.bval, args.bvec, mask=args.mask,
                             method=args.method, b0_threshold=args.b0_threshold,
                             min_diffusivity=args.min_diffusivity)
            for rel, data in map_files(fitted, name, mask_name, sources=sources):
                (tmp / rel).write_bytes(data)
    fit = fitted.fit
    _warn_counts(fit, args.dwi)
    if args.quiet:
        return 0
    n_fit = int(fit.mask.sum())
    how = ("the given mask" if args.mask else
           f"a median-Otsu brain mask ({mask_name})")
    floored = (f"; {fit.n_clipped} with an eigenvalue raised to "
               f"{fit.min_diffusivity:.3g} mm^2/s" if fit.n_clipped else "")
    print(
        f"fit-tensor: {args.method.upper()} fit of {n_fit} voxels in {how}"
        f"{floored}; wrote {len(names)} files to {out_dir}: "
        + ", ".join(n for n in names if n.endswith(".nii.gz"))
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
                             b0_threshold=args.b0_threshold,
                             min_diffusivity=args.min_diffusivity, dask=ex,
                             progress=bar)
        write_tsv(table, tmp / "tensor_fits.tsv")
        description = {
            "Name": "dtitool tensor fits", "BIDSVersion": "1.9.0",
            "DatasetType": "derivative",
            "GeneratedBy": [{"Name": "dtitool", "Version": __version__,
                             "Description": f"{args.method.upper()} tensor fit "
                             "in each DWI's brain mask; each map's .json says "
                             "how it was computed"}],
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
