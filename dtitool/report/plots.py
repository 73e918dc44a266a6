"""Figures of the MD-change analysis (matplotlib).

Following statsmodels and nilearn: a function draws into the axes or figure it
is given and creates a figure only when none is; nothing here opens a window.
Each arm has one colour everywhere, by its role (:data:`ARM_PALETTE`: the
treatment arm first, the control arm second). Arms, visits and outcomes are
named as the results and tables name them; nothing here knows a trial's names.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from dtitool._constants import DMD_SCALE
from dtitool.stats.analysis import AnalysisResults, fit_changes
from dtitool.tables import _roi_order, check_tables

__all__ = [
    "ANALYSIS_FIGURES",
    "ARM_PALETTE",
    "arm_colors",
    "curve_marks",
    "outcome_label",
    "plot_forest",
    "plot_md_sessions",
    "plot_power_curve",
    "plot_power_curves",
    "plot_roi_slices",
    "plot_scatter_grid",
    "save_analysis_figures",
    "save_power_curve",
    "visit_label",
]

ANALYSIS_FIGURES = ("scatter_grid.png", "md_sessions.png", "forest.png")
"""PNG files of :func:`save_analysis_figures` (``dtitool analyze --figures``)."""

ARM_PALETTE = ("#d95f02", "#1b9e77", "#7570b3", "#e7298a", "#66a61e", "#e6ab02")
"""Colours of the arms in every dtitool figure (ColorBrewer Dark2), in the
design's arm order: the treatment arm first, the control arm second."""


def arm_colors(arms: Sequence[str]) -> dict[str, str]:
    """Colour of each arm, by its place in ``arms`` (treatment first).

    Examples
    --------
    >>> arm_colors(("high", "placebo"))
    {'high': '#d95f02', 'placebo': '#1b9e77'}
    """
    return {a: ARM_PALETTE[i % len(ARM_PALETTE)] for i, a in enumerate(arms)}


def outcome_label(name: str, scale: str = "") -> str:
    """Return how a figure names an outcome: its scale, else the one it abbreviates.

    Parameters
    ----------
    name : str
        Outcome name (a column stem such as ``hamd``).
    scale : str
        The outcome's ``OutcomeSpec.scale`` when a design is at hand.

    Returns
    -------
    str
        ``scale`` when given; else the one scale of
        :data:`dtitool.design.ratings.RATING_SCALES` whose abbreviation (letters
        and digits) starts with the name, upper-cased; else ``name``.

    Examples
    --------
    >>> outcome_label("qids"), outcome_label("hamd"), outcome_label("pain")
    ('QIDS-SR16', 'HAM-D17', 'pain')
    >>> outcome_label("hamd", "HAM-D17")
    'HAM-D17'
    """
    if scale:
        return scale
    from dtitool.design.ratings import RATING_SCALES

    key = name.upper()
    hits = [s for s in RATING_SCALES
            if re.sub(r"[^A-Z0-9]", "", s.upper()).startswith(key)]
    return hits[0] if key and len(hits) == 1 else name


def _outcome_labels(outcomes, labels: Mapping[str, str] | None) -> dict[str, str]:
    labels = labels or {}
    return {o: labels.get(o) or outcome_label(o) for o in outcomes}


def visit_label(name: str) -> str:
    """Return a visit name as prose: ``24h`` -> ``24 h``, ``week1`` as it is.

    Examples
    --------
    >>> visit_label("24h"), visit_label("baseline")
    ('24 h', 'baseline')
    """
    m = re.fullmatch(r"(\d+)([a-z]+)", name)
    return f"{m[1]} {m[2]}" if m else name


def _results_arms(res) -> tuple[str, ...]:
    """Arms of fitted results, treatment first: from their names or their terms."""
    names = getattr(res, "names", None)
    if names is not None:
        return tuple(names.arms)
    table = getattr(res, "table", res)
    return tuple(t[len("slope_"):] for t in pd.unique(table["term"])
                 if t.startswith("slope_") and t != "slope_pooled")


def _results_visits(res) -> tuple[str, ...]:
    """Baseline and primary visit of fitted results: their names or changes table."""
    names = getattr(res, "names", None)
    if names is not None:
        return (names.baseline, names.primary)
    return tuple(c[len("md_"):] for c in res.changes.columns
                 if c.startswith("md_"))[:2]


