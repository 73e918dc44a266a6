"""Figures of the MD-change analysis (matplotlib).

Following statsmodels and nilearn: a function draws into the axes or figure it
is given and creates a figure only when none is; nothing calls ``plt.show()``.
Each arm has one colour everywhere (:data:`ARM_COLORS`).
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from dtitool._constants import DMD_SCALE, GROUPS, SESSIONS
from dtitool.analysis import AnalysisResults, fit_changes
from dtitool.tables import _roi_order, check_tables

__all__ = ["ARM_COLORS", "plot_forest", "plot_md_sessions", "plot_scatter_grid"]

ARM_COLORS = {"ketamine": "#d95f02", "saline": "#1b9e77"}
"""Colour of each arm in every dtitool figure (ColorBrewer Dark2)."""

_OUTCOME_LABELS = {"madrs": "MADRS", "qids": "QIDS-SR16"}


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
        Results of :func:`dtitool.analysis.fit_models`, or a changes table from
        :func:`dtitool.tables.compute_changes` (fitted with the default model).
    rois, outcomes : sequence of str, optional
        Subsets to draw (rows and columns of the grid); default all.
    fig : matplotlib Figure, optional
        Figure to draw into (it should be empty); a new one is created if None.

    Returns
    -------
    matplotlib.figure.Figure
    """
    res = _as_results(data)
    table = res.table
    rois = _pick(rois, _roi_order(table["roi"]), "roi")
    outcomes = _pick(outcomes, list(pd.unique(table["outcome"])), "outcome")
    if fig is None:
        fig = plt.figure(figsize=(3.3 * len(outcomes), 2.4 * len(rois)))
    axes = fig.subplots(len(rois), len(outcomes), squeeze=False)
    ch = res.changes
    for i, roi in enumerate(rois):
        for j, outcome in enumerate(outcomes):
            ax = axes[i, j]
            sub = ch.loc[res.rows[(roi, outcome)]]
            x = sub["d_md"].to_numpy() / res.dmd_scale
            y = sub[f"d_{outcome}"].to_numpy(dtype=float)
            for g in GROUPS:
                m = sub["group"].to_numpy() == g
                if not m.any():
                    continue
                c = ARM_COLORS[g]
                ax.scatter(x[m], y[m], s=10, color=c, alpha=0.6, lw=0, label=g)
                slope = res.term(roi, outcome, f"slope_{g}")["estimate"]
                xs = np.array([x[m].min(), x[m].max()])
                ax.plot(xs, y[m].mean() + slope * (xs - x[m].mean()), color=c, lw=2)
            p = res.term(roi, outcome, "interaction")["p"]
            ax.set_title(
                f"{roi}, {_OUTCOME_LABELS.get(outcome, outcome)}: "
                f"interaction p = {p:.3g}",
                fontsize=8,
            )
            ax.axhline(0, color="0.8", lw=0.6, zorder=0)
            ax.axvline(0, color="0.8", lw=0.6, zorder=0)
            ax.tick_params(labelsize=7)
            if i == len(rois) - 1:
                ax.set_xlabel(f"dMD (x {res.dmd_scale:g} mm$^2$/s)", fontsize=8)
            if j == 0:
                ax.set_ylabel("score change", fontsize=8)
    axes[0, -1].legend(fontsize=7, frameon=False, loc="best")
    fig.suptitle(
        "Score change vs MD change (24 h - baseline); positive slope: MD decrease "
        "goes with improvement",
        fontsize=9,
    )
    height = fig.get_figheight()
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.45 / max(height, 1.0)))
    return fig


