"""Reported versus simulated, test by test: the reference study against many trials.

For every finding of the reference study (Kopelman et al. 2023; see
:mod:`dtitool.stats.reference`) this sets the median p and the power over
simulated trials of a design beside the reported p range, with a verdict and the
effect the reported p implies (:func:`dtitool.stats.implied.implied_effect`).

Two worlds are shipped as presets: ``ketamine-rct`` (realistic: every parameter
inside its sourced range) and ``ketamine-rct-face-value`` (effects set so that
each reported test's median p falls in its range, about 50 % power each).
:func:`compare_worlds` sets one world's power beside the other's,
:func:`add_needed` says which parameter a reported p would have to move outside
its range and by how much, :func:`interpretation_notes` flags the readings the
analysis invites but does not support, and :func:`reproduce_report` prints it all.

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

from dtitool.stats.binomial import SIZE_LEVEL
from dtitool.stats.design_analysis import retrodesign
from dtitool.stats.implied import implied_effect
from dtitool.stats.power import finding_p, finding_power, finding_size
from dtitool.stats.power_results import md_rows
from dtitool.stats.reference import ANY, reference_mismatch, reported_findings

__all__ = [
    "ALT_COLUMNS",
    "FACE_VALUE_WORLD",
    "NEEDED_COLUMNS",
    "NULL_MEDIAN_P",
    "POINT_TOLERANCE",
    "REALISTIC_WORLD",
    "REPRODUCE_COLUMNS",
    "add_needed",
    "alternative_inference",
    "compare_inference",
    "compare_worlds",
    "interpretation_notes",
    "other_world",
    "reproduce_report",
    "reproduce_summary",
    "reproduce_table",
    "world_summary",
]

REALISTIC_WORLD = "ketamine-rct"
"""Preset of the realistic world (every parameter inside its sourced range)."""

FACE_VALUE_WORLD = "ketamine-rct-face-value"
"""Preset of the face-value world (median p of each reported test in its range)."""

REPRODUCE_COLUMNS = ["roi", "outcome", "term", "reported_p", "median_p", "power"]
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
    why = reference_mismatch(design)
    if why is not None:
        raise ValueError(why)
    t = md_rows(res.table).set_index(["roi", "outcome", "term"])
    rows = []
    for f in reported_findings().itertuples(index=False):
        outs = list(design.outcome_names) if f.outcome == ANY else [f.outcome]
        direction = {1: "positive", -1: "negative", 0: None}[int(f.direction)]
        test = (f.roi, f.outcome, f.term, direction)
        if f.outcome == ANY and f.direction != 0:
            # one rule (docs/model.md): found when significant with the reported
            # sign on at least one outcome; its p is the smaller outcome p
            med = float(np.median(finding_p(res, test)))
            pw = finding_power(res, test)[0]
            size, size_ok = finding_size(res, test)
            rows_o = [t.loc[(f.roi, o, f.term)] for o in outs]
            # what a miss needs is worked out on the outcome closer to the report
            decisive = min(range(len(outs)), key=lambda i: rows_o[i]["median_p"])
            decisive_outcome = outs[decisive]
            decisive_p = float(rows_o[decisive]["median_p"])
            row = rows_o[0].copy()
            row["mean_estimate"] = np.nan  # per outcome, in different units
            row["type_s"] = row["exaggeration"] = np.nan
            sign_ok = all(np.sign(r["mean_estimate"]) == f.direction for r in rows_o)
        else:
            row = t.loc[(f.roi, outs[0], f.term)]
            med = float(row["median_p"])
            decisive_outcome, decisive_p = outs[0], med
            pw = finding_power(res, test)[0]
            size, size_ok = float(row["size"]), row["size_ok"]
            sign_ok = np.sign(row["mean_estimate"]) == f.direction
        lo, hi = f.p_low, f.p_high
        if f.direction == 0:
            reported_p = "n.s."
            verdict = ("expected null, median p above "
                       f"{NULL_MEDIAN_P:g}" if med > NULL_MEDIAN_P else "not null")
            implied = {}
        else:
            if lo == hi:
                reported_p = f"{lo:g}"
                lo, hi = lo / POINT_TOLERANCE, hi * POINT_TOLERANCE
            else:
                reported_p = f"{lo:g}-{hi:g}"
            if not sign_ok:
                verdict = "opposite sign"
            elif med < lo:
                verdict = "stronger than reported"
            elif med > hi:
                verdict = "weaker than reported"
            else:
                verdict = "in range"
            rel = design.reliability(design.treatment)[f.roi]
            if f.term == "slope_pooled":
                rel = 0.5 * (rel + design.reliability(design.control)[f.roi])
            e = implied_effect(
                math.sqrt(f.p_low * f.p_high), n=design.n,
                allocation=design.allocation.as_tuple(design.arms), reliability=rel,
                term=f.term, alpha=res.alpha, arms=design.arms)
            half = retrodesign(HALF_EFFECT * e.t, 1.0, alpha=res.alpha, df=e.df)
            implied = {"implied_r_observed": e.r_observed, "implied_r_true": e.r_true,
                       "implied_possible": e.possible,
                       "replication_power": e.replication_power,
                       "half_effect_power": float(half["power"]),
                       "half_effect_type_s": float(half["type_s"]),
                       "half_effect_exaggeration": float(half["exaggeration"])}
        rows.append({
            "roi": f.roi, "outcome": f.outcome, "term": f.term,
            "reported_p": reported_p, "median_p": med, "power": float(pw),
            "size": size, "size_ok": size_ok,
            "inference": row["inference"],
            "reported_outcome": f.outcome, "direction": int(f.direction),
            "p_low": f.p_low, "p_high": f.p_high,
            "mean_estimate": float(row["mean_estimate"]), "verdict": verdict,
            "implied_r_observed": np.nan, "implied_r_true": np.nan,
            "implied_possible": pd.NA, "replication_power": np.nan,
            "type_s": float(row["type_s"]), "exaggeration": float(row["exaggeration"]),
            "half_effect_power": np.nan, "half_effect_type_s": np.nan,
            "half_effect_exaggeration": np.nan, **implied,
            "decisive_outcome": decisive_outcome, "decisive_median_p": decisive_p,
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
    extra = [c for c in ("other_median_p", "other_power") if c in table]
    show = table[[*REPRODUCE_COLUMNS, "size", *extra, "verdict", "implied_r_true",
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
    reported = table["direction"] != 0
    n_ok = int((table["verdict"][reported] == "in range").sum())
    n_null = int((~reported).sum())
    n_quiet = int(table["verdict"][~reported].str.startswith("expected null").sum())
    lines.append(f"{n_ok} of {int(reported.sum())} reported tests have a median p in "
                 f"the reported range; {n_quiet} of {n_null} expected nulls have "
                 f"a median p above {NULL_MEDIAN_P:g} (not a match: a test that is "
                 "rarely significant is absence of evidence)")
    return "\n".join(lines)


# ------------------------------------------------------------ two worlds, needs


def other_world(design) -> str:
    """Name of the preset to set beside ``design``.

    The face-value world for every design except the face-value world itself,
    which is compared with the realistic one.
    """
    return REALISTIC_WORLD if design.name == FACE_VALUE_WORLD else FACE_VALUE_WORLD


ALT_COLUMNS = ("alt_inference", "alt_median_p", "alt_power", "alt_size",
               "alt_size_ok")
"""Columns :func:`compare_inference` appends: the same trials, another analysis."""


def alternative_inference(inference: str) -> str:
    """Return the analysis to set beside ``inference`` in the same trials.

    ``welch`` beside the reported ``ols`` (and beside ``hc3``): it keeps its
    level when the arms' variances differ, which ``ols`` does not; ``ols``
    beside ``welch``, so that the reported analysis is always in view.
    """
    return "ols" if inference == "welch" else "welch"


def compare_inference(table: pd.DataFrame, alt: pd.DataFrame) -> pd.DataFrame:
    """Set another analysis of the same simulated trials beside each test.

    Parameters
    ----------
    table, alt : DataFrame
        :func:`reproduce_table` of two power runs of one design with one seed
        (so the same trials and the same null counterpart) under two inference
        options: the reported analysis and the one beside it
        (:func:`alternative_inference`).

    Returns
    -------
    DataFrame
        ``table`` with :data:`ALT_COLUMNS` appended: ``alt_inference`` and that
        analysis's median p, power and size (``alt_size_ok``: within its
        band). A reader sees at once whether a verdict depends on the
        analysis, and how far each test's size is from alpha under each.
    """
    key = ["roi", "reported_outcome", "term"]
    names = {c: f"alt_{c}" for c in ("median_p", "power", "size", "size_ok")}
    o = alt[[*key, *names]].rename(columns=names)
    out = table.merge(o, on=key, how="left", validate="one_to_one")
    out.insert(len(table.columns), "alt_inference", str(alt["inference"].iloc[0]))
    return out


_INFERENCE_WORDS = {
    "ols": "classical pooled-variance OLS, the reported analysis",
    "welch": "arms fitted separately, Welch-Satterthwaite df",
    "hc3": "HC3 robust standard errors",
}


def inference_summary(table: pd.DataFrame, res) -> list[str]:
    """Return the printed lines that set two analyses of the same trials side by side.

    Nothing without :func:`compare_inference`'s columns; else
    one line of sizes and powers, then per test the median p, power and size
    under each. The size span is over the single tests, whose nominal size is
    alpha (an ``"any"`` finding's is not: see :data:`~dtitool.stats.reference.ANY`).
    """
    if "alt_inference" not in table:
        return []
    main, alt = res.inference, str(table["alt_inference"].iloc[0])
    single = table[table["outcome"] != ANY]
    rep = table[table["direction"] != 0]

    def sizes(col, ok):
        off = int(single[ok].eq(False).sum())
        return (f"{_span((single[col].min(), single[col].max()), '{:.3f}')} "
                f"({off} of {len(single)} outside their "
                f"{SIZE_LEVEL:.0%} binomial band)")

    def powers(col):
        return _span((rep[col].min(), rep[col].max()))

    lines = [
        "",
        f"The same simulated trials under --inference {alt} "
        f"({_INFERENCE_WORDS[alt]}) beside {main} ({_INFERENCE_WORDS[main]}). "
        f"Size in the null counterpart (nominal {res.alpha:g}): {main} "
        f"{sizes('size', 'size_ok')}, {alt} {sizes('alt_size', 'alt_size_ok')}. "
        f"Power of the reported tests: {main} {powers('power')}, {alt} "
        f"{powers('alt_power')}.",
    ]
    show = table[["roi", "outcome", "term", "median_p", "alt_median_p", "power",
                  "alt_power", "size", "alt_size"]].rename(columns={
        "median_p": f"{main}_median_p", "alt_median_p": f"{alt}_median_p",
        "power": f"{main}_power", "alt_power": f"{alt}_power",
        "size": f"{main}_size", "alt_size": f"{alt}_size"})
    with pd.option_context("display.width", 140, "display.max_rows", 100):
        lines.append(show.to_string(index=False, float_format="%.4g", na_rep=""))
    return lines


def compare_worlds(table: pd.DataFrame, other: pd.DataFrame,
                   name: str) -> pd.DataFrame:
    """Set another world's median p and power beside each reported test.

    Parameters
    ----------
    table, other : DataFrame
        :func:`reproduce_table` of the design and of the other world.
    name : str
        The other world's name (a preset name).

    Returns
    -------
    DataFrame
        ``table`` with ``other_world``, ``other_median_p`` and ``other_power``
        appended (an ``"any"`` outcome takes the other world's stronger outcome).
    """
    key = ["roi", "reported_outcome", "term"]
    o = other[[*key, "median_p", "power"]].rename(
        columns={"median_p": "other_median_p", "power": "other_power"})
    out = table.merge(o, on=key, how="left", validate="one_to_one")
    out.insert(len(table.columns), "other_world", name)
    return out


def _visit_words(design) -> str:
    """Return the follow-up visit in words: ``"24 h"`` (its hours), or its name."""
    hours = design.visits[1].hours
    if hours < 72:
        return f"{hours:g} h"
    return f"{hours / 24:g}-day" if hours % 24 == 0 else design.primary_visit


NEEDED_COLUMNS = ("target_p", "needed_factor", "needed_r_true",
                  "needed_change_sd_pct", "needed_reliability", "needed_cv_pct",
                  "needed_control_change_sd_pct", "leaves_range", "needed")
"""Columns :func:`add_needed` appends to the reproduce table."""

_GRID = 400  # points of each one-parameter scan


def _test_statistic(term, n, r_true, rel, v, sy):
    """Return the expected t of a term from the arms' moments (treatment first).

    ``r_true``, ``rel``, ``v``, ``sy``: per arm (arrays may carry a leading scan
    axis) the true dMD-score correlation, the dMD reliability, the observed dMD
    variance and the observed score-change SD; ``n``: arm sizes. The observed
    correlation is ``r_true sqrt(rel)``; slopes ``b = r sy / sqrt(v)``. The
    interaction divides the slope difference by its pooled-variance SE
    ``sigma sqrt(1/(n_k v_k) + 1/(n_s v_s))``; the pooled slope is the
    within-arm weighted slope over ``sigma / sqrt(n_k v_k + n_s v_s)`` (OLS of
    the additive model). Anchored to the power engine by :func:`add_needed`.
    """
    nk, ns = n
    rk, rs = (r_true[a] * np.sqrt(rel[a]) for a in (0, 1))
    bk, bs = rk * sy[0] / np.sqrt(v[0]), rs * sy[1] / np.sqrt(v[1])
    if term == "slope_pooled":
        w = nk * v[0] + ns * v[1]
        b = (nk * v[0] * bk + ns * v[1] * bs) / w
        s2 = sum(m * (sd * sd - 2 * b * r * sd * np.sqrt(vv) + b * b * vv)
                 for m, sd, r, vv in ((nk, sy[0], rk, v[0]), (ns, sy[1], rs, v[1])))
        s2 = s2 / (nk + ns - 3)
        return b / np.sqrt(s2 / w)
    s2 = (nk * sy[0] ** 2 * (1 - rk * rk) + ns * sy[1] ** 2 * (1 - rs * rs)) / (
        nk + ns - 4)
    return (bk - bs) / np.sqrt(s2 * (1 / (nk * v[0]) + 1 / (ns * v[1])))


def _needed_row(f, design, sy, alpha: float) -> dict:
    """Return what one reported test that misses its range needs (add_needed)."""
    from scipy import special

    hi = f.p_high * (POINT_TOLERANCE if f.p_low == f.p_high else 1.0)
    df = design.n - (4 if f.term == "slope_pooled" else 5)
    t_target = float(special.stdtrit(df, 1 - hi / 2))
    t_engine = float(special.stdtrit(df, 1 - min(max(f.median_p, 1e-12), 0.999) / 2))
    i = design.roi_names.index(f.roi)
    j = design.outcome_names.index(f.outcome)
    roi = design.rois[i]
    n = design.arm_sizes()
    arm_t, arm_c = design.treatment, design.control
    corr = [float(design.correlations.roi_outcome_array(arm)[i, j]) * f.direction
            for arm in (arm_t, arm_c)]
    cs = [roi.change_sd[arm_t], roi.change_sd[arm_c]]

    def stat(r_k=None, r_s=None, cs_k=None, cs_s=None, cv=None):
        e2 = ((roi.cv if cv is None else cv) * roi.md_mean) ** 2
        c = [cs[0] if cs_k is None else cs_k, cs[1] if cs_s is None else cs_s]
        v = [c[0] ** 2 + 2 * e2, c[1] ** 2 + 2 * e2]
        rel = [c[0] ** 2 / v[0], c[1] ** 2 / v[1]]
        r = [corr[0] if r_k is None else r_k, corr[1] if r_s is None else r_s]
        return _test_statistic(f.term, n, r, rel, v, sy)

    # anchor the formula to the power engine's median p (it absorbs what the
    # formula leaves out: the baseline covariate, the bounded score model)
    t_formula = float(stat())
    # a design with no association here has nothing to anchor to: formula alone
    anchor = t_engine / t_formula if t_formula > 1e-6 else 1.0

    def first(grid, values):
        ok = np.nonzero(values * anchor >= t_target)[0]
        return float(grid[ok[0]]) if ok.size else math.nan

    def best(grid, values):
        """Return the smallest median p the scan reaches, and where."""
        k = int(np.argmax(values))
        p = 2 * special.stdtr(df, -abs(float(values[k]) * anchor))
        return float(p), float(grid[k])

    rg = design.ranges
    pooled = f.term == "slope_pooled"
    # (1) the true correlation (both arms alike for the pooled slope)
    g_r = np.linspace(abs(corr[0]), 0.999, _GRID)
    need_r = first(g_r, stat(r_k=g_r, r_s=g_r if pooled else None))
    # (2) the treatment arm's true MD-change SD
    g_sd = np.geomspace(cs[0], 0.5 * roi.md_mean, _GRID)
    t_sd = stat(cs_k=g_sd)
    need_sd = first(g_sd, t_sd)
    # (3) the test-retest CV of this ROI (both arms)
    g_cv = np.geomspace(roi.cv, 1e-3, _GRID)
    t_cv = stat(cv=g_cv)
    need_cv = first(g_cv, t_cv)
    # (4) pooled slope: the control arm's true MD-change SD
    need_ssd = math.nan
    if pooled:
        g_s = np.geomspace(max(cs[1], 1e-9), 0.5 * roi.md_mean, _GRID)
        need_ssd = first(g_s, stat(cs_s=g_s))
    noise2 = 2 * roi.noise_sd ** 2
    need_rel = (need_sd ** 2 / (need_sd ** 2 + noise2) if need_sd == need_sd
                else math.nan)
    pct = lambda x: 100 * x / roi.md_mean  # noqa: E731

    leaves, parts, cannot = [], [], []
    r_max = rg.roi_outcome[1] if rg is not None and rg.roi_outcome else 1.0
    if need_r != need_r:
        cannot.append("the true correlation (not even at 1)")
        leaves.append("true correlation (not enough even at 1)")
    else:
        c = design.correlations.roi_outcome_array(arm_t)[:, j].copy()
        c[i] = math.copysign(need_r, f.direction)
        r2 = float(c @ np.linalg.solve(np.asarray(design.correlations.roi_change), c))
        r2_max = rg.r_squared[1] if rg is not None and rg.r_squared else 1.0
        joint = design.change_correlation(arm_t)
        joint[i, len(design.rois) + j] = joint[len(design.rois) + j, i] = c[i]
        possible = np.linalg.eigvalsh(joint)[0] > 1e-10
        txt = f"a true correlation of {need_r:.2f} (now {abs(corr[0]):.2f}"
        if need_r > r_max:
            txt += f"; range <= {r_max:g}, x{need_r / r_max:.2f}"
            leaves.append(f"true correlation x{need_r / r_max:.2f}")
        if not possible or r2 >= 1:
            cannot.append(f"the true correlation (it would need {need_r:.2f}, which "
                          "the design's other correlations make impossible: not "
                          "positive definite)")
            leaves.append("correlations not jointly possible")
            txt = ""
        elif r2 > r2_max:
            txt += f"; R^2 of {f.outcome} change on all true dMD {r2:.2f} > {r2_max:g}"
            leaves.append(f"R^2 {r2:.2f} > {r2_max:g}")
        if txt:
            parts.append(txt + ")")
    def sd_path(arm, need, now, bounds, word, extra=""):
        txt = (f"a {arm}-arm true MD-change SD of {pct(need):.2g} % of MD (now "
               f"{pct(now):.2g} %{extra}")
        if bounds and need / roi.md_mean > bounds[1]:
            x = need / roi.md_mean / bounds[1]
            txt += f"; {word} <= {100 * bounds[1]:g} %, x{x:.2f}"
            leaves.append(f"{arm} MD-change SD x{x:.2f}")
        parts.append(txt + ")")

    sd_rng = rg.change_sd(arm_t) if rg is not None else None
    if need_sd != need_sd:
        p_best, at = best(g_sd, t_sd)
        why = (f"the {arm_c} arm's slope, fitted to a dMD that is nearly all noise, "
               "caps the test" if corr[0] else "there is no association to show")
        cannot.append(f"the {arm_t} arm's MD-change SD (best p {p_best:.3g}, at "
                      f"{pct(at):.2g} % of MD: {why})")
        leaves.append(f"{arm_t} MD-change SD (not enough at any value)")
    else:
        sd_path(arm_t, need_sd, cs[0], sd_rng, "range",
                f"; dMD reliability {need_rel:.2f}")
    if need_cv != need_cv:
        p_best, at = best(g_cv, t_cv)
        cannot.append(f"the test-retest CV (best p {p_best:.3g}, at "
                      f"{100 * at:.2g} %)")
    else:
        txt = f"a test-retest CV of {100 * need_cv:.2g} % (now {100 * roi.cv:.2g} %"
        if rg is not None and rg.cv and need_cv < rg.cv[0]:
            txt += f"; below the lowest reported, {100 * rg.cv[0]:g} %"
            leaves.append("CV below the lowest reported")
        elif rg is not None and rg.cv:
            txt += (f"; inside the reported {100 * rg.cv[0]:g}-{100 * rg.cv[1]:g} %, "
                    "but a CV is the scanner's, not the world's: this world keeps "
                    "the sourced value")
        parts.append(txt + ")")
    if pooled:
        s_rng = rg.change_sd(arm_c) if rg is not None else None
        if need_ssd != need_ssd:
            cannot.append(f"the {arm_c} arm's MD-change SD (up to 50 % of MD)")
        else:
            sd_path(arm_c, need_ssd, cs[1], s_rng, "rule")
    text = (f"{f.roi} {f.outcome} {f.term}: median p {f.median_p:.3g} > {hi:.3g}, "
            f"its t must grow {t_target / t_engine:.2f}x. ")
    no = (f"{cannot[0]} cannot" if len(cannot) == 1 else
          f"neither {' nor '.join(cannot)} can" if cannot else "")
    if parts:
        text += "Alone, " + "; or ".join(parts) + " would do it" + (
            f"; {no}" if no else "")
    else:
        text += f"No single parameter does it: {no}"
    return {"target_p": hi, "needed_factor": t_target / t_engine,
            "needed_r_true": need_r, "needed_change_sd_pct": pct(need_sd),
            "needed_reliability": need_rel, "needed_cv_pct": 100 * need_cv,
            "needed_control_change_sd_pct": pct(need_ssd),
            "leaves_range": "; ".join(leaves), "needed": text}


def add_needed(table: pd.DataFrame, design, *, alpha: float = 0.05,
               score_sd: pd.DataFrame | None = None) -> pd.DataFrame:
    """Say what each reported test that misses its range would need.

    For every reported test whose median p lies above its reported range, one
    parameter at a time is moved until the test's expected t reaches the t of a
    p at the top of the range: the true ROI-outcome correlation, the ketamine
    arm's true 24 h MD-change SD, the ROI's test-retest CV and, for the pooled
    slope ("in both arms alike"), the saline arm's true MD-change SD. The
    expected t comes from the arms' moments (:func:`_test_statistic`: observed
    dMD variance ``c^2 + 2 e^2``, reliability ``c^2 / (c^2 + 2 e^2)``, observed
    correlation ``r sqrt(reliability)``, pooled-variance OLS standard errors),
    anchored to the power engine: the ratio of the engine's median-p t to the
    formula's t at the design is carried to every other value. Each needed
    value is set against the design's
    :attr:`~dtitool.design.StudyDesign.ranges`; ``leaves_range`` names every
    path that leaves its range and by what factor, or cannot get there at all
    (raising only the ketamine arm's MD-change SD saturates: the interaction's
    SE holds the saline arm's slope, fitted to a dMD that is nearly all noise).

    Parameters
    ----------
    table : DataFrame
        :func:`reproduce_table` output.
    design : StudyDesign
        The design simulated.
    alpha : float
    score_sd : DataFrame, optional
        :func:`dtitool.simulate.score_summary` of ``design`` (its observed change
        SDs per outcome and arm); computed when not given.

    Returns
    -------
    DataFrame
        ``table`` with :data:`NEEDED_COLUMNS` appended (NaN / empty for tests in
        range, stronger than reported, or expected null).
    """
    todo = (table["direction"] != 0) & (table["verdict"] == "weaker than reported")
    sy = {}
    if todo.any():
        if score_sd is None:
            from dtitool.simulate import score_summary

            score_sd = score_summary(design)
        sy = {(r.outcome, r.arm): r.observed_change_sd
              for r in score_sd.itertuples(index=False)}
    rows = []
    for f, do in zip(table.itertuples(index=False), todo, strict=True):
        if do:
            # an "any" finding: worked out on its decisive outcome (reproduce_table)
            f = f._replace(outcome=f.decisive_outcome, median_p=f.decisive_median_p)
            s = (sy[(f.outcome, design.treatment)], sy[(f.outcome, design.control)])
            rows.append(_needed_row(f, design, s, alpha))
        else:
            rows.append({c: (math.nan if c not in ("leaves_range", "needed") else "")
                         for c in NEEDED_COLUMNS})
    return pd.concat([table.reset_index(drop=True), pd.DataFrame(rows)], axis=1)


def world_summary(design) -> dict:
    """Summarise a world: dMD reliability, change SDs, R^2, range violations.

    Returns
    -------
    dict
        ``world``; ``reliability_ketamine``, ``reliability_saline`` and
        ``change_sd_pct_ketamine``, ``change_sd_pct_saline`` as ``(min, max)``
        over ROIs; ``r_squared_<outcome>`` (ketamine arm, true dMD of all ROIs);
        ``violations`` (:meth:`~dtitool.design.StudyDesign.range_violations`).
    """
    md = design.md_summary()
    out = {"world": design.name}
    out["arms"] = design.arms
    out["follow_up"] = _visit_words(design)
    for arm in design.arms:
        m = md[md["arm"] == arm]
        out[f"reliability_{arm}"] = (float(m["dmd_reliability"].min()),
                                     float(m["dmd_reliability"].max()))
        out[f"change_sd_pct_{arm}"] = (float(m["change_sd_pct_md"].min()),
                                       float(m["change_sd_pct_md"].max()))
    for o, r2 in design.r_squared(design.treatment).items():
        out[f"r_squared_{o}"] = r2
    out["violations"] = design.range_violations()
    return out


def _span(lo_hi, fmt="{:.2f}") -> str:
    lo, hi = (fmt.format(x) for x in lo_hi)
    return lo if lo == hi else f"{lo}-{hi}"


def _violation_kinds(violations: list[str]) -> str:
    """Group range violations by kind: 'true MD-change SD, saline arm (7 ROIs)'."""
    kinds: dict[str, int] = {}
    for v in violations:
        if ".change_sd." in v:
            k = f"true MD-change SD, {v.split('.change_sd.')[1].split()[0]} arm"
        elif ".cv " in v:
            k = "test-retest CV"
        elif v.startswith("R^2 of "):
            k = f"R^2 ({v.split()[2]})"
        else:
            k = "ROI-outcome correlation"
        kinds[k] = kinds.get(k, 0) + 1
    return "; ".join(f"{k} ({n} ROIs)" if n > 1 and "R^2" not in k else k
                     for k, n in kinds.items())


def _world_line(w: dict) -> str:
    r2 = ", ".join(f"{k[len('r_squared_'):]} {v:.2f}" for k, v in w.items()
                   if k.startswith("r_squared_"))
    v = w["violations"]
    at, ac = w["arms"]
    return (f"{w['world']}: dMD reliability {_span(w[f'reliability_{at}'])} "
            f"({at} arm), {_span(w[f'reliability_{ac}'])} ({ac} arm); true "
            f"{w['follow_up']} MD-change SD "
            f"{_span(w[f'change_sd_pct_{at}'], '{:.2g}')} % of "
            f"MD ({at}), {_span(w[f'change_sd_pct_{ac}'], '{:.2g}')} % "
            f"({ac}); R^2 of score change on the true dMD of all ROIs ({at} "
            f"arm): {r2}; "
            + (f"outside their ranges: {_violation_kinds(v)}" if v
               else "every parameter inside its range"))


def interpretation_notes(table: pd.DataFrame, res) -> list[str]:
    """Return the readings the analysis invites but does not support, with numbers.

    1. dMD is measured after randomisation: the group x dMD interaction is not a
       randomised comparison.
    2. "Driven by the ketamine arm" (a slope significant in one arm and not in
       the other) is not itself a test (Gelman and Stern 2006): for every
       reported interaction, how often that pattern appears, and the
       interaction's own median p and power beside it.
    """
    alpha = res.alpha
    notes = [
        "dMD is measured after randomisation: it is an outcome of the infusion, not "
        "a randomised factor. The group x dMD interaction compares the dMD-score "
        "slopes within the arms, so anything that moves both MD and mood within an "
        "arm (arousal, sleep, hydration, dissociation) can produce it; only the "
        "effects of the infusion on dMD and on the score are randomised "
        "comparisons."]
    d = res.design
    sp = np.abs(res.signed_p.astype(float))
    sign = np.sign(res.signed_p)
    terms = d.names.terms
    st, sc = (f"slope_{a}" for a in d.arms)
    at, ac = d.arms
    tk, ts, ti = (terms.index(t) for t in (st, sc, "interaction"))
    t = md_rows(res.table).set_index(["roi", "outcome", "term"])
    for f in table.itertuples(index=False):
        if f.term != "interaction" or f.direction == 0:
            continue
        j, k = d.roi_names.index(f.roi), d.outcome_names.index(f.outcome)
        p = sp[:, j, k]
        ket = (p[:, tk] <= alpha) & (sign[:, j, k, tk] == f.direction)
        pattern = ket & (p[:, ts] > alpha)
        inter = (p[:, ti] <= alpha) & (sign[:, j, k, ti] == f.direction)
        share = float(pattern.mean())
        both = float(inter[pattern].mean()) if pattern.any() else math.nan
        rk = t.loc[(f.roi, f.outcome, st)]
        rs = t.loc[(f.roi, f.outcome, sc)]
        notes.append(
            f"{f.roi} {f.outcome}: 'driven by the {at} arm' ({at}-arm slope "
            f"significant, median p {rk['median_p']:.3g}; {ac}-arm slope not, "
            f"median p {rs['median_p']:.3g}) appears in {share:.0%} of trials, but "
            "a slope significant in one arm and not in the other is not itself a "
            "test of a difference (Gelman and Stern 2006). The test is the "
            f"interaction: median p {f.median_p:.3g}, power {f.power:.2f}; it is "
            f"significant in {both:.0%} of the trials that show the pattern.")
    return notes


def reproduce_report(table: pd.DataFrame, res, *, other_design=None) -> str:
    """Return the printed ``dtitool reproduce`` view: both worlds, needs, notes.

    Parameters
    ----------
    table : DataFrame
        :func:`reproduce_table` output, optionally through :func:`compare_worlds`
        and :func:`add_needed`.
    res : PowerResult
        The design's power run.
    other_design : StudyDesign, optional
        The world set beside it (its power is in ``table``'s ``other_*`` columns).
    """
    lines = [reproduce_summary(table, res), *inference_summary(table, res), "",
             "Worlds:",
             "  " + _world_line(world_summary(res.design))]
    if other_design is not None:
        lines.append("  " + _world_line(world_summary(other_design)))
    rep = table[table["direction"] != 0]
    pw = f"{rep['power'].min():.2f}-{rep['power'].max():.2f}"
    text = (f"A median p inside a reported range means about 50 % power: half of "
            f"that world's trials give a larger p. That is the face-value reading of "
            f"a published result, which the significance filter inflates. Here the "
            f"reported tests have power {pw} in {res.design.name!r}")
    if "other_power" in rep and rep["other_power"].notna().all():
        text += (f" and {rep['other_power'].min():.2f}-{rep['other_power'].max():.2f} "
                 f"in {rep['other_world'].iloc[0]!r}")
    lines += ["", text + "."]
    if "needed" in table:
        need = [x for x in table["needed"] if x]
        if need:
            lines += ["", "What the reported p-values need (each alone, at the top "
                      "of its reported range):"]
            lines += [f"  - {x}" for x in need]
    lines += ["", "Reading the results:"]
    lines += [f"  - {x}" for x in interpretation_notes(table, res)]
    return "\n".join(lines)
