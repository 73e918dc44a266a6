"""The demo's report, rendered from one results object.

:func:`render_demo_report` draws the figures and writes the self-contained HTML
report of a demo run from its :class:`dtitool.pipeline.DemoResults` (tables,
results, the figures' data): it computes no result and runs no step, so the
same results object always gives the same page. The pipeline that runs the
steps and makes the results object is :mod:`dtitool.pipeline`; it calls
:func:`draw_demo_figure` in worker processes while it goes on, and this module
never imports it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from dtitool import __version__
from dtitool._constants import DMD_UNIT
from dtitool.design import StudyDesign
from dtitool.report.plots import outcome_label, visit_label
from dtitool.simulate import md_summary_wide, score_summary
from dtitool.stats.reference import reported_families
from dtitool.stats.reproduce import interpretation_notes, world_summary

__all__ = ["DEMO_FIGURES", "draw_demo_figure", "render_demo_report"]

DEMO_FIGURES = {"slices": "roi_slices.png", "scatter": "scatter_grid.png",
                "sessions": "md_sessions.png", "forest": "forest.png",
                "curve": "power_curve.png"}
"""The demo's figures: name -> file in ``OUT/figures``."""


_COUNTS = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight",
           "nine", "ten", "eleven", "twelve")


def _count(k: int) -> str:
    """Return a count as prose: seven, or 15."""
    return _COUNTS[k] if 0 <= k < len(_COUNTS) else str(k)


def _span(lo, hi, fmt: str = "{:.2f}") -> str:
    """Return ``lo-hi`` in ``fmt``, or one number when both ends print alike.

    Examples
    --------
    >>> _span(0.18, 0.49), _span(0.5, 0.5, "{:.2g}"), _span(0.601, 0.598)
    ('0.18-0.49', '0.5', '0.60')
    """
    a, b = fmt.format(lo), fmt.format(hi)
    return a if a == b else f"{a}-{b}"


_ANALYSIS_TEXT = {
    "welch": "each arm fitted on its own by statsmodels OLS, interactions with "
    "Welch-Satterthwaite df, the pooled slope by feasible GLS",
    "ols": "statsmodels OLS, one pooled residual variance",
    "hc3": "statsmodels OLS with HC3 standard errors",
}
"""How the models of each inference option are fitted, for the results text."""


def _visit_text(visit) -> str:
    """Return a visit as prose: its time since baseline (``24 h``), else its name."""
    if visit.hours == 0:
        return visit.name
    if visit.hours < 72:
        return f"{visit.hours:g} h"
    return f"{visit_label(visit.name)} ({visit.hours / 24:g} days)"


def _visits(design: StudyDesign) -> tuple:
    """Return the baseline and primary visit (:class:`VisitSpec`) of a design."""
    by = {v.name: v for v in design.visits}
    return by[design.baseline_visit], by[design.primary_visit]


def _outcome_text(spec) -> str:
    """Return an outcome as prose: its name in capitals, with its scale if any."""
    name = spec.name.upper()
    return name if spec.scale in ("", name) else f"{name} ({spec.scale})"


def _and_list(items) -> str:
    items = list(items)
    return items[0] if len(items) == 1 else (
        ", ".join(items[:-1]) + " and " + items[-1])


def _ratio(design: StudyDesign) -> str:
    """Return the allocation ratio in the design's arm order (``2:1``)."""
    return ":".join(f"{design.allocation[a]}" for a in design.arms)