def _headline(terms) -> str:
    """Return the one group x dMD test of a model among ``terms``.

    The omnibus test (three or more arms), else the interaction (two arms),
    else a single-arm course's slope: ``TrialNames.key_terms[-1]``, read from
    a table's terms.
    """
    terms = list(terms)
    for term in ("omnibus", "interaction"):
        if term in terms:
            return term
    return next(t for t in terms if t.startswith("slope_") and t != "slope_pooled")


def _sci(scale: float) -> str:
    """``1e-05`` -> ``"10$^{-5}$"``: a unit prefix as mathtext (no "1e-5" text)."""
    e = round(float(np.log10(scale)))
    if not np.isclose(scale, 10.0**e):
        return f"{scale:g} x"
    return f"10$^{{{e}}}$"

def _curve_axis_label(parameter: str, arms: Sequence[str] = ()) -> str:
    """Axis label of a power curve's parameter, naming the arms when known."""
    ratio = ":".join(arms[:2]) if len(arms) >= 2 else "treatment:control"
    treated = f"{arms[0]} arm" if arms else "treatment arm"
    return {
        "n": "total sample size n",
        "ratio": f"allocation ratio {ratio}",
        "effect": "effect scale (x ROI-outcome correlations)",
        "reliability": f"dMD reliability ({treated})",
        "cv": "scan-rescan CV of MD",
    }.get(parameter, parameter)


def _as_results(data) -> AnalysisResults:
    if isinstance(data, AnalysisResults):
        return data
    if isinstance(data, pd.DataFrame):
        return fit_changes(data)
    raise TypeError(
        "expected AnalysisResults (from fit_models) or a changes table (from "
        f"compute_changes), got {type(data).__name__}"
    )


def _pick(values: Sequence[str] | None, available: list[str], what: str) -> list:
    if values is None:
        return available
    values = [values] if isinstance(values, str) else list(values)
    bad = [v for v in values if v not in available]
    if bad:
        raise ValueError(
            f"{what} {bad[0]!r} is not in the results; available: "
            f"{', '.join(available)}"
        )
    return values


