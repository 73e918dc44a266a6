"""``dtitool simulate``: write a simulated cohort as tables (and optionally images)."""

from __future__ import annotations

import argparse

from dtitool._io import atomic_outputs
from dtitool._progress import Progress
from dtitool.cli._common import (
    add_design_options,
    add_execution_options,
    executor,
    resolve_design,
    run_record,
)

IMAGES_DIR = "derivatives/dtitool"


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``dtitool simulate``."""
    p = subparsers.add_parser(
        "simulate",
        help="simulate a cohort and write its tables",
        description="Simulate a cohort of a study design and write participants.tsv, "
        "roi_md.tsv (observed MD, long form), true_md.tsv (latent true MD, for "
        "teaching), visits.tsv (the schedule) and design.toml (the full design and "
        "seed, to repeat the run). "
        "Prints the design's MD model per ROI (session correlation, dMD "
        "reliability and true change SD per arm) and its scores per arm (observed "
        "change, regression to the mean, response, share at the scale floor).",
    )
    add_design_options(p, what="design.toml")
    p.add_argument("--n", type=int, default=None, help="override the sample size")
    p.add_argument(
        "--replicates",
        type=int,
        default=1,
        metavar="K",
        help="number of replicate trials (K > 1 adds a replicate column)",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument(
        "--images",
        action="store_true",
        help="also write per-scan MD maps (NIfTI), atlas and lookup table under "
        f"DIR/{IMAGES_DIR}/ (needs --replicates 1)",
    )
    p.add_argument(
        "--dwi",
        action="store_true",
        help="with --images, also write 4D DWI (.nii.gz, .bval, .bvec) for the "
        "first --dwi-subjects participants",
    )
    p.add_argument(
        "--dwi-subjects",
        type=int,
        default=None,
        metavar="K",
        help="participants that get DWI (implies --dwi; default with --dwi: 2)",
    )
    p.add_argument(
        "--snr",
        type=float,
        default=30.0,
        help="b=0 SNR in white matter of the DWI (default: 30)",
    )
    p.add_argument("--force", action="store_true",
                   help="replace the outputs of an earlier dtitool run in DIR (only "
                   "files listed in its dtitool-run.json and unchanged since)")
    add_execution_options(p, what="participants' images")
    p.add_argument("--quiet", action="store_true",
                   help="print nothing (no progress, no design summary)")
    return p


def run(args) -> int:
    """Run ``dtitool simulate``."""
    from dtitool.imaging.synthetic import image_seed_sequence, write_cohort_images
    from dtitool.simulate import cohort_files, describe_design, simulate_cohort

    # First: a --design file's [run] table fills the options not given here.
    design, seed = resolve_design(args)
    if args.replicates < 1:
        raise ValueError(
            f"--replicates must be a positive integer; got {args.replicates}"
        )
    dwi = args.dwi or args.dwi_subjects is not None
    if dwi and not args.images:
        raise ValueError("--dwi and --dwi-subjects need --images")
    if args.images and not design.rois:
        raise ValueError(f"--images simulates MD maps of the design's ROIs; "
                         f"{design.name!r} has MRS voxels only "
                         f"({', '.join(design.voxel_names)}), no MD")
    if args.images and args.replicates != 1:
        raise ValueError(
            f"--images writes one cohort's scans; use --replicates 1 (got "
            f"{args.replicates})"
        )
    dwi_subjects = (2 if args.dwi_subjects is None else args.dwi_subjects) if dwi else 0
    if dwi_subjects < 0:
        raise ValueError(f"--dwi-subjects must be >= 0; got {dwi_subjects}")
    header = (
        "Design and seed of a dtitool simulate run; repeat it with\n"
        "  dtitool simulate --design design.toml --out DIR"
    )
    files = cohort_files(design)
    outputs = (*files, IMAGES_DIR) if args.images else files
    prog = Progress(2 if args.images else 1, quiet=args.quiet)
    # Enter first: existing outputs are refused before the simulation.
    with atomic_outputs(args.out, outputs, force=args.force, inputs=[args.design],
                        seed=seed) as tmp:
        what = f"simulating {_count(args.replicates, 'trial')} of {design.name!r}"
        with prog.step(what):
            cohort = simulate_cohort(design, rng=seed, replicates=args.replicates)
            cohort.write(tmp, run=run_record(args, seed), header=header)
        if args.images:
            # Inside the same atomic block: tables and images appear together.
            scans = len(cohort.roi_md[["participant_id", "session"]]
                        .drop_duplicates())
            with (prog.step(f"writing MD maps of {scans} scans"
                            + (f" and DWI of {_count(dwi_subjects, 'participant')}"
                               if dwi_subjects else ""), unit="scan") as bar,
                  executor(args) as ex):
                write_cohort_images(
                    cohort.participants,
                    cohort.roi_md,
                    tmp / IMAGES_DIR,
                    rng=image_seed_sequence(seed),
                    dwi_subjects=dwi_subjects,
                    snr=args.snr,
                    dask=ex,
                    progress=bar,
                )
    if args.quiet:
        return 0
    arms = ", ".join(f"{k} {arm}" for k, arm in
                     zip(design.arm_sizes(), design.arms, strict=True))
    print(
        f"simulated {_count(args.replicates, 'replicate')} of {design.name!r}: n = "
        f"{design.n} ({arms}), visits {', '.join(design.visit_names)}, "
        f"{len(design.rois)} ROIs, seed {seed}"
    )
    print(describe_design(design))
    print(f"wrote {', '.join(outputs)} to {args.out}")
    return 0


def _count(n: int, noun: str) -> str:
    """``1 trial``, ``2 trials``."""
    return f"{n} {noun}{'' if n == 1 else 's'}"