def _cohort_summary(cohort) -> tuple[pd.DataFrame, pd.DataFrame]:
    p = cohort.participants
    d = cohort.design
    v0, v1 = _visits(d)
    rows = []
    for arm in d.arms:
        q = p[p["group"] == arm]
        row = {"arm": arm, "n": len(q)}
        for o in d.outcome_names:
            b, post = q[f"{o}_{v0.name}"], q[f"{o}_{v1.name}"]
            row[f"{o} {v0.name}"] = f"{b.mean():.1f} ({b.std():.1f})"
            row[f"{o} change"] = f"{(post - b).mean():+.1f} ({(post - b).std():.1f})"
        if "age" in q:
            row["age"] = f"{q['age'].mean():.0f} ({q['age'].std():.0f})"
            row["female"] = f"{(q['sex'] == 'F').mean():.0%}"
        rows.append(row)
    arms = pd.DataFrame(rows)
    md = cohort.roi_md.merge(p[["participant_id", "group"]], on="participant_id")
    wide = md.pivot_table(index=["roi", "group"], columns="session", values="md")
    wide = wide[[v0.name, v1.name]].reset_index()
    wide["dMD (1e-5 mm^2/s)"] = (wide[v1.name] - wide[v0.name]) / 1e-5
    wide[v0.name] *= 1e3
    wide[v1.name] *= 1e3
    wide = wide.rename(columns={v0.name: f"{_visit_text(v0)} MD (1e-3 mm^2/s)",
                                v1.name: f"{_visit_text(v1)} MD (1e-3 mm^2/s)",
                                "group": "arm"})
    order = {r: i for i, r in enumerate(cohort.design.roi_names)}
    wide = wide.sort_values(["roi", "arm"], key=lambda s: s.map(order) if (
        s.name == "roi") else s).reset_index(drop=True)
    return arms, wide


def _design_tables(design: StudyDesign) -> tuple[pd.DataFrame, pd.DataFrame]:
    rois = md_summary_wide(design)
    first = design.outcomes[0]
    for arm in design.arms:
        rois[f"corr(true dMD, d{outcome_label(first.name, first.scale)}) {arm}"] = (
            design.correlations.roi_outcome_array(arm)[:, 0])
    sources = pd.DataFrame(sorted(design.sources.items()),
                           columns=["parameter", "source"])
    return rois, sources


def _score_table(design: StudyDesign) -> pd.DataFrame:
    s = score_summary(design)
    cols = {"outcome": "outcome", "arm": "arm", "reliability": "reliability",
            "true_change_mean": "true change",
            "observed_change_mean": "observed change",
            "observed_change_sd": "observed SD", "regression_to_mean": "RTM",
            "response": "response", "remission": "remission",
            "at_floor": "at floor", "at_ceiling": "at maximum"}
    return s[list(cols)].rename(columns=cols)


def _worlds_table(*designs: StudyDesign) -> pd.DataFrame:
    rows = []
    for d in designs:
        w = world_summary(d)
        rows.append({
            "world": w["world"],
            **{f"dMD reliability, {arm}": _span(*w[f"reliability_{arm}"])
               for arm in d.arms},
            f"true change SD % MD, {d.control}": _span(
                *w[f"change_sd_pct_{d.control}"], "{:.2g}"),
            **{f"R^2 {o}": w[f"r_squared_{o}"] for o in d.outcome_names},
            "parameters outside their ranges": len(w["violations"]),
        })
    return pd.DataFrame(rows)


def _reliability_note(design: StudyDesign) -> str:
    t, c = design.treatment, design.control
    rel = design.reliability(t)
    ro = design.correlations.roi_outcome_array(t)
    j = 0  # the design's first ROI
    r_true = ro[j, 0]
    r_obs = r_true * np.sqrt(rel[design.roi_names[j]])
    roi = design.rois[j]
    sd_t, sd_c = roi.change_sd[t], roi.change_sd[c]
    when = _visit_text(_visits(design)[1])
    lines = [
        f"Every MD-change effect in this rehearsal is seen through test-retest noise. "
        f"In {roi.name} the true {when} MD change in the {t} arm has SD "
        f"{sd_t:.2g} mm^2/s, and each scan adds noise with SD "
        f"{roi.noise_sd:.2g} mm^2/s (a test-retest CV of {roi.cv:.1%}, which holds "
        "day-to-day physiology as well as measurement). MD change is the difference "
        "of two "
        f"noisy scans, so its noise variance doubles: the reliability of observed dMD "
        f"is {sd_t**2:.3g} / ({sd_t**2:.3g} + 2 x "
        f"{roi.noise_sd**2:.3g}) = {rel[roi.name]:.2f}.",
        f"A correlation with depression change is attenuated by the square root of "
        f"that reliability: the true correlation of {r_true:.2f} in the {t} arm "
        f"is observed as about {r_obs:.2f}. The tables below show the power of "
        "the reported tests as the reliability changes (by changing the "
        "test-retest CV), and what that does to each arm's observed dMD.",
        f"Power need not rise with reliability. In the {c} arm the true change "
        f"SD is {sd_c:.2g} mm^2/s (reliability {roi.reliability(c):.2f}): its "
        "observed dMD is nearly all noise. A slope is estimated the more "
        "precisely the more its regressor spreads (its SE is the residual SD "
        f"over the SD of dMD times the square root of n), so a smaller scan CV, "
        f"which shrinks the {c} arm's dMD spread to its small true change, makes "
        f"the {c} slope less precise; the interaction ({t} slope minus {c} slope) "
        f"inherits that imprecision. Against it, the {t} arm's correlation is "
        "attenuated less. Where the first effect wins, interaction power falls "
        f"as reliability rises: a real effect of a design whose {c} arm barely "
        "changes, not an error. Slopes within one arm (and the pooled slope) "
        "gain from reliability throughout.",
    ]
    return "\n\n".join(lines)