def plot_scatter_grid(
    data,
    *,
    rois: Sequence[str] | None = None,
    outcomes: Sequence[str] | None = None,
    outcome_labels: Mapping[str, str] | None = None,
    fig=None,
):
    """Score change against MD change per arm, one panel per ROI x outcome.

    Each panel shows the subjects of one model (complete cases) coloured by
    arm, and each arm's fitted dMD slope from the interaction model, drawn
    through the arm's mean point (the model's prediction with the covariates
    at the arm's means). The panel title gives the interaction p.

    Parameters
    ----------
    data : AnalysisResults or DataFrame
        Results of :func:`dtitool.stats.analysis.fit_models`, or a changes table from
        :func:`dtitool.tables.compute_changes` (fitted with the default model).
    rois, outcomes : sequence of str, optional
        Subsets to draw (rows and columns of the grid); default all.
    outcome_labels : mapping, optional
        ``{outcome: label}`` for panel titles (a design's rating scales);
        default :func:`outcome_label` of each name.
    fig : matplotlib Figure, optional
        Figure to draw into (it should be empty); a new one is created if None.

    Returns
    -------
    matplotlib.figure.Figure

    Notes
    -----
    The arms (and their colours, :func:`arm_colors`) are those of the results'
    ``slope_<arm>`` terms, treatment first; the visits those of the changes
    table's ``md_<visit>`` columns.
    """
    res = _as_results(data)
    table = res.table
    rois = _pick(rois, _roi_order(table["roi"]), "roi")
    outcomes = _pick(outcomes, list(pd.unique(table["outcome"])), "outcome")
    labels = _outcome_labels(outcomes, outcome_labels)
    arms = _results_arms(res)
    colors = arm_colors(arms)
    if fig is None:
        fig = plt.figure(figsize=(3.3 * len(outcomes), 2.4 * len(rois)))
    axes = fig.subplots(len(rois), len(outcomes), squeeze=False)
    ch = res.changes
    key = _headline(pd.unique(table["term"]))
    for i, roi in enumerate(rois):
        for j, outcome in enumerate(outcomes):
            ax = axes[i, j]
            sub = ch.loc[res.rows[(roi, outcome)]]
            x = sub["d_md"].to_numpy() / res.dmd_scale
            y = sub[f"d_{outcome}"].to_numpy(dtype=float)
            for g in arms:
                m = sub["group"].to_numpy() == g
                if not m.any():
                    continue
                c = colors[g]
                ax.scatter(x[m], y[m], s=10, color=c, alpha=0.6, lw=0, label=g)
                slope = res.term(roi, outcome, f"slope_{g}")["estimate"]
                xs = np.array([x[m].min(), x[m].max()])
                ax.plot(xs, y[m].mean() + slope * (xs - x[m].mean()), color=c, lw=2)
            p = res.term(roi, outcome, key)["p"]
            ax.set_title(
                f"{roi}, {labels[outcome]}: "
                f"{key} p = {p:.3g}",
                fontsize=8,
            )
            ax.axhline(0, color="0.8", lw=0.6, zorder=0)
            ax.axvline(0, color="0.8", lw=0.6, zorder=0)
            ax.tick_params(labelsize=7)
            if i == len(rois) - 1:
                ax.set_xlabel(f"dMD ({_sci(res.dmd_scale)} mm$^2$/s)", fontsize=8)
            if j == 0:
                ax.set_ylabel("score change", fontsize=8)
    handles = [plt.Line2D([], [], color=colors[g], marker="o", lw=2, ms=4)
               for g in arms]
    base, post = (visit_label(v) for v in _results_visits(res))
    fig.suptitle(
        f"Score change vs MD change ({post} - {base}); positive slope: MD decrease "
        "goes with improvement",
        fontsize=9,
    )
    height = fig.get_figheight()
    top = 1 - 0.75 / max(height, 1.0)
    # The arm legend sits above the panels, outside every data area.
    fig.legend(handles, [f"{g} (points: subjects; line: fitted slope)"
                         for g in arms],
               loc="upper center", bbox_to_anchor=(0.5, top + 0.3 / max(height, 1.0)),
               ncol=len(arms), fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0, 1, top))
    return fig


