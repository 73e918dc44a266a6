"""``dtitool power --model imaging``: power of the imaging change tests.

Does the imaging measure itself change, and differently between arms? Per
imaging row (MD per ROI, every other measure) and follow-up visit: the control
arm's change (one-sample t) and each arm's difference from it (Welch t),
:mod:`dtitool.stats.imaging_change`.
"""

from __future__ import annotations

import sys

from dtitool._io import atomic_outputs, write_tsv
from dtitool._progress import Progress
from dtitool.cli._common import run_design_text


def run_imaging(args, design, seed) -> int:
    """Run ``dtitool power`` with the imaging change tests (module docstring)."""
    from dtitool.cli.power_mixed import check_options, quality_limits_of, size_warning
    from dtitool.stats.imaging_change import IMAGING_POWER_COLUMNS, imaging_power

    check_options(args, "imaging")
    for opt in ("time", "variance", "random"):
        if getattr(args, opt, None) is not None:
            raise ValueError(f"--{opt} is an option of the mixed model (--model "
                             "mixed); the imaging change tests compare each "
                             "follow-up visit with baseline")
    if args.curve:
        raise ValueError("--curve is not available with --model imaging; run "
                         "dtitool power --model imaging --n N once per n")
    names = ["power.tsv", "modalities.tsv", "imaging.html", "design.toml"]
    R = args.replicates
    prog = Progress(1, quiet=args.quiet)
    with atomic_outputs(args.out, names, force=args.force, inputs=[args.design],
                        seed=seed) as tmp:
        with prog.step(f"imaging change power of {design.name!r}: {R} trials and "
                       f"{R} of its null counterpart", total=2 * R,
                       unit="rep") as bar:
            table, modalities = imaging_power(
                design, replicates=R, rng=seed, alpha=args.alpha, progress=bar,
                quality_limits=quality_limits_of(args), modalities=True,
                **({"chunk_size": args.chunk_size} if args.chunk_size else {}))
        write_tsv(table[IMAGING_POWER_COLUMNS], tmp / "power.tsv",
                  table="power_imaging")
        write_tsv(modalities, tmp / "modalities.tsv", table="modalities")
        from dtitool.report.plots_imaging import imaging_report

        (tmp / "imaging.html").write_text(
            imaging_report(table, modalities, design, seed=seed), encoding="utf-8")
        (tmp / "design.toml").write_text(run_design_text(
            design, args, seed, "power", " (imaging change tests)"), encoding="utf-8")
    if not args.quiet:
        print(imaging_summary(table, design))
        print(modality_summary(modalities))
        print(f"wrote {', '.join(names)} to {args.out}")
    warning = size_warning(table)
    if warning:
        print(warning, file=sys.stderr)
    return 0


def imaging_summary(table, design) -> str:
    """Return a plain-text summary of an imaging change power table."""
    arms = [a for a in design.arms if a != design.control]
    what = (f"the {design.control} arm's change from baseline (one-sample t) "
            + (f"and {', '.join(arms)} minus it (Welch t)" if arms else ""))
    lines = [f"imaging change power of {design.name} (n = {design.n}, "
             f"{len(design.visits)} visits): {what}; analytic: noncentral t",
             f"{'row':<24} {'term':<18} {'power':>6} {'analytic':>8} {'size':>6} "
             f"{'true':>9} {'type_s':>6} {'exagg':>6} {'mean n':>6}"]

    def f(x, w, d=3):
        return f"{x:>{w}.{d}f}" if x == x else f"{'-':>{w}}"

    for r in table.itertuples():
        row = f"{r.roi} {'MD' if r.measure == 'md' else r.measure}"
        lines.append(f"{row:<24} {r.term:<18} {f(r.power, 6)} "
                     f"{f(r.analytic_power, 8)} {f(r.size, 6)} "
                     f"{r.true_value:>9.4g} {f(r.type_s, 6)} "
                     f"{f(r.exaggeration, 6, 2)} {f(r.mean_n, 6, 1)}")
    lines.append("MD per 1e-5 mm^2/s; another measure per its design scale")
    return "\n".join(lines)


def modality_summary(table) -> str:
    """Return a plain-text summary of the modalities' power (``modalities.tsv``)."""
    lines = ["\nper modality (each one family, Holm; all: every modality in the "
             "same trial; any: Holm over every test):",
             f"{'modality':<10} {'tests':>5} {'power':>6} {'95% CI':>15} {'size':>6}"]
    for r in table.itertuples():
        size = f"{r.size:6.3f}" if r.size == r.size else f"{'-':>6}"
        lines.append(f"{r.modality:<10} {r.tests:>5} {r.power:6.3f} "
                     f"[{r.power_ci_low:.3f}, {r.power_ci_high:.3f}] {size}")
    return "\n".join(lines)