def _arm_spread(design: StudyDesign, values) -> pd.DataFrame:
    """Each arm's observed dMD SD (1e-5 mm^2/s) at each reliability of the curve."""
    from dtitool.stats.design_variants import vary_design

    rows = []
    for v in values:
        d = vary_design(design, "reliability", float(v))
        for r in d.rois:
            rows.append({"roi": r.name, "reliability": float(v), **{
                f"dMD SD {arm}": math.sqrt(r.change_sd[arm] ** 2
                                           + 2 * r.noise_sd ** 2) / 1e-5
                for arm in d.arms}})
    return pd.DataFrame(rows)


def render_demo_report(results, out, *,
                       figures: Mapping[str, bytes] | None = None) -> Path:
    """Draw the figures and write the HTML report of a demo run.

    Parameters
    ----------
    results : dtitool.pipeline.DemoResults
        Everything the run computed (read only).
    out : str or path-like
        Folder to write into: ``figures/*.png`` (:data:`DEMO_FIGURES`) and
        ``report.html``.
    figures : mapping of str to bytes, optional
        Figures already drawn (PNG bytes by name, from
        :func:`draw_demo_figure` on ``results.figure_data``); the others are
        drawn here.

    Returns
    -------
    pathlib.Path
        Path of the written ``report.html``.
    """
    out = Path(out)
    figs = out / "figures"
    figs.mkdir(parents=True, exist_ok=True)
    pngs = {}
    for name, file in DEMO_FIGURES.items():
        png = (figures or {}).get(name)
        if png is None:
            png = draw_demo_figure(name, *results.figure_data[name])
        (figs / file).write_bytes(png)
        pngs[name] = png
    path = out / "report.html"
    path.write_text(_report(results, pngs), encoding="utf-8")
    return path


def draw_demo_figure(name: str, *data) -> bytes:
    """Draw one of the demo's figures from its data; return the PNG bytes.

    Parameters
    ----------
    name : str
        One of :data:`DEMO_FIGURES`.
    *data
        The figure's data, as in ``DemoResults.figure_data[name]``:
        ``slices``: an MD map, its atlas labels, the ROI names and the affine;
        ``scatter`` and ``forest``: the fitted models and the design;
        ``sessions``: the ROI MD rows, the participants and the design's names;
        ``curve``: the power curve, the design and the sample-size result.
    """
    from matplotlib.figure import Figure

    from dtitool.report.plots import (
        curve_marks,
        plot_forest,
        plot_md_sessions,
        plot_power_curves,
        plot_roi_slices,
        plot_scatter_grid,
    )

    if name == "slices":
        md_map, labels, names, affine = data
        fig = plot_roi_slices(md_map, labels, roi_names=names, affine=affine)
    elif name == "scatter":
        fig = plot_scatter_grid(data[0], outcome_labels=_outcome_labels(data[1]))
    elif name == "sessions":
        fig = Figure(figsize=(10, 4.5), layout="constrained")
        plot_md_sessions(data[0], data[1], names=data[2], ax=fig.subplots())
    elif name == "forest":
        fig = Figure(figsize=(7, 6), layout="constrained")
        plot_forest(data[0], outcome_labels=_outcome_labels(data[1]),
                    ax=fig.subplots())
    elif name == "curve":
        pc, design, ss = data
        reported = reported_families(design).get("reported", [])
        fig = plot_power_curves(pc, reported or None, target_power=0.8,
                                marks=curve_marks(pc, design, ss))
    else:
        raise ValueError(f"name must be one of {', '.join(DEMO_FIGURES)}; "
                         f"got {name!r}")
    return _figure_bytes(fig)