def plot_md_sessions(roi_md, participants, *, rois: Sequence[str] | None = None,
                     names=None, ax=None):  # fmt: skip
    """MD at the baseline and primary visit per ROI and arm, each subject a line.

    Parameters
    ----------
    roi_md, participants : DataFrame or path-like
        Input tables (checked with :func:`dtitool.tables.check_tables`).
    rois : sequence of str, optional
        ROIs to draw; default all in ``roi_md``.
    names : TrialNames or StudyDesign, optional
        The trial's arms (treatment first: they set the colours and the order
        of the pairs) and visits (the baseline and primary visit are paired);
        default as :func:`dtitool.tables.resolve_names` finds them from the
        tables (a ``design.toml`` or ``visits.tsv`` beside tables read from
        a folder).
    ax : matplotlib Axes, optional
        Axes to draw into; a new figure is created if None.

    Returns
    -------
    matplotlib.axes.Axes

    Notes
    -----
    Per ROI the first arm's pair (baseline, follow-up) is drawn left of the
    next arm's pair; thin lines are subjects, the thick line the arm mean. MD
    is shown in 1e-3 mm^2/s.
    """
    from dtitool.tables import resolve_names

    directory = None
    if not isinstance(participants, pd.DataFrame):
        from pathlib import Path

        directory = Path(participants).parent
    participants, roi_md = check_tables(participants, roi_md, names=names)
    names, _ = resolve_names(participants, names=names, directory=directory)
    rois = _pick(rois, _roi_order(roi_md["roi"], roi_md.attrs.get("roi_order", ())),
                 "roi")
    arms = list(names.arms)  # control last
    visits = [names.baseline, names.primary]
    if ax is None:
        _, ax = plt.subplots(figsize=(1.3 * len(rois) + 1.5, 4))
    wide = roi_md.pivot(index=["participant_id", "roi"], columns="session", values="md")
    wide = wide.reindex(columns=visits).reset_index()
    wide = wide.merge(participants[["participant_id", "group"]], on="participant_id")
    colors = arm_colors(arms)
    # The arms' pairs share 0.7 of each ROI's slot, 0.1 apart
    width = (0.7 - 0.1 * (len(arms) - 1)) / len(arms)
    offsets = {g: (round(-0.35 + k * (width + 0.1), 10),
                   round(-0.35 + k * (width + 0.1) + width, 10))
               for k, g in enumerate(arms)}
    for i, roi in enumerate(rois):
        for g, (x0, x1) in offsets.items():
            sub = wide.loc[(wide["roi"] == roi) & (wide["group"] == g)]
            v = sub[visits].to_numpy() / 1e-3
            paired = ~np.isnan(v).any(axis=1)
            xs = np.array([i + x0, i + x1])
            if paired.any():
                ax.plot(
                    np.broadcast_to(xs[:, None], (2, paired.sum())), v[paired].T,
                    color=colors[g], lw=0.5, alpha=0.25,
                )  # fmt: skip
            ax.plot(
                xs, np.nanmean(v, axis=0), color=colors[g], lw=2.5, marker="o",
                ms=4, label=g if i == 0 else None,
            )  # fmt: skip
    ax.set_xticks(range(len(rois)))
    ax.set_xticklabels(rois, rotation=30, ha="right")
    ax.set_ylabel(f"MD ({_sci(1e-3)} mm$^2$/s)")
    base, post = (visit_label(v) for v in visits)
    ax.set_title(f"MD at {base} and {post} (left and right point of each pair)")
    ax.legend(frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return ax


def plot_forest(results, *, term: str | Sequence[str] | None = None,
                outcome_labels: Mapping[str, str] | None = None, ax=None):
    """Forest plot of one term's estimates with confidence intervals.

    Parameters
    ----------
    results : AnalysisResults or DataFrame
        Results or their table (columns ``roi, outcome, term, estimate,
        ci_low, ci_high, p``).
    term : str or sequence of str, optional
        Term(s) to show, among the table's ``term`` values (``interaction``,
        ``interaction_<arm>``, ``slope_<arm>``, ``slope_pooled``); default every
        interaction term (one per arm but the control).
    outcome_labels : mapping, optional
        ``{outcome: label}`` (a design's rating scales); default
        :func:`outcome_label` of each name.
    ax : matplotlib Axes, optional
        Axes to draw into; a new figure is created if None.

    Returns
    -------
    matplotlib.axes.Axes
    """
    table = getattr(results, "table", results)
    if not isinstance(table, pd.DataFrame):
        raise TypeError(
            f"results must be AnalysisResults or a DataFrame, got "
            f"{type(results).__name__}"
        )
    terms = list(pd.unique(table["term"]))
    if term is None:
        shown = [x for x in terms if x == "interaction" or x.startswith("interaction_")]
        if not shown:  # a single-arm course: its arm's slope
            shown = [x for x in terms if x.startswith("slope_") and x != "slope_pooled"]
    else:
        shown = [term] if isinstance(term, str) else list(term)
    _pick(shown, terms, "term")
    if "omnibus" in shown:
        raise ValueError("the omnibus test is an F statistic, not an estimate with "
                         "a confidence interval; plot the interaction terms")
    unit = getattr(results, "dmd_unit", f"per {DMD_SCALE:g} mm^2/s dMD")
    t = table.loc[table["term"].isin(shown)].reset_index(drop=True)
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 0.32 * len(t) + 1.2))
    y = np.arange(len(t))[::-1]
    shapes = ("o", "s", "D", "^", "v", "P", "X")
    outcomes = list(pd.unique(t["outcome"]))
    markers = {k: shapes[i % len(shapes)] for i, k in enumerate(outcomes)}
    labels = _outcome_labels(outcomes, outcome_labels)
    for k in outcomes:
        m = (t["outcome"] == k).to_numpy()
        est = t.loc[m, "estimate"].to_numpy()
        err = np.vstack([est - t.loc[m, "ci_low"], t.loc[m, "ci_high"] - est])
        ax.errorbar(
            est, y[m], xerr=err, fmt=markers.get(k, "D"), color="0.2", ms=4,
            capsize=2, lw=1, label=labels[k],
        )  # fmt: skip
    ax.axvline(0, color="0.6", lw=0.8, ls="--")
    ax.set_yticks(y)
    which = (lambda x: f" {x}") if len(shown) > 1 else (lambda x: "")
    ax.set_yticklabels(
        [f"{r} {labels[k]}{which(x)}  p={p:.3g}"
         for r, k, x, p in zip(t["roi"], t["outcome"], t["term"], t["p"],
                               strict=True)],
        fontsize=8,
    )  # fmt: skip
    what = shown[0] if len(shown) == 1 else "interaction"
    ax.set_xlabel(f"{what} estimate, score points {unit} (95% CI)")
    ax.legend(frameon=False, fontsize=8, loc="lower left",
              bbox_to_anchor=(0.0, 1.0), ncol=2)
    return ax


