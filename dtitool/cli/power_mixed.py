"""``dtitool power --model mixed``: power of a longitudinal design's mixed models."""

from __future__ import annotations

import sys

from dtitool._io import atomic_outputs, write_tsv
from dtitool._progress import Progress
from dtitool.cli._common import run_design_text

MIXED_CURVES = ("n", "visits", "slope_sd")
"""What ``--curve`` varies for the mixed models."""

# options of the change-score power run that have no meaning here
_CHANGE_ONLY = (("grid", "--grid"), ("target_power", "--target-power"),
                ("test", "--test"), ("family", "--family"),
                ("imputations", "--imputations"))


_MODELS = {
    "mixed": ("the mixed model (--model mixed)", "uses Satterthwaite degrees of "
              "freedom", "uses every observed visit"),
    "imaging": ("the imaging change tests (--model imaging)", "use t tests (one-"
                "sample, Welch)", "use complete cases per row and visit"),
}


def check_options(args, model: str = "mixed") -> None:
    """Refuse the change-score model's options (one line naming the option)."""
    what, df, missing = _MODELS[model]
    for attr, flag in _CHANGE_ONLY:
        if getattr(args, attr, None) not in (None, []):
            raise ValueError(f"{flag} is an option of the change-score model; "
                             f"{what} does not use it")
    if getattr(args, "inference", None) is not None:
        raise ValueError(f"--inference is an option of the change-score model; "
                         f"{what} {df} (--model change for the change-score "
                         "analysis)")
    if getattr(args, "missing", "complete-case") != "complete-case":
        raise ValueError(f"--missing mi is an option of the change-score model; "
                         f"{what} {missing}")


def size_warning(table) -> str | None:
    """Return the warning line naming the tests whose size is off (None: none)."""
    bad = table[table["size_ok"].eq(False)]
    if not len(bad):
        return None
    tests = ", ".join(f"{r.roi or r.outcome}"
                      f"{'' if r.measure in ('', 'md') else ' ' + r.measure}:"
                      f"{r.term} ({r.size:.3f})" for r in bad.itertuples())
    return f"dtitool: warning: size outside its 99% binomial band: {tests}"


def parse_mixed_curve(spec: str, design) -> tuple[str, list]:
    """Parse ``n=...``, ``slope_sd=...`` or ``visits=V+V+...,V+V+...``."""
    from dtitool.cli._common import parse_curve

    name, sep, values = spec.partition("=")
    name = name.strip()
    if not sep or name not in MIXED_CURVES:
        raise ValueError(f"--curve for the mixed model must be PARAM=VALUES with "
                         f"PARAM one of {', '.join(MIXED_CURVES)}; got {spec!r}")
    if name == "n":
        return parse_curve(spec)
    if name == "slope_sd":  # numbers as for a curve over effect
        return name, parse_curve(f"effect={values}")[1]
    schedules = [tuple(v.strip() for v in s.split("+") if v.strip())
                 for s in values.split(",")]
    if not schedules or any(not s for s in schedules):
        raise ValueError(f"--curve visits= needs schedules like "
                         f"{'+'.join(design.visit_names)},{design.visit_names[0]}+"
                         f"{design.primary_visit}; got {values!r}")
    return name, schedules


def quality_limits_of(args) -> dict | None:
    """``--max-crlb`` and ``--max-fit-error`` as the engines' ``quality_limits``."""
    limits = {k: getattr(args, f"max_{k}", None) for k in ("crlb", "fit_error")}
    return {k: v for k, v in limits.items() if v is not None} or None