def plot_md_sessions(roi_md, participants, *, rois: Sequence[str] | None = None,
                     ax=None):  # fmt: skip
    """Baseline and 24 h MD per ROI and arm, each subject a paired line.

    Parameters
    ----------
    roi_md, participants : DataFrame or path-like
        Input tables (checked with :func:`dtitool.tables.check_tables`).
    rois : sequence of str, optional
        ROIs to draw; default all in ``roi_md``.
    ax : matplotlib Axes, optional
        Axes to draw into; a new figure is created if None.

    Returns
    -------
    matplotlib.axes.Axes

    Notes
    -----
    Per ROI the ketamine pair (baseline, 24 h) is drawn left of the saline
    pair; thin lines are subjects, the thick line the arm mean. MD is shown in
    1e-3 mm^2/s.
    """
    participants, roi_md = check_tables(participants, roi_md)
    rois = _pick(rois, _roi_order(roi_md["roi"]), "roi")
    if ax is None:
        _, ax = plt.subplots(figsize=(1.3 * len(rois) + 1.5, 4))
    wide = roi_md.pivot(index=["participant_id", "roi"], columns="session", values="md")
    wide = wide.reindex(columns=list(SESSIONS)).reset_index()
    wide = wide.merge(participants[["participant_id", "group"]], on="participant_id")
    offsets = {GROUPS[0]: (-0.35, -0.05), GROUPS[1]: (0.05, 0.35)}
    for i, roi in enumerate(rois):
        for g, (x0, x1) in offsets.items():
            sub = wide.loc[(wide["roi"] == roi) & (wide["group"] == g)]
            v = sub[list(SESSIONS)].to_numpy() / 1e-3
            paired = ~np.isnan(v).any(axis=1)
            xs = np.array([i + x0, i + x1])
            if paired.any():
                ax.plot(
                    np.broadcast_to(xs[:, None], (2, paired.sum())), v[paired].T,
                    color=ARM_COLORS[g], lw=0.5, alpha=0.25,
                )  # fmt: skip
            ax.plot(
                xs, np.nanmean(v, axis=0), color=ARM_COLORS[g], lw=2.5, marker="o",
                ms=4, label=g if i == 0 else None,
            )  # fmt: skip
    ax.set_xticks(range(len(rois)))
    ax.set_xticklabels(rois, rotation=30, ha="right")
    ax.set_ylabel("MD (x 1e-3 mm$^2$/s)")
    ax.set_title("MD at baseline and 24 h (left and right point of each pair)")
    ax.legend(frameon=False)
    return ax


def plot_forest(results, *, term: str = "interaction", ax=None):
    """Forest plot of one term's estimates with confidence intervals.

    Parameters
    ----------
    results : AnalysisResults or DataFrame
        Results or their table (columns ``roi, outcome, term, estimate,
        ci_low, ci_high, p``).
    term : str
        Term to show (``interaction``, ``slope_ketamine``, ``slope_saline``,
        ``slope_pooled``).
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
    _pick([term], terms, "term")
    unit = getattr(results, "dmd_unit", f"per {DMD_SCALE:g} mm^2/s dMD")
    t = table.loc[table["term"] == term].reset_index(drop=True)
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 0.32 * len(t) + 1.2))
    y = np.arange(len(t))[::-1]
    markers = {"madrs": "o", "qids": "s"}
    for k in pd.unique(t["outcome"]):
        m = (t["outcome"] == k).to_numpy()
        est = t.loc[m, "estimate"].to_numpy()
        err = np.vstack([est - t.loc[m, "ci_low"], t.loc[m, "ci_high"] - est])
        ax.errorbar(
            est, y[m], xerr=err, fmt=markers.get(k, "D"), color="0.2", ms=4,
            capsize=2, lw=1, label=_OUTCOME_LABELS.get(k, k),
        )  # fmt: skip
    ax.axvline(0, color="0.6", lw=0.8, ls="--")
    ax.set_yticks(y)
    ax.set_yticklabels(
        [f"{r} {_OUTCOME_LABELS.get(k, k)}  p={p:.3g}"
         for r, k, p in zip(t["roi"], t["outcome"], t["p"], strict=True)],
        fontsize=8,
    )  # fmt: skip
    ax.set_xlabel(f"{term} estimate, score points {unit} (95% CI)")
    ax.legend(frameon=False, fontsize=8)
    return ax