def _slices_covering(labels: np.ndarray, k: int) -> list[int]:
    """Up to ``k`` axial slices that show every label, each near its largest extent.

    Greedy: each step takes the slice that adds the most of the labels not yet
    shown, every label weighted by its area in that slice relative to its largest
    area in any slice (so an ROI is shown where it is big, not at a tip).
    """
    labels = np.asarray(labels)
    ks = [int(v) for v in np.unique(labels) if v != 0]
    if not ks:
        return []
    area = np.stack([(labels == v).sum(axis=(0, 1)) for v in ks])  # (K, Z)
    rel = area / np.maximum(area.max(axis=1, keepdims=True), 1)
    todo = np.ones(len(ks), dtype=bool)
    chosen: list[int] = []
    while todo.any() and len(chosen) < k:
        score = (rel * todo[:, None]).sum(axis=0)
        z = int(np.argmax(score))
        if score[z] == 0:
            break
        chosen.append(z)
        todo &= ~(rel[:, z] >= 0.5)  # shown at half its largest extent or more
    if todo.any():  # fall back: every remaining label at its largest slice
        chosen.extend(int(np.argmax(area[i])) for i in np.flatnonzero(todo))
    return sorted(set(chosen))[: max(k, 1)]


def plot_roi_slices(md, labels, *, roi_names: Sequence[str] | None = None,
                    slices: Sequence[int] | None = None, max_slices: int = 3,
                    affine=None, fig=None):  # fmt: skip
    """Axial slices of an MD map with the atlas ROIs overlaid, in radiological view.

    Parameters
    ----------
    md : ndarray, shape (X, Y, Z)
        MD map in mm^2/s (drawn in 10^-3 mm^2/s, grey scale, with a colour bar),
        array axes in the voxel order of dtitool's phantom and FSL's MNI152
        templates (the first voxel axis runs from the subject's right to left).
        Slices are shown in radiological convention, the subject's left on the
        right of the panel, marked R and L.
    labels : ndarray of int, shape (X, Y, Z)
        Label atlas (0 = none, k = ``roi_names[k - 1]``).
    roi_names : sequence of str, optional
        Names of labels 1..K for the legend; default ``ROI 1``... .
    slices : sequence of int, optional
        Axial slice indices; default up to ``max_slices`` slices chosen so that
        every ROI appears near its largest extent.
    max_slices : int
        Number of slices when ``slices`` is None.
    affine : ndarray, shape (4, 4), optional
        Voxel-to-world affine; when given, slice titles state z in mm and the
        R/L markers follow the affine's x direction.
    fig : matplotlib Figure, optional
        Empty figure to draw into; a new one is created if None.

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    ValueError
        If ``md`` and ``labels`` are not 3D arrays of the same shape.
    """
    from matplotlib.colors import ListedColormap

    md = np.asarray(md, dtype=float)
    labels = np.asarray(labels)
    if md.ndim != 3 or md.shape != labels.shape:
        raise ValueError(
            f"md and labels must be 3D arrays of one shape; got md {md.shape} and "
            f"labels {labels.shape}"
        )
    ks = [int(k) for k in np.unique(labels) if k != 0]
    names = list(roi_names) if roi_names is not None else [f"ROI {k}" for k in ks]
    zs = list(slices) if slices is not None else _slices_covering(labels, max_slices)
    if not zs:
        raise ValueError("labels hold no ROI voxels to outline")
    if fig is None:
        fig = plt.figure(figsize=(3.3 * len(zs) + 2.6, 4.4), layout="constrained")
    axes = fig.subplots(1, len(zs), squeeze=False)[0]
    cmap = plt.get_cmap("tab10")
    # Grey window on tissue: 1.6 x the median of the positive voxels (brain MD
    # ~0.7-0.9e-3) keeps gray/white contrast; CSF (~3e-3) saturates to white.
    pos = md[np.isfinite(md) & (md > 0)]
    vmax = 1.6 * float(np.median(pos)) * 1e3 if pos.size else 1.0
    # Does the first voxel axis run toward the subject's left (x decreasing)?
    x_to_left = affine is None or np.asarray(affine)[0, 0] < 0
    handles = {}
    image = None
    for ax, z in zip(axes, zs, strict=True):
        sl = md[:, :, z].T * 1e3  # rows: posterior -> anterior (origin lower)
        lab = labels[:, :, z].T
        if not x_to_left:  # put the subject's right on the left of the panel
            sl, lab = sl[:, ::-1], lab[:, ::-1]
        image = ax.imshow(sl, cmap="gray", origin="lower", vmin=0, vmax=vmax,
                          interpolation="nearest")
        for k in ks:
            mask = lab == k
            if mask.any():
                color = cmap((k - 1) % 10)
                ax.imshow(np.where(mask, 1.0, np.nan), origin="lower",
                          cmap=ListedColormap([color]), alpha=0.45,
                          interpolation="nearest", vmin=0, vmax=1)
                ax.contour(mask.astype(float), levels=[0.5], colors=[color],
                           linewidths=1.0, origin="lower")
                handles[k] = plt.Line2D([], [], color=color, lw=6, alpha=0.7)
        title = f"axial slice {z}"
        if affine is not None:
            title += f" (z = {np.asarray(affine)[2] @ [0, 0, z, 1]:.0f} mm)"
        ax.set_title(title, fontsize=9)
        for xpos, text, ha in ((0.02, "R", "left"), (0.98, "L", "right")):
            ax.text(xpos, 0.5, text, transform=ax.transAxes, ha=ha, va="center",
                    color="yellow", fontsize=11, fontweight="bold")
        ax.text(0.5, 0.98, "anterior", transform=ax.transAxes, ha="center",
                va="top", color="yellow", fontsize=7)
        ax.set_axis_off()
    cbar = fig.colorbar(image, ax=list(axes), location="bottom", shrink=0.5,
                        extend="max", pad=0.02)
    cbar.set_label("MD (10$^{-3}$ mm$^2$/s); CSF saturates", fontsize=8)
    cbar.ax.tick_params(labelsize=7)
    ks_shown = sorted(handles)
    fig.legend([handles[k] for k in ks_shown],
               [names[k - 1] if k - 1 < len(names) else f"ROI {k}" for k in ks_shown],
               loc="outside right center", fontsize=8, frameon=False)
    fig.suptitle("Simulated MD map with the atlas ROIs (radiological view: the "
                 "subject's left on the right)", fontsize=10)
    return fig


