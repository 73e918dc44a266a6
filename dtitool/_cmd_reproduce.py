"""``dtitool reproduce``: reported versus simulated, test by test.

Simulates the design (default the calibrated ``ketamine-rct`` preset) and sets the
median p and the power of every reported test (and every expected null) beside
what Kopelman et al. (2023) reported, with the effect each reported p implies.
"""

from __future__ import annotations

import argparse
import math

import numpy as np
import pandas as pd

from dtitool._cmd_power import add_design_arguments, resolve
from dtitool._io import atomic_outputs, write_tsv
from dtitool.implied import implied_effect
from dtitool.power import power

COLUMNS = ["roi", "outcome", "term", "reported_p", "median_p", "power"]

POINT_TOLERANCE = math.sqrt(3)
"""A single reported p counts as the range p / sqrt(3) .. p * sqrt(3) (0.004-0.012
for 0.007, the band issue 4 states for the R BA10 pooled slope)."""

NULL_MEDIAN_P = 0.2
"""An unreported test is reproduced as null when its median p exceeds this."""


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


def reproduce_table(res) -> pd.DataFrame:
    """Set reported beside simulated for every row of the reported findings."""
    from dtitool.reference import reported_findings

    design = res.design
    t = res.table.set_index(["roi", "outcome", "term"])
    rows = []
    for f in reported_findings().itertuples(index=False):
        if f.roi not in design.roi_names:
            raise ValueError(f"the design has no ROI {f.roi!r}, which the reported "
                             "findings need; reproduce needs the reference study's "
                             f"ROIs {list(design.roi_names)}")
        outs = list(design.outcome_names) if f.outcome == "any" else [f.outcome]
        missing = [o for o in outs if o not in design.outcome_names]
        if missing:
            raise ValueError(f"the design has no outcome {missing[0]!r}, which the "
                             "reported findings need")
        outcome = min(outs, key=lambda o: t.loc[(f.roi, o, f.term), "median_p"])
        row = t.loc[(f.roi, outcome, f.term)]
        med = float(row["median_p"])
        if f.direction > 0:
            pw = row["power_positive"]
        elif f.direction < 0:
            pw = row["power_negative"]
        else:
            pw = row["power"]
        lo, hi = f.p_low, f.p_high
        if f.direction == 0:
            reported_p = "n.s."
            verdict = "null, as reported" if med > NULL_MEDIAN_P else "not null"
            implied = {}
        else:
            if lo == hi:
                reported_p = f"{lo:g}"
                lo, hi = lo / POINT_TOLERANCE, hi * POINT_TOLERANCE
            else:
                reported_p = f"{lo:g}-{hi:g}"
            sign_ok = np.sign(row["mean_estimate"]) == f.direction
            if not sign_ok:
                verdict = "opposite sign"
            elif med < lo:
                verdict = "stronger than reported"
            elif med > hi:
                verdict = "weaker than reported"
            else:
                verdict = "in range"
            rel = design.reliability("ketamine")[f.roi]
            if f.term == "slope_pooled":
                rel = 0.5 * (rel + design.reliability("saline")[f.roi])
            e = implied_effect(
                math.sqrt(f.p_low * f.p_high), n=design.n,
                allocation=design.allocation.as_tuple(), reliability=rel,
                term=f.term, alpha=res.alpha)
            implied = {"implied_r_observed": e.r_observed, "implied_r_true": e.r_true,
                       "implied_possible": e.possible,
                       "replication_power": e.replication_power}
        rows.append({
            "roi": f.roi, "outcome": outcome, "term": f.term,
            "reported_p": reported_p, "median_p": med, "power": float(pw),
            "reported_outcome": f.outcome, "direction": int(f.direction),
            "p_low": f.p_low, "p_high": f.p_high,
            "mean_estimate": float(row["mean_estimate"]), "verdict": verdict,
            "implied_r_observed": np.nan, "implied_r_true": np.nan,
            "implied_possible": pd.NA, "replication_power": np.nan, **implied,
        })
    return pd.DataFrame(rows)


def run(args) -> int:
    """Run ``dtitool reproduce``."""
    design, seed = resolve(args)
    from dtitool._cmd_power import reported_family

    family = reported_family(design)
    families = {"reported": family} if family else None
    with atomic_outputs(args.out, ["reproduce.tsv"], force=args.force) as tmp:
        res = power(design, replicates=args.replicates, rng=seed, alpha=args.alpha,
                    n_jobs=args.n_jobs, chunk_size=args.chunk_size,
                    families=families, progress=False if args.quiet else None)
        table = reproduce_table(res)
        write_tsv(table, tmp / "reproduce.tsv")
    if not args.quiet:
        print(f"reported (Kopelman et al. 2023) vs simulated {design.name!r}: "
              f"{res.replicates} replicates, seed {res.seed}, alpha {res.alpha:g}; "
              "power = P(p <= alpha with the reported sign), for nulls P(p <= alpha)")
        show = table[[*COLUMNS, "verdict", "implied_r_true"]]
        with pd.option_context("display.width", 140, "display.max_rows", 100):
            print(show.to_string(index=False, float_format="%.4g", na_rep=""))
        if families:
            fw = res.familywise.set_index(["family", "method"]).loc["reported"]
            print(f"all {len(family)} reported findings significant with the "
                  f"reported sign in one trial: {fw.loc['none', 'power_all']:.3f} "
                  f"(Holm {fw.loc['holm', 'power_all']:.3f})")
        n_ok = int(table["verdict"].isin(["in range", "null, as reported"]).sum())
        print(f"{n_ok} of {len(table)} tests match the report")
        print(f"wrote reproduce.tsv to {args.out}")
    return 0
