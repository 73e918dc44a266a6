"""Reported versus simulated, test by test: the reference study against many trials.

For every finding of the reference study (Kopelman et al. 2023; see
:mod:`dtitool.stats.reference`) this sets the median p and the power over
simulated trials of a design beside the reported p range, with a verdict and the
effect the reported p implies (:func:`dtitool.stats.implied.implied_effect`).

Design analysis (Gelman and Carlin 2014) for each reported test: the simulated
type S error and exaggeration ratio of the design, and what a significant
estimate would exaggerate if the true effect were half of the face-value one
(the published estimate's ``t`` halved, :func:`dtitool.stats.design_analysis.
retrodesign` with the reported analysis's residual df): a face-value reading of
a filtered result is the optimistic end, half of it a common sceptical prior.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from dtitool.stats.design_analysis import retrodesign
from dtitool.stats.implied import implied_effect
from dtitool.stats.reference import reported_findings

__all__ = [
    "NULL_MEDIAN_P",
    "POINT_TOLERANCE",
    "REPRODUCE_COLUMNS",
    "reproduce_summary",
    "reproduce_table",
]

REPRODUCE_COLUMNS = ["roi", "outcome", "term", "reported_p", "median_p", "power",
                     "size"]
"""Leading columns of the reproduce table (the side-by-side view)."""

HALF_EFFECT = 0.5
"""Design analysis of a reported test assumes a true effect this fraction of the
face-value one."""

POINT_TOLERANCE = math.sqrt(3)
"""A single reported p counts as the range p / sqrt(3) .. p * sqrt(3) (0.004-0.012
for the 0.007 of the R BA10 pooled slope): a point value is read as a band as
wide, on the log scale, as the reported ranges of the other findings."""

NULL_MEDIAN_P = 0.2
"""An unreported test is reproduced as null when its median p exceeds this."""


def reproduce_table(res) -> pd.DataFrame:
    """Set reported beside simulated for every row of the reported findings."""
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
            half = retrodesign(HALF_EFFECT * e.t, 1.0, alpha=res.alpha, df=e.df)
            implied = {"implied_r_observed": e.r_observed, "implied_r_true": e.r_true,
                       "implied_possible": e.possible,
                       "replication_power": e.replication_power,
                       "half_effect_power": float(half["power"]),
                       "half_effect_type_s": float(half["type_s"]),
                       "half_effect_exaggeration": float(half["exaggeration"])}
        rows.append({
            "roi": f.roi, "outcome": outcome, "term": f.term,
            "reported_p": reported_p, "median_p": med, "power": float(pw),
            "size": float(row["size"]), "size_ok": row["size_ok"],
            "inference": row["inference"],
            "reported_outcome": f.outcome, "direction": int(f.direction),
            "p_low": f.p_low, "p_high": f.p_high,
            "mean_estimate": float(row["mean_estimate"]), "verdict": verdict,
            "implied_r_observed": np.nan, "implied_r_true": np.nan,
            "implied_possible": pd.NA, "replication_power": np.nan,
            "type_s": float(row["type_s"]), "exaggeration": float(row["exaggeration"]),
            "half_effect_power": np.nan, "half_effect_type_s": np.nan,
            "half_effect_exaggeration": np.nan, **implied,
        })
    return pd.DataFrame(rows)


def reproduce_summary(table: pd.DataFrame, res) -> str:
    """Return the printed side-by-side view of :func:`reproduce_table`'s output.

    Parameters
    ----------
    table : DataFrame
        Output of :func:`reproduce_table`.
    res : PowerResult
        The power run it came from (for replicates, seed and the reported family).
    """
    lines = [
        f"reported (Kopelman et al. 2023) vs simulated {res.design.name!r}: "
        f"{res.replicates} replicates, seed {res.seed}, alpha {res.alpha:g}, "
        f"inference {res.inference}; power = P(p <= alpha with the reported "
        "sign), for nulls P(p <= alpha); size = P(p <= alpha) in the null "
        "counterpart; exag_if_half = how much a significant estimate would "
        "overstate the effect if the true one were half the face-value effect"
    ]
    show = table[[*REPRODUCE_COLUMNS, "verdict", "implied_r_true",
                  "half_effect_exaggeration"]].rename(
        columns={"half_effect_exaggeration": "exag_if_half"})
    with pd.option_context("display.width", 140, "display.max_rows", 100):
        lines.append(show.to_string(index=False, float_format="%.4g", na_rep=""))
    fw = res.familywise
    if (fw["family"] == "reported").any():
        fw = fw.set_index(["family", "method"]).loc["reported"]
        lines.append(
            f"all {int(fw.loc['none', 'tests'])} reported findings significant with "
            f"the reported sign in one trial: {fw.loc['none', 'power_all']:.3f} "
            f"(Holm {fw.loc['holm', 'power_all']:.3f})"
        )
    n_ok = int(table["verdict"].isin(["in range", "null, as reported"]).sum())
    lines.append(f"{n_ok} of {len(table)} tests match the report")
    return "\n".join(lines)