def _curve_rows(curve, tests):
    """Return per test ``((roi, outcome, term), rows)`` of power against the value.

    ``rows`` has ``value, power, power_ci_low, power_ci_high``. A test with a
    direction is drawn as the power of that sign (how a reported finding counts),
    an ``"any"``-outcome finding from its one-finding family (significant on at
    least one outcome).
    """
    from dtitool.stats.power import wilson_interval
    from dtitool.stats.reference import ANY, finding_family_name

    t = curve.table
    if tests is None:
        sel = t[t["term"] == _headline(pd.unique(t["term"]))]
        tests = list(sel[["roi", "outcome", "term"]].drop_duplicates()
                     .itertuples(index=False, name=None))
    rows = []
    for test in tests:
        roi, outcome, term = test[:3]
        direction = test[3] if len(test) == 4 else None
        if outcome == ANY:
            fw = curve.familywise
            d = fw[(fw["family"] == finding_family_name(test))
                   & (fw["method"] == "none")]
            d = pd.DataFrame({"value": d["value"], "power": d["power_any"],
                              "power_ci_low": d["power_any_ci_low"],
                              "power_ci_high": d["power_any_ci_high"]})
        else:
            d = t[(t["roi"] == roi) & (t["outcome"] == outcome)
                  & (t["term"] == term)]
            if direction is not None:
                col = "power_positive" if direction == "positive" else "power_negative"
                k = np.round(d[col].to_numpy() * d["valid"].to_numpy())
                lo, hi = wilson_interval(k, d["valid"].to_numpy())
                d = pd.DataFrame({"value": d["value"], "power": d[col],
                                  "power_ci_low": lo, "power_ci_high": hi})
        if len(d) == 0:
            raise ValueError(f"the power curve has no values for {tuple(test)}")
        rows.append(((roi, outcome, term), d))
    return rows


