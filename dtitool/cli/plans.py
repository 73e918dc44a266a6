"""``dtitool plans``: candidate analysis plans compared on the same simulated trials."""

from __future__ import annotations

import argparse
import sys

from dtitool._io import atomic_outputs, write_tsv
from dtitool.cli._common import add_design_options

NAMES = ["plans.tsv", "plans_paired.tsv", "plans.png", "plans.html", "design.toml"]


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``dtitool plans``."""
    from dtitool.stats.plans import READY

    p = subparsers.add_parser(
        "plans",
        help="compare analysis plans on the same simulated trials",
        description="Simulate a design's trials once (and as many of its null "
        "counterpart) and analyse every trial by every plan: per plan and test "
        "power, size, bias, RMSE, coverage, type S and exaggeration; per plan "
        "and outcome whether any of its tests rejects (after its multiplicity "
        "rule); and the paired difference in power between every two plans. "
        "Plans whose size is above its band are flagged, not ranked. Writes "
        "DIR/plans.tsv, DIR/plans_paired.tsv, DIR/plans.png (power against "
        "size), the self-contained report DIR/plans.html (the ranked table, "
        "flags, estimands, the figure, paired differences and every test) and "
        "DIR/design.toml (docs/model.md, Analysis plans side by side).",
    )
    add_design_options(p, what="design.toml")
    p.add_argument("--plan", action="append", default=None, metavar="NAME[:k=v,...]",
                   help="a plan (repeatable): " + ", ".join(READY) + "; options "
                   "after a colon: multiplicity=none|holm|bh|maxt (maxt: "
                   "single-step max-T over the plan's tests of an outcome, its "
                   "critical p from the null counterpart's trials), "
                   "inference=welch|ols, roi=NAME (primary-roi). Default: the "
                   "design file's [[plans]] tables, else every ready-made plan")
    p.add_argument("--replicates", type=int, default=1000,
                   help="simulated trials (and as many of the null counterpart; "
                   "default 1000)")
    p.add_argument("--alpha", type=float, default=0.05,
                   help="two-sided level of every test (default 0.05)")
    p.add_argument("--chunk-size", type=int, default=500,
                   help="trials simulated and analysed at once (default 500)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--quiet", action="store_true", help="no summary on stdout")
    p.add_argument("--force", action="store_true",
                   help="replace the outputs of an earlier dtitool run in DIR")
    return p


def _plans(args, design):
    from dtitool.stats.plans import READY, parse_plan, plans_from_file

    plans = [parse_plan(s, design) for s in args.plan or []]
    if args.design:
        # a design.toml written by a run holds its plans twice (the --plan
        # options and the [[plans]] tables): the same name is the same plan
        given = {p.name for p in plans}
        plans += [p for p in plans_from_file(args.design, design)
                  if p.name not in given]
    if not plans:
        plans = [parse_plan(name, design) for name in READY]
    return plans


def run(args) -> int:
    """Run ``dtitool plans``."""
    import tomli_w

    from dtitool._progress import Progress
    from dtitool.cli._common import resolve_design, run_design_text
    from dtitool.stats.plans import plan_to_dict
    from dtitool.stats.plans_run import PAIRED_COLUMNS, PLAN_COLUMNS, plans_power

    design, seed = resolve_design(args)
    if len(design.visits) != 2:
        raise ValueError(f"dtitool plans compares plans of a two-visit design "
                         f"(baseline and the primary visit); {design.name!r} has "
                         f"{len(design.visits)} visits")
    plans = _plans(args, design)
    R = args.replicates
    prog = Progress(1, quiet=args.quiet)
    with atomic_outputs(args.out, NAMES, force=args.force,
                        inputs=[args.design] if args.design else [],
                        seed=seed) as tmp:
        with prog.step(f"{len(plans)} plans on {R} trials of {design.name!r} and "
                       f"{R} of its null counterpart", total=2 * R, unit="rep") as bar:
            table, paired = plans_power(design, plans, replicates=R, rng=seed,
                                        alpha=args.alpha,
                                        chunk_size=args.chunk_size, progress=bar)
        write_tsv(table[PLAN_COLUMNS], tmp / "plans.tsv", design=design)
        write_tsv(paired[PAIRED_COLUMNS], tmp / "plans_paired.tsv", design=design)
        from dtitool.report.plots_plans import plans_report, power_size_png

        png = power_size_png(table, alpha=args.alpha,
                             title=f"{design.name}: {R} trials")
        (tmp / "plans.png").write_bytes(png)
        (tmp / "plans.html").write_text(plans_report(
            table, paired, plans, design, alpha=args.alpha, seed=seed, png=png),
            encoding="utf-8")
        text = run_design_text(design, args, seed, "plans", holds="plans, seed")
        text += "\n" + tomli_w.dumps({"plans": [plan_to_dict(p) for p in plans]})
        (tmp / "design.toml").write_text(text, encoding="utf-8")
    if not args.quiet:
        print(plans_summary(table, design, R))
        print(f"wrote {', '.join(NAMES)} to {args.out}")
    fam = table[table["roi"] == "any"]
    flagged = fam[fam["flag"].str.startswith("size above")]
    if len(flagged):
        what = ", ".join(f"{r.plan} ({r.outcome}: {r.size:.3f})"
                         for r in flagged.itertuples())
        print(f"dtitool: warning: size above its band, power not comparable: {what}",
              file=sys.stderr)
    return 0


def plans_summary(table, design, R: int) -> str:
    """Return the plain-text summary: each outcome's plans ranked by power."""
    import pandas as pd

    lines = [f"analysis plans on {R} trials of {design.name} (n = {design.n}): "
             "power of any test per outcome, size in the null counterpart"]
    fam = table[table["roi"] == "any"]
    for outcome, g in fam.groupby("outcome", sort=False):
        lines.append(f"  {outcome}:")
        g = g.assign(_r=g["rank"].fillna(10 ** 6)).sort_values(["_r", "power"],
                                                                ascending=[True, False])
        for r in g.itertuples():
            rank = "-" if pd.isna(r.rank) else str(int(r.rank))
            flag = f"  [{r.flag}]" if r.flag else ""
            fail = f", {r.failed:.0%} fits failed" if r.failed > 0 else ""
            rule = r.multiplicity + (f", critical p {r.critical_p:.4g}"
                                     if r.multiplicity == "maxt" else "")
            lines.append(f"    {rank:>2} {r.plan:<28} power {r.power:.3f}  size "
                         f"{r.size:.3f} ({rule}){fail}{flag}")
    return "\n".join(lines)
