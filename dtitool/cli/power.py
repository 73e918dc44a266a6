"""``dtitool power``: Monte Carlo power of every model term, curves, sample size."""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import warnings

from dtitool._constants import CURVE_PARAMETERS
from dtitool._io import atomic_outputs, write_tsv
from dtitool._progress import Progress
from dtitool.cli._common import (  # noqa: F401 (parse_curve: re-exported)
    MAX_CURVE_POINTS,
    add_design_options,
    add_execution_options,
    add_mixed_choices,
    executor,
    n_jobs,
    parse_curve,
    resolve_design,
    run_design_text,
)


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``dtitool power``."""
    p = subparsers.add_parser(
        "power",
        help="Monte Carlo power of every ROI x outcome x term test",
        description="Simulate replicate trials of a design, fit every model, and "
        "write DIR/power.tsv (roi, outcome, term, inference, power, power_ci_low, "
        "power_ci_high [95% Wilson], median_p, mean_estimate [score points per "
        "1e-5 mm^2/s dMD], size [rejection rate in the design's null "
        "counterpart, every ROI-outcome correlation 0] with its interval and "
        "size_ok [within the 99% binomial band], true_value, type_s, "
        "exaggeration), DIR/familywise.tsv (any/all rejections per family, "
        "unadjusted, Holm, Benjamini-Hochberg and max-T, with the family-wise "
        "error in the null counterpart) and DIR/design.toml (design and seed). "
        "--curve adds power_curve.tsv and power_curve.png; --target-power adds "
        "sample_size.tsv; --grid (repeatable, one axis each) adds power_grid.tsv "
        "(one row per grid point and test) and power_explorer.html (an "
        "interactive page: a control per axis, power and size against any axis, "
        "the target-power line and the n reaching it). A warning line names "
        "tests whose size is off. Progress goes to stderr; --dask runs the "
        "simulations on a Dask cluster (docs/scale-out.md).",
    )
    add_design_arguments(p)
    p.add_argument("--n", type=int, default=None, help="override the sample size")
    p.add_argument("--curve", metavar="PARAM=VALUES",
                   help="power curve over one parameter: n=40:200:20, "
                   "ratio=1,1.5,2,3, effect=0.5:1.5:0.25, reliability=0.4:0.9:0.1 "
                   "or cv=0.01:0.05:0.01 (start:stop:step, stop included, or a "
                   "comma list)")
    p.add_argument("--grid", action="append", default=None, metavar="PARAM=VALUES",
                   help="one axis of a power surface (repeat for more axes; any "
                   f"of {', '.join(CURVE_PARAMETERS)}, values as for --curve), "
                   "e.g. --grid n=40:400:20 --grid effect=0.25:1.5:0.25 --grid "
                   "reliability=0.2:0.9:0.1; every point uses the same seed")
    p.add_argument("--target-power", type=float, default=None, metavar="P",
                   help="find the smallest total n at which every target test "
                   "(--test, default the reported tests or every interaction) has "
                   "power P")
    p.add_argument("--test", action="append", default=None,
                   metavar="ROI:OUTCOME:TERM[:+|-]",
                   help="a target test for --target-power (repeatable); terms: "
                   "interaction, slope_ARM (ARM an arm of the design), "
                   "slope_pooled; a trailing :+ or :- counts only "
                   "rejections of that sign (default: the reported tests, each "
                   "with its reported sign)")
    p.add_argument("--n-max", type=int, default=1000,
                   help="largest n searched by --target-power (default 1000)")
    p.add_argument("--missing", choices=["complete-case", "mi"],
                   default="complete-case",
                   help="how each simulated trial handles the design's missing "
                   "follow-up data ([missing] in the design): complete-case "
                   "(default) or mi, "
                   "multiple imputation pooled by Rubin's rules (see docs/model.md, "
                   "Missing data)")
    p.add_argument("--imputations", type=int, default=None, metavar="M",
                   help="imputations per simulated trial for --missing mi "
                   "(default 20)")
    p.add_argument("--family", action="append", default=None,
                   metavar="NAME=ROI:OUTCOME:TERM[:+|-],...",
                   help="extra family for familywise.tsv (repeatable); a trailing "
                   ":+ or :- counts only rejections with that sign")
    p.add_argument("--model", choices=["change", "mixed", "imaging"], default=None,
                   help="change: the change-score interaction models between "
                   "baseline and the primary visit; mixed: linear mixed models "
                   "of every visit, value ~ arm * time + age + sex + (1 + time | "
                   "participant) per ROI, measure and rating scale (by default "
                   "each arm fitted on its own, see --variance and --random), "
                   "fitted by REML in batch, Satterthwaite df, writing power.tsv "
                   "(roi, measure, outcome, term, power, size, true_value, bias, "
                   "type_s, exaggeration, nonconverged, singular, slope_kept, "
                   "size_z); "
                   "--curve n=, visits=V+V+...,V+V+... or slope_sd= (factor on "
                   "every random-slope SD); imaging: does the imaging measure "
                   "itself change? Per ROI and measure and follow-up visit, the "
                   "control arm's change from baseline (term VISIT, one-sample t) "
                   "and each arm's change minus it (ARM:VISIT, Welch t), writing "
                   "power.tsv with the noncentral-t power beside the Monte Carlo "
                   "one (analytic_power) and size. Default: mixed when the design "
                   "has more than two visits (docs/model.md, Mixed models and "
                   "Imaging change)")
    p.add_argument("--time", choices=["dose", "hours", "visit"], default=None,
                   help="--model mixed: time as the visits' dose (default when "
                   "every visit has one), hours, or the visit as a factor")
    add_mixed_choices(p)
    for kind, default, what in (("crlb", 20, "Cramer-Rao lower bound"),
                                ("fit-error", 12, "Gannet-style fit error")):
        p.add_argument(f"--max-{kind}", type=float, default=None, metavar="PCT",
                       help=f"--model mixed or imaging, designs with MRS voxels: a "
                       "spectrum "
                       f"whose simulated {what} is above PCT %% is missing data, "
                       f"as dtitool analyze excludes it (default {default}; "
                       "docs/mrs.md)")
    p.set_defaults(inference=None)
    return p


INFERENCE_HELP = {
    "welch": "arms fitted separately, Welch-Satterthwaite df (at its nominal "
    "level when the arms' score changes differ in variance, as in every shipped "
    "design)",
    "ols": "classical pooled-variance tests, the reported analysis (off its "
    "level when the arms' variances differ: 1.4-2.8%% for the interactions of "
    "the null preset at alpha 0.05)",
    "hc3": "HC3 robust SEs",
}
"""What each ``--inference`` choice does, for the help texts (``%%``: argparse)."""


def add_design_arguments(p: argparse.ArgumentParser, *,
                         inference: str = "welch") -> None:
    """Arguments shared by ``dtitool power`` and ``dtitool reproduce``.

    ``inference`` is the command's default ``--inference``: ``welch`` for
    ``power`` (valid by default), ``ols`` for ``reproduce`` (the analysis the
    reference study reported).
    """
    add_design_options(p)
    p.add_argument("--replicates", type=int, default=2000,
                   help="simulated trials (default 2000)")
    p.add_argument("--alpha", type=float, default=0.05,
                   help="two-sided significance level (default 0.05)")
    order = [inference, *(c for c in ("welch", "ols", "hc3") if c != inference)]
    p.add_argument("--inference", choices=order, default=inference,
                   help="; ".join(f"{c}{' (default)' if c == inference else ''}: "
                                  f"{INFERENCE_HELP[c]}" for c in order)
                   + " (see docs/model.md, Inference)")
    add_execution_options(p, what="simulated trials")
    p.add_argument("--chunk-size", type=int, default=None,
                   help="replicates per chunk (bounds memory; results do not "
                   "depend on it)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--quiet", action="store_true",
                   help="no progress on stderr and no summary on stdout")
    p.add_argument("--force", action="store_true",
                   help="replace the outputs of an earlier dtitool run in DIR (only "
                   "files listed in its dtitool-run.json and unchanged since)")


def resolve(args):
    """Return ``(design, seed)`` from ``--preset/--design/--n/--seed``.

    A ``--design`` file's ``[run]`` table fills the options not given on the
    command line before any of them is checked.
    """
    design, seed = resolve_design(args)
    if args.replicates < 1:
        raise ValueError(f"--replicates must be a positive integer; got "
                         f"{args.replicates}")
    return design, seed


def parse_grid(specs) -> list[tuple[str, list[float]]]:
    """Parse the ``--grid`` axes; each parameter at most once.

    The whole grid is checked here (:func:`~dtitool.stats.power.check_grid_axes`:
    not both cv and reliability, not too many points), before any simulation.
    """
    from dtitool.stats.power import check_grid_axes

    axes = [parse_curve(g, option="--grid") for g in specs]
    names = [a for a, _ in axes]
    dup = sorted({a for a in names if names.count(a) > 1})
    if dup:
        raise ValueError(f"--grid gives parameter {dup[0]!r} twice; one --grid per "
                         "parameter")
    try:
        check_grid_axes(axes)
    except ValueError as e:
        raise ValueError(f"--grid: {e}") from None
    return axes


def parse_test(spec: str, *, signed: bool = False) -> tuple:
    """Parse ``ROI:OUTCOME:TERM`` (with ``signed``, an optional ``:+``/``:-``)."""
    parts = spec.strip().split(":")
    if signed and len(parts) == 4 and parts[3] in ("+", "-"):
        return (*parts[:3], "positive" if parts[3] == "+" else "negative")
    if len(parts) != 3:
        raise ValueError(f"a test must be ROI:OUTCOME:TERM{'[:+|-]' if signed else ''}"
                         f"; got {spec!r}")
    return tuple(parts)


def run(args) -> int:
    """Run ``dtitool power``."""
    from dtitool.stats.power import (
        POWER_COLUMNS,
        MonteCarlo,
        power,
        power_curve,
        power_grid,
        power_summary,
        sample_size,
        size_warning,
    )
    from dtitool.stats.reference import reported_families

    design, seed = resolve(args)
    model = args.model or ("mixed" if len(design.visits) > 2 else "change")
    if model == "mixed":
        from dtitool.cli.power_mixed import run_mixed

        return run_mixed(args, design, seed)
    if model == "imaging":
        from dtitool.cli.power_imaging import run_imaging

        return run_imaging(args, design, seed)
    for opt in ("time", "variance", "random", "max_crlb", "max_fit_error"):
        if getattr(args, opt, None) is not None:
            raise ValueError(f"--{opt.replace('_', '-')} is an option of the mixed "
                             "and imaging models (--model mixed, --model imaging)")
    ruled = [m.label for m in design.measures if m.quality]
    if ruled:
        warnings.warn(f"--model change keeps every MRS spectrum: the fit-quality "
                      f"rule of dtitool analyze (crlb > 20%, fit_error > 12%) is not "
                      f"applied to {', '.join(ruled)} in change-score power "
                      "(--model mixed and --model imaging apply it)", stacklevel=1)
    if args.inference is None:
        args.inference = "welch"
    curve = parse_curve(args.curve) if args.curve else None
    grid = parse_grid(args.grid) if args.grid else None
    if args.n_max < 1:
        raise ValueError(f"--n-max must be a positive integer; got {args.n_max}")
    families = {}
    for spec in args.family or []:
        name, sep, tests = spec.partition("=")
        if not sep or not name.strip():
            raise ValueError(
                f"--family must be NAME=ROI:OUTCOME:TERM,...; got {spec!r}"
            )
        families[name.strip()] = [parse_test(t, signed=True) for t in tests.split(",")]
    known = reported_families(design)
    reported = known.get("reported", [])
    if reported and "reported" not in families:
        families.update(known)
    targets = None
    if args.target_power is not None:
        if not 0 < args.target_power < 1:
            raise ValueError(f"--target-power must be in (0, 1); got "
                             f"{args.target_power}")
        if args.test:
            targets = [parse_test(t, signed=True) for t in args.test]
        elif reported:
            targets = reported  # each with its reported sign
    elif args.test:
        raise ValueError("--test is used with --target-power")
    if args.target_power is not None and args.missing != "complete-case":
        raise ValueError("--target-power searches n with complete-case analyses "
                         "only; run it without --missing mi")
    # checked before anything is written; n_jobs becomes the executor's workers
    settings = MonteCarlo(replicates=args.replicates, alpha=args.alpha,
                          inference=args.inference, rng=seed, n_jobs=n_jobs(args),
                          chunk_size=args.chunk_size, missing=args.missing,
                          imputations=args.imputations)

    names = ["power.tsv", "familywise.tsv", "design.toml"]
    if curve:
        names += ["power_curve.tsv", "power_curve.png"]
    if args.target_power is not None:
        names += ["sample_size.tsv", "sample_size_trace.tsv"]
    if grid:
        names += ["power_grid.tsv", "power_explorer.html"]
    steps = 1 + bool(curve) + (args.target_power is not None) + bool(grid) + bool(
        curve or grid)
    prog = Progress(steps, quiet=args.quiet)
    R = args.replicates
    with (atomic_outputs(args.out, names, force=args.force, inputs=[args.design],
                         seed=seed) as tmp,
          executor(args) as ex):
        common = {"settings": dataclasses.replace(settings, n_jobs=ex.workers),
                  "dask": ex}
        with prog.step(f"power of {design.name!r}: {R} trials and {R} of its null "
                       "counterpart", unit="rep") as bar:
            res = power(design, families=families, progress=bar, **common)
        columns = list(POWER_COLUMNS)
        if "measure" in res.table.columns:  # a design with measures besides MD
            columns.insert(1, "measure")
        write_tsv(res.table[columns], tmp / "power.tsv")
        write_tsv(res.familywise, tmp / "familywise.tsv")
        (tmp / "design.toml").write_text(
            run_design_text(design, args, seed, "power"), encoding="utf-8")
        pc = None
        if curve:
            with prog.step(f"power curve over {curve[0]}: {len(curve[1])} points",
                           unit="rep") as bar:
                pc = power_curve(design, parameter=curve[0], values=curve[1],
                                 families=families, progress=bar, **common)
            write_tsv(pc.table, tmp / "power_curve.tsv")
        ss = None
        if args.target_power is not None:
            with prog.step(f"searching the n for power {args.target_power:g}",
                           unit="rep") as bar:
                ss = sample_size(design, target_power=args.target_power,
                                 tests=targets, n_max=args.n_max, progress=bar,
                                 **common)
            write_tsv(ss.table, tmp / "sample_size.tsv")
            write_tsv(ss.evaluated, tmp / "sample_size_trace.tsv")
        pg = None
        if grid:
            points = math.prod(len(v) for _, v in grid)
            with prog.step(f"power grid: {points} points x {R} trials",
                           unit="rep") as bar:
                pg = power_grid(design, axes=grid, progress=bar, **common)
            write_tsv(pg.table, tmp / "power_grid.tsv")
        if curve or grid:
            with prog.step("writing " + " and ".join(
                    n for n, on in (("the curve figure", curve),
                                    ("the explorer", grid)) if on)):
                if curve:
                    from dtitool.report.plots import curve_marks, save_power_curve

                    save_power_curve(pc, tmp / "power_curve.png",
                                     tests=reported or None,
                                     target_power=args.target_power,
                                     marks=curve_marks(pc, design, ss))
                if grid:
                    from dtitool.report.explorer import explorer_html

                    (tmp / "power_explorer.html").write_text(
                        explorer_html(pg, target_power=args.target_power or 0.8,
                                      tests=reported or None),
                        encoding="utf-8")
    if not args.quiet:
        print(power_summary(res, reported, pc, ss))
        print(f"wrote {', '.join(names)} to {args.out}")
    warning = size_warning(res)
    if warning:
        print(f"dtitool: {warning}", file=sys.stderr)
    return 0
