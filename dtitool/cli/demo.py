"""``dtitool demo``: the whole rehearsal on the default study, ending in a report."""

from __future__ import annotations

import argparse
import sys


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``dtitool demo``."""
    p = subparsers.add_parser(
        "demo",
        help="run the whole rehearsal on the default study and write a report",
        description="Simulate the default ketamine-rct cohort; write MD maps for "
        "every scan and DWI for a few; fit tensors and extract ROI MD from the "
        "images; fit the 14 group x dMD models; run a Monte Carlo power analysis "
        "and the reported-versus-simulated comparison; write DIR/report.html (one "
        "self-contained page) with the tables (TSV) and figures (PNG) it shows. "
        "About a minute on 2 cores.",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    p.add_argument("--replicates", type=int, default=2000,
                   help="Monte Carlo replicates of the power analysis (default 2000)")
    p.add_argument("--curve-replicates", type=int, default=1000,
                   help="replicates per point of the power curves (default 1000)")
    p.add_argument("--dwi-subjects", type=int, default=1,
                   help="participants that also get DWI and a tensor fit (default 1)")
    p.add_argument("--force", action="store_true",
                   help="replace the outputs of an earlier demo run in DIR (only "
                   "files listed in its dtitool-run.json and unchanged since; "
                   "files of yours are kept)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    return p


def run(args) -> int:
    """Run ``dtitool demo``."""
    from dtitool.report.demo import DemoSettings, run_demo

    settings = DemoSettings(seed=args.seed, replicates=args.replicates,
                            curve_replicates=args.curve_replicates,
                            dwi_subjects=args.dwi_subjects)

    def log(line: str) -> None:
        if not args.quiet:
            print(line, flush=True)

    if not args.quiet:
        print("dtitool demo: rehearsing the ketamine-rct trial analysis", flush=True)
    run_demo(args.out, settings=settings, force=args.force, log=log)
    sys.stdout.flush()
    return 0