def _outcome_labels(design: StudyDesign) -> dict[str, str]:
    """Return each outcome's axis label (``dMADRS``), by outcome name."""
    return {o.name: outcome_label(o.name, o.scale) for o in design.outcomes}


def _figure_bytes(fig) -> bytes:
    import matplotlib.pyplot as plt

    from dtitool.report.html import figure_png

    png = figure_png(fig)
    plt.close(fig)  # figures made through pyplot stay registered until closed
    return png


def _report(r, pngs: Mapping[str, bytes]) -> str:
    """Return the report's HTML page, from a results object and its figures."""
    from dtitool.report.html import HTMLReport

    design, cohort, s, origin = r.design, r.cohort, r.settings, r.origin
    results, comparison, other = r.analysis, r.comparison, r.other
    pw, repro, ss = r.power, r.reproduce, r.sample_size
    pc, rc = r.power_curve, r.reliability_curve
    agree, tensor_agreement = r.image_agreement, r.tensor_agreement

    sizes = design.arm_sizes()
    v0, v1 = (_visit_text(v) for v in _visits(design))
    treated, control = design.treatment, design.control
    label = f"{design.name!r} ({origin})"
    rep = HTMLReport(
        title=f"dtitool rehearsal of the {design.name!r} design",
        subtitle=f"Simulated cohort of the {label} design, seed {s.seed}, "
        f"dtitool {__version__}. Simulated data, not patient data.",
    )
    rois_t, sources = _design_tables(design)
    reference = (f"\n\nReference study: {design.reference}" if design.reference
                 else "")
    rep.add_section(
        "The design and its sources",
        text=f"Design {label}: {design.description or 'no description.'}"
        f"{reference}\n\n"
        f"{design.n} participants randomised {_ratio(design)} in permuted blocks "
        f"of {design.block_size} ("
        + ", ".join(f"{k} {a}" for k, a in zip(sizes, design.arms, strict=True))
        + f"); DTI at {v0} and {v1}; MD in "
        f"{len(design.rois)} gray-matter ROIs; outcomes "
        f"{', '.join(_outcome_text(o) for o in design.outcomes)} (change = {v1} "
        f"minus {v0}, negative = improvement). Each subject's true MD change and "
        "score change are drawn jointly (multivariate normal per arm); each scan "
        "adds noise with the ROI's test-retest CV. Per ROI and arm the table states "
        f"the true {v1} MD-change SD (% of MD), the correlation of the observed "
        f"{v0} and {v1} MD (session r) and the reliability of observed dMD (rel).",
        table=rois_t,
    )
    rep.add_table(_score_table(design), float_format="{:.3g}",
                  caption="Scores per outcome and arm (20,000 simulated "
                  f"participants): the true and the observed {v1} change (observed "
                  f"= true + regression to the mean + rating error), response ({v1} "
                  f"score at most half the {v0}), remission and the share at the "
                  "scale's floor and maximum.")
    violations = design.range_violations()
    if violations:
        rep.add_note("Parameters outside the design's ranges: "
                     + "; ".join(violations))
    rep.add_heading("Where each value comes from")
    rep.add_table(sources)

    arms, md_table = _cohort_summary(cohort)
    rep.add_section("Cohort summary",
                    text="Mean (SD) per arm. Scores are integers on their scales; "
                    "baselines are above the inclusion thresholds.", table=arms)
    rep.add_table(md_table, float_format="{:.3f}", caption="MD per ROI and arm")
    rep.add_figure(pngs["sessions"], caption=f"{v0[:1].upper()}{v0[1:]} and {v1} "
                   "MD per ROI and arm; thin lines are subjects, thick lines arm "
                   "means.",
                   alt=f"Paired {v0} and {v1} MD per ROI and arm, one thin "
                   "line per subject and a thick line for each arm's mean.")

    max_rel = float(agree["relative_difference"].abs().max())
    text = (f"Every scan was written as an MD map on a 2 mm MNI-like grid (91 x 109 "
            f"x 91) whose ROI means equal the simulated values, with spatially "
            f"smooth voxel noise. ROI MD was then extracted from the {len(agree)} "
            f"ROI x scan combinations of the images, exactly as a real study's FSL "
            f"or DIPY MD maps would be: the largest relative difference from the "
            f"ROI-level table is {max_rel:.1e}, so the image path and the table "
            "path give the same analysis.")
    rep.add_section("Imaging path", text=text)
    n_rois = _count(len(design.rois))
    rep.add_figure(pngs["slices"], caption=f"A simulated MD map with the {n_rois} "
                   "atlas ROIs (radiological view: the subject's left on the right, "
                   "marked R and L; grey scale in 1e-3 mm^2/s with CSF saturated).",
                   alt=f"Axial slices of a simulated MD map with the {n_rois} atlas "
                   "ROIs as coloured overlays, a colour bar of MD and R/L markers.")
    if len(tensor_agreement):
        rep.add_text(
            "For the DWI subset, 4D diffusion-weighted images (6 b=0 and 64 "
            "directions at b=1000 s/mm^2, Rician noise) were simulated from the MD "
            "maps and fitted with dtitool's vectorised WLS tensor fit; ROI means of "
            "the fitted MD against the simulated MD map:")
        ta = tensor_agreement.assign(
            md_simulated_map=tensor_agreement["md_simulated_map"] * 1e3,
            md_tensor_fit=tensor_agreement["md_tensor_fit"] * 1e3,
            relative_difference=tensor_agreement["relative_difference"] * 100,
        ).rename(columns={"md_simulated_map": "simulated map MD (1e-3 mm^2/s)",
                          "md_tensor_fit": "tensor-fit MD (1e-3 mm^2/s)",
                          "relative_difference": "difference (%)"})
        rep.add_table(ta, float_format="{:.3f}")

    t = results.table
    show = _results_wide(t)
    rep.add_section(
        "Results: group x dMD interaction models",
        text=f"Per ROI and outcome: score change ~ group * dMD + baseline score "
        f"({_ANALYSIS_TEXT.get(results.inference, results.inference)}, n = "
        f"{int(t['n'].max())}). Each cell is the estimate, "
        f"in score points {DMD_UNIT}, with its p; a positive slope means MD "
        f"decrease goes with improvement. Interaction = {treated} slope minus "
        f"{control} "
        "slope; the pooled slope comes from the model without the interaction. "
        "SEs, CIs, and Holm and BH adjusted p are in tables/results.tsv.\n\n"
        f"{results.missing_summary[:1].upper()}{results.missing_summary[1:]}.",
        table=show,
    )
    if comparison is not None:
        comp = comparison[["roi", "outcome", "term", "description", "estimate", "p",
                           "verdict"]].copy()
        rep.add_table(comp, caption="This dataset beside the reported findings "
                      "(Kopelman et al. 2023). A finding is replicated when its "
                      "test is significant at alpha = 0.05 with the reported sign; "
                      f"{_any_rois(design)} (outcome 'any': the report does not say "
                      f"which) on {_any_outcomes(design)}.")
    rep.add_figure(pngs["forest"], caption="Interaction estimates with 95% CIs.",
                   alt="Forest plot of the group x dMD interaction estimate with its "
                   "95% confidence interval for every ROI and outcome.")
    rep.add_figure(pngs["scatter"], caption="Score change against MD change per arm, "
                   "with each arm's fitted slope, for every ROI and outcome.",
                   alt="Grid of scatter plots of score change against MD change, "
                   "coloured by arm, with each arm's fitted slope.")

    if repro is not None:
        _reported_sections(rep, design, pw, repro, other)
    else:
        rep.add_section(
            "Power",
            text=f"{pw.replicates} replicate trials of the design (seed {pw.seed}). "
            "The design lacks the reference study's ROIs or outcomes, so there is "
            "no reported-versus-simulated comparison; power of every interaction"
            + (" and omnibus test:" if len(design.arms) > 2 else ":"),
            table=pw.table.loc[pw.table["term"].isin(design.names.key_terms),
                               ["roi", *(["measure"] if design.measures else []),
                                "outcome", "term", "power", "median_p", "size"]])
    rep.add_figure(pngs["curve"], caption=f"Power over the total sample size "
                   f"({pc.replicates} replicates per point; "
                   f"{_ratio(design)} "
                   f"allocation), with the design's n = {design.n}"
                   + (f" and the n = {ss.n} for 80% power marked." if ss.n
                      is not None else " marked."),
                   alt="Small multiples of power against total sample size, one "
                   "panel per test, with 95% bands, the 80% target line and "
                   "vertical marks at the design's n and the n for 80% power.")
    rep.add_note(_sample_size_sentence(ss, design, bool(repro is not None)))

    rep.add_section("What dMD reliability does to the effects",
                    text=_reliability_note(design))
    tests = [tuple(r[:3]) for r in reported_families(design).get("reported", [])
             if r[1] != "any"]
    rt = rc.table
    if tests:
        keys = pd.DataFrame(tests, columns=["roi", "outcome", "term"])
        rt = rt.merge(keys, on=["roi", "outcome", "term"])
    rwide = rt.pivot_table(index=["roi", "outcome", "term"], columns="value",
                           values="power", sort=False).reset_index()
    rwide.columns = [c if isinstance(c, str) else f"power at rel. {c:g}"
                     for c in rwide.columns]
    rep.add_table(rwide, float_format="{:.2f}")
    spread = _arm_spread(design, sorted(set(rc.table["value"])))
    first = spread[spread["roi"] == design.roi_names[0]].drop(columns="roi")
    rep.add_table(first, float_format="{:.2f}",
                  caption=f"Observed dMD SD per arm in {design.roi_names[0]} "
                  "(1e-5 mm^2/s) at each reliability of the table above: the "
                  f"{design.control} arm's spread is nearly all scan noise, and "
                  "shrinks with it.")
    cite = (f" Cite the reference study: {design.reference}" if design.reference
            else "")
    return rep.render(footer=f"dtitool {__version__}; design {label}; seed {s.seed}; "
                      f"{pw.replicates} power replicates.{cite}")


