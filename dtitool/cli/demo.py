"""``dtitool demo``: the whole rehearsal on a design, ending in a report."""

from __future__ import annotations

import argparse
import sys

from dtitool._progress import Progress
from dtitool.cli._common import n_jobs


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``dtitool demo``."""
    p = subparsers.add_parser(
        "demo",
        help="run the whole rehearsal on a design and write a report",
        description="Simulate a cohort of a design (default the ketamine-rct "
        "preset); write MD maps for every scan and DWI for a few; fit tensors and "
        "extract ROI MD from the images; fit the group x dMD models; run a Monte "
        "Carlo power analysis and, for designs with the reference study's ROIs "
        "and outcomes, the reported-versus-simulated comparison (all under welch "
        "inference, the default of analyze and power: each arm fitted on its own, "
        "valid when the arms' variances differ); write "
        "DIR/report.html (one self-contained page, labelled by the design's own "
        "name) with the tables (TSV) and figures (PNG) it shows.",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--preset", default="ketamine-rct",
                   help="preset design (default: ketamine-rct)")
    p.add_argument("--design", metavar="FILE.toml",
                   help="design file (overrides --preset)")
    p.add_argument("--seed", type=int, default=None,
                   help="random seed (default: the design file's [run] seed, else 7)")
    p.add_argument("--replicates", type=int, default=2000,
                   help="Monte Carlo replicates of the power analysis (default 2000)")
    p.add_argument("--curve-replicates", type=int, default=300,
                   help="replicates per n of the sample-size search and per point "
                   "of the power curves (default 300: power within +-0.057, 95%%, "
                   "at each n; the report states the n's Monte Carlo interval)")
    p.add_argument("--dwi-subjects", type=int, default=1,
                   help="participants that also get DWI and a tensor fit (default 1)")
    p.add_argument("--force", action="store_true",
                   help="replace the outputs of an earlier demo run in DIR (only "
                   "files listed in its dtitool-run.json and unchanged since; "
                   "files of yours are kept)")
    p.add_argument("--n-jobs", type=int, default=None, metavar="N",
                   help="worker processes of each of the demo's two lanes (images, "
                   "Monte Carlo; default -1: one per CPU); outputs do not "
                   "depend on it")
    p.add_argument("--quiet", action="store_true",
                   help="print nothing (no progress, no summary)")
    return p


def run(args) -> int:
    """Run ``dtitool demo``."""
    from dtitool.design import load_preset, read_design
    from dtitool.pipeline import DemoSettings, run_demo

    if args.design:
        design, run_table = read_design(args.design)
        origin = f"design file {args.design}"
    else:
        design, run_table = load_preset(args.preset), {}
        origin = f"preset {args.preset}"
    seed = args.seed if args.seed is not None else run_table.get("seed", 7)
    settings = DemoSettings(seed=seed, replicates=args.replicates,
                            curve_replicates=args.curve_replicates,
                            dwi_subjects=args.dwi_subjects)

    prog = Progress(quiet=args.quiet)
    if not design.rois:
        raise ValueError(f"dtitool demo rehearses a DTI trial (MD maps, tensor fit, "
                         f"ROI MD); {design.name!r} has MRS voxels only "
                         f"({', '.join(design.voxel_names)}): use dtitool simulate, "
                         "analyze and power --model imaging")
    prog.note(f"dtitool demo: rehearsing the {design.name!r} design ({origin})")
    run_demo(args.out, design=design, origin=origin, settings=settings,
             force=args.force, progress=prog, n_jobs=n_jobs(args),
             inputs=(args.design,) if args.design else ())
    sys.stdout.flush()
    return 0
