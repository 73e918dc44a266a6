"""What a power run says in words: the printed summary and the warning lines.

:func:`power_summary` is the text ``dtitool power`` prints; :func:`size_warning`
the one line naming the tests whose size is off their band; :func:`missing_line`
the line saying how each trial's missing data were handled.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from dtitool.stats.binomial import SIZE_LEVEL

if TYPE_CHECKING:  # PowerResult.summary() calls power_summary: no runtime import
    from dtitool.stats.power_results import PowerCurve, PowerResult, SampleSizeResult

__all__ = ["missing_line", "power_summary", "size_warning"]


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
    if tests:
        keys = pd.DataFrame([tuple(r[:3]) for r in tests],
                            columns=["roi", "outcome", "term"])
        show = keys.merge(t, on=["roi", "outcome", "term"])
    else:
        show = t[t["term"].isin(res.design.names.key_terms)]
    cols = ["roi", "outcome", "term", "power", "power_ci_low", "power_ci_high",
            "median_p", "size", "size_ok", "n_significant", "type_s",
            "exaggeration"]
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