def _mark_curve(ax, curve, *, target_power=None, marks=()):
    if target_power is not None:
        ax.axhline(target_power, color="k", ls="--", lw=1,
                   label=f"target power {target_power:g}")
    for value, text in marks:
        ax.axvline(value, color="0.35", ls=":", lw=1.2, label=text)
    ax.set_xlabel(_curve_axis_label(curve.parameter, _results_arms(curve)))
    ax.set_ylim(0, 1)


def plot_power_curve(curve, tests: Sequence[tuple[str, str, str]] | None = None, *,
                     ax=None, target_power: float | None = None,
                     marks: Sequence[tuple[float, str]] = ()):
    """Plot power against the varied parameter, one line per test, with 95 % bands.

    Parameters
    ----------
    curve : PowerCurve
        From :func:`dtitool.stats.power.power_curve`.
    tests : sequence of (roi, outcome, term), optional
        Tests to draw; default the interaction of every model.
    ax : matplotlib Axes, optional
        Axes to draw in; a new figure is made only when not given.
    target_power : float, optional
        Draw a horizontal line at this power.
    marks : sequence of (value, label)
        Vertical lines to draw on the parameter axis, e.g. ``[(98, "n = 98,
        the trial")]``.

    Returns
    -------
    matplotlib.axes.Axes

    Notes
    -----
    Every line has its own colour, line style and marker, and the legend sits
    outside the axes, so overlapping curves stay distinguishable; with many
    tests :func:`plot_power_curves` (one panel per test) reads better.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 4.5), layout="constrained")
    styles = ["-", "--", "-.", ":"]
    markers = ["o", "s", "^", "D", "v", "P", "X"]
    cmap = plt.get_cmap("tab10")
    for i, ((roi, outcome, term), d) in enumerate(_curve_rows(curve, tests)):
        line, = ax.plot(d["value"], d["power"], marker=markers[i % len(markers)],
                        ms=4, ls=styles[i % len(styles)], color=cmap(i % 10),
                        label=f"{roi} {outcome_label(outcome)} {term}")
        ax.fill_between(d["value"], d["power_ci_low"], d["power_ci_high"],
                        color=line.get_color(), alpha=0.12, lw=0)
    _mark_curve(ax, curve, target_power=target_power, marks=marks)
    ax.set_ylabel("power")
    ax.set_title(f"Monte Carlo power ({curve.replicates} replicates per point, "
                 f"seed {curve.seed}; bands: 95% intervals)", fontsize=9)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0),
              frameon=False)
    return ax


def plot_power_curves(curve, tests: Sequence[tuple[str, str, str]] | None = None, *,
                      fig=None, target_power: float | None = None,
                      marks: Sequence[tuple[float, str]] = (), ncols: int = 4):
    """Small multiples: one panel per test, power against the varied parameter.

    Parameters
    ----------
    curve : PowerCurve
    tests : sequence of (roi, outcome, term), optional
        Default the interaction of every model.
    fig : matplotlib Figure, optional
        Empty figure to draw into; a new one is created if None.
    target_power, marks
        As in :func:`plot_power_curve`, drawn in every panel.
    ncols : int
        Panels per row.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from dtitool.stats.reference import ANY

    rows = _curve_rows(curve, tests)
    # A finding on "any" outcome: significant on at least one of them
    any_label = " or ".join(outcome_label(o) for o in pd.unique(curve.table["outcome"])
                            if o != ANY)
    ncols = max(1, min(ncols, len(rows)))
    nrows = -(-len(rows) // ncols)
    if fig is None:
        fig = plt.figure(figsize=(2.6 * ncols + 0.6, 2.3 * nrows + 1.0),
                         layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, sharex=True, sharey=True)
    for ax, ((roi, outcome, term), d) in zip(axes.flat, rows, strict=False):
        ax.fill_between(d["value"], d["power_ci_low"], d["power_ci_high"],
                        color="#0b5cad", alpha=0.18, lw=0)
        ax.plot(d["value"], d["power"], marker="o", ms=3, color="#0b5cad",
                label="power (95% interval)")
        _mark_curve(ax, curve, target_power=target_power, marks=marks)
        label = (any_label if outcome == ANY else outcome_label(outcome))
        ax.set_title(f"{roi} {label}\n{term}", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.xaxis.label.set_fontsize(8)
    for ax in axes.flat[len(rows):]:
        ax.set_axis_off()
    for ax in axes[:, 0]:
        ax.set_ylabel("power", fontsize=8)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=len(handles),
               fontsize=8, frameon=False)
    fig.suptitle(f"Monte Carlo power ({curve.replicates} replicates per point, "
                 f"seed {curve.seed})", fontsize=10)
    return fig


def save_analysis_figures(results, participants, roi_md, folder, *,
                          outcome_labels: Mapping[str, str] | None = None,
                          ) -> tuple[str, ...]:
    """Write the analysis figures (:data:`ANALYSIS_FIGURES`) into ``folder``.

    Built without pyplot, so no display backend is needed and nothing stays
    registered. Arms and visits are those of ``results`` (their terms and
    changes table); ``outcome_labels`` as in :func:`plot_scatter_grid`.
    Returns the file names written.
    """
    from pathlib import Path

    from matplotlib.figure import Figure

    folder = Path(folder)
    n_roi = results.table["roi"].nunique()
    n_out = results.table["outcome"].nunique()
    fig = Figure(figsize=(3.3 * n_out, 2.4 * n_roi))
    plot_scatter_grid(results, outcome_labels=outcome_labels, fig=fig)
    fig.savefig(folder / ANALYSIS_FIGURES[0], dpi=120)

    fig = Figure(figsize=(1.3 * n_roi + 1.5, 4), layout="constrained")
    plot_md_sessions(roi_md, participants, names=getattr(results, "names", None),
                     ax=fig.subplots())
    fig.savefig(folder / ANALYSIS_FIGURES[1], dpi=120)

    term = results.table["term"].astype(str)
    n_rows = int((term.eq("interaction") | term.str.startswith("interaction_")).sum()
                 or term.str.startswith("slope_").sum() // 2)
    fig = Figure(figsize=(6.5, 0.32 * n_rows + 1.2), layout="constrained")
    plot_forest(results, outcome_labels=outcome_labels, ax=fig.subplots())
    fig.savefig(folder / ANALYSIS_FIGURES[2], dpi=120)
    return ANALYSIS_FIGURES


def save_power_curve(curve, path, *, tests=None, target_power=None,
                     marks: Sequence[tuple[float, str]] = ()) -> None:
    """Write :func:`plot_power_curves` of ``curve`` as a PNG (no pyplot involved)."""
    from matplotlib.figure import Figure

    n = len(_curve_rows(curve, tests))
    ncols = min(4, n)
    fig = Figure(figsize=(2.6 * ncols + 0.6, 2.3 * -(-n // ncols) + 1.0),
                 layout="constrained")
    plot_power_curves(curve, tests, fig=fig, target_power=target_power,
                      marks=marks, ncols=ncols)
    fig.savefig(path, dpi=120)


def curve_marks(curve, design=None, size=None) -> list[tuple[float, str]]:
    """Vertical marks for a power curve: the design's own value and the chosen n.

    For a curve over ``n``: the design's sample size (``"n = 98, the design"``)
    and, when ``size`` (a :class:`~dtitool.stats.power.SampleSizeResult`) found
    one, the n for the target power (``"n = 186 for 80% power"``), the same number
    ``sample_size.tsv`` holds.
    """
    marks = []
    if curve.parameter != "n":
        return marks
    if design is not None:
        marks.append((design.n, f"n = {design.n}, the design"))
    if size is not None and size.n is not None:
        marks.append((size.n, f"n = {size.n} for {size.target_power:.0%} power"))
    return marks