def _any_rois(design) -> str:
    """Return the reported findings' ROIs whose outcome the report leaves open."""
    from dtitool.stats.reference import ANY

    rois = [r[0] for r in reported_families(design).get("reported", [])
            if r[1] == ANY]
    return _and_list([r.replace("_", " ") for r in dict.fromkeys(rois)] or ["none"])


def _any_outcomes(design) -> str:
    """Return ``the MADRS or the QIDS-SR16``: any one of the design's outcomes."""
    return " or ".join(f"the {outcome_label(o.name, o.scale)}"
                       for o in design.outcomes)


def _term_header(term: str) -> str:
    """Column header of a model term: ``slope_<arm>`` -> ``slope, <arm>``."""
    return term.replace("_", ", ", 1) if term.startswith("slope_") else term


def _results_wide(t: pd.DataFrame) -> pd.DataFrame:
    """One row per ROI and outcome, one 'estimate (p)' cell per term."""
    from dtitool.report.html import format_p

    cell = t.assign(text=[
        "not estimable" if e != e else f"{e:.3g} (p {format_p(p)})"
        for e, p in zip(t["estimate"], t["p"], strict=True)])
    wide = cell.pivot_table(index=["roi", "outcome"], columns="term", values="text",
                            aggfunc="first", sort=False)
    wide = wide[list(pd.unique(t["term"]))]  # the results' own term order
    return wide.rename(columns=_term_header).reset_index()


