"""``dtitool analyze DIR --plan NAME``: analysis plans fitted to one cohort."""

from __future__ import annotations

from pathlib import Path

from dtitool._io import output_transaction, write_tsv

REFUSED = ("inference", "robust", "familywise", "permutations", "missing",
           "imputations", "tipping_point", "figures", "compare", "families")
"""Options of the reported models that a plan sets itself (an error with
``--plan``)."""


def run_plans(args, out: Path, given) -> int:
    """Fit the ``--plan`` plans to the cohort in ``args.dir`` and write ``out``."""
    from dtitool.stats.plans import parse_plan
    from dtitool.stats.plans_fit import PLAN_FIT_COLUMNS, fit_plans
    from dtitool.tables import compute_changes, read_tables, resolve_names

    for dest in REFUSED:
        if given(args, dest):
            option = "--" + dest.replace("_", "-")
            raise ValueError(f"{option} does not apply with --plan: a plan sets its "
                             "own model, inference and multiplicity (NAME:key=value)")
    design = None
    if args.design:
        from dtitool.design import read_design

        design, _ = read_design(args.design)
    inputs = [Path(args.dir) / "participants.tsv", Path(args.dir) / "roi_md.tsv",
              *([args.design] if args.design else [])]
    with output_transaction(force=args.force, inputs=inputs) as tx:
        tmp = tx.destination(out.parent, [out.name], label="--out")
        participants, roi_md = read_tables(
            args.dir, replicate=args.replicate, md_unit=args.md_unit,
            design=design, control=args.control)
        names, design = resolve_names(participants, design=design,
                                      control=args.control, directory=args.dir)
        if design is None:
            raise ValueError("--plan needs the trial's design (the folder's "
                             "design.toml or --design) for the plans' ROIs")
        plans = [parse_plan(s, design) for s in args.plan]
        changes = compute_changes(participants, roi_md, names=names)
        table = fit_plans(changes, plans, names)
        write_tsv(table[PLAN_FIT_COLUMNS], tmp / out.name, table="plan_fits")
    print(f"analysis plans on {args.dir} ({table['n'].iloc[0]} participants with "
          "every scan and rating at the primary visit):")
    for r in table.itertuples():
        print(f"  {r.plan:<28} {r.roi:<16} {r.outcome:<8} {r.term:<22} "
              f"estimate {r.estimate:9.4f}  p {r.p:.4g}")
    print(f"wrote {out}")
    return 0
