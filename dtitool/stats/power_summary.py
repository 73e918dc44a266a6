"""What a power run says in words: the printed summary and the warning lines.

:func:`power_summary` is the text ``dtitool power`` prints; :func:`size_warning`
the one line naming the tests whose size is off their band; :func:`missing_line`
the line saying how each trial's missing data were handled.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from dtitool.stats.binomial import SIZE_LEVEL, wilson_interval

if TYPE_CHECKING:  # PowerResult.summary() calls power_summary: no runtime import
    from dtitool.stats.power_results import PowerCurve, PowerResult, SampleSizeResult

__all__ = ["missing_line", "power_summary", "size_warning", "tests_table"]


def power_summary(res: PowerResult, tests=None, curve: PowerCurve | None = None,
                  size: SampleSizeResult | None = None) -> str:
    """Return the printed summary of a power run.

    Parameters
    ----------
    res : PowerResult
    tests : sequence of (roi, outcome, term[, direction]), optional
        Tests to list; default every interaction (and omnibus) test.
    curve : PowerCurve, optional
        Unused in the text (the curve is written as a table and a figure).
    size : SampleSizeResult, optional
        Its one-paragraph summary is appended.
    """
    t = res.table
    lines = [f"power of {res.design.name!r} (n = {res.design.n}), {res.replicates} "
             f"replicates, seed {res.seed}, alpha {res.alpha:g}, inference "
             f"{res.inference}; size = rejection rate in the null counterpart "
             "(every ROI-outcome correlation 0)", missing_line(res)]
    cols = ["roi", "outcome", "term", "power", "power_ci_low", "power_ci_high",
            "median_p", "size", "size_ok", "n_significant", "type_s",
            "exaggeration"]
    if tests:
        show = tests_table(res, tests)
        cols.insert(3, "sign")
        lines.append("power of a test with a sign (+ or -) counts only trials "
                     "significant with that sign; an outcome 'any' is found when "
                     "significant on either outcome (its size is that of finding "
                     "it falsely; docs/model.md)")
    else:
        show = t[t["term"].isin(res.design.names.key_terms)]
    def flags(frame):
        ok = frame["size_ok"].map({True: "yes", False: "NO"})
        return frame.assign(size_ok=ok.where(frame["size_ok"].notna(), "-"))

    with pd.option_context("display.width", 140, "display.max_rows", 100):
        lines.append(flags(show[cols]).to_string(index=False, float_format="%.4g",
                                                 na_rep="-"))
        fw = res.familywise
        fw = fw[fw["family"].isin(["reported", *res.design.names.key_terms])]
        lines.append(flags(fw[["family", "method", "tests", "power_any",
                               "power_all", "mean_rejections", "size",
                               "size_ok"]]).to_string(index=False,
                                                      float_format="%.3f",
                                                      na_rep="-"))
    if size is not None:
        lines.append(size.summary())
    return "\n".join(lines)


_SIGNS = {"positive": "+", "negative": "-", None: ""}

ANY = "any"
"""The outcome of a finding made on either outcome (as
:data:`dtitool.stats.reference.ANY`; this module may not import the results)."""


def tests_table(res: PowerResult, tests) -> pd.DataFrame:
    """Return one row per test of ``tests``, in their order, for the summary.

    Each test is ``(roi, outcome, term[, direction])``. A test with a direction
    has the power of that sign (``power_positive`` or ``power_negative`` of
    :attr:`PowerResult.table`, with its Wilson interval); one without, the
    power of either sign. A finding on outcome ``"any"`` (found when its test
    is significant, with its sign, on either outcome) takes its power and size
    from its one-finding family in :attr:`PowerResult.familywise` (as
    :func:`~dtitool.stats.power_results.finding_power` does) and the median of
    its smaller outcome p; its design-analysis columns are empty (they are per
    outcome). No test is left out.
    """
    d = res.design
    t = res.table.set_index(["roi", "outcome", "term"])
    fw = res.familywise
    rows = []
    for test in tests:
        test = tuple(test)
        roi, outcome, term = test[:3]
        direction = test[3] if len(test) == 4 else None
        row = {"roi": roi, "outcome": outcome, "term": term,
               "sign": _SIGNS[direction]}
        if outcome == ANY:
            name = f"finding {roi} {outcome} {term}"
            f = fw[(fw["family"] == name) & (fw["method"] == "none")]
            j, k = d.roi_names.index(roi), d.names.terms.index(term)
            p = np.abs(res.signed_p[:, j, :, k].astype(float))
            row["median_p"] = float(np.median(np.nanmin(p, axis=1)))
            if len(f) == 1:
                f = f.iloc[0]
                row.update(power=f["power_any"], power_ci_low=f["power_any_ci_low"],
                           power_ci_high=f["power_any_ci_high"], size=f["size"],
                           size_ok=f["size_ok"])
            else:  # a run without its family: counted from the stored p
                hit = p <= res.alpha
                if direction is not None:
                    want = 1 if direction == "positive" else -1
                    hit &= np.sign(res.signed_p[:, j, :, k]) == want
                n_hit = int(hit.any(axis=1).sum())
                lo, hi = wilson_interval(n_hit, res.replicates)
                row.update(power=n_hit / res.replicates, power_ci_low=float(lo),
                           power_ci_high=float(hi), size=np.nan, size_ok=pd.NA)
            row.update(n_significant=np.nan, type_s=np.nan, exaggeration=np.nan)
        else:
            r = t.loc[(roi, outcome, term)]
            row.update({c: r[c] for c in ("median_p", "size", "size_ok",
                                          "n_significant", "type_s",
                                          "exaggeration")})
            if direction is None:
                row.update(power=r["power"], power_ci_low=r["power_ci_low"],
                           power_ci_high=r["power_ci_high"])
            else:
                pw = float(r[f"power_{direction}"])
                lo, hi = wilson_interval(round(pw * int(r["valid"])), int(r["valid"]))
                row.update(power=pw, power_ci_low=float(lo), power_ci_high=float(hi))
        rows.append(row)
    return pd.DataFrame(rows)


def size_warning(res: PowerResult) -> str | None:
    """One line naming the tests whose size is off their band, or None.

    The tests are grouped by term (with the ROI x outcome models when not all of
    them); the line says whether the other inference option simulated in the
    same null-counterpart trials (``alternative_size``) brings them within band.
    """
    t = res.table
    bad = t[t["size_ok"].eq(False)]
    if bad.empty:
        return None
    n_models = len(res.design.model_rows) * len(res.design.outcome_names)
    parts = []
    for term, g in bad.groupby("term", sort=False):
        where = (f"all {n_models} models" if len(g) == n_models else
                 ", ".join(f"{r}/{o}" for r, o in zip(g["roi"], g["outcome"],
                                                      strict=True)))
        lo, hi = g["size"].min(), g["size"].max()
        rng = f"{lo:.3f}" if lo == hi else f"{lo:.3f}-{hi:.3f}"
        parts.append(f"{term} ({where}; size {rng})")
    line = (f"warning: {len(bad)} of {len(t)} tests are off their nominal level "
            f"{res.alpha:g} under --inference {res.inference} (size outside the "
            f"{SIZE_LEVEL:.0%} binomial band in the null counterpart): "
            + "; ".join(parts))
    alt = res.alternative_size
    if alt is not None:
        fixed = bad[["roi", "outcome", "term"]].merge(alt, on=["roi", "outcome",
                                                               "term"])
        n_ok = int(fixed["size_ok"].eq(True).sum())
        name = str(alt["inference"].iloc[0])
        if n_ok == len(bad):
            line += f"; --inference {name} puts all of them within band"
        else:
            line += (f"; --inference {name} puts {n_ok} of them within band "
                     "in the same null trials")
    else:
        line += ("; no other inference option is known to fix them here (see "
                 "docs/model.md, Inference)")
    if len(bad) <= 2:
        # the band is 99 % over the run's tests: a run whose tests are all at
        # their level flags one 1 % of the time (binomial.size_band)
        line += (f"; one or two flags can be chance (the band holds all {len(t)} "
                 "tests of a run at their level 99 % of the time): another --seed "
                 "or more --replicates tells")
    return line


def missing_line(res: PowerResult) -> str:
    """One line: how each trial's missing 24 h data were handled, and how many."""
    d = res.design
    miss = d.missing
    if miss.mechanism == "none":
        return (f"missing data: none in the design (every trial analyses all {d.n} "
                "participants)")
    what = "24 h visit (scan and ratings)" if miss.scores else "24 h scan"
    how = (f"{miss.mechanism.upper()} {what}, rate {miss.rate:g}"
           + (f", strength {miss.strength:g} on {miss.outcome}"
              if miss.mechanism == "mnar" else ""))
    if res.missing == "mi":
        return (f"missing data ({how}): multiple imputation, {res.imputations} "
                f"imputations per trial, Rubin's rules; on average "
                f"{res.mean_imputed:.1f} of {d.n} participants per trial imputed")
    return (f"missing data ({how}): complete case; on average "
            f"{d.n - res.mean_n:.1f} of {d.n} participants per trial left out")