def _sample_size_sentence(ss, design, reported: bool) -> str:
    """Return the one statement of the n for the target (as in sample_size.tsv)."""
    what = ("every reported finding (each with its reported sign; "
            f"{_any_rois(design)} on either outcome)" if reported
            else "every interaction")
    if ss.n is None:
        return (f"{ss.target_power:.0%} power on {what} is not reached by n = "
                f"{ss.n_max} ({ss.replicates} replicates per n; weakest: "
                f"{ss.limiting_test}).")
    lo, hi = ss.n_plausible
    hi_s = f">{ss.n_max}" if hi is None else str(hi)
    return (f"n for {ss.target_power:.0%} power on {what}: n = {ss.n} in total "
            f"(Monte Carlo interval {_span(lo, hi_s, '{}')}; power {ss.power:.2f} "
            "at that n, "
            f"{ss.replicates} replicates per n), against {design.n} in the design. "
            "The same number is in tables/sample_size.tsv and marked on the power "
            "curve.")


def _reported_sections(rep, design, pw, repro, other) -> None:
    rtab = repro[["roi", "outcome", "term", "reported_p", "median_p", "power",
                  "size", "other_median_p", "other_power", "verdict"]].rename(
        columns={"other_median_p": f"median p, {other.name}",
                 "other_power": f"power, {other.name}", "median_p": "median p",
                 "reported_p": "reported p"})
    rep_rows = repro[repro["direction"] != 0]
    rep.add_section(
        "Power, and the reported findings against many simulated trials",
        text=f"{pw.replicates} replicate trials of the design (seed {pw.seed}) and "
        f"of the {other.name!r} world beside it, every model fitted by dtitool's "
        "batched least-squares engine (the same estimates and p-values as "
        "statsmodels). Median p is the typical p-value a trial of a world gives; "
        "power is the chance that a finding is found, i.e. its test is significant "
        f"at alpha = 0.05 with the reported sign ({_any_rois(design)}, whose "
        f"outcome the report does not name: on {_any_outcomes(design)}, its p the "
        "smaller of the "
        "two); size is the same test's rejection rate in the design's null "
        "counterpart (every MD-outcome correlation 0), its actual level under "
        f"{pw.inference} inference.\n\nA median p inside a reported range means "
        "about 50 % power: half of that world's trials give a larger p. That is "
        "the face-value reading of a published result, which the significance "
        "filter inflates. "
        "Here the reported findings have power "
        f"{_span(*rep_rows['power'].agg(['min', 'max']))} in {design.name!r} and "
        f"{_span(*rep_rows['other_power'].agg(['min', 'max']))} in {other.name!r}.",
        table=rtab,
    )
    rep.add_table(_worlds_table(design, other), float_format="{:.2f}",
                  caption="What each world needs: dMD reliability and true "
                  f"{_visit_text(_visits(design)[1])} "
                  "MD-change SD per arm, the share of each score change explained "
                  f"by the true MD change of all ROIs (R^2, {design.treatment} arm), "
                  "and how many parameters leave their ranges.")
    need = [x for x in repro["needed"] if x]
    if need:
        rep.add_heading("What the reported p-values need")
        rep.add_text("Each reported test the design misses, one parameter at a "
                     "time, at the top of its reported range (from the arms' "
                     "moments, anchored to the power engine's median p):\n\n"
                     + "\n\n".join(need))
    rep.add_heading("Reading the results")
    rep.add_text("\n\n".join(interpretation_notes(repro, pw)))
    fw = pw.familywise
    fw = fw[fw["family"] == "reported"]
    if len(fw):
        row = fw.set_index("method")
        rep.add_note(
            f"Chance that one trial reproduces all {int(row.loc['none', 'tests'])} "
            f"reported findings at once: {row.loc['none', 'power_all']:.1%} "
            f"(with Holm adjustment {row.loc['holm', 'power_all']:.1%}); chance of at "
            f"least one: {row.loc['none', 'power_any']:.1%}.")