def run_mixed(args, design, seed) -> int:
    """Run ``dtitool power`` with the mixed model (module docstring)."""
    from dtitool.stats.mixed_power import (
        MIXED_POWER_COLUMNS,
        design_variant,
        mixed_layout,
        mixed_power,
    )

    check_options(args)
    curve = parse_mixed_curve(args.curve, design) if args.curve else None
    mixed_layout(design, args.time)  # checked before anything runs
    if curve:  # and every curve point
        for v in curve[1]:
            mixed_layout(design_variant(design, **{curve[0]: v}), args.time)
    names = ["power.tsv", "design.toml"] + (
        ["power_curve.tsv", "power_curve.png"] if curve else [])
    R = args.replicates
    prog = Progress(1 + bool(curve), quiet=args.quiet)
    common = {"replicates": R, "rng": seed, "time": args.time, "alpha": args.alpha,
              "variance": getattr(args, "variance", None) or "arm",
              "random": getattr(args, "random", None) or "select",
              "quality_limits": quality_limits_of(args),
              **({"chunk_size": args.chunk_size} if args.chunk_size else {})}
    with atomic_outputs(args.out, names, force=args.force, inputs=[args.design],
                        seed=seed) as tmp:
        with prog.step(f"mixed-model power of {design.name!r}: {R} trials and {R} "
                       "of its null counterpart", total=2 * R, unit="rep") as bar:
            table = mixed_power(design, progress=bar, **common)
        write_tsv(table[MIXED_POWER_COLUMNS], tmp / "power.tsv", table="power_mixed")
        (tmp / "design.toml").write_text(run_design_text(
            design, args, seed, "power", " (mixed model)"), encoding="utf-8")
        if curve:
            import pandas as pd

            param, values = curve
            parts = []
            with prog.step(f"power curve over {param}: {len(values)} points",
                           total=2 * R * len(values), unit="rep") as bar:
                for v in values:
                    t = mixed_power(design_variant(design, **{param: v}),
                                    progress=bar, **common)
                    label = "+".join(v) if param == "visits" else v
                    parts.append(t.assign(parameter=param, value=label))
            pc = pd.concat(parts, ignore_index=True)
            write_tsv(pc[["parameter", "value", *MIXED_POWER_COLUMNS]],
                      tmp / "power_curve.tsv", table="power_mixed")
            from dtitool.report.plots_longitudinal import save_mixed_curve

            save_mixed_curve(pc, tmp / "power_curve.png", target_power=0.8)
    if not args.quiet:
        print(mixed_summary(table, design, variance=common["variance"],
                            random=common["random"]))
        print(f"wrote {', '.join(names)} to {args.out}")
    warning = size_warning(table)
    if warning:
        print(warning, file=sys.stderr)
    return 0


def mixed_summary(table, design, *, variance: str = "arm",
                  random: str = "select") -> str:
    """Return a plain-text summary of a mixed-model power table."""
    how = {"arm": "each arm fitted on its own (Welch-Satterthwaite df for the "
                  "arms' differences)",
           "common": "one covariance for all arms"}[variance]
    rnd = {"select": "random slope kept where a likelihood-ratio test at 0.2 "
                     "favours it (slope: share of fits)",
           "slope": "random slope always"}[random]
    lines = [f"mixed-model power of {design.name} (n = {design.n}, "
             f"{len(design.visits)} visits), Satterthwaite df; {how}; {rnd}:"]
    head = (f"{'model':<22} {'term':<16} {'power':>6} {'size':>6} {'true':>9} "
            f"{'type_s':>6} {'exagg':>6} {'nonconv':>7} {'singular':>8} "
            f"{'slope':>6}")
    lines.append(head)
    for r in table.itertuples():
        model = (r.outcome if r.outcome else
                 f"{r.roi} {'MD' if r.measure == 'md' else r.measure}")
        f = lambda x, w, d=3: (f"{x:>{w}.{d}f}" if x == x else f"{'-':>{w}}")  # noqa: E731
        lines.append(f"{model:<22} {r.term:<16} {f(r.power, 6)} {f(r.size, 6)} "
                     f"{r.true_value:>9.4g} {f(r.type_s, 6)} {f(r.exaggeration, 6, 2)} "
                     f"{f(r.nonconverged, 7)} {f(r.singular, 8)} "
                     f"{f(r.slope_kept, 6, 2)}")
    return "\n".join(lines)
