"""``dtitool reproduce``: reported versus simulated, test by test, in two worlds.

Simulates the design (default the ``ketamine-rct`` preset) and sets the median p
and the power of every reported test (and every expected null) beside what
Kopelman et al. (2023) reported, under the reported analysis (``ols`` unless
``--inference`` says otherwise) with the same trials under ``welch`` beside it
(valid when the arms' variances differ, as they do here), the effect each
reported p implies, the power of the same tests in a second world (by default
the other of ``ketamine-rct`` and ``ketamine-rct-face-value``), what a reported
p that the design misses would need, and notes on reading the results
(:mod:`dtitool.stats.reproduce`). Writes ``reproduce.tsv`` and ``design.toml``
(design, seed and options: ``dtitool reproduce --design design.toml`` repeats
the run).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

from dtitool._io import atomic_outputs, write_tsv
from dtitool._progress import Progress
from dtitool.cli._common import executor, n_jobs, run_design_text
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
        "rate), then direction, the reported range, a verdict, the effect the "
        "reported p implies at the design's dMD reliability, the same test's "
        "median p and power in a second world (other_world, other_median_p, "
        "other_power), and for a reported test the design misses, what it would "
        "need (needed_*, leaves_range: which parameter would have to leave its "
        "range, and by how much); then each test's size (its rejection rate in "
        "the design's null counterpart) and design analysis (type_s, "
        "exaggeration, and half_effect_*: what a significant estimate would "
        "exaggerate if the true effect were half the face-value one), and the "
        "same trials under a second analysis (alt_inference, alt_median_p, "
        "alt_power, alt_size, alt_size_ok: welch beside the reported ols, ols "
        "beside welch). Prints both worlds and both analyses side by side with "
        "notes on reading the results, and writes DIR/design.toml (design, seed "
        "and options; --design DIR/design.toml repeats the run). --inference "
        "defaults to ols, the analysis the study reported, whose tests are off "
        "their level when the arms' variances differ (welch is not). A design "
        "without the "
        "reported study's ROIs, outcomes or two arms is an error (exit 2, one "
        "line, nothing written): the reported findings belong to another design; "
        "use dtitool power or dtitool demo for it.",
    )
    add_design_arguments(p, inference="ols")
    p.add_argument("--compare", metavar="PRESET", default=None,
                   help="the world to set beside the design (a preset name, or "
                   "'none'); default: ketamine-rct-face-value, or ketamine-rct when "
                   "the design is the face-value world")
    return p


def run(args) -> int:
    """Run ``dtitool reproduce``."""
    from dtitool.design import load_preset
    from dtitool.stats.power import MonteCarlo, power, size_warning
    from dtitool.stats.reference import reference_mismatch, reported_families
    from dtitool.stats.reproduce import (
        add_needed,
        alternative_inference,
        compare_inference,
        compare_worlds,
        other_world,
        reproduce_report,
        reproduce_table,
    )

    design, seed = resolve(args)
    mismatch = reference_mismatch(design)
    if mismatch:  # before any work: nothing to compare, nothing written
        raise ValueError(mismatch)
    other = None
    if args.compare != "none":
        other = load_preset(args.compare or other_world(design))
    families = reported_families(design) or None
    alt = alternative_inference(args.inference)
    prog = Progress(2 + (other is not None), quiet=args.quiet)
    R = args.replicates
    # checked before anything is written; n_jobs becomes the executor's workers
    settings = MonteCarlo(replicates=R, alpha=args.alpha, inference=args.inference,
                          rng=seed, n_jobs=n_jobs(args), chunk_size=args.chunk_size)
    with (atomic_outputs(args.out, ["reproduce.tsv", "design.toml"],
                         force=args.force, inputs=[args.design], seed=seed) as tmp,
          executor(args) as ex):
        kw = {"settings": dataclasses.replace(settings, n_jobs=ex.workers),
              "dask": ex}
        with prog.step(f"power of {design.name!r}: {R} trials and {R} of its null "
                       "counterpart", unit="rep") as bar:
            res = power(design, families=families, progress=bar, **kw)
        table = reproduce_table(res)
        # the same seed: the same trials and null counterpart, analysed by alt
        with prog.step(f"the same {R} trials and null counterpart under "
                       f"--inference {alt}", unit="rep") as bar:
            res_a = power(design, families=families, design_analysis=False,
                          progress=bar, **{**kw, "settings": dataclasses.replace(
                              kw["settings"], inference=alt)})
        table = compare_inference(table, reproduce_table(res_a))
        if other is not None:
            # the other world's power and median p only (its size is not shown)
            with prog.step(f"power of {other.name!r}: {R} trials",
                           unit="rep") as bar:
                res_o = power(other, families=reported_families(other) or None,
                              size=False, design_analysis=False, progress=bar, **kw)
            table = compare_worlds(table, reproduce_table(res_o), other.name)
        table = add_needed(table, design, alpha=args.alpha)
        write_tsv(table, tmp / "reproduce.tsv")
        (tmp / "design.toml").write_text(
            run_design_text(design, args, seed, "reproduce"), encoding="utf-8")
    if not args.quiet:
        print(reproduce_report(table, res, other_design=other))
        print(f"wrote reproduce.tsv, design.toml to {args.out}")
    warning = size_warning(res)
    if warning:
        print(f"dtitool: {warning}", file=sys.stderr)
    return 0
