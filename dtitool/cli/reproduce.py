"""``dtitool reproduce``: reported versus simulated, test by test.

Simulates the design (default the ``ketamine-rct`` preset) and sets the median p
and the power of every reported test (and every expected null) beside what
Kopelman et al. (2023) reported, with the effect each reported p implies
(:mod:`dtitool.stats.reproduce`).
"""

from __future__ import annotations

import argparse

from dtitool._io import atomic_outputs, write_tsv
from dtitool.cli.power import add_design_arguments, resolve


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``dtitool reproduce``."""
    p = subparsers.add_parser(
        "reproduce",
        help="compare simulated trials with the reported findings",
        description="Simulate replicate trials and write DIR/reproduce.tsv: per "
        "reported test (and expected null) of Kopelman et al. 2023, roi, outcome, "
        "term, reported_p, median_p (over replicates) and power (reported tests: "
        "p <= alpha with the reported sign; nulls: p <= alpha, the false-positive "
        "rate), then direction, the reported range, a verdict and the effect the "
        "reported p implies at the design's dMD reliability. Prints reported "
        "versus simulated side by side.",
    )
    add_design_arguments(p)
    return p


def run(args) -> int:
    """Run ``dtitool reproduce``."""
    from dtitool.stats.power import power
    from dtitool.stats.reference import reported_family
    from dtitool.stats.reproduce import reproduce_summary, reproduce_table

    design, seed = resolve(args)
    family = reported_family(design)
    families = {"reported": family} if family else None
    with atomic_outputs(args.out, ["reproduce.tsv"], force=args.force,
                        inputs=[args.design], seed=seed) as tmp:
        res = power(design, replicates=args.replicates, rng=seed, alpha=args.alpha,
                    n_jobs=args.n_jobs, chunk_size=args.chunk_size,
                    families=families, progress=False if args.quiet else None)
        table = reproduce_table(res)
        write_tsv(table, tmp / "reproduce.tsv")
    if not args.quiet:
        print(reproduce_summary(table, res))
        print(f"wrote reproduce.tsv to {args.out}")
    return 0
